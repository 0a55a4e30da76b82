//! `patch`: change a few fields of an existing object (`kubectl patch`), e.g. roll a Deployment
//! to a new version or make its rollout unsafe.
//!
//! ```yaml
//! - name: roll productpage to v2
//!   patch:
//!     kind: Deployment
//!     name: productpage-v1
//!     merge:                      # strategic merge patch, written as YAML
//!       spec: { template: { metadata: { annotations: { stand-in/version: v2 } } } }
//! - name: no readiness probe
//!   patch:
//!     kind: Deployment
//!     name: productpage-v1
//!     json:                       # JSON patch operations
//!       - { op: remove, path: /spec/template/spec/containers/1/readinessProbe }
//! ```

use serde::{Deserialize, Serialize};
use serde_json::Map;

use super::SpecError;
use crate::Outputs;
use crate::context::Context;
use crate::error::StepError;
use crate::kubeops::patch::{Change, Target};

/// Spec of a `patch` step: the object, and exactly one change (`merge` or `json`), checked
/// and parsed when the file is read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(try_from = "PatchFields", into = "PatchFields")]
pub struct PatchSpec {
    /// The object's kind, e.g. `Deployment`.
    pub kind: String,
    /// Its apiVersion; the cluster's preferred version of the kind when absent.
    pub api_version: Option<String>,
    /// Its name.
    pub name: String,
    /// Its namespace (the scenario's by default).
    pub namespace: Option<String>,
    /// What to change: a strategic merge patch or JSON patch operations.
    pub change: Change,
}

/// The block as written: `merge` and `json` side by side, before "exactly one" is checked.
#[derive(Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[schemars(
    description = "An existing object and exactly one change: `merge` or `json`.",
    extend("oneOf" = [{ "required": ["merge"] }, { "required": ["json"] }])
)]
struct PatchFields {
    /// The object's kind, e.g. `Deployment`.
    kind: String,
    /// Its apiVersion; the cluster's preferred version of the kind when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    api_version: Option<String>,
    /// Its name.
    name: String,
    /// Its namespace (the scenario's by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    namespace: Option<String>,
    /// A strategic merge patch, written as YAML (a map).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<Map<String, serde_json::Value>>")]
    merge: Option<serde_json::Value>,
    /// JSON patch operations, e.g. `- { op: remove, path: /spec/x }`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<Vec<Map<String, serde_json::Value>>>")]
    json: Option<serde_json::Value>,
}

impl TryFrom<PatchFields> for PatchSpec {
    type Error = SpecError;

    fn try_from(f: PatchFields) -> Result<Self, SpecError> {
        let problem = |m: String| SpecError::new("patch", m);
        let change = match (f.merge, f.json) {
            (Some(_), Some(_)) => return Err(problem("give `merge` or `json`, not both".into())),
            (None, None) => return Err(problem("say what to change: `merge` (a strategic merge patch) or `json` (JSON patch operations)".into())),
            (Some(m), None) if !m.is_object() => {
                return Err(problem("`merge` must be a map, like `spec: { replicas: 2 }`".into()));
            }
            (Some(m), None) => Change::Merge(m),
            (None, Some(j)) => Change::Json(serde_json::from_value(j).map_err(|e| {
                problem(format!(
                    "`json` is not a list of JSON patch operations ({e}); write e.g. `- {{ op: remove, path: /spec/x }}`"
                ))
            })?),
        };
        Ok(PatchSpec {
            kind: f.kind,
            api_version: f.api_version,
            name: f.name,
            namespace: f.namespace,
            change,
        })
    }
}

impl From<PatchSpec> for PatchFields {
    fn from(s: PatchSpec) -> Self {
        let (merge, json) = match s.change {
            Change::Merge(m) => (Some(m), None),
            Change::Json(j) => (
                None,
                Some(serde_json::to_value(j).expect("JSON patch operations serialize")),
            ),
        };
        PatchFields {
            kind: s.kind,
            api_version: s.api_version,
            name: s.name,
            namespace: s.namespace,
            merge,
            json,
        }
    }
}

async fn run(s: &PatchSpec, ctx: &mut Context) -> Result<Outputs, StepError> {
    let client = ctx.client().await?;
    let ns = ctx.ns(s.namespace.as_ref());
    let target = Target {
        kind: &s.kind,
        api_version: s.api_version.as_deref(),
        name: &s.name,
        namespace: &ns,
    };
    ctx.applied = vec![format!("{}/{ns}/{}", s.kind, s.name)];
    let changed = crate::kubeops::patch::patch(&client, &target, &s.change).await?;
    let mut out = Outputs::new();
    out.insert(
        "object".into(),
        format!("{}/{ns}/{}", s.kind, s.name).into(),
    );
    out.insert("changed".into(), changed.into());
    Ok(out)
}

impl super::Kind for PatchSpec {
    fn default_timeout(&self) -> std::time::Duration {
        super::secs(60)
    }
    fn summary(&self) -> String {
        format!("{}/{}", self.kind, self.name)
    }
    async fn run(
        &self,
        ctx: &mut Context,
        _deadline: std::time::Instant,
    ) -> Result<Outputs, StepError> {
        run(self, ctx).await
    }
}

crate::scenario::resolve::resolve_fields!(PatchSpec {
    kind,
    api_version,
    name,
    namespace,
    change
});
