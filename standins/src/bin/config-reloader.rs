//! **STAND-IN** for the Prometheus addon's config reloader (`jimmidyson/configmap-reload`,
//! `prometheus-operator/prometheus-config-reloader`): see `standins::reloader`.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use standins::reloader::{Args, serve, watch};

#[tokio::main]
async fn main() -> ExitCode {
    let args = match Args::parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("config-reloader: {e}");
            return ExitCode::from(2);
        }
    };
    if !args.ignored.is_empty() {
        eprintln!("config-reloader STAND-IN: ignoring {:?}", args.ignored);
    }
    let reloads = Arc::new(Default::default());
    let period = Duration::from_secs(2);
    tokio::select! {
        _ = watch(&args, period, Arc::clone(&reloads)) => ExitCode::SUCCESS,
        r = serve(&args, reloads) => {
            eprintln!("config-reloader: serving {}: {r:?}", args.listen);
            ExitCode::FAILURE
        }
        _ = standins::bookinfo::shutdown_signal() => ExitCode::SUCCESS,
    }
}
