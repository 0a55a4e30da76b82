//! Expectations: what a person checks on a response or a command's output.
//!
//! One [`Expect`] block is shared by the `http`, `exec`, `istioctl` and dashboard steps, so
//! `title: Simple Bookstore App` means the same thing wherever it is written. [`Expect::check`]
//! compares an [`Observed`] value against every expectation and returns all mismatches at once,
//! each naming what was expected and what was seen.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// Expectations on a response body, an HTTP status, or a command's stdout and exit code.
///
/// Every field is optional; an empty block expects nothing (steps that need an expectation say
/// so during validation).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Expect {
    /// HTTP status code, e.g. `200`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Text of the HTML `<title>` element, compared after trimming whitespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Substrings the body (or stdout) must contain; one string or a list.
    #[serde(
        default,
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub contains: Vec<String>,
    /// Substrings the body (or stdout) must not contain; one string or a list.
    #[serde(
        default,
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub not_contains: Vec<String>,
    /// Regular expressions (Rust `regex` syntax) the body (or stdout) must match.
    #[serde(
        default,
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub regex: Vec<String>,
    /// A CSS selector; with `text`, the text of the first match must contain it, without
    /// `text` at least one element must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Text expected in the element chosen by `selector`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Checks on a JSON body by JSON pointer (RFC 6901).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub json: Vec<JsonExpect>,
    /// Substrings a command's stdout must contain.
    #[serde(
        default,
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub stdout_contains: Vec<String>,
    /// A command's exit code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
}

/// One check on a JSON document, by JSON pointer.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct JsonExpect {
    /// The JSON pointer, e.g. `/data/result/0/value/1` (`""` is the whole document).
    pub pointer: String,
    /// The value there must equal this (a number given as a string in the JSON, as Prometheus
    /// writes sample values, equals the same number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<Value>,
    /// The value there must be at least this: a number (or a numeric string) is compared by
    /// value, an array or object by its length.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// The value there, as text, must contain this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contains: Option<String>,
}

/// What a step observed, for [`Expect::check`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Observed<'a> {
    /// HTTP status, for HTTP steps.
    pub status: Option<u16>,
    /// Response body, or a command's stdout.
    pub body: &'a str,
    /// A command's stdout, for `stdout-contains` (commands set it to the same text as `body`).
    pub stdout: Option<&'a str>,
    /// A command's exit code.
    pub exit_code: Option<i32>,
}

impl Observed<'_> {
    /// An HTTP response.
    pub fn http(status: u16, body: &str) -> Observed<'_> {
        Observed {
            status: Some(status),
            body,
            stdout: None,
            exit_code: None,
        }
    }

    /// A finished command.
    pub fn command(stdout: &str, exit_code: i32) -> Observed<'_> {
        Observed {
            status: None,
            body: stdout,
            stdout: Some(stdout),
            exit_code: Some(exit_code),
        }
    }
}

/// One expectation that did not hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mismatch {
    /// The expectation's key, e.g. `title` or `json /data/result`.
    pub what: String,
    /// What was expected and what was seen, in one sentence.
    pub message: String,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.what, self.message)
    }
}

impl Expect {
    /// True when the block expects nothing.
    pub fn is_empty(&self) -> bool {
        *self == Expect::default()
    }

    /// Problems with the block itself (bad regex, bad selector, `text` without `selector`),
    /// found during validation before anything runs.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        for re in &self.regex {
            if let Err(e) = regex::Regex::new(re) {
                out.push(format!(
                    "invalid regex {re:?}: {}",
                    e.to_string().lines().last().unwrap_or_default()
                ));
            }
        }
        if let Some(sel) = &self.selector
            && scraper::Selector::parse(sel).is_err()
        {
            out.push(format!("invalid CSS selector {sel:?}"));
        }
        if self.text.is_some() && self.selector.is_none() {
            out.push("`text` needs a `selector` to say which element".to_string());
        }
        for j in &self.json {
            if !j.pointer.is_empty() && !j.pointer.starts_with('/') {
                out.push(format!(
                    "JSON pointer {:?} must be empty or start with '/'",
                    j.pointer
                ));
            }
            if j.equals.is_none() && j.min.is_none() && j.contains.is_none() {
                out.push(format!(
                    "json check at {:?} needs `equals`, `min` or `contains`",
                    j.pointer
                ));
            }
        }
        out
    }

    /// Checks a finished command's output: like [`Expect::check`], with the exit code expected
    /// to be 0 unless `exit-code` says otherwise. The mismatches come back as one sentence
    /// (`None` when every expectation held).
    pub fn check_command(&self, stdout: &str, exit_code: i32) -> Option<String> {
        let mut e = self.clone();
        e.exit_code.get_or_insert(0);
        let misses = e.check(Observed::command(stdout, exit_code));
        (!misses.is_empty()).then(|| {
            misses
                .iter()
                .map(|m| m.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        })
    }

    /// Checks every expectation against what was observed; an empty result means all held.
    pub fn check(&self, seen: Observed<'_>) -> Vec<Mismatch> {
        let mut out = Vec::new();
        let mut miss = |what: &str, message: String| {
            out.push(Mismatch {
                what: what.to_string(),
                message,
            })
        };
        if let Some(want) = self.status {
            match seen.status {
                Some(got) if got == want => {}
                Some(got) => miss("status", format!("expected {want}, got {got}")),
                None => miss(
                    "status",
                    format!("expected {want}, but no HTTP status was seen"),
                ),
            }
        }
        if let Some(want) = self.exit_code {
            match seen.exit_code {
                Some(got) if got == want => {}
                Some(got) => miss("exit-code", format!("expected {want}, got {got}")),
                None => miss(
                    "exit-code",
                    format!("expected {want}, but no exit code was seen"),
                ),
            }
        }
        if let Some(want) = &self.title {
            match html_title(seen.body) {
                Some(got) if got.trim() == want.trim() => {}
                Some(got) => miss("title", format!("expected {want:?}, got {:?}", got.trim())),
                None => miss(
                    "title",
                    format!(
                        "expected {want:?}, but the body has no <title> ({})",
                        excerpt(seen.body)
                    ),
                ),
            }
        }
        for s in &self.contains {
            if !seen.body.contains(s.as_str()) {
                miss(
                    "contains",
                    format!("{s:?} not found in {}", excerpt(seen.body)),
                );
            }
        }
        for s in &self.not_contains {
            if seen.body.contains(s.as_str()) {
                miss(
                    "not-contains",
                    format!("{s:?} was found in {}", excerpt(seen.body)),
                );
            }
        }
        for re in &self.regex {
            match regex::Regex::new(re) {
                Ok(r) if r.is_match(seen.body) => {}
                Ok(_) => miss(
                    "regex",
                    format!("{re:?} does not match {}", excerpt(seen.body)),
                ),
                Err(e) => miss("regex", format!("invalid regex {re:?}: {e}")),
            }
        }
        if let Some(sel) = &self.selector {
            match select_text(seen.body, sel) {
                Err(e) => miss("selector", e),
                Ok(None) => miss("selector", format!("no element matches {sel:?}")),
                Ok(Some(got)) => {
                    if let Some(want) = &self.text
                        && !got.contains(want.as_str())
                    {
                        miss(
                            "text",
                            format!(
                                "element {sel:?} has text {:?}, expected it to contain {want:?}",
                                got.trim()
                            ),
                        );
                    }
                }
            }
        }
        for s in &self.stdout_contains {
            let stdout = seen.stdout.unwrap_or(seen.body);
            if !stdout.contains(s.as_str()) {
                miss(
                    "stdout-contains",
                    format!("{s:?} not found in stdout {}", excerpt(stdout)),
                );
            }
        }
        if !self.json.is_empty() {
            match serde_json::from_str::<Value>(seen.body) {
                Err(e) => miss(
                    "json",
                    format!("body is not JSON ({e}): {}", excerpt(seen.body)),
                ),
                Ok(doc) => {
                    for j in &self.json {
                        let what = format!(
                            "json {}",
                            if j.pointer.is_empty() {
                                "/"
                            } else {
                                &j.pointer
                            }
                        );
                        for m in j.check(&doc) {
                            miss(&what, m);
                        }
                    }
                }
            }
        }
        out
    }
}

impl JsonExpect {
    /// Checks this pointer's expectations on `doc`; returns one message per failed check.
    pub fn check(&self, doc: &Value) -> Vec<String> {
        let mut out = Vec::new();
        let Some(v) = doc.pointer(&self.pointer) else {
            out.push(format!(
                "nothing at this pointer in {}",
                excerpt(&doc.to_string())
            ));
            return out;
        };
        if let Some(want) = &self.equals
            && !json_equal(v, want)
        {
            out.push(format!("expected {want}, got {v}"));
        }
        if let Some(min) = self.min {
            match json_magnitude(v) {
                Some(got) if got >= min => {}
                Some(got) => out.push(format!("expected at least {min}, got {got}")),
                None => out.push(format!(
                    "expected at least {min}, got {v}, which has no size"
                )),
            }
        }
        if let Some(want) = &self.contains {
            let text = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            if !text.contains(want.as_str()) {
                out.push(format!("{want:?} not found in {}", excerpt(&text)));
            }
        }
        out
    }
}

/// The text of the first `<title>` element of an HTML document.
pub fn html_title(body: &str) -> Option<String> {
    select_text(body, "title").ok().flatten()
}

/// The text of the first element matching a CSS selector; `Err` for an invalid selector.
pub fn select_text(body: &str, selector: &str) -> Result<Option<String>, String> {
    let sel = scraper::Selector::parse(selector)
        .map_err(|e| format!("invalid CSS selector {selector:?}: {e}"))?;
    let doc = scraper::Html::parse_document(body);
    Ok(doc
        .select(&sel)
        .next()
        .map(|e| e.text().collect::<String>()))
}

fn json_equal(got: &Value, want: &Value) -> bool {
    if got == want {
        return true;
    }
    match (json_number(got), json_number(want)) {
        (Some(a), Some(b)) => (a - b).abs() < 1e-9,
        _ => false,
    }
}

fn json_number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn json_magnitude(v: &Value) -> Option<f64> {
    match v {
        Value::Array(a) => Some(a.len() as f64),
        Value::Object(o) => Some(o.len() as f64),
        other => json_number(other),
    }
}

/// A short, single-line excerpt of a body for error messages.
pub fn excerpt(body: &str) -> String {
    const MAX: usize = 200;
    let flat: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.is_empty() {
        return "an empty body".to_string();
    }
    if flat.chars().count() <= MAX {
        format!("{flat:?}")
    } else {
        let cut: String = flat.chars().take(MAX).collect();
        format!("{cut:?} (cut at {MAX} characters)")
    }
}

/// Accepts `key: value` or `key: [a, b]` for list fields.
pub(crate) fn one_or_many<'de, D>(d: D) -> Result<Vec<String>, D::Error>
where
    D: Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = "<html><head><title>Simple Bookstore App</title></head>\
        <body><h3 class=\"book\">The Comedy of Errors</h3></body></html>";

    #[test]
    fn title_selector_contains_hold_on_the_page() {
        let e = Expect {
            status: Some(200),
            title: Some("Simple Bookstore App".into()),
            contains: vec!["Comedy".into()],
            selector: Some("h3.book".into()),
            text: Some("Errors".into()),
            regex: vec![r"Comedy\s+of".into()],
            ..Default::default()
        };
        assert!(e.problems().is_empty());
        assert_eq!(e.check(Observed::http(200, PAGE)), vec![]);
    }

    #[test]
    fn every_mismatch_is_reported_with_what_was_seen() {
        let e = Expect {
            status: Some(200),
            title: Some("Simple Bookstore App".into()),
            contains: vec!["Hamlet".into()],
            ..Default::default()
        };
        let m = e.check(Observed::http(503, "<title>no healthy upstream</title>"));
        let text: Vec<String> = m.iter().map(|m| m.to_string()).collect();
        assert_eq!(text.len(), 3, "{text:?}");
        assert_eq!(text[0], "status: expected 200, got 503");
        assert_eq!(
            text[1],
            "title: expected \"Simple Bookstore App\", got \"no healthy upstream\""
        );
        assert!(
            text[2].starts_with("contains: \"Hamlet\" not found"),
            "{}",
            text[2]
        );
    }

    #[test]
    fn json_pointer_equality_and_minimum() {
        let body = r#"{"status":"success","data":{"result":[{"value":[1,"57"]}]}}"#;
        let e = Expect {
            json: vec![
                JsonExpect {
                    pointer: "/status".into(),
                    equals: Some("success".into()),
                    ..Default::default()
                },
                JsonExpect {
                    pointer: "/data/result".into(),
                    min: Some(1.0),
                    ..Default::default()
                },
                JsonExpect {
                    pointer: "/data/result/0/value/1".into(),
                    min: Some(50.0),
                    ..Default::default()
                },
                JsonExpect {
                    pointer: "/data/result/0/value/1".into(),
                    equals: Some(57.into()),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        assert_eq!(e.check(Observed::http(200, body)), vec![]);
        let e = Expect {
            json: vec![JsonExpect {
                pointer: "/data/result/0/value/1".into(),
                min: Some(100.0),
                ..Default::default()
            }],
            ..Default::default()
        };
        let m = e.check(Observed::http(200, body));
        assert_eq!(
            m[0].to_string(),
            "json /data/result/0/value/1: expected at least 100, got 57"
        );
    }

    #[test]
    fn command_exit_code_and_stdout() {
        let e = Expect {
            exit_code: Some(0),
            stdout_contains: vec!["No validation issues found".into()],
            ..Default::default()
        };
        assert!(
            e.check(Observed::command(
                "✔ No validation issues found when analyzing namespace: default.",
                0
            ))
            .is_empty()
        );
        let m = e.check(Observed::command("Warning [IST0102]", 79));
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].to_string(), "exit-code: expected 0, got 79");
    }

    #[test]
    fn bad_regex_and_selector_are_validation_problems() {
        let e = Expect {
            regex: vec!["(".into()],
            selector: Some("h3[".into()),
            text: None,
            ..Default::default()
        };
        assert_eq!(e.problems().len(), 2);
        let e = Expect {
            text: Some("x".into()),
            ..Default::default()
        };
        assert_eq!(
            e.problems(),
            vec!["`text` needs a `selector` to say which element".to_string()]
        );
    }
}
