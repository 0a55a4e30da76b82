//! Parsing scenario files with `file:line:column` on every error.
//!
//! The YAML crate is `serde-saphyr`: `serde_yaml` is archived and `serde_yml` carries
//! RUSTSEC-2025-0068, while serde-saphyr is maintained, pure Rust, reports a line and column
//! for every error (`Error::location`), and keeps the location of any value wrapped in
//! [`serde_saphyr::Spanned`], which is how every step remembers where it was written. It is
//! already in the tree through kube-client, so it costs no new crates.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

use super::condition::Condition;
use super::{Retry, STEP_KINDS, Scenario, ScenarioFile, Step, StepKind};
use crate::scenario::validate::Diagnostic;

/// A value with the place in the file where it was written (`.referenced.line()`).
pub type Located<T> = serde_saphyr::Spanned<T>;

/// Reads and parses a scenario file. A file that cannot be read or parsed gives one
/// [`Diagnostic`] naming the path, line and column.
pub fn load(path: &Path) -> Result<ScenarioFile, Diagnostic> {
    let source = std::fs::read_to_string(path).map_err(|e| Diagnostic {
        path: path.to_path_buf(),
        line: 0,
        column: 0,
        message: format!("cannot read the scenario file: {e}"),
    })?;
    parse_str(path, source)
}

/// Parses scenario text; `path` is used in messages only.
pub fn parse_str(path: &Path, source: String) -> Result<ScenarioFile, Diagnostic> {
    match serde_saphyr::from_str::<Scenario>(&source) {
        Ok(scenario) => Ok(ScenarioFile {
            path: path.to_path_buf(),
            source,
            scenario,
        }),
        Err(err) => {
            let (line, column) = err
                .location()
                .map(|l| (l.line(), l.column()))
                .unwrap_or((1, 1));
            Err(Diagnostic {
                path: path.to_path_buf(),
                line,
                column,
                message: plain_message(&err),
            })
        }
    }
}

/// The error's message without the crate's own "at line X column Y" decoration, since we print
/// `file:line:col:` in front of it ourselves.
fn plain_message(err: &serde_saphyr::Error) -> String {
    let opts = serde_saphyr::render_options! { snippets: serde_saphyr::SnippetMode::Off };
    let text = err.without_snippet().render_with_options(opts);
    let re = regex::Regex::new(r"(?i)^(error: )?(at )?line \d+,? column \d+:?\s*")
        .expect("static regex");
    without_trailing_location(&re.replace(text.trim(), ""))
}

/// `text` without a trailing "at line X, column Y".
fn without_trailing_location(text: &str) -> String {
    let re_tail = regex::Regex::new(r"(?i),? at line \d+,? column \d+\s*$").expect("static regex");
    re_tail.replace(text, "").into_owned()
}

impl<'de> Deserialize<'de> for Step {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(StepVisitor)
    }
}

struct StepVisitor;

impl<'de> Visitor<'de> for StepVisitor {
    type Value = Step;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "a step: a map with one step kind ({})",
            STEP_KINDS.join(", ")
        )
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Step, A::Error> {
        let mut name = None;
        let mut timeout = None;
        let mut retry = None;
        let mut when = None;
        let mut kind: Option<StepKind> = None;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "name" => name = Some(map.next_value::<String>()?),
                "timeout" => timeout = Some(map.next_value::<HumanDuration>()?.0),
                "retry" => retry = Some(map.next_value::<RetrySpec>()?.into_retry()),
                "when" => when = Some(map.next_value::<Condition>()?),
                k if STEP_KINDS.contains(&k) => {
                    if let Some(prev) = &kind {
                        return Err(de::Error::custom(format!(
                            "a step has exactly one kind, but this one has both `{}` and `{k}`; split it into two steps",
                            prev.kind_name()
                        )));
                    }
                    kind = Some(next_kind(k, &mut map).map_err(|e| at_step(k, e))?);
                }
                other => {
                    return Err(de::Error::custom(format!(
                        "unknown step kind or field `{other}`{}; a step has `name`, `timeout`, `retry`, `when` and one of: {}",
                        suggest(other),
                        STEP_KINDS.join(", ")
                    )));
                }
            }
        }
        let Some(kind) = kind else {
            return Err(de::Error::custom(format!(
                "this step has no kind; add one of: {}",
                STEP_KINDS.join(", ")
            )));
        };
        Ok(Step {
            name,
            timeout,
            retry,
            when,
            kind,
        })
    }
}

fn next_kind<'de, A: MapAccess<'de>>(k: &str, map: &mut A) -> Result<StepKind, A::Error> {
    StepKind::next_named(k, map)?
        .ok_or_else(|| de::Error::custom(format!("unknown step kind `{k}`")))
}

/// A spec wrong as a whole ([`SpecError`](crate::steps::SpecError), e.g. a `wait` with no
/// target) is reported where the step starts, as validation reports a step's problems; an
/// error in one field keeps that field's line and column.
fn at_step<E: de::Error>(kind: &str, e: E) -> E {
    let text = without_trailing_location(&e.to_string());
    if text.starts_with(&format!("{kind} step: ")) {
        E::custom(text)
    } else {
        e
    }
}

/// " (did you mean `x`?)" for a near miss of a step kind or common field.
fn suggest(word: &str) -> String {
    let candidates = STEP_KINDS
        .iter()
        .chain(["name", "timeout", "retry", "when"].iter());
    candidates
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, c)| format!(" (did you mean `{c}`?)"))
        .unwrap_or_default()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// A duration written as humantime text: `30s`, `5m`, `1h 30m`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HumanDuration(Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        parse_duration(&text)
            .map(HumanDuration)
            .map_err(de::Error::custom)
    }
}

/// A duration that is not humantime text.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid duration {text:?} ({source}); write it like `30s`, `5m` or `1h 30m`")]
pub struct DurationError {
    /// The text as written.
    pub text: String,
    /// What humantime found wrong.
    pub source: humantime::DurationError,
}

/// Parses `30s`, `5m`, `1h 30m`; the error says what is accepted.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    humantime::parse_duration(text.trim()).map_err(|source| DurationError {
        text: text.to_string(),
        source,
    })
}

/// `retry: 3` or `retry: { attempts: 3, backoff: 2s }`.
enum RetrySpec {
    Attempts(u32),
    Full(RetryFull),
}

struct RetryFull {
    attempts: u32,
    backoff: Option<HumanDuration>,
}

impl<'de> Deserialize<'de> for RetrySpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RetryVisitor)
    }
}

struct RetryVisitor;

impl<'de> Visitor<'de> for RetryVisitor {
    type Value = RetrySpec;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a number of attempts (`retry: 3`) or `{ attempts: 3, backoff: 2s }`")
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<RetrySpec, E> {
        u32::try_from(n)
            .map(RetrySpec::Attempts)
            .map_err(|_| E::custom(format!("retry attempts {n} is too many")))
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<RetrySpec, E> {
        u64::try_from(n)
            .map_err(|_| E::custom(format!("retry attempts must be at least 1, not {n}")))
            .and_then(|n| self.visit_u64(n))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RetrySpec, A::Error> {
        let (mut attempts, mut backoff) = (None, None);
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "attempts" => attempts = Some(map.next_value::<u32>()?),
                "backoff" => backoff = Some(map.next_value::<HumanDuration>()?),
                other => {
                    return Err(de::Error::custom(format!(
                        "unknown retry field `{other}`; a retry has `attempts` and `backoff`"
                    )));
                }
            }
        }
        let attempts = attempts.ok_or_else(|| de::Error::custom("a retry needs `attempts`"))?;
        Ok(RetrySpec::Full(RetryFull { attempts, backoff }))
    }
}

impl RetrySpec {
    /// The policy as written: `attempts: 0` is kept for validation to refuse, and a bad
    /// `backoff` has already failed parsing at its line.
    fn into_retry(self) -> Retry {
        match self {
            RetrySpec::Attempts(n) => Retry {
                attempts: n,
                ..Retry::default()
            },
            RetrySpec::Full(f) => Retry {
                attempts: f.attempts,
                backoff: f.backoff.map_or(Retry::default().backoff, |b| b.0),
            },
        }
    }
}

/// `serde(with = ...)` for `Option<Duration>` written as humantime text.
pub mod opt_duration {
    use super::*;

    /// Deserializes `Some(duration)` from text like `5m`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Some(HumanDuration::deserialize(d)?.0))
    }

    /// Serializes as humantime text.
    pub fn serialize<S: serde::Serializer>(v: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(d) => humantime::format_duration(*d).to_string().serialize(s),
            None => s.serialize_none(),
        }
    }
}

/// `serde(with = ...)` for a required `Duration` written as humantime text.
pub mod duration {
    use super::*;

    /// Deserializes a duration from text like `5m`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(HumanDuration::deserialize(d)?.0)
    }

    /// Serializes as humantime text.
    pub fn serialize<S: serde::Serializer>(v: &Duration, s: S) -> Result<S::Ok, S::Error> {
        humantime::format_duration(*v).to_string().serialize(s)
    }
}
