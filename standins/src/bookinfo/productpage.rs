//! STAND-IN for Bookinfo's `productpage` app, following istio/istio
//! `samples/bookinfo/src/productpage/productpage.py`: `/productpage` asks `details` (once, 3 s)
//! and `reviews` (twice, 3 s each: the real app's deliberate bug the fault-injection task relies
//! on), forwarding the trace headers and `end-user`, and renders the page ([`super::page`]);
//! `/api/v1/products[/<id>[/reviews|/ratings]]` answer the same data as JSON; `/login` and
//! `/logout` set and clear the signed-in user (a `user` cookie here, Flask's session there).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Form;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Json, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::Config;
use super::headers::forwarded_for_user;
use super::page::{self, Fetched};
use super::upstream::Upstream;

/// How long `productpage` waits for each call.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(3);

struct ProductPage {
    upstream: Upstream,
    details_url: String,
    reviews_url: String,
    ratings_url: String,
    pages_served: AtomicU64,
}

type Shared = State<Arc<ProductPage>>;

/// The `productpage` routes.
pub fn router(config: &Config, upstream: Upstream) -> Router {
    let state = Arc::new(ProductPage {
        upstream,
        details_url: config.details_url.clone(),
        reviews_url: config.reviews_url.clone(),
        ratings_url: config.ratings_url.clone(),
        pages_served: AtomicU64::new(0),
    });
    Router::new()
        .route("/", get(index))
        .route("/index.html", get(index))
        .route("/health", get(|| async { "Product page is healthy" }))
        .route("/login", post(login))
        .route("/logout", get(logout))
        .route("/productpage", get(product_page))
        .route("/api/v1/products", get(|| async { Json(page::products()) }))
        .route("/api/v1/products/{id}", get(api_details))
        .route("/api/v1/products/{id}/reviews", get(api_reviews))
        .route("/api/v1/products/{id}/ratings", get(api_ratings))
        .route("/static/{*path}", get(static_file))
        .route("/metrics", get(metrics))
        .with_state(state)
}

impl ProductPage {
    /// One call; a failure becomes the real app's status and `{"error": message}`.
    async fn fetch(&self, url: String, headers: HeaderMap, message: &str) -> Fetched {
        match self.upstream.get_json(&url, headers, CALL_TIMEOUT).await {
            Ok(body) => Fetched {
                status: StatusCode::OK,
                body,
            },
            Err(e) => {
                println!("productpage: {e}");
                Fetched {
                    status: e.status(),
                    body: json!({ "error": message }),
                }
            }
        }
    }

    async fn details(&self, id: &str, headers: &HeaderMap) -> Fetched {
        let url = format!("{}/details/{id}", self.details_url);
        self.fetch(url, headers.clone(), page::DETAILS_UNAVAILABLE)
            .await
    }

    async fn reviews(&self, id: &str, headers: &HeaderMap) -> Fetched {
        let url = format!("{}/reviews/{id}", self.reviews_url);
        let first = self
            .fetch(url.clone(), headers.clone(), page::REVIEWS_UNAVAILABLE)
            .await;
        if first.status == StatusCode::OK {
            return first;
        }
        self.fetch(url, headers.clone(), page::REVIEWS_UNAVAILABLE)
            .await
    }

    async fn ratings(&self, id: &str, headers: &HeaderMap) -> Fetched {
        let url = format!("{}/ratings/{id}", self.ratings_url);
        self.fetch(url, headers.clone(), page::RATINGS_UNAVAILABLE)
            .await
    }

    /// The service tree `productpage.py` shows on its index page (its root's name is the
    /// details URL there too).
    fn services(&self) -> Value {
        let node = |name: &str, endpoint: &str, children: Value| json!({"name": name, "endpoint": endpoint, "children": children});
        let details = node(&self.details_url, "details", json!([]));
        let ratings = node(&self.ratings_url, "ratings", json!([]));
        let reviews = node(&self.reviews_url, "reviews", json!([ratings]));
        node(&self.details_url, "details", json!([details, reviews]))
    }
}

/// The signed-in user: the `user` cookie.
fn user_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, value)| *name == "user" && !value.is_empty())
        .map(|(_, value)| value.to_string())
}

async fn index(State(state): Shared) -> Html<String> {
    Html(page::index_page(&state.services()))
}

async fn product_page(State(state): Shared, incoming: HeaderMap) -> Html<String> {
    state.pages_served.fetch_add(1, Ordering::Relaxed);
    let user = user_of(&incoming);
    let headers = forwarded_for_user(&incoming, user.as_deref());
    let details = state.details("0", &headers).await;
    let reviews = state.reviews("0", &headers).await;
    Html(page::product_page(user.as_deref(), &details, &reviews))
}

fn api(fetched: Fetched) -> (StatusCode, Json<Value>) {
    (fetched.status, Json(fetched.body))
}

async fn api_details(State(s): Shared, Path(id): Path<String>, h: HeaderMap) -> impl IntoResponse {
    let headers = forwarded_for_user(&h, user_of(&h).as_deref());
    api(s.details(&id, &headers).await)
}

async fn api_reviews(State(s): Shared, Path(id): Path<String>, h: HeaderMap) -> impl IntoResponse {
    let headers = forwarded_for_user(&h, user_of(&h).as_deref());
    api(s.reviews(&id, &headers).await)
}

async fn api_ratings(State(s): Shared, Path(id): Path<String>, h: HeaderMap) -> impl IntoResponse {
    let headers = forwarded_for_user(&h, user_of(&h).as_deref());
    api(s.ratings(&id, &headers).await)
}

/// The login form's fields.
#[derive(Debug, Deserialize)]
pub struct Login {
    /// Who signs in.
    pub username: String,
}

/// Back to where the user came from (the real app's `redirect(request.referrer)`), else to the
/// product page.
fn back(headers: &HeaderMap, cookie: String) -> Response {
    let location = headers
        .get(header::REFERER)
        .cloned()
        .unwrap_or(HeaderValue::from_static("/productpage"));
    let mut res = (StatusCode::FOUND, [(header::LOCATION, location)]).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}

async fn login(headers: HeaderMap, Form(form): Form<Login>) -> Response {
    // Cookie values cannot hold spaces, `;` or `,`; user names in the Istio tasks never do.
    let user: String = form
        .username
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "-_.@".contains(*c))
        .collect();
    back(&headers, format!("user={user}; Path=/"))
}

async fn logout(headers: HeaderMap) -> Response {
    back(&headers, "user=; Path=/; Max-Age=0".to_string())
}

/// Stylesheets and scripts the page links to: empty ones (the real app ships Bootstrap and
/// jQuery; the stand-in's page works without them). Anything else is not found.
async fn static_file(Path(path): Path<String>) -> Response {
    let kind = if path.ends_with(".css") {
        "text/css; charset=utf-8"
    } else if path.ends_with(".js") {
        "application/javascript"
    } else {
        return (StatusCode::NOT_FOUND, "Not Found").into_response();
    };
    let body = format!("/* stand-in for Bookinfo's static/{path} */\n");
    ([(header::CONTENT_TYPE, kind)], body).into_response()
}

/// Prometheus text: the product pages served (the 1.20 images' pods are annotated for
/// scraping on 9080 `/metrics`).
async fn metrics(State(state): Shared) -> impl IntoResponse {
    let n = state.pages_served.load(Ordering::Relaxed);
    let body = format!(
        "# HELP bookinfo_standin_productpage_pages_total Product pages rendered.\n\
         # TYPE bookinfo_standin_productpage_pages_total counter\n\
         bookinfo_standin_productpage_pages_total {n}\n"
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_user_cookie_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; user=jason; b=2"),
        );
        assert_eq!(user_of(&h).as_deref(), Some("jason"));
        h.insert(header::COOKIE, HeaderValue::from_static("user=; other=x"));
        assert_eq!(user_of(&h), None);
    }

    #[tokio::test]
    async fn login_sets_the_cookie_and_goes_back() {
        let mut h = HeaderMap::new();
        h.insert(
            header::REFERER,
            HeaderValue::from_static("http://x/productpage"),
        );
        let form = Form(Login {
            username: "jason; evil".into(),
        });
        let res = login(h, form).await;
        assert_eq!(res.status(), StatusCode::FOUND);
        assert_eq!(res.headers()[header::LOCATION], "http://x/productpage");
        assert_eq!(res.headers()[header::SET_COOKIE], "user=jasonevil; Path=/");
        let out = logout(HeaderMap::new()).await;
        assert_eq!(out.headers()[header::LOCATION], "/productpage");
        assert!(
            out.headers()[header::SET_COOKIE]
                .to_str()
                .unwrap()
                .contains("Max-Age=0")
        );
    }

    #[tokio::test]
    async fn static_css_and_js_only() {
        assert_eq!(
            static_file(Path("bootstrap/css/bootstrap.min.css".into()))
                .await
                .status(),
            StatusCode::OK
        );
        assert_eq!(
            static_file(Path("img/izzy.png".into())).await.status(),
            StatusCode::NOT_FOUND
        );
    }
}
