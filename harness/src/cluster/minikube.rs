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

/// The argv of `minikube start`. As root, minikube's docker driver stops with `DRV_AS_ROOT`
/// unless given `--force` (kubernetes/minikube#7903); root is how CI machines and containers
/// run it, and the cluster is still a rootless-in-Docker node.
pub fn start_args(profile: &str, k8s: Option<&str>, as_root: bool) -> Vec<String> {
    let mut v: Vec<String> = vec![
        "start".into(),
        "-p".into(),
        profile.into(),
        "--driver=docker".into(),
    ];
    if let Some(k) = k8s {
        v.push(format!("--kubernetes-version={k}"));
    }
    if as_root {
        v.push("--force".into());
    }
    v
}

/// True when this process runs as root.
fn as_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The profiles a run left (`istio-e2e-*`), from `minikube profile list -o json`: valid ones
/// and invalid ones (a start killed halfway leaves its profile under `invalid`).
pub fn leftover_profiles(list: &serde_json::Value) -> Vec<String> {
    ["valid", "invalid"]
        .iter()
        .filter_map(|k| list.get(k).and_then(|x| x.as_array()))
        .flatten()
        .filter_map(|p| p.get("Name").and_then(|x| x.as_str()))
        .filter(|n| n.starts_with("istio-e2e-"))
        .map(String::from)
        .collect()
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
            let start = start_args(&profile, req.kubernetes.as_deref(), as_root());
            run_cmd(&mk, &start, &env).await?;
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
        let list: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
        // `minikube delete` removes the profile's context from $KUBECONFIG (else
        // ~/.kube/config): point it at a throwaway file, never the user's.
        let scratch = super::ScratchKubeconfig::new();
        leftover_profiles(&list)
            .into_iter()
            .map(|name| Leftover {
                removed: std::process::Command::new(&mk)
                    .args(["delete", "-p", &name])
                    .env("KUBECONFIG", scratch.path())
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
            start_args("istio-e2e-r1", Some("v1.33.1"), false),
            [
                "start",
                "-p",
                "istio-e2e-r1",
                "--driver=docker",
                "--kubernetes-version=v1.33.1"
            ]
        );
        assert_eq!(
            start_args("p", None, false),
            ["start", "-p", "p", "--driver=docker"]
        );
        assert_eq!(
            start_args("p", None, true),
            ["start", "-p", "p", "--driver=docker", "--force"]
        );
    }

    /// Invalid profiles (a start killed halfway) are leftovers too; others' profiles are not.
    #[test]
    fn leftovers_are_the_runs_valid_and_invalid_profiles() {
        let list = serde_json::json!({
            "valid": [{"Name": "istio-e2e-r1", "Status": "Running"}, {"Name": "minikube"}],
            "invalid": [{"Name": "istio-e2e-r2"}, {"Name": "mine"}]
        });
        assert_eq!(leftover_profiles(&list), ["istio-e2e-r1", "istio-e2e-r2"]);
        assert!(leftover_profiles(&serde_json::json!({})).is_empty());
    }
}
