//! **STAND-IN** for Grafana as `samples/addons/grafana.yaml` runs it (Grafana is AGPL and is not
//! used): `/api/health` and the dashboard search, computed from the mounted provisioning files
//! and dashboards. What it answers and where it differs: `standins::grafana`.

use std::process::ExitCode;

use standins::bookinfo::shutdown_signal;
use standins::grafana::{Config, run};

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match Config::from_args_env(&args, |k| std::env::var(k).ok()) {
        Ok(config) => run(config, shutdown_signal()).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("grafana: {e}");
            ExitCode::FAILURE
        }
    }
}
