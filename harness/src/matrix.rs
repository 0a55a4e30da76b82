//! The test matrix of the `e2e` target and `istio-e2e list`: one entry per scenario x
//! provider x Kubernetes version x Istio version, from environment variables:
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `ISTIO_E2E_SCENARIOS` | comma list of scenario names or files | every `scenarios/*.yaml` |
//! | `ISTIO_E2E_PROVIDER` | comma list of providers | each scenario's own |
//! | `ISTIO_E2E_K8S_VERSION` | comma list of Kubernetes versions | each scenario's `matrix:` rows, else its `cluster.kubernetes` |
//! | `ISTIO_E2E_ISTIO_VERSION` | comma list of Istio versions | each scenario's `matrix:` rows, else its `istio.version` |
//! | `ISTIO_E2E_ISTIO_DIR` | a local Istio release directory | none (download) |
//! | `ISTIO_E2E_REQUIRE` | `1`: a trial whose provider cannot run fails instead of being ignored | unset |
//! | `ISTIO_E2E_TIMEOUT_SCALE` | a factor for every step and scenario timeout (slow machines) | 1 |
//! | `ISTIO_E2E_SET` | comma list of `name=value` scenario parameters (as `run --set`); each must be declared by every scenario run | none |
//!
//! A provider a scenario does not allow (`cluster.provider` / `cluster.providers`) makes no
//! entry for it, with a note saying so.

use std::path::{Path, PathBuf};

use crate::scenario::{Diagnostic, MatrixRow, Scenario, ScenarioFile};

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
            for (k, i) in version_pairs(s, p, &k8s, &istio) {
                entries.push(Entry {
                    file: file.clone(),
                    provider: p.clone(),
                    kubernetes: k,
                    istio: i,
                });
            }
        }
    }
    (entries, notes, errors)
}

/// The (Kubernetes, Istio) versions a scenario runs with on `provider`: its `matrix:` rows
/// for that provider (else its own `cluster.kubernetes` with `istio.version`) when the
/// environment names no versions. When it names Kubernetes versions only, each is paired
/// with the Istio of the row for the same Kubernetes minor (else the scenario's own), and the
/// other way round for Istio versions only; when it names both, every combination runs.
pub fn version_pairs(
    s: &Scenario,
    provider: &str,
    k8s: &[String],
    istio: &[String],
) -> Vec<(Option<String>, Option<String>)> {
    let own_k8s = s.cluster.kubernetes.clone();
    let own_istio = s.istio.as_ref().and_then(|i| i.version.clone());
    let row = |r: &MatrixRow| {
        let k = r.kubernetes.clone().or_else(|| own_k8s.clone());
        (k, r.istio.clone().or_else(|| own_istio.clone()))
    };
    let mut rows: Vec<(Option<String>, Option<String>)> = s
        .matrix
        .iter()
        .filter(|r| r.applies_to(provider))
        .map(row)
        .collect();
    if rows.is_empty() {
        rows.push((own_k8s.clone(), own_istio.clone()));
    }
    let same_minor = |a: &Option<String>, b: &str| {
        a.as_deref().and_then(crate::istio::minor_of) == crate::istio::minor_of(b)
    };
    match (k8s.is_empty(), istio.is_empty()) {
        (true, true) => rows,
        (false, true) => k8s
            .iter()
            .map(|k| {
                let row = rows.iter().find(|(rk, _)| same_minor(rk, k));
                let i = row.map_or_else(|| own_istio.clone(), |(_, i)| i.clone());
                (Some(k.clone()), i)
            })
            .collect(),
        (true, false) => istio
            .iter()
            .map(|i| {
                let row = rows.iter().find(|(_, ri)| same_minor(ri, i));
                let k = row.map_or_else(|| own_k8s.clone(), |(k, _)| k.clone());
                (k, Some(i.clone()))
            })
            .collect(),
        (false, false) => k8s
            .iter()
            .flat_map(|k| istio.iter().map(|i| (Some(k.clone()), Some(i.clone()))))
            .collect(),
    }
}

/// The versions a single run on `provider` takes when it names none: the first `matrix:` row
/// written for that provider alone (`providers: [lab]`: the scenario's own versions are not
/// that provider's), else none (the scenario's own).
pub fn own_versions_of(s: &Scenario, provider: &str) -> Option<(Option<String>, Option<String>)> {
    let r = s
        .matrix
        .iter()
        .find(|r| !r.providers.is_empty() && r.applies_to(provider))?;
    Some((r.kubernetes.clone(), r.istio.clone()))
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

/// Why `entry` cannot run on this machine (its provider's cheap checks: Docker answers, the
/// binary is on PATH, the lab image exists), when it cannot and nothing is `required`
/// (`ISTIO_E2E_REQUIRE=1`, [`required`], makes such a trial run, and fail, instead). The e2e target marks
/// such trials ignored when it lists them, so a runner that starts one process per trial
/// (nextest) shows them as skipped, not passed.
pub fn cannot_run_here(
    entry: &Entry,
    opts: &crate::runner::RunOptions,
    required: bool,
) -> Option<String> {
    if required {
        return None;
    }
    match crate::runner::prepare(&entry.file, opts) {
        Err(crate::runner::StartError::CannotRun { provider, why }) => {
            Some(format!("provider {provider} cannot run here: {why}"))
        }
        _ => None,
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(matrix: &str) -> Scenario {
        let text = format!(
            "name: m\ncluster: {{ provider: lab, kubernetes: v1.20.2 }}\n\
             istio: {{ version: 1.12.1 }}\n{matrix}steps: []\n"
        );
        crate::scenario::parse_str(Path::new("m.yaml"), text)
            .unwrap()
            .scenario
    }

    fn pairs(s: &Scenario, k8s: &[&str], istio: &[&str]) -> Vec<(String, String)> {
        pairs_on(s, "lab", k8s, istio)
    }

    fn pairs_on(s: &Scenario, on: &str, k8s: &[&str], istio: &[&str]) -> Vec<(String, String)> {
        let owned = |l: &[&str]| l.iter().map(ToString::to_string).collect::<Vec<_>>();
        version_pairs(s, on, &owned(k8s), &owned(istio))
            .into_iter()
            .map(|(k, i)| (k.unwrap_or_default(), i.unwrap_or_default()))
            .collect()
    }

    fn p(k: &str, i: &str) -> (String, String) {
        (k.into(), i.into())
    }

    #[test]
    fn a_scenario_without_rows_runs_its_own_versions_or_the_environments() {
        let s = scenario("");
        assert_eq!(pairs(&s, &[], &[]), [p("v1.20.2", "1.12.1")]);
        assert_eq!(pairs(&s, &["v1.34"], &[]), [p("v1.34", "1.12.1")]);
        assert_eq!(
            pairs(&s, &["v1.33", "v1.34"], &["1.29.0", "1.30.3"]).len(),
            4
        );
    }

    #[test]
    fn matrix_rows_pair_each_kubernetes_with_its_istio() {
        let s = scenario(
            "matrix:\n  - { kubernetes: v1.20.2, istio: 1.12.1 }\n  - { kubernetes: v1.34, istio: 1.30.3 }\n",
        );
        assert_eq!(
            pairs(&s, &[], &[]),
            [p("v1.20.2", "1.12.1"), p("v1.34", "1.30.3")]
        );
        // a Kubernetes version from the environment takes its row's Istio (same minor)...
        assert_eq!(pairs(&s, &["v1.34.4"], &[]), [p("v1.34.4", "1.30.3")]);
        // ...and one without a row the scenario's own
        assert_eq!(pairs(&s, &["v1.33"], &[]), [p("v1.33", "1.12.1")]);
        // the same the other way round
        assert_eq!(pairs(&s, &[], &["1.30.1"]), [p("v1.34", "1.30.1")]);
        // both named: every combination
        assert_eq!(pairs(&s, &["v1.34"], &["1.12.1"]), [p("v1.34", "1.12.1")]);
    }

    /// bookinfo-demo's shape: kind runs the scenario's own versions, the lab the versions of
    /// its own nodes, which only rows written for it name.
    #[test]
    fn rows_for_some_providers_leave_the_others_their_own_versions() {
        let text = "name: m\ncluster: { provider: kind, providers: [lab], kubernetes: v1.33.1 }\n\
                    istio: { version: 1.30.3 }\nmatrix:\n\
                    \x20 - { kubernetes: v1.34, istio: 1.30.3, providers: [lab] }\n\
                    \x20 - { kubernetes: v1.20, istio: 1.12.1, providers: [lab] }\nsteps: []\n";
        let s = crate::scenario::parse_str(Path::new("m.yaml"), text.to_string())
            .unwrap()
            .scenario;
        assert_eq!(pairs_on(&s, "kind", &[], &[]), [p("v1.33.1", "1.30.3")]);
        assert_eq!(
            pairs_on(&s, "lab", &[], &[]),
            [p("v1.34", "1.30.3"), p("v1.20", "1.12.1")]
        );
        assert_eq!(pairs_on(&s, "lab", &["v1.20"], &[]), [p("v1.20", "1.12.1")]);
        let some = |k: &str, i: &str| Some((Some(k.to_string()), Some(i.to_string())));
        assert_eq!(own_versions_of(&s, "lab"), some("v1.34", "1.30.3"));
        assert_eq!(own_versions_of(&s, "kind"), None);
    }

    #[test]
    fn an_unknown_field_in_a_row_is_refused() {
        let text = "name: m\nmatrix:\n  - { kubernetes: v1.34, istoi: 1.30.3 }\nsteps: []\n";
        let e = crate::scenario::parse_str(Path::new("m.yaml"), text.to_string()).unwrap_err();
        assert!(e.to_string().contains("istoi"), "{e}");
    }

    #[test]
    fn a_trial_that_cannot_run_here_is_known_before_it_runs() {
        let text = "name: e\ncluster: { provider: existing, kubeconfig: /nonexistent/kubeconfig }\n\
                    steps:\n  - label: { namespace: default, labels: { a: b } }\n";
        let file = crate::scenario::parse_str(Path::new("e.yaml"), text.to_string()).unwrap();
        let entry = Entry {
            file,
            provider: "existing".into(),
            kubernetes: None,
            istio: None,
        };
        let opts = crate::runner::RunOptions {
            provider: Some("existing".into()),
            ..Default::default()
        };
        assert_eq!(
            cannot_run_here(&entry, &opts, true),
            None,
            "required: it runs (and fails)"
        );
        let why = cannot_run_here(&entry, &opts, false)
            .expect("existing without a kubeconfig cannot run");
        assert!(
            why.starts_with("provider existing cannot run here: "),
            "{why}"
        );
        assert!(why.contains("/nonexistent/kubeconfig"), "{why}");
    }
}
