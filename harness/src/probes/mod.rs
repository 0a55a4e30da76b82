//! Probes: HTTP checks, traffic, Bookinfo page parsing, and the telemetry addons.
//!
//! Every probe reaches its target by a base URL (the port-forward step provides
//! `http://127.0.0.1:PORT`), polls with [`Backoff`] until its expectations hold or its deadline
//! passes, and returns a [`StepError`] that names the URL, the number of
//! attempts and everything that did not hold.
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
pub mod grafana;
pub mod http;
pub mod jaeger;
pub mod kiali;
pub mod prometheus;
pub mod traffic;

use std::time::Duration;

use tokio::time::Instant;

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

/// A short word for what kind of transport failure this was: `connect`, `timeout`, `body`,
/// `redirect`, `request` or `other`.
pub(crate) fn error_kind(e: &reqwest::Error) -> &'static str {
    if e.is_connect() {
        "connect"
    } else if e.is_timeout() {
        "timeout"
    } else if e.is_body() || e.is_decode() {
        "body"
    } else if e.is_redirect() {
        "redirect"
    } else if e.is_request() {
        "request"
    } else {
        "other"
    }
}

/// The error and its causes in one line, e.g. `connect error: … : Connection refused (os error 111)`.
pub(crate) fn describe_error(e: &reqwest::Error) -> String {
    let mut out = format!("{} error", error_kind(e));
    let mut cur: Option<&dyn std::error::Error> = Some(e);
    while let Some(err) = cur {
        let s = err.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = err.source();
    }
    out
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

/// One GET inside a polling loop: the status and body, or a one-line transport error.
pub(crate) async fn get_text(
    client: &reqwest::Client,
    url: &str,
    timeout: Duration,
) -> Result<(u16, String), String> {
    let resp = client
        .get(url)
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| describe_error(&e))?;
    let status = resp.status().as_u16();
    let body = read_body(resp, MAX_BODY_BYTES)
        .await
        .map_err(|e| format!("reading the body: {}", describe_error(&e)))?;
    Ok((status, body))
}

/// A GET that must answer 2xx with JSON; anything else is a one-line reason to retry.
pub(crate) async fn get_json(
    client: &reqwest::Client,
    url: &str,
    timeout: Duration,
) -> Result<serde_json::Value, String> {
    let (status, body) = get_text(client, url, timeout).await?;
    if !(200..300).contains(&status) {
        return Err(format!("HTTP {status}: {}", crate::expect::excerpt(&body)));
    }
    serde_json::from_str(&body).map_err(|e| {
        format!(
            "the answer is not JSON ({e}): {}",
            crate::expect::excerpt(&body)
        )
    })
}

/// What one attempt of a polling probe concluded.
pub(crate) enum Attempt<T> {
    /// Every expectation held.
    Done(T),
    /// Not yet: why, and whether it was a transport error (for the hint).
    Retry { reason: String, transport: bool },
    /// Retrying cannot help.
    Fatal(StepError),
}

impl<T> Attempt<T> {
    /// A transport (or HTTP) failure from [`get_json`]/[`get_text`].
    pub(crate) fn unreachable(reason: String) -> Self {
        let transport = !reason.starts_with("HTTP ") && !reason.starts_with("the answer");
        Attempt::Retry { reason, transport }
    }

    /// An answer that does not show what is expected yet.
    pub(crate) fn not_yet(reason: impl Into<String>) -> Self {
        Attempt::Retry {
            reason: reason.into(),
            transport: false,
        }
    }
}

/// Runs `attempt` (given each try's timeout) until it is done, fatal, or `deadline` passes; the
/// error then names `what`, the attempts and the last reason, with `hint` (or the unreachable
/// hint, when the last failure was a transport error).
pub(crate) async fn poll<T, F, Fut>(
    what: &str,
    deadline: Duration,
    hint: &str,
    mut attempt: F,
) -> Result<T, StepError>
where
    F: FnMut(Duration) -> Fut,
    Fut: std::future::Future<Output = Attempt<T>>,
{
    let mut backoff = Backoff::new(deadline);
    let mut last = LastFailure::default();
    loop {
        backoff.begin_attempt();
        match attempt(backoff.per_try()).await {
            Attempt::Done(t) => return Ok(t),
            Attempt::Fatal(e) => return Err(e),
            Attempt::Retry { reason, transport } => last.record(reason, transport),
        }
        if !backoff.wait().await {
            break;
        }
    }
    Err(StepError::new(format!(
        "{what} did not pass within {} ({} attempts): {}",
        fmt_duration(deadline),
        backoff.attempts(),
        last.describe()
    ))
    .with_hint(if last.never_answered() {
        HINT_UNREACHABLE
    } else {
        hint
    }))
}

/// The failures a polling loop saw, so its error shows what the target last answered even when
/// the very last attempt only timed out.
#[derive(Debug, Default)]
pub(crate) struct LastFailure {
    answer: Option<String>,
    transport: Option<String>,
    last_was_transport: bool,
}

impl LastFailure {
    /// Records one failed attempt.
    pub(crate) fn record(&mut self, reason: String, transport: bool) {
        self.last_was_transport = transport;
        if transport {
            self.transport = Some(reason);
        } else {
            self.answer = Some(reason);
        }
    }

    /// True when no attempt got an answer (only transport errors).
    pub(crate) fn never_answered(&self) -> bool {
        self.answer.is_none()
    }

    /// The last answer's problem, and the last transport error if that came after it.
    pub(crate) fn describe(&self) -> String {
        match (&self.answer, &self.transport) {
            (Some(a), Some(t)) if self.last_was_transport => {
                format!("{a}; the last attempt failed: {t}")
            }
            (Some(a), _) => a.clone(),
            (None, Some(t)) => format!("last error: {t}"),
            (None, None) => "no attempt was made".to_string(),
        }
    }
}

/// A duration for messages, to the millisecond (`1m 30s`, `250ms`).
pub(crate) fn fmt_duration(d: Duration) -> String {
    humantime::format_duration(Duration::from_millis(d.as_millis() as u64)).to_string()
}

/// The hint for a probe whose last failure was a transport error.
pub(crate) const HINT_UNREACHABLE: &str =
    "is the port-forward to this address running? (the step that opens it must come first)";

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

    #[test]
    fn a_last_timeout_does_not_hide_the_last_answer() {
        let mut l = LastFailure::default();
        assert_eq!(l.describe(), "no attempt was made");
        l.record("connect error: refused".into(), true);
        assert!(l.never_answered());
        assert_eq!(l.describe(), "last error: connect error: refused");
        l.record("dashboards: \"X\" not found".into(), false);
        l.record("timeout error".into(), true);
        assert!(!l.never_answered());
        assert_eq!(
            l.describe(),
            "dashboards: \"X\" not found; the last attempt failed: timeout error"
        );
    }

    #[test]
    fn durations_print_to_the_millisecond() {
        assert_eq!(fmt_duration(Duration::from_micros(2_500_400)), "2s 500ms");
    }
}
