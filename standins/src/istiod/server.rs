//! The stand-in istiod's listeners: the injection webhook over TLS on 15017 (`/inject`, the
//! path Istio's webhook configuration calls), readiness on 8080 (`/ready`, the probe of
//! istiod's Deployment), and 15014 (`/metrics`, its monitoring port) answering a stand-in line.
//! The plain-HTTP ports also serve a gateway's routes in place of xDS (see [`ROUTES_PATH`]);
//! the gateways reach them through the `istiod` Service's 15014 (`http-monitoring`, where real
//! istiod serves its `/debug` endpoints), so the Service keeps Istio's ports.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use kube::api::{Api, ListParams};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use super::cert::Certs;
use super::inject::{self, Injection, NativeSidecars};
use super::networking::Watches;
use super::routes::{self, Proxy};
use super::{IstiodError, Settings};

/// Where a gateway asks for its routes: `GET /standin/gateway-routes?namespace=NS&pod=POD`
/// (the gateway pod; its labels are read from the apiserver) or `...&labels=k=v,k=v` instead
/// of `pod`; `&port=P` is the listener's port (8080 when absent). Answers the JSON list of
/// routes the stand-in pilot-agent reads (`crate::agent::gateway`), or 503 until the watches
/// have listed everything.
pub const ROUTES_PATH: &str = "/standin/gateway-routes";

/// What the handlers share.
pub struct State {
    settings: Settings,
    client: kube::Client,
    ready: AtomicBool,
    watches: OnceLock<Watches>,
    /// The last notes logged per gateway, so each change is logged once.
    notes: Mutex<HashMap<String, Vec<String>>>,
}

impl State {
    /// Not ready until [`State::set_ready`].
    pub fn new(settings: Settings, client: kube::Client) -> Self {
        State {
            settings,
            client,
            ready: AtomicBool::new(false),
            watches: OnceLock::new(),
            notes: Mutex::new(HashMap::new()),
        }
    }
    /// The webhook's CA is in place: `/ready` answers 200.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::SeqCst);
    }
    /// The stores gateway routes are computed from (set once).
    pub fn set_watches(&self, watches: Watches) {
        let _ = self.watches.set(watches);
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
        ROUTES_PATH => gateway_routes(req.uri().query().unwrap_or(""), &state).await,
        p if p.starts_with("/inject") => match req.into_body().collect().await {
            Ok(b) => admit(&b.to_bytes(), &state).await,
            Err(e) => reply(StatusCode::BAD_REQUEST, format!("reading the request: {e}")),
        },
        _ => reply(StatusCode::NOT_FOUND, "not found"),
    })
}

/// Which gateway asks, from the query string.
#[derive(Debug, PartialEq, Eq)]
struct RoutesQuery {
    namespace: String,
    who: Who,
    port: u32,
}

#[derive(Debug, PartialEq, Eq)]
enum Who {
    Pod(String),
    Labels(BTreeMap<String, String>),
}

impl std::fmt::Display for Who {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Who::Pod(name) => write!(f, "pod {name}"),
            Who::Labels(labels) => write!(f, "labels {labels:?}"),
        }
    }
}

fn parse_routes_query(query: &str) -> Result<RoutesQuery, String> {
    let params: HashMap<&str, &str> = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .collect();
    let namespace = params.get("namespace").ok_or("namespace= is missing")?;
    let who = match (params.get("pod"), params.get("labels")) {
        (Some(pod), _) => Who::Pod(pod.to_string()),
        (None, Some(labels)) => Who::Labels(
            labels
                .split(',')
                .filter(|l| !l.is_empty())
                .map(|l| {
                    l.split_once('=')
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                })
                .collect::<Option<_>>()
                .ok_or(format!("labels={labels} is not k=v,k=v"))?,
        ),
        (None, None) => return Err("pod= or labels= is missing".into()),
    };
    let port = match params.get("port") {
        Some(p) => p.parse().map_err(|_| format!("port={p} is not a port"))?,
        None => 8080,
    };
    Ok(RoutesQuery {
        namespace: namespace.to_string(),
        who,
        port,
    })
}

/// Answers a gateway's routes ([`ROUTES_PATH`]).
async fn gateway_routes(query: &str, state: &State) -> Response<Body> {
    let q = match parse_routes_query(query) {
        Ok(q) => q,
        Err(e) => return reply(StatusCode::BAD_REQUEST, format!("{ROUTES_PATH}: {e}\n")),
    };
    let Some(watches) = state.watches.get().filter(|w| w.known()) else {
        return reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "Gateways, VirtualServices and Services not listed yet\n",
        );
    };
    let labels = match &q.who {
        Who::Labels(l) => l.clone(),
        Who::Pod(name) => {
            let pods: Api<Pod> = Api::namespaced(state.client.clone(), &q.namespace);
            match pods.get_opt(name).await {
                Ok(Some(p)) => p.metadata.labels.unwrap_or_default().into_iter().collect(),
                Ok(None) => {
                    return reply(
                        StatusCode::NOT_FOUND,
                        format!("no pod {}/{name}\n", q.namespace),
                    );
                }
                Err(e) => {
                    return reply(
                        StatusCode::BAD_GATEWAY,
                        format!("reading pod {}/{name}: {e}\n", q.namespace),
                    );
                }
            }
        }
    };
    let proxy = Proxy {
        namespace: q.namespace.clone(),
        labels,
    };
    let computed = routes::gateway_routes(&proxy, q.port, &watches.snapshot());
    log_notes(
        state,
        &format!("{}/{:?}", q.namespace, q.who),
        &computed.notes,
    );
    let body = serde_json::to_vec(&computed.routes).expect("routes serialize");
    let mut r = reply(StatusCode::OK, body);
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

fn log_notes(state: &State, gateway: &str, notes: &[String]) {
    let mut last = state.notes.lock().unwrap_or_else(|e| e.into_inner());
    if last.get(gateway).map(Vec::as_slice) != Some(notes) {
        for n in notes {
            tracing::warn!("gateway {gateway}: {n}");
        }
        last.insert(gateway.to_string(), notes.to_vec());
    }
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

/// `meshConfig.defaultConfig` (every proxy's `PROXY_CONFIG`), from [`mesh_config`].
pub(crate) async fn proxy_config(
    client: &kube::Client,
    s: &Settings,
) -> Result<Value, IstiodError> {
    Ok(mesh_config(client, s).await?["defaultConfig"].take())
}

/// The mesh config, the `istio` ConfigMap's `mesh` key (its `defaultConfig` is what istiod
/// merges into every proxy's `PROXY_CONFIG`); `{"defaultConfig": {}}` when there is none.
pub(crate) async fn mesh_config(client: &kube::Client, s: &Settings) -> Result<Value, IstiodError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::gateway::{self, PathMatch};
    use kube::api::DynamicObject;

    fn object(kind: &str, spec: Value) -> DynamicObject {
        serde_json::from_value(json!({"apiVersion": "networking.istio.io/v1", "kind": kind,
            "metadata": {"name": "bookinfo", "namespace": "default"}, "spec": spec}))
        .unwrap()
    }

    #[test]
    fn the_routes_query_names_the_gateway_by_pod_or_labels() {
        let q = parse_routes_query("namespace=istio-system&pod=gw-1&port=8080").unwrap();
        assert_eq!(q.who, Who::Pod("gw-1".into()));
        let q = parse_routes_query("labels=istio=ingressgateway,app=x&namespace=n").unwrap();
        assert_eq!((q.port, q.namespace.as_str()), (8080, "n"));
        assert_eq!(
            q.who,
            Who::Labels(BTreeMap::from([
                ("istio".into(), "ingressgateway".into()),
                ("app".into(), "x".into())
            ]))
        );
        assert!(parse_routes_query("pod=x").is_err());
        assert!(parse_routes_query("namespace=n").is_err());
        assert!(parse_routes_query("namespace=n&pod=x&port=http").is_err());
    }

    #[tokio::test]
    async fn a_gateway_reads_its_routes_over_http_once_the_objects_are_listed() {
        rustls::crypto::ring::default_provider()
            .install_default()
            .ok();
        // No apiserver: the labels form of the query does not call it; the pod form fails.
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        let client = kube::Client::try_from(config).unwrap();
        let settings = Settings {
            namespace: "istio-system".into(),
            revision: "default".into(),
            version: "1.30.3".parse().unwrap(),
            proxy_image: "proxyv2".into(),
            native_sidecars: NativeSidecars::Off,
        };
        let state = Arc::new(State::new(settings, client));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(accept_loop(listener, None, state.clone()));
        let url = format!(
            "http://{addr}{ROUTES_PATH}?namespace=istio-system&labels=istio=ingressgateway&port=8080"
        );
        let early = gateway::fetch(&url).await.unwrap_err().to_string();
        assert!(early.contains("503"), "not listed yet: {early}");

        let gw = object(
            "Gateway",
            json!({"selector": {"istio": "ingressgateway"},
            "servers": [{"port": {"number": 8080, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}]}),
        );
        let vs = object(
            "VirtualService",
            json!({"hosts": ["*"], "gateways": ["bookinfo"],
            "http": [{"match": [{"uri": {"exact": "/productpage"}}],
                      "route": [{"destination": {"host": "productpage", "port": {"number": 9080}}}]}]}),
        );
        state.set_watches(Watches::fixed(vec![gw], vec![vs], vec![]));
        let routes = gateway::fetch(&url).await.unwrap();
        assert_eq!(routes.len(), 1);
        assert_eq!(routes[0].path, PathMatch::Exact("/productpage".into()));
        assert_eq!(
            routes[0].cluster(),
            "outbound|9080||productpage.default.svc.cluster.local"
        );
        let other = url.replace("ingressgateway", "egressgateway");
        assert!(gateway::fetch(&other).await.unwrap().is_empty());
        let by_pod = format!("http://{addr}{ROUTES_PATH}?namespace=istio-system&pod=gw-1");
        let failed = gateway::fetch(&by_pod).await.unwrap_err().to_string();
        assert!(
            failed.contains("502"),
            "the apiserver is unreachable: {failed}"
        );
        let bad = format!("http://{addr}{ROUTES_PATH}?pod=gw-1");
        assert!(
            gateway::fetch(&bad)
                .await
                .unwrap_err()
                .to_string()
                .contains("400")
        );
    }
}
