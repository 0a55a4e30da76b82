//! The HTTP API of the Grafana stand-in.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use axum::extract::{Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use super::provisioning::{Dashboard, Library, load_library};
use super::{Config, Error};

/// The version `/api/health` reports: the stand-in's, not a Grafana release.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "-standin");

/// The routes, serving what `config` points at.
pub fn router(config: Config) -> Router {
    Router::new()
        .route("/api/health", get(health))
        .route("/api/search", get(search))
        .route("/api/dashboards/uid/{uid}", get(dashboard))
        .route("/api/folders", get(folders))
        .with_state(Arc::new(config))
}

/// Creates the data directory, binds, prints `grafana listening on ADDR` and serves until
/// `shutdown` resolves.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    if let Err(e) = std::fs::create_dir_all(&config.data) {
        eprintln!(
            "grafana: cannot create the data directory {} ({e}); /api/health reports the database failing",
            config.data.display()
        );
    }
    match load_library(&config.provisioning) {
        Ok(lib) => {
            println!(
                "grafana: {} dashboards provisioned from {}",
                lib.dashboards.len(),
                config.provisioning.display()
            );
            for s in &lib.skipped {
                eprintln!("grafana: skipped {s}");
            }
        }
        Err(e) => eprintln!("grafana: {e}"),
    }
    let addr = config.listen_addr();
    let serve_err = |source| Error::Serve {
        addr: addr.clone(),
        source,
    };
    let listener = TcpListener::bind(&addr).await.map_err(serve_err)?;
    let bound = listener.local_addr().map_err(serve_err)?;
    println!("grafana listening on {bound}");
    axum::serve(listener, router(config))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(serve_err)
}

async fn health(State(config): State<Arc<Config>>) -> Response {
    let ok = config.data.is_dir();
    let body = json!({
        "commit": "standin",
        "database": if ok { "ok" } else { "failing" },
        "version": VERSION,
    });
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

fn library(config: &Config) -> Result<Library, Box<Response>> {
    load_library(&config.provisioning).map_err(|e| {
        Box::new(
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(json!({"message": e.to_string()})),
            )
                .into_response(),
        )
    })
}

fn slug(title: &str) -> String {
    let mut out = String::new();
    for c in title.trim().to_lowercase().chars() {
        if c.is_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}

fn dashboard_hit(id: usize, d: &Dashboard, folder_ids: &HashMap<String, usize>) -> Value {
    let s = slug(&d.title);
    let mut hit = json!({
        "id": id,
        "uid": d.uid,
        "title": d.title,
        "uri": format!("db/{s}"),
        "url": format!("/d/{}/{s}", d.uid),
        "slug": s,
        "type": "dash-db",
        "tags": d.tags,
        "isStarred": false,
        "sortMeta": 0,
    });
    if !d.folder.is_empty() {
        hit["folderId"] = json!(folder_ids.get(&d.folder_uid).copied().unwrap_or(0));
        hit["folderUid"] = json!(d.folder_uid);
        hit["folderTitle"] = json!(d.folder);
        hit["folderUrl"] = json!(format!(
            "/dashboards/f/{}/{}",
            d.folder_uid,
            slug(&d.folder)
        ));
    }
    hit
}

/// Grafana's search: title contains `query` (case-insensitive), optional `type`
/// (`dash-db`/`dash-folder`), `tag` (all must match), `folderUIDs`, `limit` (default 1000);
/// folders first when both match, each sorted by title.
async fn search(
    State(config): State<Arc<Config>>,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    let lib = match library(&config) {
        Ok(l) => l,
        Err(r) => return *r,
    };
    let one = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let many = |k: &str| -> Vec<&str> {
        params
            .iter()
            .filter(|(n, _)| n == k)
            .flat_map(|(_, v)| v.split(','))
            .filter(|v| !v.is_empty())
            .collect()
    };
    let query = one("query").unwrap_or("").to_lowercase();
    let kind = one("type");
    let tags = many("tag");
    let folder_uids = many("folderUIDs");
    let limit: usize = one("limit").and_then(|l| l.parse().ok()).unwrap_or(1000);
    let matches = |title: &str| title.to_lowercase().contains(&query);
    let folder_ids: HashMap<String, usize> = lib
        .folders
        .iter()
        .enumerate()
        .map(|(i, (uid, _))| (uid.clone(), i + 1))
        .collect();
    let mut hits = Vec::new();
    if kind.is_none_or(|k| k == "dash-folder") && tags.is_empty() && folder_uids.is_empty() {
        let mut folders: Vec<&(String, String)> =
            lib.folders.iter().filter(|(_, t)| matches(t)).collect();
        folders.sort_by_key(|(_, t)| t.to_lowercase());
        for (uid, title) in folders {
            hits.push(json!({
                "id": folder_ids[uid], "uid": uid, "title": title, "uri": format!("db/{}", slug(title)),
                "url": format!("/dashboards/f/{uid}/{}", slug(title)), "slug": slug(title),
                "type": "dash-folder", "tags": [], "isStarred": false, "sortMeta": 0,
            }));
        }
    }
    if kind.is_none_or(|k| k == "dash-db") {
        let base = lib.folders.len() + 1;
        let mut dashboards: Vec<(usize, &Dashboard)> = lib
            .dashboards
            .iter()
            .enumerate()
            .map(|(i, d)| (base + i, d))
            .filter(|(_, d)| matches(&d.title))
            .filter(|(_, d)| tags.iter().all(|t| d.tags.iter().any(|x| x == t)))
            .filter(|(_, d)| folder_uids.is_empty() || folder_uids.contains(&d.folder_uid.as_str()))
            .collect();
        dashboards.sort_by_key(|(_, d)| d.title.to_lowercase());
        hits.extend(
            dashboards
                .iter()
                .map(|(id, d)| dashboard_hit(*id, d, &folder_ids)),
        );
    }
    hits.truncate(limit);
    Json(Value::Array(hits)).into_response()
}

async fn dashboard(State(config): State<Arc<Config>>, UrlPath(uid): UrlPath<String>) -> Response {
    let lib = match library(&config) {
        Ok(l) => l,
        Err(r) => return *r,
    };
    match lib.dashboards.iter().find(|d| d.uid == uid) {
        Some(d) => Json(json!({
            "dashboard": d.json,
            "meta": {
                "type": "db", "slug": slug(&d.title), "url": format!("/d/{}/{}", d.uid, slug(&d.title)),
                "provisioned": true, "provisionedExternalId": d.path.file_name().map(|f| f.to_string_lossy().to_string()),
                "folderUid": d.folder_uid, "folderTitle": if d.folder.is_empty() { "General" } else { &d.folder },
            }
        }))
        .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"message": "Dashboard not found"})),
        )
            .into_response(),
    }
}

async fn folders(State(config): State<Arc<Config>>) -> Response {
    match library(&config) {
        Ok(lib) => Json(
            lib.folders
                .iter()
                .enumerate()
                .map(|(i, (uid, title))| json!({"id": i + 1, "uid": uid, "title": title}))
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(r) => *r,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn slugs_like_grafana() {
        assert_eq!(super::slug("Istio Mesh Dashboard"), "istio-mesh-dashboard");
        assert_eq!(super::slug(" Istio / Control "), "istio-control");
    }
}
