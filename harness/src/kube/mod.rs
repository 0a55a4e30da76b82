//! Kubernetes operations through kube-rs, the way the walkthrough used kubectl: apply, label,
//! wait, exec, port-forward, ingress address lookup, and the diagnostics bundle. No kubectl
//! process is started; every call goes to the cluster's API with the run's own kubeconfig.

pub mod apply;
pub mod diagnostics;
pub mod exec;
pub mod ingress;
pub mod patch;
pub mod portforward;
pub mod wait;

use std::path::Path;

use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::error::StepError;

/// The field manager of every server-side apply this harness makes.
pub const FIELD_MANAGER: &str = "istio-e2e";

/// Label put on namespaces and objects a run creates, so `istio-e2e clean` can find them.
pub const RUN_LABEL: &str = "istio-e2e.io/run";

/// A change the API server did not accept, for `what` (e.g. `patch Deployment/default/x`): an
/// API refusal is fatal and says whether it was the dry run (nothing changed); anything else is
/// described like every other kube error, as `doing` (e.g. `patching Deployment/default/x`).
pub(crate) fn refused(what: &str, doing: &str, dry_run: bool, e: kube::Error) -> StepError {
    match e {
        kube::Error::Api(s) => StepError::fatal(format!(
            "{what}{}: the API server refused it: {} ({})",
            if dry_run {
                " (dry run, nothing was changed)"
            } else {
                ""
            },
            s.message,
            s.reason
        )),
        other => describe_error(doing, other),
    }
}

/// Runs API discovery (which kinds the cluster serves, and where).
pub(crate) async fn discover(
    client: &kube::Client,
) -> Result<kube::discovery::Discovery, StepError> {
    kube::discovery::Discovery::new(client.clone())
        .run()
        .await
        .map_err(|e| describe_error("API discovery", e))
}

/// A label selector string (`app=x,version=v1`) from a map.
pub(crate) fn selector_string(labels: &std::collections::BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// A client for the cluster described by `kubeconfig` (and `context`, or its current one).
pub async fn client_for(
    kubeconfig: &Path,
    context: Option<&str>,
) -> Result<kube::Client, StepError> {
    crate::install_crypto_provider();
    let kc = Kubeconfig::read_from(kubeconfig).map_err(|e| {
        StepError::fatal(format!(
            "cannot read kubeconfig {}: {e}",
            kubeconfig.display()
        ))
    })?;
    let opts = KubeConfigOptions {
        context: context.map(str::to_string),
        ..Default::default()
    };
    let cfg = kube::Config::from_custom_kubeconfig(kc, &opts)
        .await
        .map_err(|e| {
            StepError::fatal(format!("invalid kubeconfig {}: {e}", kubeconfig.display()))
        })?;
    kube::Client::try_from(cfg)
        .map_err(|e| StepError::fatal(format!("cannot build a Kubernetes client: {e}")))
}

/// A Service and one of its ports, by name or number; the error lists the ports it has.
pub async fn service_port(
    client: &kube::Client,
    ns: &str,
    service: &str,
    port: &str,
) -> Result<
    (
        k8s_openapi::api::core::v1::Service,
        k8s_openapi::api::core::v1::ServicePort,
    ),
    StepError,
> {
    let api: kube::Api<k8s_openapi::api::core::v1::Service> =
        kube::Api::namespaced(client.clone(), ns);
    let svc = api
        .get(service)
        .await
        .map_err(|e| describe_error(&format!("looking up service {ns}/{service}"), e))?;
    let ports = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default();
    let found = ports
        .iter()
        .find(|p| p.name.as_deref() == Some(port) || p.port.to_string() == port)
        .cloned();
    match found {
        Some(p) => Ok((svc, p)),
        None => Err(StepError::fatal(format!(
            "service {ns}/{service} has no port {port}; it has {}",
            ports
                .iter()
                .map(|p| format!("{}({})", p.name.clone().unwrap_or_default(), p.port))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// Turns a kube error into a step error that says what was being done and what to try.
pub fn describe_error(what: &str, e: kube::Error) -> StepError {
    match e {
        kube::Error::Api(status) => {
            let fatal = matches!(status.code, 400 | 401 | 403 | 404 | 409 | 422);
            StepError {
                message: format!(
                    "{what}: the API server answered {} {}: {}",
                    status.code, status.reason, status.message
                ),
                hint: match status.code {
                    401 | 403 => Some("check the kubeconfig's credentials and RBAC".into()),
                    404 => Some("does the namespace or object exist? is the CRD installed?".into()),
                    _ => None,
                },
                fatal,
            }
        }
        other => StepError::new(format!("{what}: cannot reach the API server: {other}"))
            .with_hint("is the cluster up? `istio-e2e doctor` checks the kubeconfig"),
    }
}
