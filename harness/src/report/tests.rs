//! The report builders on a synthetic run: a rollout with background traffic whose requests
//! fail in a burst while one step runs, a retried step, a failed check and a step not run.

use std::path::Path;

use serde_json::json;

use super::timeline::{self, Traffic};
use super::{html, inspect, svg};
use crate::results::{RunResult, Status, StepResult};

fn step(index: usize, kind: &str, name: &str, ms: u64, status: Status) -> StepResult {
    StepResult {
        index,
        kind: kind.into(),
        name: name.into(),
        location: format!("s.yaml:{}:5", index * 4 + 1),
        status,
        duration_ms: ms,
        attempts: u32::from(status != Status::Skipped),
        outputs: Default::default(),
        error: None,
    }
}

/// The run, and the CSV its traffic wrote: 20 requests/s from the end of step 2 for 9.5 s,
/// of which those sent between 2 and 3.5 s into step 4 fail.
fn rollout(failed: bool) -> (RunResult, String) {
    let mut steps = vec![
        step(0, "cluster", "cluster: create (lab)", 2000, Status::Passed),
        step(1, "apply", "deploy | Bookinfo", 1000, Status::Passed),
        step(2, "traffic", "traffic on", 5, Status::Passed),
        step(3, "patch", "roll productpage", 50, Status::Passed),
        step(4, "wait", "productpage v2 rolled out", 6000, Status::Passed),
        step(5, "http", "the page", 1500, Status::Passed),
        step(6, "traffic-stop", "traffic off", 2000, Status::Passed),
        step(7, "http", "after", 0, Status::Skipped),
    ];
    steps[2]
        .outputs
        .insert("background".into(), json!("rollout"));
    steps[4]
        .outputs
        .insert("deployments".into(), json!(["productpage-v1"]));
    steps[5].attempts = 3;
    let spans = {
        let r = run_of(steps.clone(), Status::Passed);
        timeline::spans(&r)
    };
    let origin = spans[2].end_ms;
    let wait = &spans[4];
    let mut csv = String::from("at_ms,latency_ms,outcome,ok,reviews,step,detail\n");
    let mut failures = 0;
    for k in 0..190u64 {
        let at = k * 50;
        let clock = origin + at;
        let in_step = spans
            .iter()
            .rev()
            .find(|s| s.start_ms <= clock && s.attempts > 0)
            .unwrap();
        let burst = clock >= wait.start_ms + 2000 && clock < wait.start_ms + 3500;
        failures += u64::from(burst);
        let (outcome, ok, reviews) = if burst {
            ("503", false, "")
        } else {
            ("200", true, ["v1", "v2", "v3"][k as usize % 3])
        };
        csv.push_str(&format!(
            "{at},{}.5,{outcome},{ok},{reviews},\"{}\",\"\"\n",
            4 + k % 7,
            in_step.name
        ));
    }
    let stop = &mut steps[6];
    stop.outputs.insert("total".into(), json!(190));
    stop.outputs.insert("failed".into(), json!(failures));
    stop.outputs.insert("latency-p50-ms".into(), json!(7));
    stop.outputs.insert("latency-p99-ms".into(), json!(10));
    stop.outputs.insert(
        "histogram".into(),
        json!({"200": 190 - failures, "503": failures}),
    );
    let mut status = Status::Passed;
    if failed {
        stop.status = Status::Failed;
        stop.error = Some(format!(
            "background traffic `rollout`: {failures} of 190 requests failed"
        ));
        status = Status::Failed;
    }
    let mut r = run_of(steps, status);
    if failed {
        r.diagnostics = Some("target/istio-e2e/r1/diagnostics/step-06".into());
    }
    (r, csv)
}

fn run_of(steps: Vec<StepResult>, status: Status) -> RunResult {
    RunResult {
        scenario: "lab-rollout".into(),
        file: "scenarios/lab-rollout.yaml".into(),
        run_id: "r1".into(),
        provider: "lab".into(),
        kubernetes: Some("v1.20.2".into()),
        istio: None,
        status,
        started: "2026-12-03T18:00:00Z".into(),
        duration_ms: 12_600,
        steps,
        teardown: vec![],
        artifacts: String::new(),
        diagnostics: None,
        snapshots: Default::default(),
        params: Default::default(),
        timeout_scale: None,
    }
}

fn written(failed: bool) -> (RunResult, tempfile::TempDir) {
    let (mut r, csv) = rollout(failed);
    let dir = tempfile::tempdir().unwrap();
    r.artifacts = dir.path().display().to_string();
    std::fs::write(dir.path().join("traffic-rollout.csv"), csv).unwrap();
    super::write_all(&r, dir.path()).unwrap();
    (r, dir)
}

#[test]
fn the_timeline_has_a_bar_per_step_coloured_by_status_with_retries_striped() {
    let (r, dir) = written(true);
    let page = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    let bars = inspect::step_bars(&page);
    assert_eq!(bars.len(), r.steps.len(), "{bars:?}");
    let status: Vec<&str> = bars.iter().map(|b| b.status.as_str()).collect();
    assert_eq!(
        status,
        [
            "passed", "passed", "passed", "passed", "passed", "passed", "failed", "skipped"
        ]
    );
    let retried: Vec<usize> = bars.iter().filter(|b| b.retried).map(|b| b.step).collect();
    assert_eq!(retried, [5], "only the step with 3 attempts is striped");
    assert!(page.contains("↻ 3 attempts"));
}

#[test]
fn the_failure_burst_lies_inside_the_band_of_the_step_it_happened_in() {
    let (_, dir) = written(true);
    let page = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    let charts = inspect::traffic_charts(&page);
    assert_eq!(charts.len(), 1);
    let c = &charts[0];
    // Steps 2 (traffic on) to 6 (traffic off) ran while the traffic flowed.
    let banded: Vec<usize> = c.bands.iter().map(|b| b.step).collect();
    assert_eq!(banded, [2, 3, 4, 5, 6]);
    assert_eq!(
        c.request_bars, 10,
        "9.5 s of traffic: 10 seconds with requests"
    );
    assert!(c.p99_line);
    // Failures from 2 to 3.5 s into the wait: two or three seconds of bars, all inside its band.
    assert!((2..=3).contains(&c.failures.len()), "{:?}", c.failures);
    assert!(
        c.failures
            .iter()
            .all(|f| f.step == "productpage v2 rolled out")
    );
    assert_eq!(c.misplaced_failures(), Vec::<String>::new());
    let wait = c.bands.iter().find(|b| b.step == 4).unwrap();
    for f in &c.failures {
        assert!(
            f.x0 >= wait.x0 && f.x1 <= wait.x1 + 1.0,
            "{f:?} outside {wait:?}"
        );
    }
    assert!(page.contains("30 failed while `04 productpage v2 rolled out` ran"));
}

#[test]
fn a_failure_bar_outside_its_band_is_found() {
    let (r, csv) = rollout(true);
    let requests = timeline::parse_csv(&csv).unwrap();
    let spans = timeline::spans(&r);
    // The same traffic placed 3 s too early: its failures fall in the band of step 3's end
    // and before the wait began.
    let t = Traffic {
        name: "rollout".into(),
        csv: String::new(),
        origin_ms: spans[2].end_ms - 3000,
        requests,
    };
    let chart = svg::traffic_chart(&t, &spans, &svg::Limits::of(&[&t]));
    let c = &inspect::traffic_charts(&chart)[0];
    assert!(!c.misplaced_failures().is_empty(), "{c:?}");
}

#[test]
fn the_reviews_split_is_a_bar_per_version() {
    let (_, dir) = written(false);
    let page = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    let doc = scraper::Html::parse_document(&page);
    let sel = scraper::Selector::parse("svg.reviews rect.rv").unwrap();
    let bars: Vec<(String, String)> = doc
        .select(&sel)
        .map(|e| {
            (
                e.value().attr("data-version").unwrap().into(),
                e.value().attr("data-count").unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        bars,
        [
            ("v1".into(), "54".into()),
            ("v2".into(), "53".into()),
            ("v3".into(), "53".into())
        ]
    );
}

#[test]
fn the_page_is_self_contained_and_links_the_run_files() {
    let (_, dir) = written(true);
    let page = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>"));
    for banned in [
        "<script", "<link", "<img", "src=", "https:", "@import", "url(http",
    ] {
        assert!(!page.contains(banned), "the page has {banned}");
    }
    let http: Vec<&str> = page.matches("http://").collect();
    assert_eq!(
        http.len(),
        page.matches("xmlns=\"http://www.w3.org/2000/svg\"").count(),
        "only SVG namespaces"
    );
    for link in [
        "href=\"results.json\"",
        "href=\"junit.xml\"",
        "href=\"summary.md\"",
        "href=\"traffic-rollout.csv\"",
    ] {
        assert!(page.contains(link), "no {link}");
    }
    assert!(page.contains("class=\"failure\""), "the failure is shown");
    assert!(
        page.contains("deploy | Bookinfo"),
        "names are escaped, not dropped"
    );
}

#[test]
fn the_summary_says_what_the_steps_did_and_has_a_gantt() {
    let (_, ok) = written(false);
    let md = std::fs::read_to_string(ok.path().join("summary.md")).unwrap();
    assert!(md.contains("- **06 traffic off** (traffic-stop): 190 requests, 30 failed, latency p50 7 ms, p99 10 ms, statuses 200×160, 503×30, reviews v1 34% · v2 33% · v3 33%"), "{md}");
    let (r, dir) = written(true);
    let md = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
    assert!(
        md.contains("| 1 | deploy \\| Bookinfo | apply | passed | 1.0s |"),
        "{md}"
    );
    assert!(
        md.contains("- **04 productpage v2 rolled out** (wait): rolled out: productpage-v1"),
        "{md}"
    );
    assert!(
        md.contains("background traffic `rollout` started: 190 requests, 30 failed"),
        "{md}"
    );
    assert!(md.contains("reviews v1 34% · v2 33% · v3 33%"), "{md}");
    assert!(md.contains("failed after 1 attempt(s): background traffic `rollout`: 30 of 190 requests failed — diagnostics: `target/istio-e2e/r1/diagnostics/step-06`"), "{md}");
    let gantt = gantt_block(&md);
    assert!(
        gantt.starts_with("gantt\n    title lab-rollout on lab (FAILED)\n    dateFormat x\n"),
        "{gantt}"
    );
    assert!(
        gantt.contains("    00 cluster  create (lab) :done, 0, 2000\n"),
        "a colon would end the task name: {gantt}"
    );
    assert!(
        gantt.contains("    06 traffic off :crit, 10555, 12555\n"),
        "{gantt}"
    );
    assert!(
        gantt.contains("    rollout (190 requests, 30 failed) :active, 3005, "),
        "{gantt}"
    );
    assert!(!gantt.contains("07 after"), "a step not run has no bar");
    assert_eq!(
        r.steps.len() - 1 + 1,
        gantt.matches(" :").count(),
        "a task per step run and per traffic"
    );
}

/// The Mermaid source of a summary.
pub(crate) fn gantt_block(md: &str) -> String {
    let start = md.find("```mermaid\n").expect("a mermaid block") + "```mermaid\n".len();
    let end = start + md[start..].find("```").expect("its end");
    md[start..end].to_string()
}

#[test]
fn compare_shows_both_runs_on_shared_scales_and_the_differences() {
    let (ra, da) = written(false);
    let (rb, db) = written(true);
    let diffs = crate::compare::compare(&ra, &rb);
    assert!(!diffs.is_empty());
    let out = tempfile::tempdir().unwrap();
    let page = html::compare_page((&ra, da.path()), (&rb, db.path()), &diffs, out.path());
    let charts = inspect::traffic_charts(&page);
    assert_eq!(charts.len(), 2);
    assert_eq!(
        charts[0].bands, charts[1].bands,
        "the same steps at the same places"
    );
    assert!(charts[0].failures.len() == charts[1].failures.len());
    assert_eq!(inspect::step_bars(&page).len(), 2 * ra.steps.len());
    assert!(page.contains("<h2>Differences ("), "{page}");
    assert!(
        page.contains("<td><code>status</code></td><td>passed</td><td>failed</td>"),
        "{page}"
    );
    // Links go from the page's directory to each run's files.
    let rel = html::href(out.path(), &da.path().join("results.json"));
    assert!(
        rel.starts_with("../") && rel.ends_with("/results.json"),
        "{rel}"
    );
    assert!(page.contains(&format!("href=\"{rel}\"")));
    // Unique pattern ids, so both timelines keep their stripes.
    assert!(page.contains("id=\"run-a-retry\"") && page.contains("id=\"run-b-retry\""));
}

#[test]
fn a_missing_csv_is_said_not_fatal() {
    let (mut r, _) = rollout(false);
    let dir = tempfile::tempdir().unwrap();
    r.artifacts = dir.path().display().to_string();
    super::write_all(&r, dir.path()).unwrap();
    let page = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    assert!(
        page.contains("traffic-rollout.csv") && page.contains("cannot read"),
        "{page}"
    );
    assert!(inspect::traffic_charts(&page).is_empty());
    assert!(Path::new(&dir.path().join("summary.md")).exists());
}
