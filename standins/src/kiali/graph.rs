//! Kiali's namespace traffic graph, computed from Istio's metrics in Prometheus.
//!
//! Followed: Kiali's `graph/telemetry/istio/istio.go` (`buildNamespaceTrafficMap`,
//! `populateTrafficMap`, `addTraffic`) and `graph/types.go` (`Id`): per namespace three
//! `istio_requests_total` rate queries (traffic from `unknown` reported by the destination,
//! traffic from other namespaces reported by the source, traffic from inside the namespace
//! reported by the source), the same three for `istio_tcp_sent_bytes_total`, grouped by the
//! source/destination workload, canonical service/revision and service labels; a node per
//! (namespace, app[, version]) or workload or service depending on the graph type, an edge per
//! source, destination and protocol, and `isOutside`/`isRoot` marks as Kiali's finalizers set.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::prometheus::Sample;

/// Kiali's graph types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphType {
    /// `app`.
    App,
    /// `versionedApp`.
    VersionedApp,
    /// `workload`.
    Workload,
    /// `service`.
    Service,
}

impl GraphType {
    /// From the `graphType` parameter (Kiali's default: `workload`).
    pub fn parse(s: Option<&str>) -> Option<GraphType> {
        match s.unwrap_or("workload") {
            "app" => Some(GraphType::App),
            "versionedApp" => Some(GraphType::VersionedApp),
            "workload" => Some(GraphType::Workload),
            "service" => Some(GraphType::Service),
            _ => None,
        }
    }

    /// The parameter's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            GraphType::App => "app",
            GraphType::VersionedApp => "versionedApp",
            GraphType::Workload => "workload",
            GraphType::Service => "service",
        }
    }
}

const HTTP_GROUP_BY: &str = "source_workload_namespace,source_workload,source_canonical_service,source_canonical_revision,destination_service_namespace,destination_service,destination_service_name,destination_workload_namespace,destination_workload,destination_canonical_service,destination_canonical_revision,request_protocol,response_code,grpc_response_status,response_flags";
const TCP_GROUP_BY: &str = "source_workload_namespace,source_workload,source_canonical_service,source_canonical_revision,destination_service_namespace,destination_service,destination_service_name,destination_workload_namespace,destination_workload,destination_canonical_service,destination_canonical_revision,response_flags";

/// The six queries Kiali makes for `namespace` over `seconds`: (is TCP, PromQL).
pub fn queries(namespace: &str, seconds: u64) -> Vec<(bool, String)> {
    let mut out = Vec::new();
    for (tcp, metric, by) in [
        (false, "istio_requests_total", HTTP_GROUP_BY),
        (true, "istio_tcp_sent_bytes_total", TCP_GROUP_BY),
    ] {
        let q = |sel: String| format!("sum(rate({metric}{{{sel}}} [{seconds}s])) by ({by})");
        out.push((tcp, q(format!(r#"reporter="destination",source_workload="unknown",destination_workload_namespace="{namespace}""#))));
        out.push((tcp, q(format!(r#"reporter="source",source_workload_namespace!="{namespace}",source_workload!="unknown",destination_service_namespace="{namespace}""#))));
        out.push((
            tcp,
            q(format!(
                r#"reporter="source",source_workload_namespace="{namespace}""#
            )),
        ));
    }
    out
}

/// Kiali's `graph.IsOK`: set and not `unknown`.
fn ok(s: &str) -> bool {
    !s.is_empty() && s != "unknown"
}

/// What identifies a node (Kiali's `Id` arguments).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
struct NodeKey {
    svc_ns: String,
    svc: String,
    wl_ns: String,
    wl: String,
    app: String,
    version: String,
}

/// A node of the traffic map.
#[derive(Debug, Clone, PartialEq)]
struct Node {
    node_type: &'static str,
    namespace: String,
    workload: String,
    app: String,
    version: String,
    service: String,
    dest_services: BTreeSet<(String, String)>,
    rates_in: BTreeMap<String, f64>,
    rates_out: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Default, PartialEq)]
struct Edge {
    rate: f64,
    /// code -> flags -> rate, code -> host -> rate
    flags: BTreeMap<String, BTreeMap<String, f64>>,
    hosts: BTreeMap<String, BTreeMap<String, f64>>,
}

/// A traffic map: nodes by id, edges by (source id, dest id, protocol).
#[derive(Debug, Default)]
pub struct TrafficMap {
    nodes: BTreeMap<String, Node>,
    edges: BTreeMap<(String, String, String), Edge>,
}

/// Kiali's `graph.Id`: the node's id parts and type for a graph type.
fn id(k: &NodeKey, gt: GraphType) -> (String, &'static str) {
    let ns = if ok(&k.wl_ns) { &k.wl_ns } else { &k.svc_ns };
    if ns == "unknown" && k.wl == "unknown" && k.app == "unknown" && k.svc.is_empty() {
        return ("unknown_source".into(), "unknown");
    }
    if !ok(&k.wl) && !ok(&k.app) {
        return (format!("svc_{ns}_{}", k.svc), "service");
    }
    match gt {
        GraphType::Workload | GraphType::Service if ok(&k.wl) => {
            (format!("wl_{ns}_{}", k.wl), "workload")
        }
        GraphType::VersionedApp if ok(&k.app) && ok(&k.version) => {
            (format!("vapp_{ns}_{}_{}", k.app, k.version), "app")
        }
        _ if ok(&k.app) => (format!("app_{ns}_{}", k.app), "app"),
        _ => (format!("wl_{ns}_{}", k.wl), "workload"),
    }
}

impl TrafficMap {
    fn add_node(&mut self, k: &NodeKey, gt: GraphType) -> String {
        let (id, node_type) = id(k, gt);
        let ns = if ok(&k.wl_ns) { &k.wl_ns } else { &k.svc_ns };
        self.nodes.entry(id.clone()).or_insert_with(|| Node {
            node_type,
            namespace: ns.clone(),
            workload: if node_type == "service" {
                String::new()
            } else {
                k.wl.clone()
            },
            app: if node_type == "service" {
                String::new()
            } else {
                k.app.clone()
            },
            version: if gt == GraphType::VersionedApp || node_type == "workload" {
                k.version.clone()
            } else {
                String::new()
            },
            // Kiali names the service on service nodes only; others list destServices.
            service: if node_type == "service" {
                k.svc.clone()
            } else {
                String::new()
            },
            dest_services: BTreeSet::new(),
            rates_in: BTreeMap::new(),
            rates_out: BTreeMap::new(),
        });
        id
    }

    #[allow(clippy::too_many_arguments)]
    fn add_traffic(
        &mut self,
        src: &NodeKey,
        dst: &NodeKey,
        protocol: &str,
        code: &str,
        flags: &str,
        host: &str,
        val: f64,
        gt: GraphType,
    ) {
        let s = self.add_node(src, gt);
        let d = self.add_node(dst, gt);
        if ok(&dst.svc)
            && let Some(n) = self.nodes.get_mut(&d)
        {
            n.dest_services
                .insert((dst.svc_ns.clone(), dst.svc.clone()));
        }
        *self
            .nodes
            .get_mut(&s)
            .expect("added")
            .rates_out
            .entry(protocol.into())
            .or_default() += val;
        *self
            .nodes
            .get_mut(&d)
            .expect("added")
            .rates_in
            .entry(protocol.into())
            .or_default() += val;
        let e = self.edges.entry((s, d, protocol.into())).or_default();
        e.rate += val;
        *e.flags
            .entry(code.into())
            .or_default()
            .entry(flags.into())
            .or_default() += val;
        *e.hosts
            .entry(code.into())
            .or_default()
            .entry(host.into())
            .or_default() += val;
    }

    /// Kiali's `populateTrafficMap` (`tcp`: `populateTrafficMapTCP`) for one query's vector.
    pub fn populate(
        &mut self,
        samples: &[Sample],
        tcp: bool,
        gt: GraphType,
        inject_service_nodes: bool,
    ) {
        for s in samples {
            let l = |k: &str| s.metric.get(k).map(String::as_str);
            let needed = [
                "source_workload_namespace",
                "source_workload",
                "source_canonical_service",
                "source_canonical_revision",
                "destination_service_namespace",
                "destination_service",
                "destination_service_name",
                "destination_workload_namespace",
                "destination_workload",
                "destination_canonical_service",
                "destination_canonical_revision",
                "response_flags",
            ];
            let http_needed = ["request_protocol", "response_code"];
            if needed
                .iter()
                .chain(if tcp { &[][..] } else { &http_needed[..] })
                .any(|k| l(k).is_none())
            {
                eprintln!(
                    "kiali: skipping a series without the expected labels: {:?}",
                    s.metric
                );
                continue;
            }
            let g = |k: &str| l(k).unwrap_or_default().to_string();
            let src = NodeKey {
                // addTraffic passes the source namespace as both service and workload namespace.
                svc_ns: g("source_workload_namespace"),
                svc: String::new(),
                wl_ns: g("source_workload_namespace"),
                wl: g("source_workload"),
                app: g("source_canonical_service"),
                version: g("source_canonical_revision"),
            };
            // util.IsBadSourceTelemetry: a known workload in an unknown namespace.
            if !ok(&src.wl_ns) && ok(&src.wl) {
                continue;
            }
            let mut dst = NodeKey {
                svc_ns: g("destination_service_namespace"),
                svc: g("destination_service_name"),
                wl_ns: g("destination_workload_namespace"),
                wl: g("destination_workload"),
                app: g("destination_canonical_service"),
                version: g("destination_canonical_revision"),
            };
            // util.HandleDestination: the service namespace falls back to the workload's.
            if !ok(&dst.svc_ns) && ok(&dst.wl_ns) {
                dst.svc_ns = dst.wl_ns.clone();
            }
            let host = g("destination_service");
            // util.IsBadDestTelemetry: nothing names the destination.
            if !ok(&host) && !ok(&dst.svc) && !ok(&dst.wl) {
                continue;
            }
            let (protocol, code) = if tcp {
                ("tcp".to_string(), String::new())
            } else {
                (
                    g("request_protocol"),
                    response_code(
                        &g("request_protocol"),
                        &g("response_code"),
                        l("grpc_response_status"),
                    ),
                )
            };
            let flags = g("response_flags");
            let inject = inject_service_nodes && ok(&dst.svc) && id(&dst, gt).1 != "service";
            if inject {
                let svc = NodeKey {
                    svc_ns: dst.svc_ns.clone(),
                    svc: dst.svc.clone(),
                    ..Default::default()
                };
                self.add_traffic(&src, &svc, &protocol, &code, &flags, &host, s.value, gt);
                self.add_traffic(&svc, &dst, &protocol, &code, &flags, &host, s.value, gt);
            } else {
                self.add_traffic(&src, &dst, &protocol, &code, &flags, &host, s.value, gt);
            }
        }
    }

    /// Kiali's cytoscape JSON (`elements.nodes`, `elements.edges`), with `isOutside` on nodes
    /// outside `namespaces` and `isRoot` on nodes with only outgoing traffic.
    pub fn to_json(&self, namespaces: &[String], gt: GraphType, duration: u64, time: u64) -> Value {
        let hash = node_hash;
        let targets: BTreeSet<&String> = self.edges.keys().map(|(_, d, _)| d).collect();
        let sources: BTreeSet<&String> = self.edges.keys().map(|(s, _, _)| s).collect();
        let nodes: Vec<Value> = self.nodes.iter().map(|(id, n)| {
            let mut data = json!({
                "id": hash(id), "nodeType": n.node_type, "cluster": "Kubernetes", "namespace": n.namespace,
            });
            for (k, v) in [("workload", &n.workload), ("app", &n.app), ("version", &n.version), ("service", &n.service)] {
                if !v.is_empty() { data[k] = json!(v); }
            }
            if !n.dest_services.is_empty() {
                data["destServices"] = json!(n.dest_services.iter().map(|(ns, s)| json!({"cluster": "Kubernetes", "namespace": ns, "name": s})).collect::<Vec<_>>());
            }
            let protocols: BTreeSet<&String> = n.rates_in.keys().chain(n.rates_out.keys()).collect();
            data["traffic"] = json!(protocols.iter().map(|p| {
                let mut rates = serde_json::Map::new();
                if let Some(r) = n.rates_in.get(*p) { rates.insert(format!("{p}In"), json!(format!("{r:.2}"))); }
                if let Some(r) = n.rates_out.get(*p) { rates.insert(format!("{p}Out"), json!(format!("{r:.2}"))); }
                json!({"protocol": p, "rates": rates})
            }).collect::<Vec<_>>());
            if !namespaces.contains(&n.namespace) { data["isOutside"] = json!(true); }
            if sources.contains(id) && !targets.contains(id) { data["isRoot"] = json!(true); }
            json!({"data": data})
        }).collect();
        let edges: Vec<Value> = self.edges.iter().map(|((s, d, p), e)| {
            let pct = |v: f64| format!("{:.1}", if e.rate > 0.0 { 100.0 * v / e.rate } else { 0.0 });
            let responses: serde_json::Map<String, Value> = e.flags.iter().map(|(code, flags)| {
                (code.clone(), json!({
                    "flags": flags.iter().map(|(f, v)| (f.clone(), json!(pct(*v)))).collect::<serde_json::Map<_, _>>(),
                    "hosts": e.hosts.get(code).into_iter().flatten().map(|(h, v)| (h.clone(), json!(pct(*v)))).collect::<serde_json::Map<_, _>>(),
                }))
            }).collect();
            let mut rates = serde_json::Map::new();
            rates.insert(p.clone(), json!(format!("{:.2}", e.rate)));
            json!({"data": {
                "id": hash(&format!("{s}->{d}:{p}")), "source": hash(s), "target": hash(d),
                "traffic": {"protocol": p, "rates": rates, "responses": responses},
            }})
        }).collect();
        json!({
            "timestamp": time, "duration": duration, "graphType": gt.as_str(),
            "elements": {"nodes": nodes, "edges": edges},
        })
    }
}

/// A node or edge id: a hash of Kiali's id string (Kiali hashes them too).
fn node_hash(s: &str) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in s.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")
}

/// Kiali's `util.HandleResponseCode`: gRPC traffic reports its grpc status when it has one.
fn response_code(protocol: &str, code: &str, grpc: Option<&str>) -> String {
    match grpc {
        Some(g) if protocol == "grpc" && !g.is_empty() => g.to_string(),
        _ => code.to_string(),
    }
}

/// A Prometheus/Go duration like `60s`, `10m`, `1h30m`, `1d` in whole seconds (at least 1).
pub fn parse_duration(s: &str) -> Option<u64> {
    let s = s.trim();
    let (mut total, mut num) = (0f64, String::new());
    let mut chars = s.chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let mut unit = c.to_string();
        if c == 'm' && chars.peek() == Some(&'s') {
            unit.push(chars.next()?);
        }
        let n: f64 = num.parse().ok()?;
        num.clear();
        total += n * match unit.as_str() {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            "w" => 604800.0,
            _ => return None,
        };
        any = true;
    }
    if !num.is_empty() || !any {
        return None;
    }
    Some((total.ceil() as u64).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(pairs: &[(&str, &str)], value: f64) -> Sample {
        Sample {
            metric: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            value,
        }
    }

    fn series(src_wl: &str, src_app: &str, src_ver: &str, dst: &str, dst_ver: &str) -> Sample {
        let dst_wl = format!("{dst}-{dst_ver}");
        let host = format!("{dst}.default.svc.cluster.local");
        let src_ns = if src_wl == "unknown" {
            "unknown"
        } else {
            "default"
        };
        sample(
            &[
                ("source_workload_namespace", src_ns),
                ("source_workload", src_wl),
                ("source_canonical_service", src_app),
                ("source_canonical_revision", src_ver),
                ("destination_service_namespace", "default"),
                ("destination_service", &host),
                ("destination_service_name", dst),
                ("destination_workload_namespace", "default"),
                ("destination_workload", &dst_wl),
                ("destination_canonical_service", dst),
                ("destination_canonical_revision", dst_ver),
                ("request_protocol", "http"),
                ("response_code", "200"),
                ("grpc_response_status", ""),
                ("response_flags", "-"),
            ],
            0.5,
        )
    }

    #[test]
    fn versioned_app_nodes_and_edges_from_rates() {
        let mut m = TrafficMap::default();
        m.populate(
            &[
                series("unknown", "unknown", "unknown", "productpage", "v1"),
                series("productpage-v1", "productpage", "v1", "reviews", "v2"),
            ],
            false,
            GraphType::VersionedApp,
            false,
        );
        let g = m.to_json(&["default".into()], GraphType::VersionedApp, 60, 0);
        let nodes = g["elements"]["nodes"].as_array().unwrap();
        let apps: BTreeSet<(String, String)> = nodes
            .iter()
            .filter(|n| n["data"]["nodeType"] == "app")
            .map(|n| {
                (
                    n["data"]["app"].as_str().unwrap().into(),
                    n["data"]["version"].as_str().unwrap().into(),
                )
            })
            .collect();
        assert_eq!(
            apps,
            [
                ("productpage".into(), "v1".into()),
                ("reviews".into(), "v2".into())
            ]
            .into()
        );
        assert!(
            nodes
                .iter()
                .any(|n| n["data"]["nodeType"] == "unknown" && n["data"]["isRoot"] == true)
        );
        assert_eq!(g["elements"]["edges"].as_array().unwrap().len(), 2);
        let mut inj = TrafficMap::default();
        inj.populate(
            &[series(
                "productpage-v1",
                "productpage",
                "v1",
                "reviews",
                "v2",
            )],
            false,
            GraphType::App,
            true,
        );
        let g = inj.to_json(&["default".into()], GraphType::App, 60, 0);
        assert_eq!(g["elements"]["nodes"].as_array().unwrap().len(), 3, "{g}");
    }

    #[test]
    fn queries_and_durations() {
        let q = queries("default", 60);
        assert_eq!(q.len(), 6);
        assert!(q[2].1.starts_with(r#"sum(rate(istio_requests_total{reporter="source",source_workload_namespace="default"} [60s])) by (source_workload_namespace,"#));
        assert_eq!(parse_duration("60s"), Some(60));
        assert_eq!(parse_duration("1h30m"), Some(5400));
        assert_eq!(parse_duration("soon"), None);
        assert_eq!(parse_duration("10"), None);
    }
}
