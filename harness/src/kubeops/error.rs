//! Why a Kubernetes operation failed, as a type: what the caller needs to decide (retry or
//! not, [`KubeError::is_retryable`]) and what to tell the user ([`KubeError::hint`]). It
//! becomes a [`StepError`] only at the step boundary (`?` in step code, through `From`).

use std::path::PathBuf;

use kube::core::Status;

use crate::error::StepError;

/// A failed Kubernetes operation. Every message names what was being done and the object.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// The API server answered with an error status (`doing`: e.g. `listing nodes`).
    #[error("{doing}: the API server answered {} {}: {}", .status.code, .status.reason, .status.message)]
    Api {
        /// What was being done.
        doing: String,
        /// The server's answer.
        status: Box<Status>,
    },
    /// The API server could not be reached (or the connection broke).
    #[error("{doing}: cannot reach the API server: {source}")]
    Unreachable {
        /// What was being done.
        doing: String,
        /// The client's error.
        source: Box<kube::Error>,
    },
    /// A change (apply, patch) the API server refused; after a refused dry run nothing changed.
    #[error(
        "{what}{}: the API server refused it: {} ({})",
        if *.dry_run { " (dry run, nothing was changed)" } else { "" },
        .status.message,
        .status.reason
    )]
    Refused {
        /// The change, e.g. `patch Deployment/default/x`.
        what: String,
        /// True when the refused request was the dry run.
        dry_run: bool,
        /// The server's answer.
        status: Box<Status>,
    },
    /// The kubeconfig file cannot be read.
    #[error("cannot read kubeconfig {}: {source}", .path.display())]
    ReadKubeconfig {
        /// The file.
        path: PathBuf,
        /// Why.
        source: kube::config::KubeconfigError,
    },
    /// The kubeconfig file does not describe a usable cluster (or context).
    #[error("invalid kubeconfig {}: {source}", .path.display())]
    InvalidKubeconfig {
        /// The file.
        path: PathBuf,
        /// Why.
        source: kube::config::KubeconfigError,
    },
    /// No client could be built from a valid configuration.
    #[error("cannot build a Kubernetes client: {0}")]
    Client(#[source] Box<kube::Error>),
    /// A namespace a step needs does not exist.
    #[error("namespace {0} does not exist")]
    NoNamespace(String),
    /// A Service has no port by that name or number.
    #[error("service {namespace}/{service} has no port {port}; it has {has}")]
    NoSuchPort {
        /// Namespace.
        namespace: String,
        /// Service.
        service: String,
        /// The port asked for.
        port: String,
        /// The ports it has, as `name(number), ...`.
        has: String,
    },
    /// A Service port has no nodePort, so the host cannot reach it through a node.
    #[error("service {namespace}/{service} port {port} has no nodePort (type {service_type})")]
    NoNodePort {
        /// Namespace.
        namespace: String,
        /// Service.
        service: String,
        /// The port.
        port: String,
        /// The Service's type.
        service_type: String,
    },
    /// A Service has no selector, so there are no pods to reach behind it.
    #[error("service {namespace}/{service} has no selector to find pods by")]
    NoSelector {
        /// Namespace.
        namespace: String,
        /// Service.
        service: String,
    },
    /// A Service's named targetPort names no container port of the pod.
    #[error("pod {pod} has no container port named {name}")]
    NoNamedPort {
        /// The pod.
        pod: String,
        /// The port name.
        name: String,
    },
    /// No node reports an address the host could use.
    #[error("no node has an InternalIP address")]
    NoNodeAddress,
    /// No Ready pod matches a selector (yet).
    #[error("no Ready pod matches {selector} in namespace {namespace} ({matching} pods match)")]
    NoReadyPod {
        /// Namespace.
        namespace: String,
        /// The label selector.
        selector: String,
        /// How many pods match, ready or not.
        matching: usize,
    },
    /// No Ready pod behind a Service (yet).
    #[error("no Ready pod behind service {namespace}/{service} (selector {selector})")]
    NoReadyPodBehind {
        /// Namespace.
        namespace: String,
        /// Service.
        service: String,
        /// The Service's selector.
        selector: String,
    },
    /// An exec stream ended without the command's exit status, so success is unknown.
    #[error(
        "exec in pod {pod}: the exec ended without an exit status, so whether the command succeeded is unknown"
    )]
    NoExitStatus {
        /// The pod.
        pod: String,
    },
    /// Pods did not become ready before the deadline; the message explains each one.
    #[error("{0}")]
    PodsNotReady(String),
    /// A pod's container is in a state that waiting does not fix (`ErrImageNeverPull`,
    /// `InvalidImageName`, `CreateContainerConfigError`, a crash loop past a few restarts).
    #[error(
        "pod {}/{}: container {} (image {}) is in {}, which waiting does not fix{}",
        .0.namespace, .0.pod, .0.container, .0.image, .0.state,
        if .0.detail.is_empty() { String::new() } else { format!(": {}", .0.detail) }
    )]
    PodCannotStart(Box<CannotStart>),
    /// An image pull kept failing (`ErrImagePull`/`ImagePullBackOff`) for longer than the
    /// wait's image-pull grace.
    #[error(
        "pod {}/{}: container {} could not pull image {} for {}s (the image-pull grace is {}s); last pull error: {}",
        .0.namespace, .0.pod, .0.container, .0.image,
        .0.failing_for.as_secs(), .0.grace.as_secs(), .0.last_error
    )]
    ImagePullStuck(Box<PullStuck>),
    /// Deployments did not finish rolling out before the deadline; the message says why.
    #[error("{0}")]
    RolloutIncomplete(String),
    /// Pods still run another Istio proxy version (or are not ready) at the deadline.
    #[error("the data plane in namespace {namespace} did not move to Istio {version}: {}", .pending.join("; "))]
    ProxiesNotMoved {
        /// Namespace.
        namespace: String,
        /// The version expected.
        version: String,
        /// One line per pod not there yet.
        pending: Vec<String>,
    },
    /// A CRD was not Established before the deadline.
    #[error("CRD {0} was not Established before the step's timeout")]
    CrdNotEstablished(String),
    /// Watching a CRD failed.
    #[error("watching CRD {name}: {source}")]
    WatchCrd {
        /// The CRD.
        name: String,
        /// Why.
        source: kube::runtime::wait::Error,
    },
    /// The cluster does not serve the kind of a manifest document.
    #[error("{document}: the cluster does not serve {api_version} {kind}")]
    UnknownKind {
        /// `file document N (Kind/name)`.
        document: String,
        /// Its apiVersion.
        api_version: String,
        /// Its kind.
        kind: String,
    },
    /// A manifest document's apiVersion/kind cannot be read as a group, version and kind.
    #[error("{document}: {reason}")]
    BadKind {
        /// `file document N (Kind/name)`.
        document: String,
        /// Why.
        reason: String,
    },
    /// The cluster serves no kind by that name (for a patch).
    #[error("patch {target}: the cluster serves no kind {kind}{}", .api_version.as_ref().map(|a| format!(" in {a}")).unwrap_or_default())]
    NoSuchKind {
        /// `Kind/namespace/name`.
        target: String,
        /// The kind asked for.
        kind: String,
        /// The apiVersion asked for, if any.
        api_version: Option<String>,
    },
    /// The object to patch does not exist.
    #[error("patch {0}: no such object")]
    NoSuchObject(String),
    /// A manifest path names nothing.
    #[error("missing manifest {}: no such file or directory", .0.display())]
    MissingManifest(PathBuf),
    /// A manifest file or directory cannot be read.
    #[error("cannot read {}{}: {source}", if *.is_dir { "directory " } else { "" }, .path.display())]
    ReadManifest {
        /// The file or directory.
        path: PathBuf,
        /// True for a directory.
        is_dir: bool,
        /// Why.
        source: std::io::Error,
    },
    /// A manifest file is not valid YAML (`at` is `:line:column` when known).
    #[error("{}{at}: not valid YAML: {reason}", .file.display())]
    NotYaml {
        /// The file.
        file: PathBuf,
        /// `:line:column`, or empty.
        at: String,
        /// The parser's message.
        reason: String,
    },
    /// A manifest document is not a Kubernetes object.
    #[error("{} document {index}: not a Kubernetes object: {source}", .file.display())]
    NotAnObject {
        /// The file.
        file: PathBuf,
        /// 1-based document index.
        index: usize,
        /// Why.
        source: serde_json::Error,
    },
    /// A manifest document lacks apiVersion, kind or metadata.name.
    #[error("{} document {index}: needs apiVersion, kind and metadata.name", .file.display())]
    Incomplete {
        /// The file.
        file: PathBuf,
        /// 1-based document index.
        index: usize,
    },
    /// A local port-forward address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Objects a teardown deleted are still there at its deadline (each named with the
    /// finalizers it waits on), or their deletion was refused.
    #[error("{} not deleted ({}s after asking): {}", plural(.left.len(), "object"), .waited.as_secs(), .left.iter().map(|l| l.to_string()).collect::<Vec<_>>().join("; "))]
    NotDeleted {
        /// How long the teardown waited.
        waited: std::time::Duration,
        /// What is left, and why.
        left: Vec<super::delete::Leftover>,
    },
    /// A bound listener cannot tell its own address.
    #[error("{0}")]
    LocalAddr(#[source] std::io::Error),
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// API status codes no retry can change: a bad request, credentials, a missing object, a
/// conflict, an invalid object.
const FINAL_CODES: &[u16] = &[400, 401, 403, 404, 409, 422];

impl KubeError {
    /// Classifies a client error from `doing` (e.g. `listing nodes`): an API answer keeps its
    /// status, anything else means the API server was not reached.
    pub fn call(doing: impl Into<String>, e: kube::Error) -> Self {
        match e {
            kube::Error::Api(status) => KubeError::Api {
                doing: doing.into(),
                status,
            },
            other => KubeError::Unreachable {
                doing: doing.into(),
                source: Box::new(other),
            },
        }
    }

    /// Classifies a client error of a change: an API refusal becomes [`KubeError::Refused`]
    /// (`what`, e.g. `patch Deployment/default/x`); anything else is described as `doing`.
    pub fn change(what: &str, doing: &str, dry_run: bool, e: kube::Error) -> Self {
        match e {
            kube::Error::Api(status) => KubeError::Refused {
                what: what.to_string(),
                dry_run,
                status,
            },
            other => KubeError::call(doing, other),
        }
    }

    /// True when trying again may succeed: the server was unreachable, answered a transient
    /// status, or something was not ready yet. False for bad input, missing objects and
    /// refusals.
    pub fn is_retryable(&self) -> bool {
        match self {
            KubeError::Api { status, .. } => !FINAL_CODES.contains(&status.code),
            KubeError::Unreachable { .. }
            | KubeError::NoNodeAddress
            | KubeError::NoReadyPod { .. }
            | KubeError::NoReadyPodBehind { .. }
            | KubeError::PodsNotReady(_)
            | KubeError::RolloutIncomplete(_)
            | KubeError::ProxiesNotMoved { .. }
            | KubeError::CrdNotEstablished(_)
            | KubeError::WatchCrd { .. }
            | KubeError::LocalAddr(_)
            | KubeError::NoExitStatus { .. }
            | KubeError::NotDeleted { .. } => true,
            KubeError::Refused { .. }
            | KubeError::ReadKubeconfig { .. }
            | KubeError::InvalidKubeconfig { .. }
            | KubeError::Client(_)
            | KubeError::NoNamespace(_)
            | KubeError::NoSuchPort { .. }
            | KubeError::NoNodePort { .. }
            | KubeError::NoSelector { .. }
            | KubeError::NoNamedPort { .. }
            | KubeError::UnknownKind { .. }
            | KubeError::BadKind { .. }
            | KubeError::NoSuchKind { .. }
            | KubeError::PodCannotStart(_)
            | KubeError::ImagePullStuck(_)
            | KubeError::NoSuchObject(_)
            | KubeError::MissingManifest(_)
            | KubeError::ReadManifest { .. }
            | KubeError::NotYaml { .. }
            | KubeError::NotAnObject { .. }
            | KubeError::Incomplete { .. }
            | KubeError::Listen { .. } => false,
        }
    }

    /// What to try, when there is something to say.
    pub fn hint(&self) -> Option<&'static str> {
        Some(match self {
            KubeError::Api { status, .. } => match status.code {
                401 | 403 => "check the kubeconfig's credentials and RBAC",
                404 => "does the namespace or object exist? is the CRD installed?",
                _ => return None,
            },
            KubeError::Unreachable { .. } => {
                "is the cluster up? `istio-e2e doctor` checks the kubeconfig"
            }
            KubeError::NoNamespace(_) => {
                "create it with an apply step, or check the step's `namespace`"
            }
            KubeError::NoNodePort { .. } => {
                "the ingress step needs a NodePort or LoadBalancer service"
            }
            KubeError::NoReadyPod { .. } => "add a wait step for these pods before this one",
            KubeError::NoExitStatus { .. } => {
                "the connection to the kubelet may have dropped; retry the step, or look at the pod's events"
            }
            KubeError::NoReadyPodBehind { .. } => {
                "wait for the service's pods before forwarding to it"
            }
            KubeError::ProxiesNotMoved { .. } => {
                "restarted pods get the sidecar of the revision their namespace names (istio-injection or istio.io/rev); look at the injector's logs in istio-system"
            }
            KubeError::UnknownKind { .. } => {
                "apply the CRD first (in the same step or an earlier one), or check the apiVersion against the cluster's version"
            }
            KubeError::NoSuchKind { .. } => {
                "check the kind's spelling (e.g. Deployment) and apiVersion"
            }
            KubeError::NoSuchObject(_) => {
                "apply it in an earlier step, or check the name and namespace"
            }
            KubeError::PodCannotStart(_) => {
                "fix the image name or pull policy, or create the ConfigMap/Secret the container references; a crash loop's logs are in the diagnostics"
            }
            KubeError::ImagePullStuck(_) => {
                "can the nodes reach the registry? On an air-gapped cluster load the image onto the nodes first; on a slow network raise the wait's `image-pull-grace`"
            }
            KubeError::NotDeleted { .. } => {
                "a finalizer is removed by the controller that set it: is that controller still running? Once you know it is safe, remove the finalizer by hand (kubectl patch KIND NAME -n NAMESPACE --type merge -p '{\"metadata\":{\"finalizers\":null}}')"
            }
            _ => return None,
        })
    }
}

/// A container in a state that waiting does not fix (see [`KubeError::PodCannotStart`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CannotStart {
    /// Namespace.
    pub namespace: String,
    /// The pod.
    pub pod: String,
    /// The container (regular, init or native sidecar).
    pub container: String,
    /// The state's reason, e.g. `ErrImageNeverPull`.
    pub state: String,
    /// The container's image.
    pub image: String,
    /// The kubelet's message, or the last exit of a crash-looping container.
    pub detail: String,
}

/// An image pull failing past its grace (see [`KubeError::ImagePullStuck`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullStuck {
    /// Namespace.
    pub namespace: String,
    /// The pod.
    pub pod: String,
    /// The container.
    pub container: String,
    /// The image that cannot be pulled.
    pub image: String,
    /// How long this wait saw the pull failing.
    pub failing_for: std::time::Duration,
    /// The grace it allowed.
    pub grace: std::time::Duration,
    /// The last pull error the kubelet reported.
    pub last_error: String,
}

impl From<KubeError> for StepError {
    fn from(e: KubeError) -> Self {
        let hint = e.hint().map(String::from);
        StepError::classified(e.to_string(), e.is_retryable(), hint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16) -> Box<Status> {
        Box::new(Status {
            code,
            reason: "Reason".into(),
            message: "what the server said".into(),
            ..Default::default()
        })
    }

    #[test]
    fn api_answers_are_final_for_client_errors_and_retried_otherwise() {
        for code in [400, 401, 403, 404, 409, 422] {
            let e = KubeError::call("listing nodes", kube::Error::Api(status(code)));
            assert!(!e.is_retryable(), "{code} retried");
        }
        for code in [429, 500, 503, 504] {
            let e = KubeError::call("listing nodes", kube::Error::Api(status(code)));
            assert!(e.is_retryable(), "{code} not retried");
        }
        let e = KubeError::call("listing nodes", kube::Error::Api(status(404)));
        assert_eq!(
            e.to_string(),
            "listing nodes: the API server answered 404 Reason: what the server said"
        );
        let s = StepError::from(e);
        assert!(s.fatal);
        assert_eq!(
            s.hint.as_deref(),
            Some("does the namespace or object exist? is the CRD installed?")
        );
    }

    #[test]
    fn an_unreachable_server_is_retried_and_a_refusal_is_not() {
        let e = KubeError::call(
            "listing nodes",
            kube::Error::LinesCodecMaxLineLengthExceeded,
        );
        assert!(e.is_retryable());
        assert!(
            e.to_string()
                .starts_with("listing nodes: cannot reach the API server: ")
        );
        assert!(!StepError::from(e).fatal);

        let e = KubeError::change(
            "patch Deployment/default/x",
            "patching Deployment/default/x",
            true,
            kube::Error::Api(status(422)),
        );
        assert!(!e.is_retryable());
        assert_eq!(
            e.to_string(),
            "patch Deployment/default/x (dry run, nothing was changed): the API server refused it: what the server said (Reason)"
        );
    }

    #[test]
    fn not_ready_yet_is_retried_and_bad_input_is_not() {
        let pending = KubeError::ProxiesNotMoved {
            namespace: "default".into(),
            version: "1.30.3".into(),
            pending: vec!["pod a: x".into(), "pod b: y".into()],
        };
        assert!(pending.is_retryable());
        assert_eq!(
            pending.to_string(),
            "the data plane in namespace default did not move to Istio 1.30.3: pod a: x; pod b: y"
        );
        let missing = KubeError::NoNamespace("bookinfo".into());
        assert!(!missing.is_retryable());
        let s = StepError::from(missing);
        assert_eq!(
            (s.message.as_str(), s.fatal),
            ("namespace bookinfo does not exist", true)
        );
        assert!(!KubeError::MissingManifest("x.yaml".into()).is_retryable());
    }
}
