//! `label`: namespace labels, e.g. `istio-injection=enabled` (the walkthrough's
//! `kubectl label namespace default istio-injection=enabled`). Idempotent; creates the
//! namespace when it does not exist.

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, Patch, PatchParams};
use serde::{Deserialize, Serialize};

use crate::Outputs;
use crate::context::Context;
use crate::error::StepError;
use crate::scenario::StringMap;

/// Spec of a `label` step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LabelSpec {
    /// The namespace (the scenario's when not given).
    #[serde(default)]
    pub namespace: Option<String>,
    /// Labels to set.
    pub labels: StringMap,
}

fn problems(s: &LabelSpec) -> Vec<String> {
    use crate::scenario::names;
    if s.labels.is_empty() {
        return vec!["`labels` is empty".into()];
    }
    let ns = s.namespace.as_deref().map(names::namespace);
    let keys = s.labels.keys().map(|k| names::label_key(k));
    let values = s.labels.iter().map(|(k, v)| names::label_value(k, v));
    ns.into_iter()
        .chain(keys)
        .chain(values)
        .filter_map(Result::err)
        .map(|e| e.to_string())
        .collect()
}

async fn run(s: &LabelSpec, ctx: &mut Context) -> Result<Outputs, StepError> {
    let client = ctx.client().await?;
    let ns = ctx.ns(s.namespace.as_ref());
    let api: Api<Namespace> = Api::all(client);
    let existed = api
        .get_opt(&ns)
        .await
        .map_err(|e| super::kube_err(&format!("looking up namespace {ns}"), e))?
        .is_some();
    let body = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": { "name": ns, "labels": s.labels },
    });
    api.patch(
        &ns,
        &PatchParams::apply(crate::kubeops::FIELD_MANAGER),
        &Patch::Apply(&body),
    )
    .await
    .map_err(|e| super::kube_err(&format!("labeling namespace {ns}"), e))?;
    if !existed {
        ctx.cleanup
            .push(crate::cleanup::Cleanup::Namespace { name: ns.clone() });
    }
    let mut out = Outputs::new();
    out.insert("namespace".into(), ns.into());
    out.insert(
        "labels".into(),
        serde_json::to_value(&s.labels).unwrap_or_default(),
    );
    Ok(out)
}

impl super::Kind for LabelSpec {
    fn default_timeout(&self) -> std::time::Duration {
        super::secs(30)
    }
    fn summary(&self) -> String {
        format!(
            "{} {}",
            self.namespace.as_deref().unwrap_or(""),
            self.labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        )
        .trim()
        .to_string()
    }
    fn problems(&self) -> Vec<String> {
        problems(self)
    }
    async fn run(
        &self,
        ctx: &mut Context,
        _deadline: std::time::Instant,
    ) -> Result<Outputs, StepError> {
        run(self, ctx).await
    }
}

crate::scenario::resolve::resolve_fields!(LabelSpec { namespace, labels });
