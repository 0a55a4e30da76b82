//! The runner: cluster setup, the steps in order with per-step and whole-scenario timeouts and
//! retries with backoff, diagnostics on failure, and a teardown that always runs (after a
//! passing run, a failing step, a panicking step, or Ctrl-C).

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use futures::FutureExt;
use futures::future::BoxFuture;

use crate::Outputs;
use crate::cluster::{ClusterRequest, Provider};
use crate::context::{Background, Context};
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
    /// Don't stop on SIGINT (tests drive interruption through `interrupt`).
    pub no_signal_handler: bool,
    /// Scenario parameter overrides (`--set name=value`).
    pub params: std::collections::BTreeMap<String, String>,
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

/// The real executor: `steps::run`.
pub struct StepRunner;

impl Executor for StepRunner {
    fn execute<'a>(
        &'a self,
        kind: &'a StepKind,
        ctx: &'a mut Context,
        deadline: Instant,
    ) -> BoxFuture<'a, Result<Outputs, StepError>> {
        Box::pin(crate::steps::run(kind, ctx, deadline))
    }
}

/// A fresh run id: UTC time and process id, e.g. `20261125-234054-1234`.
pub fn new_run_id() -> String {
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let t = humantime::format_rfc3339_seconds(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
        .to_string();
    let compact: String = t.chars().filter(|c| c.is_ascii_digit()).collect();
    format!(
        "{}-{}-{}",
        &compact[..8],
        &compact[8..14],
        std::process::id()
    )
}

/// Validates, then runs a scenario with its provider and the real steps. Validation errors
/// come back as diagnostics, before anything touches a cluster.
pub async fn run_file(
    file: &ScenarioFile,
    opts: &RunOptions,
) -> Result<RunResult, Vec<Diagnostic>> {
    let vopts = ValidateOptions {
        istio_dir: opts.istio_dir.clone(),
        provider: opts.provider.clone(),
        params: opts.params.clone(),
    };
    let diags = crate::scenario::validate(file, &vopts);
    if !diags.is_empty() {
        return Err(diags);
    }
    let name = effective_provider(file, opts);
    let provider = crate::cluster::provider(&name).map_err(|m| {
        vec![Diagnostic {
            path: file.path.clone(),
            line: 1,
            column: 1,
            message: m.to_string(),
        }]
    })?;
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
    mut provider: Box<dyn Provider>,
    exec: &E,
) -> RunResult {
    let s = &file.scenario;
    let run_id = opts.run_id.clone().unwrap_or_else(new_run_id);
    let root = opts
        .artifacts_root
        .clone()
        .unwrap_or_else(|| PathBuf::from("target/istio-e2e"));
    let artifacts = root.join(&run_id);
    std::fs::create_dir_all(&artifacts).ok();
    let artifacts = std::fs::canonicalize(&artifacts).unwrap_or(artifacts);
    let started_wall = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let started = Instant::now();
    let scenario_deadline = s.timeout.map(|t| started + t);
    let mut progress = Progress::new(opts.quiet);
    let mut ctx = Context::new(&s.name, &s.namespace, artifacts.clone());

    // Istio: version, release directory, istioctl.
    let istio_spec = s.istio.clone().unwrap_or_default();
    ctx.istio.version = opts.istio_version.clone().or(istio_spec.version.clone());
    ctx.istio.dir = opts
        .istio_dir
        .clone()
        .or(istio_spec.dir.as_ref().map(PathBuf::from));
    ctx.istio.profile = istio_spec.profile.clone().unwrap_or_else(|| "demo".into());
    ctx.istio.istioctl = crate::istio::find_istioctl(ctx.istio.dir.as_deref());
    ctx.vars.set(
        "istio.dir",
        ctx.istio
            .dir
            .as_ref()
            .map(|d| d.display().to_string())
            .unwrap_or_default(),
    );
    ctx.vars.set(
        "istio.version",
        ctx.istio.version.clone().unwrap_or_default(),
    );
    ctx.vars.set("istio.profile", ctx.istio.profile.clone());
    ctx.vars.set("namespace", s.namespace.clone());
    ctx.vars.set("run.id", run_id.clone());
    ctx.vars
        .set("run.artifacts", artifacts.display().to_string());
    ctx.vars.set("cluster.provider", provider.name());
    for (k, default) in &s.params {
        let v = opts.params.get(k).unwrap_or(default);
        ctx.vars.set(format!("param.{k}"), v.clone());
    }

    let mut results: Vec<StepResult> = Vec::new();
    let mut status = Status::Passed;
    let mut diagnostics = None;
    let mut interrupted = false;
    // Ctrl-C (SIGINT) and SIGTERM stop the current step; teardown still runs.
    let ctrl_c = async {
        if opts.no_signal_handler {
            futures::future::pending::<()>().await
        }
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let term = async {
            match term.as_mut() {
                Some(t) => {
                    t.recv().await;
                }
                None => futures::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term => {}
        }
    };
    let mut ctrl_c = std::pin::pin!(ctrl_c.fuse());

    // The Istio release: a local directory, or a verified download for the version, when the
    // scenario uses one (istio steps or `${istio.dir}` paths).
    let uses_istio = file.source.contains("${istio.dir}")
        || s.steps.iter().any(|st| {
            matches!(
                st.value.kind,
                StepKind::IstioInstall(_) | StepKind::Istioctl(_)
            )
        });
    if uses_istio {
        let t0 = Instant::now();
        let prepared =
            crate::istio::prepare_release(ctx.istio.dir.as_deref(), ctx.istio.version.as_deref())
                .await;
        let (st, error, mut outputs) = match prepared {
            Ok(Some(rel)) => {
                crate::istio::use_release(&mut ctx, &rel);
                (Status::Passed, None, Outputs::new())
            }
            Ok(None) => (Status::Passed, None, Outputs::new()),
            Err(e) => (
                Status::Failed,
                Some(crate::error::StepError::from(e).to_string()),
                Outputs::new(),
            ),
        };
        outputs.insert(
            "version".into(),
            ctx.istio.version.clone().unwrap_or_default().into(),
        );
        outputs.insert("istioctl".into(), ctx.istio.istioctl.is_some().into());
        let r = StepResult {
            index: 0,
            kind: "istio-release".into(),
            name: "istio: release".into(),
            location: file.at(1, 1),
            status: st,
            duration_ms: t0.elapsed().as_millis() as u64,
            attempts: 1,
            outputs,
            error,
        };
        progress.finish(&r);
        if st != Status::Passed {
            status = st;
        }
        results.push(r);
    }

    // Cluster setup.
    if provider.name() != crate::cluster::ProviderKind::None.name() && status == Status::Passed {
        progress.start(&format!("cluster: {}", provider.name()));
        let t0 = Instant::now();
        let req = ClusterRequest {
            run_id: run_id.clone(),
            artifacts: artifacts.clone(),
            kubernetes: opts.kubernetes.clone().or(s.cluster.kubernetes.clone()),
            config: s.cluster.config.as_ref().map(PathBuf::from),
            image: s.cluster.image.clone(),
            kubeconfig: s.cluster.kubeconfig.as_ref().map(PathBuf::from),
            context: s.cluster.context.clone(),
        };
        let limit = scenario_deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_secs(900));
        let created = futures::select! {
            r = std::panic::AssertUnwindSafe(tokio::time::timeout(limit, provider.create(&req))).catch_unwind().map(|r| r.map_err(panic_message)).fuse() => Some(r),
            _ = ctrl_c.as_mut() => None,
        };
        let (st, err, outputs) = match created {
            None => {
                interrupted = true;
                (
                    Status::Interrupted,
                    Some("interrupted (Ctrl-C or SIGTERM) while creating the cluster".to_string()),
                    Outputs::new(),
                )
            }
            Some(Err(panic)) => (
                Status::Failed,
                Some(format!("cluster setup panicked: {panic}")),
                Outputs::new(),
            ),
            Some(Ok(Err(_))) => (
                Status::Failed,
                Some("cluster setup did not finish before the scenario's timeout".into()),
                Outputs::new(),
            ),
            Some(Ok(Ok(Err(e)))) => (
                Status::Failed,
                Some(crate::error::StepError::from(e).to_string()),
                Outputs::new(),
            ),
            Some(Ok(Ok(Ok(info)))) => {
                let mut o = Outputs::new();
                o.insert("provider".into(), info.provider.clone().into());
                o.insert(
                    "node-address".into(),
                    info.node_address.clone().unwrap_or_default().into(),
                );
                ctx.vars.set(
                    "cluster.node-address",
                    info.node_address.clone().unwrap_or_default(),
                );
                ctx.vars
                    .set("cluster.kubeconfig", info.kubeconfig.display().to_string());
                ctx.cluster = Some(info);
                (Status::Passed, None, o)
            }
        };
        let r = StepResult {
            index: 0,
            kind: "cluster".into(),
            name: format!("cluster: create ({})", provider.name()),
            location: file.at(1, 1),
            status: st,
            duration_ms: t0.elapsed().as_millis() as u64,
            attempts: 1,
            outputs,
            error: err,
        };
        progress.finish(&r);
        if st != Status::Passed {
            status = st;
        }
        results.push(r);
    }

    // Steps.
    for (i, located) in s.steps.iter().enumerate() {
        let step = &located.value;
        let display = step.display_name();
        let location = file.step_at(i);
        // A step that does not run: after a failure, or when its `when:` is false or broken.
        let not_run = |status: Status, outputs: Outputs, error: Option<String>| StepResult {
            index: i + 1,
            kind: step.kind.kind_name().into(),
            name: step.display_name(),
            location: file.step_at(i),
            status,
            duration_ms: 0,
            attempts: 0,
            outputs,
            error,
        };
        if status != Status::Passed {
            results.push(not_run(Status::Skipped, Outputs::new(), None));
            continue;
        }
        if let Some(cond) = &step.when {
            let decided = ctx.vars.expand(&cond.left).and_then(|l| {
                let r = ctx.vars.expand(&cond.right)?;
                Ok((cond.decide(&l, &r)?, cond.show(&l, &r)))
            });
            match decided {
                Ok((true, _)) => {}
                Ok((false, shown)) => {
                    let mut outputs = Outputs::new();
                    outputs.insert(
                        "skipped".into(),
                        format!("when: {cond} ({shown}) is false").into(),
                    );
                    let r = not_run(Status::Skipped, outputs, None);
                    progress.finish(&r);
                    results.push(r);
                    continue;
                }
                Err(e) => {
                    let error = Some(format!("when: {cond}: {e}"));
                    let r = not_run(Status::Failed, Outputs::new(), error);
                    progress.finish(&r);
                    status = Status::Failed;
                    results.push(r);
                    continue;
                }
            }
        }
        progress.start(&format!("{:02} {display}", i + 1));
        ctx.set_current_step(&display);
        let t0 = Instant::now();
        ctx.applied.clear();
        let retry = step.retry.unwrap_or_default();
        let mut attempts = 0;
        let mut backoff = retry.backoff;
        let outcome: Result<Outputs, String> = loop {
            attempts += 1;
            let kind = match expand(&step.kind, &ctx) {
                Ok(k) => k,
                Err(e) => break Err(e),
            };
            let mut deadline = Instant::now() + step.effective_timeout();
            if let Some(sd) = scenario_deadline {
                deadline = deadline.min(sd);
            }
            let fut =
                tokio::time::timeout_at(deadline.into(), exec.execute(&kind, &mut ctx, deadline));
            let res = futures::select! {
                r = std::panic::AssertUnwindSafe(fut).catch_unwind().map(|r| r.map_err(panic_message)).fuse() => Some(r),
                _ = ctrl_c.as_mut() => None,
            };
            let err = match res {
                None => {
                    interrupted = true;
                    break Err("interrupted by Ctrl-C (or SIGTERM)".into());
                }
                Some(Err(panic)) => break Err(format!("the step panicked: {panic}")),
                Some(Ok(Err(_))) => StepError::new(format!(
                    "timed out after {}",
                    humantime::format_duration(step.effective_timeout())
                ))
                .with_hint(
                    "raise the step's `timeout`, or look at the diagnostics for what it waited on",
                ),
                Some(Ok(Ok(Ok(out)))) => break Ok(out),
                Some(Ok(Ok(Err(e)))) => e,
            };
            let past_scenario = scenario_deadline.is_some_and(|d| Instant::now() >= d);
            if err.fatal || attempts >= retry.attempts || past_scenario {
                let mut msg = err.to_string();
                if past_scenario {
                    msg.push_str(" (the scenario's timeout has passed)");
                }
                break Err(msg);
            }
            tracing::info!(
                "step {} attempt {attempts} failed: {err}; retrying in {backoff:?}",
                i + 1
            );
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(30));
        };
        let (st, outputs, error) = match outcome {
            Ok(out) => {
                if let Some(cap) = step.kind.capture() {
                    ctx.vars.capture(cap, &out);
                }
                ctx.step_outputs.insert(display.clone(), out.clone());
                (Status::Passed, out, None)
            }
            Err(e) => (
                if interrupted {
                    Status::Interrupted
                } else {
                    Status::Failed
                },
                Outputs::new(),
                Some(e),
            ),
        };
        let mut r = StepResult {
            index: i + 1,
            kind: step.kind.kind_name().into(),
            name: display,
            location,
            status: st,
            duration_ms: t0.elapsed().as_millis() as u64,
            attempts,
            outputs,
            error,
        };
        if st == Status::Failed && ctx.cluster.is_some() {
            let dir = artifacts
                .join("diagnostics")
                .join(format!("step-{:02}", i + 1));
            if let Ok(client) = ctx.client().await {
                let mut namespaces = vec![ctx.namespace.clone(), "istio-system".to_string()];
                namespaces.dedup();
                let bundle = tokio::time::timeout(
                    Duration::from_secs(60),
                    crate::kube::diagnostics::collect(
                        &client,
                        &namespaces,
                        &ctx.applied,
                        r.error.as_deref().unwrap_or(""),
                        &dir,
                    ),
                )
                .await;
                if let (Some(istioctl), Some(cluster)) = (&ctx.istio.istioctl, &ctx.cluster)
                    && ctx.istio.installed_by_run
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
                    diagnostics = Some(dir.display().to_string());
                }
            }
        }
        progress.finish(&r);
        if st != Status::Passed {
            status = st;
        }
        results.push(r);
    }

    // Teardown: always.
    let mut teardown = Vec::new();
    for bg in ctx.background.drain(..).rev() {
        match bg {
            Background::Forwarder { step, forwarder } => {
                let stats = forwarder.stop(Duration::from_secs(5)).await;
                teardown.push(format!(
                    "stopped forwarder of `{step}` ({} connections, {} failed)",
                    stats.accepted, stats.failed
                ));
            }
            Background::Traffic { step, traffic } => {
                let name = traffic.name.clone();
                let report = traffic.stop().await;
                report.write_csv(&artifacts);
                teardown.push(format!(
                    "stopped background traffic `{name}` of `{step}`, which no traffic-stop step checked ({} requests, {} failed)",
                    report.samples.len(),
                    report.failed()
                ));
            }
            Background::PortForward { step, handle } => {
                handle.stop();
                teardown.push(format!("stopped port-forward of `{step}`"));
            }
        }
    }
    let keep = opts.keep_cluster || (opts.keep_on_failure && status != Status::Passed);
    if !provider.owns_cluster()
        && !ctx.created_namespaces.is_empty()
        && let Ok(client) = ctx.client().await
    {
        {
            let api: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(client);
            for ns in &ctx.created_namespaces {
                let _ = api.delete(ns, &Default::default()).await;
                teardown.push(format!("deleted namespace {ns}"));
            }
        }
    }
    // On a cluster that outlives the run, Istio goes only if this run installed it.
    if !provider.owns_cluster()
        && ctx.istio.installed_by_run
        && let (Some(istioctl), Some(cluster)) = (ctx.istio.istioctl.clone(), ctx.cluster.clone())
    {
        let argv = crate::istio::istioctl_argv(
            &crate::istio::uninstall_args(),
            &cluster.kubeconfig,
            cluster.context.as_deref(),
        );
        match crate::istio::run_istioctl(
            &istioctl,
            &argv,
            Instant::now() + Duration::from_secs(300),
        )
        .await
        {
            Ok(r) if r.exit_code == 0 => {
                teardown.push("uninstalled Istio (istioctl uninstall --purge -y)".into())
            }
            Ok(r) => teardown.push(format!(
                "istioctl uninstall exited {}: {}",
                r.exit_code,
                r.stderr.trim()
            )),
            Err(e) => teardown.push(format!("istioctl uninstall failed: {e}")),
        }
        if let Ok(client) = ctx.client().await {
            let api: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(client);
            if api
                .delete("istio-system", &Default::default())
                .await
                .is_ok()
            {
                teardown.push("deleted namespace istio-system".into());
            }
        }
    }
    ctx.drop_client();
    match provider.teardown(keep).await {
        Ok(line) if !line.is_empty() => teardown.push(line),
        Ok(_) => {}
        Err(e) => teardown.push(format!("teardown failed: {e}")),
    }
    for line in &teardown {
        progress.note(line);
    }
    if interrupted {
        status = Status::Interrupted;
    }

    let result = RunResult {
        scenario: s.name.clone(),
        file: file.path.display().to_string(),
        run_id,
        provider: provider.name().to_string(),
        kubernetes: opts.kubernetes.clone().or(s.cluster.kubernetes.clone()),
        istio: ctx.istio.version.clone(),
        status,
        started: started_wall,
        duration_ms: started.elapsed().as_millis() as u64,
        steps: results,
        teardown,
        artifacts: artifacts.display().to_string(),
        diagnostics,
        snapshots: std::mem::take(&mut ctx.snapshots),
    };
    if let Err(e) = crate::report::write_all(&result, &artifacts) {
        progress.note(&format!(
            "cannot write reports to {}: {e}",
            artifacts.display()
        ));
    }
    result
}

/// Expands `${...}` in every string of a step's spec.
fn expand(kind: &StepKind, ctx: &Context) -> Result<StepKind, String> {
    let mut v = serde_json::to_value(kind)
        .map_err(|e| format!("internal: cannot serialize the step: {e}"))?;
    ctx.vars.expand_value(&mut v)?;
    serde_json::from_value(v)
        .map_err(|e| format!("after expanding variables the step is not valid: {e}"))
}

/// The message of a caught panic.
fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "a panic with no message".into())
}
