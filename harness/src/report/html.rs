//! `report.html`: one self-contained page per run (inline CSS and SVG, no script, nothing
//! fetched) with the step timeline, the background traffic per second against the steps that
//! ran, the reviews split, what each step did, and links to the run's other files; and the
//! page of `istio-e2e compare A B --html FILE`, two runs side by side with their differences.

use std::path::{Component, Path, PathBuf};

use super::summary::{self, Detail};
use super::svg::{self, Limits, esc};
use super::timeline::{self, Span, TimelineError, Traffic};
use crate::compare::Difference;
use crate::results::{RunResult, Status};

/// The report's file name in a run's artifacts directory.
pub const REPORT_FILE: &str = "report.html";

const CSS: &str = r#"
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:0;color:#1f2328;background:#fff}
main{max-width:1000px;margin:0 auto;padding:16px 20px 40px}
main.wide{max-width:1960px}
h1{font-size:22px;margin:8px 0}
h2{font-size:17px;margin:26px 0 8px;border-bottom:1px solid #d8dee4;padding-bottom:4px}
h3{font-size:15px;margin:18px 0 6px}
.badge{display:inline-block;padding:1px 10px;border-radius:10px;color:#fff;font-weight:600;font-size:13px;vertical-align:middle}
.badge.passed{background:#2e9d4f}.badge.failed{background:#d1352b}.badge.skipped{background:#8c959f}.badge.interrupted{background:#d97706}
dl.meta{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;margin:8px 0}
dl.meta dt{color:#59636e}dl.meta dd{margin:0;word-break:break-all}
.failure{border:1px solid #d1352b;background:#fff5f4;padding:8px 12px;border-radius:6px;overflow-wrap:anywhere}
.note{color:#59636e}
svg{display:block;max-width:100%;height:auto;margin:6px 0}
svg text{font:11px system-ui,"DejaVu Sans",sans-serif;fill:#1f2328}
svg .row{fill:#f6f8fa}
svg .bar.passed{fill:#2e9d4f}svg .bar.failed{fill:#d1352b}svg .bar.skipped{fill:#8c959f}svg .bar.interrupted{fill:#d97706}svg .bar.traffic{fill:#3b7dd8}
svg .stripe{fill:rgba(255,255,255,.6)}
svg .axis{stroke:#59636e}svg .tick{stroke:#59636e}svg .grid{stroke:#e1e4e8;stroke-dasharray:3 3}
svg text.tick-label{fill:#59636e;font-size:10px}svg text.note{fill:#59636e;font-size:10px}
svg text.panel-title{font-weight:600}
svg .band{stroke:#c6d0dc;stroke-width:.6}svg .band-0{fill:#e8f0fb}svg .band-1{fill:#f7f9fc}svg .band-failed{fill:#fde4e1}svg .band-interrupted{fill:#fdf0dc}svg .band-skipped{fill:#f0f0f0}
svg text.band-label{font-size:10px;fill:#3d4750}
svg .req{fill:#3b7dd8}svg .fail{fill:#d1352b}svg .p99{fill:none;stroke:#7b3fb5;stroke-width:1.6}
svg text.call-out{fill:#b3261e;font-weight:700}
svg .rv{fill:#8a63d2}
table{border-collapse:collapse;width:100%;margin:6px 0}
td,th{border:1px solid #d8dee4;padding:3px 8px;text-align:left;vertical-align:top;overflow-wrap:break-word}
th{background:#f6f8fa}
.columns{display:grid;grid-template-columns:1fr 1fr;gap:24px}
.columns>section{min-width:0}
ul.files{columns:2}
"#;

/// Writes `report.html` into `dir` (a run's artifacts directory, where its CSVs are) and
/// returns its path.
pub fn write_run(r: &RunResult, dir: &Path) -> std::io::Result<PathBuf> {
    let path = path_in(dir);
    std::fs::write(&path, run_page(r, dir))?;
    Ok(path)
}

/// Where [`write_run`] puts the report of a run whose artifacts are in `artifacts`.
pub fn path_in(artifacts: impl AsRef<Path>) -> PathBuf {
    artifacts.as_ref().join(REPORT_FILE)
}

/// Writes the page of `compare` to `file`: `a` and `b` are the runs with the paths they were
/// loaded from (a run directory or its `results.json`), where their CSVs are.
pub fn write_compare(
    a: (&RunResult, &Path),
    b: (&RunResult, &Path),
    diffs: &[Difference],
    file: &Path,
) -> std::io::Result<()> {
    let dir_of = |p: &Path| -> PathBuf {
        if p.is_dir() {
            p.to_path_buf()
        } else {
            match p.parent() {
                Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                _ => PathBuf::from("."),
            }
        }
    };
    let out_dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let (da, db) = (dir_of(a.1), dir_of(b.1));
    let page = compare_page((a.0, &da), (b.0, &db), diffs, &out_dir);
    std::fs::write(file, page)
}

/// The page of one run; the traffic CSVs are read from `dir`, links are relative to it.
pub fn run_page(r: &RunResult, dir: &Path) -> String {
    let (traffic, problems) = timeline::traffics(r, dir);
    let drawn = Drawn {
        limits: traffic.iter().map(|t| Limits::of(&[t])).collect(),
        timeline_ms: timeline_ms(r),
        traffic,
        problems,
    };
    let title = format!(
        "istio-e2e: {} on {} — {}",
        r.scenario,
        r.provider,
        super::status_word(r.status)
    );
    let body = run_section(r, dir, dir, &drawn, "run");
    page(&title, "", &format!("<h1>{}</h1>\n{body}", heading(r)))
}

/// The page of `compare`: runs A and B side by side (timelines, traffic charts on shared
/// scales) and the normalized differences. `out_dir` is where the page is written, for the
/// links; each run's CSVs are read from its directory.
pub fn compare_page(
    a: (&RunResult, &Path),
    b: (&RunResult, &Path),
    diffs: &[Difference],
    out_dir: &Path,
) -> String {
    let (ta, pa) = timeline::traffics(a.0, a.1);
    let (tb, pb) = timeline::traffics(b.0, b.1);
    // Traffic of the same name gets the same scales in both columns.
    let shared = |mine: &[Traffic], other: &[Traffic]| -> Vec<Limits> {
        mine.iter()
            .map(|t| match other.iter().find(|o| o.name == t.name) {
                Some(o) => Limits::of(&[t, o]),
                None => Limits::of(&[t]),
            })
            .collect()
    };
    // The timelines too: the same time to the same width.
    let ms = timeline_ms(a.0).max(timeline_ms(b.0));
    let da = Drawn {
        limits: shared(&ta, &tb),
        traffic: ta,
        problems: pa,
        timeline_ms: ms,
    };
    let db = Drawn {
        limits: shared(&tb, &da.traffic),
        traffic: tb,
        problems: pb,
        timeline_ms: ms,
    };
    let col = |which: &str, r: &RunResult, dir: &Path, d: &Drawn| {
        let id = which.to_lowercase().replace(' ', "-");
        format!(
            "<section>\n<h2>{which}: {}</h2>\n{}</section>\n",
            heading(r),
            run_section(r, dir, out_dir, d, &id)
        )
    };
    let mut body = format!(
        "<h1>istio-e2e compare: {} and {}</h1>\n{}\n<div class=\"columns\">\n{}{}</div>\n",
        esc(&a.0.run_id),
        esc(&b.0.run_id),
        differences(diffs),
        col("Run A", a.0, a.1, &da),
        col("Run B", b.0, b.1, &db),
    );
    body.push_str("<p class=\"note\">Differences come from the normalized results (the same normalization as snapshots: pod hashes, addresses, ports, timings and exact counts are not differences).</p>\n");
    page(
        &format!("istio-e2e compare: {} and {}", a.0.run_id, b.0.run_id),
        "wide",
        &body,
    )
}

fn page(title: &str, class: &str, body: &str) -> String {
    let class = if class.is_empty() {
        String::new()
    } else {
        format!(" class=\"{class}\"")
    };
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main{class}>\n{body}</main>\n</body>\n</html>\n",
        esc(title)
    )
}

fn heading(r: &RunResult) -> String {
    format!(
        "{} on {} <span class=\"badge {}\">{}</span>",
        esc(&r.scenario),
        esc(&r.provider),
        status_class(r.status),
        super::status_word(r.status)
    )
}

fn status_class(s: Status) -> &'static str {
    match s {
        Status::Passed => "passed",
        Status::Failed => "failed",
        Status::Skipped => "skipped",
        Status::Interrupted => "interrupted",
    }
}

/// What a run's section draws: its traffic, on which scales, and what could not be read.
struct Drawn {
    traffic: Vec<Traffic>,
    problems: Vec<TimelineError>,
    limits: Vec<Limits>,
    /// The time the step timeline spans.
    timeline_ms: u64,
}

fn timeline_ms(r: &RunResult) -> u64 {
    r.duration_ms.max(end_of(&timeline::spans(r)))
}

/// Everything about one run; `link_from` is the directory the page is in.
fn run_section(r: &RunResult, dir: &Path, link_from: &Path, d: &Drawn, id: &str) -> String {
    let traffic = &d.traffic;
    let spans = timeline::spans(r);
    let mut s = meta(r);
    if let Some(m) = r.failure_message() {
        s.push_str(&format!(
            "<p class=\"failure\"><strong>Failure:</strong> {}",
            esc(&m)
        ));
        if let Some(d) = &r.diagnostics {
            s.push_str(&format!(
                " <a href=\"{}\">diagnostics</a>",
                href(link_from, Path::new(d))
            ));
        }
        s.push_str("</p>\n");
    }
    s.push_str("<h3>Steps</h3>\n<p class=\"note\">Each step a bar from its start to its end on the run's clock (m:ss); green passed, red failed, grey not run, striped when it took more than one attempt.</p>\n");
    s.push_str(&svg::timeline(&spans, traffic, d.timeline_ms, id));
    for (t, l) in traffic.iter().zip(&d.limits) {
        s.push_str(&traffic_section(t, &spans, l));
    }
    for p in &d.problems {
        s.push_str(&format!(
            "<p class=\"failure\">{}</p>\n",
            esc(&p.to_string())
        ));
    }
    s.push_str(&foreground_reviews(r));
    s.push_str(&details_table(&summary::details(r, traffic)));
    s.push_str(&files(r, dir, link_from, traffic));
    s
}

fn end_of(spans: &[Span]) -> u64 {
    spans.iter().map(|s| s.end_ms).max().unwrap_or(0)
}

fn meta(r: &RunResult) -> String {
    let mut rows = vec![
        ("run", r.run_id.clone()),
        ("scenario file", r.file.clone()),
        ("started", r.started.clone()),
        (
            "wall time",
            format!("{:.1}s", r.duration_ms as f64 / 1000.0),
        ),
    ];
    if let Some(k) = &r.kubernetes {
        rows.push(("Kubernetes", k.clone()));
    }
    if let Some(i) = &r.istio {
        rows.push(("Istio", i.clone()));
    }
    if let Some(f) = r.timeout_scale {
        rows.push(("timeouts", format!("scaled x{f}")));
    }
    let mut s = String::from("<dl class=\"meta\">");
    for (k, v) in rows {
        s.push_str(&format!("<dt>{k}</dt><dd>{}</dd>", esc(&v)));
    }
    s.push_str("</dl>\n");
    s
}

fn traffic_section(t: &Traffic, spans: &[Span], limits: &Limits) -> String {
    let mut s = format!(
        "<h3>Background traffic <code>{}</code></h3>\n<p>{} requests, {} failed; latency p50 {:.0} ms, p99 {:.0} ms. Per second of send time; the bands are the steps that ran meanwhile (hover for their names).</p>\n",
        esc(&t.name),
        t.requests.len(),
        t.failed(),
        t.latency_quantile(0.5),
        t.latency_quantile(0.99)
    );
    s.push_str(&svg::traffic_chart(t, spans, limits));
    let reviews = t.reviews();
    if !reviews.is_empty() {
        s.push_str(&format!(
            "<h3>Reviews versions of <code>{}</code></h3>\n",
            esc(&t.name)
        ));
        s.push_str(&svg::reviews_chart(
            &reviews,
            &format!("reviews versions of {}", t.name),
        ));
    }
    s
}

/// Reviews charts of `traffic` steps that sent a fixed number of requests.
fn foreground_reviews(r: &RunResult) -> String {
    let mut s = String::new();
    for st in r.steps.iter().filter(|s| s.kind == "traffic") {
        let Some(m) = st.outputs.get("reviews").and_then(|v| v.as_object()) else {
            continue;
        };
        let counts: std::collections::BTreeMap<String, u64> = m
            .iter()
            .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
            .collect();
        if counts.is_empty() {
            continue;
        }
        s.push_str(&format!(
            "<h3>Reviews versions of step {:02} {}</h3>\n",
            st.index,
            esc(&st.name)
        ));
        s.push_str(&svg::reviews_chart(
            &counts,
            &format!("reviews versions of step {}", st.index),
        ));
    }
    s
}

fn details_table(details: &[Detail]) -> String {
    if details.is_empty() {
        return String::new();
    }
    let mut s = String::from(
        "<h3>What the steps did</h3>\n<table>\n<tr><th>step</th><th>kind</th><th>what</th></tr>\n",
    );
    for d in details {
        s.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            esc(&d.step),
            esc(&d.kind),
            esc(&d.text)
        ));
    }
    s.push_str("</table>\n");
    s
}

/// Links to the run's files: the reports, the traffic CSVs, the diagnostics, then the rest.
fn files(r: &RunResult, dir: &Path, link_from: &Path, traffic: &[Traffic]) -> String {
    let mut names: Vec<String> = ["results.json", "junit.xml", "summary.md"]
        .map(String::from)
        .to_vec();
    names.extend(traffic.iter().map(|t| t.csv.clone()));
    let mut rest: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    rest.sort();
    let mut s = String::from("<h3>Files</h3>\n<ul class=\"files\">\n");
    let mut link = |name: &str, path: &Path| {
        s.push_str(&format!(
            "<li><a href=\"{}\">{}</a></li>\n",
            href(link_from, path),
            esc(name)
        ));
    };
    for n in names.iter().filter(|n| dir.join(n).exists()) {
        link(n, &dir.join(n));
    }
    if let Some(d) = &r.diagnostics {
        link("diagnostics", Path::new(d));
    }
    for n in rest
        .iter()
        .filter(|n| !names.contains(n) && n.as_str() != REPORT_FILE && n.as_str() != "diagnostics")
    {
        link(n, &dir.join(n));
    }
    s.push_str("</ul>\n");
    s
}

fn differences(diffs: &[Difference]) -> String {
    if diffs.is_empty() {
        return "<h2>Differences</h2>\n<p>No differences in the normalized results.</p>".into();
    }
    let mut s = format!(
        "<h2>Differences ({})</h2>\n<table>\n<tr><th>step</th><th>field</th><th>A</th><th>B</th></tr>\n",
        diffs.len()
    );
    for d in diffs {
        s.push_str(&format!(
            "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td></tr>\n",
            esc(&d.step),
            esc(&d.path),
            esc(&d.a),
            esc(&d.b)
        ));
    }
    s.push_str("</table>");
    s
}

/// A link from a page in `from` to `to`: relative when both resolve, else the absolute path;
/// characters a URL path cannot hold are percent-encoded.
pub fn href(from: &Path, to: &Path) -> String {
    let rel = match (std::fs::canonicalize(from), std::fs::canonicalize(to)) {
        (Ok(f), Ok(t)) => relative(&f, &t),
        _ => to.to_path_buf(),
    };
    let mut out = String::new();
    for c in rel.to_string_lossy().chars() {
        match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '/' | '.' | '-' | '_' | '~' => out.push(c),
            c => {
                let mut b = [0; 4];
                for byte in c.encode_utf8(&mut b).bytes() {
                    out.push_str(&format!("%{byte:02X}"));
                }
            }
        }
    }
    out
}

/// `to` relative to the directory `from` (both absolute).
fn relative(from: &Path, to: &Path) -> PathBuf {
    let f: Vec<Component> = from.components().collect();
    let t: Vec<Component> = to.components().collect();
    let common = f.iter().zip(&t).take_while(|(a, b)| a == b).count();
    let mut p = PathBuf::new();
    for _ in common..f.len() {
        p.push("..");
    }
    for c in &t[common..] {
        p.push(c.as_os_str());
    }
    if p.as_os_str().is_empty() {
        p.push(".");
    }
    p
}
