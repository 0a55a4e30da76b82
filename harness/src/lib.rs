//! istio-e2e harness library.

pub mod error;
pub mod expect;
pub mod forwarder;
pub mod probes;

/// The outputs a step records: named values that later steps read as `${capture.key}` and that
/// snapshots and reports show.
pub type Outputs = serde_json::Map<String, serde_json::Value>;
