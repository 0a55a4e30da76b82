//! The HTTP probe: one request, repeated until the shared [`Expect`] block holds or the deadline
//! passes.
//!
//! Istio configuration takes a while to reach every proxy, so a check retries (with
//! [`Backoff`](super::Backoff)) on connection errors, on 5xx answers and on failed expectations,
//! the way istio.io's doc tests retry `_verify_*` for up to 120 s.
//!
//! ```yaml
//! url: http://127.0.0.1:8080/productpage
//! method: GET            # default
//! host: bookinfo.example # optional Host header
//! headers: { end-user: jason }
//! expect:
//!   status: 200
//!   title: Simple Bookstore App
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{PollError, ProbeError, poll};
use crate::Outputs;
use crate::error::StepError;
use crate::expect::{Expect, Mismatch, html_title};

pub use super::client;

/// One HTTP check: a request and what its answer must show.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct HttpCheck {
    /// The URL, e.g. `http://127.0.0.1:8080/productpage`.
    pub url: String,
    /// The HTTP method; `GET` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Extra request headers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// A `Host` header to send instead of the URL's host (for a gateway that routes by host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// What the answer must show. With no `status` here, a 5xx answer counts as a failure.
    #[serde(default, skip_serializing_if = "Expect::is_empty")]
    pub expect: Expect,
}

impl HttpCheck {
    /// A `GET` of `url` with no expectations yet.
    pub fn get(url: impl Into<String>) -> Self {
        HttpCheck {
            url: url.into(),
            ..Default::default()
        }
    }

    /// Problems with the check itself, found before anything is sent: a bad URL, method or
    /// header, or a bad JSON expectation (a command's expectation is refused when read).
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        // A URL made from variables (`${forward.url}/productpage`) is checked when it runs.
        match reqwest::Url::parse(&self.url) {
            _ if self.url.contains("${") => {}
            Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
            Ok(u) => out.push(format!(
                "url {:?} must be http or https, not {}",
                self.url,
                u.scheme()
            )),
            Err(e) => out.push(format!("url {:?} is not a valid URL: {e}", self.url)),
        }
        if let (Some(m), None) = (&self.method, self.method()) {
            out.push(format!("method {m:?} is not a valid HTTP method"));
        }
        for (k, v) in &self.headers {
            if reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err() {
                out.push(format!("header name {k:?} is not valid"));
            }
            if reqwest::header::HeaderValue::from_str(v).is_err() {
                out.push(format!("header {k:?} has an invalid value {v:?}"));
            }
        }
        if let Some(h) = &self.host
            && reqwest::header::HeaderValue::from_str(h).is_err()
        {
            out.push(format!("host {h:?} is not a valid Host header"));
        }
        out.extend(self.expect.problems());
        out
    }

    /// The method to send: `method`, upper-cased, or `GET`; `None` when it is not one.
    fn method(&self) -> Option<reqwest::Method> {
        match &self.method {
            None => Some(reqwest::Method::GET),
            Some(m) => reqwest::Method::from_bytes(m.to_ascii_uppercase().as_bytes()).ok(),
        }
    }

    /// One try: the answer when it meets every expectation (a 5xx fails unless `status`
    /// expects it).
    async fn attempt(
        &self,
        client: &reqwest::Client,
        method: &reqwest::Method,
        url: &reqwest::Url,
        timeout: Duration,
    ) -> Result<(u16, String), ProbeError> {
        let (status, body) =
            super::send_and_read(self.request(client, method, url, timeout), true).await?;
        let mut mismatches = self.expect.check(status, &body);
        if self.expect.status.is_none() && status >= 500 {
            mismatches.insert(
                0,
                Mismatch {
                    what: "status".into(),
                    message: format!("got {status}; a 5xx is retried unless `status` expects it"),
                },
            );
        }
        if !mismatches.is_empty() {
            let list: Vec<String> = mismatches.iter().map(|m| m.to_string()).collect();
            return Err(ProbeError::NotYet(format!(
                "last status {status}; mismatches: {}",
                list.join("; ")
            )));
        }
        Ok((status, body))
    }

    fn request(
        &self,
        client: &reqwest::Client,
        method: &reqwest::Method,
        url: &reqwest::Url,
        timeout: Duration,
    ) -> reqwest::RequestBuilder {
        let mut req = client.request(method.clone(), url.clone()).timeout(timeout);
        for (k, v) in &self.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        if let Some(h) = &self.host {
            req = req.header(reqwest::header::HOST, h.as_str());
        }
        req
    }
}

/// What a passing check saw.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpOutcome {
    /// The HTTP status of the passing answer.
    pub status: u16,
    /// Its HTML `<title>`, trimmed, if it has one.
    pub title: Option<String>,
    /// Its body (at most [`MAX_BODY_BYTES`](super::MAX_BODY_BYTES)), for steps that capture from it.
    pub body: String,
    /// How many requests were sent, the passing one included.
    pub attempts: u32,
    /// Time from the first request to the passing answer.
    pub elapsed: Duration,
}

impl HttpOutcome {
    /// The step outputs: `status`, `title` (when there is one) and `attempts`.
    pub fn to_outputs(&self) -> Outputs {
        let mut out = Outputs::new();
        out.insert("status".into(), Value::from(self.status));
        if let Some(t) = &self.title {
            out.insert("title".into(), Value::from(t.clone()));
        }
        out.insert("attempts".into(), Value::from(self.attempts));
        out
    }
}

/// Sends the request until the answer meets every expectation, retrying on connection errors,
/// 5xx answers (unless `expect.status` asks for one) and failed expectations, within `deadline`.
///
/// A check with problems (see [`HttpCheck::problems`]) fails at once with a fatal error. On the
/// deadline the error names the method and URL, the attempts, the last status or transport
/// error, and every mismatch of the last answer.
pub async fn check_until(
    client: &reqwest::Client,
    check: &HttpCheck,
    deadline: Duration,
) -> Result<HttpOutcome, StepError> {
    let problems = check.problems();
    if !problems.is_empty() {
        return Err(ProbeError::Invalid {
            what: format!("HTTP check of {:?}", check.url),
            problems,
        }
        .into());
    }
    let method = check.method().ok_or_else(|| {
        StepError::fatal(format!(
            "method {:?} is not a valid HTTP method",
            check.method
        ))
    })?;
    let url = reqwest::Url::parse(&check.url).map_err(|e| StepError::fatal(e.to_string()))?;
    match poll(deadline, |timeout| {
        check.attempt(client, &method, &url, timeout)
    })
    .await
    {
        Ok(p) => Ok(HttpOutcome {
            status: p.value.0,
            title: html_title(&p.value.1).map(|t| t.trim().to_string()),
            body: p.value.1,
            attempts: p.attempts,
            elapsed: p.elapsed,
        }),
        Err(PollError::Stopped(e)) => Err(e.into()),
        Err(PollError::Expired(x)) => {
            let err = StepError::new(format!(
                "{}; {}",
                x.head(&format!("{method} {url}")),
                x.last.describe()
            ));
            Err(if x.last.never_answered() {
                err.with_hint(super::HINT_UNREACHABLE)
            } else {
                err.with_hint(
                    "configuration may still be propagating through the mesh: raise the step's \
                     timeout, or check the route and the expected values",
                )
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_name_bad_url_method_and_command_only_fields() {
        let c = HttpCheck {
            url: "not a url".into(),
            method: Some("GE T".into()),
            ..Default::default()
        };
        let p = c.problems();
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].contains("not a valid URL"), "{}", p[0]);
        assert!(p[1].contains("not a valid HTTP method"), "{}", p[1]);
        assert!(HttpCheck::get("http://127.0.0.1:1/x").problems().is_empty());
        // A command's expectation in an HTTP check is refused when it is read.
        let e = serde_json::from_value::<HttpCheck>(
            serde_json::json!({"url": "http://127.0.0.1:1/", "expect": {"exit-code": 0}}),
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("`exit-code` applies to commands"),
            "{e}"
        );
    }

    #[test]
    fn outputs_hold_status_title_attempts_only() {
        let o = HttpOutcome {
            status: 200,
            title: Some("Simple Bookstore App".into()),
            body: String::new(),
            attempts: 3,
            elapsed: Duration::from_millis(1234),
        };
        let v = Value::Object(o.to_outputs());
        assert_eq!(
            v,
            serde_json::json!({"status": 200, "title": "Simple Bookstore App", "attempts": 3})
        );
    }

    #[tokio::test]
    async fn an_invalid_check_fails_fatally_without_sending() {
        let c = HttpCheck {
            url: "http://127.0.0.1:1/".into(),
            method: Some("BAD METHOD".into()),
            ..Default::default()
        };
        let e = check_until(&client(), &c, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(e.fatal);
        assert!(e.message.contains("not a valid HTTP method"), "{e}");
    }
}
