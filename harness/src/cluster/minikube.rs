//! `minikube`: the walkthrough's own setup, `minikube start --driver=docker`, with
//! `KUBECONFIG` pointing at the run's own file so minikube never edits the user's config.

use std::path::PathBuf;

use futures::future::BoxFuture;

use super::{ClusterError, ClusterInfo, ClusterRequest, Leftover, Provider, run_cmd, which};

/// The minikube provider.
#[derive(Default)]
pub struct Minikube {
    created: Option<(PathBuf, String, PathBuf)>,
}

/// The argv of `minikube start`.
pub fn start_args(profile: &str, k8s: Option<&str>) -> Vec<String> {
    let mut v: Vec<String> = vec![
        "start".into(),
        "-p".into(),
        profile.into(),
        "--driver=docker".into(),
    ];
    if let Some(k) = k8s {
        v.push(format!("--kubernetes-version={k}"));
    }
    v
}

impl Provider for Minikube {
    fn name(&self) -> &'static str {
        "minikube"
    }
    fn needs(&self) -> &'static str {
        "a Docker daemon and `minikube` on PATH, plus registry access for its base image"
    }
    fn check(&self) -> Result<(), ClusterError> {
        super::docker_available()?;
        which("minikube")
            .map(|_| ())
            .ok_or(ClusterError::NotOnPath("minikube"))
    }
    fn create<'a>(
        &'a mut self,
        req: &'a ClusterRequest,
    ) -> BoxFuture<'a, Result<ClusterInfo, ClusterError>> {
        Box::pin(async move {
            let mk = which("minikube").ok_or(ClusterError::NotOnPath("minikube"))?;
            std::fs::create_dir_all(&req.artifacts).ok();
            let profile = format!("istio-e2e-{}", req.run_id);
            let kubeconfig = req.artifacts.join("kubeconfig");
            let env = vec![(
                "KUBECONFIG".to_string(),
                kubeconfig.to_string_lossy().into_owned(),
            )];
            self.created = Some((mk.clone(), profile.clone(), kubeconfig.clone()));
            run_cmd(&mk, &start_args(&profile, req.kubernetes.as_deref()), &env).await?;
            let ip = run_cmd(&mk, &["ip".into(), "-p".into(), profile.clone()], &env).await?;
            Ok(ClusterInfo {
                provider: "minikube".into(),
                kubeconfig,
                context: Some(profile.clone()),
                node_address: Some(ip.trim().to_string()),
                name: profile,
            })
        })
    }
    fn teardown(&mut self, keep: bool) -> BoxFuture<'_, Result<String, ClusterError>> {
        Box::pin(async move {
            let Some((mk, profile, kubeconfig)) = self.created.take() else {
                return Ok(String::new());
            };
            if keep {
                return Ok(format!(
                    "kept minikube profile {profile}; kubeconfig {}",
                    kubeconfig.display()
                ));
            }
            let env = vec![(
                "KUBECONFIG".to_string(),
                kubeconfig.to_string_lossy().into_owned(),
            )];
            run_cmd(&mk, &["delete".into(), "-p".into(), profile.clone()], &env).await?;
            Ok(format!("deleted minikube profile {profile}"))
        })
    }
    fn clean_leftovers(&self) -> Vec<Leftover> {
        let Some(mk) = which("minikube") else {
            return vec![];
        };
        let Ok(o) = std::process::Command::new(&mk)
            .args(["profile", "list", "-o", "json"])
            .output()
        else {
            return vec![];
        };
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
        v.get("valid")
            .and_then(|x| x.as_array())
            .into_iter()
            .flatten()
            .filter_map(|p| p.get("Name").and_then(|x| x.as_str()))
            .filter(|n| n.starts_with("istio-e2e-"))
            .map(|name| Leftover {
                removed: std::process::Command::new(&mk)
                    .args(["delete", "-p", name])
                    .status()
                    .is_ok_and(|s| s.success()),
                what: format!("minikube profile {name}"),
                verb: "deleted",
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_uses_the_docker_driver_and_the_requested_version() {
        assert_eq!(
            start_args("istio-e2e-r1", Some("v1.33.1")),
            [
                "start",
                "-p",
                "istio-e2e-r1",
                "--driver=docker",
                "--kubernetes-version=v1.33.1"
            ]
        );
        assert_eq!(
            start_args("p", None),
            ["start", "-p", "p", "--driver=docker"]
        );
    }
}
