//! `apply`: server-side apply of files, directories and multi-document YAML (the walkthrough's
//! `kubectl apply -f`), CRDs first, after a dry run of the whole input.

use std::path::PathBuf;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::Outputs;
use crate::context::Context;
use crate::error::StepError;

/// Spec of an `apply` step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ApplySpec {
    /// Files or directories; `${istio.dir}` and other variables allowed.
    #[schemars(with = "crate::scenario::schema::OneOrMany")]
    #[serde(deserialize_with = "crate::expect::one_or_many")]
    pub files: Vec<String>,
    /// Namespace for namespaced objects that name none (the scenario's by default).
    #[serde(default)]
    pub namespace: Option<String>,
}

async fn run(s: &ApplySpec, ctx: &mut Context, deadline: Instant) -> Result<Outputs, StepError> {
    let paths: Vec<PathBuf> = s.files.iter().map(PathBuf::from).collect();
    let docs = crate::kubeops::apply::read_documents(&paths)?;
    let client = ctx.client().await?;
    let ns = ctx.ns(s.namespace.as_ref());
    ctx.applied = docs
        .iter()
        .map(|d| {
            format!(
                "{} ({} document {})",
                d.kind_name(),
                d.file.display(),
                d.index
            )
        })
        .collect();
    let mut report = crate::kubeops::apply::ApplyReport::default();
    let applied =
        crate::kubeops::apply::apply_into(&client, &docs, &ns, deadline, &mut report).await;
    // What was created is the run's to remove, even when a later document failed.
    if !report.created.is_empty() {
        ctx.cleanup.push(crate::cleanup::Cleanup::Objects {
            step: ctx.current_step_name(),
            objects: std::mem::take(&mut report.created),
        });
    }
    applied?;
    let mut kinds = std::collections::BTreeMap::<String, u64>::new();
    for o in &report.objects {
        *kinds
            .entry(o.split('/').next().unwrap_or("").to_string())
            .or_default() += 1;
    }
    let mut out = Outputs::new();
    out.insert("objects".into(), report.objects.len().into());
    out.insert(
        "kinds".into(),
        serde_json::to_value(kinds).unwrap_or_default(),
    );
    out.insert("changed".into(), report.changed.into());
    Ok(out)
}

impl super::Kind for ApplySpec {
    fn default_timeout(&self) -> std::time::Duration {
        super::secs(120)
    }
    fn summary(&self) -> String {
        self.files
            .iter()
            .map(|f| f.rsplit('/').next().unwrap_or(f).to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
    fn problems(&self) -> Vec<String> {
        if self.files.is_empty() {
            vec!["`files` is empty: name at least one file or directory".into()]
        } else {
            vec![]
        }
    }
    fn files(&self) -> Vec<String> {
        self.files.clone()
    }
    async fn run(
        &self,
        ctx: &mut Context,
        deadline: std::time::Instant,
    ) -> Result<Outputs, StepError> {
        run(self, ctx, deadline).await
    }
}

crate::scenario::resolve::resolve_fields!(ApplySpec { files, namespace });
