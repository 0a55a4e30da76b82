//! **STAND-IN** entrypoint for Jaeger 1.x's all-in-one image: writes the Jaeger v2
//! configuration its environment asks for and execs the real Jaeger (`standins::jaeger_v1`).

use std::os::unix::process::CommandExt;

fn main() {
    let env = std::env::vars().collect();
    let path = std::env::temp_dir().join("jaeger-all-in-one.yaml");
    if let Err(e) = std::fs::write(&path, standins::jaeger_v1::config(&env)) {
        eprintln!(
            "jaeger-all-in-one STAND-IN: writing {}: {e}",
            path.display()
        );
        std::process::exit(1);
    }
    let jaeger = std::env::var("JAEGER_BIN").unwrap_or_else(|_| "/usr/local/bin/jaeger".into());
    let e = std::process::Command::new(&jaeger)
        .arg("--config")
        .arg(&path)
        .exec();
    eprintln!("jaeger-all-in-one STAND-IN: exec {jaeger}: {e}");
    std::process::exit(1);
}
