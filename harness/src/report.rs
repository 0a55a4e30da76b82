//! Reports of a run under its artifacts directory (`target/istio-e2e/<run-id>/`): JUnit XML
//! (one testcase per step), `results.json`, a Markdown summary (also appended to
//! `$GITHUB_STEP_SUMMARY` when set) with what each step did and a Mermaid gantt of the
//! steps, `report.html` with the same as pictures ([`html`]), and live progress lines.

pub mod html;
pub mod inspect;
pub mod summary;
pub mod svg;
pub mod timeline;

#[cfg(test)]
mod tests;

use std::io::IsTerminal;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use crate::results::{RunResult, Status, StepResult};

/// Writes `results.json`, `junit.xml`, `summary.md` and `report.html` into `dir`, and appends
/// the summary to `$GITHUB_STEP_SUMMARY` when that is set. The background traffic's
/// `traffic-<name>.csv` files must be in `dir` already (the steps write them).
pub fn write_all(r: &RunResult, dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join("results.json"),
        serde_json::to_string_pretty(r).unwrap_or_default(),
    )?;
    std::fs::write(dir.join("junit.xml"), junit(r))?;
    let md = markdown_in(r, dir);
    std::fs::write(dir.join("summary.md"), &md)?;
    html::write_run(r, dir)?;
    if let Ok(p) = std::env::var("GITHUB_STEP_SUMMARY")
        && !p.is_empty()
    {
        crate::filelock::append_locked(Path::new(&p), md.as_bytes())?;
    }
    Ok(())
}

/// JUnit XML: one suite per run, one testcase per step (cluster setup included).
pub fn junit(r: &RunResult) -> String {
    let mut report = Report::new("istio-e2e");
    let mut suite = TestSuite::new(format!("{}::{}", r.scenario, r.provider));
    for s in &r.steps {
        let status = match s.status {
            Status::Passed => TestCaseStatus::success(),
            Status::Skipped => TestCaseStatus::skipped(),
            Status::Failed | Status::Interrupted => {
                let mut st = TestCaseStatus::non_success(NonSuccessKind::Failure);
                st.set_message(s.error.clone().unwrap_or_default());
                st.set_type(s.kind.clone());
                st
            }
        };
        let mut tc = TestCase::new(format!("{:02} {}", s.index, s.name), status);
        tc.set_classname(format!("{}.{}", r.scenario, s.kind));
        tc.set_time(Duration::from_millis(s.duration_ms));
        tc.set_system_out(format!(
            "{}\n{}",
            s.location,
            serde_json::to_string_pretty(&s.outputs).unwrap_or_default()
        ));
        suite.add_test_case(tc);
    }
    report.add_test_suite(suite);
    report.to_string().unwrap_or_default()
}

/// A Markdown summary: a table of steps, on failure the message and diagnostics path, what
/// each step did and a Mermaid gantt of the steps; the traffic CSVs are read from the run's
/// artifacts directory.
pub fn markdown(r: &RunResult) -> String {
    markdown_in(r, Path::new(&r.artifacts))
}

/// [`markdown`], with the traffic CSVs read from `dir`.
pub fn markdown_in(r: &RunResult, dir: &Path) -> String {
    let mut s = format!(
        "### istio-e2e: {} on {} — {}\n\n| # | step | kind | status | time |\n|---|---|---|---|---|\n",
        r.scenario,
        r.provider,
        status_word(r.status)
    );
    if let Some(f) = r.timeout_scale {
        s.insert_str(
            s.find("\n\n").unwrap_or(0),
            &format!(" (timeouts scaled x{f})"),
        );
    }
    for st in &r.steps {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {:.1}s |\n",
            st.index,
            st.name.replace('|', "\\|"),
            st.kind,
            status_word(st.status),
            st.duration_ms as f64 / 1000.0
        ));
    }
    if let Some(m) = r.failure_message() {
        s.push_str(&format!("\n**Failure:** {}\n", m.replace('|', "\\|")));
    }
    let (traffic, problems) = timeline::traffics(r, dir);
    let details = summary::details(r, &traffic);
    if !details.is_empty() {
        s.push_str("\n#### What the steps did\n\n");
        s.push_str(&summary::details_markdown(&details));
    }
    for p in &problems {
        s.push_str(&format!("\n{}\n", summary::md(&p.to_string())));
    }
    s.push('\n');
    s.push_str(&summary::gantt(r, &timeline::spans(r), &traffic));
    s.push_str(&format!(
        "\nArtifacts: `{}` (report: `{}`)\n\n",
        r.artifacts,
        html::REPORT_FILE
    ));
    s
}

fn status_word(s: Status) -> &'static str {
    match s {
        Status::Passed => "passed",
        Status::Failed => "FAILED",
        Status::Skipped => "skipped",
        Status::Interrupted => "interrupted",
    }
}

/// Live progress: a spinner line per step on a terminal; plain timestamped lines when stderr
/// is not a terminal or `CI` is set.
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
    quiet: bool,
    status: StatusLine,
    /// `[<label>] ` before every line, or nothing.
    prefix: String,
}

/// Where a running step says what it still waits on: the spinner's message on a terminal,
/// a timestamped `WAIT` line otherwise (the step decides how often). Clones share one line;
/// silent unless a [`Progress`] has a step running.
#[derive(Clone, Default)]
pub struct StatusLine(Arc<Mutex<Option<StatusTarget>>>);

enum StatusTarget {
    Spinner(indicatif::ProgressBar, String),
    /// The line's `[label] ` prefix (or nothing), and the step's label.
    Plain(String, String),
}

impl StatusLine {
    /// Shows `text` as what the running step waits on.
    pub fn set(&self, text: &str) {
        let Ok(target) = self.0.lock() else { return };
        match &*target {
            Some(StatusTarget::Spinner(bar, label)) => bar.set_message(format!("{label}: {text}")),
            Some(StatusTarget::Plain(prefix, label)) => {
                eprintln!("{} {prefix}WAIT  {label}: {text}", now())
            }
            None => {}
        }
    }

    fn connect(&self, target: Option<StatusTarget>) {
        if let Ok(mut t) = self.0.lock() {
            *t = target;
        }
    }
}

impl Progress {
    /// Progress on stderr, chosen for the terminal.
    pub fn new(quiet: bool) -> Self {
        Progress {
            bar: None,
            quiet,
            status: StatusLine::default(),
            prefix: String::new(),
        }
    }

    /// Puts `[label] ` before every line and shows no spinner: for runs whose lines interleave
    /// with other runs' (trials at once in one process), so each line says whose it is.
    pub fn labelled(mut self, label: Option<&str>) -> Self {
        self.prefix = label.map(|l| format!("[{l}] ")).unwrap_or_default();
        self
    }

    /// The line the running step's waits report on (see [`StatusLine`]).
    pub fn status_line(&self) -> StatusLine {
        self.status.clone()
    }

    fn fancy() -> bool {
        std::io::stderr().is_terminal() && std::env::var_os("CI").is_none()
    }

    /// A step starts.
    pub fn start(&mut self, label: &str) {
        if self.quiet {
            return;
        }
        if Self::fancy() && self.prefix.is_empty() {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.set_message(label.to_string());
            bar.enable_steady_tick(Duration::from_millis(120));
            self.status
                .connect(Some(StatusTarget::Spinner(bar.clone(), label.to_string())));
            self.bar = Some(bar);
        } else {
            eprintln!("{} {}START {label}", now(), self.prefix);
            self.status.connect(Some(StatusTarget::Plain(
                self.prefix.clone(),
                label.to_string(),
            )));
        }
    }

    /// A step ended.
    pub fn finish(&mut self, s: &StepResult) {
        self.status.connect(None);
        if self.quiet {
            return;
        }
        let line = format!(
            "{}{} {:>6.1}s {:02} {}{}",
            self.prefix,
            match s.status {
                Status::Passed => "PASS",
                Status::Failed => "FAIL",
                Status::Skipped => "SKIP",
                Status::Interrupted => "INTR",
            },
            s.duration_ms as f64 / 1000.0,
            s.index,
            s.name,
            s.error
                .as_ref()
                .map(|e| format!("\n       {e}"))
                .unwrap_or_default()
        );
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
            eprintln!("{line}");
        } else {
            eprintln!("{} {line}", now());
        }
    }

    /// A free-form line (teardown, notes).
    pub fn note(&mut self, text: &str) {
        if !self.quiet {
            eprintln!("{} {}{text}", now(), self.prefix);
        }
    }
}

fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}
