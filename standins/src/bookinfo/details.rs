//! STAND-IN for Bookinfo's `details` app, following istio/istio
//! `samples/bookinfo/src/details/details.rb`: `GET /details/<id>` answers the book's details as
//! JSON (the built-in book; the external Google Books lookup cannot be made offline), a
//! non-numeric id is a 400, `/health` says it is healthy.

use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::Json;
use axum::routing::get;
use serde_json::{Value, json};

/// The `details` routes.
pub fn router() -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/details", get(|| details(String::new())))
        .route(
            "/details/{*rest}",
            get(|Path(rest): Path<String>| details(rest)),
        )
}

async fn health() -> Json<Value> {
    Json(json!({"status": "Details is healthy"}))
}

/// The last path segment after `/details` is the product id.
async fn details(rest: String) -> (StatusCode, Json<Value>) {
    let last = rest.rsplit('/').next().unwrap_or_default();
    match last.parse::<i64>() {
        Ok(id) => (StatusCode::OK, Json(book_details(id))),
        Err(_) => (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "please provide numeric product id"})),
        ),
    }
}

/// The details `details.rb` gives every book.
pub fn book_details(id: i64) -> Value {
    json!({
        "id": id,
        "author": "William Shakespeare",
        "year": 1595,
        "type": "paperback",
        "pages": 200,
        "publisher": "PublisherA",
        "language": "English",
        "ISBN-10": "1234567890",
        "ISBN-13": "123-1234567890",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn numeric_ids_get_the_book_others_a_400() {
        let (status, Json(body)) = details("0".into()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["id"], 0);
        assert_eq!(body["ISBN-13"], "123-1234567890");
        assert_eq!(body["type"], "paperback");
        let (status, Json(body)) = details("x".into()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"], "please provide numeric product id");
        assert_eq!(details(String::new()).await.0, StatusCode::BAD_REQUEST);
    }
}
