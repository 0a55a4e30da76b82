//! Steps: one file per step kind, each with the kind's spec (what a scenario writes), its
//! [`Kind`] implementation (name, default timeout, validation, summary, captures, and the code
//! that runs it), calling into the concept modules (`kubeops`, `istio`, `forwarder`, `probes`).
//! A newcomer finds the code of a walkthrough step by its name here.
//!
//! Adding a kind is one new file (the spec and `impl Kind`) and one line in the
//! `step_kinds!` list below; the enum, the list of names, parsing, validation, dispatch and
//! the kind's place in the scenario schema (`istio-e2e schema`) all come from that list, the
//! module declaration (`pub mod <kind>;`) included.

use std::future::Future;
use std::time::{Duration, Instant};

use serde::de::MapAccess;
use serde::{Deserialize, Serialize};

use crate::Outputs;
use crate::context::Context;
use crate::error::StepError;

/// What every step kind is: one implementation per kind, in the kind's own file.
///
/// Everything but [`Kind::run`] is known before anything runs and is used by validation, the
/// matrix and reports; `run` does the step with variables already expanded.
pub trait Kind: std::fmt::Debug + Send + Sync {
    /// The per-attempt timeout when the step sets none (installs take minutes, checks seconds).
    fn default_timeout(&self) -> Duration;

    /// A one-line summary for display names, e.g. the files applied.
    fn summary(&self) -> String;

    /// Problems with the spec found before anything runs (messages without location).
    fn problems(&self) -> Vec<String> {
        Vec::new()
    }

    /// Files the step reads, for validation's "missing file" check.
    fn files(&self) -> Vec<String> {
        Vec::new()
    }

    /// The variable prefix the step captures into (`${<prefix>.<key>}`), if it captures.
    fn capture(&self) -> Option<&str> {
        None
    }

    /// The keys a capturing step records, each usable as `${<prefix>.<key>}`.
    fn capture_keys(&self) -> &'static [&'static str] {
        &[]
    }

    /// True when the step talks to a cluster (false for probes of URLs).
    fn needs_cluster(&self) -> bool {
        true
    }

    /// True when the step needs the Istio release (istioctl, release files).
    fn uses_istio(&self) -> bool {
        false
    }

    /// Runs the step until it succeeds, fails, or `deadline` passes.
    fn run<'a>(
        &'a self,
        ctx: &'a mut Context,
        deadline: Instant,
    ) -> impl Future<Output = Result<Outputs, StepError>> + Send + 'a
    where
        Self: Sized;
}

/// Declares every step kind from one list: `"name" => Variant(module::Spec)`, with the
/// variant's doc comment. Generates [`StepKind`], [`STEP_KINDS`], the dispatch to each
/// kind's [`Kind`] implementation, and each kind's entry in the scenario schema (its spec
/// type's schema, described by the variant's doc comment).
macro_rules! step_kinds {
    ($( $(#[doc = $doc:literal])* $name:literal => $variant:ident($module:ident :: $spec:ident), )+) => {
        // Each kind's file, declared by its line in the list.
        $( pub mod $module; )+

        /// Every step kind, one variant each, with the spec that lives beside the code that
        /// runs it (`steps::<kind>`).
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        pub enum StepKind {
            $( $(#[doc = $doc])* #[serde(rename = $name)] $variant($module::$spec), )+
        }

        /// The names of every step kind, as written in scenario files.
        pub const STEP_KINDS: &[&str] = &[$($name),+];

        impl StepKind {
            /// The kind's name as written in a scenario file.
            pub fn kind_name(&self) -> &'static str {
                match self { $( StepKind::$variant(_) => $name, )+ }
            }

            /// The kind's implementation of [`Kind`] (all but `run`).
            pub fn spec(&self) -> &dyn Kind {
                match self { $( StepKind::$variant(s) => s, )+ }
            }

            /// Runs the step (variables already expanded) until it succeeds, fails, or
            /// `deadline` passes.
            pub async fn run(&self, ctx: &mut Context, deadline: Instant) -> Result<Outputs, StepError> {
                match self { $( StepKind::$variant(s) => s.run(ctx, deadline).await, )+ }
            }

            /// The spec with the run's variables put in, field by field (see
            /// [`Resolve`](crate::scenario::Resolve)).
            pub fn resolve(
                &self,
                vars: &crate::scenario::vars::Vars,
            ) -> Result<StepKind, crate::scenario::vars::VarError> {
                match self {
                    $( StepKind::$variant(s) => Ok(StepKind::$variant(crate::scenario::Resolve::resolve(s, vars)?)), )+
                }
            }

            /// Each kind's name, its doc comment, and the schema of its spec, for the scenario
            /// schema (see [`crate::scenario::schema`]).
            pub(crate) fn schemas(
                generator: &mut schemars::SchemaGenerator,
            ) -> Vec<(&'static str, &'static str, schemars::Schema)> {
                vec![$( ($name, concat!($($doc),*), generator.subschema_for::<$module::$spec>()), )+]
            }

            /// Reads the value of key `name` as that kind's spec; `None` when no kind has
            /// that name.
            pub(crate) fn next_named<'de, A: MapAccess<'de>>(
                name: &str,
                map: &mut A,
            ) -> Result<Option<StepKind>, A::Error> {
                $( if name == $name { return Ok(Some(StepKind::$variant(map.next_value()?))); } )+
                Ok(None)
            }
        }
    };
}

step_kinds! {
    /// `istioctl install --set profile=<p> -y` and wait for the profile's components.
    "istio-install" => IstioInstall(istio_install::IstioInstallSpec),
    /// Any `istioctl` command with expectations on its output and exit code.
    "istioctl" => Istioctl(istioctl::IstioctlSpec),
    /// Namespace labels, e.g. `istio-injection=enabled`.
    "label" => Label(label::LabelSpec),
    /// Server-side apply of files, directories and multi-document YAML.
    "apply" => Apply(apply::ApplySpec),
    /// Wait for pods, deployments or any condition.
    "wait" => Wait(wait::WaitSpec),
    /// Run a command in a pod chosen by label selector.
    "exec" => Exec(exec::ExecSpec),
    /// Find a Service port's nodePort and the node address.
    "ingress" => Ingress(ingress::IngressSpec),
    /// A TCP forwarder from a host address to a target (the walkthrough's ncat).
    "forward" => Forward(forward::ForwardSpec),
    /// Forward a local port to a Service port (`kubectl port-forward`, `istioctl dashboard`).
    "port-forward" => PortForward(port_forward::PortForwardSpec),
    /// An HTTP request with expectations, retried until they hold or the timeout.
    "http" => Http(http::HttpSpec),
    /// N requests with a concurrency limit and a status histogram, or background traffic.
    "traffic" => Traffic(traffic::TrafficStepSpec),
    /// Stop background traffic and check what it recorded.
    "traffic-stop" => TrafficStop(traffic_stop::TrafficStopSpec),
    /// Change fields of an existing object (`kubectl patch`).
    "patch" => Patch(patch::PatchSpec),
    /// Upgrade Istio in place or by canary revision and move the data plane to it.
    "istio-upgrade" => IstioUpgrade(istio_upgrade::IstioUpgradeSpec),
    /// PromQL instant queries with expectations.
    "prometheus" => Prometheus(prometheus::PrometheusSpec),
    /// Grafana health and dashboards.
    "grafana" => Grafana(grafana::GrafanaSpec),
    /// Kiali namespaces and the versioned-app graph.
    "kiali" => Kiali(kiali::KialiSpec),
    /// Jaeger services and traces.
    "jaeger" => Jaeger(jaeger::JaegerSpec),
    /// Record a named, normalized view of the cluster and earlier steps for snapshots.
    "snapshot" => Snapshot(snapshot::SnapshotSpec),
    /// Objects of any kind hold an expected tree (a partial match), watched until they do.
    "assert" => Assert(assert::AssertSpec),
    /// No object of a kind (or none matching) exists, watched until so.
    "absent" => Absent(absent::AbsentSpec),
}

impl StepKind {
    /// A short summary for display names, e.g. the files applied.
    pub fn summary(&self) -> String {
        self.spec().summary()
    }

    /// The default per-attempt timeout of this kind.
    pub fn default_timeout(&self) -> Duration {
        self.spec().default_timeout()
    }

    /// The variable prefix this step captures into, e.g. `gateway` for `${gateway.port}`.
    pub fn capture(&self) -> Option<&str> {
        self.spec().capture()
    }
}

/// The [`Kind`] of a dashboard check (`grafana`, `kiali`, `jaeger`): a spec with `url` and
/// `expect`, polled through the probe's `check_until` until it holds or the step times out.
macro_rules! dashboard_kind {
    ($spec:ty, $check_until:path) => {
        impl $crate::steps::Kind for $spec {
            fn default_timeout(&self) -> std::time::Duration {
                $crate::steps::secs(180)
            }
            fn summary(&self) -> String {
                self.url.clone()
            }
            fn problems(&self) -> Vec<String> {
                self.expect.problems()
            }
            fn needs_cluster(&self) -> bool {
                false
            }
            async fn run(
                &self,
                _ctx: &mut $crate::context::Context,
                deadline: std::time::Instant,
            ) -> Result<$crate::Outputs, $crate::error::StepError> {
                let client = $crate::probes::client();
                let left = $crate::steps::time_left(deadline);
                $check_until(&client, &self.url, &self.expect, left).await
            }
        }
    };
}
pub(crate) use dashboard_kind;

/// A step's spec that is wrong as a whole rather than in one field (a `wait` with no target, a
/// `patch` with two changes), found when the file is read. It reads `<kind> step: <message>`
/// and is reported at the step's first line, as validation's problems are.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} step: {message}")]
pub struct SpecError {
    /// The step kind, e.g. `wait`.
    pub kind: &'static str,
    /// What is wrong and what to write instead.
    pub message: String,
}

impl SpecError {
    /// A problem with a `kind` step's spec.
    pub(crate) fn new(kind: &'static str, message: impl Into<String>) -> Self {
        SpecError {
            kind,
            message: message.into(),
        }
    }
}

/// Where a failed step's kube API error came from, as a short sentence.
pub(crate) fn kube_err(what: &str, e: kube::Error) -> StepError {
    crate::kubeops::describe_error(what, e)
}

/// Seconds left until `deadline` (zero when past).
pub(crate) fn time_left(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

/// The keys a step that opens a local endpoint records (`forward`, `port-forward`).
pub(crate) const ENDPOINT_KEYS: &[&str] = &["host", "port", "address", "url"];

/// `n` seconds, for the kinds' default timeouts.
pub(crate) const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The name each kind is parsed by is the name serde writes.
    #[test]
    fn serde_names_match_kind_names() {
        let text = "steps:\n  - snapshot: { name: a }\n  - label: { labels: { a: b } }\n  - traffic-stop: { name: t }\n  - port-forward: { service: s, port: http }\n";
        let file =
            crate::scenario::parse_str(std::path::Path::new("t.yaml"), format!("name: t\n{text}"))
                .unwrap();
        for st in &file.scenario.steps {
            let kind = &st.value.kind;
            let v = serde_json::to_value(kind).unwrap();
            let key = v.as_object().unwrap().keys().next().unwrap().clone();
            assert_eq!(key, kind.kind_name());
            let back: StepKind = serde_json::from_value(v).unwrap();
            assert_eq!(&back, kind);
        }
        assert_eq!(STEP_KINDS.len(), 21);
    }

    /// Resolving a step field by field gives what expanding every string of its serialized
    /// form and reading it back gave (the mechanism it replaces), for every step of every
    /// shipped scenario, with each variable they use set to a value of its own (parameters to their defaults).
    #[test]
    fn resolve_matches_the_json_round_trip_on_shipped_scenarios() {
        use crate::scenario::vars::{Vars, references};
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
        let mut checked = 0;
        for entry in std::fs::read_dir(root).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "yaml") {
                continue;
            }
            let file = crate::scenario::load(&path).unwrap();
            let mut vars = Vars::default();
            for r in references(&file.source) {
                vars.set(r.name.clone(), format!("7{}", r.name.len()));
            }
            for (k, v) in &file.scenario.params {
                vars.set(format!("param.{k}"), v.clone());
            }
            for st in &file.scenario.steps {
                let kind = &st.value.kind;
                let mut v = serde_json::to_value(kind).unwrap();
                vars.expand_value(&mut v).unwrap();
                let old: StepKind = serde_json::from_value(v).unwrap();
                assert_eq!(kind.resolve(&vars).unwrap(), old, "{}", path.display());
                checked += 1;
            }
        }
        assert!(checked > 20, "{checked} steps");
    }

    /// Numbers and booleans take variables: the file is accepted when read and validated
    /// (a literal is still checked then), and the values are typed once resolved.
    #[test]
    fn numbers_and_booleans_take_variables() {
        use crate::scenario::Templated;
        let text = "name: t\nparams: { sidecars: '2', n: '6', status: '200' }\nsteps:\n\
                    \x20 - wait: { pods: { namespace: default, containers: '${param.sidecars}', min: '${param.n}' } }\n\
                    \x20 - http: { url: 'http://a', expect: { status: '${param.status}' } }\n\
                    \x20 - assert: { api-version: v1, kind: Pod, selector: a=b, count: '${param.n}' }\n";
        let file = crate::scenario::parse_str(std::path::Path::new("t.yaml"), text.into()).unwrap();
        let diags = crate::scenario::validate(&file, &Default::default());
        assert!(diags.is_empty(), "{diags:?}");
        let mut vars = crate::scenario::vars::Vars::default();
        for (k, v) in &file.scenario.params {
            vars.set(format!("param.{k}"), v.clone());
        }
        let kinds: Vec<StepKind> = file
            .scenario
            .steps
            .iter()
            .map(|s| s.value.kind.resolve(&vars).unwrap())
            .collect();
        let StepKind::Wait(wait::WaitSpec::Pods(p)) = &kinds[0] else {
            panic!("{:?}", kinds[0])
        };
        assert_eq!(
            (
                p.containers.as_ref().map(Templated::value),
                p.min.as_ref().map(Templated::value)
            ),
            (Some(2), Some(6))
        );
        let StepKind::Http(h) = &kinds[1] else {
            panic!()
        };
        assert_eq!(h.expect.status.as_ref().map(Templated::value), Some(200));
        let StepKind::Assert(a) = &kinds[2] else {
            panic!()
        };
        assert_eq!(a.count.as_ref().map(Templated::value), Some(6));
        // a literal is still checked when the file is read
        let bad = text.replace("'${param.sidecars}'", "two");
        let e = crate::scenario::parse_str(std::path::Path::new("t.yaml"), bad).unwrap_err();
        assert!(e.message.contains("invalid digit"), "{e}");
        // a template that does not give a number fails when resolved, naming it
        vars.set("param.n", "six");
        let e = file.scenario.steps[0]
            .value
            .kind
            .resolve(&vars)
            .unwrap_err();
        assert!(e.to_string().contains("${param.n}"), "{e}");
    }
}
