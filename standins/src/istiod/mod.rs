//! **STAND-IN for istiod** (`pilot-discovery discovery`), not Istio: the parts of istiod the
//! walkthrough's mechanics depend on, so Istio's own manifests and the injection label behave on
//! the lab as on a real cluster:
//! - the sidecar-injection webhook over TLS on 15017 (the `istiod` Service's 443), mutating pods
//!   the way `manifests/charts/istio-control/istio-discovery/files/injection-template.yaml` does
//!   in the fields that matter ([`inject`]);
//! - its own serving certificate and CA, made at start, and the CA bundle written into the
//!   `istio-sidecar-injector` MutatingWebhookConfiguration, as istiod's webhook patcher does
//!   (`pkg/webhooks/webhookpatch.go`) ([`cert`], [`webhook`]);
//! - the `istio-ca-root-cert` ConfigMap in every namespace, which injected pods mount, as
//!   istiod's namespace controller does (`security/pkg/k8s/namespace_controller.go`) ([`rootcert`]);
//! - readiness on 8080 `/ready`;
//! - the gateways' routes, computed from Gateway and VirtualService resources as istiod
//!   computes their RDS ([`routes`], watched by [`networking`]), served over plain HTTP
//!   ([`server::ROUTES_PATH`]) to the stand-in pilot-agent, which writes them for Envoy.
//!
//! - for Gateway API Gateways of class `istio`: their Deployment and Service `<name>-istio`,
//!   their status, and their HTTPRoutes' routes ([`gatewayapi`]).
//!
//! What it does not do (the stand-in proxies are configured statically by the stand-in
//! pilot-agent instead): xDS on 15010/15012, certificates for workloads (no mTLS), config
//! validation.

pub mod cert;
pub mod gatewayapi;
pub mod inject;
pub mod networking;
pub mod rootcert;
pub mod routes;
pub mod server;
pub mod webhook;

use std::sync::Arc;

/// What can stop the stand-in istiod.
#[derive(Debug, thiserror::Error)]
pub enum IstiodError {
    /// The certificates could not be made.
    #[error("cannot make the webhook's certificates: {0}")]
    Cert(#[from] rcgen::Error),
    /// A call to the apiserver failed.
    #[error("{what}: {source}")]
    Kube {
        /// What was being done.
        what: String,
        /// The client's error.
        source: kube::Error,
    },
    /// The namespace watch failed.
    #[error("watching namespaces: {0}")]
    Watch(#[from] kube::runtime::watcher::Error),
    /// Serving failed.
    #[error("cannot serve on {addr}: {source}")]
    Serve {
        /// The address.
        addr: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TLS configuration was refused.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}

impl IstiodError {
    /// A kube error with what was being done.
    pub fn kube(what: impl Into<String>, source: kube::Error) -> Self {
        IstiodError::Kube {
            what: what.into(),
            source,
        }
    }
}

/// The stand-in's settings, from its environment (the Deployment the stand-in istioctl makes).
#[derive(Debug, Clone)]
pub struct Settings {
    /// `POD_NAMESPACE`: where istiod runs (`istio-system`).
    pub namespace: String,
    /// `REVISION` (`default` when unset).
    pub revision: String,
    /// The Istio version this stand-in stands for (`ISTIO_E2E_STANDIN_VERSION`, e.g. `1.30.3`):
    /// the injection differs by version the way the release's template does.
    pub version: inject::IstioVersion,
    /// `hub/proxyv2:tag` of the injected containers (`ISTIO_E2E_STANDIN_PROXY_IMAGE`).
    pub proxy_image: String,
    /// `ENABLE_NATIVE_SIDECARS`: `true`, `false` or `auto` (Istio's default from 1.27).
    pub native_sidecars: inject::NativeSidecars,
}

impl Settings {
    /// Reads the settings from the environment.
    pub fn from_env() -> Result<Self, String> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let version: inject::IstioVersion = var("ISTIO_E2E_STANDIN_VERSION")
            .ok_or("ISTIO_E2E_STANDIN_VERSION is not set")?
            .parse()?;
        let namespace = var("POD_NAMESPACE").unwrap_or_else(|| "istio-system".into());
        Ok(Settings {
            proxy_image: var("ISTIO_E2E_STANDIN_PROXY_IMAGE")
                .unwrap_or_else(|| format!("docker.io/istio/proxyv2:{version}")),
            native_sidecars: inject::NativeSidecars::from_env(
                var("ENABLE_NATIVE_SIDECARS").as_deref(),
                &version,
            )?,
            revision: var("REVISION").unwrap_or_else(|| "default".into()),
            namespace,
            version,
        })
    }

    /// `istiod` or `istiod-<revision>`: the Service name (also in the certificate).
    pub fn service(&self) -> String {
        if self.revision == "default" {
            "istiod".into()
        } else {
            format!("istiod-{}", self.revision)
        }
    }
}

/// Runs the stand-in: makes the certificates, patches the webhook, keeps the root-cert
/// ConfigMaps, and serves until the process is stopped.
pub async fn run(settings: Settings) -> Result<(), IstiodError> {
    let client = kube::Client::try_default()
        .await
        .map_err(|e| IstiodError::kube("connecting to the apiserver", e))?;
    let certs = cert::Certs::new(&settings.service(), &settings.namespace)?;
    let state = Arc::new(server::State::new(settings.clone(), client.clone()));
    let watches = networking::Watches::start(&client).await;
    tokio::spawn(gatewayapi::control(
        client.clone(),
        watches.clone(),
        settings.clone(),
    ));
    state.set_watches(watches);
    let serving = tokio::spawn(server::serve(state.clone(), certs.clone()));
    webhook::patch_ca_bundles(&client, &settings, &certs.ca_pem).await?;
    let roots = tokio::spawn(rootcert::keep(client.clone(), certs.ca_pem.clone()));
    state.set_ready();
    tracing::info!("stand-in istiod {} ready", settings.version);
    tokio::select! {
        r = serving => r.unwrap_or_else(|e| panic!("server task: {e}")),
        r = roots => r.unwrap_or_else(|e| panic!("root-cert task: {e}")),
    }
}
