//! Fetching one release file: from the cache when it matches the lock, else downloaded,
//! checked against the publisher's checksum file and the lock, and moved into the cache.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::extract::unpack_cached;
use super::lock::{Lock, LockEntry};
use super::{
    DownloadError, IstioRelease, LockConflict, Platform, Sources, Tool, remove, set_mode,
    temp_sibling, use_local_release,
};
use crate::filelock::FileLock;

/// What is wrong with a publisher's checksum file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChecksumProblem {
    /// It has no non-blank line.
    #[error("the checksum file is empty")]
    Empty,
    /// No line holds a digest for the file.
    #[error("no SHA-256 for {file} in it (first line: {first_line:?})")]
    Missing {
        /// The file the digest was looked for.
        file: String,
        /// Its first line, at most 120 characters.
        first_line: String,
    },
    /// Several bare digests: which one is meant cannot be told.
    #[error("it has several digests and no file names")]
    Ambiguous,
}

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpFailure {
    /// The server answered with a non-success status.
    #[error("HTTP {0}")]
    Status(reqwest::StatusCode),
    /// No answer, or the body broke off: the error and its causes.
    #[error("{}", error_chain(.0))]
    Transport(reqwest::Error),
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(reqwest::Error),
}

/// Parses a publisher's checksum file: `<hex>` alone, or `<hex>  <file>` lines (as
/// `sha256sum` writes them, `*` binary marker allowed). With file names, the line for
/// `file_name` is used. Returns lower-case hex.
pub fn parse_checksum(text: &str, file_name: &str) -> Result<String, ChecksumProblem> {
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
        [] => match lines.first() {
            None => Err(ChecksumProblem::Empty),
            Some(first) => Err(ChecksumProblem::Missing {
                file: file_name.to_string(),
                first_line: first.chars().take(120).collect(),
            }),
        },
        _ => Err(ChecksumProblem::Ambiguous),
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
    /// The file (kind: an executable named after the tool).
    pub path: PathBuf,
    /// Its SHA-256, as in the lock.
    pub sha256: String,
    /// Where it comes from.
    pub url: String,
    /// True when the file was already in the cache (not downloaded again). No request was
    /// made when its lock entry existed; otherwise only the checksum file was fetched.
    pub cached: bool,
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
                reason: HttpFailure::Client(e),
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

    /// Where a (normalized) version of a tool is cached:
    /// `<cache>/<tool>/<version>/<os>-<arch>/<file>`, where `<file>` is `kind`
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

    /// The Istio release `version` (`1.30.3`), downloaded, verified and unpacked into
    /// `<cache>/istio-<v>/`, with `bin/istioctl` mode 0755. An unpacked copy made from the
    /// same archive is reused.
    pub async fn istio(&self, version: &str) -> Result<IstioRelease, DownloadError> {
        let version = Tool::Istio.normalize_version(version)?;
        let archive = self.fetch(Tool::Istio, &version).await?;
        let dir = self.cache.join(format!("istio-{version}"));
        unpack_cached(&archive, &dir).await?;
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
    ///
    /// One cache entry is filled by one thread or process at a time: the others wait on its
    /// guard file ([`crate::filelock`]) and then find it cached, so trials running at once
    /// download a release once and never see a half-written file.
    pub async fn fetch(&self, tool: Tool, version: &str) -> Result<Verified, DownloadError> {
        let version = tool.normalize_version(version)?;
        let dest = self.cache_path(tool, &version);
        let guard = crate::filelock::guard_path(&dest);
        let what = format!("to fetch {tool} {version} into the cache");
        let _held = FileLock::acquire_async(guard.clone(), what)
            .await
            .map_err(DownloadError::io("cannot lock", &guard))?;
        self.fetch_locked(tool, version, dest).await
    }

    /// [`Downloader::fetch`] once the cache entry's guard is held.
    async fn fetch_locked(
        &self,
        tool: Tool,
        version: String,
        dest: PathBuf,
    ) -> Result<Verified, DownloadError> {
        let p = &self.platform;
        let url = self.sources.url(tool, &version, p);
        let sum_url = self.sources.checksum_url(tool, &version, p);
        let file = tool.file_name(&version, p);
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
        let entry = LockEntry {
            tool: tool.name().into(),
            version: version.into(),
            os: self.platform.os.clone(),
            arch: self.platform.arch.clone(),
            url: url.into(),
            sha256: sha.into(),
        };
        Lock::update(&self.lock, |lock| {
            if lock.find(tool, version, &self.platform).is_none() {
                lock.insert(entry);
            }
        })
    }

    async fn get(&self, url: &str) -> Result<reqwest::Response, DownloadError> {
        let http = |reason| DownloadError::Http {
            url: url.to_string(),
            reason,
        };
        let resp = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| http(HttpFailure::Transport(e)))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(http(HttpFailure::Status(status)));
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
                reason: HttpFailure::Transport(e),
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
            reason: HttpFailure::Transport(e),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_files_in_all_three_formats() {
        let h = "ab".repeat(32);
        assert_eq!(
            parse_checksum(&format!("{h}\n"), "kind-linux-amd64"),
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
                .to_string()
                .contains("no SHA-256")
        );
    }
}
