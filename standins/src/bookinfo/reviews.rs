//! STAND-IN for Bookinfo's `reviews` app (v1, v2, v3), following istio/istio
//! `samples/bookinfo/src/reviews/reviews-application/src/main/java/application/rest/
//! LibertyRestEndpoint.java`: `GET /reviews/<id>` answers two reviews as JSON; with
//! `ENABLE_RATINGS` (v2, v3) it asks `ratings` (forwarding the trace headers) and adds each
//! reviewer's stars in `STAR_COLOR` (black for v2, red for v3), or "Ratings service is
//! currently unavailable" when `ratings` did not answer.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Json;
use axum::routing::get;
use serde_json::{Map, Value, json};

use super::Config;
use super::headers::forwarded;
use super::upstream::Upstream;

/// The rating error `reviews` puts in place of stars.
pub const RATINGS_UNAVAILABLE: &str = "Ratings service is currently unavailable";

/// The two reviews every book has: (reviewer, text).
pub const REVIEWS: [(&str, &str); 2] = [
    (
        "Reviewer1",
        "An extremely entertaining play by Shakespeare. The slapstick humour is refreshing!",
    ),
    (
        "Reviewer2",
        "Absolutely fun and entertaining. The play lacks thematic depth when compared to other \
         plays by Shakespeare.",
    ),
];

struct Reviews {
    upstream: Upstream,
    ratings_url: String,
    enable_ratings: bool,
    star_color: String,
    pod_name: Option<String>,
    cluster_name: Option<String>,
}

/// The `reviews` routes.
pub fn router(config: &Config, upstream: Upstream) -> Router {
    let state = Arc::new(Reviews {
        upstream,
        ratings_url: config.ratings_url.clone(),
        enable_ratings: config.enable_ratings,
        star_color: config.star_color.clone(),
        pod_name: config.pod_name.clone(),
        cluster_name: config.cluster_name.clone(),
    });
    Router::new()
        .route("/health", get(health))
        .route("/reviews/{id}", get(reviews))
        .with_state(state)
}

async fn health() -> Json<Value> {
    Json(json!({"status": "Reviews is healthy"}))
}

async fn reviews(
    State(state): State<Arc<Reviews>>,
    Path(id): Path<String>,
    incoming: HeaderMap,
) -> Result<Json<Value>, StatusCode> {
    // JAX-RS matches `{productId}` to an int parameter: anything else is not found.
    let id: i64 = id.parse().map_err(|_| StatusCode::NOT_FOUND)?;
    let stars = if state.enable_ratings {
        Some(state.stars(id, &incoming).await)
    } else {
        None
    };
    Ok(Json(state.body(id, stars)))
}

impl Reviews {
    /// Each reviewer's stars from `ratings`, `None` for a reviewer it did not rate (or when it
    /// did not answer).
    async fn stars(&self, id: i64, incoming: &HeaderMap) -> [Option<i64>; 2] {
        // The real one waits 10 s for black stars (v2) and 2.5 s otherwise (v3).
        let timeout = if self.star_color == "black" {
            Duration::from_secs(10)
        } else {
            Duration::from_millis(2500)
        };
        let url = format!("{}/ratings/{id}", self.ratings_url);
        match self
            .upstream
            .get_json(&url, forwarded(incoming), timeout)
            .await
        {
            Ok(body) => REVIEWS.map(|(who, _)| body["ratings"][who].as_i64()),
            Err(e) => {
                println!("Error: unable to contact ratings: {e}");
                [None, None]
            }
        }
    }

    fn body(&self, id: i64, stars: Option<[Option<i64>; 2]>) -> Value {
        let reviews: Vec<Value> = REVIEWS
            .iter()
            .enumerate()
            .map(|(i, (who, text))| {
                let mut r = Map::new();
                r.insert("reviewer".into(), json!(who));
                r.insert("text".into(), json!(text));
                if let Some(stars) = stars {
                    r.insert("rating".into(), self.rating(stars[i]));
                }
                Value::Object(r)
            })
            .collect();
        json!({
            "id": id.to_string(),
            "podname": self.pod_name,
            "clustername": self.cluster_name,
            "reviews": reviews,
        })
    }

    fn rating(&self, stars: Option<i64>) -> Value {
        match stars {
            Some(n) => json!({"stars": n, "color": self.star_color}),
            None => json!({"error": RATINGS_UNAVAILABLE}),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(enable_ratings: bool, color: &str) -> Reviews {
        Reviews {
            upstream: Upstream::new().unwrap(),
            ratings_url: "http://127.0.0.1:9".into(),
            enable_ratings,
            star_color: color.into(),
            pod_name: Some("reviews-v3-abc".into()),
            cluster_name: None,
        }
    }

    #[test]
    fn v1_has_no_rating_v3_red_stars_and_errors() {
        let v1 = state(false, "black").body(0, None);
        assert_eq!(v1["id"], "0");
        assert_eq!(v1["reviews"][0]["reviewer"], "Reviewer1");
        assert!(v1["reviews"][0].get("rating").is_none());
        let v3 = state(true, "red").body(0, Some([Some(5), None]));
        assert_eq!(v3["podname"], "reviews-v3-abc");
        assert_eq!(
            v3["reviews"][0]["rating"],
            json!({"stars": 5, "color": "red"})
        );
        assert_eq!(v3["reviews"][1]["rating"]["error"], RATINGS_UNAVAILABLE);
    }

    #[tokio::test]
    async fn unreachable_ratings_gives_no_stars() {
        // Port 9 (discard) on loopback: nothing listens there in a test environment.
        let stars = state(true, "red").stars(0, &HeaderMap::new()).await;
        assert_eq!(stars, [None, None]);
    }
}
