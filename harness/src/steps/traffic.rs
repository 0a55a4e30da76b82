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

use crate::Outputs;
use crate::cleanup::Cleanup;
use crate::context::Context;
use crate::error::StepError;
use crate::probes::traffic::{BackgroundTraffic, TrafficMode};

/// Spec of a `traffic` step.
pub type TrafficStepSpec = crate::probes::traffic::TrafficSpec;

async fn run(
    s: &TrafficStepSpec,
    ctx: &mut Context,
    deadline: Instant,
) -> Result<Outputs, StepError> {
    let client = crate::probes::client();
    if let TrafficMode::Background { name, .. } = &s.mode {
        let traffic = BackgroundTraffic::start(client, s, ctx.current_step.clone())?;
        ctx.cleanup.push(Cleanup::Traffic {
            step: format!("traffic {}", s.url),
            traffic,
        });
        let mut out = Outputs::new();
        out.insert("background".into(), name.clone().into());
        return Ok(out);
    }
    let report = crate::probes::traffic::send(&client, s, super::time_left(deadline)).await?;
    Ok(report.to_outputs())
}

impl super::Kind for TrafficStepSpec {
    fn default_timeout(&self) -> std::time::Duration {
        super::secs(300)
    }
    fn summary(&self) -> String {
        match &self.mode {
            TrafficMode::Background { name, .. } => {
                format!("{} in the background ({name})", self.url)
            }
            TrafficMode::Requests(n) => format!("{} x{n}", self.url),
        }
    }
    fn problems(&self) -> Vec<String> {
        TrafficStepSpec::problems(self)
    }
    fn needs_cluster(&self) -> bool {
        false
    }
    async fn run(&self, ctx: &mut Context, deadline: Instant) -> Result<Outputs, StepError> {
        run(self, ctx, deadline).await
    }
}
