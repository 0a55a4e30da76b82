//! STAND-IN for the status server of Istio's `pilot-agent` on port 15020
//! (`pilot/cmd/pilot-agent/status/server.go`):
//!
//! - `GET /healthz/ready`: 200 when Envoy's admin `/ready` answers `LIVE`, 503 otherwise (Envoy's
//!   `0.0.0.0:15021` listener routes the kubelet's readiness probe here, as in Istio);
//! - `GET /stats/prometheus`: Envoy's `/stats/prometheus`, followed by the application's own
//!   metrics when `ISTIO_PROMETHEUS_ANNOTATIONS` (set by Istio's injector from the pod's
//!   `prometheus.io/*` annotations, e.g. `{"scrape":"true","port":"9080","path":"/metrics"}`)
//!   asks for them (Istio's metrics merging);
//!   Istio's standard metrics from [`super::telemetry`] come in between;
//! - `POST /quitquitquit`: ends the agent and Envoy, like Istio's.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use super::telemetry::Telemetry;

/// What went wrong talking HTTP to Envoy's admin or the application.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// No connection.
    #[error("could not connect to {addr}: {source}")]
    Connect {
        /// Where.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The HTTP exchange failed.
    #[error("HTTP {method} http://{addr}{path} failed: {source}")]
    Http {
        /// Method.
        method: Method,
        /// Where.
        addr: SocketAddr,
        /// Path.
        path: String,
        /// Why.
        source: hyper::Error,
    },
}

/// One HTTP/1.1 request on a fresh connection; returns the status and the body.
pub async fn request(
    method: Method,
    addr: SocketAddr,
    path: &str,
) -> Result<(StatusCode, Bytes), HttpError> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|source| HttpError::Connect { addr, source })?;
    let err = |source| HttpError::Http {
        method: method.clone(),
        addr,
        path: path.to_string(),
        source,
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(err)?;
    tokio::spawn(conn);
    let req = Request::builder()
        .method(method.clone())
        .uri(path)
        .header(hyper::header::HOST, addr.to_string())
        .body(Full::new(Bytes::new()))
        .expect("a request built from a valid path");
    let resp = sender.send_request(req).await.map_err(err)?;
    let status = resp.status();
    let body = resp.into_body().collect().await.map_err(err)?.to_bytes();
    Ok((status, body))
}

/// Where the application's metrics are, from `ISTIO_PROMETHEUS_ANNOTATIONS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppMetrics {
    /// The application's port on localhost.
    pub port: u16,
    /// Its metrics path.
    pub path: String,
}

impl AppMetrics {
    /// Reads Istio's `ISTIO_PROMETHEUS_ANNOTATIONS` JSON; `None` unless `scrape` is `"true"`
    /// and a port is given.
    pub fn from_annotations(json: &str) -> Option<Self> {
        let v: serde_json::Value = serde_json::from_str(json).ok()?;
        if v["scrape"].as_str() != Some("true") {
            return None;
        }
        let port = v["port"].as_str()?.parse().ok()?;
        let path = v["path"].as_str().unwrap_or("/metrics").to_string();
        Some(Self { port, path })
    }
}

/// The status server's state.
#[derive(Debug)]
pub struct StatusServer {
    /// Envoy's admin address.
    pub admin: SocketAddr,
    /// The application's metrics, if merged.
    pub app_metrics: Option<AppMetrics>,
    /// Notified by `/quitquitquit`.
    pub quit: Arc<Notify>,
    /// Istio's standard metrics computed from Envoy's telemetry log, if any.
    pub telemetry: Option<Arc<Telemetry>>,
}

type Reply = Response<Full<Bytes>>;

fn reply(status: StatusCode, body: impl Into<Bytes>) -> Reply {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp
}

impl StatusServer {
    /// Serves on `listener` until the process ends.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let server = Arc::clone(&self);
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let server = Arc::clone(&server);
                    async move { Ok::<_, Infallible>(server.handle(req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }

    async fn handle(&self, req: Request<Incoming>) -> Reply {
        match (req.method(), req.uri().path()) {
            (&Method::GET, "/healthz/ready") => self.ready().await,
            (&Method::GET, "/stats/prometheus") => self.stats().await,
            (&Method::POST, "/quitquitquit") => {
                self.quit.notify_one();
                reply(StatusCode::OK, "OK")
            }
            _ => reply(StatusCode::NOT_FOUND, "pilot-agent stand-in: not found\n"),
        }
    }

    /// Ready when Envoy's admin says `LIVE` (Istio's `ready.Probe` checks the same state).
    async fn ready(&self) -> Reply {
        match request(Method::GET, self.admin, "/ready").await {
            Ok((StatusCode::OK, body)) if body.starts_with(b"LIVE") => reply(StatusCode::OK, ""),
            Ok((status, body)) => reply(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "Envoy not ready: admin /ready answered {status}: {}\n",
                    String::from_utf8_lossy(&body).trim()
                ),
            ),
            Err(e) => reply(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("Envoy not ready: {e}\n"),
            ),
        }
    }

    /// Envoy's metrics, then the application's (a failure to get the latter is logged, not fatal,
    /// as in Istio).
    async fn stats(&self) -> Reply {
        let envoy = match request(Method::GET, self.admin, "/stats/prometheus").await {
            Ok((StatusCode::OK, body)) => body,
            Ok((status, _)) => {
                return reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("Envoy stats answered {status}\n"),
                );
            }
            Err(e) => {
                return reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("Envoy stats: {e}\n"),
                );
            }
        };
        let mut out = envoy.to_vec();
        if !out.ends_with(b"\n") {
            out.push(b'\n');
        }
        if let Some(telemetry) = &self.telemetry {
            out.extend_from_slice(telemetry.scrape().as_bytes());
        }
        if let Some(app) = &self.app_metrics {
            let addr = SocketAddr::from(([127, 0, 0, 1], app.port));
            match request(Method::GET, addr, &app.path).await {
                Ok((StatusCode::OK, body)) => {
                    out.push(b'\n');
                    out.extend_from_slice(&body);
                }
                Ok((status, _)) => eprintln!(
                    "pilot-agent stand-in: app metrics on {addr}{} answered {status}",
                    app.path
                ),
                Err(e) => eprintln!("pilot-agent stand-in: app metrics: {e}"),
            }
        }
        let mut resp = reply(StatusCode::OK, out);
        resp.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"),
        );
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_metrics_follow_istio_prometheus_annotations() {
        let a = AppMetrics::from_annotations(r#"{"scrape":"true","port":"9080","path":"/m"}"#);
        assert_eq!(
            a,
            Some(AppMetrics {
                port: 9080,
                path: "/m".into()
            })
        );
        assert_eq!(
            AppMetrics::from_annotations(r#"{"scrape":"false","port":"9080"}"#),
            None
        );
        assert_eq!(AppMetrics::from_annotations(r#"{"scrape":"true"}"#), None);
        assert_eq!(AppMetrics::from_annotations("not json"), None);
    }

    /// The status server against a fake admin: not ready until `/ready` says LIVE, merged stats.
    #[tokio::test]
    async fn ready_and_stats_follow_envoy_admin() {
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin_addr = admin.local_addr().unwrap();
        let app = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let app_port = app.local_addr().unwrap().port();
        tokio::spawn(fake(admin, |path| match path {
            "/ready" => (StatusCode::OK, "LIVE\n"),
            _ => (StatusCode::OK, "envoy_server_live 1\n"),
        }));
        tokio::spawn(fake(app, |_| (StatusCode::OK, "app_requests_total 3\n")));
        let server = Arc::new(StatusServer {
            admin: admin_addr,
            app_metrics: Some(AppMetrics {
                port: app_port,
                path: "/metrics".into(),
            }),
            quit: Arc::new(Notify::new()),
            telemetry: None,
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(Arc::clone(&server).serve(listener));
        let (status, _) = request(Method::GET, addr, "/healthz/ready").await.unwrap();
        assert_eq!(status, StatusCode::OK);
        let (_, body) = request(Method::GET, addr, "/stats/prometheus")
            .await
            .unwrap();
        let body = String::from_utf8_lossy(&body);
        assert!(
            body.contains("envoy_server_live 1") && body.contains("app_requests_total 3"),
            "{body}"
        );
        let quit = Arc::clone(&server.quit);
        let waiter = tokio::spawn(async move { quit.notified().await });
        request(Method::POST, addr, "/quitquitquit").await.unwrap();
        waiter.await.unwrap();
    }

    #[tokio::test]
    async fn not_ready_without_envoy() {
        let unused = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = unused.local_addr().unwrap();
        drop(unused);
        let server = StatusServer {
            admin,
            app_metrics: None,
            quit: Arc::new(Notify::new()),
            telemetry: None,
        };
        assert_eq!(
            server.ready().await.status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    async fn fake(listener: TcpListener, answer: fn(&str) -> (StatusCode, &'static str)) {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| async move {
                    let (status, body) = answer(req.uri().path());
                    Ok::<_, Infallible>(reply(status, body))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }
}
