//! The runner: cluster setup, the steps in order with per-step and whole-scenario timeouts and
//! retries with backoff, diagnostics on failure, and a teardown that always runs (after a
//! passing run, a failing step, a panicking step, or Ctrl-C).
//!
//! A [`Run`] goes through [`Run::prepare_istio`], [`Run::create_cluster`], [`Run::run_step`]
//! for each step, [`Run::teardown`] and [`Run::report`]; every piece that may hang, panic or
//! be interrupted goes through [`guarded`], and everything a step or provider creates is
//! undone from the run's cleanup stack ([`crate::cleanup`]).

mod guard;

pub use guard::{Interrupt, Outcome, guarded};

mod scale;
pub use scale::{BadTimeoutScale, TimeoutScale};

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use futures::future::BoxFuture;

use crate::Outputs;
use crate::cluster::{ClusterError, ClusterInfo, ClusterRequest, Provider};
use crate::context::Context;
use crate::error::StepError;
use crate::report::Progress;
use crate::results::{RunResult, Status, StepResult};
use crate::scenario::validate::{ValidateOptions, needs_cluster};
use crate::scenario::{Diagnostic, ScenarioFile, StepKind};

/// Options of one run (the CLI's flags and the e2e matrix entry).
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Provider override (`--provider`, `ISTIO_E2E_PROVIDER`).
    pub provider: Option<String>,
    /// Istio version override (`--istio-version`, `ISTIO_E2E_ISTIO_VERSION`).
    pub istio_version: Option<String>,
    /// A local Istio release directory (`--istio-dir`, `ISTIO_E2E_ISTIO_DIR`).
    pub istio_dir: Option<PathBuf>,
    /// Kubernetes version override (`ISTIO_E2E_K8S_VERSION`).
    pub kubernetes: Option<String>,
    /// Keep the cluster after the run.
    pub keep_cluster: bool,
    /// Keep the cluster when the run fails.
    pub keep_on_failure: bool,
    /// Parent of the run's artifacts directory (`target/istio-e2e` by default).
    pub artifacts_root: Option<PathBuf>,
    /// Run id; made from the time and process id when not given.
    pub run_id: Option<String>,
    /// No progress lines.
    pub quiet: bool,
    /// Put `[label] ` before every progress line, with no spinner: the e2e target sets the
    /// trial's name when trials run at once in one process (`--test-threads 2`), so
    /// interleaved lines say which trial they belong to.
    pub label: Option<String>,
    /// Don't stop on SIGINT (tests drive interruption through `interrupt`).
    pub no_signal_handler: bool,
    /// On a cluster that outlives the run, install Istio even over one already there
    /// (`--reinstall-istio`); by default the run uses it.
    pub reinstall_istio: bool,
    /// How long teardown waits for each deletion on a cluster that outlives the run
    /// ([`crate::cleanup::DELETE_TIMEOUT`] when not given).
    pub delete_timeout: Option<Duration>,
    /// Scenario parameter overrides (`--set name=value`).
    pub params: std::collections::BTreeMap<String, String>,
    /// Factor for every step and scenario timeout (`--timeout-scale`,
    /// `ISTIO_E2E_TIMEOUT_SCALE`).
    pub timeout_scale: TimeoutScale,
}

/// Runs one step kind with a context; the real one is [`StepRunner`], tests use fakes.
pub trait Executor {
    /// Runs `kind` until it succeeds, fails or `deadline` passes.
    fn execute<'a>(
        &'a self,
        kind: &'a StepKind,
        ctx: &'a mut Context,
        deadline: Instant,
    ) -> BoxFuture<'a, Result<Outputs, StepError>>;
}

/// The real executor: each kind's [`crate::steps::Kind::run`].
pub struct StepRunner;

impl Executor for StepRunner {
    fn execute<'a>(
        &'a self,
        kind: &'a StepKind,
        ctx: &'a mut Context,
        deadline: Instant,
    ) -> BoxFuture<'a, Result<Outputs, StepError>> {
        Box::pin(kind.run(ctx, deadline))
    }
}

/// A fresh run id, unique on this machine: UTC time, process id and a per-process sequence
/// number, e.g. `20261125-234054-1234-0` (two trials started in the same second by one
/// process get different ids, so different cluster names and artifacts directories).
pub fn new_run_id() -> String {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let t = humantime::format_rfc3339_seconds(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
        .to_string();
    let compact: String = t.chars().filter(|c| c.is_ascii_digit()).collect();
    format!(
        "{}-{}-{}-{seq}",
        &compact[..8],
        &compact[8..14],
        std::process::id()
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn run_ids_made_in_the_same_second_differ() {
        let ids: std::collections::BTreeSet<String> =
            (0..1000).map(|_| super::new_run_id()).collect();
        assert_eq!(ids.len(), 1000);
    }

    /// The lab checks the node of the trial's own Kubernetes version (the run's, else the
    /// scenario's), whatever ISTIO_E2E_K8S_VERSION holds: in a matrix it is a comma list
    /// (`v1.20,v1.34`), which used to fail every lab trial's check.
    #[test]
    fn the_lab_checks_the_node_of_the_runs_own_version() {
        let text = "name: t\ncluster: { provider: lab, kubernetes: v1.77 }\nsteps:\n  - label: { labels: { a: b } }\n";
        let file = crate::scenario::parse_str(std::path::Path::new("t.yaml"), text.into()).unwrap();
        let why = |kubernetes: Option<&str>| {
            let opts = super::RunOptions {
                kubernetes: kubernetes.map(String::from),
                ..Default::default()
            };
            match super::prepare(&file, &opts) {
                Err(super::StartError::CannotRun { provider, why }) => {
                    assert_eq!(provider, "lab");
                    why
                }
                Err(e) => panic!("expected CannotRun, got {e}"),
                Ok(_) => panic!("the lab has no such node, yet it could run"),
            }
        };
        assert!(why(Some("v1.99")).contains("no Kubernetes v1.99 node"));
        assert!(why(None).contains("no Kubernetes v1.77 node"));
    }

    /// What validation refuses in a literal is refused in a template's value once resolved.
    #[test]
    fn a_resolved_value_validation_would_refuse_fails_the_step() {
        let text = "name: t\nparams: { c: '4' }\nsteps:\n  - traffic: { url: 'http://a', requests: 1, concurrency: '${param.c}' }\n";
        let file = crate::scenario::parse_str(std::path::Path::new("t.yaml"), text.into()).unwrap();
        assert!(crate::scenario::validate(&file, &Default::default()).is_empty());
        let kind = &file.scenario.steps[0].value.kind;
        let mut vars = crate::scenario::vars::Vars::default();
        vars.set("param.c", "4");
        assert!(super::resolved(kind, &vars).is_ok());
        vars.set("param.c", "0");
        let e = super::resolved(kind, &vars).unwrap_err();
        assert_eq!(
            e,
            "once its variables are put in: concurrency must be 1 to 256, not 0"
        );
    }
}

/// The step with the run's variables put in and, when they changed it, checked as validation
/// checked the spec as written: a `${...}` that resolves to a value validation would have
/// refused (a `concurrency` of 0, a listen address that is none) fails the step with
/// validation's message.
fn resolved(kind: &StepKind, vars: &crate::scenario::vars::Vars) -> Result<StepKind, String> {
    let k = kind.resolve(vars).map_err(|e| e.to_string())?;
    let problems = if k == *kind {
        Vec::new()
    } else {
        k.spec().problems()
    };
    if problems.is_empty() {
        Ok(k)
    } else {
        Err(format!(
            "once its variables are put in: {}",
            problems.join("; ")
        ))
    }
}

/// The version the cluster's apiserver reports (`${cluster.kubernetes}`, e.g. `v1.34.4`), or
/// `None` when it cannot be asked (a fake cluster in tests).
async fn server_version(info: &ClusterInfo) -> Option<String> {
    let client = crate::kubeops::client_for(&info.kubeconfig, info.context.as_deref())
        .await
        .ok()?;
    let asked = tokio::time::timeout(Duration::from_secs(10), client.apiserver_version());
    Some(asked.await.ok()?.ok()?.git_version)
}

/// How long past its deadline a step may take to report: a step that honours its deadline
/// (a watch that gives up at it) says then what it saw (an assert's diff, a wait's pods), and
/// cutting it off at the same instant would replace that with a bare "timed out". A tenth of
/// the time it was given (its timeout, or less when the scenario's ends first), between 100 ms
/// and 10 s; a step that ignores its deadline is cut off after it.
fn report_grace(timeout: Duration) -> Duration {
    (timeout / 10).clamp(Duration::from_millis(100), Duration::from_secs(10))
}

/// " (timeouts scaled x2)" when they are, for messages about a timeout.
fn scaled_note(scale: TimeoutScale) -> String {
    if scale.is_one() {
        String::new()
    } else {
        format!(" (timeouts scaled {scale})")
    }
}

/// Why a scenario cannot start; nothing has touched a cluster yet.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The scenario file has problems (each `file:line:col: message`).
    #[error("{}", .0.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Diagnostic>),
    /// The provider name is not one the harness knows.
    #[error("{0}")]
    UnknownProvider(String),
    /// The provider cannot run on this machine (no Docker, a binary or image missing).
    #[error("provider {provider} cannot run here: {why}")]
    CannotRun {
        /// The provider's name.
        provider: String,
        /// What is missing.
        why: String,
    },
}

/// The one sequence before every run: validate the scenario, pick its provider, and check
/// that the provider can run here.
pub fn prepare(file: &ScenarioFile, opts: &RunOptions) -> Result<Box<dyn Provider>, StartError> {
    let vopts = ValidateOptions {
        istio_dir: opts.istio_dir.clone(),
        provider: opts.provider.clone(),
        params: opts.params.clone(),
    };
    let diags = crate::scenario::validate(file, &vopts);
    if !diags.is_empty() {
        return Err(StartError::Invalid(diags));
    }
    let name = effective_provider(file, opts);
    let kubeconfig = file.scenario.cluster.kubeconfig.as_ref();
    let kind: crate::cluster::ProviderKind = name
        .parse()
        .map_err(|e: ClusterError| StartError::UnknownProvider(e.to_string()))?;
    let provider: Box<dyn Provider> = match (kind, kubeconfig) {
        // The scenario's own kubeconfig is the one `existing` checks, not the environment's.
        (crate::cluster::ProviderKind::Existing, Some(k)) => Box::new(
            crate::cluster::existing::Existing::with_kubeconfig(Some(PathBuf::from(k))),
        ),
        // The lab checks the image of the node this run will start (the run's Kubernetes
        // version, else the scenario's), not whatever ISTIO_E2E_K8S_VERSION says: in a matrix
        // that is a comma list, and each trial has its own version.
        (crate::cluster::ProviderKind::Lab, _) => Box::new(crate::cluster::lab::Lab::for_version(
            opts.kubernetes
                .clone()
                .or(file.scenario.cluster.kubernetes.clone()),
        )),
        (k, _) => k.provider(),
    };
    provider.check().map_err(|why| StartError::CannotRun {
        provider: name,
        why: why.to_string(),
    })?;
    Ok(provider)
}

/// On the lab, istioctl is the stand-in (`fixtures/standins/build-images`), told the run's
/// release, whatever the release directory holds: a real istioctl could not install anything
/// on an offline node. Said in the run's log.
fn use_lab_standin(ctx: &mut Context) {
    let (Some(dir), Some(version)) = (ctx.istio.dir.clone(), ctx.istio.version.clone()) else {
        return;
    };
    let release = crate::cluster::standins::Release { dir, version };
    let built = crate::cluster::standins::find();
    match crate::cluster::standins::istioctl_for(&release, built.as_ref()) {
        Some(i) => {
            tracing::info!("lab: istioctl is the stand-in {}", i.path.display());
            ctx.istio.istioctl = Some(i);
        }
        None => tracing::warn!(
            "lab: the stand-in control plane is not built (`{}`); istioctl steps will not find one",
            crate::cluster::standins::BUILD_COMMAND
        ),
    }
}

/// [`prepare`]s, then runs a scenario with its provider and the real steps.
pub async fn run_file(file: &ScenarioFile, opts: &RunOptions) -> Result<RunResult, StartError> {
    let provider = prepare(file, opts)?;
    Ok(run_with(file, opts, provider, &StepRunner).await)
}

/// The provider a run uses: the override, else the scenario's; `none` when no step needs a
/// cluster and nothing asked for one.
pub fn effective_provider(file: &ScenarioFile, opts: &RunOptions) -> String {
    if let Some(p) = &opts.provider {
        return p.clone();
    }
    let s = &file.scenario;
    if s.cluster.provider.is_none() && !s.steps.iter().any(|st| needs_cluster(&st.value.kind)) {
        return "none".into();
    }
    s.cluster.provider().to_string()
}

/// Runs a scenario with the given provider and executor. Never panics on a step's panic;
/// teardown always runs.
pub async fn run_with<E: Executor>(
    file: &ScenarioFile,
    opts: &RunOptions,
    provider: Box<dyn Provider>,
    exec: &E,
) -> RunResult {
    let mut run = Run::new(file, opts, provider);
    run.prepare_istio().await;
    run.prepare_gateway_api().await;
    run.create_cluster().await;
    for i in 0..file.scenario.steps.len() {
        run.run_step(i, exec).await;
    }
    run.teardown().await;
    run.report()
}

/// One scenario run in progress: its context, results so far, and how it stands.
pub struct Run<'f> {
    file: &'f ScenarioFile,
    opts: &'f RunOptions,
    provider: Box<dyn Provider>,
    ctx: Context,
    progress: Progress,
    run_id: String,
    artifacts: PathBuf,
    started: Instant,
    started_wall: String,
    deadline: Option<Instant>,
    interrupt: Interrupt,
    results: Vec<StepResult>,
    status: Status,
    interrupted: bool,
    diagnostics: Option<String>,
    teardown: Vec<String>,
}

/// A record being timed: where it is and when it started.
struct Pending {
    index: usize,
    kind: String,
    name: String,
    location: String,
    t0: Instant,
}

impl Pending {
    fn done(
        self,
        status: Status,
        attempts: u32,
        outputs: Outputs,
        error: Option<String>,
    ) -> StepResult {
        StepResult {
            index: self.index,
            kind: self.kind,
            name: self.name,
            location: self.location,
            status,
            duration_ms: self.t0.elapsed().as_millis() as u64,
            attempts,
            outputs,
            error,
        }
    }
}

/// What a step's `when:` decided.
enum When {
    Run,
    Skip(String),
    Broken(String),
}

impl<'f> Run<'f> {
    /// A run of `file` on `provider`: artifacts directory, variables, signal handling.
    pub fn new(file: &'f ScenarioFile, opts: &'f RunOptions, provider: Box<dyn Provider>) -> Self {
        let s = &file.scenario;
        let run_id = opts.run_id.clone().unwrap_or_else(new_run_id);
        let root = opts
            .artifacts_root
            .clone()
            .unwrap_or_else(|| PathBuf::from("target/istio-e2e"));
        let artifacts = root.join(&run_id);
        std::fs::create_dir_all(&artifacts).ok();
        let artifacts = std::fs::canonicalize(&artifacts).unwrap_or(artifacts);
        let started = Instant::now();
        let mut run = Run {
            file,
            opts,
            ctx: Context::new(&s.name, &s.namespace, artifacts.clone()),
            provider,
            progress: Progress::new(opts.quiet).labelled(opts.label.as_deref()),
            run_id,
            artifacts,
            started,
            started_wall: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            deadline: s.timeout.map(|t| started + opts.timeout_scale.apply(t)),
            interrupt: if opts.no_signal_handler {
                Interrupt::never()
            } else {
                Interrupt::on_signals()
            },
            results: Vec::new(),
            status: Status::Passed,
            interrupted: false,
            diagnostics: None,
            teardown: Vec::new(),
        };
        run.ctx.reinstall_istio = opts.reinstall_istio;
        run.ctx.status = run.progress.status_line();
        if let Some(t) = opts.delete_timeout {
            run.ctx.delete_timeout = t;
        }
        run.ctx.cluster_outlives_run = !run.provider.owns_cluster();
        run.set_builtins();
        run
    }

    /// Istio's version, release directory and istioctl, and the built-in variables.
    fn set_builtins(&mut self) {
        let (s, opts, ctx) = (&self.file.scenario, self.opts, &mut self.ctx);
        let istio_spec = s.istio.clone().unwrap_or_default();
        ctx.istio.version = opts.istio_version.clone().or(istio_spec.version.clone());
        ctx.istio.dir = opts
            .istio_dir
            .clone()
            .or(istio_spec.dir.as_ref().map(PathBuf::from))
            .map(|d| crate::download::release_dir(&d, ctx.istio.version.as_deref()));
        ctx.istio.profile = istio_spec.profile.clone().unwrap_or_else(|| "demo".into());
        ctx.istio.istioctl =
            crate::istio::find_istioctl(ctx.istio.dir.as_deref()).map(crate::istio::Istioctl::at);
        let dir = ctx.istio.dir.as_ref().map(|d| d.display().to_string());
        ctx.vars.set("istio.dir", dir.unwrap_or_default());
        let crds = ctx
            .istio
            .dir
            .as_deref()
            .and_then(crate::download::release_crds);
        ctx.vars.set(
            "istio.crds",
            crds.map(|c| c.display().to_string()).unwrap_or_default(),
        );
        ctx.vars.set(
            "istio.version",
            ctx.istio.version.clone().unwrap_or_default(),
        );
        ctx.vars.set("istio.profile", ctx.istio.profile.clone());
        ctx.vars.set("namespace", s.namespace.clone());
        ctx.vars.set("run.id", self.run_id.clone());
        ctx.vars
            .set("run.artifacts", self.artifacts.display().to_string());
        ctx.vars.set("cluster.provider", self.provider.name());
        // the version asked for until the cluster says which it runs (see create_cluster)
        let k8s = opts.kubernetes.clone().or(s.cluster.kubernetes.clone());
        ctx.vars.set("cluster.kubernetes", k8s.unwrap_or_default());
        for (k, default) in &s.params {
            let v = opts.params.get(k).unwrap_or(default);
            ctx.vars.set(format!("param.{k}"), v.clone());
        }
    }

    fn begin(&self, index: usize, kind: &str, name: String, location: String) -> Pending {
        Pending {
            index,
            kind: kind.into(),
            name,
            location,
            t0: Instant::now(),
        }
    }

    /// Shows a finished record and keeps it; a failed or interrupted record ends the run's
    /// passing streak (a skipped one does not).
    fn record(&mut self, r: StepResult) {
        self.progress.finish(&r);
        if matches!(r.status, Status::Failed | Status::Interrupted) {
            self.status = r.status;
        }
        self.results.push(r);
    }

    /// The Istio release: a local directory, or a verified download for the version, when
    /// the scenario uses one (istio steps or `${istio.dir}` paths).
    pub async fn prepare_istio(&mut self) {
        let file = self.file;
        let s = &file.scenario;
        let uses_istio = self.file.source.contains("${istio.dir}")
            || self.file.source.contains("${istio.crds}")
            || s.steps.iter().any(|st| st.value.kind.spec().uses_istio());
        if !uses_istio {
            return;
        }
        let pending = self.begin(
            0,
            "istio-release",
            "istio: release".into(),
            self.file.at(1, 1),
        );
        let lock = PathBuf::from(crate::download::LOCK_FILE);
        let ctx = &mut self.ctx;
        let prepared = crate::download::prepare_istio(
            ctx.istio.dir.as_deref(),
            ctx.istio.version.as_deref(),
            &lock,
        )
        .await;
        let (status, error) = match prepared {
            Ok(Some(rel)) => {
                ctx.istio.istioctl = rel
                    .istioctl
                    .clone()
                    .or_else(|| crate::istio::find_istioctl(None))
                    .map(crate::istio::Istioctl::at);
                crate::istio::use_release(ctx, &rel);
                if self.provider.name() == crate::cluster::ProviderKind::Lab.name() {
                    use_lab_standin(ctx);
                }
                (Status::Passed, None)
            }
            Ok(None) => (Status::Passed, None),
            Err(e) => (Status::Failed, Some(StepError::from(e).to_string())),
        };
        let mut outputs = Outputs::new();
        outputs.insert(
            "version".into(),
            ctx.istio.version.clone().unwrap_or_default().into(),
        );
        outputs.insert("istioctl".into(), ctx.istio.istioctl.is_some().into());
        let r = pending.done(status, 1, outputs, error);
        self.record(r);
    }

    /// Gets the Gateway API CRDs the scenario names (`gateway-api:`), verified, as
    /// `${gateway-api.crds}`: from `ISTIO_E2E_GATEWAY_API_DIR` or a download into the cache.
    /// Nothing happens when no step that may run uses them (a step whose `when:` is already
    /// false with what is known before the cluster exists, e.g. a parameter).
    pub async fn prepare_gateway_api(&mut self) {
        let Some(spec) = self.file.scenario.gateway_api.clone() else {
            return;
        };
        let steps = &self.file.scenario.steps;
        let needed = (0..steps.len()).any(|i| {
            let files = steps[i].value.kind.spec().files();
            files.iter().any(|f| f.contains("${gateway-api.crds}"))
                && !matches!(self.decide_when(i), When::Skip(_))
        });
        if !needed {
            return;
        }
        let name = format!("gateway-api: CRDs {}", spec.version);
        let pending = self.begin(0, "gateway-api", name, self.file.at(1, 1));
        let local = std::env::var_os("ISTIO_E2E_GATEWAY_API_DIR").map(PathBuf::from);
        let prepared = match crate::download::default_cache_root() {
            Ok(cache) => {
                crate::download::gateway_api::prepare(local.as_deref(), &spec.version, &cache)
                    .await
                    .map_err(StepError::from)
            }
            Err(e) => Err(StepError::from(e)),
        };
        let (status, error) = match prepared {
            Ok(path) => {
                let path = path.display().to_string();
                self.ctx.vars.set("gateway-api.crds", path);
                (Status::Passed, None)
            }
            Err(e) => (Status::Failed, Some(e.to_string())),
        };
        let mut outputs = Outputs::new();
        outputs.insert("version".into(), spec.version.clone().into());
        let r = pending.done(status, 1, outputs, error);
        self.record(r);
    }

    /// Creates the cluster (nothing for provider `none`, or after a failure).
    pub async fn create_cluster(&mut self) {
        let name = self.provider.name().to_string();
        if name == crate::cluster::ProviderKind::None.name() || self.status != Status::Passed {
            return;
        }
        self.progress.start(&format!("cluster: {name}"));
        let pending = self.begin(
            0,
            "cluster",
            format!("cluster: create ({name})"),
            self.file.at(1, 1),
        );
        let file = self.file;
        let s = &file.scenario;
        let req = ClusterRequest {
            run_id: self.run_id.clone(),
            artifacts: self.artifacts.clone(),
            kubernetes: self
                .opts
                .kubernetes
                .clone()
                .or(s.cluster.kubernetes.clone()),
            config: s.cluster.config.as_ref().map(PathBuf::from),
            image: s.cluster.image.clone(),
            kubeconfig: s.cluster.kubeconfig.as_ref().map(PathBuf::from),
            context: s.cluster.context.clone(),
            istio: self
                .ctx
                .istio
                .dir
                .clone()
                .map(|dir| crate::cluster::standins::Release {
                    dir,
                    version: self.ctx.istio.version.clone().unwrap_or_default(),
                }),
        };
        let deadline = self.deadline.unwrap_or_else(|| {
            Instant::now() + self.opts.timeout_scale.apply(Duration::from_secs(900))
        });
        let (created, attempts) = self.create_with_retry(&req, deadline).await;
        let (status, error, outputs) = match created {
            Outcome::Interrupted => {
                self.interrupted = true;
                let msg = "interrupted (Ctrl-C or SIGTERM) while creating the cluster";
                (Status::Interrupted, Some(msg.to_string()), Outputs::new())
            }
            Outcome::Panicked(p) => (
                Status::Failed,
                Some(format!("cluster setup panicked: {p}")),
                Outputs::new(),
            ),
            Outcome::TimedOut => {
                let msg = "cluster setup did not finish before the scenario's timeout";
                (Status::Failed, Some(msg.into()), Outputs::new())
            }
            Outcome::Done(Err(e)) => (
                Status::Failed,
                Some(StepError::from(e).to_string()),
                Outputs::new(),
            ),
            Outcome::Done(Ok(info)) => {
                if let Some(v) = server_version(&info).await {
                    self.ctx.vars.set("cluster.kubernetes", v);
                }
                let address = info.node_address.clone().unwrap_or_default();
                let mut o = Outputs::new();
                o.insert("provider".into(), info.provider.clone().into());
                o.insert("node-address".into(), address.clone().into());
                self.ctx.vars.set("cluster.node-address", address);
                self.ctx
                    .vars
                    .set("cluster.kubeconfig", info.kubeconfig.display().to_string());
                self.ctx.cluster = Some(info);
                (Status::Passed, None, o)
            }
        };
        let r = pending.done(status, attempts, outputs, error);
        self.record(r);
    }

    /// Creates the cluster; a creation that failed in a way that may pass on a second try (a
    /// lab node slow to become Ready on a loaded machine, a provider command that failed) is
    /// removed and tried once more. Returns the outcome and the number of attempts.
    async fn create_with_retry(
        &mut self,
        req: &ClusterRequest,
        deadline: Instant,
    ) -> (Outcome<Result<ClusterInfo, ClusterError>>, u32) {
        let mut attempt = 1;
        loop {
            let created = guarded(self.provider.create(req), deadline, &mut self.interrupt).await;
            match &created {
                Outcome::Done(Err(e)) if attempt == 1 && e.is_retryable() => {
                    self.progress
                        .note(&format!("cluster creation failed, retrying: {e}"));
                    let _ = self.provider.teardown(false).await;
                    attempt += 1;
                }
                _ => return (created, attempt),
            }
        }
    }

    /// Runs step `i`: skipped after a failure or when its `when:` is false; else tried per
    /// its retry policy, and diagnostics collected if it fails.
    pub async fn run_step<E: Executor>(&mut self, i: usize, exec: &E) {
        let file = self.file;
        let step = &file.scenario.steps[i].value;
        let pending = self.begin(
            i + 1,
            step.kind.kind_name(),
            step.display_name(),
            self.file.step_at(i),
        );
        if self.status != Status::Passed {
            self.results
                .push(pending.done(Status::Skipped, 0, Outputs::new(), None));
            return;
        }
        match self.decide_when(i) {
            When::Run => {}
            When::Skip(why) => {
                let mut outputs = Outputs::new();
                outputs.insert("skipped".into(), why.into());
                return self.record(pending.done(Status::Skipped, 0, outputs, None));
            }
            When::Broken(e) => {
                return self.record(pending.done(Status::Failed, 0, Outputs::new(), Some(e)));
            }
        }
        self.progress
            .start(&format!("{:02} {}", i + 1, pending.name));
        self.ctx.set_current_step(&pending.name);
        self.ctx.applied.clear();
        self.ctx.waited_on = None;
        let (attempts, outcome) = self.attempts(i, exec).await;
        let mut r = match outcome {
            Ok(out) => {
                if let Some(cap) = step.kind.capture() {
                    self.ctx.vars.capture(cap, &out);
                }
                self.ctx
                    .step_outputs
                    .insert(pending.name.clone(), out.clone());
                pending.done(Status::Passed, attempts, out, None)
            }
            Err(e) => {
                let st = if self.interrupted {
                    Status::Interrupted
                } else {
                    Status::Failed
                };
                pending.done(st, attempts, Outputs::new(), Some(e))
            }
        };
        if r.status == Status::Failed && self.ctx.cluster.is_some() {
            self.collect_diagnostics(&mut r).await;
        }
        self.record(r);
    }

    fn decide_when(&self, i: usize) -> When {
        let Some(cond) = &self.file.scenario.steps[i].value.when else {
            return When::Run;
        };
        let vars = &self.ctx.vars;
        let expanded = vars
            .expand(&cond.left)
            .and_then(|l| Ok((l, vars.expand(&cond.right)?)));
        let decided = match expanded {
            Ok((l, r)) => cond
                .decide(&l, &r)
                .map(|holds| (holds, cond.show(&l, &r)))
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match decided {
            Ok((true, _)) => When::Run,
            Ok((false, shown)) => When::Skip(format!("when: {cond} ({shown}) is false")),
            Err(e) => When::Broken(format!("when: {cond}: {e}")),
        }
    }

    /// Tries step `i` per its retry policy; the attempts made and the outputs or the message.
    async fn attempts<E: Executor>(
        &mut self,
        i: usize,
        exec: &E,
    ) -> (u32, Result<Outputs, String>) {
        let file = self.file;
        let step = &file.scenario.steps[i].value;
        let policy = step.retry.unwrap_or_default();
        let mut waits = policy.backoff();
        let mut attempts = 0;
        loop {
            attempts += 1;
            let kind = match resolved(&step.kind, &self.ctx.vars) {
                Ok(k) => k,
                Err(e) => return (attempts, Err(e)),
            };
            let timeout = self.opts.timeout_scale.apply(step.effective_timeout());
            let mut deadline = Instant::now() + timeout;
            if let Some(sd) = self.deadline {
                deadline = deadline.min(sd);
            }
            let fut = exec.execute(&kind, &mut self.ctx, deadline);
            let cut_off =
                deadline + report_grace(deadline.saturating_duration_since(Instant::now()));
            let err = match guarded(fut, cut_off, &mut self.interrupt).await {
                Outcome::Interrupted => {
                    self.interrupted = true;
                    return (attempts, Err("interrupted by Ctrl-C (or SIGTERM)".into()));
                }
                Outcome::Panicked(p) => return (attempts, Err(format!("the step panicked: {p}"))),
                Outcome::TimedOut => StepError::new(format!(
                    "timed out after {}{}",
                    humantime::format_duration(timeout),
                    scaled_note(self.opts.timeout_scale)
                ))
                .with_hint(
                    "raise the step's `timeout`, or look at the diagnostics for what it waited on",
                ),
                Outcome::Done(Ok(out)) => return (attempts, Ok(out)),
                Outcome::Done(Err(e)) => e,
            };
            let past_scenario = self.deadline.is_some_and(|d| Instant::now() >= d);
            if err.fatal || !policy.allows_another(attempts) || past_scenario {
                let mut msg = err.to_string();
                if past_scenario {
                    msg.push_str(" (the scenario's timeout has passed)");
                }
                return (attempts, Err(msg));
            }
            let wait = waits.next().unwrap_or(crate::retry::MAX_BACKOFF);
            tracing::info!(
                "step {} attempt {attempts} failed: {err}; retrying in {wait:?}",
                i + 1
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// Writes `diagnostics/step-NN/` for a failed step and adds their summary to its message.
    async fn collect_diagnostics(&mut self, r: &mut StepResult) {
        let dir = self
            .artifacts
            .join("diagnostics")
            .join(format!("step-{:02}", r.index));
        let Ok(client) = self.ctx.client().await else {
            return;
        };
        let mut namespaces = vec![self.ctx.namespace.clone(), "istio-system".to_string()];
        namespaces.dedup();
        let error = r.error.clone().unwrap_or_default();
        let collect = crate::kubeops::diagnostics::collect(
            &client,
            &namespaces,
            &self.ctx.applied,
            self.ctx.waited_on.as_ref(),
            &error,
            &dir,
        );
        let bundle = tokio::time::timeout(Duration::from_secs(60), collect).await;
        if let (Some(istioctl), Some(cluster)) = (&self.ctx.istio.istioctl, &self.ctx.cluster)
            && self.ctx.cleanup.installed_istio()
        {
            crate::istio::diagnostics(
                istioctl,
                &cluster.kubeconfig,
                cluster.context.as_deref(),
                &dir,
            )
            .await;
        }
        if let Ok(b) = bundle {
            if let Some(e) = &mut r.error {
                e.push_str(&format!(" [{}]", b.summary()));
            }
            self.diagnostics = Some(dir.display().to_string());
        }
    }

    /// Undoes what the run created (newest first) and removes the cluster unless kept.
    pub async fn teardown(&mut self) {
        let keep =
            self.opts.keep_cluster || (self.opts.keep_on_failure && self.status != Status::Passed);
        let outlives = !self.provider.owns_cluster();
        let lines = crate::cleanup::undo_all(&mut self.ctx, outlives, keep).await;
        self.teardown.extend(lines);
        self.ctx.drop_client();
        match self.provider.teardown(keep).await {
            Ok(line) if !line.is_empty() => self.teardown.push(line),
            Ok(_) => {}
            Err(e) => self.teardown.push(format!("teardown failed: {e}")),
        }
        for line in &self.teardown {
            self.progress.note(line);
        }
        if self.interrupted {
            self.status = Status::Interrupted;
        }
    }

    /// The run's result, also written as reports into its artifacts directory.
    pub fn report(mut self) -> RunResult {
        let s = &self.file.scenario;
        let result = RunResult {
            scenario: s.name.clone(),
            file: self.file.path.display().to_string(),
            run_id: self.run_id,
            provider: self.provider.name().to_string(),
            kubernetes: self
                .opts
                .kubernetes
                .clone()
                .or(s.cluster.kubernetes.clone()),
            istio: self.ctx.istio.version.clone(),
            status: self.status,
            started: self.started_wall,
            duration_ms: self.started.elapsed().as_millis() as u64,
            steps: self.results,
            teardown: self.teardown,
            artifacts: self.artifacts.display().to_string(),
            diagnostics: self.diagnostics,
            snapshots: std::mem::take(&mut self.ctx.snapshots),
            params: self.opts.params.clone(),
            timeout_scale: (!self.opts.timeout_scale.is_one())
                .then(|| self.opts.timeout_scale.factor()),
        };
        if let Err(e) = crate::report::write_all(&result, &self.artifacts) {
            self.progress.note(&format!(
                "cannot write reports to {}: {e}",
                self.artifacts.display()
            ));
        }
        result
    }
}
