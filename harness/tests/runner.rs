//! Runner behavior with a fake provider and a fake executor (no cluster): teardown after a
//! failing and after a panicking step, retries stopping at the limit, the step timeout, and
//! interruption.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use harness::Outputs;
use harness::cluster::{ClusterInfo, ClusterRequest, Provider};
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

struct FakeProvider(Log);

impl Provider for FakeProvider {
    fn name(&self) -> &'static str {
        "fake"
    }
    fn needs(&self) -> &'static str {
        "nothing"
    }
    fn check(&self) -> Result<(), String> {
        Ok(())
    }
    fn create<'a>(
        &'a mut self,
        req: &'a ClusterRequest,
    ) -> BoxFuture<'a, Result<ClusterInfo, StepError>> {
        self.0.push("create");
        Box::pin(async move {
            Ok(ClusterInfo {
                provider: "fake".into(),
                kubeconfig: req.artifacts.join("kubeconfig"),
                context: None,
                node_address: Some("127.0.0.1".into()),
                name: "fake".into(),
            })
        })
    }
    fn teardown(&mut self, keep: bool) -> BoxFuture<'_, Result<String, StepError>> {
        self.0.push(format!("teardown keep={keep}"));
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
        _deadline: Instant,
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
    let r = run_with(&file, &opts, Box::new(FakeProvider(log.clone())), &exec).await;
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
    let r = run_with(&file, &opts, Box::new(FakeProvider(log.clone())), &exec).await;
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
        run_with(&file, &opts, Box::new(FakeProvider(log.clone())), &exec).await;
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
