//! STAND-IN for Bookinfo's `ratings` app, following istio/istio
//! `samples/bookinfo/src/ratings/ratings.js` (its in-memory `v1` behaviour): `GET /ratings/<id>`
//! answers Reviewer1 5 stars and Reviewer2 4 (or what was POSTed for that id), a non-numeric id
//! is a 400, `/health` says it is healthy.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Json;
use axum::routing::get;
use serde_json::{Value, json};

/// Ratings POSTed per product id (`userAddedRatings` in `ratings.js`).
type Added = Arc<Mutex<HashMap<i64, Value>>>;

/// The `ratings` routes.
pub fn router() -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ratings/{*rest}", get(get_ratings).post(post_ratings))
        .with_state(Added::default())
}

async fn health() -> Json<Value> {
    Json(json!({"status": "Ratings is healthy"}))
}

fn product_id(rest: &str) -> Result<i64, (StatusCode, Json<Value>)> {
    let last = rest.rsplit('/').next().unwrap_or_default();
    last.parse().map_err(|_| {
        (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "please provide numeric product ID"})),
        )
    })
}

/// The ratings of a product: what was POSTed for it, or the built-in ones.
pub fn ratings_of(added: &HashMap<i64, Value>, id: i64) -> Value {
    added
        .get(&id)
        .cloned()
        .unwrap_or_else(|| json!({"id": id, "ratings": {"Reviewer1": 5, "Reviewer2": 4}}))
}

async fn get_ratings(
    State(added): State<Added>,
    Path(rest): Path<String>,
) -> Result<Json<Value>, (StatusCode, Json<Value>)> {
    let id = product_id(&rest)?;
    let added = added.lock().unwrap_or_else(|e| e.into_inner());
    Ok(Json(ratings_of(&added, id)))
}

async fn post_ratings(
    State(added): State<Added>,
    Path(rest): Path<String>,
    body: String,
) -> Result<Json<Value>, (StatusCode, Json<Value>)> {
    let id = product_id(&rest)?;
    let ratings: Value = serde_json::from_str(&body).map_err(|_| {
        (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "please provide valid ratings JSON"})),
        )
    })?;
    let mut added = added.lock().unwrap_or_else(|e| e.into_inner());
    added.insert(id, json!({"id": id, "ratings": ratings}));
    Ok(Json(ratings_of(&added, id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn built_in_posted_and_invalid() {
        let added = Added::default();
        let get = |rest: &str| get_ratings(State(added.clone()), Path(rest.to_string()));
        let Json(body) = get("0").await.unwrap();
        assert_eq!(
            body,
            json!({"id": 0, "ratings": {"Reviewer1": 5, "Reviewer2": 4}})
        );
        let posted = post_ratings(
            State(added.clone()),
            Path("7".into()),
            r#"{"Reviewer1": 1}"#.into(),
        );
        assert_eq!(posted.await.unwrap().0["ratings"]["Reviewer1"], 1);
        assert_eq!(
            get("7").await.unwrap().0["ratings"],
            json!({"Reviewer1": 1})
        );
        assert_eq!(get("abc").await.unwrap_err().0, StatusCode::BAD_REQUEST);
        let bad = post_ratings(State(added.clone()), Path("7".into()), "{".into());
        assert_eq!(bad.await.unwrap_err().0, StatusCode::BAD_REQUEST);
    }
}
