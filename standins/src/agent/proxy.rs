//! STAND-IN for `pilot-agent proxy sidecar|router` (`pilot/cmd/pilot-agent/app/cmd.go`,
//! `pkg/envoy/proxy.go`, `pkg/istio-agent/agent.go`): reads the environment Istio's injection
//! template gives `istio-proxy`, writes the Envoy bootstrap of [`super::bootstrap`] to
//! `<configPath>/envoy-rev.json`, starts the status server on 15020 ([`super::status`]), runs
//! Envoy (`<binaryPath> -c ...` with Istio's command-line flags) as a child, forwards SIGTERM
//! and SIGINT to it, ends it on `/quitquitquit`, and exits with Envoy's exit code.
//!
//! Inputs (all set by Istio's injection template unless marked):
//! - `POD_NAME`, `POD_NAMESPACE`, `INSTANCE_IP`, `ISTIO_META_WORKLOAD_NAME`;
//! - the pod's labels in `/etc/istio/pod/labels` (the template's `istio-podinfo` volume): the
//!   canonical service is `service.istio.io/canonical-name`, else `app`, else the workload name;
//! - `PROXY_CONFIG` (JSON ProxyConfig): `binaryPath` (default `/usr/local/bin/envoy`),
//!   `configPath` (default `/etc/istio/proxy`), `concurrency` (default 2),
//!   `tracing.zipkin.address` and `tracing.sampling` (default 100, the demo profile's);
//! - `ISTIO_PROMETHEUS_ANNOTATIONS`: application metrics to merge (see [`super::status`]);
//! - stand-in only, for the lead's istiod to set: `STANDIN_TRACING_ZIPKIN_ADDRESS` or
//!   `STANDIN_TRACING_OTLP_ADDRESS` (`host:port`) override the tracer (Istio 1.30 configures
//!   OTLP through meshConfig extension providers, which only istiod's xDS would carry), and
//!   `STANDIN_TRACING_SAMPLING` the percentage; `STANDIN_GATEWAY_ROUTES_URL` (router mode) is
//!   where the gateway's routes are polled ([`super::gateway`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::Arc;

use serde_json::Value;
use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Notify;

use super::bootstrap::{self, BootstrapSpec, Mode, Ports, Tracer, Tracing};
use super::flags::{self, FlagSpec};
use super::gateway;
use super::status::{AppMetrics, StatusServer};
use super::telemetry::{Telemetry, Workload};

/// Flags of `pilot-agent proxy` that the 1.12.1 and 1.30.3 templates and gateway charts pass,
/// plus older ones still seen in charts; only `--domain`, `--proxyLogLevel`,
/// `--proxyComponentLogLevel` and `--concurrency` change anything here.
pub const FLAGS: &[FlagSpec] = &[
    FlagSpec::value("domain", None),
    FlagSpec::value("proxyLogLevel", None),
    FlagSpec::value("proxyComponentLogLevel", None),
    FlagSpec::value("concurrency", None),
    FlagSpec::value("log_output_level", None),
    FlagSpec::value("log_target", None),
    FlagSpec::value("log_caller", None),
    FlagSpec::value("log_stacktrace_level", None),
    FlagSpec::boolean("log_as_json", None),
    FlagSpec::value("stsPort", None),
    FlagSpec::value("outlierLogPath", None),
    FlagSpec::value("serviceCluster", None),
    FlagSpec::value("templateFile", None),
    FlagSpec::value("trust-domain", None),
    FlagSpec::value("meshConfig", None),
    FlagSpec::value("tokenManagerPlugin", None),
    FlagSpec::value("dnsRefreshRate", None),
    FlagSpec::value("discoveryAddress", None),
    FlagSpec::value("drainDuration", None),
    FlagSpec::value("parentShutdownDuration", None),
    FlagSpec::value("controlPlaneAuthPolicy", None),
    FlagSpec::value("statusPort", None),
];

/// What went wrong running the proxy.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// Bad command line.
    #[error("pilot-agent proxy: {0}")]
    Flags(#[from] flags::FlagError),
    /// Not `sidecar` or `router`.
    #[error("pilot-agent proxy: expected `sidecar` or `router` as the proxy type, got {0:?}")]
    ProxyType(String),
    /// A required environment variable is missing.
    #[error(
        "pilot-agent proxy: {0} is not set (Istio's injection template sets it from the downward API)"
    )]
    MissingEnv(&'static str),
    /// `PROXY_CONFIG` is not JSON.
    #[error("pilot-agent proxy: PROXY_CONFIG is not valid JSON: {0}")]
    ProxyConfig(#[source] serde_json::Error),
    /// A `host:port` setting is malformed.
    #[error("pilot-agent proxy: {name}={value:?} is not host:port")]
    Address {
        /// The setting.
        name: &'static str,
        /// Its value.
        value: String,
    },
    /// `pilot-agent wait` gave up.
    #[error(
        "pilot-agent wait: Envoy was not ready after {0:?} (127.0.0.1:15020/healthz/ready never answered 200)"
    )]
    NotReady(std::time::Duration),
    /// File system or process failure.
    #[error("pilot-agent proxy: {what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// On what.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Flags of `pilot-agent wait` (`pilot/cmd/pilot-agent/app/wait.go`).
pub const WAIT_FLAGS: &[FlagSpec] = &[
    FlagSpec::value("timeoutSeconds", None),
    FlagSpec::value("requestTimeoutMillis", None),
    FlagSpec::value("periodMillis", None),
    FlagSpec::value("url", None),
];

/// `pilot-agent wait` (the `holdApplicationUntilProxyStarts` postStart hook): polls the
/// status server's `/healthz/ready` on `127.0.0.1:15020` every `--periodMillis` (500) until it
/// answers 200, for at most `--timeoutSeconds` (60), like Istio's. `--url` is accepted; only
/// its path is used (the stand-in always asks 127.0.0.1:15020).
pub fn wait(args: &[String]) -> Result<i32, ProxyError> {
    let p = flags::parse(WAIT_FLAGS, args)?;
    let number =
        |name: &str, default: u64| p.get(name).and_then(|v| v.parse().ok()).unwrap_or(default);
    let timeout = std::time::Duration::from_secs(number("timeoutSeconds", 60));
    let period = std::time::Duration::from_millis(number("periodMillis", 500));
    let path = p
        .get("url")
        .and_then(|u| u.split_once("//"))
        .and_then(|(_, rest)| rest.find('/').map(|i| rest[i..].to_string()));
    let path = path.unwrap_or_else(|| "/healthz/ready".to_string());
    let addr = SocketAddr::from(([127, 0, 0, 1], Ports::default().status));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(io_err("starting the async runtime", "-"))?;
    runtime.block_on(async {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Ok((hyper::StatusCode::OK, _)) =
                super::status::request(hyper::Method::GET, addr, &path).await
            {
                eprintln!("pilot-agent STAND-IN: Envoy is ready");
                return Ok(0);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ProxyError::NotReady(timeout));
            }
            tokio::time::sleep(period).await;
        }
    })
}

fn io_err(
    what: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> ProxyError {
    let path = path.into();
    move |source| ProxyError::Io { what, path, source }
}

/// Everything the proxy needs, read from flags, the environment and the pod's labels.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxySettings {
    /// The bootstrap's inputs.
    pub spec: BootstrapSpec,
    /// Envoy's binary.
    pub binary: PathBuf,
    /// Where the bootstrap is written.
    pub config_dir: PathBuf,
    /// Envoy's `-l`.
    pub log_level: String,
    /// Envoy's `--component-log-level`.
    pub component_log_level: String,
    /// Envoy's `--concurrency`.
    pub concurrency: u32,
    /// Application metrics to merge.
    pub app_metrics: Option<AppMetrics>,
    /// Router mode: where to poll the gateway's routes (`STANDIN_GATEWAY_ROUTES_URL`).
    pub routes_url: Option<String>,
}

/// Parses `key="value"` lines of a downward-API labels file.
pub fn parse_labels(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().trim_matches('"').to_string()))
        .collect()
}

/// The workload's identity from the pod's labels, as Istio's injector and agent derive it
/// (`service.istio.io/canonical-*` labels, else `app`/`version`, else the workload name).
fn workload(
    labels: &[(String, String)],
    env: &dyn Fn(&str) -> Option<String>,
    pod_name: &str,
    namespace: &str,
) -> Workload {
    let label = |k: &str| {
        labels
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    let name = env("ISTIO_META_WORKLOAD_NAME").unwrap_or_else(|| pod_name.to_string());
    Workload {
        canonical_service: label("service.istio.io/canonical-name")
            .or_else(|| label("app.kubernetes.io/name"))
            .or_else(|| label("app"))
            .unwrap_or_else(|| name.clone()),
        canonical_revision: label("service.istio.io/canonical-revision")
            .or_else(|| label("app.kubernetes.io/version"))
            .or_else(|| label("version"))
            .unwrap_or_else(|| "latest".into()),
        app: label("app").unwrap_or_else(|| "unknown".into()),
        version: label("version").unwrap_or_else(|| "unknown".into()),
        namespace: namespace.to_string(),
        name,
    }
}

fn host_port(name: &'static str, value: &str) -> Result<(String, u16), ProxyError> {
    let bad = || ProxyError::Address {
        name,
        value: value.to_string(),
    };
    let (host, port) = value.rsplit_once(':').ok_or_else(bad)?;
    Ok((host.to_string(), port.parse().map_err(|_| bad())?))
}

fn tracing(
    env: &dyn Fn(&str) -> Option<String>,
    proxy_config: &Value,
) -> Result<Option<Tracing>, ProxyError> {
    let sampling = proxy_config["tracing"]["sampling"]
        .as_f64()
        .or_else(|| env("STANDIN_TRACING_SAMPLING").and_then(|s| s.parse().ok()))
        .unwrap_or(100.0);
    let tracer = if let Some(otlp) = env("STANDIN_TRACING_OTLP_ADDRESS") {
        let (host, port) = host_port("STANDIN_TRACING_OTLP_ADDRESS", &otlp)?;
        Tracer::Otlp { host, port }
    } else if let Some(zipkin) = env("STANDIN_TRACING_ZIPKIN_ADDRESS") {
        let (host, port) = host_port("STANDIN_TRACING_ZIPKIN_ADDRESS", &zipkin)?;
        Tracer::Zipkin { host, port }
    } else if let Some(zipkin) = proxy_config["tracing"]["zipkin"]["address"].as_str() {
        let (host, port) = host_port("PROXY_CONFIG tracing.zipkin.address", zipkin)?;
        Tracer::Zipkin { host, port }
    } else {
        return Ok(None);
    };
    Ok(Some(Tracing { tracer, sampling }))
}

impl ProxySettings {
    /// Reads `proxy sidecar|router [flags]`, the environment (`env`) and the labels file's text.
    pub fn from_inputs(
        args: &[String],
        env: &dyn Fn(&str) -> Option<String>,
        labels: &str,
    ) -> Result<Self, ProxyError> {
        let p = flags::parse(FLAGS, args)?;
        let mode = match p.positionals.first().map(String::as_str) {
            Some("sidecar") => Mode::Sidecar,
            Some("router") => Mode::Router,
            other => return Err(ProxyError::ProxyType(other.unwrap_or("").to_string())),
        };
        let required = |name: &'static str| {
            env(name)
                .filter(|v| !v.is_empty())
                .ok_or(ProxyError::MissingEnv(name))
        };
        let namespace = required("POD_NAMESPACE")?;
        let pod_name = required("POD_NAME")?;
        let proxy_config: Value = match env("PROXY_CONFIG").filter(|s| !s.trim().is_empty()) {
            Some(text) => serde_json::from_str(&text).map_err(ProxyError::ProxyConfig)?,
            None => Value::Null,
        };
        let workload = workload(&parse_labels(labels), env, &pod_name, &namespace);
        let config_dir: PathBuf = proxy_config["configPath"]
            .as_str()
            .unwrap_or("/etc/istio/proxy")
            .into();
        let spec = BootstrapSpec {
            mode,
            service: format!("{}.{namespace}", workload.canonical_service),
            telemetry_log: Some(config_dir.join("telemetry.log").display().to_string()),
            dynamic_dir: (mode == Mode::Router).then(|| config_dir.display().to_string()),
            workload,
            domain: p
                .get("domain")
                .map(String::from)
                .unwrap_or_else(|| format!("{namespace}.svc.cluster.local")),
            instance_ip: env("INSTANCE_IP").unwrap_or_else(|| "127.0.0.1".into()),
            pod_name,
            namespace,
            ports: Ports::default(),
            tracing: tracing(env, &proxy_config)?,
        };
        let concurrency = p.get("concurrency").and_then(|c| c.parse().ok());
        Ok(Self {
            spec,
            binary: proxy_config["binaryPath"]
                .as_str()
                .unwrap_or("/usr/local/bin/envoy")
                .into(),
            config_dir,
            log_level: p.get("proxyLogLevel").unwrap_or("warning").to_string(),
            component_log_level: p
                .get("proxyComponentLogLevel")
                .unwrap_or("misc:error")
                .to_string(),
            concurrency: concurrency
                .or(proxy_config["concurrency"].as_u64().map(|c| c as u32))
                .unwrap_or(2),
            routes_url: env("STANDIN_GATEWAY_ROUTES_URL").filter(|_| mode == Mode::Router),
            app_metrics: env("ISTIO_PROMETHEUS_ANNOTATIONS")
                .and_then(|a| AppMetrics::from_annotations(&a)),
        })
    }

    /// Envoy's arguments, as Istio's `pkg/envoy/proxy.go` builds them.
    pub fn envoy_args(&self, config: &Path) -> Vec<String> {
        let mut args: Vec<String> = vec!["-c".into(), config.display().to_string()];
        for (flag, value) in [
            ("--drain-time-s", "45"),
            ("--drain-strategy", "immediate"),
            ("--local-address-ip-version", "v4"),
            ("--file-flush-interval-msec", "1000"),
            ("--log-format", "%Y-%m-%dT%T.%fZ\t%l\tenvoy %n\t%v"),
        ] {
            args.extend([flag.to_string(), value.to_string()]);
        }
        args.extend([
            "--disable-hot-restart".into(),
            "--allow-unknown-static-fields".into(),
        ]);
        args.extend(["-l".into(), self.log_level.clone()]);
        args.extend([
            "--component-log-level".into(),
            self.component_log_level.clone(),
        ]);
        args.extend(["--concurrency".into(), self.concurrency.to_string()]);
        args
    }

    /// Writes the bootstrap and returns its path.
    pub fn write_bootstrap(&self) -> Result<PathBuf, ProxyError> {
        std::fs::create_dir_all(&self.config_dir).map_err(io_err("creating", &self.config_dir))?;
        let path = self.config_dir.join("envoy-rev.json");
        let text = serde_json::to_string_pretty(&bootstrap::bootstrap(&self.spec))
            .expect("JSON values serialize");
        std::fs::write(&path, text).map_err(io_err("writing", &path))?;
        if self.spec.dynamic_dir.is_some() {
            let header = (
                super::telemetry::SOURCE_HEADER,
                self.spec.workload.header_value(),
            );
            gateway::write(&self.config_dir, &[], (header.0, &header.1))
                .map_err(io_err("writing the gateway's routes in", &self.config_dir))?;
        }
        Ok(path)
    }
}

/// `pilot-agent proxy ARGS`: runs until Envoy exits; returns its exit code.
pub fn run(args: &[String]) -> Result<i32, ProxyError> {
    let labels = std::fs::read_to_string("/etc/istio/pod/labels").unwrap_or_default();
    let settings = ProxySettings::from_inputs(args, &|k| std::env::var(k).ok(), &labels)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(io_err("starting the async runtime", "-"))?;
    runtime.block_on(supervise(settings))
}

async fn supervise(settings: ProxySettings) -> Result<i32, ProxyError> {
    let config = settings.write_bootstrap()?;
    eprintln!(
        "pilot-agent STAND-IN: {:?} {} ({}), bootstrap {}",
        settings.spec.mode,
        settings.spec.pod_name,
        settings.spec.service,
        config.display()
    );
    let ports = settings.spec.ports;
    let quit = Arc::new(Notify::new());
    let status_addr = SocketAddr::from(([0, 0, 0, 0], ports.status));
    let listener = TcpListener::bind(status_addr)
        .await
        .map_err(io_err("listening on", status_addr.to_string()))?;
    let server = Arc::new(StatusServer {
        admin: SocketAddr::from(([127, 0, 0, 1], ports.admin)),
        app_metrics: settings.app_metrics.clone(),
        quit: Arc::clone(&quit),
        telemetry: settings
            .spec
            .telemetry_log
            .as_ref()
            .map(|log| Arc::new(Telemetry::new(settings.spec.workload.clone(), log.into()))),
    });
    tokio::spawn(server.serve(listener));
    if let Some(url) = settings.routes_url.clone() {
        let header = (
            super::telemetry::SOURCE_HEADER,
            settings.spec.workload.header_value(),
        );
        tokio::spawn(gateway::follow(url, settings.config_dir.clone(), header));
    }
    let mut envoy = Command::new(&settings.binary);
    envoy.args(settings.envoy_args(&config)).kill_on_drop(true);
    // SAFETY: prctl(2) only, between fork and exec. This thread (the runtime's `block_on`
    // thread) lives as long as the agent, so Envoy gets SIGKILL exactly when the agent dies
    // without stopping it (e.g. SIGKILL), as it would with its container.
    unsafe {
        envoy.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let signals = Signals::catch().map_err(io_err("catching SIGTERM and SIGINT", "-"))?;
    let mut child = envoy
        .spawn()
        .map_err(io_err("starting Envoy", &settings.binary))?;
    let status = wait_forwarding_signals(&mut child, &quit, signals)
        .await
        .map_err(io_err("waiting for Envoy", &settings.binary))?;
    eprintln!("pilot-agent STAND-IN: Envoy exited: {status}");
    Ok(exit_code(status))
}

/// Waits for Envoy, sending it SIGTERM when the agent gets SIGTERM or SIGINT or `/quitquitquit`.
/// SIGTERM and SIGINT, caught from now on (before Envoy starts: as PID 1 in a container, an
/// uncaught SIGTERM would be ignored).
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn catch() -> std::io::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }
}

async fn wait_forwarding_signals(
    child: &mut Child,
    quit: &Notify,
    signals: Signals,
) -> std::io::Result<ExitStatus> {
    let Signals { mut term, mut int } = signals;
    loop {
        tokio::select! {
            status = child.wait() => return status,
            _ = term.recv() => terminate(child, "SIGTERM"),
            _ = int.recv() => terminate(child, "SIGINT"),
            () = quit.notified() => terminate(child, "/quitquitquit"),
        }
    }
}

fn terminate(child: &Child, why: &str) {
    eprintln!("pilot-agent STAND-IN: {why}: stopping Envoy");
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        // SAFETY: kill(2) with the pid of our own child process and a valid signal number.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
}

fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(key, _)| *key == k)
                .map(|(_, v)| v.to_string())
        }
    }

    fn args(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    const POD_ENV: &[(&str, &str)] = &[
        ("POD_NAME", "productpage-v1-5d9b"),
        ("POD_NAMESPACE", "default"),
        ("INSTANCE_IP", "10.244.0.9"),
        ("ISTIO_META_WORKLOAD_NAME", "productpage-v1"),
        (
            "PROXY_CONFIG",
            r#"{"configPath":"./etc/istio/proxy","tracing":{"zipkin":{"address":"zipkin.istio-system:9411"}}}"#,
        ),
    ];

    /// The 1.12.1 template's `istio-proxy` args with its default values.
    const TEMPLATE_ARGS: &[&str] = &[
        "sidecar",
        "--domain",
        "default.svc.cluster.local",
        "--proxyLogLevel=warning",
        "--proxyComponentLogLevel=misc:error",
        "--log_output_level=default:info",
        "--concurrency",
        "2",
    ];

    #[test]
    fn reads_the_injected_environment_and_labels() {
        let labels = "app=\"productpage\"\nversion=\"v1\"\n";
        let s = ProxySettings::from_inputs(&args(TEMPLATE_ARGS), &env_of(POD_ENV), labels).unwrap();
        assert_eq!(s.spec.service, "productpage.default");
        assert_eq!(s.spec.mode, Mode::Sidecar);
        assert_eq!(s.config_dir, PathBuf::from("./etc/istio/proxy"));
        assert_eq!(s.binary, PathBuf::from("/usr/local/bin/envoy"));
        let tracing = s.spec.tracing.unwrap();
        assert_eq!(
            tracing.tracer,
            Tracer::Zipkin {
                host: "zipkin.istio-system".into(),
                port: 9411
            }
        );
        assert_eq!(tracing.sampling, 100.0);
        let no_labels =
            ProxySettings::from_inputs(&args(TEMPLATE_ARGS), &env_of(POD_ENV), "").unwrap();
        assert_eq!(
            no_labels.spec.service, "productpage-v1.default",
            "falls back to the workload name"
        );
    }

    #[test]
    fn refuses_a_missing_pod_identity_or_proxy_type() {
        let err = ProxySettings::from_inputs(&args(&["sidecar"]), &env_of(&[]), "").unwrap_err();
        assert!(
            matches!(err, ProxyError::MissingEnv("POD_NAMESPACE")),
            "{err}"
        );
        let err =
            ProxySettings::from_inputs(&args(&["waypoint"]), &env_of(POD_ENV), "").unwrap_err();
        assert!(matches!(err, ProxyError::ProxyType(t) if t == "waypoint"));
        let err = ProxySettings::from_inputs(&args(&["router", "--bogus"]), &env_of(POD_ENV), "")
            .unwrap_err();
        assert!(matches!(err, ProxyError::Flags(_)));
    }

    #[test]
    fn otlp_override_and_envoy_args() {
        const ENV: &[(&str, &str)] = &[
            ("POD_NAME", "istio-ingressgateway-1"),
            ("POD_NAMESPACE", "istio-system"),
            (
                "STANDIN_TRACING_OTLP_ADDRESS",
                "jaeger-collector.istio-system:4317",
            ),
        ];
        let labels = "app=\"istio-ingressgateway\"\n";
        let s = ProxySettings::from_inputs(
            &args(&["router", "--serviceCluster", "x"]),
            &env_of(ENV),
            labels,
        )
        .unwrap();
        assert_eq!(s.spec.service, "istio-ingressgateway.istio-system");
        assert!(matches!(
            s.spec.tracing.as_ref().unwrap().tracer,
            Tracer::Otlp { port: 4317, .. }
        ));
        let a = s.envoy_args(Path::new("/etc/istio/proxy/envoy-rev.json"));
        assert_eq!(&a[..2], ["-c", "/etc/istio/proxy/envoy-rev.json"]);
        assert!(a.windows(2).any(|w| w == ["-l", "warning"]));
        assert!(a.windows(2).any(|w| w == ["--concurrency", "2"]));
    }
}
