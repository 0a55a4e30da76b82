//! Downloads of kind and Istio releases, verified before anything runs them.
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
//!
//! Istio releases are unpacked into `<cache>/istio-<v>/`; entries that would land outside it
//! (absolute paths, `..`, symlinks pointing outside) are refused. Air-gapped users point the
//! harness at an unpacked release instead ([`use_local_release`]).
//!
//! Trials running at once (threads of one process, or processes as `cargo nextest` starts
//! them) share the cache and the lock file: each cache entry is filled, and each release
//! unpacked, by one of them at a time while the others wait on its guard file, and every
//! write of the lock file is a locked read-modify-write ([`Lock::update`]); see
//! [`crate::filelock`].
//!
//! | module | what |
//! |---|---|
//! | `platform` | [`Tool`], [`Platform`] and the [`Sources`] URL templates |
//! | `lock` | the lock file: [`Lock`], [`LockEntry`] |
//! | `fetch` | [`Downloader`]: cache, publisher's checksum, lock, download |
//! | `extract` | [`extract_tar_gz`]: unpacking that refuses entries leaving the target |

mod extract;
mod fetch;
pub mod gateway_api;
mod lock;
mod platform;

use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

pub use extract::{UnsafeReason, extract_tar_gz};

pub use fetch::{ChecksumProblem, Downloader, HttpFailure, Verified, parse_checksum, sha256_file};
pub use lock::{LOCK_FILE, Lock, LockEntry, LockProblem};
pub use platform::{Platform, Sources, Tool};

use crate::error::StepError;

/// Why a download, a verification or an extraction failed. Every message names the file
/// and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// The version string is not a release version.
    #[error(
        "`{version}` is not a {tool} release version (expected something like {example})",
        example = tool.example_version()
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
        reason: HttpFailure,
    },
    /// The publisher's checksum file could not be read.
    #[error("cannot read the checksum for {file} from {url}: {reason}")]
    ChecksumFile {
        /// The file the checksum is for.
        file: String,
        /// The checksum file's URL.
        url: String,
        /// What was wrong with it.
        reason: ChecksumProblem,
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
        reason: LockProblem,
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
        reason: UnsafeReason,
    },
    /// A directory given as an Istio release is not one.
    #[error("{dir} does not look like an Istio release: {reason}")]
    NotARelease {
        /// The directory.
        dir: PathBuf,
        /// What is missing.
        reason: NotAReleaseReason,
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
                "point --istio-dir at the unpacked istio-<version>/ directory (the one with bin/ and samples/), or at a directory holding releases named by version (<dir>/<version>/)"
            }
            _ => return None,
        })
    }
}

impl From<DownloadError> for StepError {
    fn from(e: DownloadError) -> Self {
        let transient = matches!(e, DownloadError::Http { .. });
        let hint = e.hint().map(String::from);
        StepError::classified(e.to_string(), transient, hint)
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

/// An Istio release directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IstioRelease {
    /// The unpacked `istio-<v>/` directory (with `samples/`).
    pub dir: PathBuf,
    /// `<dir>/bin/istioctl`, when present (always, for downloads).
    pub istioctl: Option<PathBuf>,
    /// The release's version, from its `manifest.yaml` (or the version downloaded).
    pub version: Option<String>,
}

/// Where a release keeps the file with all of Istio's CRDs, newest layout first: since about
/// 1.24 `manifests/charts/base/files/crd-all.gen.yaml` (the base chart's templates include it),
/// before that `manifests/charts/base/crds/crd-all.gen.yaml` (Helm's crds/ directory).
pub const CRD_FILES: [&str; 2] = [
    "manifests/charts/base/files/crd-all.gen.yaml",
    "manifests/charts/base/crds/crd-all.gen.yaml",
];

/// The release's file of all Istio CRDs (the `${istio.crds}` variable), when it has one.
pub fn release_crds(dir: &Path) -> Option<PathBuf> {
    CRD_FILES.iter().map(|f| dir.join(f)).find(|p| p.is_file())
}

/// True when `dir` is not a release but holds some (a child directory with `samples/`).
pub fn holds_releases(dir: &Path) -> bool {
    !dir.join("samples").is_dir()
        && fs::read_dir(dir)
            .is_ok_and(|entries| entries.flatten().any(|e| e.path().join("samples").is_dir()))
}

/// The release directory a run uses for `--istio-dir DIR` and the wanted `version`: `DIR`
/// itself when it is a release (it has `samples/`), else `DIR/<version>` or
/// `DIR/istio-<version>` when one of those is (a directory of releases named by version, so
/// one setting serves every entry of a matrix), else `DIR` (which [`use_local_release`] then
/// refuses, saying why).
pub fn release_dir(dir: &Path, version: Option<&str>) -> PathBuf {
    if dir.join("samples").is_dir() {
        return dir.to_path_buf();
    }
    version
        .into_iter()
        .flat_map(|v| [dir.join(v), dir.join(format!("istio-{v}"))])
        .find(|d| d.join("samples").is_dir())
        .unwrap_or_else(|| dir.to_path_buf())
}

/// Why a directory is not an unpacked Istio release.
#[derive(Debug, thiserror::Error)]
pub enum NotAReleaseReason {
    /// It cannot be read.
    #[error("cannot read it ({0})")]
    Unreadable(io::Error),
    /// It is a file.
    #[error("it is not a directory")]
    NotADirectory,
    /// It has no `samples/`.
    #[error("it has no samples/ directory (expected the unpacked istio-<version>/ directory)")]
    NoSamples,
}

/// Checks that `dir` looks like an unpacked Istio release (a `samples/` directory;
/// `bin/istioctl` is optional), for air-gapped users (`--istio-dir DIR`).
pub fn use_local_release(dir: &Path) -> Result<IstioRelease, DownloadError> {
    let not = |reason| DownloadError::NotARelease {
        dir: dir.to_path_buf(),
        reason,
    };
    let meta = fs::metadata(dir).map_err(|e| not(NotAReleaseReason::Unreadable(e)))?;
    if !meta.is_dir() {
        return Err(not(NotAReleaseReason::NotADirectory));
    }
    if !dir.join("samples").is_dir() {
        return Err(not(NotAReleaseReason::NoSamples));
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
        version,
    })
}

/// What a run uses for Istio: the local release `dir` when given (resolved for `version` by
/// [`release_dir`], checked with [`use_local_release`]); else the release `version`, downloaded into the default cache and
/// checked against the lock file `lock` (normally `<repository>/istio-e2e.lock`).
/// `Ok(None)` when neither is given.
pub async fn prepare_istio(
    dir: Option<&Path>,
    version: Option<&str>,
    lock: &Path,
) -> Result<Option<IstioRelease>, DownloadError> {
    if let Some(d) = dir {
        return use_local_release(&release_dir(d, version)).map(Some);
    }
    let Some(v) = version else {
        return Ok(None);
    };
    let dl = Downloader::new(default_cache_root()?, lock.to_path_buf())?;
    dl.istio(v).await.map(Some)
}

/// Deletes a file; one that is already gone is fine.
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

/// Sets a file's permission bits.
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

#[cfg(test)]
mod tests {
    use super::*;

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

    /// A release in the layout of `version`, with its CRD file at `crds` (relative).
    fn fake_release(parent: &Path, name: &str, crds: &str) -> PathBuf {
        let d = parent.join(name);
        fs::create_dir_all(d.join("samples")).unwrap();
        fs::create_dir_all(d.join(crds).parent().unwrap()).unwrap();
        fs::write(d.join(crds), "# crds\n").unwrap();
        d
    }

    #[test]
    fn a_directory_of_releases_serves_each_version() {
        let tmp = tempfile::tempdir().unwrap();
        let old = fake_release(tmp.path(), "1.12.1", CRD_FILES[1]);
        let new = fake_release(tmp.path(), "istio-1.30.3", CRD_FILES[0]);
        // a release itself is used as it is, whatever version is asked for
        assert_eq!(release_dir(&old, Some("1.30.3")), old);
        // a directory of releases gives the one of the version (bare or istio-<v>)
        assert_eq!(release_dir(tmp.path(), Some("1.12.1")), old);
        assert_eq!(release_dir(tmp.path(), Some("1.30.3")), new);
        // an unknown version, or none, leaves the directory (refused later, saying why)
        assert_eq!(release_dir(tmp.path(), Some("1.99.0")), tmp.path());
        assert_eq!(release_dir(tmp.path(), None), tmp.path());
        assert!(holds_releases(tmp.path()) && !holds_releases(&old));
        assert!(matches!(
            use_local_release(&release_dir(tmp.path(), Some("1.99.0"))),
            Err(DownloadError::NotARelease {
                reason: NotAReleaseReason::NoSamples,
                ..
            })
        ));
        // each layout's CRD file is found where that release keeps it
        assert_eq!(release_crds(&old), Some(old.join(CRD_FILES[1])));
        assert_eq!(release_crds(&new), Some(new.join(CRD_FILES[0])));
        assert_eq!(release_crds(tmp.path()), None);
    }
}
