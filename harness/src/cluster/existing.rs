//! `existing`: a cluster the user already has, by kubeconfig and context. It is never deleted;
//! the kubeconfig is copied into the run's artifacts so nothing writes to the user's file.

use std::path::PathBuf;

use futures::future::BoxFuture;

use super::{ClusterInfo, ClusterRequest, Provider};
use crate::error::StepError;

/// The existing-cluster provider.
#[derive(Default)]
pub struct Existing;

fn source_kubeconfig(req: Option<&ClusterRequest>) -> Option<PathBuf> {
    req.and_then(|r| r.kubeconfig.clone())
        .or_else(|| std::env::var_os("ISTIO_E2E_KUBECONFIG").map(PathBuf::from))
        .or_else(|| std::env::var_os("KUBECONFIG").map(PathBuf::from))
}

impl Provider for Existing {
    fn owns_cluster(&self) -> bool {
        false
    }
    fn name(&self) -> &'static str {
        "existing"
    }
    fn needs(&self) -> &'static str {
        "a kubeconfig: ISTIO_E2E_KUBECONFIG, KUBECONFIG or the scenario's cluster.kubeconfig"
    }
    fn check(&self) -> Result<(), String> {
        match source_kubeconfig(None) {
            Some(p) if p.is_file() => Ok(()),
            Some(p) => Err(format!("kubeconfig {} does not exist", p.display())),
            None => Err("no kubeconfig given (set ISTIO_E2E_KUBECONFIG or KUBECONFIG)".into()),
        }
    }
    fn create<'a>(
        &'a mut self,
        req: &'a ClusterRequest,
    ) -> BoxFuture<'a, Result<ClusterInfo, StepError>> {
        Box::pin(async move {
            let src = source_kubeconfig(Some(req))
                .ok_or_else(|| StepError::fatal("no kubeconfig given for provider `existing`"))?;
            std::fs::create_dir_all(&req.artifacts).ok();
            let dst = req.artifacts.join("kubeconfig");
            std::fs::copy(&src, &dst).map_err(|e| {
                StepError::fatal(format!("cannot copy kubeconfig {}: {e}", src.display()))
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
    fn teardown(&mut self, _keep: bool) -> BoxFuture<'_, Result<String, StepError>> {
        Box::pin(async { Ok("existing cluster left as it was".to_string()) })
    }
}
