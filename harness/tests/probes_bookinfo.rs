//! The Bookinfo parser on product pages rendered from the real template, in both layouts
//! (fixtures/probes/bookinfo/README.md says how they were made).

use harness::probes::bookinfo::{
    BookDetails, DETAILS_UNAVAILABLE, ProductPage, RATINGS_UNAVAILABLE, REVIEWS_UNAVAILABLE,
    ReviewsVersion, reviews_version,
};
use rstest::rstest;

fn fixture(name: &str) -> String {
    let path = format!(
        "{}/../fixtures/probes/bookinfo/{name}.html",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

#[rstest]
#[case::bootstrap_v1("bootstrap-v1", ReviewsVersion::V1)]
#[case::bootstrap_v2("bootstrap-v2", ReviewsVersion::V2)]
#[case::bootstrap_v3("bootstrap-v3", ReviewsVersion::V3)]
#[case::bootstrap_ratings("bootstrap-ratings-unavailable", ReviewsVersion::RatingsUnavailable)]
#[case::bootstrap_reviews("bootstrap-reviews-unavailable", ReviewsVersion::Unavailable)]
#[case::bootstrap_details("bootstrap-details-unavailable", ReviewsVersion::V1)]
#[case::tailwind_v1("tailwind-v1", ReviewsVersion::V1)]
#[case::tailwind_v2("tailwind-v2", ReviewsVersion::V2)]
#[case::tailwind_v3("tailwind-v3", ReviewsVersion::V3)]
// The Tailwind page names the pod, so a v3 without ratings is still known as v3.
#[case::tailwind_ratings("tailwind-ratings-unavailable", ReviewsVersion::V3)]
#[case::tailwind_reviews("tailwind-reviews-unavailable", ReviewsVersion::Unavailable)]
#[case::tailwind_details("tailwind-details-unavailable", ReviewsVersion::V1)]
fn every_fixture_tells_its_reviews_version(#[case] name: &str, #[case] want: ReviewsVersion) {
    let html = fixture(name);
    let page = ProductPage::parse(&html).expect("a product page");
    assert_eq!(page.version, want, "{name}: {page:#?}");
    assert_eq!(reviews_version(&html), Some(want));
    assert_eq!(page.title, "Simple Bookstore App");
    assert_eq!(page.book_title.as_deref(), Some("The Comedy of Errors"));
}

#[rstest]
#[case("bootstrap-v2", Some("123-1234567890"))]
#[case("tailwind-v2", None)]
fn details_as_shown(#[case] name: &str, #[case] isbn_13: Option<&str>) {
    let page = ProductPage::parse(&fixture(name)).unwrap();
    assert_eq!(
        page.details,
        Some(BookDetails {
            kind: Some("paperback".into()),
            pages: Some("200".into()),
            publisher: Some("PublisherA".into()),
            language: Some("English".into()),
            isbn_10: Some("1234567890".into()),
            isbn_13: isbn_13.map(str::to_string),
        })
    );
    assert_eq!(page.details_error, None);
}

#[rstest]
#[case("bootstrap-v3", None)]
#[case("tailwind-v3", Some("reviews-v3-6c7b5d7f8b-x4wzn"))]
fn reviews_with_red_stars(#[case] name: &str, #[case] pod: Option<&str>) {
    let page = ProductPage::parse(&fixture(name)).unwrap();
    assert_eq!(page.reviews.len(), 2, "{page:#?}");
    let (r1, r2) = (&page.reviews[0], &page.reviews[1]);
    assert_eq!(r1.reviewer, "Reviewer1");
    assert_eq!(
        r1.text,
        "An extremely entertaining play by Shakespeare. The slapstick humour is refreshing!"
    );
    assert_eq!((r1.stars, r1.color.as_deref()), (Some(5), Some("red")));
    assert_eq!(r2.reviewer, "Reviewer2");
    assert_eq!((r2.stars, r2.color.as_deref()), (Some(4), Some("red")));
    assert_eq!(page.served_by.as_deref(), pod);
    assert_eq!(page.reviews_error, None);
}

#[rstest]
#[case("bootstrap-v1")]
#[case("tailwind-v1")]
fn v1_reviews_have_no_rating(#[case] name: &str) {
    let page = ProductPage::parse(&fixture(name)).unwrap();
    assert_eq!(page.reviews.len(), 2);
    assert!(
        page.reviews
            .iter()
            .all(|r| r.stars.is_none() && r.color.is_none() && r.rating_error.is_none()),
        "{page:#?}"
    );
}

#[rstest]
#[case("bootstrap-ratings-unavailable")]
#[case("tailwind-ratings-unavailable")]
fn ratings_errors_replace_the_stars(#[case] name: &str) {
    let page = ProductPage::parse(&fixture(name)).unwrap();
    assert_eq!(page.reviews.len(), 2);
    for r in &page.reviews {
        assert_eq!(
            r.rating_error.as_deref(),
            Some(RATINGS_UNAVAILABLE),
            "{r:?}"
        );
        assert_eq!(r.stars, None);
    }
}

#[rstest]
#[case("bootstrap-reviews-unavailable")]
#[case("tailwind-reviews-unavailable")]
fn reviews_unavailable_page(#[case] name: &str) {
    let page = ProductPage::parse(&fixture(name)).unwrap();
    assert_eq!(page.reviews_error.as_deref(), Some(REVIEWS_UNAVAILABLE));
    assert!(page.reviews.is_empty());
    assert!(page.details.is_some(), "details still shown");
}

#[rstest]
#[case("bootstrap-details-unavailable")]
#[case("tailwind-details-unavailable")]
fn details_unavailable_page(#[case] name: &str) {
    let page = ProductPage::parse(&fixture(name)).unwrap();
    assert_eq!(page.details, None);
    assert_eq!(page.details_error.as_deref(), Some(DETAILS_UNAVAILABLE));
    assert_eq!(page.reviews.len(), 2);
}

#[test]
fn outputs_leave_out_the_pod_name() {
    let page = ProductPage::parse(&fixture("tailwind-v2")).unwrap();
    assert_eq!(
        serde_json::Value::Object(page.to_outputs()),
        serde_json::json!({
            "title": "Simple Bookstore App",
            "book-title": "The Comedy of Errors",
            "details": {
                "type": "paperback", "pages": "200", "publisher": "PublisherA",
                "language": "English", "isbn-10": "1234567890"
            },
            "reviews-version": "v2"
        })
    );
}
