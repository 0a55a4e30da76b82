//! The lab through the real `istio-e2e` binary: after a passing run, a failing run, and SIGINT in
//! the middle of a wait step, no lab container, volume or mount is left behind.
//!
//! Reported as ignored, with the reason, when the lab cannot run here; with
//! `ISTIO_E2E_REQUIRE=1` (as in CI) it fails instead.

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use libtest_mimic::{Arguments, Failed};
use support::lab_trial;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// What one run of the binary printed and how it ended.
struct Run {
    code: Option<i32>,
    stderr: String,
}

impl Run {
    /// The run id, from the `reports: <artifacts>/<run-id>` line.
    fn run_id(&self) -> Option<String> {
        self.stderr
            .lines()
            .find_map(|l| l.strip_prefix("reports: "))
            .and_then(|p| {
                Path::new(p.trim())
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
            })
    }

    /// The container id, from the teardown line `removed lab container <id>`.
    fn container_id(&self) -> Option<String> {
        self.stderr.lines().find_map(|l| {
            l.split("removed lab container ")
                .nth(1)
                .map(|s| s.trim().to_string())
        })
    }
}

/// Runs `istio-e2e run <scenario>`; `interrupt_at` sends SIGINT once a stderr line contains it.
fn run_binary(scenario: &str, artifacts: &Path, interrupt_at: Option<&str>) -> Result<Run, Failed> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_istio-e2e"))
        .args(["run", scenario, "--artifacts"])
        .arg(artifacts)
        .current_dir(root())
        .env("CI", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start istio-e2e: {e}"))?;
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("  | {line}");
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut out = String::new();
    let mut interrupted = interrupt_at.is_none();
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                if !interrupted && interrupt_at.is_some_and(|m| line.contains(m)) {
                    // The runner has entered the wait step: interrupt it as Ctrl-C would.
                    let st = Command::new("kill")
                        .args(["-INT", &child.id().to_string()])
                        .status()
                        .map_err(|e| e.to_string())?;
                    if !st.success() {
                        return Err("kill -INT failed".into());
                    }
                    interrupted = true;
                }
                out.push_str(&line);
                out.push('\n');
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err(format!("istio-e2e did not finish within 300 s:\n{out}").into());
        }
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    if !interrupted {
        return Err(format!("never saw {interrupt_at:?} to interrupt at:\n{out}").into());
    }
    Ok(Run {
        code: status.code(),
        stderr: out,
    })
}

fn docker_lines(args: &[&str]) -> Vec<String> {
    Command::new("docker")
        .args(args)
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(String::from)
                .filter(|l| !l.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// Nothing of this run is left: containers and volumes with its label, mounts naming the
/// container, the container itself.
fn nothing_left(run: &Run) -> Result<(), Failed> {
    let id = run.run_id().ok_or("no `reports:` line in the output")?;
    let label = format!("label=io.istio-e2e.run={id}");
    let containers = docker_lines(&["ps", "-aq", "--filter", &label]);
    if !containers.is_empty() {
        return Err(format!("containers left: {containers:?}").into());
    }
    let volumes = docker_lines(&["volume", "ls", "-q", "--filter", &label]);
    if !volumes.is_empty() {
        return Err(format!("volumes left: {volumes:?}").into());
    }
    let cid = run
        .container_id()
        .ok_or("no `removed lab container` line: teardown did not run")?;
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    if let Some(m) = mounts.lines().find(|l| l.contains(&cid)) {
        return Err(format!("a mount of container {cid} is left: {m}").into());
    }
    if !docker_lines(&["ps", "-aq", "--filter", &format!("id={cid}")]).is_empty() {
        return Err(format!("container {cid} still exists").into());
    }
    Ok(())
}

fn artifacts() -> PathBuf {
    tempfile::tempdir().unwrap().keep()
}

fn passing_run_leaves_nothing() -> Result<(), Failed> {
    let run = run_binary("fixtures/scenarios/lab/passes.yaml", &artifacts(), None)?;
    if run.code != Some(0) {
        return Err(format!("exit {:?}, expected 0:\n{}", run.code, run.stderr).into());
    }
    nothing_left(&run)
}

fn failing_run_fails_clearly_and_leaves_nothing() -> Result<(), Failed> {
    let dir = artifacts();
    let run = run_binary("fixtures/scenarios/lab/fails.yaml", &dir, None)?;
    if run.code != Some(1) {
        return Err(format!("exit {:?}, expected 1:\n{}", run.code, run.stderr).into());
    }
    let want =
        "fixtures/scenarios/lab/fails.yaml:10:5: step 4 `a check that fails on purpose` (exec)";
    if !run.stderr.contains(want) || !run.stderr.contains("an answer that never comes") {
        return Err(format!(
            "the failure message does not say where and what:\n{}",
            run.stderr
        )
        .into());
    }
    let id = run.run_id().ok_or("no run id")?;
    let bundle = dir.join(&id).join("diagnostics/step-04");
    for f in [
        "step-error.txt",
        "pods.lifecycle.txt",
        "events.lifecycle.txt",
    ] {
        if !bundle.join(f).is_file() {
            return Err(format!("diagnostics file {} missing", bundle.join(f).display()).into());
        }
    }
    nothing_left(&run)
}

fn sigint_in_a_wait_step_tears_down() -> Result<(), Failed> {
    let t0 = Instant::now();
    let run = run_binary(
        "fixtures/scenarios/lab/waits-forever.yaml",
        &artifacts(),
        Some("START 02 wait for pods that never come"),
    )?;
    if run.code != Some(130) {
        return Err(format!("exit {:?}, expected 130:\n{}", run.code, run.stderr).into());
    }
    if !run.stderr.contains("interrupted by Ctrl-C") {
        return Err(format!("no interruption in the output:\n{}", run.stderr).into());
    }
    eprintln!(
        "interrupted run took {:.1}s in all",
        t0.elapsed().as_secs_f64()
    );
    nothing_left(&run)
}

fn main() -> std::process::ExitCode {
    let mut args = Arguments::from_args();
    args.test_threads = Some(1);
    let trials = vec![
        lab_trial(
            "lifecycle::passing_run_leaves_nothing",
            passing_run_leaves_nothing,
        ),
        lab_trial(
            "lifecycle::failing_run_fails_clearly_and_leaves_nothing",
            failing_run_fails_clearly_and_leaves_nothing,
        ),
        lab_trial(
            "lifecycle::sigint_in_a_wait_step_tears_down",
            sigint_in_a_wait_step_tears_down,
        ),
    ];
    libtest_mimic::run(&args, trials).exit_code()
}
