//! STAND-IN for the Envoy bootstrap Istio's `pilot-agent` writes
//! (`tools/packaging/common/envoy_bootstrap.json`, filled in by `pkg/bootstrap/config.go`),
//! plus, because there is no xDS here, static listeners that do what istiod's LDS/CDS would:
//!
//! - both modes: admin on `127.0.0.1:15000`; `0.0.0.0:15090` routing `/stats/prometheus` to
//!   the admin (cluster `prometheus_stats`); `0.0.0.0:15021` routing `/healthz/ready` to the
//!   agent's status server on `127.0.0.1:15020` (cluster `agent`), as Istio's bootstrap does;
//! - sidecar: `virtualInbound` on `0.0.0.0:15006` and `virtualOutbound` on `0.0.0.0:15001`,
//!   each with the `original_dst` and `http_inspector` listener filters, an HTTP connection
//!   manager for HTTP (stat prefixes `inbound_15006` / `outbound_15001`: no dots, so Envoy's
//!   Prometheus output reads `envoy_http_downstream_rq_total{envoy_http_conn_manager_prefix=
//!   "inbound_15006"}`; Istio's own names come from its xDS and stats filters) and a
//!   `tcp_proxy` for the rest, to ORIGINAL_DST clusters. The inbound cluster binds its
//!   upstream connections to `127.0.0.6` like Istio's `InboundPassthroughClusterIpv4`: that
//!   source is what the `-o lo -s 127.0.0.6/32 -j RETURN` rule lets through; without it Envoy's
//!   own connection to the pod IP would be redirected back to 15006;
//! - router (gateway): a listener on `0.0.0.0:8080` (the `http2` port's targetPort of Istio's
//!   ingress gateway) whose routes and clusters Envoy reads from files it watches in the config
//!   directory ([`super::gateway`]); the agent writes them routing everything to a 404.
//!   Translating Gateway/VirtualService into those files is a later step: istiod would push
//!   them over xDS, which this stand-in does not have.
//!
//! Tracing (Zipkin or OTLP, see [`Tracing`]) uses the workload's canonical service
//! `<app>.<namespace>` as the node's cluster, which Envoy's Zipkin tracer reports as the
//! service name, as Istio does. Access logs go to stdout in Istio's default text format.

use serde_json::{Value, json};

use super::gateway;
use super::telemetry::{self, Workload};

/// Istio's ports (`pkg/config/constants`), all overridable for tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    /// Envoy admin (127.0.0.1 only).
    pub admin: u16,
    /// The agent's status server.
    pub status: u16,
    /// Envoy's health listener (the readiness probe's port).
    pub health: u16,
    /// Envoy's Prometheus listener.
    pub prometheus: u16,
    /// Inbound capture (`-z`).
    pub inbound: u16,
    /// Outbound capture (`-p`).
    pub outbound: u16,
    /// The gateway's HTTP listener.
    pub gateway_http: u16,
}

impl Default for Ports {
    fn default() -> Self {
        Self {
            admin: 15000,
            status: 15020,
            health: 15021,
            prometheus: 15090,
            inbound: 15006,
            outbound: 15001,
            gateway_http: 8080,
        }
    }
}

/// `proxy sidecar` or `proxy router`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// An injected sidecar.
    Sidecar,
    /// A gateway.
    Router,
}

impl Mode {
    /// Istio's node type prefix.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Sidecar => "sidecar",
            Mode::Router => "router",
        }
    }
}

/// Where spans go.
#[derive(Debug, Clone, PartialEq)]
pub enum Tracer {
    /// Zipkin v2 JSON to `host:port` (Istio 1.12's `tracing.zipkin.address`).
    Zipkin {
        /// Host name (resolved by Envoy, e.g. `zipkin.istio-system`).
        host: String,
        /// Port (9411).
        port: u16,
    },
    /// OTLP over gRPC to `host:port` (Istio 1.30's `opentelemetry` extension provider).
    Otlp {
        /// Host name.
        host: String,
        /// Port (4317).
        port: u16,
    },
}

/// Tracing of every HTTP connection manager.
#[derive(Debug, Clone, PartialEq)]
pub struct Tracing {
    /// The collector.
    pub tracer: Tracer,
    /// Percentage of requests sampled (the demo profile samples 100).
    pub sampling: f64,
}

/// Everything a bootstrap depends on.
#[derive(Debug, Clone, PartialEq)]
pub struct BootstrapSpec {
    /// Sidecar or gateway.
    pub mode: Mode,
    /// Pod name (`POD_NAME`).
    pub pod_name: String,
    /// Namespace (`POD_NAMESPACE`).
    pub namespace: String,
    /// Pod IP (`INSTANCE_IP`).
    pub instance_ip: String,
    /// Canonical service, `<app>.<namespace>`: the node's cluster and the traces' service.
    pub service: String,
    /// DNS domain (`--domain`, e.g. `default.svc.cluster.local`).
    pub domain: String,
    /// Ports.
    pub ports: Ports,
    /// Tracing, if any.
    pub tracing: Option<Tracing>,
    /// This proxy's workload, sent to peers in the stand-in's metadata headers.
    pub workload: Workload,
    /// The JSON access log the agent turns into Istio's metrics ([`telemetry`]), if any.
    pub telemetry_log: Option<String>,
    /// Router mode: the directory of the gateway's route and cluster files
    /// ([`super::gateway`]); without it the gateway answers 404 from a static route.
    pub dynamic_dir: Option<String>,
}

/// Istio's default access log format (`meshconfig` `EnvoyTextLogFormat`).
const ACCESS_LOG_FORMAT: &str = "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" \
%RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% \
\"%UPSTREAM_TRANSPORT_FAILURE_REASON%\" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% \
%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \
\"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\" %UPSTREAM_CLUSTER% %UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% \
%DOWNSTREAM_REMOTE_ADDRESS% %REQUESTED_SERVER_NAME% %ROUTE_NAME%\n";

/// Name of the inbound ORIGINAL_DST cluster (Istio's).
pub const INBOUND_CLUSTER: &str = "InboundPassthroughClusterIpv4";
/// Name of the outbound ORIGINAL_DST cluster (Istio's).
pub const OUTBOUND_CLUSTER: &str = "PassthroughCluster";

/// The whole bootstrap.
pub fn bootstrap(spec: &BootstrapSpec) -> Value {
    let mut b = json!({
        "node": {
            "id": format!("{}~{}~{}.{}~{}", spec.mode.as_str(), spec.instance_ip, spec.pod_name, spec.namespace, spec.domain),
            "cluster": spec.service,
            "metadata": { "NAME": spec.pod_name, "NAMESPACE": spec.namespace, "STANDIN": "istio-e2e pilot-agent stand-in" }
        },
        "admin": {
            "address": socket("127.0.0.1", spec.ports.admin)
        },
        "static_resources": { "listeners": listeners(spec), "clusters": clusters(spec) }
    });
    if let (Mode::Router, Some(dir)) = (spec.mode, &spec.dynamic_dir) {
        b["dynamic_resources"] =
            json!({ "cds_config": gateway::config_source(dir, gateway::CDS_FILE) });
    }
    b
}

fn socket(address: &str, port: u16) -> Value {
    json!({ "socket_address": { "address": address, "port_value": port } })
}

fn static_cluster(name: &str, address: &str, port: u16) -> Value {
    json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "0.250s",
        "load_assignment": { "cluster_name": name, "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": socket(address, port) } }] }] }
    })
}

fn original_dst_cluster(name: &str, bind: Option<&str>) -> Value {
    let mut cluster = json!({ "name": name, "type": "ORIGINAL_DST", "lb_policy": "CLUSTER_PROVIDED", "connect_timeout": "10s" });
    if let Some(source) = bind {
        cluster["upstream_bind_config"] =
            json!({ "source_address": { "address": source, "port_value": 0 } });
    } else {
        // STAND-IN DIFFERENCE: Istio balances each outbound request over the Service's
        // endpoints (EDS). Without xDS the sidecar sends to the Service IP, where kube-proxy
        // picks an endpoint per connection; one request per upstream connection makes that a
        // pick per request (otherwise two pooled connections sent all of Bookinfo's traffic to
        // two of the three reviews versions, and Kiali's graph missed the third).
        cluster["typed_extension_protocol_options"] = json!({
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "common_http_protocol_options": { "max_requests_per_connection": 1 },
                "use_downstream_protocol_config": { "http_protocol_options": {}, "http2_protocol_options": {} }
            }
        });
    }
    cluster
}

fn clusters(spec: &BootstrapSpec) -> Vec<Value> {
    let mut out = vec![
        static_cluster("prometheus_stats", "127.0.0.1", spec.ports.admin),
        static_cluster("agent", "127.0.0.1", spec.ports.status),
    ];
    if spec.mode == Mode::Sidecar {
        out.push(original_dst_cluster(INBOUND_CLUSTER, Some("127.0.0.6")));
        out.push(original_dst_cluster(OUTBOUND_CLUSTER, None));
    }
    if let Some(tracing) = &spec.tracing {
        out.push(tracer_cluster(&tracing.tracer));
    }
    out
}

fn tracer_cluster(tracer: &Tracer) -> Value {
    let (name, host, port) = match tracer {
        Tracer::Zipkin { host, port } => ("zipkin", host, *port),
        Tracer::Otlp { host, port } => ("opentelemetry", host, *port),
    };
    let mut cluster = json!({
        "name": name,
        "type": "STRICT_DNS",
        "dns_lookup_family": "V4_ONLY",
        "connect_timeout": "1s",
        "load_assignment": { "cluster_name": name, "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": socket(host, port) } }] }] }
    });
    if matches!(tracer, Tracer::Otlp { .. }) {
        cluster["typed_extension_protocol_options"] = json!({
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": { "http2_protocol_options": {} }
            }
        });
    }
    cluster
}

fn tracing_config(spec: &BootstrapSpec) -> Option<Value> {
    let tracing = spec.tracing.as_ref()?;
    let provider = match &tracing.tracer {
        Tracer::Zipkin { .. } => json!({
            "name": "envoy.tracers.zipkin",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.config.trace.v3.ZipkinConfig",
                "collector_cluster": "zipkin",
                "collector_endpoint": "/api/v2/spans",
                "collector_endpoint_version": "HTTP_JSON",
                "trace_id_128bit": true,
                "shared_span_context": false
            }
        }),
        Tracer::Otlp { .. } => json!({
            "name": "envoy.tracers.opentelemetry",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig",
                "grpc_service": { "envoy_grpc": { "cluster_name": "opentelemetry" }, "timeout": "1s" },
                "service_name": spec.service
            }
        }),
    };
    Some(json!({ "random_sampling": { "value": tracing.sampling }, "provider": provider }))
}

fn stdout_log() -> Value {
    json!({
        "name": "envoy.access_loggers.stdout",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
            "log_format": { "text_format_source": { "inline_string": ACCESS_LOG_FORMAT } }
        }
    })
}

/// Stdout in Istio's format, plus the telemetry log when the spec has one.
fn access_logs(data: DataPath) -> Value {
    let mut logs = vec![stdout_log()];
    if let Some(path) = &data.spec.telemetry_log {
        logs.push(json!({
            "name": "envoy.access_loggers.file",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                "path": path,
                "log_format": { "json_format": telemetry::log_format(data.direction) }
            }
        }));
    }
    Value::Array(logs)
}

/// The data path side of a connection manager: the spec, and `inbound` or `outbound`.
#[derive(Clone, Copy)]
struct DataPath<'a> {
    spec: &'a BootstrapSpec,
    direction: &'a str,
}

/// The stand-in's metadata exchange: outbound requests name their source, inbound answers
/// their workload (see [`telemetry`]).
fn peer_headers(vhost: &mut Value, data: DataPath) {
    let value = data.spec.workload.header_value();
    let header = |key: &str| json!([{ "header": { "key": key, "value": value }, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD" }]);
    if data.direction == "inbound" {
        vhost["response_headers_to_add"] = header(telemetry::PEER_HEADER);
    } else {
        vhost["request_headers_to_add"] = header(telemetry::SOURCE_HEADER);
    }
}

/// An HTTP connection manager; on the data path it also traces, logs and exchanges peer headers.
fn hcm(stat_prefix: &str, routes: Value, data: Option<DataPath>) -> Value {
    let mut config = json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": stat_prefix,
        "codec_type": "AUTO",
        "route_config": { "name": stat_prefix, "virtual_hosts": [{ "name": stat_prefix, "domains": ["*"], "routes": routes }] },
        "http_filters": [{
            "name": "envoy.filters.http.router",
            "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" }
        }]
    });
    if let Some(data) = data {
        config["access_log"] = access_logs(data);
        peer_headers(&mut config["route_config"]["virtual_hosts"][0], data);
        if let Some(tracing) = tracing_config(data.spec) {
            config["tracing"] = tracing;
        }
    }
    json!({ "name": "envoy.filters.network.http_connection_manager", "typed_config": config })
}

fn route_to(prefix_or_path: Value, cluster: &str) -> Value {
    json!({ "match": prefix_or_path, "route": { "cluster": cluster, "timeout": "0s" } })
}

/// A listener with one HTTP connection manager and no listener filters.
fn http_listener(name: &str, port: u16, manager: Value) -> Value {
    json!({ "name": name, "address": socket("0.0.0.0", port), "filter_chains": [{ "filters": [manager] }] })
}

fn listeners(spec: &BootstrapSpec) -> Vec<Value> {
    let p = spec.ports;
    let stats = hcm(
        "stats",
        json!([route_to(
            json!({ "path": "/stats/prometheus" }),
            "prometheus_stats"
        )]),
        None,
    );
    let health = hcm(
        "agent",
        json!([route_to(json!({ "path": "/healthz/ready" }), "agent")]),
        None,
    );
    let mut out = vec![
        http_listener(&format!("0.0.0.0_{}", p.prometheus), p.prometheus, stats),
        http_listener(&format!("0.0.0.0_{}", p.health), p.health, health),
    ];
    match spec.mode {
        Mode::Sidecar => {
            out.push(capture_listener(
                spec,
                "virtualInbound",
                p.inbound,
                "inbound",
                INBOUND_CLUSTER,
            ));
            out.push(capture_listener(
                spec,
                "virtualOutbound",
                p.outbound,
                "outbound",
                OUTBOUND_CLUSTER,
            ));
        }
        Mode::Router => out.push(gateway_listener(spec)),
    }
    out
}

/// `virtualInbound` / `virtualOutbound`: original destination, HTTP detected and routed through
/// a connection manager, anything else proxied as TCP, both to an ORIGINAL_DST cluster.
fn capture_listener(
    spec: &BootstrapSpec,
    name: &str,
    port: u16,
    direction: &str,
    cluster: &str,
) -> Value {
    let prefix = format!("{direction}_{port}");
    let manager = hcm(
        &prefix,
        json!([route_to(json!({ "prefix": "/" }), cluster)]),
        Some(DataPath { spec, direction }),
    );
    let tcp = json!({
        "name": "envoy.filters.network.tcp_proxy",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
            "stat_prefix": format!("{prefix}_tcp"),
            "cluster": cluster,
            "access_log": [stdout_log()]
        }
    });
    json!({
        "name": name,
        "address": socket("0.0.0.0", port),
        "traffic_direction": direction.to_uppercase(),
        "listener_filters_timeout": "5s",
        "continue_on_listener_filters_timeout": true,
        "listener_filters": [
            { "name": "envoy.filters.listener.original_dst",
              "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst" } },
            { "name": "envoy.filters.listener.http_inspector",
              "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.listener.http_inspector.v3.HttpInspector" } }
        ],
        "filter_chains": [{
            "name": format!("{prefix}_http"),
            "filter_chain_match": { "application_protocols": ["http/1.1", "h2c"] },
            "filters": [manager]
        }],
        "default_filter_chain": { "name": format!("{prefix}_tcp"), "filters": [tcp] }
    })
}

/// The gateway's HTTP port. With a dynamic directory its routes come from the file Envoy
/// watches there ([`super::gateway`]); without, every request gets 404. Either way, routes from
/// Gateway and VirtualService are a later step (see the module documentation).
fn gateway_listener(spec: &BootstrapSpec) -> Value {
    let port = spec.ports.gateway_http;
    let routes = json!([{ "match": { "prefix": "/" }, "direct_response": { "status": 404 } }]);
    let data = DataPath {
        spec,
        direction: "outbound",
    };
    let mut manager = hcm(&format!("outbound_{port}"), routes, Some(data));
    if let Some(dir) = &spec.dynamic_dir {
        let config = &mut manager["typed_config"];
        config
            .as_object_mut()
            .expect("an object")
            .remove("route_config");
        config["rds"] = json!({
            "route_config_name": gateway::ROUTE_NAME,
            "config_source": gateway::config_source(dir, gateway::RDS_FILE)
        });
    }
    http_listener(&format!("0.0.0.0_{port}"), port, manager)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn spec(mode: Mode, tracing: Option<Tracing>) -> BootstrapSpec {
        BootstrapSpec {
            mode,
            pod_name: "productpage-v1-1".into(),
            namespace: "default".into(),
            instance_ip: "10.244.0.7".into(),
            service: "productpage.default".into(),
            domain: "default.svc.cluster.local".into(),
            ports: Ports::default(),
            tracing,
            workload: Workload {
                name: "productpage-v1".into(),
                namespace: "default".into(),
                app: "productpage".into(),
                version: "v1".into(),
                canonical_service: "productpage".into(),
                canonical_revision: "v1".into(),
            },
            telemetry_log: Some("/etc/istio/proxy/telemetry.log".into()),
            dynamic_dir: None,
        }
    }

    fn listener<'a>(b: &'a Value, name: &str) -> &'a Value {
        b["static_resources"]["listeners"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["name"] == name)
            .unwrap()
    }

    #[test]
    fn sidecar_has_istio_ports_and_original_dst_capture() {
        let b = bootstrap(&spec(Mode::Sidecar, None));
        assert_eq!(b["admin"]["address"]["socket_address"]["port_value"], 15000);
        assert_eq!(
            b["node"]["id"],
            "sidecar~10.244.0.7~productpage-v1-1.default~default.svc.cluster.local"
        );
        let inbound = listener(&b, "virtualInbound");
        assert_eq!(inbound["address"]["socket_address"]["port_value"], 15006);
        assert_eq!(
            inbound["listener_filters"][0]["name"],
            "envoy.filters.listener.original_dst"
        );
        assert_eq!(
            listener(&b, "virtualOutbound")["address"]["socket_address"]["port_value"],
            15001
        );
        let clusters = b["static_resources"]["clusters"].as_array().unwrap();
        let inbound_cluster = clusters
            .iter()
            .find(|c| c["name"] == INBOUND_CLUSTER)
            .unwrap();
        assert_eq!(
            inbound_cluster["upstream_bind_config"]["source_address"]["address"],
            "127.0.0.6"
        );
        assert!(
            !b.to_string().contains("\"tracing\""),
            "no tracing unless asked"
        );
    }

    #[test]
    fn router_answers_404_on_8080_and_traces_with_the_service_name() {
        let tracing = Tracing {
            tracer: Tracer::Zipkin {
                host: "zipkin.istio-system".into(),
                port: 9411,
            },
            sampling: 100.0,
        };
        let b = bootstrap(&spec(Mode::Router, Some(tracing)));
        let http = listener(&b, "0.0.0.0_8080");
        let hcm = &http["filter_chains"][0]["filters"][0]["typed_config"];
        assert_eq!(
            hcm["route_config"]["virtual_hosts"][0]["routes"][0]["direct_response"]["status"],
            404
        );
        assert_eq!(hcm["tracing"]["provider"]["name"], "envoy.tracers.zipkin");
        assert_eq!(b["node"]["cluster"], "productpage.default");
        assert!(
            b["static_resources"]["listeners"]
                .as_array()
                .unwrap()
                .iter()
                .all(|l| l["name"] != "virtualInbound")
        );
    }
}
