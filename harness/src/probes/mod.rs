//! Probes: HTTP checks, traffic, Bookinfo page parsing, and the telemetry addons.
//!
//! Every probe reaches its target by a base URL (the port-forward step provides
//! `http://127.0.0.1:PORT`), polls with [`Backoff`] until its expectations hold or its deadline
//! passes, and returns a [`StepError`] that names the URL, the number of
//! attempts and everything that did not hold.
//!
//! Inside, each try fails with a typed [`ProbeError`]: the one polling loop retries it when
//! [`ProbeError::is_retryable`], and [`ProbeError::is_transport`] (no answer at all) picks the
//! "is the port-forward running?" hint. It becomes the message and hint users see only where a
//! probe returns to its step.
//!
//! | probe | endpoint | what it asserts |
//! | --- | --- | --- |
//! | [`http`] | any URL (`GET` unless told) | the shared [`Expect`](crate::expect::Expect) block: status, `<title>`, contains, regex, selector + text, JSON pointers; a 5xx is a failure unless `status` expects it |
//! | [`traffic`] | any URL, `N` requests, `concurrency` at once | status-code histogram; `min-success` / `max-failures`; for Bookinfo pages, which reviews version served each one and an optional [`ReviewsSplit`](bookinfo::ReviewsSplit) |
//! | [`bookinfo`] | (a parser, no endpoint) | the productpage HTML: title, book title, details, reviews version (v1 no stars, v2 black, v3 red) |
//! | [`prometheus`] | `/-/ready`, `/api/v1/query?query=…` | ready; at least `min-results` series, one with the given labels, the summed value at least `value-min` / equal to `value-equals` |
//! | [`grafana`] | `/api/health`, `/api/search?query=Istio` | `database` is `ok`; the Istio dashboards are there, by title |
//! | [`kiali`] | `/kiali/api/namespaces`, `/kiali/api/namespaces/graph?namespaces=…&graphType=versionedApp&duration=60s` | the namespace is listed; the graph has the expected app (and version) nodes |
//! | [`jaeger`] | `/jaeger/api/services`, `/jaeger/api/traces?service=…&limit=20` | the services are known; the service has at least `min-traces` traces |

pub mod bookinfo;
mod error;
pub mod grafana;
pub mod http;
pub mod jaeger;
pub mod kiali;
pub mod prometheus;
pub mod traffic;

use std::time::Duration;

use tokio::time::Instant;

pub(crate) use error::{HINT_UNREACHABLE, describe_error};
pub use error::{ProbeError, TransportKind};

use crate::Outputs;
use crate::error::StepError;

/// The longest a single request may take inside a polling loop; the loop's deadline cuts it
/// shorter.
pub const PER_TRY_TIMEOUT: Duration = Duration::from_secs(10);

/// The most of a response body a probe reads; the rest is dropped.
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// Pacing for a polling loop: a growing delay between attempts, bounded by a deadline and by a
/// count.
///
/// ```
/// # async fn demo() {
/// use harness::probes::Backoff;
/// let mut b = Backoff::new(std::time::Duration::from_secs(5));
/// loop {
///     b.begin_attempt();
///     let done = true; // try something
///     if done || !b.wait().await {
///         break;
///     }
/// }
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Backoff {
    start: Instant,
    deadline: Instant,
    delay: Duration,
    max_delay: Duration,
    attempts: u32,
    max_attempts: u32,
    last_chance_used: bool,
}

impl Backoff {
    /// Time that must be left for a last attempt squeezed in before the deadline (half of it
    /// is waited, the other half is the attempt's timeout).
    pub const MIN_LAST_TRY: Duration = Duration::from_millis(400);

    /// The default pacing: 200 ms after the first attempt, doubling up to 2 s, at most 10 000
    /// attempts, all within `budget`.
    pub fn new(budget: Duration) -> Self {
        Self::with_delays(budget, Duration::from_millis(200), Duration::from_secs(2))
    }

    /// Custom pacing: `first` after the first attempt, doubling up to `max`.
    pub fn with_delays(budget: Duration, first: Duration, max: Duration) -> Self {
        let start = Instant::now();
        Backoff {
            start,
            deadline: start + budget,
            delay: first,
            max_delay: max.max(first),
            attempts: 0,
            max_attempts: 10_000,
            last_chance_used: false,
        }
    }

    /// Counts one attempt; call it at the top of each try.
    pub fn begin_attempt(&mut self) {
        self.attempts += 1;
    }

    /// How many attempts were counted.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Time since the loop started.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Time left before the deadline (zero once it passed).
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// The timeout for the next single try: [`PER_TRY_TIMEOUT`] or what is left, whichever is
    /// shorter, but never zero.
    pub fn per_try(&self) -> Duration {
        self.remaining()
            .min(PER_TRY_TIMEOUT)
            .max(Duration::from_millis(1))
    }

    /// Waits before the next attempt. Returns `false`, without waiting, when the deadline has
    /// passed or the attempt count is used up. When the next delay would reach the deadline, it
    /// waits half of what is left instead and allows that one last attempt (if at least
    /// [`Backoff::MIN_LAST_TRY`] is left), so the loop neither sleeps into its deadline for
    /// nothing nor runs past it.
    pub async fn wait(&mut self) -> bool {
        let left = self.remaining();
        if left.is_zero() || self.attempts >= self.max_attempts || self.last_chance_used {
            return false;
        }
        if self.delay >= left {
            self.last_chance_used = true;
            if left < Self::MIN_LAST_TRY {
                return false;
            }
            tokio::time::sleep(left / 2).await;
            return true;
        }
        tokio::time::sleep(self.delay).await;
        self.delay = (self.delay * 2).min(self.max_delay);
        true
    }
}

/// Builds a `reqwest::Client` for the probes: the ring TLS provider installed (idempotently), no
/// proxy from the environment (a probe talks to `127.0.0.1`), a 5 s connect timeout.
///
/// # Panics
/// If reqwest cannot build a client with this configuration, which only happens when the TLS
/// backend cannot be set up.
pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(5))
        .user_agent(concat!("istio-e2e/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("building the probes' HTTP client")
}

/// `base` + `path`, with exactly one `/` between them.
pub(crate) fn join_url(base: &str, path: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}

/// Reads at most `limit` bytes of a body, as text (invalid UTF-8 replaced).
pub(crate) async fn read_body(
    mut resp: reqwest::Response,
    limit: usize,
) -> Result<String, reqwest::Error> {
    let mut buf: Vec<u8> = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        let room = limit.saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if buf.len() >= limit {
            break;
        }
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// One GET inside a polling loop: the status and body, or the transport error.
pub(crate) async fn get_text(
    client: &reqwest::Client,
    url: &str,
    timeout: Duration,
) -> Result<(u16, String), ProbeError> {
    send_and_read(client.get(url).timeout(timeout), false).await
}

/// Sends a request and reads at most [`MAX_BODY_BYTES`] of the answer: the status and body,
/// or the transport error (a body error shows the status when `status_in_message`).
pub(crate) async fn send_and_read(
    req: reqwest::RequestBuilder,
    status_in_message: bool,
) -> Result<(u16, String), ProbeError> {
    let resp = req.send().await.map_err(ProbeError::Transport)?;
    let status = resp.status().as_u16();
    let body = read_body(resp, MAX_BODY_BYTES)
        .await
        .map_err(|source| ProbeError::Body {
            status: status_in_message.then_some(status),
            source,
        })?;
    Ok((status, body))
}

/// A GET that must answer 2xx with JSON.
pub(crate) async fn get_json(
    client: &reqwest::Client,
    url: &str,
    timeout: Duration,
) -> Result<serde_json::Value, ProbeError> {
    let (status, body) = get_text(client, url, timeout).await?;
    if !(200..300).contains(&status) {
        return Err(ProbeError::Status {
            status,
            excerpt: crate::expect::excerpt(&body),
        });
    }
    serde_json::from_str(&body).map_err(|source| ProbeError::NotJson {
        source,
        excerpt: crate::expect::excerpt(&body),
    })
}

/// A URL under a probe's base URL, or [`ProbeError::BadUrl`].
pub(crate) fn url_under(base: &str, path: &str) -> Result<reqwest::Url, ProbeError> {
    reqwest::Url::parse(&join_url(base, path)).map_err(|e| ProbeError::BadUrl {
        base: base.to_string(),
        source: Box::new(e),
    })
}

/// What a polling loop got when it passed.
#[derive(Debug)]
pub(crate) struct Polled<T> {
    /// What the passing try returned.
    pub(crate) value: T,
    /// Tries made, the passing one included.
    pub(crate) attempts: u32,
    /// Time from the first try to the passing one's end.
    pub(crate) elapsed: Duration,
}

/// Why a polling loop ended without passing.
#[derive(Debug)]
pub(crate) enum PollError {
    /// A try failed in a way no retry can cure ([`ProbeError::is_retryable`] is false).
    Stopped(ProbeError),
    /// The deadline passed (or the tries ran out).
    Expired(Expired),
}

/// A polling loop that ran out of time: how long, how many tries, and what they saw.
#[derive(Debug)]
pub(crate) struct Expired {
    /// The loop's time budget.
    pub(crate) deadline: Duration,
    /// Tries made.
    pub(crate) attempts: u32,
    /// What the failed tries saw.
    pub(crate) last: LastFailure,
}

impl Expired {
    /// `<what> did not pass within <deadline> (<n> attempts)`.
    pub(crate) fn head(&self, what: &str) -> String {
        format!(
            "{what} did not pass within {} ({} attempts)",
            fmt_duration(self.deadline),
            self.attempts
        )
    }

    /// `<head>: <what the tries saw>`, with `hint`, or the unreachable hint when no try got
    /// an answer.
    pub(crate) fn into_step_error(self, what: &str, hint: &str) -> StepError {
        StepError::new(format!("{}: {}", self.head(what), self.last.describe())).with_hint(
            if self.last.never_answered() {
                HINT_UNREACHABLE
            } else {
                hint
            },
        )
    }
}

impl PollError {
    /// The step's error: a stopped loop's own message and hint, an expired loop's
    /// [`Expired::into_step_error`].
    pub(crate) fn into_step_error(self, what: &str, hint: &str) -> StepError {
        match self {
            PollError::Stopped(e) => e.into(),
            PollError::Expired(x) => x.into_step_error(what, hint),
        }
    }
}

/// Runs `attempt` (given each try's timeout) with [`Backoff`] until it passes, fails in a way
/// that is not [retryable](ProbeError::is_retryable), or `deadline` passes. The one polling
/// loop of the probes.
pub(crate) async fn poll<T, F, Fut>(
    deadline: Duration,
    mut attempt: F,
) -> Result<Polled<T>, PollError>
where
    F: FnMut(Duration) -> Fut,
    Fut: std::future::Future<Output = Result<T, ProbeError>>,
{
    let mut backoff = Backoff::new(deadline);
    let mut last = LastFailure::default();
    loop {
        backoff.begin_attempt();
        match attempt(backoff.per_try()).await {
            Ok(value) => {
                return Ok(Polled {
                    value,
                    attempts: backoff.attempts(),
                    elapsed: backoff.elapsed(),
                });
            }
            Err(e) if !e.is_retryable() => return Err(PollError::Stopped(e)),
            Err(e) => last.record(e),
        }
        if !backoff.wait().await {
            return Err(PollError::Expired(Expired {
                deadline,
                attempts: backoff.attempts(),
                last,
            }));
        }
    }
}

/// [`poll`] for a probe whose outputs are the whole result: the error names `what`, the
/// attempts and the last failure, with `hint` (or the unreachable hint).
pub(crate) async fn poll_outputs<F, Fut>(
    what: &str,
    deadline: Duration,
    hint: &str,
    attempt: F,
) -> Result<Outputs, StepError>
where
    F: FnMut(Duration) -> Fut,
    Fut: std::future::Future<Output = Result<Outputs, ProbeError>>,
{
    poll(deadline, attempt)
        .await
        .map(|p| p.value)
        .map_err(|e| e.into_step_error(what, hint))
}

/// The failures a polling loop saw, so its error shows what the target last answered even when
/// the very last attempt only timed out.
#[derive(Debug, Default)]
pub(crate) struct LastFailure {
    answer: Option<ProbeError>,
    transport: Option<ProbeError>,
    last_was_transport: bool,
}

impl LastFailure {
    /// Records one failed attempt.
    pub(crate) fn record(&mut self, e: ProbeError) {
        self.last_was_transport = e.is_transport();
        if self.last_was_transport {
            self.transport = Some(e);
        } else {
            self.answer = Some(e);
        }
    }

    /// True when no attempt got an answer (only transport errors).
    pub(crate) fn never_answered(&self) -> bool {
        self.answer.is_none()
    }

    /// The most recent failure, owned.
    pub(crate) fn into_latest(self) -> Option<ProbeError> {
        if self.last_was_transport {
            self.transport
        } else {
            self.answer
        }
    }

    /// The last answer's problem, and the last transport error if that came after it.
    pub(crate) fn describe(&self) -> String {
        match (&self.answer, &self.transport) {
            (Some(a), Some(t)) if self.last_was_transport => {
                format!("{a}; the last attempt failed: {t}")
            }
            (Some(a), _) => a.to_string(),
            (None, Some(t)) => format!("last error: {t}"),
            (None, None) => "no attempt was made".to_string(),
        }
    }
}

/// A duration for messages, to the millisecond (`1m 30s`, `250ms`).
pub(crate) fn fmt_duration(d: Duration) -> String {
    humantime::format_duration(Duration::from_millis(d.as_millis() as u64)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_url_puts_one_slash() {
        assert_eq!(
            join_url("http://127.0.0.1:9090/", "/api/v1/query"),
            "http://127.0.0.1:9090/api/v1/query"
        );
        assert_eq!(join_url("http://h:1", "x"), "http://h:1/x");
    }

    #[tokio::test]
    async fn backoff_stops_by_the_deadline_and_gives_up() {
        let budget = Duration::from_millis(300);
        let mut b =
            Backoff::with_delays(budget, Duration::from_millis(20), Duration::from_millis(80));
        let mut n = 0;
        loop {
            b.begin_attempt();
            n += 1;
            if !b.wait().await {
                break;
            }
        }
        // Waits of 20, 40 and 80 ms, then 80 ms; the 80 ms left are too little for a last
        // attempt: four attempts on an idle machine, fewer when the sleeps overshoot.
        assert!((2..=6).contains(&n), "{n} attempts");
        assert_eq!(b.attempts(), n);
        assert!(
            b.elapsed() < budget + Duration::from_millis(250),
            "{:?}",
            b.elapsed()
        );
        assert!(!b.wait().await, "a finished backoff stays finished");
    }

    #[tokio::test]
    async fn a_last_transport_error_does_not_hide_the_last_answer() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}/");
        let c = super::client();
        let refused = || get_text(&c, &url, Duration::from_secs(5));
        let mut l = LastFailure::default();
        assert_eq!(l.describe(), "no attempt was made");
        l.record(refused().await.unwrap_err());
        assert!(l.never_answered());
        assert!(
            l.describe().starts_with("last error: connect error"),
            "{}",
            l.describe()
        );
        l.record(ProbeError::NotYet("dashboards: \"X\" not found".into()));
        assert_eq!(l.describe(), "dashboards: \"X\" not found");
        l.record(refused().await.unwrap_err());
        assert!(!l.never_answered());
        let d = l.describe();
        assert!(
            d.starts_with("dashboards: \"X\" not found; the last attempt failed: connect error"),
            "{d}"
        );
        assert!(l.into_latest().unwrap().is_transport());
    }

    #[test]
    fn durations_print_to_the_millisecond() {
        assert_eq!(fmt_duration(Duration::from_micros(2_500_400)), "2s 500ms");
    }
}
