//! The scenario language: the model of a scenario file, how it is parsed, and how it is
//! validated before anything touches a cluster.
//!
//! A scenario is the walkthrough written down: which cluster, which Istio, and the steps in
//! order. Each step has one kind (`apply`, `wait`, `http`, ...) and the common fields `name`,
//! `timeout`, `retry` and `when` (see [`condition`]):
//!
//! ```yaml
//! name: bookinfo-demo
//! cluster: { provider: kind }
//! istio: { version: 1.30.3, profile: demo }
//! steps:
//!   - name: deploy Bookinfo
//!     timeout: 2m
//!     apply: { files: ["${istio.dir}/samples/bookinfo/platform/kube/bookinfo.yaml"] }
//! ```
//!
//! Parsing ([`parse`]) keeps the line and column of every step, so a failure at run time can
//! point at `scenarios/x.yaml:12:5`; validation ([`validate()`]) reports every problem it finds
//! as `file:line:column: message`.

pub mod condition;
pub mod names;
pub mod parse;
pub mod resolve;
pub mod schema;
pub mod template;
pub mod validate;
pub mod vars;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::cluster::ProviderKind;
pub use crate::steps::{STEP_KINDS, StepKind};

pub use parse::{Located, load, parse_str};
pub use resolve::Resolve;
pub use template::Templated;
pub use validate::{Diagnostic, validate};

/// A whole scenario file, parsed.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Scenario {
    /// Short name; trial names and snapshot names start with it.
    pub name: String,
    /// What the scenario checks, for people.
    #[serde(default)]
    pub description: Option<String>,
    /// Where it runs: the cluster provider and its options.
    #[serde(default)]
    pub cluster: ClusterSpec,
    /// Which Istio: a version to download, a local release directory, the profile.
    #[serde(default)]
    pub istio: Option<IstioSpec>,
    /// The version pairs the test matrix runs this scenario with, e.g. the walkthrough's
    /// Kubernetes 1.20 with Istio 1.12 and today's 1.34 with 1.30 (see [`crate::matrix`]);
    /// `cluster.kubernetes` with `istio.version` when empty. A run outside the matrix uses
    /// those two.
    #[serde(default)]
    pub matrix: Vec<MatrixRow>,
    /// The Kubernetes Gateway API release whose CRDs `${gateway-api.crds}` names
    /// (`gateway-api: { version: v1.5.1 }`; verified against its pinned SHA-256, see
    /// [`crate::download::gateway_api`]).
    #[serde(default, rename = "gateway-api")]
    pub gateway_api: Option<GatewayApiSpec>,
    /// Default namespace for steps that name none (`default` unless set).
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// Parameters with their defaults, `${param.<name>}` in steps; a run overrides them with
    /// `--set name=value` (e.g. `rollout: safe` and `--set rollout=unsafe`).
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// Deadline for the whole scenario, setup and steps (not teardown).
    #[schemars(with = "Option<parse::HumanDuration>")]
    #[serde(default, with = "parse::opt_duration")]
    pub timeout: Option<Duration>,
    /// The steps, in order, each with its place in the file.
    #[schemars(with = "Vec<Step>")]
    pub steps: Vec<Located<Step>>,
}

fn default_namespace() -> String {
    "default".to_string()
}

/// The cluster a scenario runs on. Every field can be overridden from the command line or the
/// environment (`ISTIO_E2E_PROVIDER`, `ISTIO_E2E_K8S_VERSION`).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ClusterSpec {
    /// The provider used unless overridden: `kind` (the default), `minikube`, `k3s`,
    /// `existing`, `lab` or `none`.
    #[serde(default)]
    pub provider: Option<ProviderKind>,
    /// Other providers this scenario may run on when the matrix asks for them; the scenario's
    /// own provider is always allowed. A matrix entry for a provider not listed is not made.
    #[serde(default)]
    pub providers: Vec<ProviderKind>,
    /// Kubernetes version, e.g. `v1.33.1` (kind node image tag, minikube `--kubernetes-version`).
    #[serde(default)]
    pub kubernetes: Option<String>,
    /// Provider configuration file, e.g. the kind config (`kind-config.yaml` by default).
    #[serde(default)]
    pub config: Option<String>,
    /// For `existing`: the kubeconfig file (default `$KUBECONFIG`), never modified.
    #[serde(default)]
    pub kubeconfig: Option<String>,
    /// For `existing`: the context to use.
    #[serde(default)]
    pub context: Option<String>,
    /// Node image override (kind node image, lab image).
    #[serde(default)]
    pub image: Option<String>,
}

impl ClusterSpec {
    /// The provider this scenario names, `kind` when it names none.
    pub fn provider(&self) -> ProviderKind {
        self.provider.unwrap_or_default()
    }

    /// True when the scenario can run on the provider named `provider` (false for a name that
    /// is no provider).
    pub fn allows(&self, provider: &str) -> bool {
        provider
            .parse::<ProviderKind>()
            .is_ok_and(|k| self.provider() == k || self.providers.contains(&k))
    }
}

/// Which Istio a scenario uses.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct IstioSpec {
    /// Release version, e.g. `1.30.3` (overridable with `ISTIO_E2E_ISTIO_VERSION`).
    #[serde(default)]
    pub version: Option<String>,
    /// Installation profile, `demo` unless set.
    #[serde(default)]
    pub profile: Option<String>,
    /// An already-extracted release directory (`samples/`, `manifests/`, optionally
    /// `bin/istioctl`) used instead of a download; `--istio-dir` overrides it.
    #[serde(default)]
    pub dir: Option<String>,
}

/// The Gateway API release a scenario uses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GatewayApiSpec {
    /// Release tag, e.g. `v1.5.1`.
    pub version: String,
}

/// One entry of a scenario's `matrix:`: a Kubernetes version with the Istio version it is
/// run with (either may be left to the scenario's own), on every provider or only on those
/// `providers` names (`{ kubernetes: v1.34, istio: 1.30.3, providers: [lab] }`: the lab has
/// nodes of its own versions). A provider no row names runs the scenario's own versions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MatrixRow {
    /// Kubernetes version, e.g. `v1.34`.
    #[serde(default)]
    pub kubernetes: Option<String>,
    /// Istio version, e.g. `1.30.3`.
    #[serde(default)]
    pub istio: Option<String>,
    /// The providers this row is for (empty: every provider the scenario allows).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub providers: Vec<ProviderKind>,
}

impl MatrixRow {
    /// True when the row is for `provider`.
    pub fn applies_to(&self, provider: &str) -> bool {
        self.providers.is_empty()
            || provider
                .parse::<ProviderKind>()
                .is_ok_and(|k| self.providers.contains(&k))
    }
}

/// How often a step is tried again after a failure (`retry: 3` or `retry: {attempts, backoff}`).
pub type Retry = crate::retry::RetryPolicy;

/// One step: common fields and exactly one kind.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Display name; the kind and a summary when not given.
    pub name: Option<String>,
    /// Deadline for one attempt of the step; the kind's default when not given.
    pub timeout: Option<Duration>,
    /// Retries after failures.
    pub retry: Option<Retry>,
    /// Run the step only when this holds (e.g. `${istio.version} >= 1.22`); skipped otherwise.
    pub when: Option<condition::Condition>,
    /// What the step does.
    pub kind: StepKind,
}

impl Step {
    /// The name shown in reports: the step's `name`, else `<kind> <summary>`.
    pub fn display_name(&self) -> String {
        match &self.name {
            Some(n) => n.clone(),
            None => {
                let summary = self.kind.summary();
                if summary.is_empty() {
                    self.kind.kind_name().to_string()
                } else {
                    format!("{} {}", self.kind.kind_name(), summary)
                }
            }
        }
    }

    /// The effective per-attempt timeout.
    pub fn effective_timeout(&self) -> Duration {
        self.timeout.unwrap_or_else(|| self.kind.default_timeout())
    }
}

/// A scenario file read from disk, with its source kept for error messages.
#[derive(Debug, Clone)]
pub struct ScenarioFile {
    /// The path as given (relative paths stay relative, so messages match what the user typed).
    pub path: PathBuf,
    /// The file's text.
    pub source: String,
    /// The parsed scenario.
    pub scenario: Scenario,
}

impl ScenarioFile {
    /// `path:line:col` for a location in this file.
    pub fn at(&self, line: u64, column: u64) -> String {
        format!("{}:{}:{}", self.path.display(), line, column)
    }

    /// `path:line:col` of step `index`.
    pub fn step_at(&self, index: usize) -> String {
        let loc = &self.scenario.steps[index].referenced;
        self.at(loc.line(), loc.column())
    }
}

/// A parameter override that is not `NAME=VALUE`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not NAME=VALUE, e.g. rollout=unsafe")]
pub struct ParamError(pub String);

/// Reads a parameter override `NAME=VALUE` (`--set`, `ISTIO_E2E_SET`).
pub fn parse_param(text: &str) -> Result<(String, String), ParamError> {
    match text.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(ParamError(text.to_string())),
    }
}

/// Labels of a label step, or any string map.
pub type StringMap = BTreeMap<String, String>;
