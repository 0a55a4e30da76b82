//! The Bookinfo STAND-IN binary end to end: the four roles started as processes on ephemeral
//! ports of 127.0.0.1, wired together through the stand-in-only `BOOKINFO_*_URL` overrides,
//! with a recording relay on each hop (productpage → details, productpage → reviews,
//! reviews → ratings) so the test sees the headers each downstream call carried.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use harness::probes::bookinfo::{ReviewsVersion, reviews_version};
use scraper::{Html, Selector};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use tokio::time::timeout;

/// Trace and session headers sent to productpage, which every hop must pass on.
const TRACE: &[(&str, &str)] = &[
    ("x-request-id", "6f1f2b9c-0000-4000-8000-000000000001"),
    ("x-b3-traceid", "463ac35c9f6413ad48485a3953bb6124"),
    ("x-b3-spanid", "a2fb4a1d1a96d312"),
    ("x-b3-parentspanid", "0020000000000001"),
    ("x-b3-sampled", "1"),
    ("x-b3-flags", "0"),
    ("b3", "463ac35c9f6413ad48485a3953bb6124-a2fb4a1d1a96d312-1"),
    (
        "traceparent",
        "00-463ac35c9f6413ad48485a3953bb6124-a2fb4a1d1a96d312-01",
    ),
    ("tracestate", "rojo=00f067aa0ba902b7"),
    ("x-ot-span-context", "ot-ctx"),
    ("user-agent", "bookinfo-test/1"),
];

/// A running `bookinfo` process and what it printed after its first line.
struct App {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
    /// The task copying stdout into `log`; it ends when the process closes stdout.
    drain: tokio::task::JoinHandle<()>,
}

fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Starts `bookinfo ARGS` with only `env` set (and `BOOKINFO_LISTEN=127.0.0.1:0`), and reads
/// the address it bound from its first line.
async fn start(args: &[&str], env: &[(&str, String)]) -> App {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bookinfo"));
    cmd.args(args)
        .env_clear()
        .env("BOOKINFO_LISTEN", "127.0.0.1:0")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("the bookinfo binary starts");
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    let first = timeout(Duration::from_secs(10), lines.next_line())
        .await
        .expect("bookinfo prints its address within 10 s")
        .expect("stdout readable")
        .expect("a first line");
    let addr = first
        .rsplit_once(" listening on ")
        .and_then(|(_, a)| a.parse().ok())
        .unwrap_or_else(|| panic!("first line names the address: {first:?}"));
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = log.clone();
    let drain = tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            sink.lock().unwrap().push(line);
        }
    });
    App {
        child,
        addr,
        log,
        drain,
    }
}

impl App {
    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// The requests a relay passed on: (path, headers).
type Seen = Arc<Mutex<Vec<(String, HeaderMap)>>>;

/// A relay to `target` that records each request's path and headers.
async fn relay(target: SocketAddr) -> (String, Seen) {
    install_crypto();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let seen = Seen::default();
    let record = seen.clone();
    let app = Router::new().fallback(move |req: Request| {
        let (client, record) = (client.clone(), record.clone());
        async move {
            let path = req.uri().path().to_string();
            let mut headers = req.headers().clone();
            record.lock().unwrap().push((path.clone(), headers.clone()));
            headers.remove("host");
            let url = format!("http://{target}{path}");
            let res = client.get(url).headers(headers).send().await.unwrap();
            (res.status(), res.text().await.unwrap())
        }
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), seen)
}

/// A URL where nothing listens.
async fn closed_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    format!("http://{}", listener.local_addr().unwrap())
}

async fn get(url: &str, headers: &[(&str, &str)]) -> (StatusCode, String) {
    install_crypto();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        map.insert(
            axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    let res = client.get(url).headers(map).send().await.unwrap();
    (res.status(), res.text().await.unwrap())
}

fn sel(s: &str) -> Selector {
    Selector::parse(s).unwrap()
}

/// Each review's (stars shown, colour) on a product page, in order.
fn stars(doc: &Html) -> Vec<(usize, Option<String>)> {
    doc.select(&sel("blockquote"))
        .map(|b| {
            let font = b.select(&sel("font[color]")).next();
            let n = b.select(&sel("span.glyphicon-star")).count();
            (
                n,
                font.and_then(|f| f.value().attr("color").map(str::to_string)),
            )
        })
        .collect()
}

fn title(doc: &Html) -> String {
    doc.select(&sel("title")).next().unwrap().inner_html()
}

/// Every header of [`TRACE`], plus `end-user: jason`, reached `hop` with the same value, and a
/// header Bookinfo does not forward did not.
fn assert_propagated(hop: &str, seen: &Seen) {
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1, "{hop}: one call, got {:?}", seen);
    let (_, headers) = &seen[0];
    for (name, value) in TRACE.iter().chain([&("end-user", "jason")]) {
        assert_eq!(
            headers.get(*name).and_then(|v| v.to_str().ok()),
            Some(*value),
            "{hop}: {name}"
        );
    }
    assert!(headers.get("x-not-forwarded").is_none(), "{hop}");
}

/// ratings and details, shared by the pages of one test.
async fn backends() -> (App, App) {
    let ratings = start(&["ratings"], &[]).await;
    let details = start(&["details", "v1"], &[]).await;
    (ratings, details)
}

/// reviews VERSION and a productpage in front of it, every hop through a relay.
async fn front(version: &str, ratings: &App, details: &App) -> (App, App, [Seen; 3]) {
    let (ratings_url, to_ratings) = relay(ratings.addr).await;
    let reviews = start(
        &["reviews", version],
        &[
            ("BOOKINFO_RATINGS_URL", ratings_url),
            ("HOSTNAME", format!("reviews-{version}-abc")),
        ],
    )
    .await;
    let (details_url, to_details) = relay(details.addr).await;
    let (reviews_url, to_reviews) = relay(reviews.addr).await;
    let env = [
        ("BOOKINFO_DETAILS_URL", details_url),
        ("BOOKINFO_REVIEWS_URL", reviews_url),
    ];
    let productpage = start(&["productpage"], &env).await;
    (productpage, reviews, [to_details, to_reviews, to_ratings])
}

#[tokio::test]
async fn the_page_per_reviews_version_with_headers_on_every_hop() {
    let (ratings, details) = backends().await;
    let versions = [
        ("v1", None, ReviewsVersion::V1),
        ("v2", Some("black"), ReviewsVersion::V2),
        ("v3", Some("red"), ReviewsVersion::V3),
    ];
    for (version, colour, read_as) in versions {
        let (productpage, _reviews, [to_details, to_reviews, to_ratings]) =
            front(version, &ratings, &details).await;
        let mut headers = TRACE.to_vec();
        headers.extend([("cookie", "user=jason"), ("x-not-forwarded", "1")]);
        let url = format!("{}/productpage", productpage.url());
        let (status, html) = get(&url, &headers).await;
        assert_eq!(status, StatusCode::OK, "{version}");
        let doc = Html::parse_document(&html);
        assert_eq!(title(&doc), "Simple Bookstore App");
        let dl = doc.select(&sel("dl")).next().expect("details shown").html();
        for text in ["paperback", "200", "PublisherA", "English", "1234567890"] {
            assert!(dl.contains(text), "{version}: {text} in {dl}");
        }
        assert!(html.contains("The Comedy of Errors"));
        assert!(
            html.contains("jason"),
            "{version}: the signed-in user is shown"
        );
        let want = match colour {
            None => vec![(0, None), (0, None)],
            Some(c) => vec![(5, Some(c.to_string())), (4, Some(c.to_string()))],
        };
        assert_eq!(stars(&doc), want, "{version}");
        assert_eq!(
            reviews_version(&html),
            Some(read_as),
            "the harness reads {version}"
        );

        assert_propagated("productpage -> details", &to_details);
        assert_propagated("productpage -> reviews", &to_reviews);
        if colour.is_some() {
            assert_propagated("reviews -> ratings", &to_ratings);
        } else {
            assert!(
                to_ratings.lock().unwrap().is_empty(),
                "v1 never calls ratings"
            );
        }
        let log = productpage.log.lock().unwrap().join("\n");
        assert!(
            log.contains("productpage GET /productpage 200")
                && log.contains("request-id=6f1f2b9c-0000-4000-8000-000000000001"),
            "one access line per request: {log}"
        );
    }
}

#[tokio::test]
async fn the_page_degrades_like_the_real_one() {
    let (ratings, details) = backends().await;
    let down = closed_url().await;
    let no_details = start(
        &["productpage"],
        &[
            ("BOOKINFO_DETAILS_URL", down.clone()),
            ("BOOKINFO_REVIEWS_URL", down.clone()),
        ],
    )
    .await;
    let (status, html) = get(&format!("{}/productpage", no_details.url()), &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("<title>Simple Bookstore App</title>"));
    assert!(html.contains("Error fetching product details!"));
    assert!(html.contains("Sorry, product details are currently unavailable for this book."));
    assert!(html.contains("Error fetching product reviews!"));
    assert!(html.contains("Sorry, product reviews are currently unavailable for this book."));
    assert!(!html.contains("<dl>"));
    assert_eq!(reviews_version(&html), Some(ReviewsVersion::Unavailable));

    // reviews v3 whose ratings is down: reviews shown, each with the ratings error.
    let reviews = start(&["reviews", "v3"], &[("BOOKINFO_RATINGS_URL", down)]).await;
    let env = [
        ("BOOKINFO_DETAILS_URL", details.url()),
        ("BOOKINFO_REVIEWS_URL", reviews.url()),
    ];
    let productpage = start(&["productpage"], &env).await;
    let (_, html) = get(&format!("{}/productpage", productpage.url()), &[]).await;
    let doc = Html::parse_document(&html);
    assert_eq!(stars(&doc), vec![(0, None), (0, None)]);
    let errors: Vec<String> = doc
        .select(&sel("blockquote p i"))
        .map(|i| i.inner_html())
        .collect();
    assert_eq!(errors, vec!["Ratings service is currently unavailable"; 2]);
    assert!(
        doc.select(&sel("dl")).next().is_some(),
        "details still shown"
    );
    drop(ratings);
}

#[tokio::test]
async fn the_json_apis_and_health() {
    let (ratings, details) = backends().await;
    let reviews = start(
        &["reviews", "v2"],
        &[("BOOKINFO_RATINGS_URL", ratings.url())],
    )
    .await;
    let env = [
        ("BOOKINFO_DETAILS_URL", details.url()),
        ("BOOKINFO_REVIEWS_URL", reviews.url()),
        ("BOOKINFO_RATINGS_URL", ratings.url()),
    ];
    let productpage = start(&["productpage"], &env).await;
    let json = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap();
    let base = productpage.url();

    let (_, products) = get(&format!("{base}/api/v1/products"), &[]).await;
    assert_eq!(json(&products)[0]["title"], "The Comedy of Errors");
    let (_, d) = get(&format!("{base}/api/v1/products/0"), &[]).await;
    assert_eq!(json(&d)["ISBN-10"], "1234567890");
    let (_, r) = get(&format!("{base}/api/v1/products/0/reviews"), &[]).await;
    assert_eq!(json(&r)["reviews"][1]["rating"]["stars"], 4);
    let (_, r) = get(&format!("{base}/api/v1/products/0/ratings"), &[]).await;
    assert_eq!(json(&r)["ratings"]["Reviewer1"], 5);
    let (status, bad) = get(&format!("{}/details/abc", details.url()), &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(json(&bad)["error"], "please provide numeric product id");

    for (app, want) in [
        (&productpage, "Product page is healthy"),
        (&details, "Details is healthy"),
        (&reviews, "Reviews is healthy"),
        (&ratings, "Ratings is healthy"),
    ] {
        let (status, body) = get(&format!("{}/health", app.url()), &[]).await;
        assert_eq!(
            (status, body.contains(want)),
            (StatusCode::OK, true),
            "{body}"
        );
    }
    let (_, index) = get(&format!("{base}/"), &[]).await;
    assert!(index.contains("Simple Bookstore App") && index.contains(&details.url()));
}

#[tokio::test]
async fn sigterm_stops_the_server_gracefully() {
    let mut details = start(&["details"], &[]).await;
    let pid = details.child.id().expect("running").to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = timeout(Duration::from_secs(5), details.child.wait())
        .await
        .expect("exits within 5 s of SIGTERM")
        .unwrap();
    assert!(status.success(), "{status}");
    (&mut details.drain).await.unwrap();
    assert!(
        details
            .log
            .lock()
            .unwrap()
            .iter()
            .any(|l| l == "details stopped")
    );
}
