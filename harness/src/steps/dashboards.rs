//! `prometheus`, `grafana`, `kiali`, `jaeger`: the walkthrough's "look at each dashboard",
//! as API checks through a `port-forward` step's URL (the `istioctl dashboard X` equivalent).

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::Outputs;
use crate::context::Context;
use crate::error::StepError;

/// Spec of a `prometheus` step: instant queries with expectations, polled until they hold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PrometheusSpec {
    /// Base URL, e.g. `${prometheus.url}`.
    pub url: String,
    /// The queries.
    pub queries: Vec<crate::probes::prometheus::PromQuery>,
}

/// Spec of a `grafana` step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct GrafanaSpec {
    /// Base URL, e.g. `${grafana.url}`.
    pub url: String,
    /// What to check.
    #[serde(default)]
    pub expect: crate::probes::grafana::GrafanaCheck,
}

/// Spec of a `kiali` step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct KialiSpec {
    /// Base URL, e.g. `${kiali.url}`.
    pub url: String,
    /// What to check.
    #[serde(default)]
    pub expect: crate::probes::kiali::KialiCheck,
}

/// Spec of a `jaeger` step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct JaegerSpec {
    /// Base URL, e.g. `${tracing.url}`.
    pub url: String,
    /// What to check.
    #[serde(default)]
    pub expect: crate::probes::jaeger::JaegerCheck,
}

pub(crate) async fn run_prometheus(
    s: &PrometheusSpec,
    _ctx: &mut Context,
    deadline: Instant,
) -> Result<Outputs, StepError> {
    let client = crate::probes::client();
    let mut out = Outputs::new();
    for (i, q) in s.queries.iter().enumerate() {
        let o = crate::probes::prometheus::query_until(&client, &s.url, q, super::left(deadline))
            .await?;
        out.insert(format!("query-{}", i + 1), serde_json::Value::Object(o));
    }
    Ok(out)
}

pub(crate) async fn run_grafana(
    s: &GrafanaSpec,
    _ctx: &mut Context,
    deadline: Instant,
) -> Result<Outputs, StepError> {
    let client = crate::probes::client();
    crate::probes::grafana::check_until(&client, &s.url, &s.expect, super::left(deadline)).await
}

pub(crate) async fn run_kiali(
    s: &KialiSpec,
    _ctx: &mut Context,
    deadline: Instant,
) -> Result<Outputs, StepError> {
    let client = crate::probes::client();
    crate::probes::kiali::check_until(&client, &s.url, &s.expect, super::left(deadline)).await
}

pub(crate) async fn run_jaeger(
    s: &JaegerSpec,
    _ctx: &mut Context,
    deadline: Instant,
) -> Result<Outputs, StepError> {
    let client = crate::probes::client();
    crate::probes::jaeger::check_until(&client, &s.url, &s.expect, super::left(deadline)).await
}
