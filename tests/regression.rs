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
    istio_e2e_with(args, &[])
}

/// [`istio_e2e`] with extra environment variables.
fn istio_e2e_with(
    args: &[&str],
    env: &[(&str, &Path)],
) -> Result<(Option<i32>, String, String), Failed> {
    let out = Command::new(env!("CARGO_BIN_EXE_istio-e2e"))
        .args(args)
        .envs(env.iter().copied())
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

/// `istio-upgrade` (canary) end to end on the lab, with the stand-in istioctl of
/// fixtures/istio/standin-release (istioctl cannot be had here; it creates and deletes the
/// istiod Deployments with kubectl, as the real one would): the new revision is installed and
/// waited for, the namespace relabeled, every Bookinfo workload restarted, the sidecars and the
/// gateway found at the new version, the old revision uninstalled, all while background
/// traffic through the gateway loses no request.
fn canary_upgrade_on_the_lab_drops_no_request() -> Result<(), Failed> {
    upgrade_on_the_lab("canary")
}

/// The same in place: `istioctl upgrade`, the workloads restarted, no namespace relabeled, no
/// revision removed.
fn in_place_upgrade_on_the_lab_drops_no_request() -> Result<(), Failed> {
    upgrade_on_the_lab("in-place")
}

fn upgrade_on_the_lab(mode: &str) -> Result<(), Failed> {
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let log = tmp.path().join("istioctl.log");
    let release = root().join("fixtures/istio/standin-release");
    let m = root().join("fixtures/lab/manifests");
    let scenario = format!(
        r#"name: lab-canary-upgrade
cluster: {{ provider: lab }}
istio: {{ version: 1.12.1, profile: minimal }}
steps:
  - label: {{ namespace: default, labels: {{ istio-injection: enabled }} }}
  - apply: {{ files: ["{gw}", "{bi}"] }}
  - timeout: 3m
    wait: {{ deployments: {{ namespace: default }} }}
  - timeout: 3m
    wait: {{ deployments: {{ namespace: istio-system, names: [istio-ingressgateway] }} }}
  - ingress: {{ service: istio-ingressgateway, namespace: istio-system, port: http2, capture: gateway }}
  - forward: {{ to: "${{gateway.address}}" }}
  - retry: {{ attempts: 10, backoff: 1s }}
    http: {{ url: "${{forward.url}}/productpage", expect: {{ status: 200 }} }}
  - traffic: {{ url: "${{forward.url}}/productpage", background: upgrade, concurrency: 4 }}
  - name: {mode} upgrade to 1.40
    timeout: 5m
    istio-upgrade: {{ to: "1.40", mode: {mode}, dir: "{rel}", namespaces: [default] }}
  - name: the page after the upgrade
    http: {{ url: "${{forward.url}}/productpage", expect: {{ status: 200 }} }}
  - traffic-stop: {{ name: upgrade, expect: {{ max-failures: 0, min-requests: 100 }} }}
"#,
        gw = m.join("istio-system.yaml").display(),
        bi = m.join("bookinfo.yaml").display(),
        rel = release.display(),
    );
    let file = tmp.path().join("lab-canary-upgrade.yaml");
    std::fs::write(&file, scenario).map_err(|e| e.to_string())?;
    let art = tmp.path().join("runs");
    let (code, _, _) = istio_e2e_with(
        &[
            "run",
            file.to_str().unwrap(),
            "--artifacts",
            art.to_str().unwrap(),
        ],
        &[("ISTIOCTL_LOG", &log)],
    )?;
    if code != Some(0) {
        return Err(format!("the {mode} upgrade run failed: {code:?}").into());
    }
    let run = runs(&art).pop().ok_or("no run directory")?;
    let r = harness::compare::load(&run)?;
    let up = r
        .steps
        .iter()
        .find(|s| s.kind == "istio-upgrade")
        .ok_or("no istio-upgrade step")?;
    let o = &up.outputs;
    let restarted = o["restarted"].as_array().map(|a| a.len()).unwrap_or(0);
    let revision = if mode == "canary" {
        serde_json::json!("1-40")
    } else {
        serde_json::Value::Null
    };
    let got_revision = o.get("revision").cloned().unwrap_or_default();
    if o["from"] != "1.12.1" || o["to"] != "1.40" || got_revision != revision || restarted != 6 {
        return Err(format!("istio-upgrade outputs: {o:?}").into());
    }
    // Six Bookinfo sidecars and the gateway run the new proxy.
    if o["proxies"] != 7 {
        return Err(format!("proxies at 1.40: {}", o["proxies"]).into());
    }
    let calls = std::fs::read_to_string(&log).map_err(|e| e.to_string())?;
    let calls: Vec<&str> = calls.lines().collect();
    let own = format!("--kubeconfig {}", run.join("kubeconfig").display());
    let want = if mode == "canary" {
        vec![
            format!("install --set profile=minimal -y --revision 1-40 {own}"),
            format!("uninstall --revision default -y {own}"),
        ]
    } else {
        vec![format!("upgrade --set profile=minimal -y {own}")]
    };
    if calls != want {
        return Err(format!("istioctl calls {calls:?}, expected {want:?}").into());
    }
    let stop = r.steps.last().ok_or("no steps")?;
    eprintln!(
        "{mode} upgrade: {} requests, {} failed",
        stop.outputs["total"], stop.outputs["failed"]
    );
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
            "regression::canary_upgrade_on_the_lab_drops_no_request",
            canary_upgrade_on_the_lab_drops_no_request,
        ),
        lab_trial(
            "regression::in_place_upgrade_on_the_lab_drops_no_request",
            in_place_upgrade_on_the_lab_drops_no_request,
        ),
        lab_trial(
            "regression::compare_two_lab_runs_and_a_changed_reviews_version",
            compare_two_lab_runs_and_a_changed_reviews_version,
        ),
    ];
    libtest_mimic::run(&args, trials).exit_code()
}
