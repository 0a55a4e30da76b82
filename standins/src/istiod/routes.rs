//! The routes of a gateway's HTTP listener, computed from Istio `Gateway` and `VirtualService`
//! resources (networking.istio.io, any served version: the fields read are the same in
//! v1alpha3, v1beta1 and v1), as istiod computes the gateway's RDS. Served to the stand-in
//! pilot-agent in the JSON it reads (`crate::agent::gateway`), since the stand-ins have no xDS.
//!
//! Followed (istio/istio):
//! - `pilot/pkg/model/gateway.go` (`mergeGateways`, `resolvePorts`, `sanitizeServerHostNamespace`):
//!   which Gateways select the proxy (`spec.selector` a subset of the pod's labels, in any
//!   namespace), server ports translated through the Services selecting the pod (Service port
//!   -> targetPort, else the number as is), only HTTP servers on the listener's port merged;
//! - `pilot/pkg/model/virtualservice.go` and `push_context.go` (`resolveGatewayName`,
//!   `ResolveShortnameToFQDN`, `VirtualServicesForGateway`, `exportTo`, configs sorted by
//!   creation time then name then namespace);
//! - `pilot/pkg/networking/core/gateway.go` (`buildGatewayHTTPRouteConfig`: server hosts
//!   intersected with the VirtualService's hosts, one virtual host per hostname, routes of later
//!   VirtualServices appended, hostnames with the same routes collapsed);
//! - `pilot/pkg/networking/core/route/route.go` (`BuildHTTPRoutesForVirtualService`,
//!   `TranslateRoute`, `sourceMatchHTTP`, `GetDestinationCluster`, `SortVHostRoutes`,
//!   `IsCatchAllRoute`): one route per match, nothing after a catch-all, `match.port` and
//!   `match.gateways` (else `sourceLabels`/`sourceNamespace`) honoured, zero weights dropped from a split, a destination without a port
//!   takes its Service's only port or the server's port.
//!
//! Where the stand-in differs (each is reported in [`Computed::notes`], which istiod logs when
//! they change): matches on headers, method,
//! authority, scheme, query parameters, `ignoreUriCase`; redirects,
//! direct responses, rewrites, mirrors, header operations, retries, timeouts, faults and CORS
//! are not expressible in the agent's route format, so a match or route using them is left out
//! rather than made broader; destination `subset`s route to the whole Service (no
//! DestinationRule subsets without EDS); HTTPS (TLS-terminating) and TCP/TLS servers are not
//! routed (the stand-in gateway has one plain HTTP listener).

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::agent::gateway::{GatewayRoute, PathMatch, WeightedDestination};

/// The cluster's DNS suffix (istiod's `--domain`).
pub const DOMAIN: &str = "cluster.local";

/// A namespaced object as routing sees it.
#[derive(Debug, Clone)]
pub struct Config<S> {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.creationTimestamp` (RFC 3339; empty when unknown, sorting first).
    pub created: String,
    /// `spec`.
    pub spec: S,
}

impl<S> Config<S> {
    /// Istio's order of configs: creation time, then name, then namespace.
    fn order_key(&self) -> (&str, &str, &str) {
        (&self.created, &self.name, &self.namespace)
    }
}

/// `Gateway.spec`: the fields routing reads.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySpec {
    /// Labels of the gateway pods this applies to.
    #[serde(default)]
    pub selector: BTreeMap<String, String>,
    /// The servers.
    #[serde(default)]
    pub servers: Vec<Server>,
}

/// One `Gateway.spec.servers[]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Server {
    /// The port (rejected by validation when missing; skipped here).
    pub port: Option<ServerPort>,
    /// Hosts, optionally `namespace/host`.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// TLS settings, only looked at for being there.
    pub tls: Option<serde_json::Value>,
}

/// `servers[].port`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ServerPort {
    /// The port number.
    pub number: u32,
    /// `HTTP`, `HTTP2`, `HTTPS`, `GRPC`, `TCP`, `TLS`...
    #[serde(default)]
    pub protocol: String,
}

/// `VirtualService.spec`: the fields routing reads; the others are kept to say what is not
/// supported.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualServiceSpec {
    /// Hosts (short names resolve in the VirtualService's namespace).
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Gateways bound (`gw`, `ns/gw`, `./gw`, `gw.ns.svc.cluster.local`, `mesh`).
    #[serde(default)]
    pub gateways: Vec<String>,
    /// HTTP routes, in order.
    #[serde(default)]
    pub http: Vec<HttpRoute>,
    /// Namespaces it is visible to (`*` when empty).
    #[serde(default)]
    pub export_to: Vec<String>,
    /// Converted from a Gateway API HTTPRoute: `PathPrefix` matches whole path segments
    /// (`UseGatewaySemantics` in route.go).
    #[serde(skip)]
    pub gateway_semantics: bool,
}

/// One `http[]` route.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRoute {
    /// Matches, any of which selects the route (none: everything).
    #[serde(default, rename = "match")]
    pub matches: Vec<HttpMatch>,
    /// Destinations.
    #[serde(default)]
    pub route: Vec<RouteDestination>,
    /// Every other field (redirect, rewrite, timeout, ...).
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// One `http[].match[]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpMatch {
    /// The path match.
    pub uri: Option<StringMatch>,
    /// Only on these gateways.
    #[serde(default)]
    pub gateways: Vec<String>,
    /// Only on this port (the server's port number).
    pub port: Option<u32>,
    /// Every other field (headers, method, queryParams, sourceLabels, ...).
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// Istio's `StringMatch`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StringMatch {
    /// Equal to.
    Exact(String),
    /// Starting with.
    Prefix(String),
    /// RE2 regular expression.
    Regex(String),
}

/// One `http[].route[]`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RouteDestination {
    /// Where to.
    pub destination: Destination,
    /// Its weight in a split.
    #[serde(default)]
    pub weight: i64,
}

/// `destination`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Destination {
    /// Host (short names resolve in the VirtualService's namespace).
    pub host: String,
    /// DestinationRule subset (not honoured: see the module's doc).
    pub subset: Option<String>,
    /// Port.
    pub port: Option<PortSelector>,
}

/// `destination.port`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PortSelector {
    /// The port number.
    pub number: u32,
}

/// A Kubernetes Service as routing sees it.
#[derive(Debug, Clone, Default)]
pub struct ServiceInfo {
    /// Name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// `spec.selector` (empty: selects no pod).
    pub selector: BTreeMap<String, String>,
    /// (port, numeric targetPort if any) per port.
    pub ports: Vec<(u32, Option<u32>)>,
}

/// The gateway proxy asking for its routes.
#[derive(Debug, Clone)]
pub struct Proxy {
    /// Its pod's namespace (Istio's `ConfigNamespace`).
    pub namespace: String,
    /// Its pod's labels.
    pub labels: BTreeMap<String, String>,
}

/// Everything the computation reads from the cluster.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Every Gateway.
    pub gateways: Vec<Config<GatewaySpec>>,
    /// Every VirtualService.
    pub virtual_services: Vec<Config<VirtualServiceSpec>>,
    /// Every Service.
    pub services: Vec<ServiceInfo>,
}

fn subset_of(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// `ResolveShortnameToFQDN`: a name without a dot is `<name>.<ns>.svc.cluster.local`.
pub fn fqdn(host: &str, namespace: &str) -> String {
    if host == "*" || host.contains('.') || host.parse::<std::net::IpAddr>().is_ok() {
        host.to_string()
    } else {
        format!("{host}.{namespace}.svc.{DOMAIN}")
    }
}

/// `resolveGatewayName`: `gw` and `./gw` are in the VirtualService's namespace, `ns/gw` as is,
/// `gw.ns.svc.cluster.local` is `ns/gw`; `mesh` stays.
pub fn gateway_name(name: &str, namespace: &str) -> String {
    if name == "mesh" {
        return name.to_string();
    }
    match name.split_once('/') {
        Some((".", gw)) => format!("{namespace}/{gw}"),
        Some(_) => name.to_string(),
        None => match name.split_once('.') {
            None => format!("{namespace}/{name}"),
            Some((gw, rest)) => {
                let ns = rest.split('.').next().unwrap_or(rest);
                format!("{ns}/{gw}")
            }
        },
    }
}

/// `protocol.Parse(...).IsHTTP()`.
fn is_http(protocol: &str) -> bool {
    matches!(
        protocol.to_ascii_uppercase().as_str(),
        "HTTP" | "HTTP2" | "HTTP_PROXY" | "GRPC" | "GRPC-WEB"
    )
}

/// The Services selecting the proxy's pod (Istio's `ServiceTarget`s of the proxy).
fn instances<'a>(proxy: &Proxy, services: &'a [ServiceInfo]) -> Vec<&'a ServiceInfo> {
    services
        .iter()
        .filter(|s| s.namespace == proxy.namespace && !s.selector.is_empty())
        .filter(|s| subset_of(&s.selector, &proxy.labels))
        .collect()
}

/// `resolvePorts` with a label selector: the targetPort of the first Service port numbered
/// like the server, else the number itself.
fn resolve_port(number: u32, instances: &[&ServiceInfo]) -> u32 {
    instances
        .iter()
        .flat_map(|s| s.ports.iter())
        .find(|(port, _)| *port == number)
        .map_or(number, |(port, target)| target.unwrap_or(*port))
}

/// A server merged onto the listener, with the owning gateway's `ns/name`.
struct MergedServer<'a> {
    gateway: String,
    gateway_namespace: &'a str,
    server: &'a Server,
}

/// `mergeGateways`, reduced to the plain-text HTTP servers whose port resolves to `listener`.
fn merged_servers<'a>(
    proxy: &Proxy,
    listener: u32,
    snap: &'a Snapshot,
    notes: &Notes,
) -> Vec<MergedServer<'a>> {
    let instances = instances(proxy, &snap.services);
    let mut gateways: Vec<&Config<GatewaySpec>> = snap
        .gateways
        .iter()
        .filter(|g| subset_of(&g.spec.selector, &proxy.labels))
        .collect();
    gateways.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
    let mut first_plaintext: Option<&str> = None;
    let mut out = Vec::new();
    for gw in gateways {
        for server in &gw.spec.servers {
            let Some(port) = &server.port else { continue };
            if resolve_port(port.number, &instances) != listener {
                continue;
            }
            let tls_server = server.tls.is_some() && !is_http(&port.protocol);
            if tls_server {
                continue;
            }
            match first_plaintext {
                None => first_plaintext = Some(&port.protocol),
                // canMergeProtocols: both HTTP, else the later server is rejected.
                Some(current) if !(is_http(current) && is_http(&port.protocol)) => {
                    notes.add(format!(
                        "Gateway {}/{}: server on port {} ({}) conflicts with a {current} server on the same port; skipped",
                        gw.namespace, gw.name, port.number, port.protocol
                    ));
                    continue;
                }
                Some(_) => {}
            }
            if is_http(&port.protocol) {
                out.push(MergedServer {
                    gateway: format!("{}/{}", gw.namespace, gw.name),
                    gateway_namespace: &gw.namespace,
                    server,
                });
            }
        }
    }
    out
}

/// `VirtualServicesForGateway`: bound to `gateway` and visible from the proxy's namespace,
/// in Istio's order.
fn virtual_services_for<'a>(
    proxy: &Proxy,
    gateway: &str,
    snap: &'a Snapshot,
) -> Vec<&'a Config<VirtualServiceSpec>> {
    let mut out: Vec<_> = snap
        .virtual_services
        .iter()
        .filter(|vs| {
            vs.spec
                .gateways
                .iter()
                .any(|g| gateway_name(g, &vs.namespace) == gateway)
        })
        .filter(|vs| visible(&vs.spec.export_to, &vs.namespace, &proxy.namespace))
        .collect();
    out.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
    out
}

fn visible(export_to: &[String], own: &str, from: &str) -> bool {
    export_to.is_empty()
        || export_to
            .iter()
            .any(|e| e == "*" || e == from || (e == "." && own == from))
}

/// `sanitizeServerHostNamespace` then `host.NamesForNamespace`: the server's hosts that a
/// VirtualService in `vs_namespace` may bind.
fn server_hosts_for(server: &Server, gateway_namespace: &str, vs_namespace: &str) -> Vec<String> {
    let mut out = Vec::new();
    for h in &server.hosts {
        match h.split_once('/') {
            Some(("*", "*")) => return vec!["*".into()],
            Some(("*", host)) => out.push(host.to_string()),
            Some((".", host)) if gateway_namespace == vs_namespace => out.push(host.to_string()),
            Some((ns, host)) if ns == vs_namespace => out.push(host.to_string()),
            Some(_) => {}
            None => out.push(h.clone()),
        }
    }
    out
}

/// `host.Name.SubsetOf`: `a` is covered by `b` (`*` covers all, `*.x` covers `y.x`).
fn host_subset(a: &str, b: &str) -> bool {
    if b == "*" || a == b {
        return true;
    }
    match (a.strip_prefix('*'), b.strip_prefix('*')) {
        (Some(sa), Some(sb)) => sa.ends_with(sb),
        (None, Some(sb)) => a.ends_with(sb),
        _ => false,
    }
}

/// `host.Names.Intersection`: for each pair, the narrower of the two when one covers the other.
fn intersection(server: &[String], vs: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in server {
        for v in vs {
            let pick = if host_subset(s, v) {
                Some(s)
            } else if host_subset(v, s) {
                Some(v)
            } else {
                None
            };
            if let Some(p) = pick
                && !out.contains(p)
            {
                out.push(p.clone());
            }
        }
    }
    out
}

/// A route before it is given its virtual host's domains.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Route {
    path: PathMatch,
    /// (host, port, weight); one destination has weight 0 and is not a split.
    destinations: Vec<(String, u16, u32)>,
}

impl Route {
    fn is_catch_all(&self) -> bool {
        matches!(&self.path, PathMatch::Prefix(p) | PathMatch::PathSeparatedPrefix(p) if p == "/")
            || matches!(&self.path, PathMatch::Regex(r) if r == ".*")
    }
}

/// What a route is built in: the VirtualService, the server's port, the gateway's name.
struct RouteContext<'a> {
    vs: &'a Config<VirtualServiceSpec>,
    listen_port: u32,
    gateway: &'a str,
    services: &'a [ServiceInfo],
    proxy: &'a Proxy,
    notes: &'a Notes,
}

/// Where the stand-in departs from Istio for the objects at hand.
#[derive(Default)]
struct Notes(std::cell::RefCell<Vec<String>>);

impl Notes {
    fn add(&self, note: String) {
        let mut v = self.0.borrow_mut();
        if !v.contains(&note) {
            v.push(note);
        }
    }
}

/// `BuildHTTPRoutesForVirtualService`.
fn routes_for_virtual_service(cx: &RouteContext) -> Vec<Route> {
    let mut out = Vec::new();
    for http in &cx.vs.spec.http {
        let mut catch_all = false;
        if http.matches.is_empty() {
            out.extend(translate(cx, http, None));
            catch_all = true;
        } else {
            for m in &http.matches {
                if let Some(r) = translate(cx, http, Some(m)) {
                    catch_all = r.is_catch_all();
                    out.push(r);
                    if catch_all {
                        break;
                    }
                }
            }
        }
        if catch_all {
            break;
        }
    }
    out
}

/// Route fields that send the request elsewhere than its destinations: such a route is left
/// out (routing it to the destinations would be wrong). Other fields (timeout, retries, fault,
/// mirror, headers, corsPolicy) are ignored with a note; `name` is harmless.
const ROUTE_FIELDS_THAT_REDIRECT: &[&str] = &["redirect", "directResponse", "rewrite", "delegate"];
/// Match fields that narrow the match: such a match is left out (dropping the condition would
/// route more than Istio does). `ignoreUriCase` is ignored with a note; `name` and `statPrefix`
/// are harmless.
const MATCH_FIELDS_THAT_NARROW: &[&str] = &[
    "headers",
    "withoutHeaders",
    "method",
    "authority",
    "scheme",
    "queryParams",
];

/// False (with a note) when `fields` hold one of `blocking`; notes the other unsupported ones.
fn supported(
    cx: &RouteContext,
    what: &str,
    fields: &BTreeMap<String, serde_json::Value>,
    blocking: &[&str],
) -> bool {
    let vs = format!("{}/{}", cx.vs.namespace, cx.vs.name);
    let unsupported: Vec<&str> = fields
        .keys()
        .map(String::as_str)
        .filter(|k| !["name", "statPrefix"].contains(k))
        .collect();
    if unsupported.is_empty() {
        return true;
    }
    let blocked = unsupported.iter().any(|k| blocking.contains(k));
    let fate = if blocked {
        "left out"
    } else {
        "those fields ignored"
    };
    cx.notes.add(format!(
        "VirtualService {vs}: a {what} {unsupported:?} is not supported by the stand-in; {fate}"
    ));
    !blocked
}

/// `sourceMatchHTTP`: the match's gateways name this one; without gateways, its
/// `sourceLabels` are the proxy's and its `sourceNamespace` the proxy's namespace.
fn source_match(cx: &RouteContext, m: &HttpMatch) -> bool {
    if !m.gateways.is_empty() {
        return m
            .gateways
            .iter()
            .any(|g| gateway_name(g, &cx.vs.namespace) == cx.gateway);
    }
    let labels: BTreeMap<String, String> = m
        .other
        .get("sourceLabels")
        .and_then(|l| serde_json::from_value(l.clone()).ok())
        .unwrap_or_default();
    let namespace = m.other.get("sourceNamespace").and_then(|n| n.as_str());
    subset_of(&labels, &cx.proxy.labels) && namespace.is_none_or(|n| n == cx.proxy.namespace)
}

/// `TranslateRoute`, for what the agent's format can say.
fn translate(cx: &RouteContext, http: &HttpRoute, m: Option<&HttpMatch>) -> Option<Route> {
    if let Some(m) = m {
        if m.port.is_some_and(|p| p != cx.listen_port) {
            return None;
        }
        if !source_match(cx, m) {
            return None;
        }
        let mut other = m.other.clone();
        other.remove("sourceLabels");
        other.remove("sourceNamespace");
        if !supported(cx, "match on", &other, MATCH_FIELDS_THAT_NARROW) {
            return None;
        }
    }
    if !supported(cx, "route with", &http.other, ROUTE_FIELDS_THAT_REDIRECT) {
        return None;
    }
    let path = match m.and_then(|m| m.uri.clone()) {
        None => PathMatch::Prefix("/".into()),
        Some(StringMatch::Exact(p)) => PathMatch::Exact(p),
        Some(StringMatch::Prefix(p)) if cx.vs.spec.gateway_semantics && p != "/" => {
            PathMatch::PathSeparatedPrefix(p.trim_end_matches('/').to_string())
        }
        Some(StringMatch::Prefix(p)) => PathMatch::Prefix(p),
        Some(StringMatch::Regex(r)) => PathMatch::Regex(r),
    };
    let destinations = destinations(cx, &http.route);
    (!destinations.is_empty()).then_some(Route { path, destinations })
}

/// `applyHTTPRouteDestination`: one destination as is; a split without its zero weights.
fn destinations(cx: &RouteContext, route: &[RouteDestination]) -> Vec<(String, u16, u32)> {
    let one = |d: &RouteDestination| {
        let host = fqdn(&d.destination.host, &cx.vs.namespace);
        if let Some(subset) = &d.destination.subset {
            cx.notes.add(format!(
                "VirtualService {}/{}: subset {subset} of {host} routes to the whole Service in the stand-in",
                cx.vs.namespace, cx.vs.name
            ));
        }
        let port = destination_port(&d.destination, &host, cx.services, cx.listen_port)?;
        Some((host, port, u32::try_from(d.weight).unwrap_or(0)))
    };
    match route {
        [single] => one(single).map(|(h, p, _)| (h, p, 0)).into_iter().collect(),
        many => many
            .iter()
            .filter(|d| d.weight != 0)
            .filter_map(one)
            .collect(),
    }
}

/// `GetDestinationCluster`'s port: the destination's, else the Service's only port, else the
/// server's port.
fn destination_port(
    d: &Destination,
    host: &str,
    services: &[ServiceInfo],
    listen_port: u32,
) -> Option<u16> {
    let service = services
        .iter()
        .find(|s| format!("{}.{}.svc.{DOMAIN}", s.name, s.namespace) == host);
    let port = match (&d.port, service) {
        (Some(p), _) => p.number,
        (None, Some(s)) if s.ports.len() == 1 => s.ports[0].0,
        _ => listen_port,
    };
    u16::try_from(port).ok()
}

/// A gateway's routes and what of the objects the stand-in could not follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Computed {
    /// The routes, in the agent's format.
    pub routes: Vec<GatewayRoute>,
    /// One line per departure from Istio met (unsupported fields left out, subsets...).
    pub notes: Vec<String>,
}

/// The routes of the proxy's HTTP listener on port `listener` (the RDS `http.<listener>`), in
/// the agent's format, computed as istiod does.
pub fn gateway_routes(proxy: &Proxy, listener: u32, snap: &Snapshot) -> Computed {
    let notes = Notes::default();
    let mut vhosts: Vec<(String, Vec<Route>)> = Vec::new();
    for merged in merged_servers(proxy, listener, snap, &notes) {
        let listen_port = merged.server.port.as_ref().map_or(0, |p| p.number);
        for vs in virtual_services_for(proxy, &merged.gateway, snap) {
            let vs_hosts: Vec<String> = vs
                .spec
                .hosts
                .iter()
                .map(|h| fqdn(h, &vs.namespace))
                .collect();
            let server_hosts =
                server_hosts_for(merged.server, merged.gateway_namespace, &vs.namespace);
            let hosts = intersection(&server_hosts, &vs_hosts);
            if hosts.is_empty() {
                continue;
            }
            let cx = RouteContext {
                vs,
                listen_port,
                gateway: &merged.gateway,
                services: &snap.services,
                proxy,
                notes: &notes,
            };
            let routes = routes_for_virtual_service(&cx);
            if routes.is_empty() {
                continue;
            }
            for host in hosts.iter().map(|h| h.to_ascii_lowercase()) {
                match vhosts.iter_mut().find(|(h, _)| *h == host) {
                    Some((_, list)) => list.extend(routes.iter().cloned()),
                    None => vhosts.push((host, routes.clone())),
                }
            }
        }
    }
    Computed {
        routes: emit(vhosts),
        notes: notes.0.into_inner(),
    }
}

/// `SortVHostRoutes` per host, `collapseDuplicateRoutes` (hosts in name order, the first with
/// given routes keeping them), virtual hosts sorted by name; one agent route per route.
fn emit(mut vhosts: Vec<(String, Vec<Route>)>) -> Vec<GatewayRoute> {
    vhosts.sort_by(|a, b| a.0.cmp(&b.0));
    let mut collapsed: Vec<(Vec<String>, Vec<Route>)> = Vec::new();
    for (host, routes) in vhosts {
        let (mut rest, catch_all): (Vec<Route>, Vec<Route>) =
            routes.into_iter().partition(|r| !r.is_catch_all());
        rest.extend(catch_all);
        match collapsed.iter_mut().find(|(_, r)| *r == rest) {
            Some((domains, _)) => domains.push(host),
            None => collapsed.push((vec![host], rest)),
        }
    }
    let mut out = Vec::new();
    for (domains, routes) in collapsed {
        for r in routes {
            let (host, port, _) = r.destinations[0].clone();
            let weighted = if r.destinations.len() > 1 {
                r.destinations
                    .iter()
                    .map(|(host, port, weight)| WeightedDestination {
                        host: host.clone(),
                        port: *port,
                        weight: *weight,
                    })
                    .collect()
            } else {
                vec![]
            };
            out.push(GatewayRoute {
                hosts: domains.clone(),
                path: r.path,
                host,
                port,
                weighted,
            });
        }
    }
    out
}

#[cfg(test)]
#[path = "routes_tests.rs"]
mod tests;
