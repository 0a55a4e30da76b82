//! The Istio release files some tests read (Bookinfo, the addons, the CRDs): the release that
//! `ISTIO_E2E_ISTIO_DIR` names (an unpacked `istio-<version>/` directory, or a directory of
//! releases named by version, as `--istio-dir` takes it), else the release downloaded and
//! verified as a run would download it. When neither can be had the test fails saying what to
//! set, unless `ISTIO_E2E_SKIP_MISSING_TOOLS=1`: then it says plainly that it did not run.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The repository's root (the lock file lives there).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Istio `version`'s unpacked release directory, or `None` (after saying so) when it cannot
/// be had and missing things may be skipped; `test` names the caller in that message.
pub async fn istio_release(version: &str, test: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("ISTIO_E2E_ISTIO_DIR").map(PathBuf::from);
    let lock = root().join(harness::download::LOCK_FILE);
    let found = harness::download::prepare_istio(dir.as_deref(), Some(version), &lock).await;
    let why = match found {
        Ok(Some(rel)) => return Some(rel.dir),
        Ok(None) => "no release was found".to_string(),
        Err(e) => e.to_string(),
    };
    let msg = format!(
        "{test} needs the Istio {version} release files and could not get them: {why}. \
         Set ISTIO_E2E_ISTIO_DIR to an unpacked istio-{version}/ directory (or to a directory \
         holding it as {version}/), or run where the release can be downloaded."
    );
    if std::env::var("ISTIO_E2E_SKIP_MISSING_TOOLS").as_deref() == Ok("1") {
        eprintln!("NOT RUN: {msg}");
        return None;
    }
    panic!("{msg}");
}

/// [`istio_release`] from synchronous code (its own runtime).
pub fn istio_release_blocking(version: &str, test: &str) -> Option<PathBuf> {
    tokio::runtime::Runtime::new()
        .expect("a tokio runtime")
        .block_on(istio_release(version, test))
}

/// The Gateway API `version` CRDs as a run gets them (`ISTIO_E2E_GATEWAY_API_DIR`, else a
/// download), verified; `None` (after saying so) as [`istio_release`] does.
pub async fn gateway_api(version: &str, test: &str) -> Option<PathBuf> {
    let local = std::env::var_os("ISTIO_E2E_GATEWAY_API_DIR").map(PathBuf::from);
    let cache = std::env::temp_dir().join("istio-e2e-test-cache");
    let why = match harness::download::gateway_api::prepare(local.as_deref(), version, &cache).await
    {
        Ok(p) => return Some(p),
        Err(e) => e.to_string(),
    };
    let msg = format!(
        "{test} needs the Gateway API {version} CRDs and could not get them: {why}. Set \
         ISTIO_E2E_GATEWAY_API_DIR to a directory holding {version}/standard-install.yaml, or \
         run where it can be downloaded."
    );
    if std::env::var("ISTIO_E2E_SKIP_MISSING_TOOLS").as_deref() == Ok("1") {
        eprintln!("NOT RUN: {msg}");
        return None;
    }
    panic!("{msg}");
}
