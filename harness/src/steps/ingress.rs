//! `ingress`: the ingress gateway's `http2` nodePort and the node address (the walkthrough's
//! `kubectl get svc istio-ingressgateway -o jsonpath=...nodePort` and `minikube ip`),
//! captured as `${ingress.host}`, `${ingress.port}`, `${ingress.address}`, `${ingress.url}`.

use serde::{Deserialize, Serialize};

use crate::Outputs;
use crate::context::Context;
use crate::error::StepError;

/// Spec of an `ingress` step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct IngressSpec {
    /// The Service, `istio-ingressgateway` by default.
    #[serde(default = "default_service")]
    pub service: String,
    /// Its namespace, `istio-system` by default.
    #[serde(default = "default_ns")]
    pub namespace: String,
    /// The port's name, `http2` by default.
    #[serde(default = "default_port")]
    pub port: String,
    /// Variable prefix, `ingress` by default.
    #[serde(default = "default_capture")]
    pub capture: String,
}

fn default_service() -> String {
    "istio-ingressgateway".into()
}
fn default_ns() -> String {
    "istio-system".into()
}
fn default_port() -> String {
    "http2".into()
}
fn default_capture() -> String {
    "ingress".into()
}

async fn run(s: &IngressSpec, ctx: &mut Context) -> Result<Outputs, StepError> {
    let client = ctx.client().await?;
    let node = ctx.cluster.as_ref().and_then(|c| c.node_address.clone());
    let a =
        crate::kubeops::ingress::find(&client, &s.namespace, &s.service, &s.port, node.as_deref())
            .await?;
    let mut o = Outputs::new();
    o.insert("host".into(), a.host.clone().into());
    o.insert("port".into(), a.node_port.into());
    o.insert(
        "address".into(),
        format!("{}:{}", a.host, a.node_port).into(),
    );
    o.insert(
        "url".into(),
        format!("http://{}:{}", a.host, a.node_port).into(),
    );
    o.insert("load-balancer".into(), a.load_balancer.join(",").into());
    Ok(o)
}

impl super::Kind for IngressSpec {
    fn default_timeout(&self) -> std::time::Duration {
        super::secs(60)
    }
    fn summary(&self) -> String {
        format!("{}/{}", self.service, self.port)
    }
    fn capture(&self) -> Option<&str> {
        Some(&self.capture)
    }
    fn capture_keys(&self) -> &'static [&'static str] {
        &["host", "port", "address", "url", "load-balancer"]
    }
    async fn run(
        &self,
        ctx: &mut Context,
        _deadline: std::time::Instant,
    ) -> Result<Outputs, StepError> {
        run(self, ctx).await
    }
}

crate::scenario::resolve::resolve_fields!(IngressSpec {
    service,
    namespace,
    port,
    capture
});
