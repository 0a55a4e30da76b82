//! `exec`: run a command in a pod chosen by label selector (the walkthrough's
//! `kubectl exec "$(kubectl get pod -l app=ratings ...)" -c ratings -- curl -sS
//! productpage:9080/productpage`), with expectations on stdout and the exit code.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::Outputs;
use crate::context::Context;
use crate::error::StepError;
use crate::expect::CommandExpect;

/// Spec of an `exec` step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ExecSpec {
    /// Namespace (the scenario's when not given).
    #[serde(default)]
    pub namespace: Option<String>,
    /// Label selector choosing the pod (the first Ready one by name).
    #[serde(default)]
    pub selector: Option<String>,
    /// A pod name, instead of a selector.
    #[serde(default)]
    pub pod: Option<String>,
    /// Container name (the pod's first container when not given).
    #[serde(default)]
    pub container: Option<String>,
    /// The argument vector; no shell unless it starts one.
    pub command: Vec<String>,
    /// Expectations; the exit code must be 0 unless `expect.exit-code` says otherwise.
    #[serde(default)]
    pub expect: CommandExpect,
    /// Capture `${name.stdout}` and `${name.exit-code}`.
    #[serde(default)]
    pub capture: Option<String>,
}

fn problems(s: &ExecSpec) -> Vec<String> {
    let mut p = s.expect.problems();
    if s.command.is_empty() {
        p.push("`command` is empty".into());
    }
    if s.selector.is_none() == s.pod.is_none() {
        p.push("give exactly one of `selector` and `pod`".into());
    }
    p
}

async fn run(s: &ExecSpec, ctx: &mut Context, _deadline: Instant) -> Result<Outputs, StepError> {
    let client = ctx.client().await?;
    let ns = ctx.ns(s.namespace.as_ref());
    let pod = match (&s.pod, &s.selector) {
        (Some(p), _) => p.clone(),
        (None, Some(sel)) => crate::kubeops::exec::first_ready_pod(&client, &ns, sel).await?,
        (None, None) => return Err(StepError::fatal("exec needs `selector` or `pod`")),
    };
    let out =
        crate::kubeops::exec::exec(&client, &ns, &pod, s.container.as_deref(), &s.command).await?;
    if let Some(misses) = s.expect.check(&out.stdout, out.exit_code) {
        let stderr = if out.stderr.trim().is_empty() {
            String::new()
        } else {
            format!("; stderr: {}", crate::expect::excerpt(&out.stderr))
        };
        return Err(StepError::new(format!(
            "`{}` in pod {ns}/{pod}: {misses}{stderr}",
            s.command.join(" ")
        )));
    }
    let mut o = Outputs::new();
    o.insert("exit-code".into(), out.exit_code.into());
    // The output itself is recorded only when captured: it often varies between runs (which
    // reviews version answered), and results are snapshotted.
    if s.capture.is_some() {
        o.insert("stdout".into(), out.stdout.trim().to_string().into());
    }
    if let Some(t) = crate::expect::html_title(&out.stdout) {
        o.insert("title".into(), t.trim().to_string().into());
    }
    o.insert("pod".into(), out.pod.into());
    Ok(o)
}

impl super::Kind for ExecSpec {
    fn default_timeout(&self) -> std::time::Duration {
        super::secs(60)
    }
    fn summary(&self) -> String {
        self.command.join(" ")
    }
    fn problems(&self) -> Vec<String> {
        problems(self)
    }
    fn capture(&self) -> Option<&str> {
        self.capture.as_deref()
    }
    fn capture_keys(&self) -> &'static [&'static str] {
        &["stdout", "exit-code", "title", "pod"]
    }
    async fn run(
        &self,
        ctx: &mut Context,
        deadline: std::time::Instant,
    ) -> Result<Outputs, StepError> {
        run(self, ctx, deadline).await
    }
}

crate::scenario::resolve::resolve_fields!(ExecSpec {
    namespace,
    selector,
    pod,
    container,
    command,
    expect,
    capture
});
