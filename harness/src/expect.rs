//! Expectations: what a person checks on a response or a command's output.
//!
//! One [`Expect`] block is shared by the `http` step and (inside a [`CommandExpect`], with
//! `exit-code` and `stdout-contains`) the `exec` and `istioctl` steps, so
//! `title: Simple Bookstore App` means the same thing wherever it is written. Each type refuses
//! the other's fields, and parses its regexes and CSS selector, when the file is read.
//! [`Expect::check`] and [`CommandExpect::check`] compare what was seen against every
//! expectation and return all mismatches at once, each naming what was expected and what was
//! seen.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::scenario::Templated;

/// Expectations on an HTTP answer (or, inside a [`CommandExpect`], a command's output): the
/// status and what the body shows.
///
/// Every field is optional; an empty block expects nothing (steps that need an expectation say
/// so during validation). Regular expressions and the CSS selector are parsed when the file is
/// read, so a bad one is refused before anything runs.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(try_from = "ExpectFields", into = "ExpectFields")]
pub struct Expect {
    /// HTTP status code, e.g. `200`.
    pub status: Option<Templated<u16>>,
    /// Text of the HTML `<title>` element, compared after trimming whitespace.
    pub title: Option<String>,
    /// Substrings the body (or stdout) must contain; one string or a list.
    pub contains: Vec<String>,
    /// Substrings the body (or stdout) must not contain; one string or a list.
    pub not_contains: Vec<String>,
    /// Regular expressions (Rust `regex` syntax) the body (or stdout) must match.
    pub regex: Vec<Pattern>,
    /// A CSS selector; with `text`, the text of the first match must contain it, without
    /// `text` at least one element must match.
    pub selector: Option<Css>,
    /// Text expected in the element chosen by `selector`.
    pub text: Option<String>,
    /// Checks on a JSON body by JSON pointer (RFC 6901).
    pub json: Vec<JsonExpect>,
}

/// Expectations on a finished command (`exec`, `istioctl`): its exit code, what its stdout
/// must contain, and the same body expectations as an HTTP answer (without `status`).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(try_from = "ExpectFields", into = "ExpectFields")]
pub struct CommandExpect {
    /// The exit code; 0 unless `exit-code` says otherwise.
    pub exit_code: Templated<i32>,
    /// Substrings a command's stdout must contain.
    pub stdout_contains: Vec<String>,
    /// Expectations on stdout as a body (`title`, `contains`, `regex`, ...); never a status.
    pub output: Expect,
}

/// An expectation block as written: HTTP and command fields side by side, strings unparsed.
/// [`Expect`] and [`CommandExpect`] are read through it and refuse the other's fields.
#[derive(Debug, Clone, Default, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct ExpectFields {
    /// HTTP status code, e.g. `200` (HTTP checks only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    status: Option<Templated<u16>>,
    /// Text of the HTML `<title>` element, compared after trimming whitespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    title: Option<String>,
    /// Substrings the body (or stdout) must contain; one string or a list.
    #[schemars(with = "crate::scenario::schema::OneOrMany")]
    #[serde(
        default,
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    contains: Vec<String>,
    /// Substrings the body (or stdout) must not contain; one string or a list.
    #[schemars(with = "crate::scenario::schema::OneOrMany")]
    #[serde(
        default,
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    not_contains: Vec<String>,
    /// Regular expressions (Rust `regex` syntax) the body (or stdout) must match.
    #[schemars(with = "crate::scenario::schema::OneOrMany")]
    #[serde(
        default,
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    regex: Vec<String>,
    /// A CSS selector; without `text`, at least one element must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    selector: Option<String>,
    /// Text the first element `selector` chooses must contain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    text: Option<String>,
    /// Checks on a JSON body by JSON pointer (RFC 6901).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    json: Vec<JsonExpect>,
    /// Substrings a command's stdout must contain (commands only).
    #[schemars(with = "crate::scenario::schema::OneOrMany")]
    #[serde(
        default,
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    stdout_contains: Vec<String>,
    /// The exit code a command must end with; 0 unless set (commands only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exit_code: Option<Templated<i32>>,
}

/// An expectation block refused when the file is read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpectError {
    /// A command's expectation (`exit-code`, `stdout-contains`) in an HTTP check.
    #[error("`{0}` applies to commands, not to an HTTP check")]
    CommandOnly(&'static str),
    /// `status` on a command.
    #[error("`status: {0}` applies to HTTP checks, not to a command; expect its `exit-code`")]
    HttpOnly(Templated<u16>),
    /// `text` without the `selector` that picks its element.
    #[error("`text` needs a `selector` to say which element")]
    TextWithoutSelector,
    /// A regular expression that does not compile.
    #[error("invalid regex {pattern:?}: {reason}")]
    Regex {
        /// The expression as written.
        pattern: String,
        /// The compiler's last line (what is wrong).
        reason: String,
    },
    /// A CSS selector that does not parse.
    #[error("invalid CSS selector {0:?}")]
    Selector(String),
}

impl schemars::JsonSchema for Expect {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Expect".into()
    }

    /// The block as written, without the command fields it refuses.
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let mut schema = ExpectFields::json_schema(generator);
        schema.insert(
            "description".into(),
            "What an HTTP answer must show.".into(),
        );
        crate::scenario::schema::without(schema, &["exit-code", "stdout-contains"])
    }
}

impl schemars::JsonSchema for CommandExpect {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "CommandExpect".into()
    }

    /// The block as written, without the HTTP `status` it refuses.
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let mut schema = ExpectFields::json_schema(generator);
        let text = "What a command must show: its `exit-code` (0 by default) and its stdout.";
        schema.insert("description".into(), text.into());
        crate::scenario::schema::without(schema, &["status"])
    }
}

impl TryFrom<ExpectFields> for Expect {
    type Error = ExpectError;

    fn try_from(f: ExpectFields) -> Result<Self, ExpectError> {
        if f.exit_code.is_some() {
            return Err(ExpectError::CommandOnly("exit-code"));
        }
        if !f.stdout_contains.is_empty() {
            return Err(ExpectError::CommandOnly("stdout-contains"));
        }
        body_of(f)
    }
}

impl TryFrom<ExpectFields> for CommandExpect {
    type Error = ExpectError;

    fn try_from(mut f: ExpectFields) -> Result<Self, ExpectError> {
        if let Some(s) = f.status {
            return Err(ExpectError::HttpOnly(s));
        }
        let (exit_code, stdout_contains) =
            (f.exit_code.take(), std::mem::take(&mut f.stdout_contains));
        Ok(CommandExpect {
            exit_code: exit_code.unwrap_or(Templated::Literal(0)),
            stdout_contains,
            output: body_of(f)?,
        })
    }
}

/// The body (and status) expectations of a block, with its regexes and selector parsed.
fn body_of(f: ExpectFields) -> Result<Expect, ExpectError> {
    if f.text.is_some() && f.selector.is_none() {
        return Err(ExpectError::TextWithoutSelector);
    }
    Ok(Expect {
        status: f.status,
        title: f.title,
        contains: f.contains,
        not_contains: f.not_contains,
        regex: f
            .regex
            .iter()
            .map(|r| r.parse())
            .collect::<Result<_, _>>()?,
        selector: f.selector.as_deref().map(str::parse).transpose()?,
        text: f.text,
        json: f.json,
    })
}

impl From<Expect> for ExpectFields {
    fn from(e: Expect) -> Self {
        ExpectFields {
            status: e.status,
            title: e.title,
            contains: e.contains,
            not_contains: e.not_contains,
            regex: e.regex.iter().map(|r| r.to_string()).collect(),
            selector: e.selector.map(|s| s.to_string()),
            text: e.text,
            json: e.json,
            ..ExpectFields::default()
        }
    }
}

impl From<CommandExpect> for ExpectFields {
    fn from(e: CommandExpect) -> Self {
        ExpectFields {
            exit_code: Some(e.exit_code),
            stdout_contains: e.stdout_contains,
            ..e.output.into()
        }
    }
}

/// A regular expression (Rust `regex` syntax), compiled when the file is read.
#[derive(Debug, Clone)]
pub struct Pattern(regex::Regex);

impl std::str::FromStr for Pattern {
    type Err = ExpectError;

    fn from_str(re: &str) -> Result<Self, ExpectError> {
        regex::Regex::new(re)
            .map(Pattern)
            .map_err(|e| ExpectError::Regex {
                pattern: re.to_string(),
                reason: e.to_string().lines().last().unwrap_or_default().to_string(),
            })
    }
}

impl std::fmt::Display for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.as_str())
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

/// A CSS selector, parsed when the file is read.
#[derive(Debug, Clone, PartialEq)]
pub struct Css {
    text: String,
    selector: scraper::Selector,
}

impl std::str::FromStr for Css {
    type Err = ExpectError;

    fn from_str(text: &str) -> Result<Self, ExpectError> {
        scraper::Selector::parse(text)
            .map(|selector| Css {
                text: text.to_string(),
                selector,
            })
            .map_err(|_| ExpectError::Selector(text.to_string()))
    }
}

impl std::fmt::Display for Css {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// One check on a JSON document, by JSON pointer.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
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
    pub min: Option<Templated<f64>>,
    /// The value there, as text, must contain this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contains: Option<String>,
}

/// One expectation that did not hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mismatch {
    /// The expectation's key, e.g. `title` or `json /data/result`.
    pub what: String,
    /// What was expected and what was seen, in one sentence.
    pub message: String,
}

impl Mismatch {
    /// A mismatch of the expectation `what`.
    pub fn new(what: &str, message: String) -> Self {
        Mismatch {
            what: what.to_string(),
            message,
        }
    }
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

    /// Problems with the block that parsing does not catch (JSON pointers and checks), found
    /// during validation before anything runs.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
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

    /// Checks every expectation against an HTTP answer; an empty result means all held.
    pub fn check(&self, status: u16, body: &str) -> Vec<Mismatch> {
        let mut out = Vec::new();
        if let Some(want) = self.status.as_ref().map(Templated::value)
            && status != want
        {
            out.push(Mismatch::new(
                "status",
                format!("expected {want}, got {status}"),
            ));
        }
        self.check_body(body, &mut out);
        self.check_json(body, &mut out);
        out
    }

    /// The `title`, `contains`, `not-contains`, `regex` and `selector` expectations.
    fn check_body(&self, body: &str, out: &mut Vec<Mismatch>) {
        if let Some(want) = &self.title {
            match html_title(body) {
                Some(got) if got.trim() == want.trim() => {}
                Some(got) => out.push(Mismatch::new(
                    "title",
                    format!("expected {want:?}, got {:?}", got.trim()),
                )),
                None => out.push(Mismatch::new(
                    "title",
                    format!(
                        "expected {want:?}, but the body has no <title> ({})",
                        excerpt(body)
                    ),
                )),
            }
        }
        for s in self.contains.iter().filter(|s| !body.contains(s.as_str())) {
            out.push(Mismatch::new(
                "contains",
                format!("{s:?} not found in {}", excerpt(body)),
            ));
        }
        for s in self
            .not_contains
            .iter()
            .filter(|s| body.contains(s.as_str()))
        {
            out.push(Mismatch::new(
                "not-contains",
                format!("{s:?} was found in {}", excerpt(body)),
            ));
        }
        for re in self.regex.iter().filter(|r| !r.0.is_match(body)) {
            out.push(Mismatch::new(
                "regex",
                format!("{:?} does not match {}", re.to_string(), excerpt(body)),
            ));
        }
        if let Some(sel) = &self.selector {
            self.check_selector(sel, body, out);
        }
    }

    /// The element `selector` chooses exists and, with `text`, contains it.
    fn check_selector(&self, sel: &Css, body: &str, out: &mut Vec<Mismatch>) {
        match first_text(body, &sel.selector) {
            None => out.push(Mismatch::new(
                "selector",
                format!("no element matches {:?}", sel.text),
            )),
            Some(got) => {
                if let Some(want) = &self.text
                    && !got.contains(want.as_str())
                {
                    out.push(Mismatch::new(
                        "text",
                        format!(
                            "element {:?} has text {:?}, expected it to contain {want:?}",
                            sel.text,
                            got.trim()
                        ),
                    ));
                }
            }
        }
    }

    /// The `json` expectations, on the body read as JSON.
    fn check_json(&self, body: &str, out: &mut Vec<Mismatch>) {
        if self.json.is_empty() {
            return;
        }
        let doc = match serde_json::from_str::<Value>(body) {
            Ok(doc) => doc,
            Err(e) => {
                out.push(Mismatch::new(
                    "json",
                    format!("body is not JSON ({e}): {}", excerpt(body)),
                ));
                return;
            }
        };
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
                out.push(Mismatch::new(&what, m));
            }
        }
    }
}

impl CommandExpect {
    /// Problems with the block that parsing does not catch (see [`Expect::problems`]).
    pub fn problems(&self) -> Vec<String> {
        self.output.problems()
    }

    /// Checks a finished command's output; the mismatches come back as one sentence (`None`
    /// when every expectation held).
    pub fn check(&self, stdout: &str, exit_code: i32) -> Option<String> {
        let mut misses = Vec::new();
        let want = self.exit_code.value();
        if exit_code != want {
            misses.push(Mismatch::new(
                "exit-code",
                format!("expected {want}, got {exit_code}"),
            ));
        }
        self.output.check_body(stdout, &mut misses);
        for s in self
            .stdout_contains
            .iter()
            .filter(|s| !stdout.contains(s.as_str()))
        {
            misses.push(Mismatch::new(
                "stdout-contains",
                format!("{s:?} not found in stdout {}", excerpt(stdout)),
            ));
        }
        self.output.check_json(stdout, &mut misses);
        (!misses.is_empty()).then(|| {
            misses
                .iter()
                .map(|m| m.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        })
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
        if let Some(min) = self.min.as_ref().map(Templated::value) {
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
    static TITLE: std::sync::LazyLock<scraper::Selector> =
        std::sync::LazyLock::new(|| scraper::Selector::parse("title").expect("a valid selector"));
    first_text(body, &TITLE)
}

/// The text of the first element matching `selector`.
fn first_text(body: &str, selector: &scraper::Selector) -> Option<String> {
    let doc = scraper::Html::parse_document(body);
    doc.select(selector)
        .next()
        .map(|e| e.text().collect::<String>())
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

crate::scenario::resolve::resolve_fields!(Expect {
    status,
    title,
    contains,
    not_contains,
    regex,
    selector,
    text,
    json
});
crate::scenario::resolve::resolve_fields!(CommandExpect {
    exit_code,
    stdout_contains,
    output
});
crate::scenario::resolve::resolve_fields!(JsonExpect {
    pointer,
    equals,
    min,
    contains
});
// Parsed when the file is read, so they hold no variable.
crate::scenario::resolve::resolve_as_is!(Pattern, Css);

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = "<html><head><title>Simple Bookstore App</title></head>\
        <body><h3 class=\"book\">The Comedy of Errors</h3></body></html>";

    fn read<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, String> {
        serde_json::from_value(v).map_err(|e| e.to_string())
    }

    #[test]
    fn title_selector_contains_hold_on_the_page() {
        let e: Expect = read(serde_json::json!({
            "status": 200, "title": "Simple Bookstore App", "contains": "Comedy",
            "selector": "h3.book", "text": "Errors", "regex": r"Comedy\s+of",
        }))
        .unwrap();
        assert!(e.problems().is_empty());
        assert_eq!(e.check(200, PAGE), vec![]);
        let round: Expect = read(serde_json::to_value(&e).unwrap()).unwrap();
        assert_eq!(round, e);
    }

    #[test]
    fn every_mismatch_is_reported_with_what_was_seen() {
        let e = Expect {
            status: Some(Templated::Literal(200)),
            title: Some("Simple Bookstore App".into()),
            contains: vec!["Hamlet".into()],
            ..Default::default()
        };
        let m = e.check(503, "<title>no healthy upstream</title>");
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
                    min: Some(Templated::Literal(1.0)),
                    ..Default::default()
                },
                JsonExpect {
                    pointer: "/data/result/0/value/1".into(),
                    min: Some(Templated::Literal(50.0)),
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
        assert_eq!(e.check(200, body), vec![]);
        let e = Expect {
            json: vec![JsonExpect {
                pointer: "/data/result/0/value/1".into(),
                min: Some(Templated::Literal(100.0)),
                ..Default::default()
            }],
            ..Default::default()
        };
        let m = e.check(200, body);
        assert_eq!(
            m[0].to_string(),
            "json /data/result/0/value/1: expected at least 100, got 57"
        );
    }

    #[test]
    fn command_exit_code_and_stdout() {
        let e = CommandExpect {
            stdout_contains: vec!["No validation issues found".into()],
            ..Default::default()
        };
        assert_eq!(
            e.check(
                "✔ No validation issues found when analyzing namespace: default.",
                0
            ),
            None
        );
        let m = e.check("Warning [IST0102]", 79).unwrap();
        assert!(
            m.starts_with("exit-code: expected 0, got 79; stdout-contains: "),
            "{m}"
        );
    }

    #[test]
    fn http_and_command_fields_are_refused_where_they_do_not_apply() {
        let e = read::<CommandExpect>(serde_json::json!({"status": 200})).unwrap_err();
        assert!(e.contains("`status: 200` applies to HTTP checks"), "{e}");
        let e = read::<Expect>(serde_json::json!({"stdout-contains": "x"})).unwrap_err();
        assert!(e.contains("`stdout-contains` applies to commands"), "{e}");
        let c: CommandExpect = read(serde_json::json!({"exit-code": 3, "contains": "x"})).unwrap();
        assert_eq!((c.exit_code.value(), c.output.contains.len()), (3, 1));
        assert_eq!(
            read::<CommandExpect>(serde_json::to_value(&c).unwrap()),
            Ok(c)
        );
    }

    #[test]
    fn bad_regex_and_selector_are_refused_when_read() {
        let e = read::<Expect>(serde_json::json!({"regex": "("})).unwrap_err();
        assert!(e.starts_with("invalid regex \"(\": "), "{e}");
        let e = read::<Expect>(serde_json::json!({"selector": "h3["})).unwrap_err();
        assert!(e.starts_with("invalid CSS selector \"h3[\""), "{e}");
        assert_eq!(
            read::<Expect>(serde_json::json!({"text": "x"})),
            Err("`text` needs a `selector` to say which element".to_string())
        );
    }
}
