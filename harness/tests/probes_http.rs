//! The HTTP and traffic probes against a local server that serves real Bookinfo pages.

mod support;

use harness::scenario::Templated;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use harness::expect::Expect;
use harness::probes::bookinfo::ReviewsSplit;
use harness::probes::http::{HttpCheck, check_until, client};
use harness::probes::traffic::{Threshold, TrafficSpec, send};
use support::{Response, TestServer, closed_port, fixture};

fn page(name: &str) -> String {
    fixture(&format!("bookinfo/{name}.html"))
}

#[tokio::test]
async fn check_passes_on_the_product_page_and_sends_host_and_headers() {
    let html = page("tailwind-v2");
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    let server = TestServer::start_sync(move |r| {
        seen2.lock().unwrap().push((
            r.method.clone(),
            r.header("host").unwrap_or("").to_string(),
            r.header("end-user").unwrap_or("").to_string(),
        ));
        Response::html(200, html.clone())
    })
    .await;
    let check = HttpCheck {
        url: server.url("/productpage"),
        method: Some("get".into()),
        headers: [("end-user".to_string(), "jason".to_string())].into(),
        host: Some("bookinfo.example".into()),
        expect: Expect {
            status: Some(Templated::Literal(200)),
            title: Some("Simple Bookstore App".into()),
            selector: Some("h1".parse().unwrap()),
            text: Some("Comedy of Errors".into()),
            ..Default::default()
        },
    };
    let out = check_until(&client(), &check, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(out.status, 200);
    assert_eq!(out.title.as_deref(), Some("Simple Bookstore App"));
    assert_eq!(out.attempts, 1);
    assert!(out.body.contains("Comedy of Errors"), "{}", out.body);
    assert_eq!(
        serde_json::Value::Object(out.to_outputs()),
        serde_json::json!({"status": 200, "title": "Simple Bookstore App", "attempts": 1})
    );
    assert_eq!(
        seen.lock().unwrap().as_slice(),
        [(
            "GET".to_string(),
            "bookinfo.example".to_string(),
            "jason".to_string()
        )]
    );
}

#[tokio::test]
async fn check_retries_5xx_and_failed_expectations_until_they_pass() {
    // 503 (no healthy upstream), then a 200 that is not yet the product page, then the page.
    let html = page("bootstrap-v1");
    let n = Arc::new(AtomicU64::new(0));
    let n2 = n.clone();
    let server = TestServer::start_sync(move |_| match n2.fetch_add(1, Ordering::SeqCst) {
        0 => Response::text(503, "no healthy upstream"),
        1 => Response::html(200, "<html><head><title>Loading</title></head></html>"),
        _ => Response::html(200, html.clone()),
    })
    .await;
    let mut check = HttpCheck::get(server.url("/productpage"));
    check.expect.title = Some("Simple Bookstore App".into());
    let out = check_until(&client(), &check, Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(out.attempts, 3);
    assert_eq!(server.hits(), 3);
}

#[tokio::test]
async fn check_reports_url_attempts_status_and_every_mismatch_at_the_deadline() {
    let server = TestServer::start_sync(|_| Response::text(503, "no healthy upstream")).await;
    let check = HttpCheck {
        url: server.url("/productpage"),
        expect: Expect {
            status: Some(Templated::Literal(200)),
            title: Some("Simple Bookstore App".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let err = check_until(&client(), &check, Duration::from_millis(1500))
        .await
        .unwrap_err();
    let attempts = server.hits();
    assert!(attempts >= 3, "retried: {attempts}");
    assert!(!err.fatal);
    let msg = &err.message;
    assert!(msg.starts_with(&format!("GET {}", check.url)), "{msg}");
    assert!(msg.contains(&format!("({attempts} attempts)")), "{msg}");
    assert!(msg.contains("last status 503"), "{msg}");
    assert!(msg.contains("status: expected 200, got 503"), "{msg}");
    assert!(
        msg.contains("title: expected \"Simple Bookstore App\""),
        "{msg}"
    );
    assert!(err.hint.is_some());
}

#[tokio::test]
async fn a_5xx_passes_when_the_check_expects_it() {
    let server = TestServer::start_sync(|_| Response::text(503, "fault injected")).await;
    let mut check = HttpCheck::get(server.url("/"));
    check.expect.status = Some(Templated::Literal(503));
    let out = check_until(&client(), &check, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!((out.status, out.attempts), (503, 1));
}

#[tokio::test]
async fn check_names_connection_errors_and_hints_at_the_forward() {
    let check = HttpCheck::get(format!("http://127.0.0.1:{}/productpage", closed_port()));
    let err = check_until(&client(), &check, Duration::from_millis(800))
        .await
        .unwrap_err();
    assert!(err.message.contains("last error: connect error"), "{err}");
    assert!(
        err.hint.as_deref().unwrap().contains("port-forward"),
        "{err}"
    );
}

#[test]
fn http_check_yaml_shape() {
    let yaml = "
url: http://127.0.0.1:8080/productpage
method: GET
host: bookinfo.example
headers:
  end-user: jason
expect:
  status: 200
  title: Simple Bookstore App
  contains: [Book Details, Book Reviews]
";
    let c: HttpCheck = serde_saphyr::from_str(yaml).unwrap();
    assert_eq!(c.expect.contains.len(), 2);
    assert!(c.problems().is_empty());
    assert!(serde_saphyr::from_str::<HttpCheck>("url: x\nretries: 3\n").is_err());
}

/// Alternates v1 and v3 pages, like a 50/50 VirtualService.
async fn bookinfo_50_50() -> TestServer {
    let (v1, v3) = (page("tailwind-v1"), page("tailwind-v3"));
    let n = AtomicU64::new(0);
    TestServer::start_sync(move |_| {
        if n.fetch_add(1, Ordering::SeqCst).is_multiple_of(2) {
            Response::html(200, v1.clone())
        } else {
            Response::html(200, v3.clone())
        }
    })
    .await
}

#[tokio::test]
async fn traffic_counts_statuses_and_reviews_versions() {
    let server = bookinfo_50_50().await;
    let mut spec = TrafficSpec::new(server.url("/productpage"), 40);
    spec.concurrency = Templated::Literal(4);
    spec.min_success = Some(Threshold::Percent(100.0));
    spec.max_failures = Some(Threshold::Count(0));
    spec.reviews_split = Some(ReviewsSplit {
        weights: [("v1".to_string(), 50.0), ("v3".to_string(), 50.0)].into(),
        tolerance: 15.0,
    });
    let report = send(&client(), &spec, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(server.hits(), 40, "exactly N requests");
    assert_eq!((report.total, report.succeeded, report.failed), (40, 40, 0));
    assert_eq!(
        serde_json::Value::Object(report.to_outputs()),
        serde_json::json!({"total": 40, "histogram": {"200": 40}, "reviews": {"v1": 20, "v3": 20}})
    );
}

#[tokio::test]
async fn traffic_split_mismatch_names_the_version() {
    let server = bookinfo_50_50().await;
    let mut spec = TrafficSpec::new(server.url("/productpage"), 20);
    spec.reviews_split = Some(ReviewsSplit {
        weights: [("v1".to_string(), 100.0)].into(),
        tolerance: 10.0,
    });
    let err = send(&client(), &spec, Duration::from_secs(30))
        .await
        .unwrap_err();
    assert!(
        err.message
            .contains("reviews-split v3: expected 0% ± 10%, got 50.0% (10 of 20 pages)"),
        "{err}"
    );
    assert!(err.message.contains("reviews: v1×10, v3×10"), "{err}");
}

#[tokio::test]
async fn traffic_holds_at_most_concurrency_requests_in_flight() {
    // Each answer waits until 4 requests are in the handler at once, or every request has
    // arrived (or, as a safety net, 5 s pass). With concurrency 4 the first wave must fill up,
    // and no more than 4 may ever be in flight.
    const N: u64 = 12;
    let in_flight = Arc::new(AtomicU64::new(0));
    let arrived = Arc::new(AtomicU64::new(0));
    let max_seen = Arc::new(AtomicU64::new(0));
    let notify = Arc::new(tokio::sync::Notify::new());
    let (f, a, m, no) = (
        in_flight.clone(),
        arrived.clone(),
        max_seen.clone(),
        notify.clone(),
    );
    let server = TestServer::start(move |_| {
        let (f, a, m, no) = (f.clone(), a.clone(), m.clone(), no.clone());
        async move {
            let now = f.fetch_add(1, Ordering::SeqCst) + 1;
            a.fetch_add(1, Ordering::SeqCst);
            m.fetch_max(now, Ordering::SeqCst);
            no.notify_waiters();
            let released = || f.load(Ordering::SeqCst) >= 4 || a.load(Ordering::SeqCst) >= N;
            let wave = async {
                loop {
                    let wait = no.notified();
                    if released() {
                        break;
                    }
                    wait.await;
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(5), wave).await;
            f.fetch_sub(1, Ordering::SeqCst);
            no.notify_waiters();
            Response::text(200, "ok")
        }
    })
    .await;
    let mut spec = TrafficSpec::new(server.url("/"), N as u32);
    spec.concurrency = Templated::Literal(4);
    let started = std::time::Instant::now();
    let report = send(&client(), &spec, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(report.histogram, BTreeMap::from([("200".to_string(), N)]));
    assert_eq!(max_seen.load(Ordering::SeqCst), 4);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "no wave waited for the safety net: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn traffic_counts_errors_and_503s_against_the_thresholds() {
    let n = AtomicU64::new(0);
    let server = TestServer::start_sync(move |_| {
        if n.fetch_add(1, Ordering::SeqCst) % 4 == 3 {
            Response::text(503, "upstream connect error")
        } else {
            Response::html(200, "<title>ok</title>")
        }
    })
    .await;
    let mut spec = TrafficSpec::new(server.url("/"), 20);
    spec.concurrency = Templated::Literal(1);
    spec.min_success = Some(Threshold::Percent(75.0));
    let report = send(&client(), &spec, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(
        report.histogram,
        BTreeMap::from([("200".to_string(), 15), ("503".to_string(), 5)])
    );
    assert!(report.reviews.is_empty(), "no product pages");

    spec.max_failures = Some(Threshold::Count(2));
    let err = send(&client(), &spec, Duration::from_secs(30))
        .await
        .unwrap_err();
    assert!(
        err.message
            .contains("max-failures: expected at most 2 of 20 requests to fail, 5 did"),
        "{err}"
    );

    let refused = TrafficSpec {
        max_failures: Some(Threshold::Count(0)),
        ..TrafficSpec::new(format!("http://127.0.0.1:{}/", closed_port()), 5)
    };
    let err = send(&client(), &refused, Duration::from_secs(30))
        .await
        .unwrap_err();
    assert!(err.message.contains("error: connect×5"), "{err}");
    assert!(err.hint.as_deref().unwrap().contains("port-forward"));
}

#[test]
fn traffic_yaml_shape() {
    let yaml = "
url: http://127.0.0.1:8080/productpage
requests: 100
expect-status: 200
min-success: 95%
max-failures: 5
reviews-split:
  weights: { v1: 50, v3: 50 }
  tolerance: 15
";
    let s: TrafficSpec = serde_saphyr::from_str(yaml).unwrap();
    assert_eq!(s.concurrency, Templated::Literal(8), "default");
    assert_eq!(s.min_success, Some(Threshold::Percent(95.0)));
    assert_eq!(s.max_failures, Some(Threshold::Count(5)));
    assert!(s.problems().is_empty(), "{:?}", s.problems());
    assert!(serde_saphyr::from_str::<TrafficSpec>("url: x\nrequests: 1\nrps: 3\n").is_err());
}

/// Background traffic against a server that answers 503 while a "rollout" step runs: every
/// request is recorded with the step it fell in, the failures are counted and named by step,
/// and the check fails with the count; a clean stretch passes max-failures 0.
#[tokio::test]
async fn background_traffic_counts_failures_by_step() {
    use harness::probes::traffic::{BackgroundExpect, BackgroundTraffic};
    let html = page("tailwind-v2");
    let broken = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let b2 = broken.clone();
    let server = TestServer::start_sync(move |_| {
        if b2.load(Ordering::SeqCst) {
            Response::text(503, "no healthy upstream")
        } else {
            Response::html(200, html.clone())
        }
    })
    .await;
    let mut spec = TrafficSpec::background(server.url("/productpage"), "rollout");
    spec.concurrency = Templated::Literal(2);
    let step = Arc::new(std::sync::Mutex::new("traffic on".to_string()));
    let set_step = |s: &str| *step.lock().unwrap() = s.to_string();
    let deadline = || std::time::Instant::now() + Duration::from_secs(20);

    let t = BackgroundTraffic::start(client(), &spec, step.clone()).unwrap();
    assert!(t.wait_for_requests(20, deadline()).await);
    set_step("roll productpage");
    broken.store(true, Ordering::SeqCst);
    let at = t.sent();
    assert!(t.wait_for_requests(at + 10, deadline()).await);
    broken.store(false, Ordering::SeqCst);
    set_step("after the rollout");
    let at = t.sent();
    assert!(t.wait_for_requests(at + 20, deadline()).await);
    let report = t.stop().await;

    let failed = report.failed();
    let total = report.samples.len() as u64;
    assert!(failed >= 10, "{failed} failed");
    let by_step = report.failures_by_step();
    // A request sent just before the switch may come back 503 too; none fail after it.
    assert!(
        by_step.iter().all(|(s, _)| s != "after the rollout"),
        "{by_step:?}"
    );
    assert_eq!(by_step.iter().map(|(_, n)| n).sum::<u64>(), failed);
    let hist = report.histogram();
    assert_eq!(hist.get("503").copied().unwrap_or(0), failed);
    let out = report.to_outputs();
    assert_eq!(out["total"], total);
    assert!(out.get("reviews").is_none());
    let pages = report
        .samples
        .iter()
        .filter(|s| s.reviews == Some("v2"))
        .count() as u64;
    assert_eq!(pages, total - failed);
    let csv = report.to_csv();
    assert_eq!(csv.lines().count() as u64, total + 1);
    assert!(csv.starts_with("at_ms,latency_ms,outcome,ok,reviews,step,detail\n"));

    let err = report.check(&BackgroundExpect::default()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&format!(
            "{failed} of {total} requests failed (at most 0 allowed)"
        )),
        "{msg}"
    );
    assert!(
        msg.contains("failures by step: ") && msg.contains("`roll productpage` "),
        "{msg}"
    );
    let lenient = BackgroundExpect {
        max_failures: Some(Threshold::Percent(100.0)),
        min_requests: Some(Templated::Literal(total + 1)),
        latency_p99: Some(Duration::from_nanos(1)),
    };
    let msg = report.check(&lenient).unwrap_err().to_string();
    assert!(
        msg.contains(&format!("only {total} requests were sent")),
        "{msg}"
    );
    assert!(msg.contains("latency p99 was"), "{msg}");
    let ok = BackgroundExpect {
        max_failures: Some(Threshold::Count(failed)),
        min_requests: Some(Templated::Literal(total)),
        latency_p99: Some(Duration::from_secs(10)),
    };
    report.check(&ok).unwrap();
}
