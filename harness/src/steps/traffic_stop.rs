//! `traffic-stop`: stops background traffic started by a `traffic` step with `background:
//! NAME` and checks every request it recorded (count, failures and the steps they fell in,
//! latency), writing each request to `traffic-<name>.csv` in the run's artifacts.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::Outputs;
use crate::context::Context;
use crate::error::StepError;
use crate::probes::traffic::BackgroundExpect;

/// Spec of a `traffic-stop` step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TrafficStopSpec {
    /// The `background` name of the traffic to stop.
    pub name: String,
    /// Let it run on until at least this many requests were sent (within the step's timeout),
    /// so the check covers enough requests however fast the machine is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_requests: Option<crate::scenario::Templated<u64>>,
    /// What the traffic must show; without it, zero failed requests.
    #[serde(default)]
    pub expect: BackgroundExpect,
}

async fn stop(
    s: &TrafficStopSpec,
    ctx: &mut Context,
    deadline: Instant,
) -> Result<Outputs, StepError> {
    let Some(traffic) = ctx.cleanup.take_traffic(&s.name) else {
        return Err(StepError::fatal(format!(
            "no background traffic named `{}` is running",
            s.name
        ))
        .with_hint("start it with a `traffic` step that has `background: NAME` earlier on"));
    };
    if let Some(n) = s.after_requests.as_ref().map(crate::scenario::Templated::value) {
        // Stop a little before the deadline so the check still runs and reports.
        let until = deadline - super::time_left(deadline).mul_f64(0.1);
        if !traffic.wait_for_requests(n as usize, until).await {
            tracing::warn!(
                "background traffic `{}`: {} of {n} requests sent before the step's timeout",
                s.name,
                traffic.sent()
            );
        }
    }
    let report = traffic.stop().await;
    report.write_csv(&ctx.artifacts);
    report.check(&s.expect)?;
    Ok(report.to_outputs())
}

impl super::Kind for TrafficStopSpec {
    fn default_timeout(&self) -> std::time::Duration {
        super::secs(60)
    }
    fn summary(&self) -> String {
        self.name.clone()
    }
    fn needs_cluster(&self) -> bool {
        false
    }
    async fn run(&self, ctx: &mut Context, deadline: Instant) -> Result<Outputs, StepError> {
        stop(self, ctx, deadline).await
    }
}

crate::scenario::resolve::resolve_fields!(TrafficStopSpec {
    name,
    after_requests,
    expect
});
