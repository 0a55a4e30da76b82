//! The `e2e` test target: one trial per scenario x matrix entry, named like
//! `bookinfo-demo::kind::k8s-1.33::istio-1.30.3` (see `harness::matrix` for the variables).
//!
//! `cargo test --test e2e -- --list` works with no cluster and no network. A trial whose
//! provider cannot run here (the provider's cheap checks: Docker answers, its binary is on
//! PATH, the lab image exists) is marked ignored when the trials are listed, with the reason
//! printed, so `cargo test` and `cargo nextest` (one process per trial, which cannot see an
//! "ignored" decided at run time) both show it as ignored or skipped, never as passed; with
//! `ISTIO_E2E_REQUIRE=1` it is not ignored and fails. A passing trial compares its results with the
//! snapshots in `snapshots/` (insta).

use std::path::Path;

use harness::matrix::{self, Entry};
use harness::runner::{self, RunOptions};
use libtest_mimic::{Arguments, Completion, Failed, Trial};

fn main() -> std::process::ExitCode {
    harness::install_crypto_provider();
    let mut args = Arguments::from_args();
    // Trials share Docker and a machine's ports: one at a time unless asked otherwise.
    if args.test_threads.is_none() {
        args.test_threads = Some(1);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (entries, notes, errors) = matrix::from_env(&root.join("scenarios"));
    for n in &notes {
        eprintln!("note: {n}");
    }
    // Trials at once in this process: each progress line names its trial.
    let parallel = args.test_threads.is_some_and(|n| n > 1);
    let mut trials: Vec<Trial> = entries.into_iter().map(|e| trial(e, parallel)).collect();
    for d in errors {
        let name = format!("scenario-file::{}", d.path.display());
        trials.push(Trial::test(name, move || Err(Failed::from(d.to_string()))));
    }
    libtest_mimic::run(&args, trials).exit_code()
}

fn trial(entry: Entry, parallel: bool) -> Trial {
    let name = entry.name();
    let cannot_run = options(&entry, parallel)
        .ok()
        .and_then(|opts| matrix::cannot_run_here(&entry, &opts, matrix::required()));
    if let Some(why) = &cannot_run {
        eprintln!("ignored: {name}: {why}");
    }
    Trial::ignorable_test(name, move || run_entry(entry, parallel))
        .with_kind("e2e")
        .with_ignored_flag(cannot_run.is_some())
}

/// The run options of a matrix entry (its provider and versions, and the environment's);
/// `parallel`: its progress lines carry its name.
fn options(entry: &Entry, parallel: bool) -> Result<RunOptions, Failed> {
    Ok(RunOptions {
        label: parallel.then(|| entry.name()),
        provider: Some(entry.provider.clone()),
        istio_version: entry.istio.clone(),
        istio_dir: std::env::var_os("ISTIO_E2E_ISTIO_DIR").map(Into::into),
        kubernetes: entry.kubernetes.clone(),
        keep_cluster: std::env::var("ISTIO_E2E_KEEP_CLUSTER").is_ok_and(|v| v == "1"),
        params: matrix::params_from_env().map_err(Failed::from)?,
        timeout_scale: runner::TimeoutScale::from_env().map_err(|e| Failed::from(e.to_string()))?,
        ..Default::default()
    })
}

fn run_entry(entry: Entry, parallel: bool) -> Result<Completion, Failed> {
    let opts = options(&entry, parallel)?;
    let provider = match runner::prepare(&entry.file, &opts) {
        Ok(p) => p,
        Err(runner::StartError::CannotRun { provider, why }) => {
            let gate = matrix::runnable_here(&format!("provider {provider}"), Err(why))?;
            return Ok(Completion::ignored_with(gate.unwrap_or_default()));
        }
        Err(e) => return Err(Failed::from(e.to_string())),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failed::from(e.to_string()))?;
    let result = rt.block_on(runner::run_with(
        &entry.file,
        &opts,
        provider,
        &runner::StepRunner,
    ));
    drop(rt);
    let whose = opts
        .label
        .as_deref()
        .map(|l| format!("[{l}] "))
        .unwrap_or_default();
    eprintln!("{whose}reports: {}", result.artifacts);
    if let Some(m) = result.failure_message() {
        return Err(Failed::from(m));
    }
    if !result.passed() {
        return Err(Failed::from(format!(
            "{}: {:?}",
            entry.name(),
            result.status
        )));
    }
    let own = harness::snapshot::Own::of(&entry.file.scenario);
    harness::snapshot::assert_run(&result, own);
    Ok(Completion::Completed)
}
