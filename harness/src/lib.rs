//! # istio-e2e harness
//!
//! The library behind the `istio-e2e` CLI and the `e2e` test target: the Istio getting-started
//! walkthrough as code. The data path reads like the walkthrough:
//!
//! scenario file ([`scenario`]) -> typed steps ([`steps`]) -> [`runner`] -> [`results`] ->
//! [`snapshot`]s and [`report`]s.
//!
//! The steps call into one module per concept: [`cluster`] providers, the [`istio`]
//! lifecycle, [`kubeops`] (Kubernetes operations), the TCP [`forwarder`], and [`probes`] (HTTP, traffic,
//! Bookinfo, dashboards). [`expect`] holds the expectations every check shares, and
//! [`download`] fetches kind, minikube and Istio releases, verified against the lock file;
//! [`filelock`] keeps the files trials share (that lock file, the download cache) consistent
//! when trials run at once.
//! What a run creates is pushed onto its [`cleanup`] stack and undone newest first; step
//! retries and probe polling share [`retry`]'s backoff.

#![warn(missing_docs)]

pub mod cleanup;
pub mod cli;
pub mod cluster;
pub mod compare;
pub mod context;
pub mod download;
pub mod error;
pub mod expect;
pub mod filelock;
pub mod forwarder;
pub mod istio;
pub mod kubeops;
pub mod matrix;
pub mod probes;
pub mod process;
pub mod report;
pub mod results;
pub mod retry;
pub mod runner;
pub mod scenario;
pub mod snapshot;
pub mod steps;

/// The outputs a step records: named values that later steps read as `${capture.key}` and that
/// snapshots and reports show.
pub type Outputs = serde_json::Map<String, serde_json::Value>;

/// Installs the ring TLS provider for rustls once per process (kube, reqwest and
/// testcontainers all use rustls; with no provider installed, building a client panics).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
