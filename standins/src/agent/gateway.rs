//! STAND-IN for the routes istiod would push to a gateway over xDS (RDS and CDS, built by
//! `pilot/pkg/networking/core/gateway.go` from Gateway and VirtualService resources). Without
//! xDS, the gateway's Envoy reads its routes and clusters from two files in its config
//! directory, watched by Envoy (`path_config_source` with `watched_directory`): replacing them
//! (write, then rename into the directory) changes the routes without restarting Envoy.
//!
//! Until something writes routes, the files route every request to a 404. The agent has no
//! xDS and no API access: the stand-in istiod translates Gateway/VirtualService, and [`follow`]
//! fetches the result: with `STANDIN_GATEWAY_ROUTES_URL=http://host:port/path` set (the stand-in
//! istioctl sets it on the gateways), the agent polls that URL every 2 s for a JSON list of
//! routes and rewrites the files when it changes:
//!
//! ```json
//! [{"hosts": ["*"], "match": {"exact": "/productpage"},
//!   "host": "productpage.default.svc.cluster.local", "port": 9080}]
//! ```
//!
//! (`match` is `{"exact": P}`, `{"prefix": P}`, `{"path_separated_prefix": P}` or
//! `{"regex": RE2}`; a route that splits traffic
//! also has `"weighted": [{"host": H, "port": P, "weight": W}, ...]`, every destination with its
//! weight, `host`/`port` being then the first.) The stand-in istiod serves this list, computed
//! from the cluster's Gateway and VirtualService resources, at
//! `/standin/gateway-routes` (`crate::istiod::routes`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The gateway's HTTP route configuration name (Istio's for port 8080).
pub const ROUTE_NAME: &str = "http.8080";
/// File holding the RouteConfiguration.
pub const RDS_FILE: &str = "gateway-rds.json";
/// File holding the clusters the routes use.
pub const CDS_FILE: &str = "gateway-cds.json";

/// How a route matches the path.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum PathMatch {
    /// The path is exactly this.
    Exact(String),
    /// The path starts with this.
    Prefix(String),
    /// The path matches this RE2 regular expression (Envoy's `safe_regex`).
    Regex(String),
    /// The path is this or starts with this and `/` (Gateway API's `PathPrefix`).
    #[serde(rename = "path_separated_prefix")]
    PathSeparatedPrefix(String),
}

/// One destination of a traffic split.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WeightedDestination {
    /// Destination host, as [`GatewayRoute::host`].
    pub host: String,
    /// Destination port.
    pub port: u16,
    /// Its share (Envoy's `weighted_clusters` weight).
    pub weight: u32,
}

impl WeightedDestination {
    /// Istio's cluster name for the destination: `outbound|<port>||<host>`.
    pub fn cluster(&self) -> String {
        cluster_name(&self.host, self.port)
    }
}

fn cluster_name(host: &str, port: u16) -> String {
    format!("outbound|{port}||{host}")
}

/// One VirtualService HTTP route, reduced to what a gateway's path routing needs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayRoute {
    /// The virtual host's domains (`*` for any).
    pub hosts: Vec<String>,
    /// The path match.
    #[serde(rename = "match")]
    pub path: PathMatch,
    /// Destination host (e.g. `productpage.default.svc.cluster.local`), resolved by Envoy's DNS.
    pub host: String,
    /// Destination port.
    pub port: u16,
    /// With more than one destination: all of them with their weights (`host`/`port` are the
    /// first); empty for a single destination.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub weighted: Vec<WeightedDestination>,
}

impl GatewayRoute {
    /// Istio's cluster name for the destination: `outbound|<port>||<host>`.
    pub fn cluster(&self) -> String {
        cluster_name(&self.host, self.port)
    }

    /// Every destination as (host, port): the weighted ones, or the single one.
    fn destinations(&self) -> Vec<(&str, u16)> {
        if self.weighted.is_empty() {
            vec![(self.host.as_str(), self.port)]
        } else {
            self.weighted
                .iter()
                .map(|w| (w.host.as_str(), w.port))
                .collect()
        }
    }
}

/// An Envoy config source reading `file` (in `dir`, which Envoy watches for renames).
pub fn config_source(dir: &str, file: &str) -> Value {
    json!({
        "path_config_source": { "path": format!("{dir}/{file}"), "watched_directory": { "path": dir } },
        "resource_api_version": "V3"
    })
}

fn route_json(route: &GatewayRoute) -> Value {
    let matcher = match &route.path {
        PathMatch::Exact(p) => json!({ "path": p }),
        PathMatch::Prefix(p) => json!({ "prefix": p }),
        PathMatch::Regex(r) => json!({ "safe_regex": { "regex": r } }),
        PathMatch::PathSeparatedPrefix(p) => json!({ "path_separated_prefix": p }),
    };
    let action = if route.weighted.is_empty() {
        json!({ "cluster": route.cluster(), "timeout": "0s" })
    } else {
        let split: Vec<Value> = route
            .weighted
            .iter()
            .map(|w| json!({ "name": w.cluster(), "weight": w.weight }))
            .collect();
        json!({ "weighted_clusters": { "clusters": split }, "timeout": "0s" })
    };
    json!({ "match": matcher, "route": action })
}

/// The RouteConfiguration: one virtual host per distinct host list, then a catch-all 404 unless
/// a route already covers `*`. `source_header` is the stand-in's peer header (name, value).
pub fn route_configuration(routes: &[GatewayRoute], source_header: (&str, &str)) -> Value {
    let mut groups: Vec<(Vec<String>, Vec<Value>)> = Vec::new();
    for route in routes {
        match groups.iter_mut().find(|(hosts, _)| *hosts == route.hosts) {
            Some((_, list)) => list.push(route_json(route)),
            None => groups.push((route.hosts.clone(), vec![route_json(route)])),
        }
    }
    let mut vhosts: Vec<Value> = groups
        .iter()
        .enumerate()
        .map(|(i, (hosts, routes))| json!({ "name": format!("vhost-{i}"), "domains": hosts, "routes": routes }))
        .collect();
    if !groups
        .iter()
        .any(|(hosts, _)| hosts.iter().any(|h| h == "*"))
    {
        let not_found =
            json!([{ "match": { "prefix": "/" }, "direct_response": { "status": 404 } }]);
        vhosts.push(json!({ "name": "blackhole", "domains": ["*"], "routes": not_found }));
    }
    json!({ "resources": [{
        "@type": "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
        "name": ROUTE_NAME,
        "virtual_hosts": vhosts,
        "request_headers_to_add": [{ "header": { "key": source_header.0, "value": source_header.1 }, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD" }]
    }]})
}

/// The clusters of the routes' destinations (STRICT_DNS, so service names resolve to their
/// ClusterIPs and kube-proxy does the rest).
pub fn clusters(routes: &[GatewayRoute]) -> Value {
    let mut names: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for (host, port) in routes.iter().flat_map(GatewayRoute::destinations) {
        let name = cluster_name(host, port);
        if names.contains(&name) {
            continue;
        }
        names.push(name.clone());
        let address = json!({ "socket_address": { "address": host, "port_value": port } });
        out.push(json!({
            "@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster",
            "name": name,
            "type": "STRICT_DNS",
            "dns_lookup_family": "V4_ONLY",
            "connect_timeout": "10s",
            "load_assignment": { "cluster_name": name, "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": address } }] }] }
        }));
    }
    json!({ "resources": out })
}

/// Writes both files into `dir`, clusters first, each through a rename so Envoy sees whole files.
pub fn write(
    dir: &Path,
    routes: &[GatewayRoute],
    source_header: (&str, &str),
) -> std::io::Result<()> {
    replace(dir, CDS_FILE, &clusters(routes))?;
    replace(dir, RDS_FILE, &route_configuration(routes, source_header))
}

fn replace(dir: &Path, file: &str, value: &Value) -> std::io::Result<()> {
    let tmp: PathBuf = dir.join(format!(".{file}.tmp"));
    std::fs::write(
        &tmp,
        serde_json::to_vec_pretty(value).expect("JSON values serialize"),
    )?;
    std::fs::rename(&tmp, dir.join(file))
}

/// What went wrong following the routes URL.
#[derive(Debug, thiserror::Error)]
pub enum RoutesError {
    /// The URL is not `http://host:port/path`.
    #[error("STANDIN_GATEWAY_ROUTES_URL={0:?} is not http://host:port/path")]
    Url(String),
    /// The host did not resolve.
    #[error("cannot resolve {host}: {source}")]
    Resolve {
        /// The host.
        host: String,
        /// Why.
        source: std::io::Error,
    },
    /// The request failed or did not answer 200.
    #[error("GET {url}: {why}")]
    Get {
        /// The URL.
        url: String,
        /// What happened.
        why: String,
    },
    /// The body is not a JSON list of routes.
    #[error("GET {url}: not a JSON list of routes: {source}")]
    Body {
        /// The URL.
        url: String,
        /// Why.
        source: serde_json::Error,
    },
}

/// `http://host:port/path` split up.
fn split_url(url: &str) -> Result<(String, u16, String), RoutesError> {
    let bad = || RoutesError::Url(url.to_string());
    let rest = url.strip_prefix("http://").ok_or_else(bad)?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let (host, port) = authority.rsplit_once(':').ok_or_else(bad)?;
    let path = if path.is_empty() { "/" } else { path };
    Ok((
        host.to_string(),
        port.parse().map_err(|_| bad())?,
        path.to_string(),
    ))
}

/// One GET of the routes URL.
pub async fn fetch(url: &str) -> Result<Vec<GatewayRoute>, RoutesError> {
    let (host, port, path) = split_url(url)?;
    let resolve = |source| RoutesError::Resolve {
        host: host.clone(),
        source,
    };
    let addr = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(resolve)?
        .next()
        .ok_or_else(|| resolve(std::io::Error::other("no address")))?;
    let get = |why: String| RoutesError::Get {
        url: url.to_string(),
        why,
    };
    let (status, body) = super::status::request(hyper::Method::GET, addr, &path)
        .await
        .map_err(|e| get(e.to_string()))?;
    if status != hyper::StatusCode::OK {
        return Err(get(format!("answered {status}")));
    }
    serde_json::from_slice(&body).map_err(|source| RoutesError::Body {
        url: url.to_string(),
        source,
    })
}

/// Polls `url` every 2 s forever, rewriting the files in `dir` when the routes change; errors
/// are logged and the last good routes stay.
pub async fn follow(url: String, dir: PathBuf, source_header: (&'static str, String)) {
    let mut current: Option<Vec<GatewayRoute>> = None;
    loop {
        match fetch(&url).await {
            Ok(routes) if current.as_ref() != Some(&routes) => {
                match write(&dir, &routes, (source_header.0, &source_header.1)) {
                    Ok(()) => eprintln!(
                        "pilot-agent STAND-IN: gateway routes updated ({} routes) from {url}",
                        routes.len()
                    ),
                    Err(e) => eprintln!(
                        "pilot-agent STAND-IN: writing gateway routes in {}: {e}",
                        dir.display()
                    ),
                }
                current = Some(routes);
            }
            Ok(_) => {}
            Err(e) => eprintln!("pilot-agent STAND-IN: gateway routes: {e}"),
        }
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bookinfo_gateway_routes_become_one_virtual_host_and_istio_cluster_names() {
        let route = |path| GatewayRoute {
            hosts: vec!["*".into()],
            path,
            host: "productpage.default.svc.cluster.local".into(),
            port: 9080,
            weighted: vec![],
        };
        let routes = [
            route(PathMatch::Exact("/productpage".into())),
            route(PathMatch::Prefix("/static".into())),
        ];
        let rds = route_configuration(&routes, ("x-h", "v"));
        let vhosts = rds["resources"][0]["virtual_hosts"].as_array().unwrap();
        assert_eq!(vhosts.len(), 1, "a `*` route needs no catch-all");
        assert_eq!(vhosts[0]["routes"][0]["match"]["path"], "/productpage");
        assert_eq!(
            vhosts[0]["routes"][1]["route"]["cluster"],
            "outbound|9080||productpage.default.svc.cluster.local"
        );
        let cds = clusters(&routes);
        assert_eq!(
            cds["resources"].as_array().unwrap().len(),
            1,
            "one cluster per destination"
        );
        let parsed: Vec<GatewayRoute> = serde_json::from_str(
            r#"[{"hosts":["*"],"match":{"exact":"/productpage"},"host":"productpage.default.svc.cluster.local","port":9080},
                {"hosts":["*"],"match":{"prefix":"/static"},"host":"productpage.default.svc.cluster.local","port":9080}]"#,
        )
        .unwrap();
        assert_eq!(parsed, routes, "the routes URL's JSON");
        assert_eq!(
            split_url("http://istiod.istio-system:15014/r?gw=1")
                .unwrap()
                .2,
            "/r?gw=1"
        );
        assert!(split_url("https://x:1/").is_err() && split_url("http://x/").is_err());
        let empty = route_configuration(&[], ("x-h", "v"));
        assert_eq!(
            empty["resources"][0]["virtual_hosts"][0]["routes"][0]["direct_response"]["status"],
            404
        );
    }
}
