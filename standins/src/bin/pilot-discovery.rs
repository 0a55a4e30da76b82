//! **STAND-IN for istiod's `pilot-discovery`**, not Istio: the injection webhook, its CA and the
//! root-cert ConfigMaps (see `standins::istiod`). Istio's pilot image cannot be pulled on the
//! lab; this binary is packed under that image's name by `fixtures/standins/build-images`.
//! Usage as in istiod's Deployment: `pilot-discovery discovery [istiod's flags, ignored]`.

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt().with_target(false).init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("version") {
        println!("stand-in pilot-discovery");
        return std::process::ExitCode::SUCCESS;
    }
    if args.first().map(String::as_str) != Some("discovery") {
        eprintln!(
            "usage: pilot-discovery discovery [flags]  (stand-in istiod; flags are accepted and ignored)"
        );
        return std::process::ExitCode::from(2);
    }
    let settings = match standins::istiod::Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("stand-in istiod: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    rustls::crypto::ring::default_provider()
        .install_default()
        .ok();
    let rt = tokio::runtime::Runtime::new().expect("a tokio runtime");
    match rt.block_on(standins::istiod::run(settings)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stand-in istiod: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
