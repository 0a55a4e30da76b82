//! `traffic`: N requests with a concurrency limit and a status-code histogram (the walkthrough
//! needs traffic before Prometheus has `istio_requests_total`).

use std::time::Instant;

use crate::Outputs;
use crate::context::Context;
use crate::error::StepError;

/// Spec of a `traffic` step.
pub type TrafficStepSpec = crate::probes::traffic::TrafficSpec;

pub(crate) async fn run(
    s: &TrafficStepSpec,
    _ctx: &mut Context,
    deadline: Instant,
) -> Result<Outputs, StepError> {
    let client = crate::probes::client();
    let report = crate::probes::traffic::send(&client, s, super::left(deadline)).await?;
    Ok(report.to_outputs())
}
