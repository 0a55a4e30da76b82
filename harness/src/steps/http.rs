//! `http`: a request with expectations (the walkthrough's `curl -s http://$GATEWAY_URL/productpage
//! | grep -o "<title>.*</title>"`), retried with backoff on connection errors, 5xx and unmet
//! expectations until the step's timeout, because mesh configuration takes time to propagate.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::Outputs;
use crate::context::Context;
use crate::error::StepError;
use crate::expect::Expect;

/// Spec of an `http` step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct HttpSpec {
    /// The URL, e.g. `${forward.url}/productpage`.
    pub url: String,
    /// Method, `GET` by default.
    #[serde(default)]
    pub method: Option<String>,
    /// Extra request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Host header override (e.g. a Gateway's `hosts` entry while connecting to an IP).
    #[serde(default)]
    pub host: Option<String>,
    /// Expectations; `status: 200` when none is given.
    #[serde(default)]
    pub expect: Expect,
    /// Capture `${name.status}` and `${name.title}`.
    #[serde(default)]
    pub capture: Option<String>,
}

fn check_of(s: &HttpSpec) -> crate::probes::http::HttpCheck {
    let mut expect = s.expect.clone();
    if expect.status.is_none() {
        expect.status = Some(crate::scenario::Templated::Literal(200));
    }
    crate::probes::http::HttpCheck {
        url: s.url.clone(),
        method: s.method.clone(),
        headers: s.headers.clone(),
        host: s.host.clone(),
        expect,
    }
}

fn problems(s: &HttpSpec) -> Vec<String> {
    check_of(s).problems()
}

async fn run(s: &HttpSpec, _ctx: &mut Context, deadline: Instant) -> Result<Outputs, StepError> {
    let check = check_of(s);
    let client = crate::probes::client();
    let outcome =
        crate::probes::http::check_until(&client, &check, super::time_left(deadline)).await?;
    Ok(outcome.to_outputs())
}

impl super::Kind for HttpSpec {
    fn default_timeout(&self) -> std::time::Duration {
        super::secs(120)
    }
    fn summary(&self) -> String {
        self.url.clone()
    }
    fn problems(&self) -> Vec<String> {
        problems(self)
    }
    fn capture(&self) -> Option<&str> {
        self.capture.as_deref()
    }
    fn capture_keys(&self) -> &'static [&'static str] {
        &["status", "title", "attempts"]
    }
    fn needs_cluster(&self) -> bool {
        false
    }
    async fn run(
        &self,
        ctx: &mut Context,
        deadline: std::time::Instant,
    ) -> Result<Outputs, StepError> {
        run(self, ctx, deadline).await
    }
}

crate::scenario::resolve::resolve_fields!(HttpSpec {
    url,
    method,
    headers,
    host,
    expect,
    capture
});
