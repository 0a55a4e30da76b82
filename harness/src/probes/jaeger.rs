//! Jaeger: the query API knows the services, and has traces for one of them.
//!
//! Jaeger's service names are `<app label>.<namespace>` (e.g. `productpage.default`). From
//! Istio 1.22 on, the demo profile sends no traces unless tracing is configured (an extension
//! provider and a `Telemetry` resource), so an empty service list usually means that, not a
//! slow scrape. The addon serves the query API under the base path `/jaeger`.
//!
//! ```yaml
//! base-path: /jaeger           # default
//! service: productpage.default # default; must be listed and have traces
//! services: [reviews.default]  # more services that must be listed (default none)
//! limit: 20                    # default: how many traces to ask for
//! min-traces: 1                # default
//! ```

use std::collections::BTreeSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{ProbeError, get_json, join_url, poll_outputs, url_under};
use crate::Outputs;
use crate::error::StepError;

/// What Jaeger must show.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct JaegerCheck {
    /// The query service's base path (`QUERY_BASE_PATH`), default `/jaeger`.
    #[serde(default = "default_base_path")]
    pub base_path: String,
    /// The service that must be listed and have traces, default `productpage.default`.
    #[serde(default = "default_service")]
    pub service: String,
    /// More services that must be listed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<String>,
    /// How many traces to ask for (`limit`), default 20.
    #[serde(default = "default_limit")]
    pub limit: u32,
    /// How many of them must involve `service`, default 1.
    #[serde(default = "default_min_traces")]
    pub min_traces: usize,
}

fn default_base_path() -> String {
    "/jaeger".to_string()
}
fn default_service() -> String {
    "productpage.default".to_string()
}
fn default_limit() -> u32 {
    20
}
fn default_min_traces() -> usize {
    1
}

impl Default for JaegerCheck {
    fn default() -> Self {
        JaegerCheck {
            base_path: default_base_path(),
            service: default_service(),
            services: Vec::new(),
            limit: default_limit(),
            min_traces: default_min_traces(),
        }
    }
}

impl JaegerCheck {
    /// Problems with the spec itself: an empty service, `min-traces` above `limit`.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.service.trim().is_empty() {
            out.push("service is empty".to_string());
        }
        if self.limit == 0 {
            out.push("limit must be at least 1".to_string());
        }
        if self.min_traces > self.limit as usize {
            out.push(format!(
                "min-traces ({}) cannot be more than limit ({})",
                self.min_traces, self.limit
            ));
        }
        out
    }
}

/// The `data` list of a Jaeger query answer (`null` is an empty list), with the answer's
/// `errors`, if any, as an error.
fn data(answer: &Value) -> Result<Vec<Value>, ProbeError> {
    if let Some(errors) = answer.get("errors").and_then(Value::as_array)
        && !errors.is_empty()
    {
        let msgs: Vec<String> = errors
            .iter()
            .map(|e| {
                e.get("msg")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .unwrap_or_else(|| e.to_string())
            })
            .collect();
        return Err(ProbeError::NotYet(format!(
            "Jaeger reported errors: {}",
            msgs.join("; ")
        )));
    }
    match answer.get("data") {
        None => Err(ProbeError::NotYet("the answer has no `data`".into())),
        Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => Ok(a.clone()),
        Some(_) => Err(ProbeError::NotYet("`data` is not a list".into())),
    }
}

/// The service names of an `/api/services` answer.
pub fn service_names(answer: &Value) -> Result<BTreeSet<String>, ProbeError> {
    Ok(data(answer)?
        .iter()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect())
}

/// How many traces of an `/api/traces` answer have a span from `service` (a process with that
/// `serviceName`).
pub fn traces_with_service(answer: &Value, service: &str) -> Result<usize, ProbeError> {
    Ok(data(answer)?
        .iter()
        .filter(|t| {
            t.get("processes")
                .and_then(Value::as_object)
                .is_some_and(|ps| {
                    ps.values()
                        .any(|p| p.get("serviceName").and_then(Value::as_str) == Some(service))
                })
        })
        .count())
}

async fn attempt(
    client: &reqwest::Client,
    base_url: &str,
    check: &JaegerCheck,
    timeout: Duration,
) -> Result<Outputs, ProbeError> {
    let root = join_url(base_url, &check.base_path);
    let services_url = join_url(&root, "/api/services");
    let listed = get_json(client, &services_url, timeout)
        .await
        .and_then(|v| service_names(&v))
        .map_err(|e| e.context(&services_url))?;
    let wanted: BTreeSet<&str> = std::iter::once(check.service.as_str())
        .chain(check.services.iter().map(String::as_str))
        .collect();
    let missing: Vec<&str> = wanted
        .iter()
        .copied()
        .filter(|s| !listed.contains(*s))
        .collect();
    if !missing.is_empty() {
        return Err(ProbeError::NotYet(format!(
            "services: {} not listed by {services_url} (listed: {})",
            missing.join(", "),
            if listed.is_empty() {
                "none: is tracing configured and has traffic flowed?".to_string()
            } else {
                listed.iter().cloned().collect::<Vec<_>>().join(", ")
            }
        )));
    }
    let mut traces_url = url_under(base_url, &join_url(&check.base_path, "/api/traces"))?;
    traces_url
        .query_pairs_mut()
        .append_pair("service", &check.service)
        .append_pair("limit", &check.limit.to_string());
    let n = get_json(client, traces_url.as_str(), timeout)
        .await
        .and_then(|v| traces_with_service(&v, &check.service))
        .map_err(|e| e.context(traces_url.as_str()))?;
    if n < check.min_traces {
        return Err(ProbeError::NotYet(format!(
            "traces: expected at least {} traces with {} from {traces_url}, got {n}",
            check.min_traces, check.service
        )));
    }
    let mut out = Outputs::new();
    out.insert("service".into(), Value::from(check.service.clone()));
    out.insert(
        "services".into(),
        Value::from(wanted.into_iter().collect::<Vec<_>>()),
    );
    out.insert("traces-at-least".into(), Value::from(check.min_traces));
    Ok(out)
}

/// Polls Jaeger at `base_url` (its base path is added) until the services are listed and the
/// service has at least `min-traces` traces, within `deadline`. Outputs: `service`, `services`
/// (every expected one, sorted) and `traces-at-least` (the bound that held, not the count).
pub async fn check_until(
    client: &reqwest::Client,
    base_url: &str,
    check: &JaegerCheck,
    deadline: Duration,
) -> Result<Outputs, StepError> {
    let problems = check.problems();
    if !problems.is_empty() {
        return Err(ProbeError::Invalid {
            what: "Jaeger check".into(),
            problems,
        }
        .into());
    }
    poll_outputs(
        &format!("Jaeger check at {base_url}"),
        deadline,
        "from Istio 1.22 the demo profile sends no traces by default: configure an extension \
         provider and a Telemetry resource (or compatibilityVersion=1.21), then send traffic",
        |timeout| attempt(client, base_url, check, timeout),
    )
    .await
}

crate::scenario::resolve::resolve_fields!(JaegerCheck {
    base_path,
    service,
    services,
    limit,
    min_traces
});

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn null_data_is_empty_and_errors_are_reported() {
        assert!(
            service_names(&json!({"data": null, "total": 0, "errors": null}))
                .unwrap()
                .is_empty()
        );
        let e = service_names(&json!({"data": null, "errors": [{"code": 500, "msg": "boom"}]}))
            .unwrap_err();
        assert_eq!(e.to_string(), "Jaeger reported errors: boom");
        assert!(e.is_retryable() && !e.is_transport());
    }

    #[test]
    fn traces_are_counted_by_process_service() {
        let v = json!({"data": [
            {"traceID": "a", "processes": {"p1": {"serviceName": "productpage.default"}}},
            {"traceID": "b", "processes": {"p1": {"serviceName": "reviews.default"}}}
        ]});
        assert_eq!(traces_with_service(&v, "productpage.default").unwrap(), 1);
    }

    #[test]
    fn problems() {
        assert!(JaegerCheck::default().problems().is_empty());
        let c = JaegerCheck {
            min_traces: 30,
            ..Default::default()
        };
        assert_eq!(c.problems().len(), 1);
    }
}
