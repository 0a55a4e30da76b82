//! STAND-IN for the routes istiod would push to a gateway over xDS (RDS and CDS, built by
//! `pilot/pkg/networking/core/gateway.go` from Gateway and VirtualService resources). Without
//! xDS, the gateway's Envoy reads its routes and clusters from two files in its config
//! directory, watched by Envoy (`path_config_source` with `watched_directory`): replacing them
//! (write, then rename into the directory) changes the routes without restarting Envoy.
//!
//! Until something writes routes (translating Gateway/VirtualService is a later step: the
//! agent has no xDS and no API access), the files route every request to a 404.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

/// The gateway's HTTP route configuration name (Istio's for port 8080).
pub const ROUTE_NAME: &str = "http.8080";
/// File holding the RouteConfiguration.
pub const RDS_FILE: &str = "gateway-rds.json";
/// File holding the clusters the routes use.
pub const CDS_FILE: &str = "gateway-cds.json";

/// How a route matches the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    /// The path is exactly this.
    Exact(String),
    /// The path starts with this.
    Prefix(String),
}

/// One VirtualService HTTP route, reduced to what Bookinfo's gateway uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayRoute {
    /// The VirtualService's hosts (`*` for any).
    pub hosts: Vec<String>,
    /// The path match.
    pub path: PathMatch,
    /// Destination host (e.g. `productpage.default.svc.cluster.local`), resolved by Envoy's DNS.
    pub host: String,
    /// Destination port.
    pub port: u16,
}

impl GatewayRoute {
    /// Istio's cluster name for the destination: `outbound|<port>||<host>`.
    pub fn cluster(&self) -> String {
        format!("outbound|{}||{}", self.port, self.host)
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
    };
    json!({ "match": matcher, "route": { "cluster": route.cluster(), "timeout": "0s" } })
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
    for route in routes {
        if names.contains(&route.cluster()) {
            continue;
        }
        names.push(route.cluster());
        let address =
            json!({ "socket_address": { "address": route.host, "port_value": route.port } });
        out.push(json!({
            "@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster",
            "name": route.cluster(),
            "type": "STRICT_DNS",
            "dns_lookup_family": "V4_ONLY",
            "connect_timeout": "10s",
            "load_assignment": { "cluster_name": route.cluster(), "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": address } }] }] }
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
        let empty = route_configuration(&[], ("x-h", "v"));
        assert_eq!(
            empty["resources"][0]["virtual_hosts"][0]["routes"][0]["direct_response"]["status"],
            404
        );
    }
}
