//! `existing`: a cluster the user already has, by kubeconfig and context. It is never deleted;
//! the kubeconfig is copied into the run's artifacts so nothing writes to the user's file.

use std::path::PathBuf;

use futures::future::BoxFuture;

use super::{ClusterError, ClusterInfo, ClusterRequest, Provider};

/// The existing-cluster provider.
#[derive(Default)]
pub struct Existing {
    /// The kubeconfig the scenario names (`cluster.kubeconfig`), which comes before the
    /// environment's.
    kubeconfig: Option<PathBuf>,
}

impl Existing {
    /// The provider for the kubeconfig a scenario names (`cluster.kubeconfig`); without one,
    /// `ISTIO_E2E_KUBECONFIG`, then `KUBECONFIG`.
    pub fn with_kubeconfig(kubeconfig: Option<PathBuf>) -> Self {
        Existing { kubeconfig }
    }

    fn source_kubeconfig(&self, req: Option<&ClusterRequest>) -> Option<PathBuf> {
        req.and_then(|r| r.kubeconfig.clone())
            .or_else(|| self.kubeconfig.clone())
            .or_else(|| std::env::var_os("ISTIO_E2E_KUBECONFIG").map(PathBuf::from))
            .or_else(|| std::env::var_os("KUBECONFIG").map(PathBuf::from))
    }
}

impl Provider for Existing {
    fn name(&self) -> &'static str {
        "existing"
    }
    fn needs(&self) -> &'static str {
        "a kubeconfig: ISTIO_E2E_KUBECONFIG, KUBECONFIG or the scenario's cluster.kubeconfig"
    }
    fn check(&self) -> Result<(), ClusterError> {
        match self.source_kubeconfig(None) {
            Some(p) if p.is_file() => Ok(()),
            Some(p) => Err(ClusterError::KubeconfigMissing(p)),
            None => Err(ClusterError::NoKubeconfig),
        }
    }
    fn create<'a>(
        &'a mut self,
        req: &'a ClusterRequest,
    ) -> BoxFuture<'a, Result<ClusterInfo, ClusterError>> {
        Box::pin(async move {
            let src = self
                .source_kubeconfig(Some(req))
                .ok_or(ClusterError::NoKubeconfigForExisting)?;
            std::fs::create_dir_all(&req.artifacts).ok();
            let dst = req.artifacts.join("kubeconfig");
            std::fs::copy(&src, &dst).map_err(|source| ClusterError::CopyKubeconfig {
                path: src.clone(),
                source,
            })?;
            Ok(ClusterInfo {
                provider: "existing".into(),
                kubeconfig: dst,
                context: req.context.clone(),
                node_address: None,
                name: req.context.clone().unwrap_or_else(|| "existing".into()),
            })
        })
    }
    fn teardown(&mut self, _keep: bool) -> BoxFuture<'_, Result<String, ClusterError>> {
        Box::pin(async { Ok("existing cluster left as it was".to_string()) })
    }
    fn owns_cluster(&self) -> bool {
        false
    }
}
