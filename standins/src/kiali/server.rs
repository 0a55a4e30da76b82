//! The HTTP API of the Kiali stand-in.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use k8s_openapi::api::core::v1::Namespace;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use super::graph::{GraphType, TrafficMap, parse_duration, queries};
use super::{Config, Error, prometheus};

struct Ctx {
    config: Config,
    http: reqwest::Client,
    kube: Option<kube::Client>,
    exclude: Vec<regex::Regex>,
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = match self {
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::Prometheus { .. } => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (status, Json(json!({"error": self.to_string()}))).into_response()
    }
}

/// The routes under the config's web root; `kube` lists namespaces (`None`: that call fails).
pub fn router(config: Config, kube: Option<kube::Client>) -> Result<Router, Error> {
    let exclude = config
        .api
        .namespaces
        .exclude
        .iter()
        .map(|p| {
            regex::Regex::new(p)
                .map_err(|e| Error::BadRequest(format!("api.namespaces.exclude {p:?}: {e}")))
        })
        .collect::<Result<_, _>>()?;
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(|e| Error::Prometheus {
            url: config.prometheus_url().into(),
            reason: e.to_string(),
        })?;
    let root = config.web_root();
    let ctx = Arc::new(Ctx {
        config,
        http,
        kube,
        exclude,
    });
    let api = Router::new()
        .route("/healthz", get(|| async { StatusCode::OK }))
        .route("/api", get(status))
        .route("/api/namespaces", get(namespaces))
        .route("/api/namespaces/graph", get(graph))
        .with_state(ctx);
    Ok(if root.is_empty() {
        api
    } else {
        Router::new().nest(&root, api)
    })
}

/// Binds the config's address, prints `kiali listening on ADDR`, and serves until `shutdown`.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let kube = match kube::Client::try_default().await {
        Ok(c) => Some(c),
        Err(e) => {
            eprintln!("kiali: no Kubernetes API ({e}); /api/namespaces will fail");
            None
        }
    };
    let addr = config.listen_addr();
    let metrics_addr = config.metrics_addr();
    let requests = Arc::new(AtomicU64::new(0));
    let counted = requests.clone();
    let app = router(config, kube)?.layer(axum::middleware::from_fn(
        move |req: axum::extract::Request, next: axum::middleware::Next| {
            counted.fetch_add(1, Ordering::Relaxed);
            next.run(req)
        },
    ));
    let serve_err = |source| Error::Serve {
        addr: addr.clone(),
        source,
    };
    let listener = TcpListener::bind(&addr).await.map_err(serve_err)?;
    println!(
        "kiali listening on {}",
        listener.local_addr().map_err(serve_err)?
    );
    if let Some(maddr) = metrics_addr {
        tokio::spawn(serve_metrics(maddr, requests));
    }
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(serve_err)
}

/// The metrics port the addon's pod annotations point Prometheus at: the stand-in's own
/// counter of API requests (Kiali's real metrics are not reproduced). A port that cannot be
/// bound is reported and the API goes on.
async fn serve_metrics(addr: String, requests: Arc<AtomicU64>) {
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let n = requests.load(Ordering::Relaxed);
            async move {
                format!(
                    "# HELP kiali_standin_api_requests_total API requests the Kiali stand-in answered.\n\
                     # TYPE kiali_standin_api_requests_total counter\n\
                     kiali_standin_api_requests_total {n}\n"
                )
            }
        }),
    );
    match TcpListener::bind(&addr).await {
        Ok(l) => {
            if let Err(e) = axum::serve(l, app).await {
                eprintln!("kiali: metrics server on {addr}: {e}");
            }
        }
        Err(e) => eprintln!("kiali: cannot serve metrics on {addr}: {e}"),
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

async fn status(State(ctx): State<Arc<Ctx>>) -> Json<Value> {
    Json(json!({
        "status": {"Kiali state": "running", "Kiali version": concat!(env!("CARGO_PKG_VERSION"), "-standin")},
        "externalServices": [{"name": "Prometheus", "url": ctx.config.prometheus_url()}],
        "warningMessages": [],
    }))
}

async fn list_namespaces(ctx: &Ctx) -> Result<Vec<Namespace>, Error> {
    let client = ctx
        .kube
        .clone()
        .ok_or_else(|| Error::Kube("no client (not in a cluster and no kubeconfig)".into()))?;
    let list = kube::Api::<Namespace>::all(client)
        .list(&Default::default())
        .await
        .map_err(|e| Error::Kube(e.to_string()))?;
    Ok(list
        .items
        .into_iter()
        .filter(|n| {
            let name = n.metadata.name.as_deref().unwrap_or("");
            !ctx.exclude.iter().any(|r| r.is_match(name))
        })
        .collect())
}

async fn namespaces(State(ctx): State<Arc<Ctx>>) -> Result<Json<Value>, Error> {
    let list = list_namespaces(&ctx).await?;
    Ok(Json(Value::Array(
        list.into_iter()
            .map(|n| {
                json!({
                    "name": n.metadata.name,
                    "cluster": "Kubernetes",
                    "isAmbient": false,
                    "labels": n.metadata.labels,
                    "annotations": n.metadata.annotations,
                    "creationTimestamp": n.metadata.creation_timestamp,
                })
            })
            .collect(),
    )))
}

/// `namespaces` (required, comma-separated, each must be listed), `graphType` (default
/// `workload`), `duration` (default `10m`), `queryTime` (unix seconds, default now),
/// `injectServiceNodes` (default false).
async fn graph(
    State(ctx): State<Arc<Ctx>>,
    Query(q): Query<Vec<(String, String)>>,
) -> Result<Json<Value>, Error> {
    let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let wanted: Vec<String> = get("namespaces")
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect();
    if wanted.is_empty() {
        return Err(Error::BadRequest(
            "namespaces: at least one namespace is required".into(),
        ));
    }
    let gt = GraphType::parse(get("graphType")).ok_or_else(|| {
        Error::BadRequest(format!(
            "graphType {:?}: not app, versionedApp, workload or service",
            get("graphType")
        ))
    })?;
    let raw = get("duration").unwrap_or("10m");
    let seconds = parse_duration(raw)
        .ok_or_else(|| Error::BadRequest(format!("duration {raw:?} is not a duration like 60s")))?;
    let time = match get("queryTime") {
        Some(t) => t
            .parse()
            .map_err(|_| Error::BadRequest(format!("queryTime {t:?} is not unix seconds")))?,
        None => now(),
    };
    let inject = get("injectServiceNodes") == Some("true") || gt == GraphType::Service;
    let listed = list_namespaces(&ctx).await?;
    for ns in &wanted {
        if !listed
            .iter()
            .any(|n| n.metadata.name.as_deref() == Some(ns.as_str()))
        {
            return Err(Error::BadRequest(format!(
                "namespace {ns} is not accessible (not listed)"
            )));
        }
    }
    let mut map = TrafficMap::default();
    for ns in &wanted {
        for (tcp, query) in queries(ns, seconds) {
            let samples =
                prometheus::query(&ctx.http, ctx.config.prometheus_url(), &query, time).await?;
            map.populate(&samples, tcp, gt, inject);
        }
    }
    Ok(Json(map.to_json(&wanted, gt, seconds, time)))
}
