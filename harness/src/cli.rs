//! The `istio-e2e` command line. Exit codes:
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | a scenario failed, or validation found problems |
//! | 2 | bad command line (clap) |
//! | 3 | the environment cannot run it (no Docker, provider missing, image not built) |
//! | 130 | interrupted (Ctrl-C) |

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::cluster::{self, Provider, ProviderKind};
use crate::runner::{self, RunOptions, TimeoutScale};
use crate::scenario::{self, validate::ValidateOptions};

/// Exit code: a scenario failed or a file is invalid.
pub const EXIT_FAILED: u8 = 1;
/// Exit code: the environment cannot run it.
pub const EXIT_ENV: u8 = 3;
/// Exit code: interrupted.
pub const EXIT_INTERRUPTED: u8 = 130;

/// Reproducible end-to-end tests for Istio on local Kubernetes clusters.
#[derive(Debug, Parser)]
#[command(name = "istio-e2e", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run scenarios against a cluster.
    Run {
        /// Scenario files.
        #[arg(required = true)]
        scenarios: Vec<PathBuf>,
        /// Cluster provider: kind, minikube, k3s, existing, lab, none.
        #[arg(long, env = "ISTIO_E2E_PROVIDER")]
        provider: Option<String>,
        /// Istio version.
        #[arg(long, env = "ISTIO_E2E_ISTIO_VERSION")]
        istio_version: Option<String>,
        /// A local, extracted Istio release directory to use instead of a download.
        #[arg(long, env = "ISTIO_E2E_ISTIO_DIR")]
        istio_dir: Option<PathBuf>,
        /// Kubernetes version.
        #[arg(long, env = "ISTIO_E2E_K8S_VERSION")]
        kubernetes: Option<String>,
        /// Keep the cluster after the run.
        #[arg(long)]
        keep_cluster: bool,
        /// Keep the cluster only when the run fails.
        #[arg(long)]
        keep_on_failure: bool,
        /// On an existing cluster, install Istio even over the one already there (by default
        /// the run uses it, and never uninstalls what it did not install).
        #[arg(long, env = "ISTIO_E2E_REINSTALL_ISTIO")]
        reinstall_istio: bool,
        /// On an existing cluster, how long teardown waits for each deletion of what the run
        /// created before naming what is still there and its finalizers (e.g. `90s`, `5m`).
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
        delete_timeout: Option<std::time::Duration>,
        /// Parent directory of the run's artifacts (default target/istio-e2e).
        #[arg(long)]
        artifacts: Option<PathBuf>,
        /// Compare results with the snapshots in snapshots/ (insta).
        #[arg(long)]
        check_snapshots: bool,
        /// Set a scenario parameter (`params:`), e.g. `--set rollout=unsafe`; repeatable.
        #[arg(long = "set", value_name = "NAME=VALUE", value_parser = scenario::parse_param)]
        params: Vec<(String, String)>,
        /// Multiply every step and scenario timeout, e.g. 2 on a slow CI machine.
        #[arg(long, env = "ISTIO_E2E_TIMEOUT_SCALE", default_value = "1")]
        timeout_scale: TimeoutScale,
    },
    /// Check scenario files without a cluster; prints `path:line:col: message` per problem.
    Validate {
        /// Scenario files.
        #[arg(required = true)]
        scenarios: Vec<PathBuf>,
        /// The Istio release directory `${istio.dir}` will be, to check files under it.
        #[arg(long, env = "ISTIO_E2E_ISTIO_DIR")]
        istio_dir: Option<PathBuf>,
        /// Parameter overrides to check, as for `run --set`.
        #[arg(long = "set", value_name = "NAME=VALUE", value_parser = scenario::parse_param)]
        params: Vec<(String, String)>,
    },
    /// List the trials the e2e matrix would run (scenarios/ and the ISTIO_E2E_* variables).
    List {
        /// Scenario directory.
        #[arg(long, default_value = "scenarios")]
        dir: PathBuf,
    },
    /// Print the JSON Schema of the scenario language (committed as scenarios/schema.json,
    /// which editors read through the scenarios' `yaml-language-server` comment).
    Schema,
    /// Check this machine: Docker, kind, minikube, istioctl, the lab image, inotify limits.
    Doctor,
    /// Remove clusters and containers left by earlier runs (found by name prefix and label).
    Clean,
    /// Forward a local port to HOST:PORT (the walkthrough's ncat), until Ctrl-C.
    Forward {
        /// Listen address; binding anything but loopback exposes the target to other machines.
        #[arg(long, default_value = "127.0.0.1:8888")]
        listen: SocketAddr,
        /// Target HOST:PORT.
        #[arg(long)]
        to: String,
    },
    /// Show the differences between two runs' normalized results (exit 0 equal, 1 different):
    /// two finished runs, or `--from X --to Y SCENARIO`, which runs the scenario on Istio X,
    /// then on Istio Y, then compares them.
    Compare {
        /// Run A: a run directory (target/istio-e2e/RUN_ID) or its results.json; with
        /// `--from`/`--to`, the scenario file to run twice.
        a: PathBuf,
        /// Run B (not with `--from`/`--to`).
        #[arg(required_unless_present = "from")]
        b: Option<PathBuf>,
        /// Run the scenario with this Istio version first (needs `--to`).
        #[arg(long, requires = "to", conflicts_with = "b")]
        from: Option<String>,
        /// ... and then with this one.
        #[arg(long, requires = "from")]
        to: Option<String>,
        /// Also write the differences as Markdown to this file.
        #[arg(long)]
        markdown: Option<PathBuf>,
        /// Also write the two runs side by side (timelines, traffic charts, differences) as
        /// a self-contained HTML page to this file.
        #[arg(long)]
        html: Option<PathBuf>,
        /// Provider for `--from`/`--to` runs.
        #[arg(long, env = "ISTIO_E2E_PROVIDER")]
        provider: Option<String>,
        /// For `--from`/`--to` runs: an unpacked Istio release, or a directory of releases
        /// by version (`DIR/<version>/`), instead of downloads.
        #[arg(long, env = "ISTIO_E2E_ISTIO_DIR")]
        istio_dir: Option<PathBuf>,
        /// Parent directory of the runs' artifacts (default target/istio-e2e).
        #[arg(long)]
        artifacts: Option<PathBuf>,
    },
    /// The offline lab cluster, for use with kubectl.
    Lab {
        /// up, down or status.
        #[command(subcommand)]
        action: LabAction,
    },
}

/// `istio-e2e lab` actions.
#[derive(Debug, Subcommand)]
pub enum LabAction {
    /// Start the lab node (once) and write target/lab/kubeconfig.
    Up {
        /// The node's Kubernetes version: v1.20 (default) or v1.34.
        #[arg(long, env = "ISTIO_E2E_K8S_VERSION")]
        kubernetes: Option<String>,
    },
    /// Remove the lab node started by `up`.
    Down,
    /// Say whether the lab node runs and where its kubeconfig is.
    Status,
}

/// Runs the CLI; returns the process exit code.
pub fn main() -> ExitCode {
    crate::install_crypto_provider();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ISTIO_E2E_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_ENV);
        }
    };
    ExitCode::from(rt.block_on(dispatch(cli.command)))
}

async fn dispatch(cmd: Command) -> u8 {
    match cmd {
        Command::Validate {
            scenarios,
            istio_dir,
            params,
        } => validate(
            &scenarios,
            &ValidateOptions {
                istio_dir,
                provider: None,
                params: params.into_iter().collect(),
            },
        ),
        Command::List { dir } => list(&dir),
        Command::Schema => {
            print!("{}", scenario::schema::json());
            0
        }
        Command::Run {
            scenarios,
            provider,
            istio_version,
            istio_dir,
            kubernetes,
            keep_cluster,
            keep_on_failure,
            reinstall_istio,
            delete_timeout,
            artifacts,
            check_snapshots,
            params,
            timeout_scale,
        } => {
            let opts = RunOptions {
                params: params.into_iter().collect(),
                timeout_scale,
                provider,
                istio_version,
                istio_dir,
                kubernetes,
                keep_cluster,
                keep_on_failure,
                reinstall_istio,
                delete_timeout,
                artifacts_root: artifacts,
                ..Default::default()
            };
            run(&scenarios, &opts, check_snapshots).await
        }
        Command::Doctor => doctor().await,
        Command::Clean => clean(),
        Command::Forward { listen, to } => forward(listen, to).await,
        Command::Lab { action } => lab(action).await,
        Command::Compare {
            a,
            b: Some(b),
            markdown,
            html,
            ..
        } => compare(&a, &b, markdown.as_deref(), html.as_deref()),
        Command::Compare {
            a: scenario,
            from: Some(from),
            to: Some(to),
            markdown,
            html,
            provider,
            artifacts,
            istio_dir,
            ..
        } => {
            let opts = RunOptions {
                provider,
                istio_dir,
                artifacts_root: artifacts,
                ..Default::default()
            };
            let out = (markdown.as_deref(), html.as_deref());
            compare_versions(&scenario, &from, &to, &opts, out).await
        }
        Command::Compare { .. } => {
            eprintln!("error: compare needs two runs, or --from X --to Y and a scenario file");
            2
        }
    }
}

fn validate(paths: &[PathBuf], opts: &ValidateOptions) -> u8 {
    let mut bad = 0;
    for p in paths {
        let diags = match scenario::load(p) {
            Err(d) => vec![d],
            Ok(f) => scenario::validate(&f, opts),
        };
        if diags.is_empty() {
            println!("{}: ok", p.display());
        } else {
            bad += 1;
            for d in diags {
                println!("{d}");
            }
        }
    }
    if bad > 0 { EXIT_FAILED } else { 0 }
}

/// `opts` for `f`: a run on a provider the scenario's `matrix:` has rows for alone (the lab,
/// whose nodes have versions of their own), naming no versions, takes the first such row's.
fn with_provider_versions(f: &scenario::ScenarioFile, opts: &RunOptions) -> RunOptions {
    let mut o = opts.clone();
    let provider = o.provider.clone();
    let provider = provider.unwrap_or_else(|| f.scenario.cluster.provider().to_string());
    if o.kubernetes.is_none()
        && o.istio_version.is_none()
        && let Some((k, i)) = crate::matrix::own_versions_of(&f.scenario, &provider)
    {
        (o.kubernetes, o.istio_version) = (k, i);
    }
    o
}

fn list(dir: &std::path::Path) -> u8 {
    let (entries, notes, errors) = crate::matrix::from_env(dir);
    for e in &entries {
        println!("{}", e.name());
    }
    for n in notes {
        eprintln!("note: {n}");
    }
    for d in &errors {
        eprintln!("{d}");
    }
    if errors.is_empty() { 0 } else { EXIT_FAILED }
}

async fn run(paths: &[PathBuf], opts: &RunOptions, check_snapshots: bool) -> u8 {
    let mut files = Vec::new();
    let mut bad = false;
    for p in paths {
        match scenario::load(p) {
            Ok(f) => {
                let d = scenario::validate(
                    &f,
                    &ValidateOptions {
                        istio_dir: opts.istio_dir.clone(),
                        provider: opts.provider.clone(),
                        params: opts.params.clone(),
                    },
                );
                if d.is_empty() {
                    files.push(f);
                } else {
                    bad = true;
                    d.iter().for_each(|d| eprintln!("{d}"));
                }
            }
            Err(d) => {
                bad = true;
                eprintln!("{d}");
            }
        }
    }
    if bad {
        eprintln!(
            "error: nothing was run: fix the problems above (`istio-e2e validate` checks files without a cluster)"
        );
        return EXIT_FAILED;
    }
    let mut code = 0;
    for f in &files {
        let opts = &with_provider_versions(f, opts);
        let provider = match runner::prepare(f, opts) {
            Ok(p) => p,
            Err(runner::StartError::CannotRun { provider, why }) => {
                eprintln!(
                    "error: {}: provider {provider} cannot run here: {why}. `istio-e2e doctor` lists what is missing.",
                    f.path.display()
                );
                return EXIT_ENV;
            }
            Err(e) => {
                eprintln!("error: {e}");
                return EXIT_FAILED;
            }
        };
        let result = runner::run_with(f, opts, provider, &runner::StepRunner).await;
        eprintln!("reports: {}", result.artifacts);
        eprintln!(
            "report: {}",
            crate::report::html::path_in(&result.artifacts).display()
        );
        match result.status {
            crate::results::Status::Passed => {
                eprintln!("{}: passed", f.scenario.name);
                if check_snapshots {
                    let r = result.clone();
                    let own = crate::snapshot::Own::of(&f.scenario);
                    if std::panic::catch_unwind(|| {
                        crate::snapshot::assert_run(&r, own);
                    })
                    .is_err()
                    {
                        eprintln!(
                            "{}: results differ from the snapshots (review with `cargo insta review`)",
                            f.scenario.name
                        );
                        code = EXIT_FAILED;
                    }
                }
            }
            crate::results::Status::Interrupted => return EXIT_INTERRUPTED,
            _ => {
                eprintln!(
                    "{}: FAILED: {}",
                    f.scenario.name,
                    result.failure_message().unwrap_or_default()
                );
                code = EXIT_FAILED;
            }
        }
    }
    code
}

async fn doctor() -> u8 {
    let mut missing = 0;
    let mut line = |ok: bool, what: &str, detail: String| {
        if !ok {
            missing += 1;
        }
        println!("{} {what}: {detail}", if ok { "ok  " } else { "MISS" });
    };
    line(
        cluster::docker_available().is_ok(),
        "docker",
        cluster::docker_available()
            .err()
            .map_or_else(|| "daemon answers".into(), |e| e.to_string()),
    );
    for kind in ProviderKind::ALL {
        if kind == ProviderKind::None {
            continue;
        }
        let p = kind.provider();
        let r = p.check();
        line(
            r.is_ok(),
            &format!("provider {kind}"),
            r.err()
                .map(|e| format!("{e} (needs {})", p.needs()))
                .unwrap_or_else(|| "can run".into()),
        );
    }
    for (built, what) in cluster::lab::images_report() {
        println!("{} lab image {what}", if built { "info" } else { "note" });
    }
    let istioctl = crate::istio::find_istioctl(None);
    line(istioctl.is_some(), "istioctl", istioctl.map(|p| p.display().to_string()).unwrap_or_else(|| "not on PATH; pass --istio-dir with a release, or install it from https://istio.io/latest/docs/setup/getting-started/#download".into()));
    let net = tokio::time::timeout(
        Duration::from_secs(3),
        tokio::net::lookup_host("github.com:443"),
    )
    .await;
    line(
        matches!(net, Ok(Ok(_))),
        "network",
        if matches!(net, Ok(Ok(_))) {
            "github.com resolves".into()
        } else {
            "github.com does not resolve: downloads (kind, Istio releases) cannot work; use the lab provider and --istio-dir".into()
        },
    );
    for (f, want) in [("max_user_watches", 524288u64), ("max_user_instances", 512)] {
        let v: u64 = std::fs::read_to_string(format!("/proc/sys/fs/inotify/{f}"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        line(
            v >= want,
            &format!("fs.inotify.{f}"),
            format!("{v} (kind with Istio gateways wants {want}+: `sysctl fs.inotify.{f}={want}`)"),
        );
    }
    let kc = std::env::var("KUBECONFIG").ok();
    println!(
        "info kubeconfig: {} (used only by provider existing; never written)",
        kc.unwrap_or_else(|| "KUBECONFIG not set".into())
    );
    if missing > 0 { EXIT_ENV } else { 0 }
}

fn clean() -> u8 {
    let mut n = 0;
    for kind in ProviderKind::ALL {
        for leftover in kind.provider().clean_leftovers() {
            println!("{leftover}");
            n += 1;
        }
    }
    println!("{n} leftovers removed");
    0
}

async fn forward(listen: SocketAddr, to: String) -> u8 {
    if !listen.ip().is_loopback() {
        eprintln!(
            "warning: listening on {listen} exposes {to} to every machine that can reach this host"
        );
    }
    let fwd = match crate::forwarder::Forwarder::start(crate::forwarder::ForwarderConfig::new(
        listen,
        to.clone(),
    ))
    .await
    {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: cannot listen on {listen}: {e}");
            return EXIT_ENV;
        }
    };
    eprintln!("forwarding {} -> {to}; Ctrl-C stops", fwd.local_addr());
    let _ = tokio::signal::ctrl_c().await;
    let stats = fwd.stop(Duration::from_secs(5)).await;
    eprintln!(
        "stopped: {} connections ({} failed), {} bytes up, {} bytes down",
        stats.accepted, stats.failed, stats.bytes_to_upstream, stats.bytes_to_client
    );
    0
}

fn compare(
    a: &std::path::Path,
    b: &std::path::Path,
    markdown: Option<&std::path::Path>,
    html: Option<&std::path::Path>,
) -> u8 {
    let (ra, rb) = match (crate::compare::load(a), crate::compare::load(b)) {
        (Ok(x), Ok(y)) => (x, y),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("error: {e}");
            return EXIT_ENV;
        }
    };
    let diffs = crate::compare::compare(&ra, &rb);
    let (na, nb) = (a.display().to_string(), b.display().to_string());
    print!("{}", crate::compare::to_text(&na, &nb, &diffs));
    if let Some(m) = markdown
        && let Err(e) = std::fs::write(m, crate::compare::to_markdown(&na, &nb, &diffs))
    {
        eprintln!("error: cannot write {}: {e}", m.display());
        return EXIT_ENV;
    }
    if let Some(h) = html {
        match crate::report::html::write_compare((&ra, a), (&rb, b), &diffs, h) {
            Ok(()) => eprintln!("report: {}", h.display()),
            Err(e) => {
                eprintln!("error: cannot write {}: {e}", h.display());
                return EXIT_ENV;
            }
        }
    }
    if diffs.is_empty() { 0 } else { EXIT_FAILED }
}

/// `compare --from X --to Y SCENARIO`: runs the scenario on each version (both runs are
/// compared even when one fails: a failure is a difference too).
async fn compare_versions(
    scenario: &std::path::Path,
    from: &str,
    to: &str,
    opts: &RunOptions,
    (markdown, html): (Option<&std::path::Path>, Option<&std::path::Path>),
) -> u8 {
    let file = match scenario::load(scenario) {
        Ok(f) => f,
        Err(d) => {
            eprintln!("{d}");
            return EXIT_FAILED;
        }
    };
    let mut dirs = Vec::new();
    let mut failed = Vec::new();
    for version in [from, to] {
        let o = RunOptions {
            istio_version: Some(version.to_string()),
            ..opts.clone()
        };
        eprintln!("== {} on Istio {version}", file.scenario.name);
        match runner::run_file(&file, &o).await {
            Err(runner::StartError::CannotRun { provider, why }) => {
                eprintln!(
                    "error: provider {provider} cannot run here: {why}. `istio-e2e doctor` lists what is missing."
                );
                return EXIT_ENV;
            }
            Err(e) => {
                eprintln!("{e}");
                return EXIT_FAILED;
            }
            Ok(r) => {
                if r.status == crate::results::Status::Interrupted {
                    return EXIT_INTERRUPTED;
                }
                eprintln!("{}: {:?} ({})", r.scenario, r.status, r.artifacts);
                if let Some(m) = r.failure_message() {
                    failed.push(format!("the run on Istio {version} failed: {m}"));
                }
                dirs.push(PathBuf::from(r.artifacts));
            }
        }
    }
    let code = compare(&dirs[0], &dirs[1], markdown, html);
    // Two runs that failed the same way have "no differences", and that is no answer.
    for f in &failed {
        eprintln!("error: {f}");
    }
    if failed.is_empty() { code } else { EXIT_FAILED }
}

const LAB_CLI_RUN: &str = "cli";

async fn lab(action: LabAction) -> u8 {
    let dir = PathBuf::from("target/lab");
    let kubeconfig = dir.join("kubeconfig");
    let name = format!("istio-e2e-lab-{LAB_CLI_RUN}");
    let running = !cluster::docker_ids(&format!("name=^{name}$")).is_empty();
    match action {
        LabAction::Status => {
            if running {
                println!(
                    "lab node {name} is running; kubeconfig {}",
                    kubeconfig.display()
                );
            } else {
                println!("no lab node running (`istio-e2e lab up` starts one)");
            }
            0
        }
        LabAction::Down => {
            let ids = cluster::docker_ids(&format!("name=^{name}$"));
            if let Some(docker) = cluster::which("docker") {
                for id in &ids {
                    let _ = std::process::Command::new(&docker)
                        .args(["rm", "-f", "-v", id])
                        .output();
                }
            }
            println!(
                "{}",
                if ids.is_empty() {
                    "no lab node was running".to_string()
                } else {
                    format!("removed lab node {name}")
                }
            );
            0
        }
        LabAction::Up { kubernetes } => {
            if running && kubeconfig.exists() {
                println!("{}", kubeconfig.display());
                eprintln!("lab node {name} already runs");
                return 0;
            }
            let mut lab = cluster::lab::Lab::for_version(kubernetes);
            if let Err(e) = lab.check() {
                eprintln!("error: {e}");
                return EXIT_ENV;
            }
            let req = cluster::ClusterRequest {
                run_id: LAB_CLI_RUN.into(),
                artifacts: dir.clone(),
                ..Default::default()
            };
            match lab.create(&req).await {
                Ok(info) => {
                    let _ = lab.teardown(true).await;
                    println!("{}", info.kubeconfig.display());
                    eprintln!(
                        "lab node up at {}; try `kubectl --kubeconfig {} get nodes`; `istio-e2e lab down` removes it",
                        info.node_address.unwrap_or_default(),
                        info.kubeconfig.display()
                    );
                    0
                }
                Err(e) => {
                    let _ = lab.teardown(false).await;
                    eprintln!("error: {}", crate::error::StepError::from(e));
                    EXIT_ENV
                }
            }
        }
    }
}
