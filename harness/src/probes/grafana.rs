//! Grafana: `/api/health` reports the database `ok`, and the dashboard search finds the Istio
//! dashboards.
//!
//! Dashboards are compared by title: the uids of the Istio dashboards changed across releases
//! (fixed short ones up to 1.20, none in 1.22, long ones for some from 1.24), the titles did not.
//!
//! ```yaml
//! search: Istio                       # default
//! dashboards:                         # default: these three
//!   - Istio Mesh Dashboard
//!   - Istio Service Dashboard
//!   - Istio Workload Dashboard
//! ```

use std::collections::BTreeSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{ProbeError, get_json, join_url, poll_outputs, url_under};
use crate::Outputs;
use crate::error::StepError;

/// What Grafana must show.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct GrafanaCheck {
    /// The dashboard search query (`/api/search?query=…`), default `Istio`.
    #[serde(default = "default_search")]
    pub search: String,
    /// Dashboard titles the search must find (exact titles).
    #[serde(default = "default_dashboards")]
    pub dashboards: Vec<String>,
}

fn default_search() -> String {
    "Istio".to_string()
}

fn default_dashboards() -> Vec<String> {
    [
        "Istio Mesh Dashboard",
        "Istio Service Dashboard",
        "Istio Workload Dashboard",
    ]
    .map(String::from)
    .to_vec()
}

impl Default for GrafanaCheck {
    fn default() -> Self {
        GrafanaCheck {
            search: default_search(),
            dashboards: default_dashboards(),
        }
    }
}

impl GrafanaCheck {
    /// Problems with the spec itself: a blank dashboard title.
    pub fn problems(&self) -> Vec<String> {
        self.dashboards
            .iter()
            .filter(|d| d.trim().is_empty())
            .map(|_| "dashboards: a title is empty".to_string())
            .collect()
    }
}

/// Titles of the dashboards (`type` `dash-db`, or no type) in a `/api/search` answer.
pub fn dashboard_titles(search: &Value) -> Result<BTreeSet<String>, ProbeError> {
    let hits = search
        .as_array()
        .ok_or_else(|| ProbeError::NotYet("the search answer is not a list".into()))?;
    Ok(hits
        .iter()
        .filter(|h| h.get("type").and_then(Value::as_str).unwrap_or("dash-db") == "dash-db")
        .filter_map(|h| h.get("title").and_then(Value::as_str))
        .map(|t| t.trim().to_string())
        .collect())
}

async fn attempt(
    client: &reqwest::Client,
    base_url: &str,
    check: &GrafanaCheck,
    timeout: Duration,
) -> Result<Outputs, ProbeError> {
    let health_url = join_url(base_url, "/api/health");
    // Grafana answers 503 with `"database": "failing"` when its database is down.
    let (_, body) = super::get_text(client, &health_url, timeout)
        .await
        .map_err(|e| e.context(&health_url))?;
    let Ok(health) = serde_json::from_str::<Value>(&body) else {
        return Err(ProbeError::NotYet(format!(
            "{health_url}: the answer is not JSON: {}",
            crate::expect::excerpt(&body)
        )));
    };
    let database = health.get("database").and_then(Value::as_str).unwrap_or("");
    if database != "ok" {
        return Err(ProbeError::NotYet(format!(
            "{health_url}: database is {database:?}, expected \"ok\""
        )));
    }
    let mut search_url = url_under(base_url, "/api/search")?;
    search_url
        .query_pairs_mut()
        .append_pair("query", &check.search);
    let titles = get_json(client, search_url.as_str(), timeout)
        .await
        .and_then(|v| dashboard_titles(&v))
        .map_err(|e| e.context(search_url.as_str()))?;
    let missing: Vec<&String> = check
        .dashboards
        .iter()
        .filter(|d| !titles.contains(d.trim()))
        .collect();
    if !missing.is_empty() {
        let found: Vec<&str> = titles.iter().map(String::as_str).collect();
        return Err(ProbeError::NotYet(format!(
            "dashboards: {} not found by {search_url} (found: {})",
            missing
                .iter()
                .map(|m| format!("{m:?}"))
                .collect::<Vec<_>>()
                .join(", "),
            if found.is_empty() {
                "none".to_string()
            } else {
                found.join(", ")
            }
        )));
    }
    let mut out = Outputs::new();
    out.insert("database".into(), Value::from("ok"));
    let mut wanted: Vec<&str> = check.dashboards.iter().map(|d| d.trim()).collect();
    wanted.sort();
    wanted.dedup();
    out.insert("dashboards".into(), Value::from(wanted));
    Ok(out)
}

/// Polls Grafana at `base_url` until `/api/health` reports the database `ok` and the search
/// finds every expected dashboard, within `deadline`. Outputs: `database` (`ok`) and
/// `dashboards` (the expected titles, sorted).
pub async fn check_until(
    client: &reqwest::Client,
    base_url: &str,
    check: &GrafanaCheck,
    deadline: Duration,
) -> Result<Outputs, StepError> {
    let problems = check.problems();
    if !problems.is_empty() {
        return Err(ProbeError::Invalid {
            what: "Grafana check".into(),
            problems,
        }
        .into());
    }
    poll_outputs(
        &format!("Grafana check at {base_url}"),
        deadline,
        "the dashboards come from the istio-grafana-dashboards ConfigMaps of samples/addons/grafana.yaml; \
         is the addon applied and its pod ready?",
        |timeout| attempt(client, base_url, check, timeout),
    )
    .await
}

crate::scenario::resolve::resolve_fields!(GrafanaCheck { search, dashboards });

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_of_dashboards_only() {
        let v = serde_json::json!([
            {"title": "istio", "type": "dash-folder"},
            {"title": "Istio Mesh Dashboard", "type": "dash-db"},
            {"title": " Istio Service Dashboard "}
        ]);
        let t = dashboard_titles(&v).unwrap();
        assert_eq!(
            t.into_iter().collect::<Vec<_>>(),
            vec!["Istio Mesh Dashboard", "Istio Service Dashboard"]
        );
        assert!(dashboard_titles(&serde_json::json!({"message": "x"})).is_err());
    }

    #[test]
    fn defaults() {
        let c: GrafanaCheck = serde_json::from_value(serde_json::json!({})).unwrap();
        assert_eq!(c, GrafanaCheck::default());
        assert_eq!(c.dashboards.len(), 3);
        assert!(c.problems().is_empty());
        let blank = GrafanaCheck {
            dashboards: vec![" ".into()],
            ..Default::default()
        };
        assert_eq!(blank.problems().len(), 1);
    }
}
