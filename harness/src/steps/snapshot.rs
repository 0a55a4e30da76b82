//! `snapshot`: record a named, normalized view of what a person would look at (the pod table,
//! the services, earlier steps' results) so an upgrade shows up as a snapshot diff.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, ListParams, ResourceExt};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::Outputs;
use crate::context::Context;
use crate::error::StepError;

/// Spec of a `snapshot` step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SnapshotSpec {
    /// The snapshot's name; the file is `snapshots/<scenario>__<name>.snap`.
    pub name: String,
    /// Namespaces whose pods to record (name with hash suffixes redacted, containers ready,
    /// phase, restarts bucketed).
    #[serde(default)]
    pub pods: Vec<String>,
    /// Namespaces whose services to record (name, type, port names and ports).
    #[serde(default)]
    pub services: Vec<String>,
    /// Names of earlier steps whose outputs to record.
    #[serde(default)]
    pub steps: Vec<String>,
    /// Any further values, variables allowed (e.g. `title: ${page.title}`).
    #[serde(default)]
    pub values: BTreeMap<String, String>,
}

fn problems(s: &SnapshotSpec) -> Vec<String> {
    let mut p = Vec::new();
    if s.name.is_empty()
        || !s
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        p.push(format!(
            "snapshot name {:?} must be letters, digits, '-' or '_'",
            s.name
        ));
    }
    if s.pods.is_empty() && s.services.is_empty() && s.steps.is_empty() && s.values.is_empty() {
        p.push("record something: `pods`, `services`, `steps` or `values`".into());
    }
    p
}

async fn run(s: &SnapshotSpec, ctx: &mut Context) -> Result<Outputs, StepError> {
    let mut doc = serde_json::Map::new();
    if !s.pods.is_empty() || !s.services.is_empty() {
        let client = ctx.client().await?;
        let mut pods_out = serde_json::Map::new();
        for ns in &s.pods {
            let api: Api<Pod> = Api::namespaced(client.clone(), ns);
            let list = api
                .list(&ListParams::default())
                .await
                .map_err(|e| super::kube_err(&format!("listing pods in {ns}"), e))?;
            let mut rows: Vec<Value> = list
                .items
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .map(pod_row)
                .collect();
            rows.sort_by_key(|r| r.to_string());
            pods_out.insert(ns.clone(), Value::Array(rows));
        }
        if !s.pods.is_empty() {
            doc.insert("pods".into(), Value::Object(pods_out));
        }
        let mut svcs_out = serde_json::Map::new();
        for ns in &s.services {
            let api: Api<Service> = Api::namespaced(client.clone(), ns);
            let list = api
                .list(&ListParams::default())
                .await
                .map_err(|e| super::kube_err(&format!("listing services in {ns}"), e))?;
            let mut rows: Vec<Value> = list
                .items
                .iter()
                .map(|svc| {
                    let spec = svc.spec.clone().unwrap_or_default();
                    json!({
                        "name": svc.name_any(),
                        "type": spec.type_.unwrap_or_default(),
                        "ports": spec.ports.unwrap_or_default().iter().map(|p| format!("{}:{}/{}", p.name.clone().unwrap_or_default(), p.port, p.protocol.clone().unwrap_or_else(|| "TCP".into()))).collect::<Vec<_>>(),
                    })
                })
                .collect();
            rows.sort_by_key(|r| r.to_string());
            svcs_out.insert(ns.clone(), Value::Array(rows));
        }
        if !s.services.is_empty() {
            doc.insert("services".into(), Value::Object(svcs_out));
        }
    }
    if !s.steps.is_empty() {
        let mut steps = serde_json::Map::new();
        for name in &s.steps {
            let out = ctx.step_outputs.get(name).ok_or_else(|| {
                StepError::fatal(format!(
                    "no earlier step named {name:?} to record; steps so far: {}",
                    ctx.step_outputs
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
            steps.insert(name.clone(), Value::Object(out.clone()));
        }
        doc.insert("steps".into(), Value::Object(steps));
    }
    if !s.values.is_empty() {
        doc.insert(
            "values".into(),
            serde_json::to_value(&s.values).unwrap_or_default(),
        );
    }
    let normalized = crate::snapshot::normalize(Value::Object(doc));
    ctx.snapshots.insert(s.name.clone(), normalized);
    let mut o = Outputs::new();
    o.insert("snapshot".into(), s.name.clone().into());
    Ok(o)
}

impl super::Kind for SnapshotSpec {
    fn default_timeout(&self) -> std::time::Duration {
        super::secs(60)
    }
    fn summary(&self) -> String {
        self.name.clone()
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

/// One pod as a snapshot row: ready counted as kubectl's READY column (native sidecars
/// included), restarts bucketed; native sidecars are also named as such, so a v1.34 run says
/// how its proxies were injected while the row stays comparable with a v1.20 run's.
fn pod_row(p: &k8s_openapi::api::core::v1::Pod) -> Value {
    let st = p.status.clone().unwrap_or_default();
    let readiness = crate::kubeops::wait::container_readiness(p);
    let restarts: i32 = crate::kubeops::wait::counted_statuses(p)
        .iter()
        .map(|c| c.restart_count)
        .sum();
    let mut row = json!({
        "name": crate::snapshot::redact_pod_name(&p.name_any()),
        "ready": format!("{}/{}", readiness.ready, readiness.total),
        "status": st.phase.unwrap_or_default(),
        "restarts": if restarts == 0 { "0" } else { "1+" },
        "containers": readiness.names,
    });
    let native: Vec<String> = p
        .spec
        .iter()
        .flat_map(|s| s.init_containers.iter().flatten())
        .filter(|c| crate::kubeops::wait::is_native_sidecar(c))
        .map(|c| c.name.clone())
        .collect();
    if !native.is_empty() {
        row["native-sidecars"] = json!(native);
    }
    row
}

crate::scenario::resolve::resolve_fields!(SnapshotSpec {
    name,
    pods,
    services,
    steps,
    values
});
