//! **STAND-IN** for the applications of Istio's Bookinfo sample: `bookinfo productpage`,
//! `bookinfo details`, `bookinfo reviews v1|v2|v3`, `bookinfo ratings`.
//!
//! The real apps (Python, Ruby, Java/Liberty, Node.js) exist only as images in registries that
//! cannot be reached here, so this one binary is packed under their exact image names (each
//! image's CMD giving the role) and `samples/bookinfo/platform/kube/bookinfo.yaml` applies
//! unchanged. What it reimplements and where it differs: `standins::bookinfo`.

use std::process::ExitCode;

use standins::bookinfo::{Config, Role, run, shutdown_signal};

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let started = match Role::from_args(&args) {
        Ok(role) => Config::from_env(role, |k| std::env::var(k).ok()),
        Err(e) => Err(e),
    };
    let result = match started {
        Ok(config) => run(config, shutdown_signal()).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bookinfo: {e}");
            ExitCode::FAILURE
        }
    }
}
