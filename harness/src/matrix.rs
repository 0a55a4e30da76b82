//! The test matrix of the `e2e` target and `istio-e2e list`: one entry per scenario x
//! provider x Kubernetes version x Istio version, from environment variables:
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `ISTIO_E2E_SCENARIOS` | comma list of scenario names or files | every `scenarios/*.yaml` |
//! | `ISTIO_E2E_PROVIDER` | comma list of providers | each scenario's own |
//! | `ISTIO_E2E_K8S_VERSION` | comma list of Kubernetes versions | each scenario's `cluster.kubernetes` |
//! | `ISTIO_E2E_ISTIO_VERSION` | comma list of Istio versions | each scenario's `istio.version` |
//! | `ISTIO_E2E_ISTIO_DIR` | a local Istio release directory | none (download) |
//! | `ISTIO_E2E_REQUIRE` | `1`: a trial whose provider cannot run fails instead of being ignored | unset |
//! | `ISTIO_E2E_SET` | comma list of `name=value` scenario parameters (as `run --set`); each must be declared by every scenario run | none |
//!
//! A provider a scenario does not allow (`cluster.provider` / `cluster.providers`) makes no
//! entry for it, with a note saying so.

use std::path::{Path, PathBuf};

use crate::scenario::{Diagnostic, ScenarioFile};

/// One trial: a scenario on a provider with versions.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The scenario file.
    pub file: ScenarioFile,
    /// Provider.
    pub provider: String,
    /// Kubernetes version, if pinned.
    pub kubernetes: Option<String>,
    /// Istio version, if any.
    pub istio: Option<String>,
}

impl Entry {
    /// The trial name, e.g. `bookinfo-demo::kind::k8s-1.33::istio-1.30.3`.
    pub fn name(&self) -> String {
        let k8s = self
            .kubernetes
            .as_deref()
            .and_then(crate::istio::minor_of)
            .map(|(a, b)| format!("{a}.{b}"))
            .unwrap_or_else(|| "default".into());
        format!(
            "{}::{}::k8s-{}::istio-{}",
            self.file.scenario.name,
            self.provider,
            k8s,
            self.istio.as_deref().unwrap_or("none")
        )
    }
}

fn list_env(name: &str) -> Vec<String> {
    std::env::var(name)
        .unwrap_or_default()
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// The scenario files to consider: `ISTIO_E2E_SCENARIOS` or every `*.yaml` in `dir`.
pub fn scenario_paths(dir: &Path) -> Vec<PathBuf> {
    let wanted = list_env("ISTIO_E2E_SCENARIOS");
    let mut all: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
                .collect()
        })
        .unwrap_or_default();
    all.sort();
    if wanted.is_empty() {
        return all;
    }
    wanted
        .iter()
        .map(|w| {
            let p = PathBuf::from(w);
            if p.exists() {
                p
            } else {
                dir.join(format!("{w}.yaml"))
            }
        })
        .collect()
}

/// Builds the matrix from the environment; also returns notes (entries not made) and parse
/// errors of scenario files.
pub fn from_env(dir: &Path) -> (Vec<Entry>, Vec<String>, Vec<Diagnostic>) {
    let providers = list_env("ISTIO_E2E_PROVIDER");
    let k8s = list_env("ISTIO_E2E_K8S_VERSION");
    let istio = list_env("ISTIO_E2E_ISTIO_VERSION");
    let mut entries = Vec::new();
    let mut notes = Vec::new();
    let mut errors = Vec::new();
    for path in scenario_paths(dir) {
        let file = match crate::scenario::load(&path) {
            Ok(f) => f,
            Err(d) => {
                errors.push(d);
                continue;
            }
        };
        let s = &file.scenario;
        let ps: Vec<String> = if providers.is_empty() {
            vec![s.cluster.provider().to_string()]
        } else {
            providers.clone()
        };
        let ks: Vec<Option<String>> = if k8s.is_empty() {
            vec![s.cluster.kubernetes.clone()]
        } else {
            k8s.iter().cloned().map(Some).collect()
        };
        let is: Vec<Option<String>> = if istio.is_empty() {
            vec![s.istio.as_ref().and_then(|i| i.version.clone())]
        } else {
            istio.iter().cloned().map(Some).collect()
        };
        for p in &ps {
            if !s.cluster.allows(p) {
                notes.push(format!(
                    "{}: not run on provider {p} (the scenario allows {})",
                    s.name,
                    {
                        let mut a = vec![s.cluster.provider().to_string()];
                        a.extend(s.cluster.providers.iter().map(ToString::to_string));
                        a.join(", ")
                    }
                ));
                continue;
            }
            for k in &ks {
                for i in &is {
                    entries.push(Entry {
                        file: file.clone(),
                        provider: p.clone(),
                        kubernetes: k.clone(),
                        istio: i.clone(),
                    });
                }
            }
        }
    }
    (entries, notes, errors)
}

/// Why the matrix's environment refuses a run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatrixError {
    /// An entry of `ISTIO_E2E_SET` is not `NAME=VALUE`.
    #[error("ISTIO_E2E_SET: {0}")]
    BadParam(#[from] crate::scenario::ParamError),
    /// A trial cannot run here and `ISTIO_E2E_REQUIRE=1` says nothing may be skipped.
    #[error("{0} (ISTIO_E2E_REQUIRE=1)")]
    Required(String),
}

/// Scenario parameters from `ISTIO_E2E_SET` (`name=value,name=value`, as `run --set`).
pub fn params_from_env() -> Result<std::collections::BTreeMap<String, String>, MatrixError> {
    list_env("ISTIO_E2E_SET")
        .iter()
        .map(|kv| Ok(crate::scenario::parse_param(kv)?))
        .collect()
}

/// True when `ISTIO_E2E_REQUIRE` is `1` or `true`.
pub fn required() -> bool {
    matches!(
        std::env::var("ISTIO_E2E_REQUIRE").as_deref(),
        Ok("1") | Ok("true")
    )
}

/// Whether a trial may run here, given its environment check: `Ok(None)` run it;
/// `Ok(Some(reason))` report it as ignored with that reason; `Err(reason)` fail it, because
/// `ISTIO_E2E_REQUIRE=1` says nothing may be skipped.
pub fn runnable_here<E: std::fmt::Display>(
    what: &str,
    check: Result<(), E>,
) -> Result<Option<String>, MatrixError> {
    match check {
        Ok(()) => Ok(None),
        Err(why) => {
            let msg = format!("{what} cannot run here: {why}");
            if required() {
                Err(MatrixError::Required(msg))
            } else {
                eprintln!("ignored: {msg}");
                Ok(Some(msg))
            }
        }
    }
}
