//! `port-forward`: a local port to a Service port (the walkthrough's `istioctl dashboard X`
//! and `kubectl port-forward`), kept until teardown; `${<capture>.url}` reaches it.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::Outputs;
use crate::cleanup::Cleanup;
use crate::context::Context;
use crate::error::StepError;

/// Spec of a `port-forward` step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PortForwardSpec {
    /// The Service.
    pub service: String,
    /// Its namespace (the scenario's when not given).
    #[serde(default)]
    pub namespace: Option<String>,
    /// The Service port, by name or number.
    pub port: String,
    /// Local listen address, `127.0.0.1:0` by default.
    #[serde(default)]
    pub local: Option<String>,
    /// Variable prefix; the service name by default.
    #[serde(default)]
    pub capture: Option<String>,
}

async fn run(s: &PortForwardSpec, ctx: &mut Context) -> Result<Outputs, StepError> {
    let client = ctx.client().await?;
    let ns = ctx.ns(s.namespace.as_ref());
    let listen: SocketAddr = s
        .local
        .as_deref()
        .unwrap_or("127.0.0.1:0")
        .parse()
        .map_err(|_| {
            StepError::fatal(format!(
                "`local` {:?} is not an address like 127.0.0.1:9090",
                s.local
            ))
        })?;
    let pf = crate::kubeops::portforward::start(client, &ns, &s.service, &s.port, listen).await?;
    let local = pf.local_addr();
    let (pod, port) = pf.target().await;
    ctx.cleanup.push(Cleanup::PortForward {
        step: format!("port-forward svc/{}:{}", s.service, s.port),
        handle: pf,
    });
    let mut o = super::forward::endpoint_outputs(local);
    o.insert("pod".into(), pod.into());
    o.insert("target-port".into(), port.into());
    Ok(o)
}

impl super::Kind for PortForwardSpec {
    fn default_timeout(&self) -> std::time::Duration {
        super::secs(60)
    }
    fn summary(&self) -> String {
        format!("svc/{}:{}", self.service, self.port)
    }
    fn capture(&self) -> Option<&str> {
        Some(self.capture.as_deref().unwrap_or(&self.service))
    }
    fn capture_keys(&self) -> &'static [&'static str] {
        &["host", "port", "address", "url", "pod", "target-port"]
    }
    async fn run(
        &self,
        ctx: &mut Context,
        _deadline: std::time::Instant,
    ) -> Result<Outputs, StepError> {
        run(self, ctx).await
    }
}

crate::scenario::resolve::resolve_fields!(PortForwardSpec {
    service,
    namespace,
    port,
    local,
    capture
});
