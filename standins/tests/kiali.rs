//! The Kiali STAND-IN binary with a tiny fake Prometheus and Kubernetes API (one in-test HTTP
//! server): `/api/v1/query` answers the series the test holds that match the query's metric
//! and label matchers, reduced to its `by (...)` labels, so the graph is only right when the
//! stand-in asks Kiali's queries; `/api/v1/namespaces` lists namespaces. The harness's Kiali
//! probe fails while Prometheus has no traffic and passes once it has Bookinfo's.
//! The config is the release's `kiali` ConfigMap when `ISTIO_E2E_ISTIO_DIR` is set (else one
//! like it), with the port, address and Prometheus URL pointed at the test.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::routing::get;
use harness::probes::kiali::{KialiCheck, check_until};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

type Series = (String, BTreeMap<String, String>, f64);
#[derive(Clone, Default)]
struct Fake {
    series: Arc<Mutex<Vec<Series>>>,
    queries: Arc<Mutex<Vec<String>>>,
}

fn answer(fake: &Fake, query: &str) -> Value {
    fake.queries.lock().unwrap().push(query.to_string());
    let sel = regex::Regex::new(r"(\w+)\{([^}]*)\}").unwrap();
    let matcher = regex::Regex::new(r#"(\w+)(!=|=)"([^"]*)""#).unwrap();
    let by = regex::Regex::new(r"by \(([^)]*)\)").unwrap();
    let c = sel.captures(query).expect("a selector in the query");
    let keep: Vec<&str> = by
        .captures(query)
        .map(|b| b.get(1).unwrap().as_str().split(',').collect())
        .unwrap_or_default();
    let result: Vec<Value> = fake
        .series
        .lock()
        .unwrap()
        .iter()
        .filter(|(name, _, _)| name == &c[1])
        .filter(|(_, labels, _)| {
            matcher.captures_iter(&c[2]).all(|m| {
                let v = labels.get(&m[1]).map(String::as_str).unwrap_or("");
                (v == &m[3]) == (&m[2] == "=")
            })
        })
        .map(|(_, labels, v)| {
            let metric: BTreeMap<&String, &String> = labels
                .iter()
                .filter(|(k, _)| keep.contains(&k.as_str()))
                .collect();
            json!({"metric": metric, "value": [0, v.to_string()]})
        })
        .collect();
    json!({"status": "success", "data": {"resultType": "vector", "result": result}})
}

async fn fake_server(fake: Fake) -> String {
    let app = Router::new()
        .route("/api/v1/query", get(|State(f): State<Fake>, Query(q): Query<BTreeMap<String, String>>| async move {
            axum::Json(answer(&f, q.get("query").map(String::as_str).unwrap_or("")))
        }))
        .route("/api/v1/namespaces", get(|| async {
            axum::Json(json!({"apiVersion": "v1", "kind": "NamespaceList", "metadata": {},
                "items": [{"metadata": {"name": "default"}}, {"metadata": {"name": "istio-system"}}]}))
        }))
        .with_state(fake);
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    format!("http://{addr}")
}

/// Istio's labels for a request `src` (workload `app-ver`, or `unknown`) -> `dst app-ver`.
fn request(
    reporter: &str,
    src_ns: &str,
    src: Option<(&str, &str)>,
    dst: (&str, &str),
    rate: f64,
) -> Series {
    let (sw, sa, sv) = match src {
        Some((a, v)) => (format!("{a}-{v}"), a.to_string(), v.to_string()),
        None => ("unknown".into(), "unknown".into(), "unknown".into()),
    };
    let src_ns = if src.is_some() { src_ns } else { "unknown" };
    let labels = [
        ("reporter", reporter.to_string()),
        ("source_workload_namespace", src_ns.into()),
        ("source_workload", sw),
        ("source_canonical_service", sa),
        ("source_canonical_revision", sv),
        ("destination_service_namespace", "default".into()),
        (
            "destination_service",
            format!("{}.default.svc.cluster.local", dst.0),
        ),
        ("destination_service_name", dst.0.into()),
        ("destination_workload_namespace", "default".into()),
        ("destination_workload", format!("{}-{}", dst.0, dst.1)),
        ("destination_canonical_service", dst.0.into()),
        ("destination_canonical_revision", dst.1.into()),
        ("request_protocol", "http".into()),
        ("response_code", "200".into()),
        ("grpc_response_status", "".into()),
        ("response_flags", "-".into()),
    ];
    (
        "istio_requests_total".into(),
        labels
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        rate,
    )
}

/// The `kiali` ConfigMap's config of each release under `ISTIO_E2E_ISTIO_DIR` (a release
/// directory or a directory of them), else one like the addon's.
fn base_configs() -> Vec<Value> {
    let addons: Vec<PathBuf> = std::env::var_os("ISTIO_E2E_ISTIO_DIR")
        .map(|d| {
            let d = PathBuf::from(d);
            let mut dirs = vec![d.clone()];
            dirs.extend(
                std::fs::read_dir(&d)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|e| e.path()),
            );
            let mut found: Vec<PathBuf> = dirs
                .into_iter()
                .map(|r| r.join("samples/addons/kiali.yaml"))
                .filter(|p| p.is_file())
                .collect();
            found.sort();
            found
        })
        .unwrap_or_default();
    if addons.is_empty() {
        println!(
            "ISTIO_E2E_ISTIO_DIR is not set (or has no samples/addons/kiali.yaml): using a config like \
             the addon's instead of the release's kiali ConfigMap"
        );
        return vec![
            json!({"auth": {"strategy": "anonymous"}, "server": {"port": 20001, "web_root": "/kiali"}}),
        ];
    }
    addons
        .iter()
        .map(|path| {
            let docs: Vec<Value> =
                serde_saphyr::from_str_multiple(&std::fs::read_to_string(path).unwrap()).unwrap();
            let cm = docs
                .iter()
                .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == "kiali")
                .expect("the kiali ConfigMap");
            println!("config: the kiali ConfigMap of {}", path.display());
            serde_saphyr::from_str(cm["data"]["config.yaml"].as_str().unwrap()).unwrap()
        })
        .collect()
}

#[tokio::test]
async fn the_graph_follows_prometheus_and_the_probe_sees_it() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    for config in base_configs() {
        case(config).await;
    }
}

/// One Kiali with `config` (its port, address and Prometheus pointed at the test).
async fn case(mut config: Value) {
    let fake = Fake::default();
    let fake_url = fake_server(fake.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    config["server"]["port"] = json!(0);
    config["server"]["address"] = json!("127.0.0.1");
    // the metrics port on an ephemeral port too (1.x and 2.x spellings)
    config["server"]["metrics_port"] = json!(0);
    if config["server"]["observability"].is_object() {
        config["server"]["observability"]["metrics"]["port"] = json!(0);
    }
    config["external_services"]["prometheus"] = json!({"url": fake_url});
    let cfg = dir.path().join("config.yaml");
    std::fs::write(&cfg, config.to_string()).unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {fake_url}\nusers:\n- name: fake\n  user: {{}}\n\
         contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\ncurrent-context: fake\n")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kiali"))
        .args(["-config", &cfg.display().to_string()])
        .env_clear()
        .env("KUBECONFIG", &kubeconfig)
        .env("ACTIVE_NAMESPACE", "istio-system")
        .env("LOG_LEVEL", "info")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the kiali binary starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let url = format!(
        "http://{}",
        first.rsplit_once(" listening on ").expect("address line").1
    );
    let client = harness::probes::client();
    let health = client
        .get(format!("{url}/kiali/healthz"))
        .send()
        .await
        .unwrap();
    assert!(
        health.status().is_success(),
        "readiness path /kiali/healthz"
    );

    // No traffic in Prometheus: the probe fails the way it says.
    let check = KialiCheck::default();
    let err = check_until(&client, &url, &check, Duration::from_secs(3))
        .await
        .expect_err("no traffic: no graph")
        .to_string();
    assert!(err.contains("no app nodes in namespace default"), "{err}");
    assert!(fake.queries.lock().unwrap().iter().any(|q| q.contains(
        r#"istio_requests_total{reporter="source",source_workload_namespace="default"} [60s]"#
    )));

    // Bookinfo's traffic, but reviews v3 never called, and traffic in another namespace.
    {
        let mut s = fake.series.lock().unwrap();
        s.push(request("destination", "", None, ("productpage", "v1"), 1.0));
        s.push(request(
            "source",
            "default",
            Some(("productpage", "v1")),
            ("details", "v1"),
            1.0,
        ));
        for v in ["v1", "v2"] {
            s.push(request(
                "source",
                "default",
                Some(("productpage", "v1")),
                ("reviews", v),
                0.5,
            ));
        }
        s.push(request(
            "source",
            "default",
            Some(("reviews", "v2")),
            ("ratings", "v1"),
            0.5,
        ));
        let mut other = request(
            "source",
            "other",
            Some(("sleep", "v1")),
            ("httpbin", "v1"),
            1.0,
        );
        for k in [
            "destination_service_namespace",
            "destination_workload_namespace",
        ] {
            other.1.insert(k.into(), "other".into());
        }
        s.push(other);
    }
    let err = check_until(&client, &url, &check, Duration::from_secs(3))
        .await
        .expect_err("reviews v3 has no traffic")
        .to_string();
    assert!(
        err.contains("no node reviews v3") && !err.contains("httpbin"),
        "{err}"
    );

    fake.series.lock().unwrap().push(request(
        "source",
        "default",
        Some(("reviews", "v3")),
        ("ratings", "v1"),
        0.5,
    ));
    fake.series.lock().unwrap().push(request(
        "source",
        "default",
        Some(("productpage", "v1")),
        ("reviews", "v3"),
        0.5,
    ));
    let out = check_until(&client, &url, &check, Duration::from_secs(10))
        .await
        .expect("the graph has Bookinfo's nodes");
    assert_eq!(out["nodes"].as_array().unwrap().len(), 6);
    let graph: Value = client
        .get(format!("{url}/kiali/api/namespaces/graph?namespaces=default&graphType=versionedApp&duration=60s"))
        .send().await.unwrap().json().await.unwrap();
    // unknown -> productpage, productpage -> details, reviews v1..v3, reviews v2, v3 -> ratings
    assert_eq!(
        graph["elements"]["edges"].as_array().unwrap().len(),
        7,
        "{graph}"
    );
    let outside: Vec<&Value> = graph["elements"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["data"]["namespace"] == "other")
        .collect();
    assert!(
        outside.is_empty(),
        "traffic of namespace other is not in default's graph: {outside:?}"
    );
    let err = check_until(
        &client,
        &url,
        &KialiCheck {
            namespace: "nowhere".into(),
            ..Default::default()
        },
        Duration::from_secs(2),
    )
    .await
    .expect_err("an unlisted namespace")
    .to_string();
    assert!(err.contains("\"nowhere\" is not listed"), "{err}");
    child.kill().await.unwrap();
}
