//! Server-side apply of JSON objects of any kind, the way istioctl applies its manifests
//! (field manager `istio-operator`), and the waits istioctl does after (CRDs established,
//! Deployments available).

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::{self, Scope};
use kube::runtime::wait::{await_condition, conditions};
use serde_json::Value;

use super::IstioctlError;

/// The API of a kind (`apps/v1`, `Deployment`) and whether it is namespaced.
async fn resource(
    client: &kube::Client,
    api_version: &str,
    kind: &str,
) -> Result<(kube::api::ApiResource, Scope), IstioctlError> {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let gvk = GroupVersionKind::gvk(group, version, kind);
    let (ar, caps) = discovery::pinned_kind(client, &gvk)
        .await
        .map_err(|e| IstioctlError::kube(format!("finding the API of {kind}"), e))?;
    Ok((ar, caps.scope))
}

/// The API to write one object through.
async fn api_for(client: &kube::Client, obj: &Value) -> Result<Api<DynamicObject>, IstioctlError> {
    let s = |k: &str| obj[k].as_str().unwrap_or_default().to_string();
    let (ar, scope) = resource(client, &s("apiVersion"), &s("kind")).await?;
    Ok(match (scope, obj["metadata"]["namespace"].as_str()) {
        (Scope::Namespaced, Some(ns)) => Api::namespaced_with(client.clone(), ns, &ar),
        _ => Api::all_with(client.clone(), &ar),
    })
}

fn name_of(obj: &Value) -> String {
    obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Applies each object (server-side, forced, manager `istio-operator`).
pub async fn apply_all(client: &kube::Client, objects: &[Value]) -> Result<(), IstioctlError> {
    let pp = PatchParams::apply("istio-operator").force();
    for obj in objects {
        let api = api_for(client, obj).await?;
        let name = name_of(obj);
        api.patch(&name, &pp, &Patch::Apply(obj))
            .await
            .map_err(|e| {
                IstioctlError::kube(
                    format!("applying {} {name}", obj["kind"].as_str().unwrap_or("?")),
                    e,
                )
            })?;
    }
    Ok(())
}

/// Waits until each CRD is established.
pub async fn crds_established(
    client: &kube::Client,
    crds: &[Value],
    limit: Duration,
) -> Result<(), IstioctlError> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in crds {
        let name = name_of(crd);
        let wait = await_condition(api.clone(), &name, conditions::is_crd_established());
        match tokio::time::timeout(limit, wait).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(IstioctlError::Wait(format!("CRD {name}: {e}"))),
            Err(_) => {
                return Err(IstioctlError::Wait(format!(
                    "CRD {name} not established within {limit:?}"
                )));
            }
        }
    }
    Ok(())
}

/// Waits until each Deployment among `objects` has its replicas available and updated.
pub async fn deployments_ready(
    client: &kube::Client,
    objects: &[Value],
    limit: Duration,
) -> Result<(), IstioctlError> {
    for obj in objects.iter().filter(|o| o["kind"] == "Deployment") {
        let (name, ns) = (
            name_of(obj),
            obj["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default")
                .to_string(),
        );
        let api: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        let wait = await_condition(api, &name, |d: Option<&Deployment>| {
            d.and_then(|d| d.status.as_ref()).is_some_and(|s| {
                s.available_replicas.unwrap_or(0) >= 1 && s.unavailable_replicas.unwrap_or(0) == 0
            })
        });
        match tokio::time::timeout(limit, wait).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(IstioctlError::Wait(format!("deployment {ns}/{name}: {e}"))),
            Err(_) => {
                return Err(IstioctlError::Wait(format!(
                    "deployment {ns}/{name} not ready within {limit:?}"
                )));
            }
        }
    }
    Ok(())
}

/// Deletes the objects of these kinds that carry `selector`, in reverse order of `kinds`.
pub async fn delete_labelled(
    client: &kube::Client,
    kinds: &[(&str, &str)],
    selector: &str,
) -> Result<usize, IstioctlError> {
    let mut n = 0;
    for (api_version, kind) in kinds.iter().rev() {
        let (ar, _) = resource(client, api_version, kind).await?;
        let all: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
        let list = all
            .list(&ListParams::default().labels(selector))
            .await
            .map_err(|e| IstioctlError::kube(format!("listing {kind}"), e))?;
        for o in list {
            let name = o.metadata.name.clone().unwrap_or_default();
            let api = match &o.metadata.namespace {
                Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
                None => all.clone(),
            };
            api.delete(&name, &DeleteParams::background())
                .await
                .map_err(|e| IstioctlError::kube(format!("deleting {kind} {name}"), e))?;
            n += 1;
        }
    }
    Ok(n)
}
