//! Traffic: exactly `requests` GETs, `concurrency` at a time, counted by status and, for
//! Bookinfo product pages, by the `reviews` version that served them.
//!
//! Prometheus, Kiali and Jaeger only show something after traffic flowed (istio.io's tests send
//! 50 requests first). The report is a histogram, so a run shows what the mesh did, e.g.
//! `{"200": 48, "503": 2}` and `{"v1": 25, "v3": 23}`.
//!
//! ```yaml
//! url: http://127.0.0.1:8080/productpage
//! requests: 100
//! concurrency: 8        # default
//! expect-status: 200    # what counts as a success; default: any 2xx
//! min-success: 95%      # a count (95) or a percentage ("95%") of the requests
//! max-failures: 5
//! reviews-split:
//!   weights: { v1: 50, v3: 50 }
//!   tolerance: 15
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::time::Instant;

use super::bookinfo::{ProductPage, ReviewsSplit};
use super::{
    HINT_UNREACHABLE, MAX_BODY_BYTES, PER_TRY_TIMEOUT, TransportKind, describe_error, fmt_duration,
    read_body,
};
use crate::Outputs;
use crate::error::StepError;
use crate::expect::Mismatch;
use crate::scenario::Templated;

/// The most requests one traffic step may send.
pub const MAX_REQUESTS: u32 = 100_000;
/// The most requests in flight at once.
pub const MAX_CONCURRENCY: u32 = 256;

/// What traffic to send and what it must show.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(try_from = "TrafficFields", into = "TrafficFields")]
pub struct TrafficSpec {
    /// The URL to GET, e.g. `http://127.0.0.1:8080/productpage`.
    pub url: String,
    /// A number of requests, or traffic in the background until stopped.
    pub mode: TrafficMode,
    /// How many requests may be in flight at once (default 8).
    pub concurrency: Templated<u32>,
    /// Extra request headers (e.g. `end-user: jason` for a header-matched route).
    pub headers: BTreeMap<String, String>,
    /// A `Host` header to send instead of the URL's host.
    pub host: Option<String>,
    /// The status that counts as a success; any 2xx when absent.
    pub expect_status: Option<Templated<u16>>,
    /// At least this many requests must succeed.
    pub min_success: Option<Threshold>,
    /// At most this many requests may fail (a wrong status or no answer).
    pub max_failures: Option<Threshold>,
    /// The split of `reviews` versions the product pages must show.
    pub reviews_split: Option<ReviewsSplit>,
}

/// How much traffic a step sends: written as `requests: N`, or `background: NAME` with an
/// optional `rate`.
#[derive(Debug, Clone, PartialEq)]
pub enum TrafficMode {
    /// Exactly this many requests; the step checks them when they are done.
    Requests(u32),
    /// Requests across the steps that follow, until the `traffic-stop` step with this name
    /// stops them and checks what they recorded.
    Background {
        /// The name its `traffic-stop` step gives.
        name: String,
        /// At most this many requests per second in all (no limit when absent: each of the
        /// `concurrency` workers sends its next request when the last ends).
        rate: Option<u32>,
    },
}

/// A traffic block as written: `requests`, `background` and `rate` side by side.
#[derive(Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[schemars(
    description = "GET requests to `url`: a number of `requests`, or traffic in the `background` until its `traffic-stop` step.",
    extend("oneOf" = [{ "required": ["requests"] }, { "required": ["background"] }])
)]
struct TrafficFields {
    /// The URL to GET, e.g. `${forward.url}/productpage`.
    url: String,
    /// Exactly this many requests; the step checks them when they are done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    requests: Option<u32>,
    /// Traffic across the steps that follow, until the `traffic-stop` step with this name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    background: Option<String>,
    /// Background traffic: at most this many requests per second in all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rate: Option<u32>,
    /// How many requests may be in flight at once.
    #[serde(default = "default_concurrency")]
    concurrency: Templated<u32>,
    /// Extra request headers (e.g. `end-user: jason` for a header-matched route).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    headers: BTreeMap<String, String>,
    /// A `Host` header to send instead of the URL's host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    host: Option<String>,
    /// The status that counts as a success; any 2xx when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expect_status: Option<Templated<u16>>,
    /// At least this many requests must succeed (a count or a percentage, `"95%"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    min_success: Option<Threshold>,
    /// At most this many requests may fail (a count or a percentage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_failures: Option<Threshold>,
    /// The split of `reviews` versions the product pages must show.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reviews_split: Option<ReviewsSplit>,
}

impl TryFrom<TrafficFields> for TrafficSpec {
    type Error = crate::steps::SpecError;

    fn try_from(f: TrafficFields) -> Result<Self, Self::Error> {
        let problem = |m: &str| crate::steps::SpecError::new("traffic", m);
        let mode = match (f.requests, f.background, f.rate) {
            (Some(_), Some(_), _) => {
                return Err(problem(
                    "background traffic runs until its `traffic-stop` step: drop `requests`",
                ));
            }
            (Some(_), None, Some(_)) => return Err(problem("`rate` is for background traffic")),
            (Some(n), None, None) => TrafficMode::Requests(n),
            (None, Some(name), rate) => TrafficMode::Background { name, rate },
            (None, None, _) => {
                return Err(problem(
                    "say how many `requests` to send (or run it in the `background` until a `traffic-stop` step)",
                ));
            }
        };
        Ok(TrafficSpec {
            url: f.url,
            mode,
            concurrency: f.concurrency,
            headers: f.headers,
            host: f.host,
            expect_status: f.expect_status,
            min_success: f.min_success,
            max_failures: f.max_failures,
            reviews_split: f.reviews_split,
        })
    }
}

impl From<TrafficSpec> for TrafficFields {
    fn from(s: TrafficSpec) -> Self {
        let (requests, background, rate) = match s.mode {
            TrafficMode::Requests(n) => (Some(n), None, None),
            TrafficMode::Background { name, rate } => (None, Some(name), rate),
        };
        TrafficFields {
            url: s.url,
            requests,
            background,
            rate,
            concurrency: s.concurrency,
            headers: s.headers,
            host: s.host,
            expect_status: s.expect_status,
            min_success: s.min_success,
            max_failures: s.max_failures,
            reviews_split: s.reviews_split,
        }
    }
}

fn default_concurrency() -> Templated<u32> {
    Templated::Literal(8)
}

impl TrafficSpec {
    /// The failures allowed: `max-failures` as written; none (0) when the step sets neither
    /// `max-failures` nor `min-success`, so traffic that fails is never a silent pass.
    pub fn max_failures(&self) -> Option<Threshold> {
        match (self.max_failures, self.min_success) {
            (Some(t), _) => Some(t),
            (None, None) => Some(Threshold::Count(0)),
            (None, Some(_)) => None,
        }
    }

    /// `requests` GETs of `url`, 8 at a time, with no expectations.
    pub fn new(url: impl Into<String>, requests: u32) -> Self {
        Self::with_mode(url, TrafficMode::Requests(requests))
    }

    /// GETs of `url` in the background under `name`, 8 at a time, with no rate limit.
    pub fn background(url: impl Into<String>, name: impl Into<String>) -> Self {
        let name = name.into();
        Self::with_mode(url, TrafficMode::Background { name, rate: None })
    }

    fn with_mode(url: impl Into<String>, mode: TrafficMode) -> Self {
        TrafficSpec {
            url: url.into(),
            mode,
            concurrency: default_concurrency(),
            headers: BTreeMap::new(),
            host: None,
            expect_status: None,
            min_success: None,
            max_failures: None,
            reviews_split: None,
        }
    }

    /// Problems with the spec itself, found before anything is sent.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Err(e) = reqwest::Url::parse(&self.url)
            && !self.url.contains("${")
        {
            out.push(format!("url {:?} is not a valid URL: {e}", self.url));
        }
        match &self.mode {
            TrafficMode::Requests(n) if *n == 0 || *n > MAX_REQUESTS => {
                out.push(format!("requests must be 1 to {MAX_REQUESTS}, not {n}"))
            }
            TrafficMode::Requests(_) => {}
            TrafficMode::Background { name, rate } => {
                if name.trim().is_empty() {
                    out.push("`background` needs a name for its `traffic-stop` step".into());
                }
                if self.min_success.is_some()
                    || self.max_failures.is_some()
                    || self.reviews_split.is_some()
                {
                    out.push(
                        "background traffic is checked when it stops: put `min-success`, `max-failures` and `reviews-split` on the `traffic-stop` step".into(),
                    );
                }
                if *rate == Some(0) {
                    out.push("`rate` must be at least 1 request per second".into());
                }
            }
        }
        if let Some(&c) = self.concurrency.literal()
            && (c == 0 || c > MAX_CONCURRENCY)
        {
            out.push(format!(
                "concurrency must be 1 to {MAX_CONCURRENCY}, not {c}"
            ));
        }
        for (k, v) in &self.headers {
            if reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err()
                || reqwest::header::HeaderValue::from_str(v).is_err()
            {
                out.push(format!("header {k:?}: {v:?} is not a valid header"));
            }
        }
        if let Some(h) = &self.host
            && reqwest::header::HeaderValue::from_str(h).is_err()
        {
            out.push(format!("host {h:?} is not a valid Host header"));
        }
        for (name, t) in [
            ("min-success", &self.min_success),
            ("max-failures", &self.max_failures),
        ] {
            if let Some(Threshold::Percent(p)) = t
                && !(0.0..=100.0).contains(p)
            {
                out.push(format!("{name} must be 0% to 100%, not {p}%"));
            }
        }
        if let Some(s) = &self.reviews_split {
            out.extend(s.problems());
        }
        out
    }

    /// True when `status` counts as a success: `expect-status`, else any 2xx.
    pub fn is_success(&self, status: u16) -> bool {
        match self.expect_status.as_ref().map(Templated::value) {
            Some(want) => status == want,
            None => (200..300).contains(&status),
        }
    }
}

/// A number of requests, or a percentage of all of them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(try_from = "ThresholdRepr", into = "ThresholdRepr")]
pub enum Threshold {
    /// That many requests (`95`).
    Count(u64),
    /// That share of the requests, in percent (`"95%"`).
    Percent(f64),
}

impl Threshold {
    /// The threshold as a number of requests out of `total`.
    pub fn of(self, total: u64) -> f64 {
        match self {
            Threshold::Count(n) => n as f64,
            Threshold::Percent(p) => p * total as f64 / 100.0,
        }
    }
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Threshold::Count(n) => write!(f, "{n}"),
            Threshold::Percent(p) => write!(f, "{p}%"),
        }
    }
}

#[derive(Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
enum ThresholdRepr {
    Count(u64),
    /// A percentage, `"95%"` (or a count as text).
    Text(#[schemars(pattern(r"^\s*([0-9]+|[0-9.]+\s*%)\s*$"))] String),
}

/// A threshold that is neither a count nor a percentage.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ThresholdError {
    /// Ends in `%` but is not a finite number before it.
    #[error("{0:?} is not a percentage like \"95%\"")]
    NotPercent(String),
    /// Neither a whole number nor a percentage.
    #[error("{0:?} is neither a count (95) nor a percentage (\"95%\")")]
    Neither(String),
}

impl TryFrom<ThresholdRepr> for Threshold {
    type Error = ThresholdError;
    fn try_from(r: ThresholdRepr) -> Result<Self, ThresholdError> {
        match r {
            ThresholdRepr::Count(n) => Ok(Threshold::Count(n)),
            ThresholdRepr::Text(s) => {
                let t = s.trim();
                if let Some(p) = t.strip_suffix('%') {
                    p.trim()
                        .parse::<f64>()
                        .ok()
                        .filter(|p| p.is_finite())
                        .map(Threshold::Percent)
                        .ok_or(ThresholdError::NotPercent(s))
                } else {
                    t.parse::<u64>()
                        .map(Threshold::Count)
                        .map_err(|_| ThresholdError::Neither(s))
                }
            }
        }
    }
}

impl From<Threshold> for ThresholdRepr {
    fn from(t: Threshold) -> Self {
        match t {
            Threshold::Count(n) => ThresholdRepr::Count(n),
            Threshold::Percent(_) => ThresholdRepr::Text(t.to_string()),
        }
    }
}

/// What the traffic did.
#[derive(Debug, Clone, PartialEq)]
pub struct TrafficReport {
    /// Requests sent (equals the spec's `requests` when [`send`] returns `Ok`).
    pub total: u64,
    /// Requests that got the expected status.
    pub succeeded: u64,
    /// Requests that got another status or no answer.
    pub failed: u64,
    /// Requests by status code (`"200"`, `"503"`) or transport error (`"error: connect"`,
    /// `"error: timeout"`, …).
    pub histogram: BTreeMap<String, u64>,
    /// Bookinfo product pages by the `reviews` version that served them (`"v1"`, `"v3"`,
    /// `"unavailable"`, …); empty when no answer was a product page.
    pub reviews: BTreeMap<String, u64>,
    /// Time from the first request to the last answer.
    pub elapsed: Duration,
}

impl TrafficReport {
    /// The step outputs: `total`, `histogram` and `reviews` (both objects of counts).
    pub fn to_outputs(&self) -> Outputs {
        let mut out = Outputs::new();
        out.insert("total".into(), Value::from(self.total));
        out.insert("histogram".into(), counts(&self.histogram));
        out.insert("reviews".into(), counts(&self.reviews));
        out
    }

    /// Every expectation of `spec` that this report does not meet.
    pub fn mismatches(&self, spec: &TrafficSpec) -> Vec<Mismatch> {
        let mut out = Vec::new();
        let success = match &spec.expect_status {
            Some(s) => format!("status {s}"),
            None => "a 2xx status".to_string(),
        };
        if let Some(t) = spec.min_success
            && (self.succeeded as f64) < t.of(self.total) - 1e-9
        {
            out.push(Mismatch {
                what: "min-success".into(),
                message: format!(
                    "expected at least {t} of {} requests to get {success}, {} did",
                    self.total, self.succeeded
                ),
            });
        }
        if let Some(t) = spec.max_failures()
            && (self.failed as f64) > t.of(self.total) + 1e-9
        {
            out.push(Mismatch {
                what: "max-failures".into(),
                message: format!(
                    "expected at most {t} of {} requests to fail, {} did (not {success})",
                    self.total, self.failed
                ),
            });
        }
        if let Some(split) = &spec.reviews_split {
            out.extend(split.check(&self.reviews));
        }
        out
    }
}

fn counts(h: &BTreeMap<String, u64>) -> Value {
    Value::Object(
        h.iter()
            .map(|(k, v)| (k.clone(), Value::from(*v)))
            .collect(),
    )
}

/// Renders a histogram for messages: `200×48, 503×2`.
pub fn fmt_histogram(h: &BTreeMap<String, u64>) -> String {
    if h.is_empty() {
        return "nothing".to_string();
    }
    h.iter()
        .map(|(k, v)| format!("{k}×{v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What one request got.
enum RequestOutcome {
    Answer {
        status: u16,
        page: Option<super::bookinfo::ReviewsVersion>,
    },
    /// No (complete) answer: what kind of failure, and the error with its causes.
    Error(TransportKind, String),
    NotSent,
}

async fn send_one(
    client: &reqwest::Client,
    spec: &TrafficSpec,
    url: &reqwest::Url,
    stop_at: Instant,
) -> RequestOutcome {
    let left = stop_at.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return RequestOutcome::NotSent;
    }
    let mut req = client.get(url.clone()).timeout(left.min(PER_TRY_TIMEOUT));
    for (k, v) in &spec.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    if let Some(h) = &spec.host {
        req = req.header(reqwest::header::HOST, h.as_str());
    }
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => return RequestOutcome::Error(TransportKind::of(&e), describe_error(&e)),
    };
    let status = resp.status().as_u16();
    let html = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("html"));
    // The body is always read, so the connection can be reused; only HTML is parsed.
    match read_body(resp, MAX_BODY_BYTES).await {
        Err(e) => RequestOutcome::Error(TransportKind::of(&e), describe_error(&e)),
        Ok(body) => RequestOutcome::Answer {
            status,
            page: if html || body.contains("<title>") {
                ProductPage::parse(&body).map(|p| p.version)
            } else {
                None
            },
        },
    }
}

/// Sends exactly `spec.requests` GETs, at most `spec.concurrency` at a time, all within
/// `deadline`, and checks the report against the spec's expectations.
///
/// Each request may take up to [`PER_TRY_TIMEOUT`]; one that fails counts as
/// `error: <kind>`. Requests are not retried: the point is to count what the mesh does. Fails
/// (with the histogram in the message) when the deadline passes before every request was sent,
/// or when an expectation does not hold; a spec with problems fails at once, fatally.
pub async fn send(
    client: &reqwest::Client,
    spec: &TrafficSpec,
    deadline: Duration,
) -> Result<TrafficReport, StepError> {
    let problems = spec.problems();
    if !problems.is_empty() {
        return Err(StepError::fatal(format!(
            "traffic to {:?} is not valid: {}",
            spec.url,
            problems.join("; ")
        )));
    }
    let url = reqwest::Url::parse(&spec.url).map_err(|e| StepError::fatal(e.to_string()))?;
    let start = Instant::now();
    let stop_at = start + deadline;
    let TrafficMode::Requests(requests) = spec.mode else {
        return Err(StepError::fatal(format!(
            "traffic to {:?} runs in the background: start it with BackgroundTraffic::start",
            spec.url
        )));
    };
    let results: Vec<RequestOutcome> = futures::stream::iter(0..requests)
        .map(|_| send_one(client, spec, &url, stop_at))
        .buffer_unordered(spec.concurrency.value() as usize)
        .collect()
        .await;

    let mut report = TrafficReport {
        total: 0,
        succeeded: 0,
        failed: 0,
        histogram: BTreeMap::new(),
        reviews: BTreeMap::new(),
        elapsed: start.elapsed(),
    };
    let mut not_sent = 0u64;
    let mut refused = 0u64;
    for r in results {
        match r {
            RequestOutcome::NotSent => not_sent += 1,
            RequestOutcome::Error(kind, _) => {
                report.total += 1;
                report.failed += 1;
                refused += u64::from(kind == TransportKind::Connect);
                *report
                    .histogram
                    .entry(format!("error: {}", kind.as_str()))
                    .or_default() += 1;
            }
            RequestOutcome::Answer { status, page } => {
                report.total += 1;
                if spec.is_success(status) {
                    report.succeeded += 1;
                } else {
                    report.failed += 1;
                }
                *report.histogram.entry(status.to_string()).or_default() += 1;
                if let Some(v) = page {
                    *report.reviews.entry(v.as_str().to_string()).or_default() += 1;
                }
            }
        }
    }
    let seen = format!(
        "statuses: {}; reviews: {}",
        fmt_histogram(&report.histogram),
        fmt_histogram(&report.reviews)
    );
    if not_sent > 0 {
        return Err(StepError::new(format!(
            "GET {url}: only {} of {} requests were sent within {} ({seen})",
            report.total,
            requests,
            fmt_duration(deadline)
        ))
        .with_hint("raise the step's timeout, raise concurrency, or send fewer requests"));
    }
    let mismatches = report.mismatches(spec);
    if !mismatches.is_empty() {
        let list: Vec<String> = mismatches.iter().map(|m| m.to_string()).collect();
        let all_unreachable = refused == report.total;
        let err = StepError::new(format!(
            "GET {url} ×{}: {} ({seen})",
            requests,
            list.join("; ")
        ));
        return Err(if all_unreachable {
            err.with_hint(HINT_UNREACHABLE)
        } else {
            err
        });
    }
    Ok(report)
}

/// One request of background traffic.
#[derive(Debug, Clone)]
pub struct Sample {
    /// When it was sent, from the start of the traffic.
    pub at: Duration,
    /// How long it took to the end of the answer (or to the error).
    pub latency: Duration,
    /// Its status (`"200"`) or transport error (`"error: connect"`).
    pub outcome: String,
    /// True when it counts as a success (the spec's `expect-status`, else any 2xx).
    pub ok: bool,
    /// The reviews version of a Bookinfo product page, when it was one.
    pub reviews: Option<&'static str>,
    /// For a transport error, the error and its causes.
    pub detail: Option<String>,
    /// The scenario step that was running when it was sent.
    pub step: Arc<str>,
}

/// Traffic running in the background until [`BackgroundTraffic::stop`].
pub struct BackgroundTraffic {
    /// Its name (the `background` of the step that started it).
    pub name: String,
    /// The URL it sends to.
    pub url: String,
    stop: Arc<AtomicBool>,
    workers: Vec<tokio::task::JoinHandle<()>>,
    samples: Arc<Mutex<Vec<Sample>>>,
    sent: tokio::sync::watch::Receiver<usize>,
    started: Instant,
}

impl BackgroundTraffic {
    /// Starts `spec.concurrency` workers sending GETs until stopped; `current_step` names the
    /// step each request falls in. The spec must be valid ([`TrafficSpec::problems`]).
    pub fn start(
        client: reqwest::Client,
        spec: &TrafficSpec,
        current_step: Arc<Mutex<String>>,
    ) -> Result<BackgroundTraffic, StepError> {
        let problems = spec.problems();
        if !problems.is_empty() {
            return Err(StepError::fatal(problems.join("; ")));
        }
        let TrafficMode::Background { name, rate } = &spec.mode else {
            return Err(StepError::fatal(format!(
                "traffic to {:?} is not background traffic: send it with traffic::send",
                spec.url
            )));
        };
        let url = reqwest::Url::parse(&spec.url).map_err(|e| StepError::fatal(e.to_string()))?;
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let (sent_tx, sent) = tokio::sync::watch::channel(0usize);
        let sent_tx = Arc::new(sent_tx);
        let started = Instant::now();
        let n = spec.concurrency.value().max(1);
        // Each worker keeps its share of the rate: one request every `period`.
        let period = rate.map(|r| Duration::from_secs_f64(f64::from(n) / f64::from(r.max(1))));
        let workers = (0..n)
            .map(|_| {
                let (client, spec, url) = (client.clone(), spec.clone(), url.clone());
                let (stop, samples, current_step, sent_tx) = (
                    stop.clone(),
                    samples.clone(),
                    current_step.clone(),
                    sent_tx.clone(),
                );
                tokio::spawn(async move {
                    let mut next = Instant::now();
                    let mut step: Arc<str> = Arc::from("");
                    while !stop.load(Ordering::Relaxed) {
                        if let Some(p) = period {
                            tokio::time::sleep_until(next).await;
                            next += p;
                        }
                        if let Ok(now) = current_step.lock()
                            && *step != **now
                        {
                            step = Arc::from(now.as_str());
                        }
                        let t0 = Instant::now();
                        let far = t0 + Duration::from_secs(86_400);
                        let answer = send_one(&client, &spec, &url, far).await;
                        let (outcome, ok, reviews, detail) = match answer {
                            RequestOutcome::Answer { status, page } => (
                                status.to_string(),
                                spec.is_success(status),
                                page.map(|v| v.as_str()),
                                None,
                            ),
                            RequestOutcome::Error(kind, detail) => (
                                format!("error: {}", kind.as_str()),
                                false,
                                None,
                                Some(detail),
                            ),
                            RequestOutcome::NotSent => continue,
                        };
                        let sample = Sample {
                            at: t0 - started,
                            latency: t0.elapsed(),
                            outcome,
                            ok,
                            reviews,
                            detail,
                            step: step.clone(),
                        };
                        if let Ok(mut all) = samples.lock() {
                            all.push(sample);
                        }
                        sent_tx.send_modify(|n| *n += 1);
                    }
                })
            })
            .collect();
        Ok(BackgroundTraffic {
            name: name.clone(),
            url: spec.url.clone(),
            stop,
            workers,
            samples,
            sent,
            started,
        })
    }

    /// Requests recorded so far.
    pub fn sent(&self) -> usize {
        *self.sent.borrow()
    }

    /// Waits until at least `n` requests were recorded; false when `deadline` came first.
    pub async fn wait_for_requests(&self, n: usize, deadline: std::time::Instant) -> bool {
        let mut rx = self.sent.clone();
        tokio::time::timeout_at(deadline.into(), rx.wait_for(|sent| *sent >= n))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Stops sending, lets requests in flight finish (each is bounded by
    /// [`PER_TRY_TIMEOUT`]), and returns everything recorded.
    pub async fn stop(self) -> BackgroundReport {
        self.stop.store(true, Ordering::Relaxed);
        for w in self.workers {
            let _ = w.await;
        }
        let elapsed = self.started.elapsed();
        let samples = std::mem::take(&mut *self.samples.lock().unwrap_or_else(|p| p.into_inner()));
        BackgroundReport::new(self.name, self.url, samples, elapsed)
    }
}

/// What background traffic recorded, request by request.
#[derive(Debug, Clone)]
pub struct BackgroundReport {
    /// The traffic's name.
    pub name: String,
    /// Its URL.
    pub url: String,
    /// Every request, in the order they ended.
    pub samples: Vec<Sample>,
    /// From the start to the stop.
    pub elapsed: Duration,
}

/// What a `traffic-stop` step checks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BackgroundExpect {
    /// At most this many failed requests (a count or a percentage); 0 unless set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_failures: Option<Threshold>,
    /// At least this many requests must have been sent, so the check means something.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_requests: Option<Templated<u64>>,
    /// The 99th percentile of latency must not exceed this (`500ms`, `2s`).
    #[schemars(with = "Option<crate::scenario::parse::HumanDuration>")]
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::scenario::parse::opt_duration"
    )]
    pub latency_p99: Option<Duration>,
}

impl BackgroundReport {
    fn new(name: String, url: String, mut samples: Vec<Sample>, elapsed: Duration) -> Self {
        samples.sort_by_key(|s| s.at);
        BackgroundReport {
            name,
            url,
            samples,
            elapsed,
        }
    }

    /// Failed requests.
    pub fn failed(&self) -> u64 {
        self.samples.iter().filter(|s| !s.ok).count() as u64
    }

    /// Requests by status or error.
    pub fn histogram(&self) -> BTreeMap<String, u64> {
        let mut h = BTreeMap::new();
        for s in &self.samples {
            *h.entry(s.outcome.clone()).or_default() += 1;
        }
        h
    }

    /// Failed requests by the step that was running when they were sent, in step order.
    pub fn failures_by_step(&self) -> Vec<(String, u64)> {
        let mut out: Vec<(String, u64)> = Vec::new();
        for s in self.samples.iter().filter(|s| !s.ok) {
            match out.iter_mut().find(|(n, _)| **n == *s.step) {
                Some((_, c)) => *c += 1,
                None => out.push((s.step.to_string(), 1)),
            }
        }
        out
    }

    /// The latency below which `q` (0..=1) of the requests finished.
    pub fn latency_quantile(&self, q: f64) -> Duration {
        let mut l: Vec<Duration> = self.samples.iter().map(|s| s.latency).collect();
        if l.is_empty() {
            return Duration::ZERO;
        }
        l.sort();
        let i = ((q * l.len() as f64).ceil() as usize).clamp(1, l.len()) - 1;
        l[i]
    }

    /// The step outputs: counts, the histogram, latency percentiles and failures by step. The
    /// reviews version of each page is in the CSV only: which versions answered, and whether
    /// ratings timed out on a busy machine, varies from run to run without being a failure.
    pub fn to_outputs(&self) -> Outputs {
        let mut out = Outputs::new();
        out.insert("total".into(), Value::from(self.samples.len() as u64));
        out.insert("failed".into(), Value::from(self.failed()));
        out.insert("histogram".into(), counts(&self.histogram()));
        out.insert(
            "latency-p50-ms".into(),
            Value::from(self.latency_quantile(0.5).as_millis() as u64),
        );
        out.insert(
            "latency-p99-ms".into(),
            Value::from(self.latency_quantile(0.99).as_millis() as u64),
        );
        out.insert(
            "failures-by-step".into(),
            Value::Object(
                self.failures_by_step()
                    .into_iter()
                    .map(|(k, v)| (k, Value::from(v)))
                    .collect(),
            ),
        );
        out
    }

    /// Every request as CSV: `at_ms,latency_ms,outcome,ok,reviews,step,detail`.
    pub fn to_csv(&self) -> String {
        let quote = |t: &str| format!("\"{}\"", t.replace('"', "\"\""));
        let mut out = String::from("at_ms,latency_ms,outcome,ok,reviews,step,detail\n");
        for s in &self.samples {
            out.push_str(&format!(
                "{},{:.3},{},{},{},{},{}\n",
                s.at.as_millis(),
                s.latency.as_secs_f64() * 1000.0,
                s.outcome,
                s.ok,
                s.reviews.unwrap_or(""),
                quote(&s.step),
                quote(s.detail.as_deref().unwrap_or(""))
            ));
        }
        out
    }

    /// Writes [`BackgroundReport::to_csv`] to `traffic-<name>.csv` in `dir` (the run's
    /// artifacts); a write error is logged, not fatal.
    pub fn write_csv(&self, dir: &std::path::Path) {
        let csv = dir.join(format!("traffic-{}.csv", self.name));
        if let Err(e) = std::fs::write(&csv, self.to_csv()) {
            tracing::warn!("cannot write {}: {e}", csv.display());
        }
    }

    /// Checks the expectations; the error gives the failure count, the histogram and the
    /// steps the failures fell in.
    pub fn check(&self, expect: &BackgroundExpect) -> Result<(), StepError> {
        let total = self.samples.len() as u64;
        let failed = self.failed();
        let mut problems = Vec::new();
        let max = expect.max_failures.unwrap_or(Threshold::Count(0));
        if failed as f64 > max.of(total) + 1e-9 {
            problems.push(format!(
                "{failed} of {total} requests failed (at most {max} allowed)"
            ));
        }
        if let Some(min) = expect.min_requests.as_ref().map(Templated::value)
            && total < min
        {
            problems.push(format!(
                "only {total} requests were sent while it ran (at least {min} expected)"
            ));
        }
        let p99 = self.latency_quantile(0.99);
        if let Some(limit) = expect.latency_p99
            && p99 > limit
        {
            problems.push(format!(
                "latency p99 was {} (at most {} allowed)",
                fmt_duration(p99),
                fmt_duration(limit)
            ));
        }
        if problems.is_empty() {
            return Ok(());
        }
        let by_step = self
            .failures_by_step()
            .iter()
            .map(|(s, n)| format!("`{s}` {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        let first = self
            .samples
            .iter()
            .find(|s| !s.ok)
            .map(|s| format!("; first failure {} after the start", fmt_duration(s.at)))
            .unwrap_or_default();
        let mut msg = format!(
            "background traffic `{}` to {}: {} (statuses: {}; p99 {})",
            self.name,
            self.url,
            problems.join("; "),
            fmt_histogram(&self.histogram()),
            fmt_duration(p99)
        );
        if !by_step.is_empty() {
            msg.push_str(&format!("; failures by step: {by_step}{first}"));
        }
        let err = StepError::new(msg);
        Err(if failed > 0 {
            err.with_hint(
                "the per-request log (traffic-<name>.csv in the run's artifacts) shows when each failure happened",
            )
        } else {
            err
        })
    }
}

crate::scenario::resolve::resolve_fields!(TrafficSpec {
    url,
    mode,
    concurrency,
    headers,
    host,
    expect_status,
    min_success,
    max_failures,
    reviews_split
});
crate::scenario::resolve::resolve_fields!(BackgroundExpect {
    max_failures,
    min_requests,
    latency_p99
});
crate::scenario::resolve::resolve_as_is!(Threshold);

impl crate::scenario::Resolve for TrafficMode {
    fn resolve(
        &self,
        vars: &crate::scenario::vars::Vars,
    ) -> Result<Self, crate::scenario::vars::VarError> {
        Ok(match self {
            TrafficMode::Requests(n) => TrafficMode::Requests(*n),
            TrafficMode::Background { name, rate } => TrafficMode::Background {
                name: vars.expand(name)?,
                rate: *rate,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_read_counts_and_percentages() {
        let t: Threshold = serde_json::from_value(serde_json::json!(95)).unwrap();
        assert_eq!(t, Threshold::Count(95));
        let t: Threshold = serde_json::from_value(serde_json::json!("95%")).unwrap();
        assert_eq!(t, Threshold::Percent(95.0));
        assert_eq!(t.of(200), 190.0);
        assert_eq!(serde_json::to_value(t).unwrap(), serde_json::json!("95%"));
        let e = serde_json::from_value::<Threshold>(serde_json::json!("lots")).unwrap_err();
        assert!(e.to_string().contains("neither a count"), "{e}");
    }

    #[test]
    fn report_mismatches_name_the_numbers() {
        let mut spec = TrafficSpec::new("http://127.0.0.1:1/", 10);
        spec.min_success = Some(Threshold::Percent(90.0));
        spec.max_failures = Some(Threshold::Count(0));
        let report = TrafficReport {
            total: 10,
            succeeded: 8,
            failed: 2,
            histogram: [("200".to_string(), 8), ("503".to_string(), 2)].into(),
            reviews: BTreeMap::new(),
            elapsed: Duration::ZERO,
        };
        let m: Vec<String> = report
            .mismatches(&spec)
            .iter()
            .map(|m| m.to_string())
            .collect();
        assert_eq!(
            m,
            vec![
                "min-success: expected at least 90% of 10 requests to get a 2xx status, 8 did",
                "max-failures: expected at most 0 of 10 requests to fail, 2 did (not a 2xx status)",
            ]
        );
        assert_eq!(fmt_histogram(&report.histogram), "200×8, 503×2");
    }

    /// A traffic step that says nothing about failures allows none: 100 x 503 fails.
    #[test]
    fn no_thresholds_means_no_failures_allowed() {
        let spec = TrafficSpec::new("http://127.0.0.1:1/", 100);
        let report = TrafficReport {
            total: 100,
            succeeded: 0,
            failed: 100,
            histogram: [("503".to_string(), 100)].into(),
            reviews: BTreeMap::new(),
            elapsed: Duration::ZERO,
        };
        let m: Vec<String> = report
            .mismatches(&spec)
            .iter()
            .map(|m| m.to_string())
            .collect();
        assert_eq!(
            m,
            [
                "max-failures: expected at most 0 of 100 requests to fail, 100 did (not a 2xx status)"
            ]
        );
        let mut lenient = spec.clone();
        lenient.min_success = Some(Threshold::Percent(0.0));
        assert!(report.mismatches(&lenient).is_empty());
    }

    #[test]
    fn spec_problems() {
        let mut spec = TrafficSpec::new("nope", 0);
        spec.concurrency = Templated::Literal(0);
        spec.min_success = Some(Threshold::Percent(120.0));
        assert_eq!(spec.problems().len(), 4, "{:?}", spec.problems());
        let mut bg = TrafficSpec::background("http://127.0.0.1:1/", "rollout");
        assert_eq!(bg.problems(), Vec::<String>::new());
        bg.max_failures = Some(Threshold::Count(0));
        assert!(
            bg.problems()[0].contains("put `min-success`"),
            "{:?}",
            bg.problems()
        );
        let e = serde_json::from_value::<TrafficSpec>(
            serde_json::json!({"url": "http://127.0.0.1:1/", "requests": 5, "rate": 5}),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "traffic step: `rate` is for background traffic"
        );
        let both = serde_json::json!({"url": "u", "requests": 1, "background": "b"});
        let e = serde_json::from_value::<TrafficSpec>(both).unwrap_err();
        assert!(e.to_string().contains("drop `requests`"), "{e}");
        let round = serde_json::to_value(&bg).unwrap();
        assert_eq!(serde_json::from_value::<TrafficSpec>(round).unwrap(), bg);
    }
}
