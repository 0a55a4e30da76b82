//! **STAND-IN for istioctl**, not Istio (see `standins::istioctl`): istioctl releases cannot be
//! downloaded here, and a real one could not install anything on an offline node anyway. On the
//! lab provider istio-e2e runs this one whatever the release directory holds.

use std::io::Write;
use std::process::ExitCode;

use standins::istioctl::{self, IstioctlError};

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if let Some(log) = std::env::var_os("ISTIOCTL_LOG")
        && let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
    {
        let _ = writeln!(f, "{}", argv.join(" "));
    }
    rustls::crypto::ring::default_provider()
        .install_default()
        .ok();
    let rt = tokio::runtime::Runtime::new().expect("a tokio runtime");
    match rt.block_on(run(&argv)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(argv: &[String]) -> Result<u8, IstioctlError> {
    let args = istioctl::parse(argv)?;
    match args.command.as_str() {
        "install" | "upgrade" => istioctl::install(&args).await.map(|()| 0),
        "uninstall" => istioctl::uninstall(&args).await.map(|()| 0),
        "version" => istioctl::inspect::version(&args).await.map(|()| 0),
        "proxy-status" | "ps" => istioctl::inspect::proxy_status(&args).await.map(|()| 0),
        "analyze" => istioctl::inspect::analyze(&args).await.map(|c| c as u8),
        other => Err(IstioctlError::Usage(format!(
            "the stand-in istioctl does not know `{other}` (it has install, upgrade, uninstall, version, analyze, proxy-status)"
        ))),
    }
}
