//! `kind` (the default provider): `kind create cluster` with the repository's
//! `kind-config.yaml`, the run's own kubeconfig file, and the node image for the requested
//! Kubernetes version. The node address is the control-plane container's IP on the `kind`
//! Docker network (reachable from the host on Linux).

use std::path::PathBuf;

use futures::future::BoxFuture;

use super::{ClusterInfo, ClusterRequest, Provider, run_cmd, which};
use crate::error::StepError;

/// The kind provider.
#[derive(Default)]
pub struct Kind {
    created: Option<(PathBuf, String, PathBuf)>,
}

/// The argv of `kind create cluster`.
pub fn create_args(
    name: &str,
    config: Option<&str>,
    kubeconfig: &str,
    image: Option<&str>,
) -> Vec<String> {
    let mut v: Vec<String> = ["create", "cluster", "--name", name]
        .iter()
        .map(|s| s.to_string())
        .collect();
    if let Some(c) = config {
        v.extend(["--config".into(), c.into()]);
    }
    v.extend(["--kubeconfig".into(), kubeconfig.into()]);
    if let Some(i) = image {
        v.extend(["--image".into(), i.into()]);
    }
    v.extend(["--wait".into(), "5m".into()]);
    v
}

/// The node image for a Kubernetes version (`v1.33.1` -> `kindest/node:v1.33.1`).
pub fn node_image(k8s: &str) -> String {
    let v = if k8s.starts_with('v') {
        k8s.to_string()
    } else {
        format!("v{k8s}")
    };
    format!("kindest/node:{v}")
}

impl Provider for Kind {
    fn name(&self) -> &'static str {
        "kind"
    }
    fn needs(&self) -> &'static str {
        "a Docker daemon and `kind` on PATH (https://kind.sigs.k8s.io), plus registry access for kindest/node"
    }
    fn check(&self) -> Result<(), String> {
        super::docker_available()?;
        which("kind")
            .map(|_| ())
            .ok_or_else(|| "`kind` is not on PATH".to_string())
    }
    fn create<'a>(
        &'a mut self,
        req: &'a ClusterRequest,
    ) -> BoxFuture<'a, Result<ClusterInfo, StepError>> {
        Box::pin(async move {
            let kind = which("kind").ok_or_else(|| StepError::fatal("`kind` is not on PATH"))?;
            std::fs::create_dir_all(&req.artifacts).ok();
            let name = format!("istio-e2e-{}", req.run_id);
            let kubeconfig = req.artifacts.join("kubeconfig");
            let config = req.config.clone().or_else(|| {
                let p = PathBuf::from("kind-config.yaml");
                p.exists().then_some(p)
            });
            let image = req
                .image
                .clone()
                .or_else(|| req.kubernetes.as_deref().map(node_image));
            let args = create_args(
                &name,
                config
                    .as_ref()
                    .map(|p| p.to_string_lossy().into_owned())
                    .as_deref(),
                &kubeconfig.to_string_lossy(),
                image.as_deref(),
            );
            self.created = Some((kind.clone(), name.clone(), kubeconfig.clone()));
            run_cmd(
                &kind,
                &args,
                &[(
                    "KUBECONFIG".into(),
                    kubeconfig.to_string_lossy().into_owned(),
                )],
            )
            .await?;
            let docker =
                which("docker").ok_or_else(|| StepError::fatal("`docker` is not on PATH"))?;
            let ip = run_cmd(
                &docker,
                &[
                    "inspect".into(),
                    "-f".into(),
                    "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}".into(),
                    format!("{name}-control-plane"),
                ],
                &[],
            )
            .await?;
            Ok(ClusterInfo {
                provider: "kind".into(),
                kubeconfig,
                context: Some(format!("kind-{name}")),
                node_address: ip.split_whitespace().next().map(String::from),
                name,
            })
        })
    }
    fn teardown(&mut self, keep: bool) -> BoxFuture<'_, Result<String, StepError>> {
        Box::pin(async move {
            let Some((kind, name, kubeconfig)) = self.created.take() else {
                return Ok(String::new());
            };
            if keep {
                return Ok(format!(
                    "kept kind cluster {name}; kubeconfig {}",
                    kubeconfig.display()
                ));
            }
            let args = vec![
                "delete".into(),
                "cluster".into(),
                "--name".into(),
                name.clone(),
                "--kubeconfig".into(),
                kubeconfig.to_string_lossy().into_owned(),
            ];
            run_cmd(&kind, &args, &[]).await?;
            Ok(format!("deleted kind cluster {name}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_uses_the_runs_own_kubeconfig_and_the_node_image() {
        assert_eq!(
            create_args(
                "istio-e2e-r1",
                Some("kind-config.yaml"),
                "/a/kubeconfig",
                Some(&node_image("1.33.1"))
            ),
            [
                "create",
                "cluster",
                "--name",
                "istio-e2e-r1",
                "--config",
                "kind-config.yaml",
                "--kubeconfig",
                "/a/kubeconfig",
                "--image",
                "kindest/node:v1.33.1",
                "--wait",
                "5m"
            ]
        );
    }
}
