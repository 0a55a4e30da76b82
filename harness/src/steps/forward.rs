//! `forward`: a TCP forwarder from a host address to a target, replacing the walkthrough's
//! `ncat --sh-exec "ncat NODEIP NODEPORT" -l 8888 --keep-open`. It runs until teardown;
//! `${forward.url}` reaches it.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::Outputs;
use crate::cleanup::Cleanup;
use crate::context::Context;
use crate::error::StepError;
use crate::forwarder::{Forwarder, ForwarderConfig};

/// Spec of a `forward` step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ForwardSpec {
    /// Listen address, `127.0.0.1:0` (a free loopback port) by default. Another address, e.g.
    /// `0.0.0.0:8888`, exposes the target to every machine that reaches this host: say so on
    /// purpose.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// The target `host:port`, e.g. `${ingress.address}`.
    pub to: String,
    /// Variable prefix, `forward` by default.
    #[serde(default = "default_capture")]
    pub capture: String,
}

fn default_listen() -> String {
    "127.0.0.1:0".into()
}
fn default_capture() -> String {
    "forward".into()
}

/// What is wrong with the addresses as written; a `${...}` is checked once the runner has put
/// the run's variables in (it checks every spec its variables changed).
fn problems(s: &ForwardSpec) -> Vec<String> {
    let mut p = Vec::new();
    if !s.listen.contains("${") && s.listen.parse::<SocketAddr>().is_err() {
        p.push(format!(
            "`listen` {:?} is not an address like 127.0.0.1:8888",
            s.listen
        ));
    }
    if !s.to.contains("${") && !s.to.contains(':') {
        p.push(format!("`to` {:?} needs a port, like host:31380", s.to));
    }
    p
}

async fn run(s: &ForwardSpec, ctx: &mut Context) -> Result<Outputs, StepError> {
    let listen: SocketAddr = s.listen.parse().map_err(|_| {
        StepError::fatal(format!(
            "`listen` {:?} is not an address like 127.0.0.1:8888",
            s.listen
        ))
    })?;
    let fwd = Forwarder::start(ForwarderConfig::new(listen, s.to.clone()))
        .await
        .map_err(|e| StepError::fatal(format!("cannot start the forwarder on {listen}: {e}")))?;
    let local = fwd.local_addr();
    ctx.cleanup.push(Cleanup::Forwarder {
        step: format!("forward {}", s.to),
        forwarder: fwd,
    });
    Ok(endpoint_outputs(local))
}

/// `host`, `port`, `address`, `url` of a local endpoint.
pub(crate) fn endpoint_outputs(local: SocketAddr) -> Outputs {
    let mut o = Outputs::new();
    o.insert("host".into(), local.ip().to_string().into());
    o.insert("port".into(), local.port().into());
    o.insert("address".into(), local.to_string().into());
    o.insert("url".into(), format!("http://{local}").into());
    o
}

impl super::Kind for ForwardSpec {
    fn default_timeout(&self) -> std::time::Duration {
        super::secs(10)
    }
    fn summary(&self) -> String {
        format!("{} -> {}", self.listen, self.to)
    }
    fn problems(&self) -> Vec<String> {
        problems(self)
    }
    fn capture(&self) -> Option<&str> {
        Some(&self.capture)
    }
    fn capture_keys(&self) -> &'static [&'static str] {
        super::ENDPOINT_KEYS
    }
    fn needs_cluster(&self) -> bool {
        false
    }
    async fn run(
        &self,
        ctx: &mut Context,
        _deadline: std::time::Instant,
    ) -> Result<Outputs, StepError> {
        run(self, ctx).await
    }
}

crate::scenario::resolve::resolve_fields!(ForwardSpec {
    listen,
    to,
    capture
});
