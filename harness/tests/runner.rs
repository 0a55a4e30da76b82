//! Runner behavior with a fake provider and a fake executor (no cluster): teardown after a
//! failing and after a panicking step, retries stopping at the limit, the step timeout, and
//! interruption.

#[path = "support/release.rs"]
mod release;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use harness::Outputs;
use harness::cluster::{ClusterError, ClusterInfo, ClusterRequest, Provider};
use harness::context::Context;
use harness::error::StepError;
use harness::results::Status;
use harness::runner::{Executor, RunOptions, run_with};
use harness::scenario::{self, StepKind};
use rstest::rstest;

#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    fn push(&self, s: impl Into<String>) {
        self.0.lock().unwrap().push(s.into());
    }
    fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

/// A cluster that is created at once (after `failures` creations that fail with `error`).
struct FakeProvider {
    log: Log,
    failures: u32,
    error: fn() -> ClusterError,
}

impl FakeProvider {
    fn new(log: Log) -> Self {
        FakeProvider {
            log,
            failures: 0,
            error: || ClusterError::NoKubeconfig,
        }
    }
}

impl Provider for FakeProvider {
    fn name(&self) -> &'static str {
        "fake"
    }
    fn needs(&self) -> &'static str {
        "nothing"
    }
    fn check(&self) -> Result<(), ClusterError> {
        Ok(())
    }
    fn create<'a>(
        &'a mut self,
        req: &'a ClusterRequest,
    ) -> BoxFuture<'a, Result<ClusterInfo, ClusterError>> {
        self.log.push("create");
        let fail = self.failures > 0;
        self.failures = self.failures.saturating_sub(1);
        let error = self.error;
        Box::pin(async move {
            if fail {
                return Err(error());
            }
            Ok(ClusterInfo {
                provider: "fake".into(),
                kubeconfig: req.artifacts.join("kubeconfig"),
                context: None,
                node_address: Some("127.0.0.1".into()),
                name: "fake".into(),
            })
        })
    }
    fn teardown(&mut self, keep: bool) -> BoxFuture<'_, Result<String, ClusterError>> {
        self.log.push(format!("teardown keep={keep}"));
        Box::pin(async { Ok("fake cluster removed".into()) })
    }
}

/// Interprets each `http` step's URL as an instruction: ok, fail, panic, hang, flaky-N
/// (fails N times, then succeeds).
struct FakeSteps {
    log: Log,
    calls: AtomicU32,
}

impl Executor for FakeSteps {
    fn execute<'a>(
        &'a self,
        kind: &'a StepKind,
        _ctx: &'a mut Context,
        deadline: Instant,
    ) -> BoxFuture<'a, Result<Outputs, StepError>> {
        let StepKind::Http(h) = kind else {
            panic!("fake executor runs http steps only")
        };
        let what = h.url.clone();
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        self.log.push(format!("run {what}"));
        Box::pin(async move {
            match what.as_str() {
                "ok" => Ok(Outputs::new()),
                "fail" => Err(StepError::new("it failed on purpose")),
                "fatal" => Err(StepError::fatal("a bad argument")),
                "panic" => panic!("a step panicked on purpose"),
                "hang" => {
                    futures::future::pending::<()>().await;
                    unreachable!()
                }
                // Gives up at its deadline like a watch, then takes a moment to say what it
                // saw (an assert reading the closest object's events).
                "report-at-deadline" => {
                    tokio::time::sleep_until(deadline.into()).await;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    Err(StepError::new(
                        "Programmed: expected \"True\", found \"False\"",
                    ))
                }
                s if s.starts_with("flaky-") => {
                    let fails: u32 = s[6..].parse().unwrap();
                    if n <= fails {
                        Err(StepError::new(format!("attempt {n} fails")))
                    } else {
                        Ok(Outputs::new())
                    }
                }
                other => panic!("unknown instruction {other}"),
            }
        })
    }
}

fn scenario_with(steps: &[(&str, &str)]) -> scenario::ScenarioFile {
    let mut text = String::from("name: fake\ncluster: { provider: lab }\nsteps:\n");
    for (url, extra) in steps {
        text.push_str(&format!("  - http: {{ url: {url} }}\n{extra}"));
    }
    scenario::parse_str(&PathBuf::from("fake.yaml"), text).unwrap()
}

async fn run(steps: &[(&str, &str)]) -> (harness::results::RunResult, Vec<String>) {
    let log = Log::default();
    let file = scenario_with(steps);
    let tmp = tempfile::tempdir().unwrap();
    let opts = RunOptions {
        artifacts_root: Some(tmp.path().to_path_buf()),
        quiet: true,
        no_signal_handler: true,
        ..Default::default()
    };
    let exec = FakeSteps {
        log: log.clone(),
        calls: AtomicU32::new(0),
    };
    let r = run_with(
        &file,
        &opts,
        Box::new(FakeProvider::new(log.clone())),
        &exec,
    )
    .await;
    // Reports are written for every run.
    for f in ["results.json", "junit.xml", "summary.md"] {
        assert!(PathBuf::from(&r.artifacts).join(f).is_file(), "{f} missing");
    }
    (r, log.lines())
}

#[rstest]
#[case::failing_step("fail", "it failed on purpose")]
#[case::panicking_step("panic", "the step panicked: a step panicked on purpose")]
#[tokio::test]
async fn teardown_runs_after_a_failing_step(#[case] what: &str, #[case] error: &str) {
    let (r, log) = run(&[("ok", ""), (what, ""), ("ok", "")]).await;
    assert_eq!(r.status, Status::Failed);
    assert_eq!(
        log,
        vec![
            "create",
            "run ok",
            &format!("run {what}"),
            "teardown keep=false"
        ]
    );
    let statuses: Vec<Status> = r.steps.iter().map(|s| s.status).collect();
    assert_eq!(
        statuses,
        [
            Status::Passed,
            Status::Passed,
            Status::Failed,
            Status::Skipped
        ]
    );
    assert_eq!(r.steps[2].error.as_deref(), Some(error));
    assert_eq!(r.teardown, vec!["fake cluster removed"]);
    let msg = r.failure_message().unwrap();
    assert!(
        msg.starts_with(&format!("fake.yaml:5:5: step 2 `http {what}`")),
        "{msg}"
    );
}

#[tokio::test]
async fn retries_stop_at_the_limit() {
    let (r, log) = run(&[("flaky-5", "    retry: { attempts: 3, backoff: 10ms }\n")]).await;
    assert_eq!(r.status, Status::Failed);
    assert_eq!(r.steps[1].attempts, 3);
    assert_eq!(log.iter().filter(|l| *l == "run flaky-5").count(), 3);
    assert_eq!(r.steps[1].error.as_deref(), Some("attempt 3 fails"));
}

#[tokio::test]
async fn a_retry_that_succeeds_passes_and_counts_attempts() {
    let (r, _) = run(&[("flaky-2", "    retry: { attempts: 5, backoff: 10ms }\n")]).await;
    assert_eq!(r.status, Status::Passed);
    assert_eq!(r.steps[1].attempts, 3);
}

#[tokio::test]
async fn a_fatal_error_is_not_retried() {
    let (r, log) = run(&[("fatal", "    retry: 5\n")]).await;
    assert_eq!(r.steps[1].attempts, 1);
    assert_eq!(log.iter().filter(|l| *l == "run fatal").count(), 1);
}

#[tokio::test]
async fn a_step_timeout_fires_and_teardown_still_runs() {
    let t0 = Instant::now();
    let (r, log) = run(&[("hang", "    timeout: 200ms\n")]).await;
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert_eq!(r.status, Status::Failed);
    let e = r.steps[1].error.clone().unwrap();
    assert!(e.starts_with("timed out after 200ms"), "{e}");
    assert_eq!(log.last().unwrap(), "teardown keep=false");
}

/// A step that gives up at its deadline and then reports what it saw is not cut off at that
/// instant: its own message, not a bare "timed out", is the step's error.
#[tokio::test]
async fn a_step_reporting_at_its_deadline_keeps_its_own_message() {
    let (r, _) = run(&[("report-at-deadline", "    timeout: 300ms\n")]).await;
    assert_eq!(r.status, Status::Failed);
    assert_eq!(
        r.steps[1].error.as_deref(),
        Some("Programmed: expected \"True\", found \"False\"")
    );
}

/// `--timeout-scale 0.5` halves a step's timeout; the message and the results say so.
#[tokio::test]
async fn the_timeout_scale_multiplies_step_timeouts_and_is_reported() {
    let log = Log::default();
    let file = scenario_with(&[("hang", "    timeout: 400ms\n")]);
    let tmp = tempfile::tempdir().unwrap();
    let opts = RunOptions {
        artifacts_root: Some(tmp.path().into()),
        quiet: true,
        no_signal_handler: true,
        timeout_scale: "0.5".parse().unwrap(),
        ..Default::default()
    };
    let exec = FakeSteps {
        log: log.clone(),
        calls: AtomicU32::new(0),
    };
    let r = run_with(
        &file,
        &opts,
        Box::new(FakeProvider::new(log.clone())),
        &exec,
    )
    .await;
    let e = r.steps[1].error.clone().unwrap();
    assert!(
        e.starts_with("timed out after 200ms (timeouts scaled x0.5)"),
        "{e}"
    );
    assert_eq!(r.timeout_scale, Some(0.5));
    let md =
        std::fs::read_to_string(std::path::Path::new(&r.artifacts).join("summary.md")).unwrap();
    assert!(
        md.lines()
            .next()
            .unwrap()
            .ends_with("(timeouts scaled x0.5)"),
        "{md}"
    );
}

#[tokio::test]
async fn the_scenario_timeout_bounds_every_step() {
    let log = Log::default();
    let text = "name: fake\ncluster: { provider: lab }\ntimeout: 300ms\nsteps:\n  - http: { url: hang }\n    timeout: 1h\n  - http: { url: ok }\n";
    let file = scenario::parse_str(&PathBuf::from("fake.yaml"), text.into()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let opts = RunOptions {
        artifacts_root: Some(tmp.path().into()),
        quiet: true,
        no_signal_handler: true,
        ..Default::default()
    };
    let exec = FakeSteps {
        log: log.clone(),
        calls: AtomicU32::new(0),
    };
    let r = run_with(
        &file,
        &opts,
        Box::new(FakeProvider::new(log.clone())),
        &exec,
    )
    .await;
    assert_eq!(r.steps[1].status, Status::Failed);
    assert_eq!(r.steps[2].status, Status::Skipped);
    assert!(
        r.steps[1]
            .error
            .as_deref()
            .unwrap()
            .contains("the scenario's timeout has passed")
    );
}

/// A node slow to become Ready is removed and created once more (the cluster record says 2
/// attempts); a second failure, or a failure that cannot pass on a retry, fails at once.
#[rstest]
#[case::slow_node_once(1, not_ready, Status::Passed, 2)]
#[case::slow_node_twice(2, not_ready, Status::Failed, 2)]
#[case::no_kubeconfig(1, || ClusterError::NoKubeconfig, Status::Failed, 1)]
#[tokio::test]
async fn cluster_creation_is_retried_once_when_it_may_pass(
    #[case] failures: u32,
    #[case] error: fn() -> ClusterError,
    #[case] status: Status,
    #[case] attempts: u32,
) {
    let log = Log::default();
    let file = scenario_with(&[("ok", "")]);
    let tmp = tempfile::tempdir().unwrap();
    let opts = RunOptions {
        artifacts_root: Some(tmp.path().into()),
        quiet: true,
        no_signal_handler: true,
        ..Default::default()
    };
    let exec = FakeSteps {
        log: log.clone(),
        calls: AtomicU32::new(0),
    };
    let provider = FakeProvider {
        log: log.clone(),
        failures,
        error,
    };
    let r = run_with(&file, &opts, Box::new(provider), &exec).await;
    assert_eq!(r.status, status, "{:?}", r.failure_message());
    let cluster = &r.steps[0];
    assert_eq!((cluster.status, cluster.attempts), (status, attempts));
    let creates = log.lines().iter().filter(|l| *l == "create").count();
    assert_eq!(creates as u32, attempts);
    if status == Status::Failed {
        assert!(
            cluster
                .error
                .as_deref()
                .unwrap()
                .contains(&error().to_string())
        );
    }
}

fn not_ready() -> ClusterError {
    ClusterError::NodeNotReady {
        limit: Duration::from_secs(240),
        last: "node n Ready=False (KubeletNotReady: PLEG is not healthy)".into(),
        evidence: String::new(),
    }
}

#[tokio::test]
async fn keep_on_failure_keeps_the_cluster_only_when_it_failed() {
    for (what, keep) in [("fail", true), ("ok", false)] {
        let log = Log::default();
        let file = scenario_with(&[(what, "")]);
        let tmp = tempfile::tempdir().unwrap();
        let opts = RunOptions {
            artifacts_root: Some(tmp.path().into()),
            quiet: true,
            no_signal_handler: true,
            keep_on_failure: true,
            ..Default::default()
        };
        let exec = FakeSteps {
            log: log.clone(),
            calls: AtomicU32::new(0),
        };
        run_with(
            &file,
            &opts,
            Box::new(FakeProvider::new(log.clone())),
            &exec,
        )
        .await;
        assert_eq!(
            log.lines().last().unwrap(),
            &format!("teardown keep={keep}")
        );
    }
}

#[test]
fn an_unknown_variable_fails_validation_before_anything_runs() {
    let file = scenario::parse_str(
        &PathBuf::from("v.yaml"),
        "name: v\nsteps:\n  - http: { url: \"${nope.url}\" }\n".into(),
    )
    .unwrap();
    let d = scenario::validate(&file, &Default::default());
    assert_eq!(d.len(), 1);
    assert!(
        d[0].to_string()
            .starts_with("v.yaml:3:19: unknown variable `${nope.url}`"),
        "{}",
        d[0]
    );
}

/// Runs every step kind as a no-op that captures placeholder values, recording each step.
struct RecordAll(Log);

impl Executor for RecordAll {
    fn execute<'a>(
        &'a self,
        kind: &'a StepKind,
        _ctx: &'a mut Context,
        _deadline: Instant,
    ) -> BoxFuture<'a, Result<Outputs, StepError>> {
        match kind {
            StepKind::IstioUpgrade(u) => self.0.push(format!("istio-upgrade {} {}", u.to, u.mode)),
            k => self.0.push(k.kind_name()),
        }
        let mut out = Outputs::new();
        // values shaped like what the steps record (the runner checks resolved specs)
        for k in kind.spec().capture_keys() {
            let v = match *k {
                "url" => "http://127.0.0.1:1",
                "port" => "1",
                "host" => "127.0.0.1",
                _ => "127.0.0.1:1",
            };
            out.insert((*k).into(), v.into());
        }
        Box::pin(async move { Ok(out) })
    }
}

async fn run_file(file: &scenario::ScenarioFile, opts: RunOptions) -> harness::results::RunResult {
    run_file_logged(file, opts).await.0
}

async fn run_file_logged(
    file: &scenario::ScenarioFile,
    opts: RunOptions,
) -> (harness::results::RunResult, Vec<String>) {
    let tmp = tempfile::tempdir().unwrap();
    let opts = RunOptions {
        artifacts_root: Some(tmp.path().to_path_buf()),
        quiet: true,
        no_signal_handler: true,
        ..opts
    };
    let log = Log::default();
    let r = run_with(
        file,
        &opts,
        Box::new(FakeProvider::new(log.clone())),
        &RecordAll(log.clone()),
    )
    .await;
    (r, log.lines())
}

/// bookinfo-demo traces to Jaeger on every supported Istio: over OTLP with a Telemetry
/// resource from 1.22, by the demo profile's Zipkin default before. `when:` picks the steps.
/// And `--set gateway=gateway-api` takes today's Gateway API path instead of the classic
/// ingress gateway (and only then fetches the Gateway API CRDs).
#[rstest]
#[case::istio_1_12("1.12.1", "traces to Jaeger's Zipkin port by default", "classic")]
#[case::istio_1_30("1.30.3", "traces over OTLP to Jaeger", "classic")]
#[case::istio_1_30_gateway_api("1.30.3", "traces over OTLP to Jaeger", "gateway-api")]
#[tokio::test]
async fn bookinfo_demo_picks_its_tracing_steps_by_istio_version(
    #[case] version: &str,
    #[case] install: &str,
    #[case] gateway: &str,
) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let test = "bookinfo_demo_picks_its_tracing_steps_by_istio_version";
    let Some(release) = release::istio_release("1.30.3", test).await else {
        return;
    };
    if gateway == "gateway-api" && release::gateway_api("v1.5.1", test).await.is_none() {
        return;
    }
    let file = scenario::load(&root.join("scenarios/bookinfo-demo.yaml")).unwrap();
    let r = run_file(
        &file,
        RunOptions {
            istio_version: Some(version.into()),
            istio_dir: Some(release),
            params: [("gateway".to_string(), gateway.to_string())].into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(r.status, Status::Passed, "{:?}", r.failure_message());
    let ran: Vec<&str> = r
        .steps
        .iter()
        .filter(|s| s.status == Status::Passed && s.kind != "istio-release" && s.kind != "cluster")
        .map(|s| s.name.as_str())
        .collect();
    let skipped: Vec<&str> = r
        .steps
        .iter()
        .filter(|s| s.status == Status::Skipped)
        .map(|s| s.name.as_str())
        .collect();
    let installs: Vec<&&str> = ran
        .iter()
        .filter(|n| n.starts_with("install Istio"))
        .collect();
    assert_eq!(installs.len(), 1, "{ran:?}");
    assert!(installs[0].contains(install), "{installs:?}");
    assert_eq!(
        ran.contains(&"trace every request to Jaeger"),
        version == "1.30.3",
        "{ran:?}"
    );
    let tracing_skips = if version == "1.30.3" { 1 } else { 2 };
    let gateway_skips = if gateway == "classic" { 5 } else { 2 };
    // and the one lab-only step, skipped on every other provider
    assert!(
        skipped.contains(&"use the loaded Kiali image (the lab has no registry)"),
        "{skipped:?}"
    );
    assert_eq!(
        skipped.len(),
        tracing_skips + gateway_skips + 1,
        "{skipped:?}"
    );
    assert_eq!(
        ran.contains(&"find the ingress gateway"),
        gateway == "classic"
    );
    for step in [
        "expose the Gateway on a node port",
        "the Gateway is programmed",
    ] {
        assert_eq!(ran.contains(&step), gateway != "classic", "{step}: {ran:?}");
    }
    let fetched = r.steps.iter().any(|s| s.kind == "gateway-api");
    assert_eq!(fetched, gateway != "classic", "CRDs fetched only when used");
    let reason = r
        .steps
        .iter()
        .find(|s| s.status == Status::Skipped && s.name.starts_with("install Istio"))
        .and_then(|s| s.outputs.get("skipped"))
        .and_then(|v| v.as_str())
        .unwrap()
        .to_string();
    assert!(reason.contains(&format!("({version} ")), "{reason}");
    assert!(reason.ends_with("is false"), "{reason}");
}

#[tokio::test]
async fn params_default_and_override_and_a_bad_condition_fails_the_step() {
    let text = "name: p\ncluster: { provider: lab }\nparams: { mode: safe }\nsteps:\n  - name: only unsafe\n    when: ${param.mode} == unsafe\n    http: { url: ok }\n  - name: always\n    http: { url: ok }\n  - name: ordering text\n    when: ${param.mode} >= 1.2\n    http: { url: ok }\n";
    let file = scenario::parse_str(&PathBuf::from("p.yaml"), text.into()).unwrap();
    let r = run_file(&file, RunOptions::default()).await;
    assert_eq!(r.steps[1].status, Status::Skipped);
    assert_eq!(
        r.steps[1].outputs["skipped"],
        "when: ${param.mode} == unsafe (safe == unsafe) is false"
    );
    assert_eq!(r.steps[2].status, Status::Passed);
    assert_eq!(r.steps[3].status, Status::Failed);
    let e = r.steps[3].error.as_deref().unwrap();
    assert!(
        e.contains("`>=` compares versions") && e.contains("\"safe\""),
        "{e}"
    );

    let opts = RunOptions {
        params: [("mode".to_string(), "unsafe".to_string())].into(),
        ..Default::default()
    };
    let r = run_file(&file, opts).await;
    assert_eq!(r.steps[1].status, Status::Passed);
}

/// upgrade.yaml: install, Bookinfo, traffic on, one upgrade step with the mode and target of
/// its params (or of --set), checks, traffic off.
#[rstest]
#[case::canary_by_default(&[], "istio-upgrade 1.30.3 canary")]
#[case::in_place(&[("mode", "in-place"), ("to", "1.30.4")], "istio-upgrade 1.30.4 in-place")]
#[tokio::test]
async fn upgrade_scenario_runs_one_upgrade_between_traffic_on_and_off(
    #[case] set: &[(&str, &str)],
    #[case] upgrade: &str,
) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let test = "upgrade_scenario_runs_one_upgrade_between_traffic_on_and_off";
    let Some(release) = release::istio_release("1.12.1", test).await else {
        return;
    };
    let file = scenario::load(&root.join("scenarios/upgrade.yaml")).unwrap();
    let (r, log) = run_file_logged(
        &file,
        RunOptions {
            istio_dir: Some(release),
            params: set
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(r.status, Status::Passed, "{:?}", r.failure_message());
    let steps: Vec<&str> = log
        .iter()
        .map(|s| s.as_str())
        .filter(|s| *s != "create" && !s.starts_with("teardown"))
        .collect();
    let on = steps.iter().position(|s| *s == "traffic").unwrap();
    let up = steps.iter().position(|s| *s == upgrade).unwrap();
    let off = steps.iter().position(|s| *s == "traffic-stop").unwrap();
    assert!(on < up && up < off, "{steps:?}");
    assert_eq!(
        steps
            .iter()
            .filter(|s| s.starts_with("istio-upgrade"))
            .count(),
        1
    );
    assert_eq!(steps[0], "istio-install");
}
