//! **STAND-IN** for Kiali as `samples/addons/kiali.yaml` runs it (`/opt/kiali/kiali -config
//! FILE`): health, namespaces and the traffic graph computed from Istio's metrics in
//! Prometheus. What it answers and where it differs: `standins::kiali`.

use std::process::ExitCode;

use standins::bookinfo::shutdown_signal;
use standins::kiali::{Config, run};

#[tokio::main]
async fn main() -> ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match Config::from_args(&args) {
        Ok(config) => run(config, shutdown_signal()).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kiali: {e}");
            ExitCode::FAILURE
        }
    }
}
