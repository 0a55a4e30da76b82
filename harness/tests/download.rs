//! Downloads against a local HTTP server on 127.0.0.1: a generated Istio release and kind
//! binaries with their checksum files. Verified installs, the cache (no requests),
//! checksum and lock mismatches (file deleted), unsafe archives, and local releases.

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use harness::download::{
    DownloadError, Downloader, LOCK_FILE, Lock, LockEntry, Platform, Sources, Tool,
    use_local_release,
};
use rstest::rstest;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

const ISTIO: &str = "1.99.0";
const ISTIO_FILE: &str = "istio-1.99.0-linux-amd64.tar.gz";
const KIND: &str = "v0.99.0";

/// A file server on 127.0.0.1 that counts requests; stops when dropped.
struct Server {
    addr: SocketAddr,
    files: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    requests: Arc<AtomicUsize>,
    gate: Gate,
    task: JoinHandle<()>,
}

/// Holds back the answers for one path until it is opened, counting the requests for it: so a
/// test can keep one downloader in the middle of its download while another one starts.
#[derive(Clone)]
struct Gate {
    path: Arc<Mutex<Option<String>>>,
    open: Arc<watch::Sender<bool>>,
    hits: Arc<watch::Sender<usize>>,
}

impl Gate {
    fn new() -> Gate {
        Gate {
            path: Arc::default(),
            open: Arc::new(watch::channel(false).0),
            hits: Arc::new(watch::channel(0).0),
        }
    }

    /// Counts a request for `path` and, when the gate holds that path, waits until it opens.
    async fn pass(&self, path: &str) {
        if self.path.lock().unwrap().as_deref() != Some(path) {
            return;
        }
        self.hits.send_modify(|n| *n += 1);
        let mut open = self.open.subscribe();
        let _ = open.wait_for(|o| *o).await;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    async fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let files: Arc<Mutex<HashMap<String, Vec<u8>>>> = Arc::default();
        let requests = Arc::new(AtomicUsize::new(0));
        let gate = Gate::new();
        let (f, r, g) = (files.clone(), requests.clone(), gate.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let (f, r, g) = (f.clone(), r.clone(), g.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    r.fetch_add(1, Ordering::SeqCst);
                    let head = String::from_utf8_lossy(&buf).into_owned();
                    let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
                    g.pass(&path).await;
                    let body = f.lock().unwrap().get(&path).cloned();
                    let (status, body) = match body {
                        Some(b) => ("200 OK", b),
                        None => ("404 Not Found", b"not found".to_vec()),
                    };
                    let header = format!(
                        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = sock.write_all(header.as_bytes()).await;
                    let _ = sock.write_all(&body).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        Server {
            addr,
            files,
            requests,
            gate,
            task,
        }
    }

    fn serve(&self, path: &str, body: impl Into<Vec<u8>>) {
        self.files
            .lock()
            .unwrap()
            .insert(path.to_string(), body.into());
    }

    /// Holds back the answers for `path` until [`Server::open_gate`].
    fn hold(&self, path: &str) {
        *self.gate.path.lock().unwrap() = Some(path.to_string());
    }

    /// Answers the held requests, and all later ones at once.
    fn open_gate(&self) {
        self.gate.open.send_replace(true);
    }

    /// Resolves once `n` requests for the held path have come.
    async fn held_requests(&self, n: usize) {
        let mut hits = self.gate.hits.subscribe();
        let _ = hits.wait_for(|h| *h >= n).await;
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    fn reset(&self) {
        self.requests.store(0, Ordering::SeqCst);
    }

    fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Serves an Istio archive and its `.sha256` (`<hex>  <file>`, as Istio writes it).
    fn serve_istio(&self, archive: &[u8], published_sha: &str) {
        let dir = format!("/istio/{ISTIO}/{ISTIO_FILE}");
        self.serve(&dir, archive.to_vec());
        self.serve(
            &format!("{dir}.sha256"),
            format!("{published_sha}  {ISTIO_FILE}\n"),
        );
    }
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A downloader for linux/amd64 against the server, caching and locking under `tmp`.
fn downloader(server: &Server, tmp: &Path) -> Downloader {
    downloader_at(&server.base(), tmp)
}

/// A downloader for linux/amd64 against the server at `base`, caching and locking under `tmp`.
fn downloader_at(base: &str, tmp: &Path) -> Downloader {
    harness::install_crypto_provider();
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    Downloader::new(tmp.join("cache"), tmp.join(LOCK_FILE))
        .unwrap()
        .with_sources(Sources::mirror(base))
        .with_platform(Platform::new("linux", "amd64").unwrap())
        .with_client(client)
}

/// One entry of a generated archive.
enum Ent<'a> {
    Dir(&'a str),
    File(&'a str, &'a [u8], u32),
    Symlink(&'a str, &'a str),
    /// A file whose name is written into the header as is (the tar crate refuses to write
    /// `..` or absolute names through its API).
    RawName(&'a [u8], &'a [u8]),
}

fn tarball(entries: &[Ent<'_>]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut b = tar::Builder::new(gz);
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(0);
        match e {
            Ent::Dir(p) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                h.set_path(p).unwrap();
                h.set_cksum();
                b.append(&h, &[][..]).unwrap();
            }
            Ent::File(p, data, mode) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                h.set_size(data.len() as u64);
                h.set_path(p).unwrap();
                h.set_cksum();
                b.append(&h, *data).unwrap();
            }
            Ent::Symlink(p, target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                h.set_path(p).unwrap();
                h.set_link_name(target).unwrap();
                h.set_cksum();
                b.append(&h, &[][..]).unwrap();
            }
            Ent::RawName(name, data) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_size(data.len() as u64);
                h.as_old_mut().name[..name.len()].copy_from_slice(name);
                h.set_cksum();
                b.append(&h, *data).unwrap();
            }
        }
    }
    let mut gz = b.into_inner().unwrap();
    gz.flush().unwrap();
    gz.finish().unwrap()
}

const ISTIOCTL: &[u8] = b"#!/bin/sh\necho istioctl 1.99.0\n";
const BOOKINFO: &[u8] = b"apiVersion: v1\nkind: Service\nmetadata:\n  name: productpage\n";

/// A small, well-formed release: bin/istioctl, samples/bookinfo, manifest.yaml.
fn release() -> Vec<u8> {
    tarball(&[
        Ent::Dir("istio-1.99.0/"),
        Ent::Dir("istio-1.99.0/bin/"),
        Ent::File("istio-1.99.0/bin/istioctl", ISTIOCTL, 0o755),
        Ent::File("istio-1.99.0/manifest.yaml", b"version: 1.99.0\n", 0o644),
        Ent::File(
            "istio-1.99.0/samples/bookinfo/platform/kube/bookinfo.yaml",
            BOOKINFO,
            0o644,
        ),
        Ent::Symlink(
            "istio-1.99.0/samples/bookinfo/current.yaml",
            "platform/kube/bookinfo.yaml",
        ),
    ])
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

/// Every file name under `dir`, recursively (not following symlinks).
fn all_names(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            out.push(e.path().strip_prefix(dir).unwrap().display().to_string());
            if e.file_type().unwrap().is_dir() {
                dirs.push(e.path());
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn istio_release_is_verified_unpacked_and_locked() {
    let server = Server::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let archive = release();
    server.serve_istio(&archive, &sha(&archive));

    let rel = downloader(&server, tmp.path()).istio(ISTIO).await.unwrap();

    assert_eq!(server.requests(), 2, "the checksum file and the archive");
    assert_eq!(rel.dir, tmp.path().join("cache/istio-1.99.0"));
    let istioctl = rel.istioctl.clone().expect("bin/istioctl");
    assert_eq!(istioctl, rel.dir.join("bin/istioctl"));
    assert_eq!(mode(&istioctl), 0o755);
    assert_eq!(rel.version.as_deref(), Some(ISTIO));
    assert_eq!(
        std::fs::read(rel.dir.join("samples/bookinfo/current.yaml")).unwrap(),
        BOOKINFO
    );
    let out = std::process::Command::new(&istioctl).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "istioctl 1.99.0\n");

    let lock = Lock::load(&tmp.path().join(LOCK_FILE)).unwrap();
    assert_eq!(
        lock.downloads,
        [LockEntry {
            tool: "istio".into(),
            version: ISTIO.into(),
            os: "linux".into(),
            arch: "amd64".into(),
            url: format!("{}/istio/{ISTIO}/{ISTIO_FILE}", server.base()),
            sha256: sha(&archive),
        }]
    );
    // Nothing half-written is left behind.
    assert!(
        all_names(&tmp.path().join("cache"))
            .iter()
            .all(|n| !n.contains(".part-")),
        "{:?}",
        all_names(&tmp.path().join("cache"))
    );
}

#[tokio::test]
async fn a_cached_release_that_matches_the_lock_makes_no_request() {
    let server = Server::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let archive = release();
    server.serve_istio(&archive, &sha(&archive));
    let first = downloader(&server, tmp.path()).istio(ISTIO).await.unwrap();
    server.reset();

    let again = downloader(&server, tmp.path()).istio(ISTIO).await.unwrap();
    assert_eq!(again, first);
    assert_eq!(server.requests(), 0);

    // The unpacked copy is gone: unpacked again from the cached archive, still offline.
    std::fs::remove_dir_all(&first.dir).unwrap();
    let third = downloader(&server, tmp.path()).istio(ISTIO).await.unwrap();
    assert_eq!(third, first);
    assert!(
        third
            .dir
            .join("samples/bookinfo/platform/kube/bookinfo.yaml")
            .is_file()
    );
    assert_eq!(server.requests(), 0);

    let f = downloader(&server, tmp.path())
        .fetch(Tool::Istio, ISTIO)
        .await
        .unwrap();
    assert!(f.cached);
    assert_eq!(server.requests(), 0);
}

#[tokio::test]
async fn a_download_that_differs_from_the_publishers_checksum_is_refused_and_deleted() {
    let server = Server::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let archive = release();
    let wrong = sha(b"something else");
    server.serve_istio(&archive, &wrong);

    let err = downloader(&server, tmp.path())
        .istio(ISTIO)
        .await
        .unwrap_err();

    let DownloadError::ChecksumMismatch {
        file,
        expected,
        actual,
        ..
    } = &err
    else {
        panic!("expected a checksum mismatch, got {err}");
    };
    assert_eq!(file, ISTIO_FILE);
    assert_eq!(expected, &wrong);
    assert_eq!(actual, &sha(&archive));
    let msg = err.to_string();
    assert!(msg.contains(ISTIO_FILE) && msg.contains(&wrong) && msg.contains(&sha(&archive)));
    assert!(msg.contains("the downloaded file was deleted"), "{msg}");
    let names = all_names(&tmp.path().join("cache"));
    assert!(
        names
            .iter()
            .all(|n| !n.ends_with(".tar.gz") && !n.contains(".part-")),
        "{names:?}"
    );
    assert!(!tmp.path().join("cache/istio-1.99.0").exists());
    assert!(
        !tmp.path().join(LOCK_FILE).exists(),
        "nothing is recorded for a refused file"
    );
}

#[tokio::test]
async fn a_download_that_differs_from_the_lock_is_refused_and_deleted() {
    let server = Server::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let lock_path = tmp.path().join(LOCK_FILE);
    let locked = sha(b"the release as first published");
    let lock = Lock {
        about: String::new(),
        downloads: vec![LockEntry {
            tool: "istio".into(),
            version: ISTIO.into(),
            os: "linux".into(),
            arch: "amd64".into(),
            url: "https://github.com/istio/istio/releases/download/1.99.0/istio-1.99.0-linux-amd64.tar.gz".into(),
            sha256: locked.clone(),
        }],
    };
    lock.save(&lock_path).unwrap();
    let before = std::fs::read_to_string(&lock_path).unwrap();
    // A re-release: different bytes, with a checksum file that matches them.
    let archive = release();
    server.serve_istio(&archive, &sha(&archive));

    let err = downloader(&server, tmp.path())
        .istio(ISTIO)
        .await
        .unwrap_err();

    let DownloadError::LockMismatch(c) = &err else {
        panic!("expected a lock mismatch, got {err}");
    };
    assert_eq!(
        (c.locked.as_str(), c.actual.as_str()),
        (locked.as_str(), sha(&archive).as_str())
    );
    let msg = err.to_string();
    for part in [
        ISTIO_FILE,
        locked.as_str(),
        &sha(&archive),
        &lock_path.display().to_string(),
        "the downloaded file was deleted",
        "only if the publisher re-released",
    ] {
        assert!(msg.contains(part), "`{part}` missing from: {msg}");
    }
    let names = all_names(&tmp.path().join("cache"));
    assert!(
        names
            .iter()
            .all(|n| !n.ends_with(".tar.gz") && !n.contains(".part-")),
        "{names:?}"
    );
    assert_eq!(
        std::fs::read_to_string(&lock_path).unwrap(),
        before,
        "the lock is not rewritten"
    );
}

#[rstest]
#[case::dot_dot(
    tarball(&[Ent::File("istio-1.99.0/samples/a.yaml", b"a", 0o644), Ent::RawName(b"../evil", b"pwned")]),
    "../evil",
    "`..`"
)]
#[case::dot_dot_inside(
    tarball(&[Ent::RawName(b"istio-1.99.0/samples/../../../evil", b"pwned")]),
    "istio-1.99.0/samples/../../../evil",
    "`..`"
)]
#[case::absolute(
    tarball(&[Ent::RawName(b"/tmp/istio-e2e-test-evil", b"pwned")]),
    "/tmp/istio-e2e-test-evil",
    "absolute path"
)]
#[case::symlink_up(
    tarball(&[Ent::Dir("istio-1.99.0/samples/"), Ent::Symlink("istio-1.99.0/samples/evil", "../../../evil")]),
    "istio-1.99.0/samples/evil",
    "points outside"
)]
#[case::symlink_absolute(
    tarball(&[Ent::Dir("istio-1.99.0/samples/"), Ent::Symlink("istio-1.99.0/samples/passwd", "/etc/passwd")]),
    "istio-1.99.0/samples/passwd",
    "absolute path"
)]
#[case::symlink_chain(
    // Lexically `x/b/../../..` stays inside istio-1.99.0/.. ; but x/b is itself a link to
    // `..`, so the kernel would resolve it one level higher: outside.
    tarball(&[
        Ent::Dir("istio-1.99.0/samples/"),
        Ent::Dir("istio-1.99.0/x/"),
        Ent::Symlink("istio-1.99.0/x/b", ".."),
        Ent::Symlink("istio-1.99.0/a", "x/b/../.."),
    ]),
    "istio-1.99.0/a",
    "points outside"
)]
#[case::link_under_a_symlink(
    tarball(&[
        Ent::Dir("istio-1.99.0/samples/"),
        Ent::Symlink("istio-1.99.0/s", "samples"),
        Ent::Symlink("istio-1.99.0/s/evil", "../.."),
    ]),
    "istio-1.99.0/s/evil",
    "written through the symlink `istio-1.99.0/s`"
)]
#[tokio::test]
async fn archives_with_entries_outside_the_release_are_refused(
    #[case] archive: Vec<u8>,
    #[case] entry: &str,
    #[case] reason: &str,
) {
    let server = Server::start().await;
    let tmp = tempfile::tempdir().unwrap();
    server.serve_istio(&archive, &sha(&archive));

    let err = downloader(&server, tmp.path())
        .istio(ISTIO)
        .await
        .unwrap_err();

    let DownloadError::UnsafeEntry { entry: e, .. } = &err else {
        panic!("expected an unsafe entry, got {err}");
    };
    assert_eq!(e, entry);
    let msg = err.to_string();
    assert!(msg.contains(reason), "`{reason}` missing from: {msg}");
    assert!(msg.contains("refusing to unpack"), "{msg}");
    assert!(!tmp.path().join("cache/istio-1.99.0").exists());
    assert!(!Path::new("/tmp/istio-e2e-test-evil").exists());
    let names = all_names(tmp.path());
    assert!(
        names
            .iter()
            .all(|n| !n.contains("evil") && !n.contains(".part-")),
        "{names:?}"
    );
}

#[tokio::test]
async fn kind_binary_is_verified_executable_and_cached() {
    let server = Server::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let bin = b"#!/bin/sh\necho kind v0.99.0 go1.24 linux/amd64\n";
    server.serve(&format!("/kind/{KIND}/kind-linux-amd64"), bin.to_vec());
    server.serve(
        &format!("/kind/{KIND}/kind-linux-amd64.sha256sum"),
        format!("{}  kind-linux-amd64\n", sha(bin)),
    );

    // Versions without the `v` are the same release.
    let v = downloader(&server, tmp.path())
        .kind("0.99.0")
        .await
        .unwrap();

    assert!(!v.cached);
    assert_eq!(
        v.path,
        tmp.path().join("cache/kind/v0.99.0/linux-amd64/kind")
    );
    assert_eq!(mode(&v.path), 0o755);
    assert_eq!(v.sha256, sha(bin));
    // Through the harness's own runner: another test's thread may be forking right now.
    let out = harness::process::output(&mut tokio::process::Command::new(&v.path))
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "kind v0.99.0 go1.24 linux/amd64\n"
    );
    assert_eq!(server.requests(), 2);

    server.reset();
    let again = downloader(&server, tmp.path()).kind(KIND).await.unwrap();
    assert!(again.cached);
    assert_eq!(server.requests(), 0);

    // A damaged cached copy is not used: it is replaced by a verified download.
    std::fs::write(&v.path, b"damaged").unwrap();
    let repaired = downloader(&server, tmp.path()).kind(KIND).await.unwrap();
    assert!(!repaired.cached);
    assert_eq!(std::fs::read(&repaired.path).unwrap(), bin);
    assert_eq!(server.requests(), 2);
}

#[tokio::test]
async fn a_hex_only_checksum_is_accepted_and_the_lock_stays_sorted() {
    let server = Server::start().await;
    let tmp = tempfile::tempdir().unwrap();
    // A checksum file with the digest alone, no file name (as minikube publishes them).
    let bin = b"#!/bin/sh\necho kind 0.99\n";
    server.serve(&format!("/kind/{KIND}/kind-linux-amd64"), bin.to_vec());
    server.serve(
        &format!("/kind/{KIND}/kind-linux-amd64.sha256sum"),
        format!("{}\n", sha(bin)),
    );
    let older = b"#!/bin/sh\necho kind 0.98\n";
    server.serve("/kind/v0.98.0/kind-linux-amd64", older.to_vec());
    server.serve(
        "/kind/v0.98.0/kind-linux-amd64.sha256sum",
        format!("{}  kind-linux-amd64\n", sha(older)),
    );

    // Recorded newest first; the lock lists them sorted.
    let dl = downloader(&server, tmp.path());
    let k = dl.kind(KIND).await.unwrap();
    assert_eq!(mode(&k.path), 0o755);
    dl.kind("v0.98.0").await.unwrap();

    let text = std::fs::read_to_string(tmp.path().join(LOCK_FILE)).unwrap();
    let base = server.base();
    let expected = format!(
        r#"{{
  "about": "SHA-256 of every release file istio-e2e downloaded, recorded on first use and checked on every later download. Commit this file. Delete an entry only if its publisher re-released that version on purpose.",
  "downloads": [
    {{
      "tool": "kind",
      "version": "v0.98.0",
      "os": "linux",
      "arch": "amd64",
      "url": "{base}/kind/v0.98.0/kind-linux-amd64",
      "sha256": "{o}"
    }},
    {{
      "tool": "kind",
      "version": "v0.99.0",
      "os": "linux",
      "arch": "amd64",
      "url": "{base}/kind/v0.99.0/kind-linux-amd64",
      "sha256": "{k}"
    }}
  ]
}}
"#,
        o = sha(older),
        k = sha(bin)
    );
    assert_eq!(text, expected);
}

#[tokio::test]
async fn a_missing_release_names_the_url() {
    let server = Server::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let err = downloader(&server, tmp.path())
        .istio("1.98.0")
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("/istio/1.98.0/istio-1.98.0-linux-amd64.tar.gz.sha256") && msg.contains("404"),
        "{msg}"
    );
    let step: harness::error::StepError = err.into();
    assert!(step.hint.is_some());
}

#[test]
fn local_releases_need_samples_and_may_lack_istioctl() {
    let tmp = tempfile::tempdir().unwrap();
    let dir: PathBuf = tmp.path().join("istio-1.30.3");
    std::fs::create_dir_all(dir.join("samples/bookinfo")).unwrap();
    std::fs::write(dir.join("manifest.yaml"), "version: 1.30.3\n").unwrap();
    let rel = use_local_release(&dir).unwrap();
    assert_eq!(rel.istioctl, None);
    assert_eq!(rel.dir, dir);
    assert_eq!(rel.version.as_deref(), Some("1.30.3"));

    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::write(dir.join("bin/istioctl"), "").unwrap();
    assert_eq!(
        use_local_release(&dir).unwrap().istioctl,
        Some(dir.join("bin/istioctl"))
    );

    let err = use_local_release(tmp.path()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&tmp.path().display().to_string()) && msg.contains("no samples/ directory"),
        "{msg}"
    );
    assert!(use_local_release(&tmp.path().join("nope")).is_err());
}

/// Serves the kind binary of `version` and its checksum file; returns the binary.
fn serve_kind(server: &Server, version: &str) -> Vec<u8> {
    let bin = format!("#!/bin/sh\necho kind {version}\n").into_bytes();
    server.serve(&format!("/kind/{version}/kind-linux-amd64"), bin.clone());
    server.serve(
        &format!("/kind/{version}/kind-linux-amd64.sha256sum"),
        format!("{}  kind-linux-amd64\n", sha(&bin)),
    );
    bin
}

/// The environment of a child process of
/// `processes_racing_for_one_cache_entry_download_it_once`: the server, the shared directory
/// (cache and lock file) and the kind version only that child fetches.
const CHILD_SERVER: &str = "DOWNLOAD_TEST_CHILD_SERVER";
const CHILD_DIR: &str = "DOWNLOAD_TEST_CHILD_DIR";
const CHILD_KIND: &str = "DOWNLOAD_TEST_CHILD_KIND";
/// The line a child prints with what it got.
const CHILD_GOT: &str = "child got:";

/// The body of the child processes of `processes_racing_for_one_cache_entry_download_it_once`
/// (this test binary run again with `--ignored --exact` and the CHILD_* variables): the same
/// Istio release as its sibling, then a kind version of its own, into the shared cache.
#[tokio::test]
#[ignore = "run as a child process by processes_racing_for_one_cache_entry_download_it_once"]
async fn child_fetches_into_the_shared_cache() {
    let (Ok(base), Ok(dir), Ok(kind)) = (
        std::env::var(CHILD_SERVER),
        std::env::var(CHILD_DIR),
        std::env::var(CHILD_KIND),
    ) else {
        eprintln!("not started as a child process ({CHILD_SERVER} is unset): nothing to do");
        return;
    };
    // The parent reads the guard's "waiting for" line from stderr.
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::INFO)
        .try_init();
    let dl = downloader_at(&base, Path::new(&dir));
    let rel = dl.istio(ISTIO).await.unwrap();
    let bin = dl.kind(&kind).await.unwrap();
    println!(
        "{CHILD_GOT} {} {}",
        rel.dir.join("bin/istioctl").display(),
        bin.sha256
    );
}

/// Two processes (as `cargo nextest` runs two trials) fill the same cache entry at once: one
/// downloads it, the other waits on the entry's guard and finds it cached; both lock-file
/// writes (each process records a kind version of its own) land; nothing half-written stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_racing_for_one_cache_entry_download_it_once() {
    let server = Server::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let archive = release();
    server.serve_istio(&archive, &sha(&archive));
    let kinds = ["v0.97.0", "v0.98.0"];
    let bins: Vec<Vec<u8>> = kinds.iter().map(|k| serve_kind(&server, k)).collect();

    // The first process to ask for the archive is held there, in the middle of its download
    // and holding the entry's guard, until the other one is seen waiting for that guard (or,
    // were the cache not locked, until the other one asks for the archive too).
    server.hold(&format!("/istio/{ISTIO}/{ISTIO_FILE}"));
    let exe = std::env::current_exe().unwrap();
    let mut children: Vec<_> = kinds
        .iter()
        .map(|kind| {
            tokio::process::Command::new(&exe)
                .args(["--exact", "child_fetches_into_the_shared_cache"])
                .args(["--ignored", "--nocapture", "--test-threads", "1"])
                .env(CHILD_SERVER, server.base())
                .env(CHILD_DIR, tmp.path())
                .env(CHILD_KIND, kind)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .unwrap()
        })
        .collect();
    let (seen_tx, mut seen) = tokio::sync::mpsc::channel(2);
    let stderr: Vec<_> = children
        .iter_mut()
        .map(|c| {
            let lines = tokio::io::BufReader::new(c.stderr.take().unwrap());
            tokio::spawn(collect_lines(lines, seen_tx.clone()))
        })
        .collect();
    tokio::select! {
        _ = seen.recv() => {}
        () = server.held_requests(2) => {}
    }
    server.open_gate();
    let mut got = Vec::new();
    for (child, stderr) in children.into_iter().zip(stderr) {
        let out = child.wait_with_output().await.unwrap();
        let stderr = stderr.await.unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "child failed: {stdout}\n{stderr}");
        // libtest prints `test <name> ... ` first, on the same line
        let line = stdout.lines().find_map(|l| l.split_once(CHILD_GOT));
        let (_, line) = line.unwrap_or_else(|| panic!("no result line from the child: {stdout}"));
        got.push(line.trim().to_string());
    }

    let istioctl = tmp.path().join("cache/istio-1.99.0/bin/istioctl");
    let want: Vec<String> = bins
        .iter()
        .map(|b| format!("{} {}", istioctl.display(), sha(b)))
        .collect();
    assert_eq!(got, want);
    assert_eq!(
        server.requests(),
        6,
        "Istio's checksum file and archive once, each kind version's two files once"
    );
    let lock = Lock::load(&tmp.path().join(LOCK_FILE)).unwrap();
    let mut recorded: Vec<(String, String)> = lock
        .downloads
        .iter()
        .map(|e| (e.tool.clone(), e.version.clone()))
        .collect();
    recorded.sort();
    assert_eq!(
        recorded,
        [
            ("istio".to_string(), ISTIO.to_string()),
            ("kind".to_string(), kinds[0].to_string()),
            ("kind".to_string(), kinds[1].to_string()),
        ]
    );
    let names = all_names(&tmp.path().join("cache"));
    assert!(names.iter().all(|n| !n.contains(".part-")), "{names:?}");
}

/// The log lines (tracing, INFO and up) of this test process, for tests that wait for one.
static LOG: LazyLock<watch::Sender<String>> = LazyLock::new(|| {
    let _ = tracing_subscriber::fmt()
        .with_writer(|| LogWriter)
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .try_init();
    watch::channel(String::new()).0
});

/// Appends what tracing writes to [`LOG`].
struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOG.send_modify(|l| l.push_str(&String::from_utf8_lossy(buf)));
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A child's stderr, collected; says on `seen` when a line shows it waiting for a guard.
async fn collect_lines(
    stderr: tokio::io::BufReader<tokio::process::ChildStderr>,
    seen: tokio::sync::mpsc::Sender<()>,
) -> String {
    use tokio::io::AsyncBufReadExt;
    let mut lines = stderr.lines();
    let mut all = String::new();
    while let Ok(Some(line)) = lines.next_line().await {
        if line.contains("waiting for another istio-e2e") {
            let _ = seen.try_send(());
        }
        all.push_str(&line);
        all.push('\n');
    }
    all
}

/// Two trials of one process (`--test-threads 2`) fill the same cache entry at once: one
/// download, the same unpacked release for both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn threads_racing_for_one_cache_entry_download_it_once() {
    let server = Server::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let archive = release();
    server.serve_istio(&archive, &sha(&archive));
    let mut log = LOG.subscribe();
    // The first task is held in the middle of its download (holding the entry's guard) until
    // the second is seen waiting for that guard (or, were the cache not locked, until the
    // second asks for the archive too).
    server.hold(&format!("/istio/{ISTIO}/{ISTIO_FILE}"));
    let start = || {
        let dl = downloader(&server, tmp.path());
        tokio::spawn(async move { dl.istio(ISTIO).await })
    };
    let first = start();
    server.held_requests(1).await;
    let second = start();
    let guard = tmp.path().display().to_string();
    tokio::select! {
        _ = log.wait_for(|l| l.lines().any(|l| l.contains("waiting for another") && l.contains(&guard))) => {}
        () = server.held_requests(2) => {}
    }
    server.open_gate();
    let tasks = [first, second];
    let mut rels = Vec::new();
    for t in tasks {
        rels.push(t.await.unwrap().unwrap());
    }
    assert_eq!(rels[0], rels[1]);
    assert_eq!(
        server.requests(),
        2,
        "the checksum file and the archive, once"
    );
    assert_eq!(
        Lock::load(&tmp.path().join(LOCK_FILE))
            .unwrap()
            .downloads
            .len(),
        1
    );
}

/// Writers of the lock file in many threads at once (each recording its own release) lose no
/// entry: every read-modify-write holds the file's guard.
#[test]
fn concurrent_lock_file_updates_lose_no_entry() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join(LOCK_FILE);
    std::thread::scope(|s| {
        for t in 0..8 {
            let path = &path;
            s.spawn(move || {
                Lock::update(path, |lock| {
                    lock.insert(LockEntry {
                        tool: "kind".into(),
                        version: format!("v0.{t}.0"),
                        os: "linux".into(),
                        arch: "amd64".into(),
                        url: format!("https://example.invalid/{t}"),
                        sha256: sha(&[t as u8]),
                    })
                })
                .unwrap()
            });
        }
    });
    let lock = Lock::load(&path).unwrap();
    let mut versions: Vec<&str> = lock.downloads.iter().map(|e| e.version.as_str()).collect();
    versions.sort();
    let want: Vec<String> = (0..8).map(|t| format!("v0.{t}.0")).collect();
    assert_eq!(versions, want);
}
