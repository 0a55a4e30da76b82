//! The Grafana, Kiali and Jaeger probes against a local server that replays API answers from
//! `fixtures/probes/{grafana,kiali,jaeger}` (their READMEs name the API documentation).

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use harness::probes::http::client;
use harness::probes::{grafana, jaeger, kiali};
use serde_json::json;
use support::{Request, Response, TestServer, closed_port, fixture};

/// A replay server: each path answers with its fixtures in turn (the last one repeats), and
/// every request is recorded.
struct Replay {
    server: TestServer,
    seen: Arc<Mutex<Vec<Request>>>,
}

impl Replay {
    async fn start(routes: &[(&str, &[(u16, &str)])]) -> Replay {
        let routes: HashMap<String, Vec<(u16, String)>> = routes
            .iter()
            .map(|(path, answers)| {
                (
                    path.to_string(),
                    answers.iter().map(|(s, f)| (*s, fixture(f))).collect(),
                )
            })
            .collect();
        let served: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let seen: Arc<Mutex<Vec<Request>>> = Arc::default();
        let seen2 = seen.clone();
        let server = TestServer::start_sync(move |r| {
            seen2.lock().unwrap().push(r.clone());
            let Some(answers) = routes.get(r.path()) else {
                return Response::json(404, r#"{"message":"Not found"}"#);
            };
            let mut served = served.lock().unwrap();
            let n = served.entry(r.path().to_string()).or_default();
            let (status, body) = &answers[(*n).min(answers.len() - 1)];
            *n += 1;
            Response::json(*status, body.clone())
        })
        .await;
        Replay { server, seen }
    }

    fn requests_to(&self, path: &str) -> Vec<Request> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path() == path)
            .cloned()
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Grafana

#[tokio::test]
async fn grafana_passes_when_healthy_with_the_istio_dashboards() {
    let replay = Replay::start(&[
        ("/api/health", &[(200, "grafana/health.json")]),
        ("/api/search", &[(200, "grafana/search-istio.json")]),
    ])
    .await;
    let out = grafana::check_until(
        &client(),
        &replay.server.base_url(),
        &grafana::GrafanaCheck::default(),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert_eq!(
        serde_json::Value::Object(out),
        json!({
            "database": "ok",
            "dashboards": ["Istio Mesh Dashboard", "Istio Service Dashboard", "Istio Workload Dashboard"]
        })
    );
    let search = replay.requests_to("/api/search");
    assert_eq!(search[0].param("query").as_deref(), Some("Istio"));
}

#[tokio::test]
async fn grafana_polls_while_the_database_is_failing() {
    let replay = Replay::start(&[
        (
            "/api/health",
            &[
                (503, "grafana/health-database-failing.json"),
                (200, "grafana/health.json"),
            ],
        ),
        ("/api/search", &[(200, "grafana/search-istio.json")]),
    ])
    .await;
    grafana::check_until(
        &client(),
        &replay.server.base_url(),
        &grafana::GrafanaCheck::default(),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert_eq!(replay.requests_to("/api/health").len(), 2);
}

#[tokio::test]
async fn grafana_names_the_missing_dashboard() {
    let replay = Replay::start(&[
        ("/api/health", &[(200, "grafana/health.json")]),
        (
            "/api/search",
            &[(200, "grafana/search-istio-no-workload.json")],
        ),
    ])
    .await;
    let err = grafana::check_until(
        &client(),
        &replay.server.base_url(),
        &grafana::GrafanaCheck::default(),
        Duration::from_millis(1500),
    )
    .await
    .unwrap_err();
    assert!(!err.fatal);
    assert!(
        err.message
            .contains("dashboards: \"Istio Workload Dashboard\" not found"),
        "{err}"
    );
    assert!(
        err.message.contains("found: Istio Control Plane Dashboard"),
        "{err}"
    );
    assert!(
        err.hint.as_deref().unwrap().contains("grafana.yaml"),
        "{err:?}"
    );
}

#[test]
fn grafana_yaml_shape() {
    let c: grafana::GrafanaCheck =
        serde_saphyr::from_str("dashboards: [Istio Mesh Dashboard]\n").unwrap();
    assert_eq!(c.search, "Istio");
    assert_eq!(c.dashboards, vec!["Istio Mesh Dashboard"]);
    assert!(serde_saphyr::from_str::<grafana::GrafanaCheck>("uid: abc\n").is_err());
}

// ---------------------------------------------------------------------------------------------
// Kiali

#[tokio::test]
async fn kiali_polls_until_the_graph_has_the_bookinfo_nodes() {
    let replay = Replay::start(&[
        ("/kiali/api/namespaces", &[(200, "kiali/namespaces.json")]),
        (
            "/kiali/api/namespaces/graph",
            &[
                (200, "kiali/graph-empty.json"),
                (200, "kiali/graph-empty.json"),
                (200, "kiali/graph-bookinfo.json"),
            ],
        ),
    ])
    .await;
    let out = kiali::check_until(
        &client(),
        &replay.server.base_url(),
        &kiali::KialiCheck::default(),
        Duration::from_secs(20),
    )
    .await
    .unwrap();
    assert_eq!(
        serde_json::Value::Object(out),
        json!({
            "namespace": "default",
            "graph-type": "versionedApp",
            "nodes": ["details", "productpage", "ratings", "reviews v1", "reviews v2", "reviews v3"]
        })
    );
    let graphs = replay.requests_to("/kiali/api/namespaces/graph");
    assert_eq!(graphs.len(), 3, "polled past the empty graphs");
    assert_eq!(
        graphs[0].query(),
        vec![
            ("namespaces".to_string(), "default".to_string()),
            ("graphType".to_string(), "versionedApp".to_string()),
            ("duration".to_string(), "60s".to_string()),
        ]
    );
}

#[tokio::test]
async fn kiali_graph_without_reviews_v3_fails_naming_v3() {
    let replay = Replay::start(&[
        ("/kiali/api/namespaces", &[(200, "kiali/namespaces.json")]),
        (
            "/kiali/api/namespaces/graph",
            &[(200, "kiali/graph-no-reviews-v3.json")],
        ),
    ])
    .await;
    let err = kiali::check_until(
        &client(),
        &replay.server.base_url(),
        &kiali::KialiCheck::default(),
        Duration::from_millis(1500),
    )
    .await
    .unwrap_err();
    assert!(
        err.message.contains(
            "graph: no node reviews v3 in namespace default (seen: details v1, productpage v1, \
             ratings v1, reviews v1, reviews v2)"
        ),
        "{err}"
    );
    assert!(
        err.hint.as_deref().unwrap().contains("send traffic"),
        "{err:?}"
    );
}

#[tokio::test]
async fn kiali_names_an_unlisted_namespace_and_an_empty_graph() {
    let replay = Replay::start(&[
        ("/kiali/api/namespaces", &[(200, "kiali/namespaces.json")]),
        (
            "/kiali/api/namespaces/graph",
            &[(200, "kiali/graph-empty.json")],
        ),
    ])
    .await;
    let c = client();
    let base = replay.server.base_url();
    let other_ns = kiali::KialiCheck {
        namespace: "bookinfo".into(),
        ..Default::default()
    };
    let err = kiali::check_until(&c, &base, &other_ns, Duration::from_millis(1200))
        .await
        .unwrap_err();
    assert!(
        err.message
            .contains("namespaces: \"bookinfo\" is not listed by"),
        "{err}"
    );
    assert!(
        err.message.contains("listed: default, istio-system"),
        "{err}"
    );

    let any_node = kiali::KialiCheck {
        nodes: vec![],
        ..Default::default()
    };
    let err = kiali::check_until(&c, &base, &any_node, Duration::from_millis(1200))
        .await
        .unwrap_err();
    assert!(
        err.message
            .contains("graph: no app nodes in namespace default"),
        "{err}"
    );
}

#[tokio::test]
async fn kiali_on_a_closed_port_hints_at_the_forward() {
    let base = format!("http://127.0.0.1:{}", closed_port());
    let err = kiali::check_until(
        &client(),
        &base,
        &kiali::KialiCheck::default(),
        Duration::from_millis(1200),
    )
    .await
    .unwrap_err();
    assert!(err.message.contains("connect error"), "{err}");
    assert!(err.hint.as_deref().unwrap().contains("port-forward"));
}

#[tokio::test]
async fn kiali_invalid_spec_is_fatal() {
    let bad = kiali::KialiCheck {
        graph_type: "mesh".into(),
        ..Default::default()
    };
    let err = kiali::check_until(
        &client(),
        "http://127.0.0.1:1",
        &bad,
        Duration::from_secs(5),
    )
    .await
    .unwrap_err();
    assert!(err.fatal);
    assert!(err.message.contains("graph-type"), "{err}");
}

#[test]
fn kiali_yaml_shape() {
    let c: kiali::KialiCheck = serde_saphyr::from_str(
        "namespace: bookinfo\nduration: 10m\nnodes: [productpage v1, reviews]\n",
    )
    .unwrap();
    assert_eq!(c.web_root, "/kiali");
    assert_eq!(c.graph_type, "versionedApp");
    assert!(c.problems().is_empty());
    assert!(serde_saphyr::from_str::<kiali::KialiCheck>("namespaces: [a]\n").is_err());
}

// ---------------------------------------------------------------------------------------------
// Jaeger

#[tokio::test]
async fn jaeger_polls_until_productpage_is_traced() {
    let replay = Replay::start(&[
        (
            "/jaeger/api/services",
            &[
                (200, "jaeger/services-empty.json"),
                (200, "jaeger/services.json"),
            ],
        ),
        (
            "/jaeger/api/traces",
            &[(200, "jaeger/traces-productpage.json")],
        ),
    ])
    .await;
    let check = jaeger::JaegerCheck {
        services: vec!["reviews.default".into()],
        ..Default::default()
    };
    let out = jaeger::check_until(
        &client(),
        &replay.server.base_url(),
        &check,
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert_eq!(
        serde_json::Value::Object(out),
        json!({
            "service": "productpage.default",
            "services": ["productpage.default", "reviews.default"],
            "traces-at-least": 1
        })
    );
    assert_eq!(replay.requests_to("/jaeger/api/services").len(), 2);
    let traces = replay.requests_to("/jaeger/api/traces");
    assert_eq!(
        traces[0].param("service").as_deref(),
        Some("productpage.default")
    );
    assert_eq!(traces[0].param("limit").as_deref(), Some("20"));
}

#[tokio::test]
async fn jaeger_without_traces_fails_with_the_tracing_hint() {
    let replay = Replay::start(&[
        ("/jaeger/api/services", &[(200, "jaeger/services.json")]),
        ("/jaeger/api/traces", &[(200, "jaeger/traces-empty.json")]),
    ])
    .await;
    let err = jaeger::check_until(
        &client(),
        &replay.server.base_url(),
        &jaeger::JaegerCheck::default(),
        Duration::from_millis(1500),
    )
    .await
    .unwrap_err();
    assert!(
        err.message
            .contains("traces: expected at least 1 traces with productpage.default"),
        "{err}"
    );
    assert!(
        err.message.contains("from http") && err.message.contains("got 0"),
        "{err}"
    );
    assert!(
        err.hint.as_deref().unwrap().contains("Istio 1.22"),
        "{err:?}"
    );
}

#[tokio::test]
async fn jaeger_counts_traces_and_names_unlisted_services() {
    let replay = Replay::start(&[
        ("/jaeger/api/services", &[(200, "jaeger/services.json")]),
        (
            "/jaeger/api/traces",
            &[(200, "jaeger/traces-productpage.json")],
        ),
    ])
    .await;
    let c = client();
    let base = replay.server.base_url();
    let three = jaeger::JaegerCheck {
        min_traces: 3,
        ..Default::default()
    };
    let err = jaeger::check_until(&c, &base, &three, Duration::from_millis(1200))
        .await
        .unwrap_err();
    assert!(err.message.contains("got 2"), "{err}");

    let other = jaeger::JaegerCheck {
        services: vec!["httpbin.default".into()],
        ..Default::default()
    };
    let err = jaeger::check_until(&c, &base, &other, Duration::from_millis(1200))
        .await
        .unwrap_err();
    assert!(
        err.message
            .contains("services: httpbin.default not listed by"),
        "{err}"
    );
    assert!(
        err.message.contains("productpage.default, ratings.default"),
        "{err}"
    );
}

#[test]
fn jaeger_yaml_shape() {
    let c: jaeger::JaegerCheck =
        serde_saphyr::from_str("service: reviews.default\nmin-traces: 5\n").unwrap();
    assert_eq!((c.base_path.as_str(), c.limit), ("/jaeger", 20));
    assert!(c.problems().is_empty());
    assert!(serde_saphyr::from_str::<jaeger::JaegerCheck>("lookback: 1h\n").is_err());
}
