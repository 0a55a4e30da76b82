//! STAND-IN for the HTML of Bookinfo's `productpage`: the product page in the Bootstrap layout
//! of istio/istio `samples/bookinfo/src/productpage/templates/productpage.html` (as Istio
//! 1.12's `examples-bookinfo-productpage-v1:1.16.2` serves it) and the index page of
//! `templates/index.html`. Reimplemented as string building: the structure, classes and texts a
//! reader (person, `harness::probes::bookinfo`, a test) looks at are the real ones.

use std::fmt::Write;

use axum::http::StatusCode;
use serde_json::{Value, json};

/// The page's `<title>`.
pub const TITLE: &str = "Simple Bookstore App";
/// What the page says when `details` did not answer.
pub const DETAILS_UNAVAILABLE: &str =
    "Sorry, product details are currently unavailable for this book.";
/// What the page says when `reviews` did not answer.
pub const REVIEWS_UNAVAILABLE: &str =
    "Sorry, product reviews are currently unavailable for this book.";
/// What the API says when `ratings` did not answer.
pub const RATINGS_UNAVAILABLE: &str =
    "Sorry, product ratings are currently unavailable for this book.";

/// The products `productpage.py`'s `getProducts()` lists.
pub fn products() -> Value {
    json!([{
        "id": 0,
        "title": "The Comedy of Errors",
        "descriptionHtml": "<a href=\"https://en.wikipedia.org/wiki/The_Comedy_of_Errors\">\
            Wikipedia Summary</a>: The Comedy of Errors is one of <b>William Shakespeare's</b> \
            early plays. It is his shortest and one of his most farcical comedies, with a major \
            part of the humour coming from slapstick and mistaken identity, in addition to puns \
            and word play."
    }])
}

/// What a call to `details` or `reviews` gave: the status and the JSON (the service's, or
/// `{"error": ...}` when it failed).
#[derive(Debug, Clone, PartialEq)]
pub struct Fetched {
    /// 200, the upstream's other status, or 500 when it did not answer.
    pub status: StatusCode,
    /// The body to show.
    pub body: Value,
}

/// HTML-escapes text (what Jinja's autoescape does).
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Text of a JSON value as Jinja prints it (strings without quotes).
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => escape(s),
        Value::Null => String::new(),
        other => escape(&other.to_string()),
    }
}

fn head(title: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html>\n<head>\n<title>{title}</title>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"X-UA-Compatible\" content=\"IE=edge\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1.0\">\n\
         <link rel=\"stylesheet\" href=\"static/bootstrap/css/bootstrap.min.css\">\n\
         <link rel=\"stylesheet\" href=\"static/bootstrap/css/bootstrap-theme.min.css\">\n\
         </head>\n<body>\n"
    )
}

const FOOT: &str = "<script src=\"static/jquery.min.js\"></script>\n\
    <script src=\"static/bootstrap/js/bootstrap.min.js\"></script>\n</body>\n</html>\n";

fn navbar(user: Option<&str>) -> String {
    let right = match user {
        Some(u) => format!(
            "<p class=\"navbar-text navbar-right\"><i class=\"glyphicon glyphicon-user\" \
             aria-hidden=\"true\"></i><span style=\"padding-left: 5px;\">{} ( <a \
             href=\"logout\">sign out</a> )</span></p>",
            escape(u)
        ),
        None => "<button type=\"button\" class=\"btn btn-default navbar-btn navbar-right\" \
                 data-toggle=\"modal\" href=\"#login-modal\">Sign in</button>"
            .to_string(),
    };
    format!(
        "<nav class=\"navbar navbar-inverse navbar-static-top\">\n<div class=\"container\">\n\
         <div class=\"navbar-header\"><a class=\"navbar-brand\" href=\"#\">BookInfo Sample</a>\
         </div>\n{right}\n</div>\n</nav>\n"
    )
}

const LOGIN_MODAL: &str = "<div id=\"login-modal\" class=\"modal fade\" role=\"dialog\">\n\
    <div class=\"modal-dialog\"><div class=\"modal-content\">\n\
    <div class=\"modal-header\"><h4 class=\"modal-title\">Please sign in</h4></div>\n\
    <div class=\"modal-body\">\n<form method=\"post\" action=\"login\" name=\"login_form\">\n\
    <p><input type=\"text\" class=\"form-control\" name=\"username\" id=\"username\" \
    placeholder=\"User Name\"></p>\n\
    <p><input type=\"password\" class=\"form-control\" name=\"passwd\" placeholder=\"Password\"></p>\n\
    <p><button type=\"submit\" class=\"btn btn-primary\">Sign in</button></p>\n\
    </form>\n</div>\n</div></div>\n</div>\n";

/// The product page: the product, its details (or the details error) and its reviews (or the
/// reviews error), for `user` when one is signed in.
pub fn product_page(user: Option<&str>, details: &Fetched, reviews: &Fetched) -> String {
    let product = &products()[0];
    let mut html = head(TITLE);
    html.push_str(&navbar(user));
    html.push_str(LOGIN_MODAL);
    // descriptionHtml is rendered unescaped, as the template's `autoescape false` does.
    let _ = write!(
        html,
        "<div class=\"container-fluid\">\n<div class=\"row\">\n<div class=\"col-md-12\">\n\
         <h3 class=\"text-center text-primary\">{}</h3>\n<p>Summary: {}</p>\n</div>\n</div>\n\
         <div class=\"row\">\n<div class=\"col-md-6\">\n{}</div>\n\
         <div class=\"col-md-6\">\n{}</div>\n</div>\n</div>\n",
        text(&product["title"]),
        product["descriptionHtml"].as_str().unwrap_or_default(),
        details_block(details),
        reviews_block(reviews),
    );
    html.push_str(FOOT);
    html
}

fn details_block(details: &Fetched) -> String {
    if details.status != StatusCode::OK {
        return error_block("Error fetching product details!", &details.body);
    }
    let d = &details.body;
    let mut html = String::from("<h4 class=\"text-center text-primary\">Book Details</h4>\n<dl>\n");
    for (label, key) in [
        ("Type", "type"),
        ("Pages", "pages"),
        ("Publisher", "publisher"),
        ("Language", "language"),
        ("ISBN-10", "ISBN-10"),
        ("ISBN-13", "ISBN-13"),
    ] {
        let _ = writeln!(html, "<dt>{label}:</dt>{}", text(&d[key]));
    }
    html.push_str("</dl>\n");
    html
}

fn error_block(heading: &str, body: &Value) -> String {
    format!(
        "<h4 class=\"text-center text-primary\">{heading}</h4>\n<p>{}</p>\n",
        text(&body["error"])
    )
}

fn reviews_block(reviews: &Fetched) -> String {
    if reviews.status != StatusCode::OK {
        return error_block("Error fetching product reviews!", &reviews.body);
    }
    let mut html = String::from("<h4 class=\"text-center text-primary\">Book Reviews</h4>\n");
    let empty = Vec::new();
    for review in reviews.body["reviews"].as_array().unwrap_or(&empty) {
        html.push_str(&review_block(review));
    }
    html
}

fn review_block(review: &Value) -> String {
    let rating = &review["rating"];
    let stars = rating["stars"].as_u64().filter(|n| *n > 0);
    let extra = match (stars, rating["error"].as_str()) {
        (Some(n), _) => stars_block(n.min(5), &rating["color"]),
        (None, Some(err)) => format!("<p><i>{}</i></p>\n", escape(err)),
        (None, None) => String::new(),
    };
    format!(
        "<blockquote>\n<p>{}</p>\n<small>{}</small>\n{extra}</blockquote>\n",
        text(&review["text"]),
        text(&review["reviewer"]),
    )
}

/// `n` full and `5 - n` empty glyphicon stars in `color`.
fn stars_block(n: u64, color: &Value) -> String {
    let full = "<span class=\"glyphicon glyphicon-star\"></span>\n".repeat(n as usize);
    let empty = "<span class=\"glyphicon glyphicon-star-empty\"></span>\n".repeat(5 - n as usize);
    format!(
        "<font color=\"{}\">\n<!-- full stars: -->\n{full}<!-- empty stars: -->\n{empty}</font>\n",
        text(color)
    )
}

/// The index page: the services `productpage` calls, as a table, and links to the product
/// page as a normal user and as a test user.
pub fn index_page(services: &Value) -> String {
    let mut html = head(TITLE);
    let _ = write!(
        html,
        "<div class=\"container\">\n<h3>Hello! This is a simple bookstore application \
         consisting of three services as shown below</h3>\n{}\n\
         <h4>Click on one of the links below to auto generate a request to the backend as a \
         real user or a tester</h4>\n\
         <p><a href=\"productpage?u=normal\">Normal user</a></p>\n\
         <p><a href=\"productpage?u=test\">Test user</a></p>\n</div>\n",
        service_table(services)
    );
    html.push_str(FOOT);
    html
}

/// A JSON object as nested tables, like `json2html` renders `productpage.py`'s service tree.
fn service_table(node: &Value) -> String {
    match node {
        Value::Object(map) => {
            let mut html =
                String::from("<table class=\"table table-condensed table-bordered table-hover\">");
            for (k, v) in map {
                let _ = write!(
                    html,
                    "<tr><th>{}</th><td>{}</td></tr>",
                    escape(k),
                    service_table(v)
                );
            }
            html.push_str("</table>");
            html
        }
        Value::Array(items) => items.iter().map(service_table).collect(),
        other => text(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(body: Value) -> Fetched {
        Fetched {
            status: StatusCode::OK,
            body,
        }
    }

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape("<b>\"a\" & 'b'</b>"),
            "&lt;b&gt;&#34;a&#34; &amp; &#39;b&#39;&lt;/b&gt;"
        );
    }

    #[test]
    fn stars_full_and_empty() {
        let html = review_block(&json!({
            "reviewer": "Reviewer2", "text": "t", "rating": {"stars": 4, "color": "red"}
        }));
        assert!(html.contains("<font color=\"red\">"), "{html}");
        assert_eq!(html.matches("glyphicon glyphicon-star\"").count(), 4);
        assert_eq!(html.matches("glyphicon-star-empty").count(), 1);
    }

    #[test]
    fn rating_error_in_italics_and_no_rating_no_font() {
        let err = review_block(&json!({"reviewer": "R", "text": "t", "rating": {"error": "x<"}}));
        assert!(err.contains("<p><i>x&lt;</i></p>"), "{err}");
        let none = review_block(&json!({"reviewer": "R", "text": "t"}));
        assert!(!none.contains("<font"), "{none}");
    }

    #[test]
    fn errors_replace_the_blocks() {
        let details = Fetched {
            status: StatusCode::SERVICE_UNAVAILABLE,
            body: json!({"error": DETAILS_UNAVAILABLE}),
        };
        let page = product_page(Some("jason"), &details, &ok(json!({"reviews": []})));
        assert!(page.contains("Error fetching product details!"));
        assert!(page.contains(DETAILS_UNAVAILABLE));
        assert!(page.contains("jason ( <a href=\"logout\">sign out</a> )"));
        assert!(!page.contains("<dl>"));
    }

    #[test]
    fn index_lists_the_services() {
        let page = index_page(
            &json!({"name": "http://details:9080", "children": [{"endpoint": "ratings"}]}),
        );
        assert!(page.contains("<title>Simple Bookstore App</title>"));
        assert!(page.contains("http://details:9080"));
        assert!(page.contains("<th>endpoint</th><td>ratings</td>"));
        assert!(page.contains("productpage?u=test"));
    }
}
