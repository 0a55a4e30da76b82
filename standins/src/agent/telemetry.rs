//! STAND-IN for Istio's standard metrics (`istio_requests_total`,
//! `istio_request_duration_milliseconds`), which real Istio computes inside Envoy with its
//! `istio.stats` filter and peer metadata exchange (`extensions/stats`, `metadata_exchange` in
//! istio/proxy). Upstream Envoy has neither, so the stand-in does the same from real Envoy data:
//!
//! - every sidecar's outbound requests carry a header naming its workload
//!   ([`SOURCE_HEADER`]), every inbound answer a header naming the answering workload
//!   ([`PEER_HEADER`]): the peer metadata exchange, in plain headers;
//! - Envoy writes one JSON line per HTTP request to a file access log (direction, response code,
//!   authority, the peer header, duration), next to its bootstrap;
//! - at each scrape of 15020's `/stats/prometheus`, the agent reads the new lines and serves the
//!   counters with Istio's metric names and labels (`reporter="destination"` for inbound,
//!   `"source"` for outbound). `destination_service` is, inbound, this workload's canonical
//!   service as a cluster-local FQDN (Istio takes the Service the inbound cluster serves; the
//!   Host header through a gateway is whatever the client sent), and outbound, the request's
//!   authority made a cluster-local FQDN (`details:9080` → `details.<ns>.svc.cluster.local`).
//!
//! Labels this stand-in cannot know are `unknown` (principals: there is no mTLS) or `-`.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Mutex;

/// Request header an outbound sidecar (or gateway) adds: the caller's [`Workload`].
pub const SOURCE_HEADER: &str = "x-istio-standin-source";
/// Response header an inbound sidecar adds: the answering [`Workload`].
pub const PEER_HEADER: &str = "x-istio-standin-peer";

/// Istio's request duration buckets (milliseconds).
const BUCKETS: &[f64] = &[
    1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];

/// A workload's identity, as Istio's labels name it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Workload {
    /// Workload (Deployment) name, e.g. `reviews-v2`.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// `app` label.
    pub app: String,
    /// `version` label.
    pub version: String,
    /// Canonical service (`service.istio.io/canonical-name`, else `app`).
    pub canonical_service: String,
    /// Canonical revision (`service.istio.io/canonical-revision`, else `version`, else `latest`).
    pub canonical_revision: String,
}

impl Workload {
    /// The value of [`SOURCE_HEADER`] / [`PEER_HEADER`].
    pub fn header_value(&self) -> String {
        [
            &self.name,
            &self.namespace,
            &self.app,
            &self.version,
            &self.canonical_service,
            &self.canonical_revision,
        ]
        .map(String::as_str)
        .join("|")
    }

    /// Reads a header value; `None` unless it has the six fields.
    pub fn from_header(value: &str) -> Option<Self> {
        let f: Vec<&str> = value.split('|').collect();
        let [
            name,
            namespace,
            app,
            version,
            canonical_service,
            canonical_revision,
        ] = f.as_slice()
        else {
            return None;
        };
        let s = |v: &&str| v.to_string();
        Some(Self {
            name: s(name),
            namespace: s(namespace),
            app: s(app),
            version: s(version),
            canonical_service: s(canonical_service),
            canonical_revision: s(canonical_revision),
        })
    }

    fn unknown() -> Self {
        let u = || "unknown".to_string();
        Self {
            name: u(),
            namespace: u(),
            app: u(),
            version: u(),
            canonical_service: u(),
            canonical_revision: u(),
        }
    }
}

/// Envoy's JSON access log line format for the telemetry log (`%...%` are Envoy's commands).
pub fn log_format(direction: &str) -> serde_json::Value {
    serde_json::json!({
        "direction": direction,
        "code": "%RESPONSE_CODE%",
        "authority": "%REQ(:AUTHORITY)%",
        "source": format!("%REQ({})%", SOURCE_HEADER.to_uppercase()),
        "peer": format!("%RESP({})%", PEER_HEADER.to_uppercase()),
        "duration": "%DURATION%",
        "flags": "%RESPONSE_FLAGS%"
    })
}

/// One request's labels.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    reporter: &'static str,
    source: Workload,
    destination: Workload,
    destination_service: String,
    response_code: String,
    response_flags: String,
}

#[derive(Debug, Default)]
struct Series {
    count: u64,
    sum_ms: f64,
    buckets: Vec<u64>,
}

#[derive(Debug, Default)]
struct State {
    offset: u64,
    partial: String,
    series: BTreeMap<Key, Series>,
}

/// The agent's view of the telemetry log.
#[derive(Debug)]
pub struct Telemetry {
    /// This proxy's workload.
    pub me: Workload,
    /// The log Envoy writes.
    pub log: PathBuf,
    state: Mutex<State>,
}

impl Telemetry {
    /// Telemetry for `me`, reading `log`.
    pub fn new(me: Workload, log: PathBuf) -> Self {
        Self {
            me,
            log,
            state: Mutex::new(State::default()),
        }
    }

    /// Reads what Envoy appended since the last call and renders all series.
    pub fn scrape(&self) -> String {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let fresh = self.read_new(&mut state);
        for line in fresh.lines() {
            if let Some((key, duration)) = self.parse(line) {
                let series = state.series.entry(key).or_default();
                series.count += 1;
                series.sum_ms += duration;
                series.buckets.resize(BUCKETS.len(), 0);
                for (i, le) in BUCKETS.iter().enumerate() {
                    series.buckets[i] += u64::from(duration <= *le);
                }
            }
        }
        render(&state.series)
    }

    /// New complete lines since the last read (a trailing partial line waits for the next).
    fn read_new(&self, state: &mut State) -> String {
        let Ok(mut file) = std::fs::File::open(&self.log) else {
            return String::new();
        };
        let mut text = std::mem::take(&mut state.partial);
        if file.seek(SeekFrom::Start(state.offset)).is_ok() {
            let mut buf = Vec::new();
            if let Ok(n) = file.read_to_end(&mut buf) {
                state.offset += n as u64;
                text.push_str(&String::from_utf8_lossy(&buf));
            }
        }
        match text.rfind('\n') {
            Some(end) => {
                state.partial = text[end + 1..].to_string();
                text.truncate(end + 1);
                text
            }
            None => {
                state.partial = text;
                String::new()
            }
        }
    }

    fn parse(&self, line: &str) -> Option<(Key, f64)> {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        let text = |k: &str| match &v[k] {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Null => "-".to_string(),
            other => other.to_string(),
        };
        let peer = |k: &str| Workload::from_header(&text(k)).unwrap_or_else(Workload::unknown);
        let own_service = || service_fqdn(&self.me.canonical_service, &self.me.namespace);
        let (reporter, source, destination, service) = match text("direction").as_str() {
            "inbound" => (
                "destination",
                peer("source"),
                self.me.clone(),
                own_service(),
            ),
            "outbound" => (
                "source",
                self.me.clone(),
                peer("peer"),
                service_fqdn(&text("authority"), &self.me.namespace),
            ),
            _ => return None,
        };
        let key = Key {
            reporter,
            destination_service: service,
            source,
            destination,
            response_code: text("code"),
            response_flags: text("flags"),
        };
        Some((
            key,
            v["duration"]
                .as_f64()
                .or_else(|| text("duration").parse().ok())
                .unwrap_or(0.0),
        ))
    }
}

/// `details:9080` → `details.<ns>.svc.cluster.local`; `details.other` →
/// `details.other.svc.cluster.local`; FQDNs and IPs stay (without the port).
pub fn service_fqdn(authority: &str, namespace: &str) -> String {
    let host = match authority.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => authority,
    };
    let dots = host.matches('.').count();
    if host.is_empty() || host == "-" {
        "unknown".to_string()
    } else if host.parse::<std::net::IpAddr>().is_ok()
        || host.ends_with(".svc.cluster.local")
        || dots > 1
    {
        host.to_string()
    } else if dots == 1 {
        format!("{host}.svc.cluster.local")
    } else {
        format!("{host}.{namespace}.svc.cluster.local")
    }
}

fn labels(key: &Key) -> String {
    let (s, d) = (&key.source, &key.destination);
    let service_name = key
        .destination_service
        .split('.')
        .next()
        .unwrap_or("unknown");
    let service_namespace = key
        .destination_service
        .split('.')
        .nth(1)
        .unwrap_or("unknown");
    let security = if key.reporter == "destination" {
        "none"
    } else {
        "unknown"
    };
    let pairs = [
        ("reporter", key.reporter),
        ("source_workload", &s.name),
        ("source_workload_namespace", &s.namespace),
        ("source_principal", "unknown"),
        ("source_app", &s.app),
        ("source_version", &s.version),
        ("source_canonical_service", &s.canonical_service),
        ("source_canonical_revision", &s.canonical_revision),
        ("source_cluster", "Kubernetes"),
        ("destination_workload", &d.name),
        ("destination_workload_namespace", &d.namespace),
        ("destination_principal", "unknown"),
        ("destination_app", &d.app),
        ("destination_version", &d.version),
        ("destination_service", &key.destination_service),
        ("destination_service_name", service_name),
        ("destination_service_namespace", service_namespace),
        ("destination_canonical_service", &d.canonical_service),
        ("destination_canonical_revision", &d.canonical_revision),
        ("destination_cluster", "Kubernetes"),
        ("request_protocol", "http"),
        ("response_code", &key.response_code),
        ("grpc_response_status", ""),
        ("response_flags", &key.response_flags),
        ("connection_security_policy", security),
    ];
    pairs
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect::<Vec<_>>()
        .join(",")
}

fn render(series: &BTreeMap<Key, Series>) -> String {
    let mut out = String::new();
    if series.is_empty() {
        return out;
    }
    out.push_str("# TYPE istio_requests_total counter\n");
    for (key, s) in series {
        out.push_str(&format!(
            "istio_requests_total{{{}}} {}\n",
            labels(key),
            s.count
        ));
    }
    out.push_str("# TYPE istio_request_duration_milliseconds histogram\n");
    for (key, s) in series {
        let l = labels(key);
        for (le, n) in BUCKETS.iter().zip(&s.buckets) {
            out.push_str(&format!(
                "istio_request_duration_milliseconds_bucket{{{l},le=\"{le}\"}} {n}\n"
            ));
        }
        out.push_str(&format!(
            "istio_request_duration_milliseconds_bucket{{{l},le=\"+Inf\"}} {}\n",
            s.count
        ));
        out.push_str(&format!(
            "istio_request_duration_milliseconds_sum{{{l}}} {}\n",
            s.sum_ms
        ));
        out.push_str(&format!(
            "istio_request_duration_milliseconds_count{{{l}}} {}\n",
            s.count
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload(name: &str, app: &str, version: &str) -> Workload {
        Workload {
            name: name.into(),
            namespace: "default".into(),
            app: app.into(),
            version: version.into(),
            canonical_service: app.into(),
            canonical_revision: version.into(),
        }
    }

    #[test]
    fn authority_becomes_the_service_fqdn() {
        assert_eq!(
            service_fqdn("details:9080", "default"),
            "details.default.svc.cluster.local"
        );
        assert_eq!(
            service_fqdn("ratings.other", "default"),
            "ratings.other.svc.cluster.local"
        );
        assert_eq!(
            service_fqdn("x.y.svc.cluster.local:80", "default"),
            "x.y.svc.cluster.local"
        );
        assert_eq!(service_fqdn("10.0.0.1:8080", "default"), "10.0.0.1");
        assert_eq!(service_fqdn("-", "default"), "unknown");
    }

    #[test]
    fn header_round_trips() {
        let w = workload("reviews-v2", "reviews", "v2");
        assert_eq!(Workload::from_header(&w.header_value()), Some(w));
        assert_eq!(Workload::from_header("garbage"), None);
    }

    #[test]
    fn log_lines_become_istio_requests_total_per_reporter() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("telemetry.log");
        let me = workload("productpage-v1", "productpage", "v1");
        let t = Telemetry::new(me, log.clone());
        assert_eq!(t.scrape(), "", "no log yet, no series");
        let reviews = workload("reviews-v2", "reviews", "v2").header_value();
        let lines = format!(
            "{{\"direction\":\"inbound\",\"code\":200,\"authority\":\"127.0.0.1:41234\",\"source\":null,\"peer\":null,\"duration\":7,\"flags\":\"-\"}}\n\
             {{\"direction\":\"outbound\",\"code\":200,\"authority\":\"reviews:9080\",\"source\":null,\"peer\":\"{reviews}\",\"duration\":30,\"flags\":\"-\"}}\n\
             {{\"direction\":\"inbound\",\"code\":200,\"authority\":\"productpage:9080\""
        );
        std::fs::write(&log, &lines).unwrap();
        let out = t.scrape();
        let inbound = "istio_requests_total{reporter=\"destination\",source_workload=\"unknown\"";
        assert!(
            out.lines().any(|l| l.starts_with(inbound)
                && l.contains("destination_service=\"productpage.default.svc.cluster.local\"")
                && l.ends_with(" 1")),
            "{out}"
        );
        let outbound =
            "istio_requests_total{reporter=\"source\",source_workload=\"productpage-v1\"";
        assert!(
            out.lines().any(|l| l.starts_with(outbound)
                && l.contains("destination_workload=\"reviews-v2\"")
                && l.contains("destination_version=\"v2\"")),
            "{out}"
        );
        assert!(
            out.contains("le=\"10\"} 1\n"),
            "7 ms falls in the 10 ms bucket: {out}"
        );
        std::fs::write(
            &log,
            format!("{lines},\"source\":null,\"peer\":null,\"duration\":1,\"flags\":\"-\"}}\n"),
        )
        .unwrap();
        let out = t.scrape();
        assert!(
            out.lines()
                .any(|l| l.starts_with(inbound) && l.ends_with(" 2")),
            "the partial line completed: {out}"
        );
    }
}
