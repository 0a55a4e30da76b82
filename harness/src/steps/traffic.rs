//! `traffic`: N requests with a concurrency limit and a status-code histogram (the walkthrough
//! needs traffic before Prometheus has `istio_requests_total`), or, with `background: NAME`,
//! traffic that keeps flowing across the steps that follow until `traffic-stop` stops it and
//! checks every request it recorded (an upgrade or a rollout must not drop any).
//!
//! ```yaml
//! - name: traffic on
//!   traffic: { url: "${forward.url}/productpage", background: rollout, concurrency: 4 }
//! - name: roll productpage to v2
//!   patch: { ... }
//! - name: traffic off
//!   traffic-stop:
//!     name: rollout
//!     expect: { max-failures: 0, min-requests: 2000, latency-p99: 2s }
//! ```
//!
//! The stop step writes every request (time, latency, status, the step it fell in) to
//! `traffic-<name>.csv` in the run's artifacts.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::Outputs;
use crate::context::{Background, Context};
use crate::error::StepError;
use crate::probes::traffic::{BackgroundExpect, BackgroundTraffic};

/// Spec of a `traffic` step.
pub type TrafficStepSpec = crate::probes::traffic::TrafficSpec;

/// Spec of a `traffic-stop` step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TrafficStopSpec {
    /// The `background` name of the traffic to stop.
    pub name: String,
    /// Let it run on until at least this many requests were sent (within the step's timeout),
    /// so the check covers enough requests however fast the machine is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_requests: Option<u64>,
    /// What the traffic must show; without it, zero failed requests.
    #[serde(default)]
    pub expect: BackgroundExpect,
}

pub(crate) async fn run(
    s: &TrafficStepSpec,
    ctx: &mut Context,
    deadline: Instant,
) -> Result<Outputs, StepError> {
    let client = crate::probes::client();
    if let Some(name) = &s.background {
        let traffic = BackgroundTraffic::start(client, s, ctx.current_step.clone())?;
        ctx.background.push(Background::Traffic {
            step: format!("traffic {}", s.url),
            traffic,
        });
        let mut out = Outputs::new();
        out.insert("background".into(), name.clone().into());
        return Ok(out);
    }
    let report = crate::probes::traffic::send(&client, s, super::left(deadline)).await?;
    Ok(report.to_outputs())
}

pub(crate) async fn stop(
    s: &TrafficStopSpec,
    ctx: &mut Context,
    deadline: Instant,
) -> Result<Outputs, StepError> {
    let Some(pos) = ctx
        .background
        .iter()
        .position(|b| matches!(b, Background::Traffic { traffic, .. } if traffic.name == s.name))
    else {
        return Err(StepError::fatal(format!(
            "no background traffic named `{}` is running",
            s.name
        ))
        .with_hint("start it with a `traffic` step that has `background: NAME` earlier on"));
    };
    let Background::Traffic { traffic, .. } = ctx.background.remove(pos) else {
        unreachable!("position() matched a Traffic entry");
    };
    if let Some(n) = s.after_requests {
        // Stop a little before the deadline so the check still runs and reports.
        let until = deadline - super::left(deadline).mul_f64(0.1);
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
