//! The lock file ([`LOCK_FILE`]): the verified SHA-256 of every release file, recorded on
//! first use and checked on every later download.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::filelock::FileLock;

use super::{DownloadError, Platform, Tool, temp_sibling};

/// The lock file's name, at the repository root.
pub const LOCK_FILE: &str = "istio-e2e.lock";

/// What went wrong with the lock file.
#[derive(Debug, thiserror::Error)]
pub enum LockProblem {
    /// It exists but cannot be read.
    #[error("{0}")]
    Read(io::Error),
    /// It is not a lock file.
    #[error("not a valid lock file ({0}); fix it or restore it from git")]
    Invalid(serde_json::Error),
    /// It cannot be serialized (not expected to happen).
    #[error("{0}")]
    Encode(serde_json::Error),
    /// It cannot be written.
    #[error("cannot write it: {0}")]
    Write(io::Error),
    /// Its guard file (which serialises writers across processes) cannot be locked.
    #[error("cannot lock its guard file {}: {source}", guard.display())]
    Guard {
        /// The guard file.
        guard: PathBuf,
        /// Why it cannot be locked.
        source: io::Error,
    },
}

/// One recorded download in the lock file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockEntry {
    /// `istio` or `kind` (see [`Tool::name`]).
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

impl Lock {
    /// Reads a lock file; a missing file is an empty lock.
    pub fn load(path: &Path) -> Result<Lock, DownloadError> {
        let text = match fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Lock::default()),
            Err(e) => {
                return Err(DownloadError::Lock {
                    path: path.into(),
                    reason: LockProblem::Read(e),
                });
            }
        };
        serde_json::from_str(&text).map_err(|e| DownloadError::Lock {
            path: path.into(),
            reason: LockProblem::Invalid(e),
        })
    }

    /// Reads the lock file at `path`, lets `change` edit it and writes it back if it changed, holding the
    /// file's guard ([`crate::filelock`]) throughout: writers in other threads and processes
    /// (trials running at once) wait, so none loses another's entries. It blocks while another
    /// writer holds the guard, which is only for the read and write of this small file.
    pub fn update<T>(path: &Path, change: impl FnOnce(&mut Lock) -> T) -> Result<T, DownloadError> {
        let guard = crate::filelock::guard_path(path);
        let _held = FileLock::acquire(&guard, "writing this lock file").map_err(|e| {
            DownloadError::Lock {
                path: path.into(),
                reason: LockProblem::Guard {
                    guard: guard.clone(),
                    source: e,
                },
            }
        })?;
        let mut lock = Lock::load(path)?;
        let before = lock.clone();
        let out = change(&mut lock);
        if lock != before {
            lock.save(path)?;
        }
        Ok(out)
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
            reason: LockProblem::Encode(e),
        })?;
        text.push('\n');
        let tmp = temp_sibling(path);
        let res = fs::write(&tmp, text).and_then(|_| fs::rename(&tmp, path));
        if let Err(e) = res {
            let _ = fs::remove_file(&tmp);
            return Err(DownloadError::Lock {
                path: path.into(),
                reason: LockProblem::Write(e),
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
