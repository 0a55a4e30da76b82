//! Cluster providers behind one trait: kind (the default), minikube, k3s, an existing cluster,
//! the offline lab, and `none` for scenarios that only probe URLs. Every provider writes the
//! cluster's kubeconfig to its own file under the run's artifacts directory; none writes to
//! the user's `~/.kube/config`.

pub mod existing;
pub mod k3s;
pub mod kind;
pub mod lab;
pub mod minikube;

use std::path::{Path, PathBuf};

use futures::future::BoxFuture;

use crate::error::StepError;

/// A cluster a run can use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterInfo {
    /// The provider's name.
    pub provider: String,
    /// The cluster's own kubeconfig file.
    pub kubeconfig: PathBuf,
    /// The context to use in it (its current context when None).
    pub context: Option<String>,
    /// The address the host reaches the node at (kind/k3s/lab: the node container's IP;
    /// minikube: `minikube ip`), for the ingress step.
    pub node_address: Option<String>,
    /// A short name, e.g. the kind cluster or container name.
    pub name: String,
}

/// What a run asks of a provider.
#[derive(Debug, Clone, Default)]
pub struct ClusterRequest {
    /// The run's id; cluster names are `istio-e2e-<run id>`.
    pub run_id: String,
    /// Where the kubeconfig and logs go.
    pub artifacts: PathBuf,
    /// Kubernetes version, when the scenario or matrix pins one.
    pub kubernetes: Option<String>,
    /// Provider config file (the kind config).
    pub config: Option<PathBuf>,
    /// Image override (kind node image, lab image).
    pub image: Option<String>,
    /// For `existing`: kubeconfig and context.
    pub kubeconfig: Option<PathBuf>,
    /// For `existing`: context.
    pub context: Option<String>,
}

/// One way of getting a cluster.
pub trait Provider: Send {
    /// The provider's name as written in scenarios.
    fn name(&self) -> &'static str;
    /// What it needs, for `doctor` (e.g. "docker and kind on PATH, or network to download kind").
    fn needs(&self) -> &'static str;
    /// `Err(one-line reason)` when it cannot run on this machine.
    fn check(&self) -> Result<(), String>;
    /// Creates (or connects to) the cluster.
    fn create<'a>(
        &'a mut self,
        req: &'a ClusterRequest,
    ) -> BoxFuture<'a, Result<ClusterInfo, StepError>>;
    /// Removes what `create` made (unless `keep`); always safe to call, even after a failed create.
    fn teardown(&mut self, keep: bool) -> BoxFuture<'_, Result<String, StepError>>;
    /// True when the cluster is the run's own and goes with it (false for `existing`: what
    /// the run created there is undone one by one).
    fn owns_cluster(&self) -> bool {
        true
    }
}

/// The provider for a name.
pub fn provider(name: &str) -> Result<Box<dyn Provider>, String> {
    Ok(match name {
        "kind" => Box::new(kind::Kind::default()),
        "minikube" => Box::new(minikube::Minikube::default()),
        "k3s" => Box::new(k3s::K3s::default()),
        "existing" => Box::new(existing::Existing),
        "lab" => Box::new(lab::Lab::default()),
        "none" => Box::new(NoCluster),
        other => {
            return Err(format!(
                "unknown provider `{other}`; use one of: kind, minikube, k3s, existing, lab, none"
            ));
        }
    })
}

/// No cluster: for scenarios whose steps only probe URLs.
pub struct NoCluster;

impl Provider for NoCluster {
    fn name(&self) -> &'static str {
        "none"
    }
    fn needs(&self) -> &'static str {
        "nothing"
    }
    fn check(&self) -> Result<(), String> {
        Ok(())
    }
    fn create<'a>(
        &'a mut self,
        _req: &'a ClusterRequest,
    ) -> BoxFuture<'a, Result<ClusterInfo, StepError>> {
        Box::pin(async { Err(StepError::fatal("provider `none` has no cluster")) })
    }
    fn teardown(&mut self, _keep: bool) -> BoxFuture<'_, Result<String, StepError>> {
        Box::pin(async { Ok(String::new()) })
    }
}

/// The path of an executable on PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// True when a Docker daemon answers on its socket (`DOCKER_HOST` or /var/run/docker.sock).
pub fn docker_available() -> Result<(), String> {
    let sock = std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|h| h.strip_prefix("unix://").map(String::from))
        .unwrap_or_else(|| "/var/run/docker.sock".into());
    match std::os::unix::net::UnixStream::connect(&sock) {
        Ok(_) => Ok(()),
        Err(e) => Err(format!(
            "no Docker daemon answers at {sock} ({e}); start dockerd or Docker Desktop"
        )),
    }
}

/// Runs a command (argument vector, no shell) and returns stdout; the error names the command
/// and carries its stderr.
pub async fn run_cmd(
    program: &Path,
    args: &[String],
    env: &[(String, String)],
) -> Result<String, StepError> {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd
        .output()
        .await
        .map_err(|e| StepError::fatal(format!("cannot run {}: {e}", program.display())))?;
    if !out.status.success() {
        return Err(StepError::new(format!(
            "`{} {}` failed ({}): {}",
            program.display(),
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Node containers started through testcontainers (`lab`, `k3s`): what both do with the
/// container once it runs, so the lab's tests cover the k3s provider's path too.
pub mod container {
    use std::path::{Path, PathBuf};

    use testcontainers_modules::testcontainers::{ContainerAsync, Image};

    use crate::error::StepError;

    /// Writes the run's own kubeconfig: the text read from the node, with its in-container
    /// server address `https://127.0.0.1:6443` pointed at the port published on the host.
    /// Returns the file (never `~/.kube/config`).
    pub fn write_kubeconfig(
        raw: &str,
        host_port: u16,
        artifacts: &Path,
    ) -> Result<PathBuf, StepError> {
        let text = raw.replace(
            "https://127.0.0.1:6443",
            &format!("https://127.0.0.1:{host_port}"),
        );
        std::fs::create_dir_all(artifacts).ok();
        let kubeconfig = artifacts.join("kubeconfig");
        std::fs::write(&kubeconfig, text)
            .map_err(|e| StepError::fatal(format!("writing {}: {e}", kubeconfig.display())))?;
        Ok(kubeconfig)
    }

    /// The node's address: the container's IP on Docker's bridge (where NodePorts answer).
    pub async fn node_address<I: Image>(
        c: &ContainerAsync<I>,
        what: &str,
    ) -> Result<String, StepError> {
        c.get_bridge_ip_address()
            .await
            .map(|ip| ip.to_string())
            .map_err(|e| StepError::fatal(format!("{what} node address: {e}")))
    }

    /// Removes the node container with its anonymous volumes, or keeps it (and says how to
    /// remove it later). Nothing to do when no container was started.
    pub async fn remove<I: Image>(
        c: Option<ContainerAsync<I>>,
        keep: bool,
        what: &str,
    ) -> Result<String, StepError> {
        let Some(c) = c else {
            return Ok(String::new());
        };
        let id = c.id().to_string();
        if keep {
            std::mem::forget(c);
            return Ok(format!(
                "kept {what} container {id}; remove it with `docker rm -f -v {id}` or `istio-e2e clean`"
            ));
        }
        c.rm()
            .await
            .map_err(|e| StepError::new(format!("removing {what} container {id}: {e}")))?;
        Ok(format!("removed {what} container {id}"))
    }
}
