//! What can go wrong in one try of a probe, typed: a polling loop asks
//! [`ProbeError::is_retryable`] whether to try again and [`ProbeError::is_transport`] whether
//! the target answered at all (for the hint). It becomes the user's message and hint (a
//! [`StepError`]) only where a probe returns to its step.

use crate::error::StepError;

/// The hint for a probe whose last failure was a transport error.
pub(crate) const HINT_UNREACHABLE: &str =
    "is the port-forward to this address running? (the step that opens it must come first)";

/// What kind of transport failure a request had; [`TransportKind::as_str`] is the word the
/// traffic histogram and the messages use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransportKind {
    /// The TCP (or TLS) connection failed, e.g. refused: nothing listens there.
    Connect,
    /// The request or the body took longer than its timeout.
    Timeout,
    /// The body broke off or could not be decoded.
    Body,
    /// Too many or bad redirects.
    Redirect,
    /// The request could not be sent.
    Request,
    /// Anything else, e.g. a URL that cannot be requested.
    Other,
}

impl TransportKind {
    /// Classifies a reqwest error.
    pub fn of(e: &reqwest::Error) -> Self {
        if e.is_connect() {
            TransportKind::Connect
        } else if e.is_timeout() {
            TransportKind::Timeout
        } else if e.is_body() || e.is_decode() {
            TransportKind::Body
        } else if e.is_redirect() {
            TransportKind::Redirect
        } else if e.is_request() {
            TransportKind::Request
        } else {
            TransportKind::Other
        }
    }

    /// `connect`, `timeout`, `body`, `redirect`, `request` or `other`.
    pub fn as_str(self) -> &'static str {
        match self {
            TransportKind::Connect => "connect",
            TransportKind::Timeout => "timeout",
            TransportKind::Body => "body",
            TransportKind::Redirect => "redirect",
            TransportKind::Request => "request",
            TransportKind::Other => "other",
        }
    }
}

/// The error and its causes in one line, e.g. `connect error: … : Connection refused (os error 111)`.
pub(crate) fn describe_error(e: &reqwest::Error) -> String {
    let mut out = format!("{} error", TransportKind::of(e).as_str());
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

/// Why one try of a probe failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// No answer: the request failed before a status came back.
    #[error("{}", describe_error(.0))]
    Transport(reqwest::Error),
    /// A status came back, then the body broke off.
    #[error("{}reading the body: {}", status.map(|s| format!("status {s}, then ")).unwrap_or_default(), describe_error(source))]
    Body {
        /// The status, when the message should show it.
        status: Option<u16>,
        /// The error.
        source: reqwest::Error,
    },
    /// A status other than the 2xx the probe needs.
    #[error("HTTP {status}: {excerpt}")]
    Status {
        /// The status.
        status: u16,
        /// The start of the body (or the server's own error).
        excerpt: String,
    },
    /// A 2xx answer that is not JSON.
    #[error("the answer is not JSON ({source}): {excerpt}")]
    NotJson {
        /// The parse error.
        source: serde_json::Error,
        /// The start of the body.
        excerpt: String,
    },
    /// An answer that does not show what is expected (yet): a missing dashboard, a graph
    /// without the node, an answer of another shape.
    #[error("{0}")]
    NotYet(String),
    /// A URL that cannot be built from the probe's base URL.
    #[error("base URL {base:?}: {source}")]
    BadUrl {
        /// The base URL as given.
        base: String,
        /// Why it is not one.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Prometheus refused the query itself (`400 bad_data`).
    #[error("Prometheus at {endpoint} rejected the query {query:?}: {reason}")]
    Rejected {
        /// The query endpoint.
        endpoint: String,
        /// The PromQL.
        query: String,
        /// Prometheus' `errorType: error`, or the start of the body.
        reason: String,
    },
    /// The probe's own spec has problems; nothing was sent.
    #[error("{what} is not valid: {}", problems.join("; "))]
    Invalid {
        /// The probe, e.g. `Grafana check`.
        what: String,
        /// Every problem.
        problems: Vec<String>,
    },
    /// Another error, with what was being done (a URL, `Prometheus at …`) in front.
    #[error("{what}: {source}")]
    Context {
        /// Where or what.
        what: String,
        /// The error.
        source: Box<ProbeError>,
    },
}

impl ProbeError {
    /// `self` with `what` (a URL, a probe) in front of its message.
    pub fn context(self, what: impl Into<String>) -> Self {
        ProbeError::Context {
            what: what.into(),
            source: Box::new(self),
        }
    }

    /// True when trying again may help: no answer yet, a wrong answer, a 5xx. False for a
    /// URL that cannot be requested, a spec with problems, or a query Prometheus rejects.
    pub fn is_retryable(&self) -> bool {
        match self {
            ProbeError::Transport(e) => !e.is_builder(),
            ProbeError::Body { .. }
            | ProbeError::Status { .. }
            | ProbeError::NotJson { .. }
            | ProbeError::NotYet(_) => true,
            ProbeError::BadUrl { .. }
            | ProbeError::Rejected { .. }
            | ProbeError::Invalid { .. } => false,
            ProbeError::Context { source, .. } => source.is_retryable(),
        }
    }

    /// True when the target gave no (complete) answer: a connection, timeout or body error,
    /// as opposed to an answer that was wrong.
    pub fn is_transport(&self) -> bool {
        match self {
            ProbeError::Transport(_) | ProbeError::Body { .. } => true,
            ProbeError::Context { source, .. } => source.is_transport(),
            _ => false,
        }
    }

    /// What to try, for the errors that have a standard hint.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            ProbeError::Rejected { .. } => Some("fix the PromQL in the step"),
            ProbeError::Context { source, .. } => source.hint(),
            e if e.is_transport() && e.is_retryable() => Some(HINT_UNREACHABLE),
            _ => None,
        }
    }
}

/// The step-boundary conversion: the message, the hint, and fatal when a retry cannot help.
impl From<ProbeError> for StepError {
    fn from(e: ProbeError) -> Self {
        let hint = e.hint().map(String::from);
        StepError::classified(e.to_string(), e.is_retryable(), hint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A port nothing listens on: bound, then closed.
    fn closed_port() -> u16 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    }

    fn client() -> reqwest::Client {
        super::super::client()
    }

    #[tokio::test]
    async fn connection_refused_is_a_retryable_transport_error() {
        let url = format!("http://127.0.0.1:{}/", closed_port());
        let e = client().get(&url).send().await.unwrap_err();
        assert_eq!(TransportKind::of(&e), TransportKind::Connect);
        let e = ProbeError::Transport(e).context(url);
        assert!(e.is_retryable() && e.is_transport());
        assert_eq!(e.hint(), Some(HINT_UNREACHABLE));
        assert!(e.to_string().contains(": connect error"), "{e}");
        let s = StepError::from(e);
        assert!(!s.fatal);
        assert_eq!(s.hint.as_deref(), Some(HINT_UNREACHABLE));
    }

    #[tokio::test]
    async fn a_url_that_cannot_be_requested_is_not_retryable() {
        let e = client().get("http://[::1/x").send().await.unwrap_err();
        assert!(e.is_builder(), "{e}");
        let e = ProbeError::Transport(e);
        assert!(!e.is_retryable());
        assert_eq!(e.hint(), None, "no port-forward hint for a bad URL");
        assert!(StepError::from(e).fatal);

        let bad = reqwest::Url::parse("nonsense/api").unwrap_err();
        let e = ProbeError::BadUrl {
            base: "nonsense".into(),
            source: Box::new(bad),
        };
        assert!(!e.is_retryable() && !e.is_transport());
        assert!(e.to_string().starts_with("base URL \"nonsense\": "), "{e}");
    }

    #[test]
    fn wrong_answers_are_retried_but_not_transport() {
        let status = ProbeError::Status {
            status: 503,
            excerpt: "no healthy upstream".into(),
        }
        .context("http://127.0.0.1:1/x");
        assert!(status.is_retryable() && !status.is_transport());
        assert_eq!(
            status.to_string(),
            "http://127.0.0.1:1/x: HTTP 503: no healthy upstream"
        );
        let json = serde_json::from_str::<serde_json::Value>("<html>").unwrap_err();
        let not_json = ProbeError::NotJson {
            source: json,
            excerpt: "<html>".into(),
        };
        assert!(not_json.is_retryable() && !not_json.is_transport());
        assert!(not_json.to_string().starts_with("the answer is not JSON ("));
        let not_yet = ProbeError::NotYet("dashboards: \"X\" not found".into());
        assert!(not_yet.is_retryable() && !not_yet.is_transport());
        assert_eq!(not_yet.hint(), None);
    }

    #[test]
    fn rejected_queries_and_invalid_specs_are_fatal() {
        let r = ProbeError::Rejected {
            endpoint: "http://p/api/v1/query".into(),
            query: "sum(".into(),
            reason: "bad_data: parse error".into(),
        };
        assert!(!r.is_retryable());
        let s = StepError::from(r);
        assert!(s.fatal);
        assert_eq!(s.hint.as_deref(), Some("fix the PromQL in the step"));
        assert_eq!(
            s.message,
            "Prometheus at http://p/api/v1/query rejected the query \"sum(\": bad_data: parse error"
        );
        let i = ProbeError::Invalid {
            what: "Grafana check".into(),
            problems: vec!["a".into(), "b".into()],
        };
        assert!(!i.is_retryable());
        assert_eq!(i.to_string(), "Grafana check is not valid: a; b");
        assert!(StepError::from(i).fatal);
    }
}
