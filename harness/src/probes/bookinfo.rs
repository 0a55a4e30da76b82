//! The Bookinfo product page: what it shows, and which `reviews` version served it.
//!
//! Bookinfo's `productpage` (Flask, `samples/bookinfo/src/productpage/templates/productpage.html`
//! in istio/istio) has had two layouts, and [`ProductPage::parse`] reads both:
//!
//! * the Bootstrap layout: details in a `<dl>`, each review in a `<blockquote>` whose stars are
//!   `<span class="glyphicon glyphicon-star">` inside `<font color="black|red">`;
//! * the Tailwind layout: details in a `<table>`, each review in a `<section>` whose stars are
//!   `<svg fill="currentColor">` inside `<div class="flex gap-x-1 text-black-500|text-red-500">`,
//!   with a "Reviews served by: POD" line.
//!
//! `reviews-v1` shows no stars, `reviews-v2` black stars, `reviews-v3` red stars. When `reviews`
//! fails, the page says "Error fetching product reviews" and
//! "Sorry, product reviews are currently unavailable for this book.".
//!
//! [`ReviewsSplit`] checks a histogram of versions against weights, e.g. "v1 and v3 each 50 % ±
//! 15 %":
//!
//! ```yaml
//! reviews-split:
//!   weights: { v1: 50, v3: 50 }
//!   tolerance: 15
//! ```

use std::collections::BTreeMap;
use std::fmt;

use scraper::{ElementRef, Html, Node, Selector};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Outputs;
use crate::expect::Mismatch;

/// The product page's `<title>`.
pub const TITLE: &str = "Simple Bookstore App";
/// What the page says when `reviews` did not answer.
pub const REVIEWS_UNAVAILABLE: &str =
    "Sorry, product reviews are currently unavailable for this book.";
/// What the page says when `details` did not answer.
pub const DETAILS_UNAVAILABLE: &str =
    "Sorry, product details are currently unavailable for this book.";
/// What a review says (in place of stars) when `reviews` v2/v3 could not reach `ratings`.
pub const RATINGS_UNAVAILABLE: &str = "Ratings service is currently unavailable";

/// Which `reviews` version served a product page, as far as the page shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReviewsVersion {
    /// Reviews without stars.
    V1,
    /// Black stars.
    V2,
    /// Red stars.
    V3,
    /// Reviews shown, ratings not ("Ratings service is currently unavailable"), and the page
    /// does not name the pod: v2 or v3.
    RatingsUnavailable,
    /// "Error fetching product reviews": `reviews` did not answer.
    Unavailable,
    /// A product page whose reviews section could not be read (e.g. stars of another colour).
    Unknown,
}

impl ReviewsVersion {
    /// Every value, in order.
    pub const ALL: [ReviewsVersion; 6] = [
        ReviewsVersion::V1,
        ReviewsVersion::V2,
        ReviewsVersion::V3,
        ReviewsVersion::RatingsUnavailable,
        ReviewsVersion::Unavailable,
        ReviewsVersion::Unknown,
    ];

    /// The histogram key: `v1`, `v2`, `v3`, `ratings-unavailable`, `unavailable`, `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReviewsVersion::V1 => "v1",
            ReviewsVersion::V2 => "v2",
            ReviewsVersion::V3 => "v3",
            ReviewsVersion::RatingsUnavailable => "ratings-unavailable",
            ReviewsVersion::Unavailable => "unavailable",
            ReviewsVersion::Unknown => "unknown",
        }
    }

    /// The inverse of [`as_str`](Self::as_str).
    pub fn from_key(key: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == key)
    }
}

impl fmt::Display for ReviewsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The "Book Details" block, as shown (every value is the page's text).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct BookDetails {
    /// `Type`, e.g. `paperback`.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// `Pages`, e.g. `200`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pages: Option<String>,
    /// `Publisher`, e.g. `PublisherA`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publisher: Option<String>,
    /// `Language`, e.g. `English`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// `ISBN-10`, e.g. `1234567890`.
    #[serde(rename = "isbn-10", skip_serializing_if = "Option::is_none")]
    pub isbn_10: Option<String>,
    /// `ISBN-13`, e.g. `123-1234567890` (the Tailwind layout does not show it).
    #[serde(rename = "isbn-13", skip_serializing_if = "Option::is_none")]
    pub isbn_13: Option<String>,
}

impl BookDetails {
    fn set(&mut self, key: &str, value: String) {
        let slot = match key.trim().trim_end_matches(':').trim() {
            "Type" => &mut self.kind,
            "Pages" => &mut self.pages,
            "Publisher" => &mut self.publisher,
            "Language" => &mut self.language,
            "ISBN-10" => &mut self.isbn_10,
            "ISBN-13" => &mut self.isbn_13,
            _ => return,
        };
        *slot = Some(value);
    }
}

/// One review on the page.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Review {
    /// Who wrote it, e.g. `Reviewer1`.
    pub reviewer: String,
    /// The review text (without the quotes the Tailwind layout adds).
    pub text: String,
    /// Filled stars (0–5), when the review shows a rating.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stars: Option<u8>,
    /// The stars' colour (`black`, `red`), when the review shows a rating.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub color: Option<String>,
    /// The rating error shown instead of stars.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rating_error: Option<String>,
}

/// What a Bookinfo product page shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ProductPage {
    /// The `<title>` (always [`TITLE`] for a product page).
    pub title: String,
    /// The book's title, e.g. `The Comedy of Errors`.
    pub book_title: Option<String>,
    /// The details block, when `details` answered.
    pub details: Option<BookDetails>,
    /// The details error, when `details` did not answer.
    pub details_error: Option<String>,
    /// The reviews shown (empty when `reviews` did not answer).
    pub reviews: Vec<Review>,
    /// The reviews error, when `reviews` did not answer.
    pub reviews_error: Option<String>,
    /// The pod that served the reviews, where the page names it ("Reviews served by: …").
    pub served_by: Option<String>,
    /// Which `reviews` version served the page.
    pub version: ReviewsVersion,
}

fn sel(s: &str) -> Selector {
    Selector::parse(s).expect("a built-in selector parses")
}

/// Text of an element with runs of whitespace collapsed to one space.
fn text_of(e: ElementRef<'_>) -> String {
    e.text()
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn has_class(e: ElementRef<'_>, prefix: &str) -> bool {
    e.value().classes().any(|c| c.starts_with(prefix))
}

impl ProductPage {
    /// Reads a product page; `None` when the HTML is not one (its `<title>` is not [`TITLE`]),
    /// e.g. Envoy's `no healthy upstream` or a gateway 404.
    pub fn parse(html: &str) -> Option<ProductPage> {
        let doc = Html::parse_document(html);
        let title = doc
            .select(&sel("title"))
            .next()
            .map(text_of)
            .filter(|t| t == TITLE)?;
        let book_title = doc
            .select(&sel("h3.text-primary, h1"))
            .next()
            .map(text_of)
            .filter(|t| !t.is_empty());
        let page_text = text_of(doc.root_element());

        let (details, details_error) = if page_text.contains("Error fetching product details") {
            let err = if page_text.contains(DETAILS_UNAVAILABLE) {
                DETAILS_UNAVAILABLE.to_string()
            } else {
                "Error fetching product details".to_string()
            };
            (None, Some(err))
        } else {
            (read_details(&doc), None)
        };

        let reviews_failed = page_text.contains("Error fetching product reviews");
        let reviews_error = reviews_failed.then(|| {
            if page_text.contains(REVIEWS_UNAVAILABLE) {
                REVIEWS_UNAVAILABLE.to_string()
            } else {
                "Error fetching product reviews".to_string()
            }
        });
        let has_reviews_heading = doc.select(&sel("h4")).any(|h| text_of(h) == "Book Reviews");
        let reviews = if has_reviews_heading {
            read_reviews(&doc)
        } else {
            Vec::new()
        };
        // "Reviews served by: POD [on cluster <div>NAME</div>]": the element's own text.
        let served_by = doc.select(&sel("div")).find_map(|d| {
            let own: String = d
                .children()
                .filter_map(|c| c.value().as_text().map(|t| t.to_string()))
                .collect();
            let rest = own.split_once("Reviews served by:")?.1;
            rest.split_whitespace().next().map(str::to_string)
        });
        let version = if reviews_failed {
            ReviewsVersion::Unavailable
        } else if !has_reviews_heading || reviews.is_empty() {
            ReviewsVersion::Unknown
        } else {
            version_of(&reviews, served_by.as_deref())
        };
        Some(ProductPage {
            title,
            book_title,
            details,
            details_error,
            reviews,
            reviews_error,
            served_by,
            version,
        })
    }

    /// Outputs for a step that fetched one page: `title`, `book-title`, `details` (an object),
    /// `reviews-version`. The serving pod's name is left out: its hash changes every deploy.
    pub fn to_outputs(&self) -> Outputs {
        let mut out = Outputs::new();
        out.insert("title".into(), Value::from(self.title.clone()));
        if let Some(t) = &self.book_title {
            out.insert("book-title".into(), Value::from(t.clone()));
        }
        if let Some(d) = &self.details {
            out.insert(
                "details".into(),
                serde_json::to_value(d).unwrap_or(Value::Null),
            );
        }
        out.insert("reviews-version".into(), Value::from(self.version.as_str()));
        out
    }
}

/// Which `reviews` version served a page, or `None` when the HTML is not a product page.
pub fn reviews_version(html: &str) -> Option<ReviewsVersion> {
    ProductPage::parse(html).map(|p| p.version)
}

fn version_of(reviews: &[Review], served_by: Option<&str>) -> ReviewsVersion {
    if let Some(color) = reviews.iter().find_map(|r| r.color.as_deref()) {
        return match color {
            "black" => ReviewsVersion::V2,
            "red" => ReviewsVersion::V3,
            _ => ReviewsVersion::Unknown,
        };
    }
    if reviews.iter().any(|r| r.rating_error.is_some()) {
        // The stars are gone; the pod name (Tailwind layout) still tells v2 from v3.
        return match served_by.and_then(pod_version) {
            Some("v2") => ReviewsVersion::V2,
            Some("v3") => ReviewsVersion::V3,
            _ => ReviewsVersion::RatingsUnavailable,
        };
    }
    ReviewsVersion::V1
}

/// `reviews-v2-7f9d6b6c4d-9kq7p` → `v2`.
fn pod_version(pod: &str) -> Option<&str> {
    let rest = pod.strip_prefix("reviews-")?;
    let v = rest.split('-').next()?;
    (v.len() > 1 && v.starts_with('v') && v[1..].bytes().all(|b| b.is_ascii_digit())).then_some(v)
}

fn read_details(doc: &Html) -> Option<BookDetails> {
    let mut d = BookDetails::default();
    // Bootstrap layout: <dl><dt>Type:</dt>paperback<dt>Pages:</dt>200 …</dl>
    if let Some(dl) = doc.select(&sel("dl")).next() {
        let mut key: Option<String> = None;
        let mut value = String::new();
        for child in dl.children() {
            match child.value() {
                Node::Element(e) if e.name() == "dt" => {
                    if let Some(k) = key.take() {
                        d.set(&k, value.trim().to_string());
                    }
                    value.clear();
                    key = ElementRef::wrap(child).map(text_of);
                }
                Node::Text(t) => value.push_str(t),
                Node::Element(_) => {
                    if let Some(e) = ElementRef::wrap(child) {
                        value.push_str(&text_of(e));
                    }
                }
                _ => {}
            }
        }
        if let Some(k) = key {
            d.set(&k, value.trim().to_string());
        }
        return (d != BookDetails::default()).then_some(d);
    }
    // Tailwind layout: a table with the names in <th> and the values in the first body row.
    let table = doc.select(&sel("table")).next()?;
    let names: Vec<String> = table.select(&sel("th")).map(text_of).collect();
    let values: Vec<String> = table.select(&sel("tbody tr td")).map(text_of).collect();
    for (k, v) in names.iter().zip(values) {
        d.set(k, v);
    }
    (d != BookDetails::default()).then_some(d)
}

fn read_reviews(doc: &Html) -> Vec<Review> {
    let blockquote = sel("blockquote");
    let sections: Vec<ElementRef<'_>> = doc
        .select(&sel("section"))
        .filter(|s| s.select(&blockquote).next().is_some())
        .collect();
    if !sections.is_empty() {
        return sections.into_iter().map(read_tailwind_review).collect();
    }
    doc.select(&blockquote)
        .filter(|b| b.select(&sel("small")).next().is_some())
        .map(read_bootstrap_review)
        .collect()
}

fn read_bootstrap_review(b: ElementRef<'_>) -> Review {
    let mut r = Review {
        text: b.select(&sel("p")).next().map(text_of).unwrap_or_default(),
        reviewer: b
            .select(&sel("small"))
            .next()
            .map(text_of)
            .unwrap_or_default(),
        ..Default::default()
    };
    if let Some(font) = b.select(&sel("font[color]")).next() {
        r.color = font.value().attr("color").map(|c| c.trim().to_string());
        r.stars = Some(font.select(&sel("span.glyphicon-star")).count() as u8);
    }
    r.rating_error = b
        .select(&sel("p i"))
        .next()
        .map(text_of)
        .filter(|t| !t.is_empty());
    r
}

fn read_tailwind_review(s: ElementRef<'_>) -> Review {
    let text = s
        .select(&sel("blockquote"))
        .next()
        .map(text_of)
        .unwrap_or_default();
    let mut r = Review {
        text: text.trim_matches('"').to_string(),
        reviewer: s
            .select(&sel("div.font-semibold"))
            .next()
            .map(text_of)
            .unwrap_or_default(),
        ..Default::default()
    };
    let stars = s
        .select(&sel("div.gap-x-1"))
        .find(|d| d.select(&sel("svg")).next().is_some());
    if let Some(div) = stars {
        r.color = div.value().classes().find_map(|c| {
            let color = c.strip_prefix("text-")?.strip_suffix("-500")?;
            Some(color.to_string())
        });
        r.stars = Some(div.select(&sel("svg[fill=\"currentColor\"]")).count() as u8);
    }
    r.rating_error = s
        .select(&sel("p"))
        .find(|p| has_class(*p, "text-red-"))
        .map(text_of)
        .filter(|t| !t.is_empty());
    r
}

/// An expected split of `reviews` versions over many product pages, in percent, each within
/// `tolerance` percentage points. A version not in `weights` is expected at 0 %.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ReviewsSplit {
    /// Percent per version key (`v1`, `v2`, `v3`, `ratings-unavailable`, `unavailable`,
    /// `unknown`); they add up to 100.
    pub weights: BTreeMap<String, f64>,
    /// Allowed distance from each weight, in percentage points (default 15).
    #[serde(default = "default_tolerance")]
    pub tolerance: f64,
}

fn default_tolerance() -> f64 {
    15.0
}

impl ReviewsSplit {
    /// Problems with the split itself: unknown version keys, negative weights, weights that do
    /// not add up to 100, a negative tolerance.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (k, w) in &self.weights {
            if ReviewsVersion::from_key(k).is_none() {
                let known: Vec<&str> = ReviewsVersion::ALL.iter().map(|v| v.as_str()).collect();
                out.push(format!(
                    "reviews-split: unknown version {k:?} (known: {})",
                    known.join(", ")
                ));
            }
            if !w.is_finite() || *w < 0.0 {
                out.push(format!("reviews-split: weight of {k} must be 0 or more"));
            }
        }
        let sum: f64 = self.weights.values().sum();
        if (sum - 100.0).abs() > 0.01 {
            out.push(format!("reviews-split: weights add up to {sum}, not 100"));
        }
        if !self.tolerance.is_finite() || self.tolerance < 0.0 {
            out.push("reviews-split: tolerance must be 0 or more".to_string());
        }
        out
    }

    /// Compares a histogram (version key → pages) with the split; one mismatch per version
    /// outside its band, naming the version, the band and what was seen.
    pub fn check(&self, histogram: &BTreeMap<String, u64>) -> Vec<Mismatch> {
        let total: u64 = histogram.values().sum();
        if total == 0 {
            return vec![Mismatch {
                what: "reviews-split".into(),
                message: "no Bookinfo product page was seen, so no split can be measured".into(),
            }];
        }
        let mut keys: Vec<&String> = self.weights.keys().chain(histogram.keys()).collect();
        keys.sort();
        keys.dedup();
        let mut out = Vec::new();
        for k in keys {
            let want = self.weights.get(k).copied().unwrap_or(0.0);
            let n = histogram.get(k).copied().unwrap_or(0);
            let got = n as f64 * 100.0 / total as f64;
            if (got - want).abs() > self.tolerance + 1e-9 {
                out.push(Mismatch {
                    what: format!("reviews-split {k}"),
                    message: format!(
                        "expected {want}% ± {}%, got {got:.1}% ({n} of {total} pages)",
                        self.tolerance
                    ),
                });
            }
        }
        out
    }
}

crate::scenario::resolve::resolve_fields!(ReviewsSplit { weights, tolerance });

#[cfg(test)]
mod tests {
    use super::*;

    fn hist(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn pod_versions() {
        assert_eq!(pod_version("reviews-v2-7f9d6b6c4d-9kq7p"), Some("v2"));
        assert_eq!(pod_version("reviews-vx-1"), None);
        assert_eq!(pod_version("ratings-v1-1"), None);
    }

    #[test]
    fn not_a_product_page() {
        assert_eq!(ProductPage::parse("no healthy upstream"), None);
        assert_eq!(
            reviews_version("<html><head><title>404 Not Found</title></head></html>"),
            None
        );
    }

    #[test]
    fn split_within_tolerance_passes_and_outside_names_the_version() {
        let split = ReviewsSplit {
            weights: [("v1".to_string(), 50.0), ("v3".to_string(), 50.0)].into(),
            tolerance: 15.0,
        };
        assert!(split.problems().is_empty());
        assert!(split.check(&hist(&[("v1", 40), ("v3", 60)])).is_empty());
        let m = split.check(&hist(&[("v1", 30), ("v2", 10), ("v3", 60)]));
        let text: Vec<String> = m.iter().map(|m| m.to_string()).collect();
        assert_eq!(
            text,
            vec!["reviews-split v1: expected 50% ± 15%, got 30.0% (30 of 100 pages)",],
            "v2 at 10% is within 0 ± 15"
        );
        let strict = ReviewsSplit {
            weights: [("v3".to_string(), 100.0)].into(),
            tolerance: 0.0,
        };
        let m = strict.check(&hist(&[("v3", 9), ("v1", 1)]));
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].what, "reviews-split v1");
        assert_eq!(m[1].what, "reviews-split v3");
        assert_eq!(strict.check(&BTreeMap::new()).len(), 1);
    }

    #[test]
    fn split_problems() {
        let s = ReviewsSplit {
            weights: [("v4".to_string(), 50.0), ("v1".to_string(), -1.0)].into(),
            tolerance: -2.0,
        };
        let p = s.problems();
        assert_eq!(p.len(), 4, "{p:?}");
    }
}
