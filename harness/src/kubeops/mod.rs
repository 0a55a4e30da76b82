//! Kubernetes operations through kube-rs, the way the walkthrough used kubectl: apply, label,
//! wait, exec, port-forward, ingress address lookup, and the diagnostics bundle. No kubectl
//! process is started; every call goes to the cluster's API with the run's own kubeconfig.
//! Failures are [`KubeError`]s, which say whether a retry can help.

pub mod apply;
pub mod delete;
pub mod diagnostics;
pub mod error;
pub mod exec;
pub mod ingress;
pub mod patch;
pub mod podstate;
pub mod portforward;
pub mod wait;

use std::path::Path;

use kube::config::{KubeConfigOptions, Kubeconfig};

pub use self::error::KubeError;
use crate::error::StepError;

/// The field manager of every server-side apply this harness makes.
pub const FIELD_MANAGER: &str = "istio-e2e";

/// Runs API discovery (which kinds the cluster serves, and where).
pub(crate) async fn discover(
    client: &kube::Client,
) -> Result<kube::discovery::Discovery, KubeError> {
    kube::discovery::Discovery::new(client.clone())
        .run()
        .await
        .map_err(|e| KubeError::call("API discovery", e))
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
) -> Result<kube::Client, KubeError> {
    crate::install_crypto_provider();
    let kc = Kubeconfig::read_from(kubeconfig).map_err(|source| KubeError::ReadKubeconfig {
        path: kubeconfig.to_path_buf(),
        source,
    })?;
    let opts = KubeConfigOptions {
        context: context.map(str::to_string),
        ..Default::default()
    };
    let cfg = kube::Config::from_custom_kubeconfig(kc, &opts)
        .await
        .map_err(|source| KubeError::InvalidKubeconfig {
            path: kubeconfig.to_path_buf(),
            source,
        })?;
    kube::Client::try_from(cfg).map_err(|e| KubeError::Client(Box::new(e)))
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
    KubeError,
> {
    let api: kube::Api<k8s_openapi::api::core::v1::Service> =
        kube::Api::namespaced(client.clone(), ns);
    let svc = api
        .get(service)
        .await
        .map_err(|e| KubeError::call(format!("looking up service {ns}/{service}"), e))?;
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
        None => Err(KubeError::NoSuchPort {
            namespace: ns.to_string(),
            service: service.to_string(),
            port: port.to_string(),
            has: ports
                .iter()
                .map(|p| format!("{}({})", p.name.clone().unwrap_or_default(), p.port))
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// Turns a kube error into a step error that says what was being done and what to try (for
/// step code that calls kube-rs directly; see [`KubeError::call`]).
pub fn describe_error(what: &str, e: kube::Error) -> StepError {
    KubeError::call(what, e).into()
}
