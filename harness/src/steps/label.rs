//! `label`: namespace labels, e.g. `istio-injection=enabled` (the walkthrough's
//! `kubectl label namespace default istio-injection=enabled --overwrite`). Idempotent; labels
//! it does not name stay; creates the namespace when it does not exist. On a cluster that
//! outlives the run, teardown deletes the namespace it created, or removes the labels it added
//! and restores those it changed.

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde::{Deserialize, Serialize};

use crate::Outputs;
use crate::cleanup::Cleanup;
use crate::context::Context;
use crate::error::StepError;
use crate::scenario::StringMap;

/// Spec of a `label` step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
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
    let before = api
        .get_opt(&ns)
        .await
        .map_err(|e| super::kube_err(&format!("looking up namespace {ns}"), e))?;
    let after = match &before {
        None => {
            let ns_obj = Namespace {
                metadata: kube::api::ObjectMeta {
                    name: Some(ns.clone()),
                    labels: Some(s.labels.clone()),
                    ..Default::default()
                },
                ..Default::default()
            };
            let pp = PostParams {
                dry_run: false,
                field_manager: Some(crate::kubeops::FIELD_MANAGER.into()),
            };
            api.create(&pp, &ns_obj)
                .await
                .map_err(|e| super::kube_err(&format!("creating namespace {ns}"), e))?
        }
        // A merge patch of the labels alone, as `kubectl label --overwrite`: labels the step
        // does not name stay, whoever set them (a server-side apply by the run's field
        // manager would remove labels an earlier apply of the run set).
        Some(_) => {
            let body = serde_json::json!({ "metadata": { "labels": s.labels } });
            let pp = PatchParams {
                field_manager: Some(crate::kubeops::FIELD_MANAGER.into()),
                ..Default::default()
            };
            api.patch(&ns, &pp, &Patch::Merge(&body))
                .await
                .map_err(|e| super::kube_err(&format!("labeling namespace {ns}"), e))?
        }
    };
    let undo = match before {
        None => Some(Cleanup::Namespace {
            name: ns.clone(),
            uid: after.metadata.uid,
        }),
        Some(before) => {
            let previous = changed_labels(before.metadata.labels.unwrap_or_default(), &s.labels);
            (!previous.is_empty()).then(|| Cleanup::Labels {
                namespace: ns.clone(),
                previous,
            })
        }
    };
    ctx.cleanup.extend(undo);
    let mut out = Outputs::new();
    out.insert("namespace".into(), ns.into());
    out.insert(
        "labels".into(),
        serde_json::to_value(&s.labels).unwrap_or_default(),
    );
    Ok(out)
}

/// The labels of `set` that change on a namespace labelled `had`, each with its value before
/// (`None`: the label was not there), so teardown can put them back.
fn changed_labels(
    had: std::collections::BTreeMap<String, String>,
    set: &StringMap,
) -> std::collections::BTreeMap<String, Option<String>> {
    set.iter()
        .filter(|(k, v)| had.get(*k) != Some(*v))
        .map(|(k, _)| (k.clone(), had.get(k).cloned()))
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Only labels the step changes are recorded, each with the value it had (none when the
    /// step adds it), so teardown removes added labels and restores changed ones.
    #[test]
    fn changed_labels_keep_their_previous_values() {
        let had = [
            ("team", "a"),
            ("istio-injection", "disabled"),
            ("keep", "x"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let set: StringMap = [("istio-injection", "enabled"), ("keep", "x"), ("new", "1")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let got = changed_labels(had, &set);
        let want: std::collections::BTreeMap<String, Option<String>> = [
            ("istio-injection".to_string(), Some("disabled".to_string())),
            ("new".to_string(), None),
        ]
        .into_iter()
        .collect();
        assert_eq!(got, want);
    }
}
