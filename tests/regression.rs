//! Upgrade regression on the lab, through the real `istio-e2e` binary:
//!
//! - `scenarios/lab-rollout.yaml --set rollout=unsafe` (productpage rolled with
//!   `maxUnavailable: 100%`, no readiness probes, no drain) must fail, and its message must give
//!   the number of failed requests out of at least 2000 and the steps they fell in. (The safe
//!   variant, with zero failures, runs as the e2e trial `lab-rollout::lab::...`.)
//! - `compare --from 1.12.1 --to 1.12.1 scenarios/lab-bookinfo.yaml` (two lab runs of the same
//!   thing) reports no differences; a third run whose reviews-v3 stand-in serves as v2 (black
//!   stars) differs from the first in the reviews versions the traffic saw, and in nothing else.
//!
//! Reported as ignored, with the reason, when the lab cannot run here; with
//! `ISTIO_E2E_REQUIRE=1` (as in CI) it fails instead.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use libtest_mimic::{Arguments, Failed};
use support::lab_trial;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs the binary from the repository root; returns the exit code, stdout and stderr.
fn istio_e2e(args: &[&str]) -> Result<(Option<i32>, String, String), Failed> {
    let out = Command::new(env!("CARGO_BIN_EXE_istio-e2e"))
        .args(args)
        .current_dir(root())
        .env("CI", "1")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot start istio-e2e: {e}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    eprintln!("$ istio-e2e {}\n{stderr}", args.join(" "));
    Ok((
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr,
    ))
}

/// Run directories under `root`, oldest first (run ids start with the UTC time).
fn runs(root: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn unsafe_rollout_fails_with_the_count() -> Result<(), Failed> {
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let art = tmp.path().to_str().unwrap();
    let (code, _, err) = istio_e2e(&[
        "run",
        "scenarios/lab-rollout.yaml",
        "--set",
        "rollout=unsafe",
        "--artifacts",
        art,
    ])?;
    if code != Some(1) {
        return Err(format!("expected exit 1 (the rollout dropped requests), got {code:?}").into());
    }
    let re = regex::Regex::new(
        r"background traffic `rollout` to \S+: (\d+) of (\d+) requests failed \(at most 0 allowed\)",
    )
    .unwrap();
    let caps = re
        .captures(&err)
        .ok_or("the failure does not give the count of failed requests")?;
    let failed: u64 = caps[1].parse().unwrap();
    let total: u64 = caps[2].parse().unwrap();
    if failed == 0 || total < 2000 {
        return Err(format!("{failed} of {total}: expected failures out of >= 2000").into());
    }
    if !err.contains("failures by step: ") || !err.contains("productpage") {
        return Err("the failure does not say in which steps the requests failed".into());
    }
    if !err.contains("scenarios/lab-rollout.yaml:") || !err.contains("(traffic-stop)") {
        return Err("the failure does not name the file, line and step kind".into());
    }
    // Every request is in the per-request log.
    let run = runs(tmp.path()).pop().ok_or("no run directory")?;
    let csv =
        std::fs::read_to_string(run.join("traffic-rollout.csv")).map_err(|e| e.to_string())?;
    let failed_rows = csv
        .lines()
        .skip(1)
        .filter(|l| l.contains(",false,"))
        .count() as u64;
    if csv.lines().count() as u64 != total + 1 || failed_rows != failed {
        return Err(format!(
            "traffic-rollout.csv has {} rows, {failed_rows} failed; the message said {failed} of {total}",
            csv.lines().count() - 1
        )
        .into());
    }
    eprintln!("unsafe rollout: {failed} of {total} requests failed, as it must");
    Ok(())
}

fn compare_two_lab_runs_and_a_changed_reviews_version() -> Result<(), Failed> {
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let art = tmp.path().join("runs");
    let art_s = art.to_str().unwrap();
    // A and B: the same scenario twice.
    let (code, out, _) = istio_e2e(&[
        "compare",
        "--from",
        "1.12.1",
        "--to",
        "1.12.1",
        "scenarios/lab-bookinfo.yaml",
        "--artifacts",
        art_s,
    ])?;
    if code != Some(0) || !out.contains("no differences") {
        return Err(format!("two runs of the same scenario: exit {code:?}:\n{out}").into());
    }
    // C: reviews-v3 serves as v2 (black stars).
    let manifest = std::fs::read_to_string(root().join("fixtures/lab/manifests/bookinfo.yaml"))
        .map_err(|e| e.to_string())?;
    let changed = manifest
        .replace(
            r#"{name: SERVICE_VERSION, value: "v3"}"#,
            r#"{name: SERVICE_VERSION, value: "v2"}"#,
        )
        .replace(
            r#"{name: STAR_COLOR, value: "red"}"#,
            r#"{name: STAR_COLOR, value: "black"}"#,
        );
    if changed == manifest {
        return Err("could not change the reviews-v3 stand-in".into());
    }
    let m = tmp.path().join("bookinfo-v3-as-v2.yaml");
    std::fs::write(&m, changed).map_err(|e| e.to_string())?;
    let scenario = std::fs::read_to_string(root().join("scenarios/lab-bookinfo.yaml"))
        .map_err(|e| e.to_string())?
        .replace("fixtures/lab/manifests/bookinfo.yaml", m.to_str().unwrap());
    let s = tmp.path().join("lab-bookinfo.yaml");
    std::fs::write(&s, scenario).map_err(|e| e.to_string())?;
    let (code, _, _) = istio_e2e(&["run", s.to_str().unwrap(), "--artifacts", art_s])?;
    if code != Some(0) {
        return Err(format!("the run with reviews-v3 as v2 did not pass: {code:?}").into());
    }
    let all = runs(&art);
    if all.len() != 3 {
        return Err(format!("expected 3 runs, found {all:?}").into());
    }
    let md = tmp.path().join("diff.md");
    let (code, out, _) = istio_e2e(&[
        "compare",
        all[0].to_str().unwrap(),
        all[2].to_str().unwrap(),
        "--markdown",
        md.to_str().unwrap(),
    ])?;
    if code != Some(1) {
        return Err(format!("expected exit 1 (different), got {code:?}:\n{out}").into());
    }
    let a = harness::compare::load(&all[0])?;
    let c = harness::compare::load(&all[2])?;
    let diffs = harness::compare::compare(&a, &c);
    let v3_gone = diffs.iter().any(|d| {
        d.step.ends_with("traffic through the gateway")
            && d.path == "outputs.reviews.v3"
            && d.b == "(none)"
    });
    let only_reviews = diffs.iter().all(|d| {
        d.step.ends_with("traffic through the gateway") && d.path.starts_with("outputs.reviews.")
    });
    if !v3_gone || !only_reviews {
        return Err(format!("expected only the reviews versions to differ:\n{out}").into());
    }
    let markdown = std::fs::read_to_string(&md).map_err(|e| e.to_string())?;
    if !markdown.contains("outputs.reviews.v3") {
        return Err(format!("the Markdown does not show the change:\n{markdown}").into());
    }
    print!("{out}");
    Ok(())
}

fn main() -> std::process::ExitCode {
    let mut args = Arguments::from_args();
    args.test_threads = Some(1);
    let trials = vec![
        lab_trial(
            "regression::unsafe_rollout_fails_with_the_count",
            unsafe_rollout_fails_with_the_count,
        ),
        lab_trial(
            "regression::compare_two_lab_runs_and_a_changed_reviews_version",
            compare_two_lab_runs_and_a_changed_reviews_version,
        ),
    ];
    libtest_mimic::run(&args, trials).exit_code()
}
