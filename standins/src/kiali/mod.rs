//! **STAND-IN** for Kiali as Istio's `samples/addons/kiali.yaml` runs it (`/opt/kiali/kiali
//! -config /kiali-configuration/config.yaml`): a small HTTP server answering, under
//! `server.web_root` on `server.port`:
//!
//! - `GET {web_root}/healthz`: 200 (the manifest's readiness, liveness and startup probes);
//! - `GET {web_root}/api`: Kiali's status answer (`status`, `externalServices`);
//! - `GET {web_root}/api/namespaces`: the cluster's namespaces, listed from the Kubernetes API
//!   with the pod's service account (the addon's ClusterRole allows it), less
//!   `api.namespaces.exclude` patterns when the config has them;
//! - `GET {web_root}/api/namespaces/graph?namespaces=&graphType=&duration=&injectServiceNodes=`:
//!   the traffic graph, computed from Istio's `istio_requests_total` (and
//!   `istio_tcp_sent_bytes_total`) rates queried from the Prometheus of
//!   `external_services.prometheus.url` (default `http://prometheus.istio-system:9090`),
//!   following Kiali's `graph/telemetry/istio/istio.go` (see [`graph`]).
//!
//! and, on the metrics port (`server.observability.metrics` in 2.x, `server.metrics_port` in
//! 1.x, default 9090, the addon's `http-metrics`), `/metrics` with the stand-in's own counter.
//!
//! Where it differs from Kiali: no UI, auth (the addon uses `anonymous`), validations,
//! appenders (health, response times, security, dead/idle nodes), box (compound) nodes or
//! multi-cluster; the node ids are hashes of Kiali's id parts but not Kiali's exact strings.

pub mod config;
pub mod graph;
pub mod prometheus;
mod server;

pub use config::Config;
pub use server::{router, run};

use std::path::PathBuf;

/// What can stop the Kiali stand-in or one of its answers.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The command line is not `-config PATH`.
    #[error(
        "{0}\nusage: kiali [-config PATH] (the addon passes -config /kiali-configuration/config.yaml)"
    )]
    Usage(String),
    /// The configuration file cannot be read or parsed.
    #[error("Kiali configuration {path}: {reason}")]
    Config {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Prometheus could not be queried.
    #[error(
        "Prometheus query at {url} failed: {reason} (is external_services.prometheus.url right and the Prometheus addon up?)"
    )]
    Prometheus {
        /// The query URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The Kubernetes API could not be reached or refused.
    #[error("Kubernetes API: {0} (Kiali lists namespaces with its service account)")]
    Kube(String),
    /// A request parameter is not valid.
    #[error("{0}")]
    BadRequest(String),
    /// Listening or serving failed.
    #[error("cannot serve on {addr}: {source}")]
    Serve {
        /// The address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
}
