//! STAND-IN for the HTTP calls between Bookinfo apps (`requests.get(url, headers=..., timeout=3)`
//! in istio/istio `samples/bookinfo/src/productpage/productpage.py`, the JAX-RS client in
//! `reviews`' `LibertyRestEndpoint.java`): plain HTTP to a service name, JSON back.

use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;

use super::Error;

/// Why a call to another Bookinfo service gave no JSON.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// No answer: refused, reset, timed out.
    #[error("GET {url}: no answer: {source}")]
    Transport {
        /// The URL called.
        url: String,
        /// Why.
        source: reqwest::Error,
    },
    /// An answer that is not 200.
    #[error("GET {url}: answered {status}")]
    Status {
        /// The URL called.
        url: String,
        /// The status.
        status: StatusCode,
    },
    /// A 200 whose body is not JSON.
    #[error("GET {url}: the 200 answer is not JSON: {source}")]
    Body {
        /// The URL called.
        url: String,
        /// Why.
        source: reqwest::Error,
    },
}

impl CallError {
    /// The status the real apps report for this failure: the upstream's, or 500 when there
    /// was none (`productpage.py`'s `res.status_code if res is not None else 500`).
    pub fn status(&self) -> StatusCode {
        match self {
            CallError::Status { status, .. } => *status,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// A client for the calls to the other Bookinfo services.
#[derive(Debug, Clone)]
pub struct Upstream {
    client: reqwest::Client,
}

impl Upstream {
    /// A plain-HTTP client that ignores proxy environment variables (in a pod the sidecar
    /// intercepts the connection; an `http_proxy` would bypass the mesh).
    pub fn new() -> Result<Upstream, Error> {
        // reqwest is built with rustls but no provider; TLS is never used here, yet the
        // builder needs one. Installing twice is harmless (the first one stays).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .map_err(Error::Client)?;
        Ok(Upstream { client })
    }

    /// `GET url` with `headers`, giving up after `timeout`; the JSON of a 200 answer.
    pub async fn get_json(
        &self,
        url: &str,
        headers: HeaderMap,
        timeout: Duration,
    ) -> Result<Value, CallError> {
        let transport = |source| CallError::Transport {
            url: url.to_string(),
            source,
        };
        let res = self
            .client
            .get(url)
            .headers(headers)
            .timeout(timeout)
            .send()
            .await
            .map_err(transport)?;
        let status = res.status();
        if status != StatusCode::OK {
            return Err(CallError::Status {
                url: url.to_string(),
                status,
            });
        }
        res.json().await.map_err(|source| CallError::Body {
            url: url.to_string(),
            source,
        })
    }
}
