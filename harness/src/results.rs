//! Results: a typed record per step and per run, written as `results.json` and turned into
//! reports and snapshots.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Outputs;

/// How a step or run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Every expectation held.
    Passed,
    /// It failed (the error says why).
    Failed,
    /// Not run, because an earlier step failed or the run was interrupted.
    Skipped,
    /// Stopped by Ctrl-C / SIGINT.
    Interrupted,
}

/// One step's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepResult {
    /// Position in the scenario (1-based); 0 for cluster setup and teardown records.
    pub index: usize,
    /// The step kind (`apply`, ...), or `cluster` / `teardown`.
    pub kind: String,
    /// Display name.
    pub name: String,
    /// `file:line:col` of the step.
    pub location: String,
    /// How it ended.
    pub status: Status,
    /// Wall time in milliseconds, all attempts included.
    pub duration_ms: u64,
    /// Attempts made.
    pub attempts: u32,
    /// What it recorded.
    pub outputs: Outputs,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One scenario run's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    /// Scenario name.
    pub scenario: String,
    /// Scenario file.
    pub file: String,
    /// Run id (also the artifacts directory's name).
    pub run_id: String,
    /// Provider used.
    pub provider: String,
    /// Kubernetes version asked for, if any.
    pub kubernetes: Option<String>,
    /// Istio version, if known.
    pub istio: Option<String>,
    /// Overall status.
    pub status: Status,
    /// Start time, RFC 3339.
    pub started: String,
    /// Wall time in milliseconds.
    pub duration_ms: u64,
    /// Cluster setup, then the steps, in order.
    pub steps: Vec<StepResult>,
    /// What teardown did, one line per action.
    pub teardown: Vec<String>,
    /// Artifacts directory.
    pub artifacts: String,
    /// Diagnostics bundle directory, when a step failed.
    pub diagnostics: Option<String>,
    /// Named snapshots recorded by `snapshot` steps (normalized).
    pub snapshots: BTreeMap<String, Value>,
    /// The scenario parameters the run set (`--set name=value`, `ISTIO_E2E_SET`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, String>,
    /// The factor every timeout was multiplied by (`--timeout-scale`), when not 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_scale: Option<f64>,
}

impl RunResult {
    /// True when the run passed.
    pub fn passed(&self) -> bool {
        self.status == Status::Passed
    }

    /// The first failed step, if any.
    pub fn first_failure(&self) -> Option<&StepResult> {
        self.steps.iter().find(|s| s.status == Status::Failed)
    }

    /// The failure as one paragraph: where, which step, what, and where the diagnostics are.
    pub fn failure_message(&self) -> Option<String> {
        let f = self.first_failure()?;
        let mut m = format!(
            "{}: step {} `{}` ({}) failed after {} attempt(s): {}",
            f.location,
            f.index,
            f.name,
            f.kind,
            f.attempts,
            f.error.clone().unwrap_or_default()
        );
        if let Some(d) = &self.diagnostics
            && !m.contains("diagnostics in")
        {
            m.push_str(&format!(" [diagnostics: {d}]"));
        }
        Some(m)
    }
}
