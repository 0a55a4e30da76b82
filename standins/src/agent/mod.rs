//! STAND-IN for Istio's `pilot-agent` (`pilot/cmd/pilot-agent/main.go` and its `app/cmd.go`),
//! the entrypoint of Istio's proxyv2 image: `pilot-agent istio-iptables ...` sets up the
//! interception in `istio-init` ([`iptables`]), `pilot-agent proxy sidecar|router ...` writes
//! an Envoy bootstrap ([`bootstrap`]), runs the real Envoy with it and serves the agent's
//! status port 15020 ([`proxy`], [`status`]). There is no xDS: the bootstrap is all Envoy gets.

pub mod bootstrap;
pub mod flags;
pub mod gateway;
pub mod iptables;
pub mod proxy;
pub mod request;
pub mod status;
pub mod telemetry;

/// What `pilot-agent` can fail with, by subcommand.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// `istio-iptables` failed.
    #[error(transparent)]
    Iptables(#[from] iptables::IptablesError),
    /// `proxy` failed.
    #[error(transparent)]
    Proxy(#[from] proxy::ProxyError),
    /// `request` failed.
    #[error(transparent)]
    Request(#[from] request::RequestError),
    /// No or an unknown subcommand.
    #[error(
        "pilot-agent STAND-IN: unknown command {0:?}: expected `istio-iptables [flags]`, \
         `proxy sidecar|router [flags]`, `wait` or `request`"
    )]
    UnknownCommand(String),
}

/// Runs the agent for a full argv (`argv[0]` included) and returns the process exit code.
/// Called as `istio-iptables` (a symlink to this binary), `argv[0]` selects the subcommand.
pub fn main(argv: Vec<String>) -> i32 {
    match dispatch(&argv) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

fn dispatch(argv: &[String]) -> Result<i32, AgentError> {
    let program = argv
        .first()
        .map(|a| a.rsplit('/').next().unwrap_or(a))
        .unwrap_or_default();
    if program == "istio-iptables" {
        iptables::run(&argv[1..])?;
        return Ok(0);
    }
    let command = argv.get(1).map(String::as_str).unwrap_or("");
    let rest = argv.get(2..).unwrap_or_default();
    match command {
        "istio-iptables" => {
            iptables::run(rest)?;
            Ok(0)
        }
        "proxy" => Ok(proxy::run(rest)?),
        "wait" => Ok(proxy::wait(rest)?),
        "request" => Ok(request::run(rest)?),
        other => Err(AgentError::UnknownCommand(other.to_string())),
    }
}
