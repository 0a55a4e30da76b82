//! Why a cluster provider cannot run here, or failed to create or remove its cluster. A
//! [`ClusterError`] becomes the user-facing [`StepError`] (message, hint, fatal) only at the
//! step boundary, through `From`.

use std::path::PathBuf;
use std::time::Duration;

use super::kind::KIND_VERSION;
use super::lab::BUILD_COMMAND;
use crate::download::DownloadError;
use crate::error::StepError;
use crate::kubeops::KubeError;

/// An error from testcontainers or Docker, kept with its chain.
pub type ContainerSource = Box<dyn std::error::Error + Send + Sync>;

/// A provider's failure. Every message names the provider's object (container, command, file).
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A provider name that is not one of [`super::ProviderKind`].
    #[error("unknown provider `{0}`; use one of: {names}", names = super::ProviderKind::names())]
    UnknownProvider(String),
    /// The `none` provider was asked for a cluster.
    #[error("provider `none` has no cluster")]
    NoCluster,
    /// No Docker daemon answers on its socket.
    #[error("no Docker daemon answers at {socket} ({source}); start dockerd or Docker Desktop")]
    NoDocker {
        /// The socket tried.
        socket: String,
        /// Why connecting failed.
        source: std::io::Error,
    },
    /// Privileged containers cannot start on this machine (the capability bounding set that
    /// Docker's privileged containers would get lacks some capabilities).
    #[error(
        "privileged containers cannot start here: this machine's capability bounding set lacks {missing} (runc fails with `unable to apply caps: operation not permitted`)"
    )]
    NoPrivileged {
        /// The missing capabilities, e.g. `CAP_SYS_RESOURCE`.
        missing: String,
    },
    /// A program the provider needs is not on PATH.
    #[error("`{0}` is not on PATH")]
    NotOnPath(&'static str),
    /// kind is neither on PATH nor in the download cache.
    #[error(
        "`kind` is not on PATH (it is downloaded, verified, when the network allows: kind {KIND_VERSION}); install kind or run once with network access"
    )]
    NoKind,
    /// kind could not be downloaded.
    #[error(transparent)]
    Download(Box<DownloadError>),
    /// A program could not be started.
    #[error("cannot run {}: {source}", .program.display())]
    Spawn {
        /// The program.
        program: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A command exited unsuccessfully.
    #[error("`{command}` failed ({status}): {stderr}")]
    CommandFailed {
        /// The program and its arguments.
        command: String,
        /// How it exited.
        status: std::process::ExitStatus,
        /// Its standard error, trimmed.
        stderr: String,
    },
    /// The lab image is not in Docker.
    #[error("the lab image {image} is not built; build it with `sudo {build}`")]
    NoLabImage {
        /// The image name.
        image: String,
        /// The one command that builds it.
        build: &'static str,
    },
    /// The image a run named instead of the lab's own does not exist.
    #[error(
        "the lab image {image} (ISTIO_E2E_LAB_IMAGE or the scenario's cluster.image) does not exist"
    )]
    NoLabImageOverride {
        /// The image name.
        image: String,
    },
    /// No lab node runs the Kubernetes version asked for.
    #[error(transparent)]
    LabNode(#[from] super::lab::LabVersionError),
    /// Docker could not be asked whether it has the lab image.
    #[error("cannot ask Docker for the lab image: {0}")]
    LabImageQuery(Box<ClusterError>),
    /// The lab cannot run on this machine (what [`super::Provider::check`] found), when a
    /// cluster was asked for.
    #[error(transparent)]
    LabUnavailable(Box<ClusterError>),
    /// The lab node container did not start (or not up to its ready line).
    #[error("the lab node did not start: {0}")]
    LabStart(#[source] ContainerSource),
    /// The lab node did not report Ready in time, or its container stopped first.
    #[error("the lab node was not Ready within {}s: {last}{evidence}", .limit.as_secs())]
    NodeNotReady {
        /// How long the harness waited.
        limit: Duration,
        /// The node's last Ready condition (`reason: message`), or why there was none.
        last: String,
        /// What the node's container said: its entrypoint's output and the kubelet log's tail
        /// (each block starting on a new line), or empty when they could not be read.
        evidence: String,
    },
    /// A node container (lab, k3s) could not be started or asked something (`doing` says
    /// what, e.g. `lab apiserver port`).
    #[error("{doing}: {source}")]
    Container {
        /// What was being done.
        doing: String,
        /// Why.
        source: ContainerSource,
    },
    /// A node container could not be removed.
    #[error("removing {what} container {id}: {source}")]
    RemoveContainer {
        /// `lab` or `k3s`.
        what: &'static str,
        /// The container's id.
        id: String,
        /// Why.
        source: ContainerSource,
    },
    /// The run's kubeconfig file could not be written.
    #[error("writing {}: {source}", .path.display())]
    WriteKubeconfig {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// `existing`: no kubeconfig is set in the environment.
    #[error("no kubeconfig given (set ISTIO_E2E_KUBECONFIG or KUBECONFIG)")]
    NoKubeconfig,
    /// `existing`: neither the scenario nor the environment names a kubeconfig.
    #[error("no kubeconfig given for provider `existing`")]
    NoKubeconfigForExisting,
    /// `existing`: the kubeconfig named does not exist.
    #[error("kubeconfig {} does not exist", .0.display())]
    KubeconfigMissing(PathBuf),
    /// `existing`: a kubeconfig could not be read.
    #[error("cannot read kubeconfig {}: {source}", .path.display())]
    ReadKubeconfig {
        /// The user's kubeconfig.
        path: PathBuf,
        /// Why.
        source: kube::config::KubeconfigError,
    },
    /// Talking to the new cluster failed.
    #[error(transparent)]
    Kube(#[from] KubeError),
}

impl From<DownloadError> for ClusterError {
    fn from(e: DownloadError) -> Self {
        ClusterError::Download(Box::new(e))
    }
}

impl ClusterError {
    /// A node container operation that failed (`doing`, e.g. `lab apiserver port`).
    pub fn container(doing: impl Into<String>, e: impl Into<ContainerSource>) -> Self {
        ClusterError::Container {
            doing: doing.into(),
            source: e.into(),
        }
    }

    /// True when trying again may succeed: a command or a removal that failed, a node slow to
    /// become Ready, a transient download or API failure. False when something is missing
    /// from this machine or the configuration is wrong.
    pub fn is_retryable(&self) -> bool {
        match self {
            ClusterError::CommandFailed { .. }
            | ClusterError::RemoveContainer { .. }
            | ClusterError::NodeNotReady { .. } => true,
            ClusterError::Kube(e) => e.is_retryable(),
            // The download layer's own rule (crate::download: only HTTP failures are transient).
            ClusterError::Download(e) => matches!(**e, DownloadError::Http { .. }),
            _ => false,
        }
    }

    /// What to try, when there is something to say.
    pub fn hint(&self) -> Option<String> {
        match self {
            ClusterError::LabUnavailable(inner) => match &**inner {
                ClusterError::NoLabImage { build, .. } => {
                    Some(format!("run `sudo {build}` once; it is cached"))
                }
                _ => Some(format!("run `sudo {BUILD_COMMAND}` once; it is cached")),
            },
            ClusterError::LabStart(_) => Some(
                "`docker logs` of the container shows which server failed; run `istio-e2e clean` to remove leftovers"
                    .into(),
            ),
            ClusterError::Kube(e) => e.hint().map(String::from),
            // A download's hint comes with its conversion (`From<DownloadError> for StepError`).
            _ => None,
        }
    }
}

impl From<ClusterError> for StepError {
    fn from(e: ClusterError) -> Self {
        let e = match e {
            ClusterError::Download(d) => return StepError::from(*d),
            ClusterError::Kube(k) => return StepError::from(k),
            other => other,
        };
        let hint = e.hint();
        StepError::classified(e.to_string(), e.is_retryable(), hint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_tools_are_final_and_failed_commands_are_retried() {
        assert!(!ClusterError::NotOnPath("minikube").is_retryable());
        assert!(
            !ClusterError::NoLabImage {
                image: "x".into(),
                build: BUILD_COMMAND
            }
            .is_retryable()
        );
        assert!(!ClusterError::NoKubeconfig.is_retryable());
        let failed = std::process::Command::new("false").status().unwrap();
        let e = ClusterError::CommandFailed {
            command: "kind delete cluster".into(),
            status: failed,
            stderr: "boom".into(),
        };
        assert!(e.is_retryable());
        assert!(!StepError::from(e).fatal);
        let not_ready = ClusterError::NodeNotReady {
            limit: Duration::from_secs(120),
            last: "KubeletNotReady: container runtime network not ready".into(),
            evidence: "\n--- kubelet log ---\nE1203 cni config uninitialized".into(),
        };
        assert!(not_ready.is_retryable());
        assert_eq!(
            not_ready.to_string(),
            "the lab node was not Ready within 120s: KubeletNotReady: container runtime network \
             not ready\n--- kubelet log ---\nE1203 cni config uninitialized"
        );
    }

    #[test]
    fn the_lab_check_failure_keeps_its_message_and_gains_the_build_hint() {
        let e = ClusterError::LabUnavailable(Box::new(ClusterError::NoLabImage {
            image: "istio-e2e-lab:v1.20.2".into(),
            build: BUILD_COMMAND,
        }));
        let s = StepError::from(e);
        assert_eq!(
            s.to_string(),
            "the lab image istio-e2e-lab:v1.20.2 is not built; build it with `sudo fixtures/lab/build-image` (try: run `sudo fixtures/lab/build-image` once; it is cached)"
        );
        assert!(s.fatal);
    }

    #[test]
    fn api_errors_keep_their_kube_classification() {
        let e = ClusterError::from(KubeError::NoNodeAddress);
        assert!(e.is_retryable());
        let e = ClusterError::from(KubeError::NoNamespace("x".into()));
        assert!(!e.is_retryable());
        assert_eq!(
            StepError::from(e).hint.as_deref(),
            Some("create it with an apply step, or check the step's `namespace`")
        );
    }
}
