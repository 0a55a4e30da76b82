//! What happened when: the steps placed on the run's clock, and the background traffic of a
//! run read back from its `traffic-<name>.csv`, binned per second.
//!
//! Steps run one after the other and `duration_ms` covers every attempt, so a step starts
//! where the ones before it ended (the run's clock is 0 when the first record starts). A
//! background traffic's own clock (`at_ms` in its CSV) starts when its `traffic` step
//! started it, which is the end of that step: that puts every request on the run's clock.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::results::{RunResult, Status};

/// Why a run's traffic could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum TimelineError {
    /// The CSV could not be read.
    #[error("cannot read {path}: {source} (the traffic-stop step or teardown writes it)")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A line is not what `BackgroundReport::to_csv` writes.
    #[error(
        "{path}:{line}: {why} (expected at_ms,latency_ms,outcome,ok,reviews,step,detail as istio-e2e writes it)"
    )]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        why: String,
    },
}

/// One step on the run's clock.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    /// Position in the scenario (0 for setup records).
    pub index: usize,
    /// Display name.
    pub name: String,
    /// Step kind.
    pub kind: String,
    /// How it ended.
    pub status: Status,
    /// Attempts made.
    pub attempts: u32,
    /// Start, in ms since the run's first record started.
    pub start_ms: u64,
    /// End, in ms on the same clock.
    pub end_ms: u64,
}

impl Span {
    /// `NN name`, as the step table numbers it.
    pub fn label(&self) -> String {
        format!("{:02} {}", self.index, self.name)
    }

    /// True when the span contains `ms` (start inclusive, end inclusive).
    pub fn contains(&self, ms: f64) -> bool {
        ms >= self.start_ms as f64 && ms <= self.end_ms as f64
    }
}

/// The run's records, one after the other, on the run's clock.
pub fn spans(r: &RunResult) -> Vec<Span> {
    let mut t = 0;
    r.steps
        .iter()
        .map(|s| {
            let span = Span {
                index: s.index,
                name: s.name.clone(),
                kind: s.kind.clone(),
                status: s.status,
                attempts: s.attempts,
                start_ms: t,
                end_ms: t + s.duration_ms,
            };
            t += s.duration_ms;
            span
        })
        .collect()
}

/// One request of background traffic, as its CSV recorded it.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// When it was sent, ms after the traffic started.
    pub at_ms: u64,
    /// How long it took.
    pub latency_ms: f64,
    /// Status code or `error: <kind>`.
    pub outcome: String,
    /// Whether it counted as a success.
    pub ok: bool,
    /// The reviews version of the product page, when it was one.
    pub reviews: String,
    /// The step that was running when it was sent.
    pub step: String,
}

/// A background traffic of a run, on the run's clock.
#[derive(Debug, Clone, PartialEq)]
pub struct Traffic {
    /// Its `background` name.
    pub name: String,
    /// The CSV's file name inside the artifacts directory.
    pub csv: String,
    /// When it started, in ms on the run's clock.
    pub origin_ms: u64,
    /// Every request, by send time.
    pub requests: Vec<Request>,
}

/// One second of traffic.
#[derive(Debug, Clone, PartialEq)]
pub struct Second {
    /// Start of the second, in ms on the run's clock.
    pub start_ms: u64,
    /// Requests sent in it.
    pub requests: u32,
    /// Of those, the failed ones.
    pub failures: u32,
    /// The 99th percentile latency of its requests (0 without requests).
    pub p99_ms: f64,
    /// Failed requests by the step they were sent in.
    pub failed_in: BTreeMap<String, u32>,
}

impl Traffic {
    /// When the last request ended, in ms on the run's clock.
    pub fn end_ms(&self) -> u64 {
        let last = self
            .requests
            .iter()
            .map(|q| q.at_ms as f64 + q.latency_ms)
            .fold(0.0, f64::max);
        self.origin_ms + last.ceil() as u64
    }

    /// Failed requests.
    pub fn failed(&self) -> usize {
        self.requests.iter().filter(|q| !q.ok).count()
    }

    /// The latency below which `q` (0..=1) of the requests finished, as the traffic-stop step
    /// computes it.
    pub fn latency_quantile(&self, q: f64) -> f64 {
        quantile(self.requests.iter().map(|r| r.latency_ms).collect(), q)
    }

    /// Product pages by the reviews version that served them.
    pub fn reviews(&self) -> BTreeMap<String, u64> {
        let mut m = BTreeMap::new();
        for q in self.requests.iter().filter(|q| !q.reviews.is_empty()) {
            *m.entry(q.reviews.clone()).or_default() += 1;
        }
        m
    }

    /// Requests per second by send time, every second from the start to the last request
    /// (seconds without requests included).
    pub fn per_second(&self) -> Vec<Second> {
        let last = self.requests.iter().map(|q| q.at_ms / 1000).max();
        let Some(last) = last else {
            return Vec::new();
        };
        let mut latencies: Vec<Vec<f64>> = vec![Vec::new(); last as usize + 1];
        let mut out: Vec<Second> = (0..=last)
            .map(|k| Second {
                start_ms: self.origin_ms + k * 1000,
                requests: 0,
                failures: 0,
                p99_ms: 0.0,
                failed_in: BTreeMap::new(),
            })
            .collect();
        for q in &self.requests {
            let k = (q.at_ms / 1000) as usize;
            out[k].requests += 1;
            latencies[k].push(q.latency_ms);
            if !q.ok {
                out[k].failures += 1;
                *out[k].failed_in.entry(q.step.clone()).or_default() += 1;
            }
        }
        for (s, l) in out.iter_mut().zip(latencies) {
            s.p99_ms = quantile(l, 0.99);
        }
        out
    }
}

fn quantile(mut l: Vec<f64>, q: f64) -> f64 {
    if l.is_empty() {
        return 0.0;
    }
    l.sort_by(f64::total_cmp);
    let i = ((q * l.len() as f64).ceil() as usize).clamp(1, l.len()) - 1;
    l[i]
}

/// The background traffics a run started (`traffic` steps with `background`), each read
/// from its CSV in `dir`: those that could be read, and why the others could not.
pub fn traffics(r: &RunResult, dir: &Path) -> (Vec<Traffic>, Vec<TimelineError>) {
    let mut ok = Vec::new();
    let mut bad = Vec::new();
    for (step, span) in r.steps.iter().zip(spans(r)) {
        let Some(name) = step.outputs.get("background").and_then(|v| v.as_str()) else {
            continue;
        };
        if step.kind != "traffic" || step.status != Status::Passed {
            continue;
        }
        let csv = format!("traffic-{name}.csv");
        match read_csv(&dir.join(&csv)) {
            Ok(requests) => ok.push(Traffic {
                name: name.to_string(),
                csv,
                origin_ms: span.end_ms,
                requests,
            }),
            Err(e) => bad.push(e),
        }
    }
    (ok, bad)
}

/// Reads a `traffic-<name>.csv`.
pub fn read_csv(path: &Path) -> Result<Vec<Request>, TimelineError> {
    let text = std::fs::read_to_string(path).map_err(|source| TimelineError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_csv(&text).map_err(|(line, why)| TimelineError::Parse {
        path: path.to_path_buf(),
        line,
        why,
    })
}

/// Parses the CSV text; the error is the 1-based line and what is wrong with it.
pub fn parse_csv(text: &str) -> Result<Vec<Request>, (usize, String)> {
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, h)) if h.starts_with("at_ms,latency_ms,outcome,ok,reviews,step") => {}
        _ => return Err((1, "the header line is missing".into())),
    }
    let mut out = Vec::new();
    for (i, line) in lines {
        if line.is_empty() {
            continue;
        }
        let f = split_csv_line(line);
        if f.len() < 6 {
            return Err((i + 1, format!("{} fields, at least 6 expected", f.len())));
        }
        let num = |k: usize| -> Result<f64, (usize, String)> {
            f[k].parse::<f64>().map_err(|_| {
                (
                    i + 1,
                    format!("field {} ({:?}) is not a number", k + 1, f[k]),
                )
            })
        };
        out.push(Request {
            at_ms: num(0)? as u64,
            latency_ms: num(1)?,
            outcome: f[2].clone(),
            ok: f[3] == "true",
            reviews: f[4].clone(),
            step: f[5].clone(),
        });
    }
    out.sort_by_key(|q| q.at_ms);
    Ok(out)
}

/// Splits one CSV line: fields may be quoted, with `""` for a quote inside.
fn split_csv_line(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', true) => quoted = false,
            ('"', false) if cur.is_empty() => quoted = true,
            (',', false) => fields.push(std::mem::take(&mut cur)),
            (c, _) => cur.push(c),
        }
    }
    fields.push(cur);
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_with_quotes_and_commas_are_read() {
        let text = "at_ms,latency_ms,outcome,ok,reviews,step,detail\n\
                    1500,12.5,200,true,v1,\"roll, \"\"again\"\"\",\"\"\n\
                    20,3.000,error: connect,false,,\"traffic on\",\"refused, twice\"\n";
        let r = parse_csv(text).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].at_ms, 20, "sorted by send time");
        assert_eq!(r[0].outcome, "error: connect");
        assert!(!r[0].ok);
        assert_eq!(r[1].step, "roll, \"again\"");
        assert_eq!(r[1].reviews, "v1");
        assert_eq!(parse_csv("nope\n").unwrap_err().0, 1);
        assert_eq!(
            parse_csv("at_ms,latency_ms,outcome,ok,reviews,step,detail\nx,1,200,true,,s,\n")
                .unwrap_err()
                .0,
            2
        );
    }

    #[test]
    fn seconds_count_requests_failures_and_p99() {
        let q = |at_ms, latency_ms, ok: bool, step: &str| Request {
            at_ms,
            latency_ms,
            outcome: if ok { "200".into() } else { "503".into() },
            ok,
            reviews: String::new(),
            step: step.into(),
        };
        let t = Traffic {
            name: "t".into(),
            csv: "traffic-t.csv".into(),
            origin_ms: 10_000,
            requests: vec![
                q(0, 10.0, true, "a"),
                q(999, 30.0, false, "a"),
                q(2500, 5.0, false, "b"),
            ],
        };
        let s = t.per_second();
        assert_eq!(s.len(), 3, "the empty second in between is kept");
        assert_eq!(
            (s[0].start_ms, s[0].requests, s[0].failures),
            (10_000, 2, 1)
        );
        assert_eq!(s[0].p99_ms, 30.0);
        assert_eq!((s[1].requests, s[1].p99_ms), (0, 0.0));
        assert_eq!(s[2].failed_in.get("b"), Some(&1));
        assert_eq!(t.end_ms(), 12_505);
        assert_eq!(t.failed(), 2);
    }
}
