//! Writes the CA bundle into the injector's MutatingWebhookConfiguration, as istiod's webhook
//! patcher does (`pkg/webhooks/webhookpatch.go`: every webhook of the configurations labelled
//! with istiod's revision whose service is istiod gets the CA).

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;

use super::{IstiodError, Settings};

/// Patches `caBundle` of every webhook that calls this istiod's Service.
pub async fn patch_ca_bundles(
    client: &kube::Client,
    settings: &Settings,
    ca_pem: &str,
) -> Result<(), IstiodError> {
    let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let selector = format!("istio.io/rev={}", settings.revision);
    let list = api
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| IstiodError::kube("listing the injector's webhook configurations", e))?;
    let bundle = ca_base64(ca_pem);
    for mwc in list {
        let name = mwc.metadata.name.clone().unwrap_or_default();
        let ops: Vec<_> = mwc
            .webhooks
            .unwrap_or_default()
            .iter()
            .enumerate()
            .filter(|(_, w)| {
                w.client_config.service.as_ref().is_some_and(|s| {
                    s.name == settings.service() && s.namespace == settings.namespace
                })
            })
            .map(|(i, _)| json!({"op": "add", "path": format!("/webhooks/{i}/clientConfig/caBundle"), "value": bundle}))
            .collect();
        if ops.is_empty() {
            continue;
        }
        let patch: json_patch::Patch = serde_json::from_value(json!(ops)).expect("valid ops");
        api.patch(&name, &PatchParams::default(), &Patch::Json::<()>(patch))
            .await
            .map_err(|e| IstiodError::kube(format!("patching caBundle of {name}"), e))?;
        tracing::info!("caBundle written into MutatingWebhookConfiguration {name}");
    }
    Ok(())
}

fn ca_base64(pem: &str) -> String {
    let bytes = k8s_openapi::ByteString(pem.as_bytes().to_vec());
    serde_json::to_value(bytes)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}
