//! `jaeger`: the walkthrough's "look at each dashboard" for Jaeger (services and traces), as API checks through a
//! `port-forward` step's URL (the `istioctl dashboard jaeger` equivalent).

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::Outputs;
use crate::context::Context;
use crate::error::StepError;

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

impl super::Kind for JaegerSpec {
    fn default_timeout(&self) -> std::time::Duration {
        super::secs(180)
    }
    fn summary(&self) -> String {
        self.url.clone()
    }
    fn problems(&self) -> Vec<String> {
        self.expect.problems()
    }
    fn needs_cluster(&self) -> bool {
        false
    }
    async fn run(&self, _ctx: &mut Context, deadline: Instant) -> Result<Outputs, StepError> {
        let client = crate::probes::client();
        crate::probes::jaeger::check_until(&client, &self.url, &self.expect, super::left(deadline))
            .await
    }
}
