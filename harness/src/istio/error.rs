//! Why an Istio operation failed: a version the cluster cannot take, an istioctl that could
//! not run or exited non-zero, a release that could not be prepared. It becomes the
//! user-facing [`StepError`] only at the step boundary, through `From`.

use std::path::PathBuf;

use crate::download::DownloadError;
use crate::error::StepError;
use crate::kubeops::KubeError;

/// An Istio operation's failure.
#[derive(Debug, thiserror::Error)]
pub enum IstioError {
    /// A version string that is not `1.<minor>[.<patch>]` (`what` is `Istio` or `Kubernetes`).
    #[error("cannot read {what} version {version:?}")]
    BadVersion {
        /// `Istio` or `Kubernetes`.
        what: &'static str,
        /// The text given.
        version: String,
    },
    /// An Istio minor release older than the support table.
    #[error("Istio 1.{0} is older than any release this harness supports (1.10+)")]
    TooOld(u32),
    /// The cluster's Kubernetes is older than the Istio release supports.
    #[error(
        "Istio {istio} needs Kubernetes 1.{oldest} or newer (supported: 1.{oldest} to 1.{newest}); this cluster is Kubernetes {kubernetes}"
    )]
    KubernetesTooOld {
        /// The Istio version.
        istio: String,
        /// The cluster's version.
        kubernetes: String,
        /// Oldest supported Kubernetes minor.
        oldest: u32,
        /// Newest supported Kubernetes minor.
        newest: u32,
    },
    /// istioctl could not be started.
    #[error("cannot run {}: {source}", .program.display())]
    Spawn {
        /// The istioctl binary.
        program: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// istioctl was still running at the deadline (and was killed).
    #[error("istioctl {argv} did not finish before the step's timeout")]
    Timeout {
        /// Its arguments, space-separated.
        argv: String,
    },
    /// istioctl exited non-zero.
    #[error("istioctl {command} exited {code}: {excerpt}")]
    Exited {
        /// How the command is named (`install`, `uninstall`).
        command: String,
        /// Its exit code.
        code: i32,
        /// The start of its output.
        excerpt: String,
    },
    /// The release could not be found, downloaded or verified.
    #[error(transparent)]
    Download(Box<DownloadError>),
    /// The cluster could not be asked (its version).
    #[error(transparent)]
    Kube(#[from] KubeError),
}

impl From<DownloadError> for IstioError {
    fn from(e: DownloadError) -> Self {
        IstioError::Download(Box::new(e))
    }
}

impl IstioError {
    /// True when trying again may succeed: istioctl timed out or failed (the control plane
    /// may still be settling), a transient download or API failure. False for versions that
    /// do not fit and an istioctl that cannot run.
    pub fn is_retryable(&self) -> bool {
        match self {
            IstioError::Timeout { .. } | IstioError::Exited { .. } => true,
            IstioError::Kube(e) => e.is_retryable(),
            // The download layer's own rule (crate::download: only HTTP failures are transient).
            IstioError::Download(e) => matches!(**e, DownloadError::Http { .. }),
            _ => false,
        }
    }

    /// True when the versions do not fit together (the compatibility precheck refused them).
    pub fn is_incompatible(&self) -> bool {
        matches!(
            self,
            IstioError::BadVersion { .. }
                | IstioError::TooOld(_)
                | IstioError::KubernetesTooOld { .. }
        )
    }

    /// What to try, when there is something to say.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            e if e.is_incompatible() => Some("pick another Istio version or Kubernetes version"),
            IstioError::Kube(e) => e.hint(),
            _ => None,
        }
    }
}

impl From<IstioError> for StepError {
    fn from(e: IstioError) -> Self {
        let e = match e {
            IstioError::Download(d) => return StepError::from(*d),
            IstioError::Kube(k) => return StepError::from(k),
            other => other,
        };
        let hint = e.hint().map(String::from);
        StepError::classified(e.to_string(), e.is_retryable(), hint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_that_do_not_fit_are_final_and_istioctl_failures_are_retried() {
        let old = IstioError::KubernetesTooOld {
            istio: "1.30.3".into(),
            kubernetes: "v1.20.2".into(),
            oldest: 32,
            newest: 36,
        };
        assert!(!old.is_retryable());
        let s = StepError::from(old);
        assert!(s.fatal);
        assert_eq!(
            s.hint.as_deref(),
            Some("pick another Istio version or Kubernetes version")
        );
        let exited = IstioError::Exited {
            command: "install".into(),
            code: 1,
            excerpt: "Error: ...".into(),
        };
        assert!(exited.is_retryable());
        assert_eq!(exited.to_string(), "istioctl install exited 1: Error: ...");
        assert!(!StepError::from(exited).fatal);
        assert!(IstioError::Timeout { argv: "x".into() }.is_retryable());
        assert!(!IstioError::TooOld(9).is_retryable());
    }
}
