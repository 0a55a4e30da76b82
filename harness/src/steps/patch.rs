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

use crate::Outputs;
use crate::context::Context;
use crate::error::StepError;
use crate::kubeops::patch::{Change, Target};

/// Spec of a `patch` step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PatchSpec {
    /// The object's kind, e.g. `Deployment`.
    pub kind: String,
    /// Its apiVersion; the cluster's preferred version of the kind when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Its name.
    pub name: String,
    /// Its namespace (the scenario's by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// A strategic merge patch (JSON merge patch for custom resources).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge: Option<serde_json::Value>,
    /// JSON patch operations (`op`, `path`, `value`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json: Option<serde_json::Value>,
}

fn problems(s: &PatchSpec) -> Vec<String> {
    let mut p = Vec::new();
    match (&s.merge, &s.json) {
        (Some(_), Some(_)) => p.push("give `merge` or `json`, not both".into()),
        (None, None) => p.push("say what to change: `merge` (a strategic merge patch) or `json` (JSON patch operations)".into()),
        (Some(m), None) if !m.is_object() => {
            p.push("`merge` must be a map, like `spec: { replicas: 2 }`".into())
        }
        (None, Some(j)) => {
            if let Err(e) = serde_json::from_value::<json_patch::Patch>(j.clone()) {
                p.push(format!(
                    "`json` is not a list of JSON patch operations ({e}); write e.g. `- {{ op: remove, path: /spec/x }}`"
                ));
            }
        }
        _ => {}
    }
    p
}

async fn run(s: &PatchSpec, ctx: &mut Context) -> Result<Outputs, StepError> {
    let change = match (&s.merge, &s.json) {
        (Some(m), None) => Change::Merge(m.clone()),
        (None, Some(j)) => Change::Json(
            serde_json::from_value(j.clone()).map_err(|e| StepError::fatal(e.to_string()))?,
        ),
        _ => return Err(StepError::fatal(problems(s).join("; "))),
    };
    let client = ctx.client().await?;
    let ns = ctx.ns(s.namespace.as_ref());
    let target = Target {
        kind: &s.kind,
        api_version: s.api_version.as_deref(),
        name: &s.name,
        namespace: &ns,
    };
    ctx.applied = vec![format!("{}/{ns}/{}", s.kind, s.name)];
    let changed = crate::kubeops::patch::patch(&client, &target, &change).await?;
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
