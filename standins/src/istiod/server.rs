//! The stand-in istiod's listeners: the injection webhook over TLS on 15017 (`/inject`, the
//! path Istio's webhook configuration calls), readiness on 8080 (`/ready`, the probe of
//! istiod's Deployment), and 15014 (`/metrics`, its monitoring port) answering a stand-in line.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{ConfigMap, Node};
use kube::api::{Api, ListParams};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use super::cert::Certs;
use super::inject::{self, Injection, NativeSidecars};
use super::{IstiodError, Settings};

/// What the handlers share.
pub struct State {
    settings: Settings,
    client: kube::Client,
    ready: AtomicBool,
}

impl State {
    /// Not ready until [`State::set_ready`].
    pub fn new(settings: Settings, client: kube::Client) -> Self {
        State {
            settings,
            client,
            ready: AtomicBool::new(false),
        }
    }
    /// The webhook's CA is in place: `/ready` answers 200.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::SeqCst);
    }
}

type Body = Full<Bytes>;

fn reply(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r
}

/// An empty Prometheus exposition: Prometheus 3 drops a scrape without a Content-Type, and
/// the Prometheus addon scrapes istiod (its `prometheus.io/scrape` annotation).
fn metrics() -> Response<Body> {
    let mut r = reply(StatusCode::OK, "# stand-in istiod: no metrics\n");
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

/// Serves the three listeners until one fails.
pub async fn serve(state: Arc<State>, certs: Certs) -> Result<(), IstiodError> {
    let tls = tls_acceptor(&certs)?;
    let webhook = listen("0.0.0.0:15017").await?;
    let ready = listen("0.0.0.0:8080").await?;
    let monitoring = listen("0.0.0.0:15014").await?;
    tokio::try_join!(
        accept_loop(webhook, Some(tls), state.clone()),
        accept_loop(ready, None, state.clone()),
        accept_loop(monitoring, None, state),
    )?;
    Ok(())
}

async fn listen(addr: &str) -> Result<TcpListener, IstiodError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| IstiodError::Serve {
            addr: addr.into(),
            source,
        })
}

fn tls_acceptor(certs: &Certs) -> Result<tokio_rustls::TlsAcceptor, IstiodError> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
    let chain = CertificateDer::pem_slice_iter(certs.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| rustls::Error::General(format!("serving certificate: {e}")))?;
    let key = PrivateKeyDer::from_pem_slice(certs.key_pem.as_bytes())
        .map_err(|e| rustls::Error::General(format!("serving key: {e}")))?;
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    state: Arc<State>,
) -> Result<(), IstiodError> {
    loop {
        let (tcp, _) = listener
            .accept()
            .await
            .map_err(|source| IstiodError::Serve {
                addr: format!("{:?}", listener.local_addr()),
                source,
            })?;
        let (tls, state) = (tls.clone(), state.clone());
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| handle(req, state.clone()));
            let http = hyper::server::conn::http1::Builder::new();
            let done = match tls {
                Some(t) => match t.accept(tcp).await {
                    Ok(s) => http.serve_connection(TokioIo::new(s), svc).await,
                    Err(e) => return tracing::debug!("TLS handshake: {e}"),
                },
                None => http.serve_connection(TokioIo::new(tcp), svc).await,
            };
            if let Err(e) = done {
                tracing::debug!("connection: {e}");
            }
        });
    }
}

async fn handle(req: Request<Incoming>, state: Arc<State>) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_string();
    Ok(match path.as_str() {
        "/ready" if state.ready.load(Ordering::SeqCst) => reply(StatusCode::OK, ""),
        "/ready" => reply(StatusCode::SERVICE_UNAVAILABLE, "not ready"),
        "/metrics" => metrics(),
        p if p.starts_with("/inject") => match req.into_body().collect().await {
            Ok(b) => admit(&b.to_bytes(), &state).await,
            Err(e) => reply(StatusCode::BAD_REQUEST, format!("reading the request: {e}")),
        },
        _ => reply(StatusCode::NOT_FOUND, "not found"),
    })
}

/// Answers one AdmissionReview (v1 or v1beta1, in the version asked).
async fn admit(body: &[u8], state: &State) -> Response<Body> {
    let review: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return reply(
                StatusCode::BAD_REQUEST,
                format!("not an AdmissionReview: {e}"),
            );
        }
    };
    let request = &review["request"];
    let namespace = request["namespace"].as_str().unwrap_or("default");
    let mut response = json!({"uid": request["uid"], "allowed": true});
    match injection(state).await {
        Ok(inj) => match inject::inject(&request["object"], namespace, &inj) {
            Ok(mutated) => {
                let patch = json_patch::diff(&request["object"], &mutated);
                let bytes = serde_json::to_vec(&patch).expect("a patch serializes");
                response["patchType"] = json!("JSONPatch");
                response["patch"] =
                    serde_json::to_value(k8s_openapi::ByteString(bytes)).expect("bytes serialize");
                tracing::info!(
                    "injected a pod of {}/{}",
                    namespace,
                    inject::workload_name(&request["object"])
                );
            }
            Err(skip) => tracing::info!("not injected ({skip:?}): a pod in {namespace}"),
        },
        // Like istiod, never block a pod because of our own failure (the webhook's
        // failurePolicy decides); say why.
        Err(e) => tracing::warn!("cannot inject: {e}"),
    }
    let out = json!({"apiVersion": review["apiVersion"], "kind": "AdmissionReview", "response": response});
    reply(StatusCode::OK, out.to_string())
}

async fn injection(state: &State) -> Result<Injection, IstiodError> {
    let s = &state.settings;
    let native = match s.native_sidecars {
        NativeSidecars::On => true,
        NativeSidecars::Off => false,
        NativeSidecars::Auto => every_kubelet_at_least(&state.client, 1, 33).await?,
    };
    let mesh = mesh_config(&state.client, s).await?;
    Ok(Injection {
        version: s.version,
        proxy_image: s.proxy_image.clone(),
        native,
        revision: s.revision.clone(),
        proxy_config: mesh["defaultConfig"].clone(),
        otlp_tracing: inject::otlp_tracing(&mesh),
    })
}

/// Istio's `auto` rule for native sidecars: every node's kubelet at least `major.minor`.
async fn every_kubelet_at_least(
    client: &kube::Client,
    major: u32,
    minor: u32,
) -> Result<bool, IstiodError> {
    let nodes: Api<Node> = Api::all(client.clone());
    let list = nodes
        .list(&ListParams::default())
        .await
        .map_err(|e| IstiodError::kube("listing nodes", e))?;
    Ok(!list.items.is_empty()
        && list.items.iter().all(|n| {
            let v = n
                .status
                .as_ref()
                .and_then(|s| s.node_info.as_ref())
                .map(|i| i.kubelet_version.as_str());
            v.and_then(|v| v.parse::<inject::IstioVersion>().ok())
                .is_some_and(|v| v.at_least(major, minor))
        }))
}

/// The mesh config, the `istio` ConfigMap's `mesh` key (its `defaultConfig` is what istiod
/// merges into every proxy's `PROXY_CONFIG`); `{"defaultConfig": {}}` when there is none.
async fn mesh_config(client: &kube::Client, s: &Settings) -> Result<Value, IstiodError> {
    let name = if s.revision == "default" {
        "istio".to_string()
    } else {
        format!("istio-{}", s.revision)
    };
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &s.namespace);
    let cm = api
        .get_opt(&name)
        .await
        .map_err(|e| IstiodError::kube(format!("reading ConfigMap {name}"), e))?;
    let mesh = cm
        .and_then(|c| c.data)
        .and_then(|d| d.get("mesh").cloned())
        .unwrap_or_default();
    let mut parsed: Value = serde_saphyr::from_str(&mesh).unwrap_or_else(|_| json!({}));
    if !parsed.is_object() {
        parsed = json!({});
    }
    if !parsed["defaultConfig"].is_object() {
        parsed["defaultConfig"] = json!({});
    }
    Ok(parsed)
}
