//! `prometheus`: the walkthrough's "look at each dashboard" for Prometheus (PromQL instant queries, polled until they hold), as API checks through a
//! `port-forward` step's URL (the `istioctl dashboard prometheus` equivalent).

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::Outputs;
use crate::context::Context;
use crate::error::StepError;

/// Spec of a `prometheus` step: instant queries with expectations, polled until they hold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PrometheusSpec {
    /// Base URL, e.g. `${prometheus.url}`.
    pub url: String,
    /// The queries.
    pub queries: Vec<crate::probes::prometheus::PromQuery>,
}

impl super::Kind for PrometheusSpec {
    fn default_timeout(&self) -> std::time::Duration {
        super::secs(180)
    }
    fn summary(&self) -> String {
        self.url.clone()
    }
    fn problems(&self) -> Vec<String> {
        self.queries.iter().flat_map(|q| q.problems()).collect()
    }
    fn needs_cluster(&self) -> bool {
        false
    }
    async fn run(&self, _ctx: &mut Context, deadline: Instant) -> Result<Outputs, StepError> {
        let client = crate::probes::client();
        let mut out = Outputs::new();
        for (i, q) in self.queries.iter().enumerate() {
            let o = crate::probes::prometheus::query_until(
                &client,
                &self.url,
                q,
                super::time_left(deadline),
            )
            .await?;
            out.insert(format!("query-{}", i + 1), serde_json::Value::Object(o));
        }
        Ok(out)
    }
}

crate::scenario::resolve::resolve_fields!(PrometheusSpec { url, queries });
