//! `kubectl exec`: run an argument vector in a pod's container and collect stdout, stderr and
//! the exit code. No shell is involved unless the argv itself starts one.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, AttachParams, ListParams, ResourceExt};
use tokio::io::AsyncReadExt;

use super::KubeError;

/// The result of one exec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// The pod it ran in.
    pub pod: String,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// Exit code (0 on success).
    pub exit_code: i32,
}

/// The first Ready pod matching a label selector, by name order (so reruns pick the same one).
pub async fn first_ready_pod(
    client: &kube::Client,
    ns: &str,
    selector: &str,
) -> Result<String, KubeError> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let list = api
        .list(&ListParams::default().labels(selector))
        .await
        .map_err(|e| KubeError::call(format!("listing pods {selector} in {ns}"), e))?;
    let mut ready: Vec<String> = list
        .items
        .iter()
        .filter(|p| is_ready(p))
        .map(|p| p.name_any())
        .collect();
    ready.sort();
    ready
        .into_iter()
        .next()
        .ok_or_else(|| KubeError::NoReadyPod {
            namespace: ns.to_string(),
            selector: selector.to_string(),
            matching: list.items.len(),
        })
}

/// True when the pod is Running and its Ready condition is True.
pub fn is_ready(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none()
        && p.status.as_ref().is_some_and(|s| {
            s.phase.as_deref() == Some("Running")
                && s.conditions
                    .as_ref()
                    .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
}

/// Runs `command` in `pod`'s `container`.
pub async fn exec(
    client: &kube::Client,
    ns: &str,
    pod: &str,
    container: Option<&str>,
    command: &[String],
) -> Result<ExecOutput, KubeError> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let mut ap = AttachParams::default()
        .stdout(true)
        .stderr(true)
        .stdin(false);
    if let Some(c) = container {
        ap = ap.container(c);
    }
    let mut proc = api
        .exec(pod, command.to_vec(), &ap)
        .await
        .map_err(|e| KubeError::call(format!("exec in pod {ns}/{pod}"), e))?;
    let mut out = proc.stdout();
    let mut err = proc.stderr();
    let status = proc.take_status();
    // Read both streams at once: the internal pipes are small and a full one stalls the exec.
    let read_out = async {
        let mut s = Vec::new();
        if let Some(o) = out.as_mut() {
            let _ = o.read_to_end(&mut s).await;
        }
        s
    };
    let read_err = async {
        let mut s = Vec::new();
        if let Some(e) = err.as_mut() {
            let _ = e.read_to_end(&mut s).await;
        }
        s
    };
    let (stdout, stderr) = tokio::join!(read_out, read_err);
    let status = match status {
        Some(s) => s.await,
        None => None,
    };
    let _ = proc.join().await;
    let exit_code = exit_code(status).ok_or_else(|| KubeError::NoExitStatus {
        pod: pod.to_string(),
    })?;
    Ok(ExecOutput {
        pod: pod.to_string(),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
        exit_code,
    })
}

/// The command's exit code from the exec's final status: `Success` is 0, a failure carries its
/// code; `None` when the stream ended without any status (never a silent 0).
pub(crate) fn exit_code(
    status: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Status>,
) -> Option<i32> {
    let st = status?;
    if st.status.as_deref() == Some("Success") {
        return Some(0);
    }
    Some(
        st.details
            .as_ref()
            .and_then(|d| d.causes.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.reason.as_deref() == Some("ExitCode")))
            .and_then(|c| c.message.as_deref())
            .and_then(|m| m.parse().ok())
            .unwrap_or_else(|| {
                tracing::debug!("exec failed without an exit code: {:?}", st.message);
                -1
            }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Status, StatusCause, StatusDetails};

    #[test]
    fn exit_codes() {
        assert_eq!(exit_code(None), None);
        let e = KubeError::NoExitStatus { pod: "p".into() };
        assert!(e.to_string().contains("without an exit status"), "{e}");
        assert!(e.is_retryable());
        let ok = Status {
            status: Some("Success".into()),
            ..Default::default()
        };
        assert_eq!(exit_code(Some(ok)), Some(0));
        let failed = Status {
            status: Some("Failure".into()),
            details: Some(StatusDetails {
                causes: Some(vec![StatusCause {
                    reason: Some("ExitCode".into()),
                    message: Some("7".into()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(exit_code(Some(failed)), Some(7));
    }
}
