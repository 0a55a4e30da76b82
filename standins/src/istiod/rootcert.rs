//! The `istio-ca-root-cert` ConfigMap (`root-cert.pem`) in every namespace, which injected pods
//! mount as `istiod-ca-cert`, kept the way istiod's namespace controller keeps it
//! (`security/pkg/k8s/namespace_controller.go`): written for each namespace the watch sees.

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;

use super::IstiodError;

/// The ConfigMap's name.
pub const NAME: &str = "istio-ca-root-cert";

/// Writes the ConfigMap into every namespace, now and as namespaces appear; runs until the
/// watch ends.
pub async fn keep(client: kube::Client, ca_pem: String) -> Result<(), IstiodError> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let mut stream = watcher(namespaces, watcher::Config::default())
        .applied_objects()
        .boxed();
    while let Some(ns) = stream.try_next().await? {
        let name = ns.metadata.name.unwrap_or_default();
        if ns.status.and_then(|s| s.phase).as_deref() == Some("Terminating") {
            continue;
        }
        write(&client, &name, &ca_pem).await?;
    }
    Ok(())
}

async fn write(client: &kube::Client, namespace: &str, ca_pem: &str) -> Result<(), IstiodError> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let cm = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": NAME, "labels": {"istio.io/config": "true"}},
        "data": {"root-cert.pem": ca_pem},
    });
    let pp = PatchParams::apply("istiod").force();
    match api.patch(NAME, &pp, &Patch::Apply(&cm)).await {
        Ok(_) => Ok(()),
        // A namespace being deleted refuses new objects: not an error of ours.
        Err(kube::Error::Api(e)) if e.code == 403 || e.code == 404 => Ok(()),
        Err(e) => Err(IstiodError::kube(
            format!("writing {NAME} in {namespace}"),
            e,
        )),
    }
}
