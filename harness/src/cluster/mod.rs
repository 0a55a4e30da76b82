//! Cluster providers behind one trait: kind (the default), minikube, k3s, an existing cluster,
//! the offline lab, and `none` for scenarios that only probe URLs. [`ProviderKind`] names
//! them (scenarios, `--provider`, `doctor`, `clean`); [`ProviderKind::provider`] makes one.
//! Every provider writes the cluster's kubeconfig to its own file under the run's artifacts
//! directory; none writes to the user's `~/.kube/config`. Failures are [`ClusterError`]s.

pub mod error;
pub mod existing;
pub mod k3s;
pub mod kind;
pub mod lab;
pub mod minikube;
pub mod standins;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use futures::future::BoxFuture;
use serde::{Deserialize, Deserializer, Serialize};

pub use self::error::ClusterError;

/// The label every node container a run starts (lab, k3s) carries, with the run's id as its
/// value, so `istio-e2e clean` and the tests find the containers of a run.
pub const RUN_LABEL: &str = "io.istio-e2e.run";

/// The providers, by the name scenarios, `--provider` and `ISTIO_E2E_PROVIDER` use.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// kind (Kubernetes in Docker), the default.
    #[default]
    Kind,
    /// minikube with the Docker driver.
    Minikube,
    /// k3s in a container.
    K3s,
    /// A cluster the user already has (never deleted).
    Existing,
    /// The offline lab node (Kubernetes 1.20 in one container).
    Lab,
    /// No cluster: scenarios that only probe URLs.
    None,
}

impl ProviderKind {
    /// Every provider, in the order `doctor` lists them.
    pub const ALL: [ProviderKind; 6] = [
        ProviderKind::Kind,
        ProviderKind::Minikube,
        ProviderKind::K3s,
        ProviderKind::Existing,
        ProviderKind::Lab,
        ProviderKind::None,
    ];

    /// The name as written in scenarios (`kind`, `k3s`, ...).
    pub fn name(self) -> &'static str {
        match self {
            ProviderKind::Kind => "kind",
            ProviderKind::Minikube => "minikube",
            ProviderKind::K3s => "k3s",
            ProviderKind::Existing => "existing",
            ProviderKind::Lab => "lab",
            ProviderKind::None => "none",
        }
    }

    /// Every name, comma-separated, for messages.
    pub fn names() -> String {
        Self::ALL.map(Self::name).join(", ")
    }

    /// A fresh provider of this kind.
    pub fn provider(self) -> Box<dyn Provider> {
        match self {
            ProviderKind::Kind => Box::new(kind::Kind::default()),
            ProviderKind::Minikube => Box::new(minikube::Minikube::default()),
            ProviderKind::K3s => Box::new(k3s::K3s::default()),
            ProviderKind::Existing => Box::new(existing::Existing::default()),
            ProviderKind::Lab => Box::new(lab::Lab::default()),
            ProviderKind::None => Box::new(NoCluster),
        }
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ProviderKind {
    type Err = ClusterError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| ClusterError::UnknownProvider(s.to_string()))
    }
}

impl<'de> Deserialize<'de> for ProviderKind {
    /// The scenario's spelling; an unknown name is refused with the list of known ones.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        name.parse().map_err(|_| {
            serde::de::Error::custom(format!(
                "unknown cluster provider `{name}`; use one of: {}",
                Self::names()
            ))
        })
    }
}

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
    /// The Istio release the run installs, when it installs one: the lab loads its stand-in
    /// images under the names this release uses.
    pub istio: Option<standins::Release>,
}

/// One way of getting a cluster.
pub trait Provider: Send {
    /// The provider's name as written in scenarios.
    fn name(&self) -> &'static str;
    /// What it needs, for `doctor` (e.g. "docker and kind on PATH, or network to download kind").
    fn needs(&self) -> &'static str;
    /// Why it cannot run on this machine, if it cannot.
    fn check(&self) -> Result<(), ClusterError>;
    /// Creates (or connects to) the cluster.
    fn create<'a>(
        &'a mut self,
        req: &'a ClusterRequest,
    ) -> BoxFuture<'a, Result<ClusterInfo, ClusterError>>;
    /// Removes what `create` made (unless `keep`); always safe to call, even after a failed create.
    fn teardown(&mut self, keep: bool) -> BoxFuture<'_, Result<String, ClusterError>>;
    /// True when the run's cluster is the provider's own and goes with its teardown, so what
    /// the run put into it needs no cleanup of its own; false for a cluster that outlives the
    /// run (`existing`) and for no cluster at all (`none`).
    fn owns_cluster(&self) -> bool {
        true
    }
    /// Removes what earlier runs of this provider left behind (clusters, profiles, node
    /// containers, found by the `istio-e2e-` name prefix or a label); one entry per leftover.
    fn clean_leftovers(&self) -> Vec<Leftover> {
        Vec::new()
    }
}

/// Something an earlier run left behind, and whether `clean` removed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    /// What it is, e.g. `container 3f2a...` or `kind cluster istio-e2e-r1`.
    pub what: String,
    /// How a removal is said for it (`removed` for containers, `deleted` for clusters).
    pub verb: &'static str,
    /// True when it is gone.
    pub removed: bool,
}

impl fmt::Display for Leftover {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.removed {
            write!(f, "{} {}", self.verb, self.what)
        } else {
            write!(f, "could not remove {}", self.what)
        }
    }
}

/// The provider for a name (`kind`, `lab`, ...); see [`ProviderKind`].
pub fn provider(name: &str) -> Result<Box<dyn Provider>, ClusterError> {
    name.parse::<ProviderKind>().map(ProviderKind::provider)
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
    fn check(&self) -> Result<(), ClusterError> {
        Ok(())
    }
    fn create<'a>(
        &'a mut self,
        _req: &'a ClusterRequest,
    ) -> BoxFuture<'a, Result<ClusterInfo, ClusterError>> {
        Box::pin(async { Err(ClusterError::NoCluster) })
    }
    fn teardown(&mut self, _keep: bool) -> BoxFuture<'_, Result<String, ClusterError>> {
        Box::pin(async { Ok(String::new()) })
    }
    fn owns_cluster(&self) -> bool {
        false
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

/// Where the Docker daemon is asked for: `DOCKER_HOST` (`unix://` or `tcp://`), else the
/// default socket.
#[derive(Debug, Clone, PartialEq)]
pub enum DockerEndpoint {
    /// A Unix socket.
    Unix(PathBuf),
    /// A TCP address (`host:port`).
    Tcp(String),
}

impl DockerEndpoint {
    /// From the value of `DOCKER_HOST`, if set.
    pub fn from_docker_host(host: Option<&str>) -> Self {
        match host {
            Some(h) if h.starts_with("tcp://") => Self::Tcp(h["tcp://".len()..].into()),
            Some(h) if h.starts_with("unix://") => Self::Unix(h["unix://".len()..].into()),
            _ => Self::Unix("/var/run/docker.sock".into()),
        }
    }

    fn answers(&self) -> std::io::Result<()> {
        match self {
            Self::Unix(p) => std::os::unix::net::UnixStream::connect(p).map(drop),
            Self::Tcp(a) => std::net::TcpStream::connect(a.trim_end_matches('/')).map(drop),
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::Unix(p) => p.display().to_string(),
            Self::Tcp(a) => format!("tcp://{a}"),
        }
    }
}

/// True when a Docker daemon answers at `DOCKER_HOST` or the default socket, or, failing
/// both, when `docker version` reaches one through the CLI's current context (Docker Desktop
/// for Linux has no /var/run/docker.sock: its context points at ~/.docker/desktop).
pub fn docker_available() -> Result<(), ClusterError> {
    let endpoint = DockerEndpoint::from_docker_host(std::env::var("DOCKER_HOST").ok().as_deref());
    let Err(source) = endpoint.answers() else {
        return Ok(());
    };
    let through_context = std::env::var_os("DOCKER_HOST").is_none()
        && which("docker").is_some_and(|docker| {
            crate::process::output_blocking(
                std::process::Command::new(docker)
                    .args(["version", "--format", "{{.Server.Version}}"])
                    .stdin(std::process::Stdio::null()),
            )
            .is_ok_and(|o| o.status.success())
        });
    match through_context {
        true => Ok(()),
        false => Err(ClusterError::NoDocker {
            socket: endpoint.describe(),
            source,
        }),
    }
}

/// A kubeconfig path in a directory of its own under the temporary directory, removed when
/// dropped: what `clean` gives `kind delete` and `minikube delete`, which edit the kubeconfig
/// they are pointed at (the user's `~/.kube/config` when pointed at none).
pub struct ScratchKubeconfig(PathBuf);

impl ScratchKubeconfig {
    /// A new one, unique to this process and moment.
    pub fn new() -> Self {
        static COUNT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let pid = std::process::id();
        let dir = std::env::temp_dir().join(format!("istio-e2e-clean-{pid}-{nanos}-{n}"));
        let _ = std::fs::create_dir_all(&dir);
        Self(dir)
    }

    /// The file's path (the tools create it).
    pub fn path(&self) -> PathBuf {
        self.0.join("kubeconfig")
    }
}

impl Default for ScratchKubeconfig {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for ScratchKubeconfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The ids of Docker containers, running or not, that match a `docker ps --filter` (e.g.
/// `label=io.istio-e2e.run`); none when docker is missing or fails.
pub fn docker_ids(filter: &str) -> Vec<String> {
    let Some(docker) = which("docker") else {
        return vec![];
    };
    std::process::Command::new(docker)
        .args(["ps", "-aq", "--filter", filter])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// Removes (`docker rm -f -v`) every container carrying `label`, for `clean`.
pub fn remove_labelled_containers(label: &str) -> Vec<Leftover> {
    let Some(docker) = which("docker") else {
        return vec![];
    };
    docker_ids(&format!("label={label}"))
        .into_iter()
        .map(|id| Leftover {
            removed: std::process::Command::new(&docker)
                .args(["rm", "-f", "-v", &id])
                .output()
                .is_ok_and(|o| o.status.success()),
            what: format!("container {id}"),
            verb: "removed",
        })
        .collect()
}

/// Runs a command (argument vector, no shell) and returns stdout; the error names the command
/// and carries its stderr.
pub async fn run_cmd(
    program: &Path,
    args: &[String],
    env: &[(String, String)],
) -> Result<String, ClusterError> {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = crate::process::output(&mut cmd)
        .await
        .map_err(|source| ClusterError::Spawn {
            program: program.to_path_buf(),
            source,
        })?;
    if !out.status.success() {
        return Err(ClusterError::CommandFailed {
            command: format!("{} {}", program.display(), args.join(" ")),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Node containers started through testcontainers (`lab`, `k3s`): what both do with the
/// container once it runs, so the lab's tests cover the k3s provider's path too.
pub mod container {
    use std::path::{Path, PathBuf};

    use testcontainers_modules::testcontainers::{ContainerAsync, Image};

    use super::ClusterError;

    /// Writes the run's own kubeconfig: the text read from the node, with its in-container
    /// server address `https://127.0.0.1:6443` pointed at the port published on the host.
    /// Returns the file (never `~/.kube/config`).
    pub fn write_kubeconfig(
        raw: &str,
        host_port: u16,
        artifacts: &Path,
    ) -> Result<PathBuf, ClusterError> {
        let text = raw.replace(
            "https://127.0.0.1:6443",
            &format!("https://127.0.0.1:{host_port}"),
        );
        std::fs::create_dir_all(artifacts).ok();
        let kubeconfig = artifacts.join("kubeconfig");
        std::fs::write(&kubeconfig, text).map_err(|source| ClusterError::WriteKubeconfig {
            path: kubeconfig.clone(),
            source,
        })?;
        Ok(kubeconfig)
    }

    /// The node's address: the container's IP on Docker's bridge (where NodePorts answer).
    pub async fn node_address<I: Image>(
        c: &ContainerAsync<I>,
        what: &str,
    ) -> Result<String, ClusterError> {
        c.get_bridge_ip_address()
            .await
            .map(|ip| ip.to_string())
            .map_err(|e| ClusterError::container(format!("{what} node address"), e))
    }

    /// Removes the node container with its anonymous volumes, or keeps it (and says how to
    /// remove it later). Nothing to do when no container was started.
    ///
    /// `run`: the run id whose label the container was created with, when a start began.
    /// Unless kept, any container of that label is removed too: a start that failed or was
    /// cancelled (a deadline, Ctrl-C) between Docker creating the container and
    /// testcontainers handing over its handle leaves one that nothing else could remove.
    pub async fn remove<I: Image>(
        c: Option<ContainerAsync<I>>,
        run: Option<String>,
        keep: bool,
        what: &'static str,
    ) -> Result<String, ClusterError> {
        let mut line = remove_handle(c, keep, what).await?;
        if let (false, Some(run)) = (keep, run) {
            let label = format!("{}={run}", super::RUN_LABEL);
            let strays =
                tokio::task::spawn_blocking(move || super::remove_labelled_containers(&label))
                    .await
                    .unwrap_or_default();
            for s in strays {
                let sep = if line.is_empty() { "" } else { "; " };
                line.push_str(&format!("{sep}{s} (left by an unfinished start)"));
            }
        }
        Ok(line)
    }

    async fn remove_handle<I: Image>(
        c: Option<ContainerAsync<I>>,
        keep: bool,
        what: &'static str,
    ) -> Result<String, ClusterError> {
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
        // A node that stopped before teardown explains a run that lost its cluster: keep
        // the end of what it printed (the lab's entrypoint names the server that exited).
        let stopped = match c.is_running().await {
            Ok(false) => {
                let out = c.stdout_to_vec().await.unwrap_or_default();
                let out = String::from_utf8_lossy(&out);
                let lines: Vec<&str> = out.lines().collect();
                let tail = lines[lines.len().saturating_sub(15)..].join("\n");
                format!(" (it had stopped before teardown; its last output:\n{tail})")
            }
            _ => String::new(),
        };
        c.rm().await.map_err(|e| ClusterError::RemoveContainer {
            what,
            id: id.clone(),
            source: e.into(),
        })?;
        Ok(format!("removed {what} container {id}{stopped}"))
    }
}

#[cfg(test)]
mod tests {
    use clap::ValueEnum;

    use super::*;

    /// `clean`'s kubeconfig for `kind delete`/`minikube delete` is its own, never the user's,
    /// and goes with its directory.
    #[test]
    fn the_scratch_kubeconfig_is_private_and_removed() {
        let (a, b) = (ScratchKubeconfig::new(), ScratchKubeconfig::new());
        assert_ne!(a.path(), b.path());
        assert!(a.path().starts_with(std::env::temp_dir()));
        let dir = a.path().parent().unwrap().to_path_buf();
        std::fs::write(a.path(), "apiVersion: v1\nkind: Config\n").unwrap();
        drop(a);
        assert!(!dir.exists(), "{dir:?} left behind");
    }

    /// `DOCKER_HOST=tcp://...` is a TCP address, not the default socket.
    #[test]
    fn docker_host_names_the_endpoint() {
        use DockerEndpoint::{Tcp, Unix};
        let at = DockerEndpoint::from_docker_host;
        assert_eq!(at(None), Unix("/var/run/docker.sock".into()));
        assert_eq!(
            at(Some("unix:///run/user/1000/docker.sock")),
            Unix("/run/user/1000/docker.sock".into())
        );
        assert_eq!(at(Some("tcp://10.0.0.5:2375")), Tcp("10.0.0.5:2375".into()));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let open = Tcp(listener.local_addr().unwrap().to_string());
        assert!(open.answers().is_ok());
        drop(listener);
        assert!(
            open.answers().is_err(),
            "{open:?} answers with nothing listening"
        );
        assert_eq!(at(Some("tcp://h:2375")).describe(), "tcp://h:2375");
    }

    #[test]
    fn provider_names_round_trip_through_text_serde_and_clap() {
        let names: Vec<&str> = ProviderKind::ALL.iter().map(|k| k.name()).collect();
        assert_eq!(
            names,
            ["kind", "minikube", "k3s", "existing", "lab", "none"]
        );
        for k in ProviderKind::ALL {
            assert_eq!(k.to_string().parse::<ProviderKind>().unwrap(), k);
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(json, format!("\"{}\"", k.name()));
            assert_eq!(serde_json::from_str::<ProviderKind>(&json).unwrap(), k);
            assert_eq!(
                <ProviderKind as ValueEnum>::from_str(k.name(), false).unwrap(),
                k
            );
            assert_eq!(k.to_possible_value().unwrap().get_name(), k.name());
            assert_eq!(k.provider().name(), k.name());
        }
        assert_eq!(ProviderKind::default(), ProviderKind::Kind);
    }

    #[test]
    fn unknown_provider_names_are_refused_with_the_list() {
        let e = "kubeadm".parse::<ProviderKind>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown provider `kubeadm`; use one of: kind, minikube, k3s, existing, lab, none"
        );
        assert!(!e.is_retryable());
        assert!("Kind".parse::<ProviderKind>().is_err());
        let e = serde_json::from_str::<ProviderKind>("\"kubeadm\"").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("unknown cluster provider `kubeadm`; use one of: kind, minikube"),
            "{e}"
        );
        assert!(provider("kubeadm").is_err());
    }

    #[test]
    fn only_existing_and_none_leave_a_cluster_the_run_does_not_own() {
        let owners: Vec<ProviderKind> = ProviderKind::ALL
            .into_iter()
            .filter(|k| k.provider().owns_cluster())
            .collect();
        assert_eq!(
            owners,
            [
                ProviderKind::Kind,
                ProviderKind::Minikube,
                ProviderKind::K3s,
                ProviderKind::Lab
            ]
        );
    }

    #[test]
    fn leftovers_say_whether_they_went() {
        let gone = Leftover {
            what: "container abc".into(),
            verb: "removed",
            removed: true,
        };
        assert_eq!(gone.to_string(), "removed container abc");
        let stuck = Leftover {
            removed: false,
            ..gone
        };
        assert_eq!(stuck.to_string(), "could not remove container abc");
    }
}
