//! `istio-e2e compare RUN_A RUN_B`: the differences between two runs' normalized results, step
//! by step (the same normalization as snapshots, so pod hashes, addresses, ports, timings and
//! exact counts never show up as differences), in the terminal and as Markdown.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::results::RunResult;

/// One difference between the two runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// The step (`NN name`) or `scenario`.
    pub step: String,
    /// The field path inside the step, e.g. `outputs.reviews.v3`.
    pub path: String,
    /// The value in run A (`(none)` when absent).
    pub a: String,
    /// The value in run B.
    pub b: String,
}

/// A run's results that cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file cannot be read (missing, unreadable).
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The `results.json` it looked for.
        path: PathBuf,
        /// Why it cannot be read.
        source: std::io::Error,
    },
    /// The file is not a run's `results.json`.
    #[error("{} is not an istio-e2e results.json: {source}", path.display())]
    NotResults {
        /// The file read.
        path: PathBuf,
        /// Where it stops being one.
        source: serde_json::Error,
    },
}

/// Reads a run's `results.json` from a run directory or the file itself.
pub fn load(path: &Path) -> Result<RunResult, LoadError> {
    let file: PathBuf = if path.is_dir() {
        path.join("results.json")
    } else {
        path.to_path_buf()
    };
    let text = std::fs::read_to_string(&file).map_err(|source| LoadError::Read {
        path: file.clone(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| LoadError::NotResults { path: file, source })
}

/// Every difference between two runs' normalized views, in step order.
pub fn compare(a: &RunResult, b: &RunResult) -> Vec<Difference> {
    let mut out = Vec::new();
    let (va, vb) = (crate::snapshot::run_view(a), crate::snapshot::run_view(b));
    if va.get("scenario") != vb.get("scenario") {
        out.push(diff(
            "scenario",
            "name",
            va.get("scenario"),
            vb.get("scenario"),
        ));
    }
    if va.get("status") != vb.get("status") {
        out.push(diff(
            "scenario",
            "status",
            va.get("status"),
            vb.get("status"),
        ));
    }
    let steps = |v: &Value| -> BTreeMap<String, Value> {
        v.get("steps")
            .and_then(|s| s.as_array())
            .into_iter()
            .flatten()
            .map(|s| {
                let key = format!(
                    "{:02} {}",
                    s.get("step").and_then(|x| x.as_u64()).unwrap_or(0),
                    s.get("name").and_then(|x| x.as_str()).unwrap_or("")
                );
                (key, s.clone())
            })
            .collect()
    };
    let (sa, sb) = (steps(&va), steps(&vb));
    let mut keys: Vec<&String> = sa.keys().chain(sb.keys()).collect();
    keys.sort();
    keys.dedup();
    for k in keys {
        let (fa, fb) = (flatten(sa.get(k)), flatten(sb.get(k)));
        let mut paths: Vec<&String> = fa.keys().chain(fb.keys()).collect();
        paths.sort();
        paths.dedup();
        for p in paths {
            if fa.get(p) != fb.get(p) {
                out.push(Difference {
                    step: k.clone(),
                    path: p.clone(),
                    a: fa.get(p).cloned().unwrap_or_else(|| "(none)".into()),
                    b: fb.get(p).cloned().unwrap_or_else(|| "(none)".into()),
                });
            }
        }
    }
    out
}

fn diff(step: &str, path: &str, a: Option<&Value>, b: Option<&Value>) -> Difference {
    let show = |v: Option<&Value>| v.map(|v| v.to_string()).unwrap_or_else(|| "(none)".into());
    Difference {
        step: step.into(),
        path: path.into(),
        a: show(a),
        b: show(b),
    }
}

fn flatten(v: Option<&Value>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    fn walk(prefix: &str, v: &Value, out: &mut BTreeMap<String, String>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    if prefix.is_empty() && (k == "step" || k == "name") {
                        continue;
                    }
                    walk(
                        &if prefix.is_empty() {
                            k.clone()
                        } else {
                            format!("{prefix}.{k}")
                        },
                        x,
                        out,
                    );
                }
            }
            Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    walk(&format!("{prefix}[{i}]"), x, out);
                }
            }
            Value::String(s) => {
                out.insert(prefix.to_string(), s.clone());
            }
            other => {
                out.insert(prefix.to_string(), other.to_string());
            }
        }
    }
    if let Some(v) = v {
        walk("", v, &mut out);
    }
    out
}

/// The differences for a terminal: `no differences`, or one line per difference.
pub fn to_text(a: &str, b: &str, diffs: &[Difference]) -> String {
    if diffs.is_empty() {
        return format!("no differences between {a} and {b}\n");
    }
    let mut s = format!(
        "{} difference(s) between {a} (A) and {b} (B):\n",
        diffs.len()
    );
    for d in diffs {
        s.push_str(&format!(
            "  step {}: {}: A {} -> B {}\n",
            d.step, d.path, d.a, d.b
        ));
    }
    s
}

/// The differences as a Markdown table.
pub fn to_markdown(a: &str, b: &str, diffs: &[Difference]) -> String {
    if diffs.is_empty() {
        return format!("No differences between `{a}` and `{b}`.\n");
    }
    let mut s = format!(
        "### Differences between `{a}` (A) and `{b}` (B)\n\n| step | field | A | B |\n|---|---|---|---|\n"
    );
    for d in diffs {
        let esc = |t: &str| t.replace('|', "\\|");
        s.push_str(&format!(
            "| {} | `{}` | {} | {} |\n",
            esc(&d.step),
            esc(&d.path),
            esc(&d.a),
            esc(&d.b)
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::{Status, StepResult};
    use serde_json::json;

    fn run(reviews: &str, port: u16, pod: &str) -> RunResult {
        let mut o = crate::Outputs::new();
        o.insert("reviews".into(), json!({reviews: 40}));
        o.insert("url".into(), json!(format!("http://172.17.0.2:{port}")));
        o.insert("pod".into(), json!(pod));
        RunResult {
            scenario: "s".into(),
            file: "s.yaml".into(),
            run_id: "r".into(),
            provider: "lab".into(),
            kubernetes: None,
            istio: None,
            status: Status::Passed,
            started: String::new(),
            duration_ms: 1,
            steps: vec![StepResult {
                index: 1,
                kind: "traffic".into(),
                name: "traffic".into(),
                location: "s.yaml:3:5".into(),
                status: Status::Passed,
                duration_ms: 5,
                attempts: 1,
                outputs: o,
                error: None,
            }],
            teardown: vec![],
            artifacts: String::new(),
            diagnostics: None,
            snapshots: Default::default(),
            params: Default::default(),
            timeout_scale: None,
        }
    }

    #[test]
    fn volatile_values_are_not_differences_but_behavior_is() {
        let a = run("v1", 31000, "reviews-v1-6b746f74dc-9stp2");
        let b = run("v1", 32000, "reviews-v1-7c8d9e0f1a-x2k4m");
        assert_eq!(compare(&a, &b), vec![]);
        let c = run("v3", 31000, "reviews-v1-6b746f74dc-9stp2");
        let d = compare(&a, &c);
        assert_eq!(d.len(), 2, "{d:?}");
        assert_eq!(
            d[0],
            Difference {
                step: "01 traffic".into(),
                path: "outputs.reviews.v1".into(),
                a: "10-99".into(),
                b: "(none)".into()
            }
        );
        assert_eq!(d[1].path, "outputs.reviews.v3");
        assert!(
            to_markdown("A", "B", &d)
                .contains("| 01 traffic | `outputs.reviews.v3` | (none) | 10-99 |")
        );
    }
}
