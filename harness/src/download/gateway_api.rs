//! The Kubernetes Gateway API CRDs (`standard-install.yaml` of a release of
//! kubernetes-sigs/gateway-api), which istio.io's getting-started installs when a cluster lacks
//! them: `${gateway-api.crds}` in a scenario that names `gateway-api: { version: v1.5.1 }`.
//!
//! The file comes from `ISTIO_E2E_GATEWAY_API_DIR` when set (air-gapped machines: a directory
//! with `<version>/standard-install.yaml`, or that file itself), else it is downloaded from the
//! release into the cache. Either way its SHA-256 must be the one pinned here: the project
//! publishes no checksum file, so the digest is part of this code, as a lock entry would be.

use std::path::{Path, PathBuf};

use super::fetch::sha256_file;

/// The releases the harness knows, with the SHA-256 of their `standard-install.yaml`.
/// v1.5.1 is the version Istio 1.30 builds against (its go.mod's `sigs.k8s.io/gateway-api`).
pub const PINNED: &[(&str, &str)] = &[(
    "v1.5.1",
    "4ca80f21da038649c9450d8e4cf2dd8844a7f949ed24474a71c2ea7dd9c73df6",
)];

/// The file a release publishes with the standard-channel CRDs.
pub const FILE: &str = "standard-install.yaml";

/// Why the Gateway API CRDs could not be had.
#[derive(Debug, thiserror::Error)]
pub enum GatewayApiError {
    /// The version has no pinned digest.
    #[error("Gateway API {version} has no pinned SHA-256 (known: {known})")]
    NotPinned {
        /// The version asked for.
        version: String,
        /// The versions pinned.
        known: String,
    },
    /// The local file is missing or unreadable.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file's digest is not the pinned one.
    #[error("{path} has SHA-256 {actual}, but Gateway API {version} is pinned to {pinned}")]
    Digest {
        /// The file.
        path: PathBuf,
        /// The version.
        version: String,
        /// What it has.
        actual: String,
        /// What it must have.
        pinned: String,
    },
    /// The download failed.
    #[error("GET {url} failed: {reason}")]
    Http {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
}

impl GatewayApiError {
    /// What to try.
    pub fn hint(&self) -> &'static str {
        match self {
            GatewayApiError::NotPinned { .. } => {
                "use a pinned version, or add the version and its digest to download::gateway_api::PINNED"
            }
            GatewayApiError::Http { .. } => {
                "check the network; air-gapped: set ISTIO_E2E_GATEWAY_API_DIR to a directory with <version>/standard-install.yaml"
            }
            _ => {
                "set ISTIO_E2E_GATEWAY_API_DIR to a directory with <version>/standard-install.yaml of that release"
            }
        }
    }
}

impl From<GatewayApiError> for crate::error::StepError {
    fn from(e: GatewayApiError) -> Self {
        let transient = matches!(e, GatewayApiError::Http { .. });
        let hint = Some(e.hint().to_string());
        crate::error::StepError::classified(e.to_string(), transient, hint)
    }
}

/// The pinned digest of `version`.
fn pinned(version: &str) -> Result<&'static str, GatewayApiError> {
    PINNED
        .iter()
        .find(|(v, _)| *v == version)
        .map(|(_, sum)| *sum)
        .ok_or_else(|| GatewayApiError::NotPinned {
            version: version.into(),
            known: PINNED
                .iter()
                .map(|(v, _)| *v)
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// Checks `path` against the digest pinned for `version`.
pub fn verify(path: &Path, version: &str) -> Result<(), GatewayApiError> {
    let want = pinned(version)?;
    let actual = sha256_file(path).map_err(|source| GatewayApiError::Read {
        path: path.into(),
        source,
    })?;
    if actual != want {
        return Err(GatewayApiError::Digest {
            path: path.into(),
            version: version.into(),
            actual,
            pinned: want.into(),
        });
    }
    Ok(())
}

/// The verified `standard-install.yaml` of `version`: under `local` when given
/// (`<local>/<version>/standard-install.yaml`, or `local` itself when it is that file), else
/// downloaded once into `<cache>/gateway-api/<version>/`.
pub async fn prepare(
    local: Option<&Path>,
    version: &str,
    cache: &Path,
) -> Result<PathBuf, GatewayApiError> {
    let version = format!("v{}", version.trim().trim_start_matches('v'));
    pinned(&version)?;
    let path = match local {
        Some(l) if l.is_file() => l.to_path_buf(),
        Some(l) => l.join(&version).join(FILE),
        None => cache.join("gateway-api").join(&version).join(FILE),
    };
    if local.is_none() && verify(&path, &version).is_err() {
        download(&version, &path).await?;
    }
    verify(&path, &version)?;
    Ok(path)
}

/// Downloads the release's file to `dest` (through a temporary sibling, renamed at the end).
async fn download(version: &str, dest: &Path) -> Result<(), GatewayApiError> {
    let url = format!(
        "https://github.com/kubernetes-sigs/gateway-api/releases/download/{version}/{FILE}"
    );
    let http = |reason: String| GatewayApiError::Http {
        url: url.clone(),
        reason,
    };
    crate::install_crypto_provider();
    let body = async {
        let r = reqwest::get(&url).await?.error_for_status()?;
        r.bytes().await
    }
    .await
    .map_err(|e| http(e.to_string()))?;
    let io = |source| GatewayApiError::Read {
        path: dest.into(),
        source,
    };
    std::fs::create_dir_all(dest.parent().expect("a cache path has a parent")).map_err(io)?;
    let tmp = super::temp_sibling(dest);
    std::fs::write(&tmp, &body).map_err(io)?;
    if let Err(e) = verify(&tmp, version) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, dest).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_local_file_is_used_only_when_its_digest_is_the_pinned_one() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("v1.5.1");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(FILE), "kind: CustomResourceDefinition\n").unwrap();
        let e = prepare(Some(tmp.path()), "1.5.1", tmp.path())
            .await
            .unwrap_err();
        assert!(
            matches!(&e, GatewayApiError::Digest { version, .. } if version == "v1.5.1"),
            "{e}"
        );
        let e = prepare(Some(tmp.path()), "v9.9.9", tmp.path())
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "Gateway API v9.9.9 has no pinned SHA-256 (known: v1.5.1)"
        );
        let missing = prepare(Some(&tmp.path().join("none")), "v1.5.1", tmp.path()).await;
        assert!(matches!(missing, Err(GatewayApiError::Read { .. })));
    }
}
