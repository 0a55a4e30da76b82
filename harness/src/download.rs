//! Downloads of kind, minikube and Istio releases, verified before anything runs them.
//!
//! Every file is checked against its publisher's checksum file for that release, and its
//! SHA-256 is recorded in the repository's lock file ([`LOCK_FILE`], `istio-e2e.lock`) on
//! first use. Later downloads must match the lock: a release that changes under the same
//! version is refused, not silently trusted. Files are cached under
//! `${XDG_CACHE_HOME:-~/.cache}/istio-e2e/`; a cached file that matches the lock is used
//! without any request.
//!
//! | tool | file | publisher's checksum |
//! |---|---|---|
//! | Istio | `istio-<v>-<platform>.tar.gz` (`linux-amd64`, `linux-arm64`, `osx`, `osx-arm64`) | `<file>.sha256` (`<hex>  <file>`) |
//! | kind | `kind-<os>-<arch>` | `<file>.sha256sum` (`<hex>  <file>`) |
//! | minikube | `minikube-<os>-<arch>` | `<file>.sha256` (hex only) |
//!
//! Istio releases are unpacked into `<cache>/istio-<v>/`; entries that would land outside it
//! (absolute paths, `..`, symlinks pointing outside) are refused. Air-gapped users point the
//! harness at an unpacked release instead ([`use_local_release`]).

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::error::StepError;

/// The lock file's name, at the repository root.
pub const LOCK_FILE: &str = "istio-e2e.lock";

/// The name of the marker file in an unpacked release that records the SHA-256 of the
/// archive it came from.
const EXTRACTED_MARKER: &str = ".istio-e2e-sha256";

/// The most symlinks followed while checking where one symlink points.
const MAX_SYMLINK_HOPS: usize = 40;

/// A downloadable tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tool {
    /// An Istio release archive (istioctl, samples, manifests).
    Istio,
    /// The kind binary.
    Kind,
    /// The minikube binary.
    Minikube,
}

impl Tool {
    /// The tool's name, as written in the lock file and the cache.
    pub fn name(self) -> &'static str {
        match self {
            Tool::Istio => "istio",
            Tool::Kind => "kind",
            Tool::Minikube => "minikube",
        }
    }

    /// The suffix of the publisher's checksum file, appended to the file's URL.
    pub fn checksum_suffix(self) -> &'static str {
        match self {
            Tool::Istio | Tool::Minikube => ".sha256",
            Tool::Kind => ".sha256sum",
        }
    }

    /// The version as the publisher tags it: Istio without a `v` (`1.30.3`), kind and
    /// minikube with one (`v0.29.0`). Refuses anything but letters, digits, `.`, `-`, `+`
    /// and `_`, so a version can never become a path.
    pub fn normalize_version(self, version: &str) -> Result<String, DownloadError> {
        let v = version.trim();
        let bare = v.strip_prefix('v').unwrap_or(v);
        let ok = !bare.is_empty()
            && bare.starts_with(|c: char| c.is_ascii_digit())
            && !bare.contains("..")
            && bare
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+' | '_'));
        if !ok {
            return Err(DownloadError::InvalidVersion {
                tool: self,
                version: version.to_string(),
            });
        }
        Ok(match self {
            Tool::Istio => bare.to_string(),
            Tool::Kind | Tool::Minikube => format!("v{bare}"),
        })
    }

    /// The publisher's file name for a (normalized) version on a platform, e.g.
    /// `istio-1.30.3-osx-arm64.tar.gz` or `kind-linux-amd64`.
    pub fn file_name(self, version: &str, platform: &Platform) -> String {
        match self {
            Tool::Istio => format!("istio-{version}-{}.tar.gz", platform.istio_suffix()),
            Tool::Kind | Tool::Minikube => {
                format!("{}-{}-{}", self.name(), platform.os, platform.arch)
            }
        }
    }

    /// True for tools that are a single executable (kind, minikube).
    pub fn is_executable(self) -> bool {
        !matches!(self, Tool::Istio)
    }
}

impl fmt::Display for Tool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An operating system and CPU architecture in the publishers' words: os `linux` or
/// `darwin`, arch `amd64` or `arm64`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Platform {
    /// `linux` or `darwin`.
    pub os: String,
    /// `amd64` or `arm64`.
    pub arch: String,
}

impl Platform {
    /// A platform from publisher names; anything but linux/darwin and amd64/arm64 is refused.
    pub fn new(os: &str, arch: &str) -> Result<Self, DownloadError> {
        if !matches!(os, "linux" | "darwin") || !matches!(arch, "amd64" | "arm64") {
            return Err(DownloadError::UnsupportedPlatform {
                os: os.to_string(),
                arch: arch.to_string(),
            });
        }
        Ok(Platform {
            os: os.into(),
            arch: arch.into(),
        })
    }

    /// The platform this process runs on (from [`std::env::consts`]).
    pub fn current() -> Result<Self, DownloadError> {
        Self::from_rust(std::env::consts::OS, std::env::consts::ARCH)
    }

    /// Maps Rust's names (`linux`/`macos`, `x86_64`/`aarch64`) to the publishers'.
    pub fn from_rust(os: &str, arch: &str) -> Result<Self, DownloadError> {
        let o = match os {
            "linux" => "linux",
            "macos" => "darwin",
            other => other,
        };
        let a = match arch {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            other => other,
        };
        Self::new(o, a)
    }

    /// Istio's platform suffix: `linux-amd64`, `linux-arm64`, `osx` (darwin amd64) or
    /// `osx-arm64`.
    pub fn istio_suffix(&self) -> String {
        match (self.os.as_str(), self.arch.as_str()) {
            ("darwin", "amd64") => "osx".into(),
            ("darwin", arch) => format!("osx-{arch}"),
            (os, arch) => format!("{os}-{arch}"),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.arch)
    }
}

/// Where the files come from: one URL template per tool. Placeholders: `{version}` (as the
/// publisher tags it), `{file}` (the publisher's file name), `{os}`, `{arch}`. The checksum
/// file's URL is the file's URL plus [`Tool::checksum_suffix`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sources {
    /// Istio release archives.
    pub istio: String,
    /// kind binaries.
    pub kind: String,
    /// minikube binaries.
    pub minikube: String,
}

impl Default for Sources {
    fn default() -> Self {
        Sources {
            istio: "https://github.com/istio/istio/releases/download/{version}/{file}".into(),
            kind: "https://github.com/kubernetes-sigs/kind/releases/download/{version}/{file}"
                .into(),
            minikube: "https://storage.googleapis.com/minikube/releases/{version}/{file}".into(),
        }
    }
}

impl Sources {
    /// Every tool from one mirror laid out as `<base>/<tool>/<version>/<file>` (also what
    /// the tests serve).
    pub fn mirror(base: &str) -> Self {
        let base = base.trim_end_matches('/');
        let t = |tool: &str| format!("{base}/{tool}/{{version}}/{{file}}");
        Sources {
            istio: t("istio"),
            kind: t("kind"),
            minikube: t("minikube"),
        }
    }

    /// The template for a tool.
    pub fn template(&self, tool: Tool) -> &str {
        match tool {
            Tool::Istio => &self.istio,
            Tool::Kind => &self.kind,
            Tool::Minikube => &self.minikube,
        }
    }

    /// The file's URL for a (normalized) version on a platform.
    pub fn url(&self, tool: Tool, version: &str, platform: &Platform) -> String {
        self.template(tool)
            .replace("{version}", version)
            .replace("{file}", &tool.file_name(version, platform))
            .replace("{os}", &platform.os)
            .replace("{arch}", &platform.arch)
    }

    /// The URL of the publisher's checksum file for that file.
    pub fn checksum_url(&self, tool: Tool, version: &str, platform: &Platform) -> String {
        format!(
            "{}{}",
            self.url(tool, version, platform),
            tool.checksum_suffix()
        )
    }
}

/// Why a download, a verification or an extraction failed. Every message names the file
/// and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// The version string is not a release version.
    #[error(
        "`{version}` is not a {tool} release version (expected something like {example})",
        example = match tool { Tool::Istio => "1.30.3", Tool::Kind => "v0.29.0", Tool::Minikube => "v1.36.0" }
    )]
    InvalidVersion {
        /// The tool.
        tool: Tool,
        /// What was given.
        version: String,
    },
    /// Not linux/darwin on amd64/arm64.
    #[error(
        "no release downloads for {os}/{arch}: only linux and darwin on amd64 and arm64; install the tools yourself and put them on PATH (or pass --istio-dir)"
    )]
    UnsupportedPlatform {
        /// Operating system.
        os: String,
        /// Architecture.
        arch: String,
    },
    /// Neither XDG_CACHE_HOME nor HOME is set.
    #[error("no cache directory: neither XDG_CACHE_HOME nor HOME is set; set one of them")]
    NoCacheDir,
    /// A request failed or returned a non-success status.
    #[error("GET {url} failed: {reason}")]
    Http {
        /// The URL.
        url: String,
        /// The status or transport error.
        reason: String,
    },
    /// The publisher's checksum file could not be read.
    #[error("cannot read the checksum for {file} from {url}: {reason}")]
    ChecksumFile {
        /// The file the checksum is for.
        file: String,
        /// The checksum file's URL.
        url: String,
        /// What was wrong with it.
        reason: String,
    },
    /// The download does not match the publisher's checksum file.
    #[error(
        "checksum mismatch for {file} from {url}: the publisher's checksum file says {expected}, the download has {actual}; the downloaded file was deleted. Run again; if it persists, the download or the mirror is corrupt"
    )]
    ChecksumMismatch {
        /// The file's name.
        file: String,
        /// Where it came from.
        url: String,
        /// The publisher's digest.
        expected: String,
        /// The download's digest.
        actual: String,
    },
    /// The file does not match the digest recorded in the lock file.
    #[error("{0}")]
    LockMismatch(Box<LockConflict>),
    /// The lock file cannot be read or written.
    #[error("lock file {path}: {reason}")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// An archive entry would land outside the target directory (or is not a file,
    /// directory or link).
    #[error(
        "refusing to unpack {archive}: entry `{entry}` {reason}; nothing from this archive was installed"
    )]
    UnsafeEntry {
        /// The archive.
        archive: PathBuf,
        /// The entry's path as written in the archive.
        entry: String,
        /// Why it is refused.
        reason: String,
    },
    /// A directory given as an Istio release is not one.
    #[error("{dir} does not look like an Istio release: {reason}")]
    NotARelease {
        /// The directory.
        dir: PathBuf,
        /// What is missing.
        reason: String,
    },
    /// A file operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

/// A download whose digest differs from the one in the lock file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockConflict {
    /// The file's name.
    pub file: String,
    /// Where it came from.
    pub url: String,
    /// The lock file.
    pub lock: PathBuf,
    /// The tool.
    pub tool: Tool,
    /// The version.
    pub version: String,
    /// The platform.
    pub platform: Platform,
    /// The digest in the lock.
    pub locked: String,
    /// The download's digest.
    pub actual: String,
}

impl fmt::Display for LockConflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let LockConflict {
            file,
            url,
            lock,
            tool,
            version,
            platform,
            locked,
            actual,
        } = self;
        write!(
            f,
            "{file} from {url} does not match {lock}: the lock records sha256 {locked} for {tool} {version} {platform}, the download has {actual}; the downloaded file was deleted. Delete that entry from the lock only if the publisher re-released {tool} {version} on purpose (check the release notes); otherwise do not trust this download",
            lock = lock.display()
        )
    }
}

impl DownloadError {
    fn io(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> DownloadError {
        let path = path.to_path_buf();
        move |source| DownloadError::Io { what, path, source }
    }

    fn hint(&self) -> Option<&'static str> {
        Some(match self {
            DownloadError::Http { .. } => {
                "check the network and that the version exists; air-gapped: pass --istio-dir with an unpacked release"
            }
            DownloadError::NotARelease { .. } => {
                "point --istio-dir at the unpacked istio-<version>/ directory (the one with bin/ and samples/)"
            }
            _ => return None,
        })
    }
}

impl From<DownloadError> for StepError {
    fn from(e: DownloadError) -> Self {
        let transient = matches!(e, DownloadError::Http { .. });
        let hint = e.hint();
        let mut s = if transient {
            StepError::new(e.to_string())
        } else {
            StepError::fatal(e.to_string())
        };
        if let Some(h) = hint {
            s = s.with_hint(h);
        }
        s
    }
}

/// The default cache directory: `${XDG_CACHE_HOME:-~/.cache}/istio-e2e`.
pub fn default_cache_root() -> Result<PathBuf, DownloadError> {
    cache_root_from(std::env::var_os("XDG_CACHE_HOME"), std::env::var_os("HOME"))
}

/// The cache directory for given `XDG_CACHE_HOME` and `HOME` values (an empty or relative
/// `XDG_CACHE_HOME` is ignored, as the XDG spec says).
pub fn cache_root_from(
    xdg_cache_home: Option<OsString>,
    home: Option<OsString>,
) -> Result<PathBuf, DownloadError> {
    let xdg = xdg_cache_home
        .map(PathBuf::from)
        .filter(|p| p.is_absolute());
    let base = match (xdg, home) {
        (Some(x), _) => x,
        (None, Some(h)) if !h.is_empty() => PathBuf::from(h).join(".cache"),
        _ => return Err(DownloadError::NoCacheDir),
    };
    Ok(base.join("istio-e2e"))
}

/// One recorded download in the lock file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockEntry {
    /// `istio`, `kind` or `minikube`.
    pub tool: String,
    /// The version as the publisher tags it.
    pub version: String,
    /// `linux` or `darwin`.
    pub os: String,
    /// `amd64` or `arm64`.
    pub arch: String,
    /// Where it was first downloaded from.
    pub url: String,
    /// Its SHA-256, lower-case hex.
    pub sha256: String,
}

impl LockEntry {
    fn key(&self) -> (&str, &str, &str, &str) {
        (&self.tool, &self.version, &self.os, &self.arch)
    }
}

/// The lock file: the verified SHA-256 of every release file, one entry per
/// (tool, version, os, arch), sorted. JSON, so that diffs and reviews read well.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lock {
    /// What the file is (written on every save).
    #[serde(default)]
    pub about: String,
    /// The entries.
    #[serde(default)]
    pub downloads: Vec<LockEntry>,
}

const LOCK_ABOUT: &str = "SHA-256 of every release file istio-e2e downloaded, recorded on first use and checked on every later download. Commit this file. Delete an entry only if its publisher re-released that version on purpose.";

/// Serialises read-modify-write cycles on lock files within this process.
static LOCK_WRITE: Mutex<()> = Mutex::new(());

impl Lock {
    /// Reads a lock file; a missing file is an empty lock.
    pub fn load(path: &Path) -> Result<Lock, DownloadError> {
        let text = match fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Lock::default()),
            Err(e) => {
                return Err(DownloadError::Lock {
                    path: path.into(),
                    reason: e.to_string(),
                });
            }
        };
        serde_json::from_str(&text).map_err(|e| DownloadError::Lock {
            path: path.into(),
            reason: format!("not a valid lock file ({e}); fix it or restore it from git"),
        })
    }

    /// Writes the lock file, sorted, atomically (a temporary file renamed over it).
    pub fn save(&self, path: &Path) -> Result<(), DownloadError> {
        let mut sorted = self.clone();
        sorted.about = LOCK_ABOUT.into();
        sorted
            .downloads
            .sort_by(|a, b| a.key().cmp(&b.key()).then(a.url.cmp(&b.url)));
        let mut text = serde_json::to_string_pretty(&sorted).map_err(|e| DownloadError::Lock {
            path: path.into(),
            reason: e.to_string(),
        })?;
        text.push('\n');
        let tmp = temp_sibling(path);
        let res = fs::write(&tmp, text).and_then(|_| fs::rename(&tmp, path));
        if let Err(e) = res {
            let _ = fs::remove_file(&tmp);
            return Err(DownloadError::Lock {
                path: path.into(),
                reason: format!("cannot write it: {e}"),
            });
        }
        Ok(())
    }

    /// The entry for a tool, version and platform.
    pub fn find(&self, tool: Tool, version: &str, platform: &Platform) -> Option<&LockEntry> {
        self.downloads.iter().find(|e| {
            e.key()
                == (
                    tool.name(),
                    version,
                    platform.os.as_str(),
                    platform.arch.as_str(),
                )
        })
    }

    /// Adds an entry, replacing one with the same (tool, version, os, arch).
    pub fn insert(&mut self, entry: LockEntry) {
        self.downloads.retain(|e| e.key() != entry.key());
        self.downloads.push(entry);
    }
}

/// Parses a publisher's checksum file: `<hex>` alone, or `<hex>  <file>` lines (as
/// `sha256sum` writes them, `*` binary marker allowed). With file names, the line for
/// `file_name` is used. Returns lower-case hex.
pub fn parse_checksum(text: &str, file_name: &str) -> Result<String, String> {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let is_hex = |h: &str| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit());
    let mut unnamed = Vec::new();
    for line in &lines {
        let mut parts = line.split_whitespace();
        let hex = parts.next().unwrap_or_default();
        let name = parts.next();
        if !is_hex(hex) {
            continue;
        }
        match name {
            None => unnamed.push(hex),
            Some(n) => {
                let n = n.trim_start_matches('*');
                let base = n.rsplit('/').next().unwrap_or(n);
                if base == file_name {
                    return Ok(hex.to_ascii_lowercase());
                }
            }
        }
    }
    match unnamed.as_slice() {
        [one] => Ok(one.to_ascii_lowercase()),
        [] if lines.is_empty() => Err("the checksum file is empty".into()),
        [] => Err(format!(
            "no SHA-256 for {file_name} in it (first line: {:?})",
            lines[0].chars().take(120).collect::<String>()
        )),
        _ => Err("it has several digests and no file names".into()),
    }
}

/// The SHA-256 of a file, lower-case hex.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    let mut f = fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// A verified file in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The file (kind and minikube: an executable named after the tool).
    pub path: PathBuf,
    /// Its SHA-256, as in the lock.
    pub sha256: String,
    /// Where it comes from.
    pub url: String,
    /// True when the file was already in the cache (not downloaded again). No request was
    /// made when its lock entry existed; otherwise only the checksum file was fetched.
    pub cached: bool,
}

/// An Istio release directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IstioRelease {
    /// The unpacked `istio-<v>/` directory.
    pub dir: PathBuf,
    /// `<dir>/bin/istioctl`, when present (always, for downloads).
    pub istioctl: Option<PathBuf>,
    /// `<dir>/samples`.
    pub samples: PathBuf,
    /// The release's version, from its `manifest.yaml` (or the version downloaded).
    pub version: Option<String>,
}

/// Checks that `dir` looks like an unpacked Istio release (a `samples/` directory;
/// `bin/istioctl` is optional), for air-gapped users (`--istio-dir DIR`).
pub fn use_local_release(dir: &Path) -> Result<IstioRelease, DownloadError> {
    let not = |reason: String| DownloadError::NotARelease {
        dir: dir.to_path_buf(),
        reason,
    };
    let meta = fs::metadata(dir).map_err(|e| not(format!("cannot read it ({e})")))?;
    if !meta.is_dir() {
        return Err(not("it is not a directory".into()));
    }
    let samples = dir.join("samples");
    if !samples.is_dir() {
        return Err(not(
            "it has no samples/ directory (expected the unpacked istio-<version>/ directory)"
                .into(),
        ));
    }
    let istioctl = dir.join("bin").join("istioctl");
    let istioctl = istioctl.is_file().then_some(istioctl);
    let version = fs::read_to_string(dir.join("manifest.yaml"))
        .ok()
        .and_then(|m| {
            m.lines().find_map(|l| {
                l.strip_prefix("version:")
                    .map(|v| v.trim().trim_matches('"').to_string())
            })
        })
        .filter(|v| !v.is_empty());
    Ok(IstioRelease {
        dir: dir.to_path_buf(),
        istioctl,
        samples,
        version,
    })
}

/// What a run uses for Istio: the local release `dir` when given (checked with
/// [`use_local_release`]); else the release `version`, downloaded into the default cache and
/// checked against the lock file `lock` (normally `<repository>/istio-e2e.lock`).
/// `Ok(None)` when neither is given.
pub async fn prepare_istio(
    dir: Option<&Path>,
    version: Option<&str>,
    lock: &Path,
) -> Result<Option<IstioRelease>, DownloadError> {
    if let Some(d) = dir {
        return use_local_release(d).map(Some);
    }
    let Some(v) = version else {
        return Ok(None);
    };
    let dl = Downloader::new(default_cache_root()?, lock.to_path_buf())?;
    dl.istio(v).await.map(Some)
}

/// Downloads, verifies and caches release files.
#[derive(Debug, Clone)]
pub struct Downloader {
    cache: PathBuf,
    lock: PathBuf,
    sources: Sources,
    platform: Platform,
    client: reqwest::Client,
}

impl Downloader {
    /// A downloader caching under `cache` and recording digests in the lock file `lock`,
    /// for this machine's platform, from the publishers' URLs ([`Sources::default`]).
    pub fn new(cache: PathBuf, lock: PathBuf) -> Result<Self, DownloadError> {
        crate::install_crypto_provider();
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(30))
            .read_timeout(Duration::from_secs(120))
            .user_agent(concat!("istio-e2e/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| DownloadError::Http {
                url: String::new(),
                reason: format!("cannot build the HTTP client: {e}"),
            })?;
        Ok(Downloader {
            cache,
            lock,
            sources: Sources::default(),
            platform: Platform::current()?,
            client,
        })
    }

    /// Uses other URL templates (a mirror, or a test server).
    pub fn with_sources(mut self, sources: Sources) -> Self {
        self.sources = sources;
        self
    }

    /// Downloads for another platform.
    pub fn with_platform(mut self, platform: Platform) -> Self {
        self.platform = platform;
        self
    }

    /// Uses this HTTP client (the crypto provider must already be installed).
    pub fn with_client(mut self, client: reqwest::Client) -> Self {
        self.client = client;
        self
    }

    /// The cache directory.
    pub fn cache_root(&self) -> &Path {
        &self.cache
    }

    /// The lock file.
    pub fn lock_path(&self) -> &Path {
        &self.lock
    }

    /// Where a (normalized) version of a tool is cached:
    /// `<cache>/<tool>/<version>/<os>-<arch>/<file>`, where `<file>` is `kind` or `minikube`
    /// for the binaries (so the directory can go on PATH) and the publisher's name for
    /// archives.
    pub fn cache_path(&self, tool: Tool, version: &str) -> PathBuf {
        let dir = self
            .cache
            .join(tool.name())
            .join(version)
            .join(format!("{}-{}", self.platform.os, self.platform.arch));
        if tool.is_executable() {
            dir.join(tool.name())
        } else {
            dir.join(tool.file_name(version, &self.platform))
        }
    }

    /// The kind binary of `version` (`v0.29.0`), verified, mode 0755.
    pub async fn kind(&self, version: &str) -> Result<Verified, DownloadError> {
        self.fetch(Tool::Kind, version).await
    }

    /// The minikube binary of `version` (`v1.36.0`), verified, mode 0755.
    pub async fn minikube(&self, version: &str) -> Result<Verified, DownloadError> {
        self.fetch(Tool::Minikube, version).await
    }

    /// The Istio release `version` (`1.30.3`), downloaded, verified and unpacked into
    /// `<cache>/istio-<v>/`, with `bin/istioctl` mode 0755. An unpacked copy made from the
    /// same archive is reused.
    pub async fn istio(&self, version: &str) -> Result<IstioRelease, DownloadError> {
        let version = Tool::Istio.normalize_version(version)?;
        let archive = self.fetch(Tool::Istio, &version).await?;
        let dir = self.cache.join(format!("istio-{version}"));
        let marker = dir.join(EXTRACTED_MARKER);
        let up_to_date = fs::read_to_string(&marker).is_ok_and(|m| m.trim() == archive.sha256)
            && dir.join("samples").is_dir();
        if !up_to_date {
            let (archive_path, sha, dir2) =
                (archive.path.clone(), archive.sha256.clone(), dir.clone());
            tokio::task::spawn_blocking(move || unpack_release(&archive_path, &sha, &dir2))
                .await
                .map_err(|e| DownloadError::Io {
                    what: "unpacking",
                    path: archive.path.clone(),
                    source: io::Error::other(e.to_string()),
                })??;
        }
        let mut rel = use_local_release(&dir)?;
        if let Some(ctl) = &rel.istioctl {
            set_mode(ctl, 0o755)?;
        }
        rel.version = Some(version);
        Ok(rel)
    }

    /// A verified file: from the cache when it is there and matches the lock (no request);
    /// otherwise downloaded, checked against the publisher's checksum file and the lock,
    /// recorded in the lock on first use, and moved into the cache. Mismatches delete the
    /// file.
    pub async fn fetch(&self, tool: Tool, version: &str) -> Result<Verified, DownloadError> {
        let version = tool.normalize_version(version)?;
        let p = &self.platform;
        let url = self.sources.url(tool, &version, p);
        let sum_url = self.sources.checksum_url(tool, &version, p);
        let file = tool.file_name(&version, p);
        let dest = self.cache_path(tool, &version);
        let locked = Lock::load(&self.lock)?
            .find(tool, &version, p)
            .map(|e| e.sha256.to_ascii_lowercase());

        if dest.is_file() {
            let actual = hash_blocking(dest.clone()).await?;
            match &locked {
                Some(l) if *l == actual => {
                    tracing::debug!("{tool} {version}: cached {}", dest.display());
                    return Ok(Verified {
                        path: dest,
                        sha256: actual,
                        url,
                        cached: true,
                    });
                }
                Some(l) => {
                    tracing::warn!(
                        "cached {} has sha256 {actual}, {} records {l}; deleted it, downloading again",
                        dest.display(),
                        self.lock.display()
                    );
                    remove(&dest)?;
                }
                None => {
                    let published = self.published_sum(&sum_url, &file).await?;
                    if published == actual {
                        self.record(tool, &version, &url, &actual)?;
                        return Ok(Verified {
                            path: dest,
                            sha256: actual,
                            url,
                            cached: true,
                        });
                    }
                    tracing::warn!(
                        "cached {} does not match {sum_url}; deleted it, downloading again",
                        dest.display()
                    );
                    remove(&dest)?;
                }
            }
        }

        let published = self.published_sum(&sum_url, &file).await?;
        let parent = dest.parent().unwrap_or(&self.cache).to_path_buf();
        fs::create_dir_all(&parent).map_err(DownloadError::io("cannot create", &parent))?;
        let tmp = temp_sibling(&dest);
        let actual = match self.download(&url, &tmp).await {
            Ok(d) => d,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(e);
            }
        };
        if actual != published {
            remove(&tmp)?;
            return Err(DownloadError::ChecksumMismatch {
                file,
                url,
                expected: published,
                actual,
            });
        }
        if let Some(l) = locked
            && l != actual
        {
            remove(&tmp)?;
            return Err(DownloadError::LockMismatch(Box::new(LockConflict {
                file,
                url,
                lock: self.lock.clone(),
                tool,
                version,
                platform: p.clone(),
                locked: l,
                actual,
            })));
        }
        let mode = if tool.is_executable() { 0o755 } else { 0o644 };
        let installed = set_mode(&tmp, mode)
            .and_then(|_| fs::rename(&tmp, &dest).map_err(DownloadError::io("cannot move", &tmp)));
        if let Err(e) = installed {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        self.record(tool, &version, &url, &actual)?;
        tracing::info!("{tool} {version}: verified {} ({actual})", dest.display());
        Ok(Verified {
            path: dest,
            sha256: actual,
            url,
            cached: false,
        })
    }

    /// Records a verified digest in the lock file unless an entry exists.
    fn record(&self, tool: Tool, version: &str, url: &str, sha: &str) -> Result<(), DownloadError> {
        let _guard = LOCK_WRITE.lock().unwrap_or_else(|e| e.into_inner());
        let mut lock = Lock::load(&self.lock)?;
        if lock.find(tool, version, &self.platform).is_some() {
            return Ok(());
        }
        lock.insert(LockEntry {
            tool: tool.name().into(),
            version: version.into(),
            os: self.platform.os.clone(),
            arch: self.platform.arch.clone(),
            url: url.into(),
            sha256: sha.into(),
        });
        lock.save(&self.lock)
    }

    async fn get(&self, url: &str) -> Result<reqwest::Response, DownloadError> {
        let http = |reason: String| DownloadError::Http {
            url: url.to_string(),
            reason,
        };
        let resp = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| http(error_chain(&e)))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(http(format!("HTTP {status}")));
        }
        Ok(resp)
    }

    async fn published_sum(&self, url: &str, file: &str) -> Result<String, DownloadError> {
        let text = self
            .get(url)
            .await?
            .text()
            .await
            .map_err(|e| DownloadError::Http {
                url: url.into(),
                reason: error_chain(&e),
            })?;
        parse_checksum(&text, file).map_err(|reason| DownloadError::ChecksumFile {
            file: file.into(),
            url: url.into(),
            reason,
        })
    }

    /// Streams `url` into `to`, returning its SHA-256.
    async fn download(&self, url: &str, to: &Path) -> Result<String, DownloadError> {
        tracing::info!("downloading {url}");
        let mut resp = self.get(url).await?;
        let mut out = tokio::fs::File::create(to)
            .await
            .map_err(DownloadError::io("cannot create", to))?;
        let mut h = Sha256::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| DownloadError::Http {
            url: url.into(),
            reason: error_chain(&e),
        })? {
            h.update(&chunk);
            out.write_all(&chunk)
                .await
                .map_err(DownloadError::io("cannot write", to))?;
        }
        out.flush()
            .await
            .map_err(DownloadError::io("cannot write", to))?;
        out.sync_all()
            .await
            .map_err(DownloadError::io("cannot write", to))?;
        Ok(hex::encode(h.finalize()))
    }
}

/// An error and its sources, `: `-joined (reqwest's top-level message alone hides the cause).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

async fn hash_blocking(path: PathBuf) -> Result<String, DownloadError> {
    let p2 = path.clone();
    tokio::task::spawn_blocking(move || sha256_file(&p2))
        .await
        .map_err(|e| io::Error::other(e.to_string()))
        .and_then(|r| r)
        .map_err(DownloadError::io("cannot read", &path))
}

fn remove(path: &Path) -> Result<(), DownloadError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(DownloadError::Io {
            what: "cannot delete",
            path: path.into(),
            source: e,
        }),
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<(), DownloadError> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(DownloadError::io("cannot set the mode of", path))
}

/// A unique temporary name next to `path` (same directory, so a rename is atomic).
fn temp_sibling(path: &Path) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(
        ".{name}.part-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Unpacks a verified Istio archive into `dir` (replacing what is there): into a staging
/// directory first, then the release's top-level directory is moved into place and marked
/// with the archive's digest.
fn unpack_release(archive: &Path, sha: &str, dir: &Path) -> Result<(), DownloadError> {
    let staging = temp_sibling(dir);
    fs::create_dir_all(&staging).map_err(DownloadError::io("cannot create", &staging))?;
    let res = (|| {
        extract_tar_gz(archive, &staging)?;
        let root = content_root(&staging)?;
        // The release root is what stays: links must not point at its siblings either.
        check_symlinks(archive, &root)?;
        use_local_release(&root)?;
        fs::write(root.join(EXTRACTED_MARKER), format!("{sha}\n"))
            .map_err(DownloadError::io("cannot write", &root))?;
        if dir.exists() {
            fs::remove_dir_all(dir).map_err(DownloadError::io("cannot replace", dir))?;
        }
        fs::rename(&root, dir).or_else(|e| {
            // Another process unpacked the same archive first: use its copy.
            let theirs = fs::read_to_string(dir.join(EXTRACTED_MARKER));
            if theirs.is_ok_and(|m| m.trim() == sha) {
                Ok(())
            } else {
                Err(DownloadError::io("cannot move", &root)(e))
            }
        })
    })();
    let _ = fs::remove_dir_all(&staging);
    res
}

/// The release's own directory in a staging directory: its single top-level directory
/// (`istio-<v>/`), else the staging directory itself.
fn content_root(staging: &Path) -> Result<PathBuf, DownloadError> {
    let entries: Vec<fs::DirEntry> = fs::read_dir(staging)
        .map_err(DownloadError::io("cannot read", staging))?
        .collect::<Result<_, _>>()
        .map_err(DownloadError::io("cannot read", staging))?;
    if let [one] = entries.as_slice()
        && one.file_type().is_ok_and(|t| t.is_dir())
    {
        return Ok(one.path());
    }
    Ok(staging.to_path_buf())
}

/// Unpacks a `.tar.gz` into the existing directory `dest`, refusing (before writing it) any
/// entry whose path is absolute or has `..`, that would be written through a symlink, or
/// that is not a file, directory or link; symlinks are created last and must resolve inside
/// `dest`. On error `dest` may hold a partial tree: unpack into a fresh directory and
/// delete it on failure.
pub fn extract_tar_gz(archive: &Path, dest: &Path) -> Result<(), DownloadError> {
    let file = fs::File::open(archive).map_err(DownloadError::io("cannot open", archive))?;
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(io::BufReader::new(file)));
    let read_err = DownloadError::io("cannot read the archive", archive);
    let unsafe_entry = |entry: &Path, reason: String| DownloadError::UnsafeEntry {
        archive: archive.to_path_buf(),
        entry: entry.display().to_string(),
        reason,
    };
    let mut symlinks: Vec<(PathBuf, PathBuf, PathBuf)> = Vec::new();
    for entry in ar.entries().map_err(read_err)? {
        let mut entry = entry.map_err(DownloadError::io("cannot read the archive", archive))?;
        let raw = entry
            .path()
            .map_err(DownloadError::io("cannot read the archive", archive))?
            .into_owned();
        let rel = safe_relative(&raw).map_err(|why| unsafe_entry(&raw, why))?;
        let ty = entry.header().entry_type();
        if matches!(
            ty,
            tar::EntryType::XGlobalHeader
                | tar::EntryType::XHeader
                | tar::EntryType::GNULongName
                | tar::EntryType::GNULongLink
        ) {
            continue;
        }
        if rel.as_os_str().is_empty() {
            if ty.is_dir() {
                continue;
            }
            return Err(unsafe_entry(&raw, "has an empty path".into()));
        }
        no_symlink_on_the_way(dest, &rel).map_err(|why| unsafe_entry(&raw, why))?;
        let out = dest.join(&rel);
        match ty {
            tar::EntryType::Directory => {
                fs::create_dir_all(&out).map_err(DownloadError::io("cannot create", &out))?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                make_parent(&out)?;
                let mut f =
                    fs::File::create(&out).map_err(DownloadError::io("cannot create", &out))?;
                io::copy(&mut entry, &mut f).map_err(DownloadError::io("cannot write", &out))?;
                let mode = entry.header().mode().unwrap_or(0o644) & 0o755 | 0o600;
                set_mode(&out, mode)?;
            }
            tar::EntryType::Link => {
                let target = link_target(&mut entry, archive)?;
                let trel = safe_relative(&target).map_err(|why| {
                    unsafe_entry(
                        &raw,
                        format!("is a hard link to `{}`, which {why}", target.display()),
                    )
                })?;
                let src = dest.join(&trel);
                let src_ok = no_symlink_on_the_way(dest, &trel).is_ok()
                    && fs::symlink_metadata(&src).is_ok_and(|m| m.is_file());
                if !src_ok {
                    return Err(unsafe_entry(
                        &raw,
                        format!(
                            "is a hard link to `{}`, which is not a file unpacked before it",
                            target.display()
                        ),
                    ));
                }
                make_parent(&out)?;
                fs::copy(&src, &out).map_err(DownloadError::io("cannot write", &out))?;
            }
            tar::EntryType::Symlink => {
                let target = link_target(&mut entry, archive)?;
                if target.has_root() {
                    return Err(unsafe_entry(
                        &raw,
                        format!("is a symlink to the absolute path `{}`", target.display()),
                    ));
                }
                if lexically_escapes(&rel, &target) {
                    return Err(unsafe_entry(
                        &raw,
                        format!(
                            "is a symlink to `{}`, which points outside the target directory",
                            target.display()
                        ),
                    ));
                }
                symlinks.push((raw.clone(), rel, target));
            }
            other => {
                return Err(unsafe_entry(
                    &raw,
                    format!("has type {other:?}; only files, directories and links are unpacked"),
                ));
            }
        }
    }
    for (raw, rel, target) in &symlinks {
        no_symlink_on_the_way(dest, rel).map_err(|why| unsafe_entry(raw, why))?;
        let out = dest.join(rel);
        make_parent(&out)?;
        std::os::unix::fs::symlink(target, &out)
            .map_err(|e| unsafe_entry(raw, format!("cannot be created as a symlink ({e})")))?;
    }
    check_symlinks(archive, dest)
}

fn link_target<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    archive: &Path,
) -> Result<PathBuf, DownloadError> {
    entry
        .link_name()
        .map_err(DownloadError::io("cannot read the archive", archive))?
        .map(|p| p.into_owned())
        .ok_or_else(|| DownloadError::UnsafeEntry {
            archive: archive.to_path_buf(),
            entry: entry
                .path()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            reason: "is a link without a target".into(),
        })
}

fn make_parent(path: &Path) -> Result<(), DownloadError> {
    if let Some(p) = path.parent() {
        fs::create_dir_all(p).map_err(DownloadError::io("cannot create", p))?;
    }
    Ok(())
}

/// The entry path as plain relative components; `Err` for absolute paths and `..`.
fn safe_relative(p: &Path) -> Result<PathBuf, String> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::ParentDir => {
                return Err(
                    "has a `..` component and would land outside the target directory".into(),
                );
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(
                    "is an absolute path and would land outside the target directory".into(),
                );
            }
        }
    }
    Ok(out)
}

/// `Err` when `rel` or one of its parent directories under `root` is a symlink (writing
/// there would follow it).
fn no_symlink_on_the_way(root: &Path, rel: &Path) -> Result<(), String> {
    let mut p = root.to_path_buf();
    for c in rel.components() {
        p.push(c);
        if fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(format!(
                "would be written through the symlink `{}`",
                p.strip_prefix(root).unwrap_or(&p).display()
            ));
        }
    }
    Ok(())
}

/// True when `target`, read from the directory of `link` (both relative to the root), climbs
/// above the root without following any symlinks.
fn lexically_escapes(link: &Path, target: &Path) -> bool {
    let mut depth = link.components().count().saturating_sub(1) as isize;
    for c in target.components() {
        match c {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return true,
        }
        if depth < 0 {
            return true;
        }
    }
    false
}

/// Checks every symlink under `root` (not following directory symlinks) resolves inside
/// `root`, following chains of links as the kernel would.
fn check_symlinks(archive: &Path, root: &Path) -> Result<(), DownloadError> {
    let mut dirs = vec![root.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in fs::read_dir(&d).map_err(DownloadError::io("cannot read", &d))? {
            let e = e.map_err(DownloadError::io("cannot read", &d))?;
            let ft = e
                .file_type()
                .map_err(DownloadError::io("cannot read", &e.path()))?;
            let path = e.path();
            if ft.is_symlink() {
                let rel = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
                resolves_inside(root, &rel).map_err(|why| DownloadError::UnsafeEntry {
                    archive: archive.to_path_buf(),
                    entry: rel.display().to_string(),
                    reason: why,
                })?;
            } else if ft.is_dir() {
                dirs.push(path);
            }
        }
    }
    Ok(())
}

/// Resolves the symlink at `rel` (relative to `root`) component by component, following
/// the links it meets; `Err` when it would leave `root`.
fn resolves_inside(root: &Path, rel: &Path) -> Result<(), String> {
    let mut stack: Vec<OsString> = rel
        .parent()
        .map(|p| p.iter().map(|c| c.to_os_string()).collect())
        .unwrap_or_default();
    let first = fs::read_link(root.join(rel)).map_err(|e| format!("cannot be read ({e})"))?;
    let shown = first.display().to_string();
    let outside = || format!("is a symlink to `{shown}`, which points outside the release");
    let mut queue: VecDeque<OsString> = VecDeque::new();
    let mut hops = 0;
    push_front(&mut queue, &first).map_err(|_| outside())?;
    while let Some(c) = queue.pop_front() {
        if c == "." {
            continue;
        }
        if c == ".." {
            if stack.pop().is_none() {
                return Err(outside());
            }
            continue;
        }
        stack.push(c);
        let here: PathBuf = stack.iter().fold(root.to_path_buf(), |p, c| p.join(c));
        if fs::symlink_metadata(&here).is_ok_and(|m| m.file_type().is_symlink()) {
            hops += 1;
            if hops > MAX_SYMLINK_HOPS {
                return Err(format!("is a symlink to `{shown}`, which loops"));
            }
            let t = fs::read_link(&here).map_err(|e| format!("cannot be read ({e})"))?;
            stack.pop();
            push_front(&mut queue, &t).map_err(|_| outside())?;
        }
    }
    Ok(())
}

/// Puts a link target's components in front of the queue; `Err` for absolute targets.
fn push_front(queue: &mut VecDeque<OsString>, target: &Path) -> Result<(), ()> {
    let mut parts = Vec::new();
    for c in target.components() {
        match c {
            Component::Normal(n) => parts.push(n.to_os_string()),
            Component::CurDir => {}
            Component::ParentDir => parts.push("..".into()),
            Component::RootDir | Component::Prefix(_) => return Err(()),
        }
    }
    for p in parts.into_iter().rev() {
        queue.push_front(p);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_map_to_publisher_names() {
        let p = Platform::from_rust("macos", "x86_64").unwrap();
        assert_eq!((p.os.as_str(), p.arch.as_str()), ("darwin", "amd64"));
        assert_eq!(p.istio_suffix(), "osx");
        assert_eq!(
            Platform::new("darwin", "arm64").unwrap().istio_suffix(),
            "osx-arm64"
        );
        assert_eq!(
            Platform::new("linux", "arm64").unwrap().istio_suffix(),
            "linux-arm64"
        );
        assert!(Platform::from_rust("windows", "x86_64").is_err());
        let linux = Platform::new("linux", "amd64").unwrap();
        assert_eq!(
            Tool::Istio.file_name("1.30.3", &linux),
            "istio-1.30.3-linux-amd64.tar.gz"
        );
        assert_eq!(Tool::Kind.file_name("v0.29.0", &linux), "kind-linux-amd64");
    }

    #[test]
    fn default_sources_are_the_publishers() {
        let s = Sources::default();
        let p = Platform::new("darwin", "amd64").unwrap();
        assert_eq!(
            s.checksum_url(Tool::Istio, "1.12.1", &p),
            "https://github.com/istio/istio/releases/download/1.12.1/istio-1.12.1-osx.tar.gz.sha256"
        );
        let l = Platform::new("linux", "amd64").unwrap();
        assert_eq!(
            s.checksum_url(Tool::Kind, "v0.29.0", &l),
            "https://github.com/kubernetes-sigs/kind/releases/download/v0.29.0/kind-linux-amd64.sha256sum"
        );
        assert_eq!(
            s.url(Tool::Minikube, "v1.36.0", &l),
            "https://storage.googleapis.com/minikube/releases/v1.36.0/minikube-linux-amd64"
        );
    }

    #[test]
    fn versions_are_normalized_and_never_paths() {
        assert_eq!(Tool::Istio.normalize_version("v1.30.3").unwrap(), "1.30.3");
        assert_eq!(Tool::Kind.normalize_version("0.29.0").unwrap(), "v0.29.0");
        assert_eq!(
            Tool::Istio.normalize_version("1.31.0-beta.1").unwrap(),
            "1.31.0-beta.1"
        );
        for bad in ["", "../1.2", "1.2/3", "latest", "1..2"] {
            assert!(Tool::Istio.normalize_version(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn checksum_files_in_all_three_formats() {
        let h = "ab".repeat(32);
        assert_eq!(
            parse_checksum(&format!("{h}\n"), "minikube-linux-amd64"),
            Ok(h.clone())
        );
        assert_eq!(
            parse_checksum(&format!("{h}  kind-linux-amd64\n"), "kind-linux-amd64"),
            Ok(h.clone())
        );
        let other = "cd".repeat(32);
        let two = format!(
            "{other}  istio-1-osx.tar.gz\n{}  *istio-1-linux-amd64.tar.gz\n",
            h.to_uppercase()
        );
        assert_eq!(parse_checksum(&two, "istio-1-linux-amd64.tar.gz"), Ok(h));
        assert!(parse_checksum("", "x").is_err());
        assert!(
            parse_checksum("<html>Not Found</html>", "x")
                .unwrap_err()
                .contains("no SHA-256")
        );
    }

    #[test]
    fn cache_root_follows_xdg() {
        assert_eq!(
            cache_root_from(Some("/x".into()), Some("/home/u".into())).unwrap(),
            PathBuf::from("/x/istio-e2e")
        );
        assert_eq!(
            cache_root_from(Some("rel".into()), Some("/home/u".into())).unwrap(),
            PathBuf::from("/home/u/.cache/istio-e2e")
        );
        assert!(cache_root_from(None, None).is_err());
    }

    #[test]
    fn lexical_escape() {
        assert!(!lexically_escapes(Path::new("a/b/l"), Path::new("../c")));
        assert!(!lexically_escapes(Path::new("a/b/l"), Path::new("../../c")));
        assert!(lexically_escapes(
            Path::new("a/b/l"),
            Path::new("../../../c")
        ));
        assert!(lexically_escapes(Path::new("l"), Path::new("x/../../y")));
    }
}
