//! The parts of `summary.md` under the step table: what each step did, in the words that
//! matter for its kind, and a Mermaid `gantt` of the steps (GitHub renders it).

use std::collections::BTreeMap;

use serde_json::Value;

use super::timeline::{Span, Traffic};
use crate::results::{RunResult, Status, StepResult};

/// What one step did, for a person: `NN name`, its kind, and a line of text.
#[derive(Debug, Clone, PartialEq)]
pub struct Detail {
    /// `NN name`.
    pub step: String,
    /// The step kind.
    pub kind: String,
    /// What it did, in plain text (Markdown and HTML escape it).
    pub text: String,
}

/// One detail per step that has something to say: traffic counts, latencies and the reviews
/// split, what a wait waited for, why a step failed and where its diagnostics are.
pub fn details(r: &RunResult, traffic: &[Traffic]) -> Vec<Detail> {
    r.steps
        .iter()
        .filter_map(|s| {
            Some(Detail {
                step: format!("{:02} {}", s.index, s.name),
                kind: s.kind.clone(),
                text: describe(r, s, traffic)?,
            })
        })
        .collect()
}

/// The details as a Markdown list.
pub fn details_markdown(details: &[Detail]) -> String {
    details
        .iter()
        .map(|d| format!("- **{}** ({}): {}\n", md(&d.step), d.kind, md(&d.text)))
        .collect()
}

/// Escapes what Markdown would read as markup in a table or a list (code spans stay).
pub fn md(s: &str) -> String {
    s.replace('|', "\\|").replace('<', "&lt;")
}

fn describe(r: &RunResult, s: &StepResult, traffic: &[Traffic]) -> Option<String> {
    if s.status == Status::Failed || s.status == Status::Interrupted {
        let mut t = format!(
            "{} after {} attempt(s): {}",
            if s.status == Status::Failed {
                "failed"
            } else {
                "interrupted"
            },
            s.attempts,
            s.error.as_deref().unwrap_or("no message")
        );
        if let Some(d) = &r.diagnostics
            && r.first_failure().map(|f| f.index) == Some(s.index)
        {
            t.push_str(&format!(" — diagnostics: `{d}`"));
        }
        return Some(t);
    }
    let o = &s.outputs;
    if let Some(Value::String(why)) = o.get("skipped") {
        return Some(format!("skipped, {why}"));
    }
    if s.status != Status::Passed {
        return None;
    }
    match s.kind.as_str() {
        "traffic" => Some(match o.get("background").and_then(Value::as_str) {
            Some(name) => background(name, traffic.iter().find(|t| t.name == name)),
            None => format!(
                "{} requests, statuses {}, reviews {}",
                num(o.get("total")),
                counts(o.get("histogram")),
                split(&to_counts(o.get("reviews")))
            ),
        }),
        "traffic-stop" => {
            let total = o.get("total").and_then(Value::as_u64);
            let t = traffic
                .iter()
                .find(|t| Some(t.requests.len() as u64) == total)
                .or(if traffic.len() == 1 {
                    traffic.first()
                } else {
                    None
                });
            let mut line = format!(
                "{} requests, {} failed, latency p50 {} ms, p99 {} ms, statuses {}",
                num(o.get("total")),
                num(o.get("failed")),
                num(o.get("latency-p50-ms")),
                num(o.get("latency-p99-ms")),
                counts(o.get("histogram"))
            );
            if let Some(t) = t.filter(|t| !t.reviews().is_empty()) {
                line.push_str(&format!(", reviews {}", split(&t.reviews())));
            }
            Some(line)
        }
        "wait" => Some(waited(o)),
        _ => generic(o),
    }
}

fn background(name: &str, t: Option<&Traffic>) -> String {
    let Some(t) = t else {
        return format!("background traffic `{name}` started (its CSV could not be read)");
    };
    let mut line = format!(
        "background traffic `{name}` started: {} requests, {} failed, p50 {:.0} ms, p99 {:.0} ms",
        t.requests.len(),
        t.failed(),
        t.latency_quantile(0.5),
        t.latency_quantile(0.99)
    );
    if !t.reviews().is_empty() {
        line.push_str(&format!(", reviews {}", split(&t.reviews())));
    }
    line.push_str(&format!(" (`{}`)", t.csv));
    line
}

fn waited(o: &serde_json::Map<String, Value>) -> String {
    if let Some(d) = o.get("deployments").and_then(Value::as_array) {
        return format!("rolled out: {}", list(d));
    }
    if let Some(p) = o.get("pods").and_then(Value::as_array) {
        let ready = o
            .get("ready")
            .and_then(Value::as_array)
            .map(|r| list(r))
            .unwrap_or_default();
        return format!("{} pod(s) ready ({ready}): {}", p.len(), list(p));
    }
    generic(o).unwrap_or_else(|| "done".into())
}

fn generic(o: &serde_json::Map<String, Value>) -> Option<String> {
    let parts: Vec<String> = o
        .iter()
        .filter_map(|(k, v)| match v {
            Value::String(s) if !s.is_empty() => Some(format!("{k} `{}`", s.replace('`', "'"))),
            Value::Number(n) => Some(format!("{k} {n}")),
            Value::Bool(b) => Some(format!("{k} {b}")),
            Value::Array(a) if !a.is_empty() => Some(format!("{k} {}", list(a))),
            _ => None,
        })
        .collect();
    if parts.is_empty() {
        return None;
    }
    let line = parts.join(", ");
    Some(if line.chars().count() > 200 {
        format!("{}…", line.chars().take(199).collect::<String>())
    } else {
        line
    })
}

fn list(a: &[Value]) -> String {
    a.iter()
        .map(|v| {
            v.as_str()
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string())
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn num(v: Option<&Value>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "?".into())
}

fn to_counts(v: Option<&Value>) -> BTreeMap<String, u64> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default()
}

fn counts(v: Option<&Value>) -> String {
    let c = to_counts(v);
    if c.is_empty() {
        return "none".into();
    }
    c.iter()
        .map(|(k, n)| format!("{k}×{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `v1 34% · v2 33% · v3 33%`.
pub fn split(c: &BTreeMap<String, u64>) -> String {
    let total: u64 = c.values().sum();
    if total == 0 {
        return "none".into();
    }
    c.iter()
        .map(|(k, n)| format!("{k} {:.0}%", 100.0 * *n as f64 / total as f64))
        .collect::<Vec<_>>()
        .join(" · ")
}

/// A Mermaid `gantt` of the steps on the run's clock (done, crit for failed or interrupted;
/// steps that did not run are left out) and of each background traffic (active).
pub fn gantt(r: &RunResult, spans: &[Span], traffic: &[Traffic]) -> String {
    let mut g = format!(
        "```mermaid\ngantt\n    title {} on {} ({})\n    dateFormat x\n    axisFormat %M:%S\n",
        task_text(&r.scenario),
        task_text(&r.provider),
        super::status_word(r.status)
    );
    let mut section = "";
    for s in spans.iter().filter(|s| s.attempts > 0) {
        let want = if s.index == 0 { "setup" } else { "steps" };
        if want != section {
            g.push_str(&format!("    section {want}\n"));
            section = want;
        }
        let tag = match s.status {
            Status::Passed => "done",
            _ => "crit",
        };
        g.push_str(&format!(
            "    {} :{tag}, {}, {}\n",
            task_text(&s.label()),
            s.start_ms,
            s.end_ms.max(s.start_ms + 1)
        ));
    }
    if !traffic.is_empty() {
        g.push_str("    section traffic\n");
    }
    for t in traffic {
        g.push_str(&format!(
            "    {} ({} requests, {} failed) :active, {}, {}\n",
            task_text(&t.name),
            t.requests.len(),
            t.failed(),
            t.origin_ms,
            t.end_ms().max(t.origin_ms + 1)
        ));
    }
    g.push_str("```\n");
    g
}

/// A task or title text Mermaid's gantt grammar accepts: no `:`, `;`, `#` or line breaks.
fn task_text(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            ':' => ' ',
            ';' | '#' => ',',
            '\n' | '\r' => ' ',
            c => c,
        })
        .collect::<String>()
        .trim()
        .to_string()
}
