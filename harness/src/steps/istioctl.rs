//! `istioctl`: any istioctl command (e.g. `analyze`) with expectations on its output and exit
//! code. `istioctl analyze` exits 0 with warnings and 79 only on errors, so scenarios assert
//! the text "No validation issues found" as well.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::Outputs;
use crate::context::Context;
use crate::error::StepError;
use crate::expect::CommandExpect;

/// Spec of an `istioctl` step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct IstioctlSpec {
    /// Arguments after `istioctl` (the run's `--kubeconfig` is added).
    pub args: Vec<String>,
    /// Expectations; exit code 0 unless `expect.exit-code` says otherwise.
    #[serde(default)]
    pub expect: CommandExpect,
    /// Capture `${name.stdout}`.
    #[serde(default)]
    pub capture: Option<String>,
}

async fn run(s: &IstioctlSpec, ctx: &mut Context, deadline: Instant) -> Result<Outputs, StepError> {
    let Some(istioctl) = ctx.istio.istioctl.clone() else {
        return Err(StepError::fatal(
            "istioctl not found: neither <istio dir>/bin/istioctl nor istioctl on PATH",
        )
        .with_hint("install istioctl or use a release directory with bin/istioctl"));
    };
    let cluster = ctx
        .cluster
        .clone()
        .ok_or_else(|| StepError::fatal("istioctl needs a cluster"))?;
    let argv =
        crate::istio::istioctl_argv(&s.args, &cluster.kubeconfig, cluster.context.as_deref());
    let res = crate::istio::run_istioctl(&istioctl, &argv, deadline).await?;
    // istioctl prints its verdicts (e.g. "No validation issues found") on stderr.
    let combined = format!("{}{}", res.stdout, res.stderr);
    if let Some(misses) = s.expect.check(&combined, res.exit_code) {
        return Err(StepError::new(format!(
            "istioctl {}: {misses}",
            s.args.join(" ")
        )));
    }
    let mut o = Outputs::new();
    o.insert("exit-code".into(), res.exit_code.into());
    o.insert("stdout".into(), res.stdout.trim().to_string().into());
    Ok(o)
}

impl super::Kind for IstioctlSpec {
    fn default_timeout(&self) -> std::time::Duration {
        super::secs(120)
    }
    fn summary(&self) -> String {
        self.args.join(" ")
    }
    fn problems(&self) -> Vec<String> {
        self.expect.problems()
    }
    fn capture(&self) -> Option<&str> {
        self.capture.as_deref()
    }
    fn capture_keys(&self) -> &'static [&'static str] {
        &["stdout", "exit-code"]
    }
    fn uses_istio(&self) -> bool {
        true
    }
    async fn run(
        &self,
        ctx: &mut Context,
        deadline: std::time::Instant,
    ) -> Result<Outputs, StepError> {
        run(self, ctx, deadline).await
    }
}

crate::scenario::resolve::resolve_fields!(IstioctlSpec {
    args,
    expect,
    capture
});
