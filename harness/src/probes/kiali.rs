//! Kiali: the namespace is listed, and its traffic graph has the expected app nodes.
//!
//! Kiali builds the graph from Prometheus' `istio_requests_total`, so it is empty until traffic
//! flowed and was scraped; the check polls. The demo addon uses the anonymous strategy, so no
//! token is needed, and serves under the web root `/kiali`.
//!
//! ```yaml
//! namespace: default          # default
//! graph-type: versionedApp    # default
//! duration: 60s               # default: the graph's time window
//! nodes:                      # default: Bookinfo's apps; "APP" or "APP VERSION"
//!   - productpage
//!   - details
//!   - ratings
//!   - reviews v1
//!   - reviews v2
//!   - reviews v3
//! ```

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{ProbeError, get_json, join_url, poll_outputs, url_under};
use crate::Outputs;
use crate::error::StepError;

/// What Kiali must show.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct KialiCheck {
    /// Kiali's web root (`server.web_root`), default `/kiali`.
    #[serde(default = "default_web_root")]
    pub web_root: String,
    /// The namespace that must be listed and whose graph is read, default `default`.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// `graphType`: `versionedApp` (default), `app`, `workload` or `service`.
    #[serde(default = "default_graph_type")]
    pub graph_type: String,
    /// The graph's time window, e.g. `60s` (default) or `10m`.
    #[serde(default = "default_duration")]
    pub duration: String,
    /// Nodes the graph must have: `APP` (any version) or `APP VERSION`. The graph must have at
    /// least one node even when this is empty.
    #[serde(default = "default_nodes")]
    pub nodes: Vec<String>,
}

fn default_web_root() -> String {
    "/kiali".to_string()
}
fn default_namespace() -> String {
    "default".to_string()
}
fn default_graph_type() -> String {
    "versionedApp".to_string()
}
fn default_duration() -> String {
    "60s".to_string()
}
fn default_nodes() -> Vec<String> {
    [
        "productpage",
        "details",
        "ratings",
        "reviews v1",
        "reviews v2",
        "reviews v3",
    ]
    .map(String::from)
    .to_vec()
}

impl Default for KialiCheck {
    fn default() -> Self {
        KialiCheck {
            web_root: default_web_root(),
            namespace: default_namespace(),
            graph_type: default_graph_type(),
            duration: default_duration(),
            nodes: default_nodes(),
        }
    }
}

impl KialiCheck {
    /// Problems with the spec itself: an unknown graph type, a bad duration, a node that is not
    /// `APP` or `APP VERSION`.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !["versionedApp", "app", "workload", "service"].contains(&self.graph_type.as_str()) {
            out.push(format!(
                "graph-type {:?} is not versionedApp, app, workload or service",
                self.graph_type
            ));
        }
        if humantime::parse_duration(&self.duration).is_err() {
            out.push(format!(
                "duration {:?} is not a duration like 60s",
                self.duration
            ));
        }
        if self.namespace.trim().is_empty() {
            out.push("namespace is empty".to_string());
        }
        for n in &self.nodes {
            if NodeRef::parse(n).is_none() {
                out.push(format!("node {n:?} is not \"APP\" or \"APP VERSION\""));
            }
        }
        out
    }
}

/// An app node of the graph: its app and, where the graph has versions, its version.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct NodeRef {
    /// The `app` label.
    pub app: String,
    /// The `version` label.
    pub version: Option<String>,
}

impl NodeRef {
    /// `"reviews v1"` or `"productpage"`.
    pub fn parse(s: &str) -> Option<NodeRef> {
        let mut words = s.split_whitespace();
        let app = words.next()?.to_string();
        let version = words.next().map(str::to_string);
        words.next().is_none().then_some(NodeRef { app, version })
    }

    fn matches(&self, seen: &NodeRef) -> bool {
        self.app == seen.app && (self.version.is_none() || self.version == seen.version)
    }
}

impl fmt::Display for NodeRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.version {
            Some(v) => write!(f, "{} {v}", self.app),
            None => f.write_str(&self.app),
        }
    }
}

/// The app and workload nodes of a Kiali graph answer (boxes and service nodes left out), in
/// `namespace`.
pub fn graph_nodes(graph: &Value, namespace: &str) -> Result<BTreeSet<NodeRef>, ProbeError> {
    let nodes = graph
        .pointer("/elements/nodes")
        .and_then(Value::as_array)
        .ok_or_else(|| ProbeError::NotYet("the graph has no elements.nodes list".into()))?;
    let s = |d: &Value, k: &str| d.get(k).and_then(Value::as_str).map(str::to_string);
    Ok(nodes
        .iter()
        .filter_map(|n| n.get("data"))
        .filter(|d| d.get("isBox").is_none() && d.get("isGroup").is_none())
        .filter(|d| {
            matches!(
                s(d, "nodeType").as_deref(),
                None | Some("app") | Some("workload")
            )
        })
        .filter(|d| s(d, "namespace").is_none_or(|ns| ns == namespace))
        .filter_map(|d| {
            let app = s(d, "app").filter(|a| !a.is_empty())?;
            Some(NodeRef {
                app,
                version: s(d, "version").filter(|v| !v.is_empty()),
            })
        })
        .collect())
}

async fn attempt(
    client: &reqwest::Client,
    base_url: &str,
    check: &KialiCheck,
    timeout: Duration,
) -> Result<Outputs, ProbeError> {
    let root = join_url(base_url, &check.web_root);
    let ns_url = join_url(&root, "/api/namespaces");
    let answer = get_json(client, &ns_url, timeout)
        .await
        .map_err(|e| e.context(&ns_url))?;
    let Some(namespaces) = answer.as_array() else {
        return Err(ProbeError::NotYet(format!(
            "{ns_url}: the answer is not a list"
        )));
    };
    let listed: Vec<String> = namespaces
        .iter()
        .filter_map(|n| n.get("name").and_then(Value::as_str))
        .map(str::to_string)
        .collect();
    if !listed.contains(&check.namespace) {
        return Err(ProbeError::NotYet(format!(
            "namespaces: {:?} is not listed by {ns_url} (listed: {})",
            check.namespace,
            listed.join(", ")
        )));
    }
    let mut graph_url = url_under(
        base_url,
        &join_url(&check.web_root, "/api/namespaces/graph"),
    )?;
    graph_url
        .query_pairs_mut()
        .append_pair("namespaces", &check.namespace)
        .append_pair("graphType", &check.graph_type)
        .append_pair("duration", &check.duration);
    let seen = get_json(client, graph_url.as_str(), timeout)
        .await
        .and_then(|v| graph_nodes(&v, &check.namespace))
        .map_err(|e| e.context(graph_url.as_str()))?;
    let wanted: Vec<NodeRef> = check
        .nodes
        .iter()
        .filter_map(|n| NodeRef::parse(n))
        .collect();
    let missing: Vec<String> = wanted
        .iter()
        .filter(|w| !seen.iter().any(|s| w.matches(s)))
        .map(|w| w.to_string())
        .collect();
    let seen_text = || {
        if seen.is_empty() {
            "none: has traffic flowed within the duration?".to_string()
        } else {
            seen.iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    if seen.is_empty() {
        return Err(ProbeError::NotYet(format!(
            "graph: no app nodes in namespace {} (seen: {})",
            check.namespace,
            seen_text()
        )));
    }
    if !missing.is_empty() {
        return Err(ProbeError::NotYet(format!(
            "graph: no node {} in namespace {} (seen: {})",
            missing.join(", no node "),
            check.namespace,
            seen_text()
        )));
    }
    let mut out = Outputs::new();
    out.insert("namespace".into(), Value::from(check.namespace.clone()));
    out.insert("graph-type".into(), Value::from(check.graph_type.clone()));
    let mut names: Vec<String> = wanted.iter().map(|w| w.to_string()).collect();
    names.sort();
    names.dedup();
    out.insert("nodes".into(), Value::from(names));
    Ok(out)
}

/// Polls Kiali at `base_url` (its web root is added) until the namespace is listed and the
/// graph has every expected node, within `deadline`. Outputs: `namespace`, `graph-type`, and
/// `nodes` (the expected ones, sorted).
pub async fn check_until(
    client: &reqwest::Client,
    base_url: &str,
    check: &KialiCheck,
    deadline: Duration,
) -> Result<Outputs, StepError> {
    let problems = check.problems();
    if !problems.is_empty() {
        return Err(ProbeError::Invalid {
            what: "Kiali check".into(),
            problems,
        }
        .into());
    }
    poll_outputs(
        &format!("Kiali check at {base_url}"),
        deadline,
        "the graph comes from Prometheus' istio_requests_total: send traffic through the \
         namespace first, and make sure the duration covers it",
        |timeout| attempt(client, base_url, check, timeout),
    )
    .await
}

crate::scenario::resolve::resolve_fields!(KialiCheck {
    web_root,
    namespace,
    graph_type,
    duration,
    nodes
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_refs() {
        assert_eq!(
            NodeRef::parse("reviews v3"),
            Some(NodeRef {
                app: "reviews".into(),
                version: Some("v3".into())
            })
        );
        assert_eq!(
            NodeRef::parse("productpage").unwrap().to_string(),
            "productpage"
        );
        assert_eq!(NodeRef::parse("a b c"), None);
        assert_eq!(NodeRef::parse(" "), None);
    }

    #[test]
    fn problems() {
        assert!(KialiCheck::default().problems().is_empty());
        let c = KialiCheck {
            graph_type: "mesh".into(),
            duration: "soon".into(),
            nodes: vec!["a b c".into()],
            ..Default::default()
        };
        assert_eq!(c.problems().len(), 3);
    }
}
