//! Prometheus: `/-/ready`, and instant queries on `/api/v1/query`, polled until the
//! expectations hold.
//!
//! Prometheus has no `istio_requests_total` until traffic went through the sidecars and a scrape
//! happened (every 15 s in `samples/addons`), so [`query_until`] polls: istio.io's test sends 50
//! requests and then retries for 2 minutes.
//!
//! ```yaml
//! query: istio_requests_total{destination_service="productpage.default.svc.cluster.local"}
//! expect:
//!   min-results: 1           # default 1; 0 accepts an empty result
//!   labels: { reporter: destination, response_code: "200" }
//!   value-min: 50            # the sum of the values of the series with those labels
//! ```
//!
//! The outputs are snapshot-stable: the query, the number of series, the sorted label sets
//! (without labels that name a pod or a scrape address), and the value bounds that held, never
//! the raw sample values.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{PollError, ProbeError, fmt_duration, get_text, join_url, poll};
use crate::Outputs;
use crate::error::StepError;
use crate::expect::{Mismatch, excerpt};
use crate::scenario::Templated;

/// Labels left out of the outputs' label sets: they name a pod or a scrape address, which
/// change every deploy.
pub const VOLATILE_LABELS: [&str; 5] = [
    "instance",
    "pod",
    "pod_name",
    "kubernetes_pod_name",
    "pod_template_hash",
];

/// An instant query and what its result must show.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PromQuery {
    /// PromQL, e.g. `istio_requests_total{reporter="destination"}`.
    pub query: String,
    /// What the result must show; by default, at least one series.
    #[serde(default, skip_serializing_if = "PromExpect::is_empty")]
    pub expect: PromExpect,
}

/// Expectations on an instant query's result.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PromExpect {
    /// At least this many series (default 1; `0` accepts an empty result).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_results: Option<Templated<usize>>,
    /// Some series must carry these labels with these values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The sum of the values of the series with `labels` (all series when `labels` is empty)
    /// must be at least this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_min: Option<Templated<f64>>,
    /// That sum must equal this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_equals: Option<Templated<f64>>,
}

impl PromExpect {
    /// True when nothing beyond the default (at least one series) is expected.
    pub fn is_empty(&self) -> bool {
        *self == PromExpect::default()
    }
}

impl PromQuery {
    /// A query that expects at least one series.
    pub fn new(query: impl Into<String>) -> Self {
        PromQuery {
            query: query.into(),
            expect: PromExpect::default(),
        }
    }

    /// Problems with the spec itself: an empty query, non-finite numbers.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.query.trim().is_empty() {
            out.push("query is empty".to_string());
        }
        for (name, v) in [
            ("value-min", &self.expect.value_min),
            ("value-equals", &self.expect.value_equals),
        ] {
            if v.as_ref()
                .and_then(Templated::literal)
                .is_some_and(|v| !v.is_finite())
            {
                out.push(format!("{name} must be a finite number"));
            }
        }
        out
    }
}

/// One series of a query result: its labels (with `__name__` when there is one) and its value
/// (the last sample, for a range vector).
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Label names and values.
    pub labels: BTreeMap<String, String>,
    /// The sample value.
    pub value: f64,
}

impl Series {
    /// `name{a="1",b="2"}` with the volatile labels left out.
    pub fn stable_text(&self) -> String {
        let name = self.labels.get("__name__").cloned().unwrap_or_default();
        let rest: Vec<String> = self
            .labels
            .iter()
            .filter(|(k, _)| *k != "__name__" && !VOLATILE_LABELS.contains(&k.as_str()))
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect();
        format!("{name}{{{}}}", rest.join(","))
    }

    fn has(&self, want: &BTreeMap<String, String>) -> bool {
        want.iter()
            .all(|(k, v)| self.labels.get(k).is_some_and(|got| got == v))
    }
}

/// Reads the `data` of a successful `/api/v1/query` answer: vector, matrix (last sample of each
/// series) or scalar.
pub fn parse_result(doc: &Value) -> Result<Vec<Series>, ProbeError> {
    let shape = |m: String| ProbeError::NotYet(m);
    if doc.get("status").and_then(Value::as_str) != Some("success") {
        return Err(shape(format!(
            "status is not \"success\": {}",
            excerpt(&doc.to_string())
        )));
    }
    let data = doc
        .get("data")
        .ok_or_else(|| shape("no `data` in the answer".into()))?;
    let kind = data.get("resultType").and_then(Value::as_str).unwrap_or("");
    let result = data
        .get("result")
        .ok_or_else(|| shape("no `data.result` in the answer".into()))?;
    let not_a_list = || shape("`data.result` is not a list".into());
    let sample = |v: &Value| -> Result<f64, ProbeError> {
        let s = v
            .get(1)
            .and_then(Value::as_str)
            .ok_or_else(|| shape(format!("sample {v} is not [time, \"value\"]")))?;
        s.parse::<f64>()
            .map_err(|_| shape(format!("sample value {s:?} is not a number")))
    };
    let labels = |item: &Value| -> BTreeMap<String, String> {
        item.get("metric")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect()
            })
            .unwrap_or_default()
    };
    match kind {
        "vector" => result
            .as_array()
            .ok_or_else(not_a_list)?
            .iter()
            .map(|item| {
                Ok(Series {
                    labels: labels(item),
                    value: sample(item.get("value").unwrap_or(&Value::Null))?,
                })
            })
            .collect(),
        "matrix" => result
            .as_array()
            .ok_or_else(not_a_list)?
            .iter()
            .filter_map(|item| {
                let last = item.get("values")?.as_array()?.last()?.clone();
                Some(sample(&last).map(|value| Series {
                    labels: labels(item),
                    value,
                }))
            })
            .collect(),
        "scalar" => Ok(vec![Series {
            labels: BTreeMap::new(),
            value: sample(result)?,
        }]),
        other => Err(shape(format!("result type {other:?} cannot be checked"))),
    }
}

/// Every expectation that `series` does not meet.
pub fn check(series: &[Series], expect: &PromExpect) -> Vec<Mismatch> {
    let mut out = Vec::new();
    let min = expect.min_results.as_ref().map_or(1, Templated::value);
    if series.len() < min {
        out.push(Mismatch {
            what: "min-results".into(),
            message: format!("expected at least {min} series, got {}", series.len()),
        });
    }
    let matching: Vec<&Series> = series.iter().filter(|s| s.has(&expect.labels)).collect();
    if !expect.labels.is_empty() && matching.is_empty() && !series.is_empty() {
        let want: Vec<String> = expect
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect();
        let seen: BTreeSet<String> = series.iter().map(Series::stable_text).collect();
        let shown: Vec<&String> = seen.iter().take(5).collect();
        out.push(Mismatch {
            what: "labels".into(),
            message: format!(
                "no series has {{{}}}; seen {} label sets: {}{}",
                want.join(","),
                seen.len(),
                shown
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(" "),
                if seen.len() > 5 { " …" } else { "" }
            ),
        });
    }
    let sum: f64 = matching.iter().map(|s| s.value).sum();
    let over = if expect.labels.is_empty() {
        "all series".to_string()
    } else {
        format!("{} series with those labels", matching.len())
    };
    // Written so that a NaN sum fails every bound.
    if let Some(min) = expect.value_min.as_ref().map(Templated::value)
        && sum.partial_cmp(&min).is_none_or(|o| o.is_lt())
    {
        out.push(Mismatch {
            what: "value-min".into(),
            message: format!("expected the sum over {over} to be at least {min}, got {sum}"),
        });
    }
    if let Some(want) = expect.value_equals.as_ref().map(Templated::value)
        && (sum - want)
            .abs()
            .partial_cmp(&1e-9)
            .is_none_or(|o| o.is_ge())
    {
        out.push(Mismatch {
            what: "value-equals".into(),
            message: format!("expected the sum over {over} to be {want}, got {sum}"),
        });
    }
    out
}

/// The outputs of a passing query: `query`, `results` (how many series), `series` (sorted,
/// distinct, stable label sets), and `value-min` / `value` when those were expected (the bound
/// that held, not the sample).
pub fn outputs(q: &PromQuery, series: &[Series]) -> Outputs {
    let mut out = Outputs::new();
    out.insert("query".into(), Value::from(q.query.clone()));
    out.insert("results".into(), Value::from(series.len()));
    let sets: BTreeSet<String> = series.iter().map(Series::stable_text).collect();
    out.insert(
        "series".into(),
        Value::Array(sets.into_iter().map(Value::from).collect()),
    );
    if let Some(m) = q.expect.value_min.as_ref().map(Templated::value) {
        out.insert("value-min".into(), Value::from(m));
    }
    if let Some(v) = q.expect.value_equals.as_ref().map(Templated::value) {
        out.insert("value".into(), Value::from(v));
    }
    out
}

/// One look at `/-/ready`: `Ok` on 200.
pub async fn ready(client: &reqwest::Client, base_url: &str) -> Result<(), StepError> {
    ready_once(client, base_url).await.map_err(StepError::from)
}

async fn ready_once(client: &reqwest::Client, base_url: &str) -> Result<(), ProbeError> {
    let url = join_url(base_url, "/-/ready");
    match get_text(client, &url, super::PER_TRY_TIMEOUT).await {
        Ok((200, _)) => Ok(()),
        Ok((status, body)) => Err(ProbeError::Status {
            status,
            excerpt: excerpt(&body),
        }
        .context(format!("Prometheus at {url} is not ready"))),
        Err(e) => Err(e.context(format!("Prometheus at {url}"))),
    }
}

/// Polls `/-/ready` until it answers 200, within `deadline`.
pub async fn ready_until(
    client: &reqwest::Client,
    base_url: &str,
    deadline: Duration,
) -> Result<(), StepError> {
    match poll(deadline, |_| ready_once(client, base_url)).await {
        Ok(_) => Ok(()),
        Err(PollError::Stopped(e)) => Err(e.into()),
        Err(PollError::Expired(x)) => {
            let still = format!(
                " (still, after {} attempts in {})",
                x.attempts,
                fmt_duration(deadline)
            );
            let mut err = x.last.into_latest().map_or_else(
                || StepError::new(format!("Prometheus at {base_url} was never tried")),
                StepError::from,
            );
            err.message.push_str(&still);
            Err(err)
        }
    }
}

/// One try of an instant query: the outputs when every expectation holds.
async fn query_once(
    client: &reqwest::Client,
    endpoint: &str,
    url: &reqwest::Url,
    q: &PromQuery,
    timeout: Duration,
) -> Result<Outputs, ProbeError> {
    let (status, body) = get_text(client, url.as_str(), timeout).await?;
    let doc: Option<Value> = serde_json::from_str(&body).ok();
    let prom_error = doc.as_ref().and_then(|d| {
        let kind = d.get("errorType")?.as_str()?;
        let msg = d.get("error").and_then(Value::as_str).unwrap_or("");
        Some(format!("{kind}: {msg}"))
    });
    let reason = || prom_error.clone().unwrap_or_else(|| excerpt(&body));
    let doc = match (status, doc) {
        (400, _) => {
            return Err(ProbeError::Rejected {
                endpoint: endpoint.to_string(),
                query: q.query.clone(),
                reason: reason(),
            });
        }
        (200, Some(doc)) => doc,
        (200, None) => {
            return Err(ProbeError::NotYet(format!(
                "the answer is not JSON: {}",
                excerpt(&body)
            )));
        }
        (status, _) => {
            return Err(ProbeError::Status {
                status,
                excerpt: reason(),
            });
        }
    };
    let series =
        parse_result(&doc).map_err(|e| ProbeError::NotYet(format!("unexpected answer: {e}")))?;
    let mismatches = check(&series, &q.expect);
    if !mismatches.is_empty() {
        let list: Vec<String> = mismatches.iter().map(|m| m.to_string()).collect();
        return Err(ProbeError::NotYet(list.join("; ")));
    }
    Ok(outputs(q, &series))
}

/// Polls the instant query until its result meets every expectation, within `deadline`, and
/// returns the [`outputs`].
///
/// Connection errors and 5xx/422 answers are retried; a query Prometheus rejects (400
/// `bad_data`) fails at once, fatally, with Prometheus's reason. On the deadline the error
/// names the query, the URL, the attempts and what the last answer did not show.
pub async fn query_until(
    client: &reqwest::Client,
    base_url: &str,
    q: &PromQuery,
    deadline: Duration,
) -> Result<Outputs, StepError> {
    let problems = q.problems();
    if !problems.is_empty() {
        return Err(ProbeError::Invalid {
            what: format!("Prometheus query {:?}", q.query),
            problems,
        }
        .into());
    }
    let endpoint = join_url(base_url, "/api/v1/query");
    let url =
        reqwest::Url::parse_with_params(&endpoint, [("query", q.query.as_str())]).map_err(|e| {
            StepError::from(ProbeError::BadUrl {
                base: base_url.to_string(),
                source: Box::new(e),
            })
        })?;
    super::poll_outputs(
        &format!("Prometheus query {:?} at {endpoint}", q.query),
        deadline,
        "Prometheus has no Istio series until traffic went through the sidecars and a \
         scrape happened (every 15 s in samples/addons): send traffic first and poll for \
         60 s or more",
        |timeout| query_once(client, &endpoint, &url, q, timeout),
    )
    .await
}

crate::scenario::resolve::resolve_fields!(PromQuery { query, expect });
crate::scenario::resolve::resolve_fields!(PromExpect {
    min_results,
    labels,
    value_min,
    value_equals
});

#[cfg(test)]
mod tests {
    use super::*;

    fn series(labels: &[(&str, &str)], value: f64) -> Series {
        Series {
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            value,
        }
    }

    #[test]
    fn result_types() {
        let v: Value = serde_json::json!({"status":"success","data":{"resultType":"scalar","result":[1.5,"2"]}});
        assert_eq!(parse_result(&v).unwrap()[0].value, 2.0);
        let v: Value = serde_json::json!({"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"a":"1"},"values":[[1,"1"],[2,"5"]]}]}});
        assert_eq!(parse_result(&v).unwrap()[0].value, 5.0);
        let v: Value =
            serde_json::json!({"status":"success","data":{"resultType":"string","result":[1,"x"]}});
        assert!(parse_result(&v).is_err());
    }

    #[test]
    fn expectations_sum_the_matching_series() {
        let s = vec![
            series(&[("__name__", "m"), ("code", "200"), ("pod", "p-1")], 3.0),
            series(&[("__name__", "m"), ("code", "200"), ("pod", "p-2")], 4.0),
            series(&[("__name__", "m"), ("code", "503"), ("pod", "p-1")], 1.0),
        ];
        let mut e = PromExpect {
            labels: [("code".to_string(), "200".to_string())].into(),
            value_min: Some(Templated::Literal(7.0)),
            value_equals: Some(Templated::Literal(7.0)),
            ..Default::default()
        };
        assert!(check(&s, &e).is_empty());
        e.value_min = Some(Templated::Literal(8.0));
        e.min_results = Some(Templated::Literal(4));
        let m: Vec<String> = check(&s, &e).iter().map(|m| m.to_string()).collect();
        assert_eq!(
            m,
            vec![
                "min-results: expected at least 4 series, got 3",
                "value-min: expected the sum over 2 series with those labels to be at least 8, got 7",
            ]
        );
        e.labels = [("code".to_string(), "404".to_string())].into();
        let m = check(
            &s,
            &PromExpect {
                min_results: Some(Templated::Literal(0)),
                ..e.clone()
            },
        );
        assert_eq!(m[0].what, "labels");
        assert!(
            m[0].message
                .contains(r#"seen 2 label sets: m{code="200"} m{code="503"}"#),
            "{}",
            m[0].message
        );
        // Nothing at all fails on min-results by default.
        assert_eq!(check(&[], &PromExpect::default())[0].what, "min-results");
    }

    #[test]
    fn outputs_are_stable() {
        let s = vec![
            series(&[("__name__", "m"), ("code", "200"), ("pod", "p-2")], 4.0),
            series(&[("__name__", "m"), ("code", "200"), ("pod", "p-1")], 3.0),
        ];
        let q = PromQuery {
            query: "m".into(),
            expect: PromExpect {
                value_min: Some(Templated::Literal(5.0)),
                ..Default::default()
            },
        };
        assert_eq!(
            Value::Object(outputs(&q, &s)),
            serde_json::json!({"query": "m", "results": 2, "series": ["m{code=\"200\"}"], "value-min": 5.0})
        );
    }
}
