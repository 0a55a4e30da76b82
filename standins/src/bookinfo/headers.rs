//! STAND-IN for Bookinfo's trace-context propagation: the headers every Bookinfo app copies
//! from the request it serves onto the requests it makes, so that the spans Envoy sidecars
//! report for each hop join into one trace.
//!
//! Follows the lists in istio/istio `samples/bookinfo/src/productpage/productpage.py`
//! (`getForwardHeaders`) and `samples/bookinfo/src/reviews/reviews-application/src/main/java/
//! application/rest/LibertyRestEndpoint.java` (`headers_to_propagate`), taken together.

use axum::http::{HeaderMap, HeaderName, HeaderValue};

/// The headers forwarded from an incoming request to the outgoing ones.
pub const PROPAGATED: &[&str] = &[
    // Istio's request id: access logs, consistent sampling.
    "x-request-id",
    // Zipkin B3, multi-header and single-header forms (Istio's default tracer).
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
    "b3",
    // W3C Trace Context.
    "traceparent",
    "tracestate",
    // Lightstep, Datadog, Cloud Trace, gRPC binary, SkyWalking.
    "x-ot-span-context",
    "x-datadog-trace-id",
    "x-datadog-parent-id",
    "x-datadog-sampling-priority",
    "x-cloud-trace-context",
    "grpc-trace-bin",
    "sw8",
    // Application and session headers (routing by user in Istio's request-routing task).
    "end-user",
    "user-agent",
    "cookie",
    "authorization",
    "jwt",
];

/// The [`PROPAGATED`] headers of `incoming`, every value kept.
pub fn forwarded(incoming: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for name in PROPAGATED {
        let name = HeaderName::from_static(name);
        for value in incoming.get_all(&name) {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// [`forwarded`] plus `end-user: USER` when a user is signed in (what `productpage` adds).
pub fn forwarded_for_user(incoming: &HeaderMap, user: Option<&str>) -> HeaderMap {
    let mut out = forwarded(incoming);
    if let Some(value) = user.and_then(|u| HeaderValue::from_str(u).ok()) {
        out.insert(HeaderName::from_static("end-user"), value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_headers_pass_and_others_do_not() {
        let mut incoming = HeaderMap::new();
        incoming.insert("x-request-id", HeaderValue::from_static("r-1"));
        incoming.insert("x-b3-traceid", HeaderValue::from_static("80f198ee56343ba8"));
        incoming.insert("traceparent", HeaderValue::from_static("00-abc-def-01"));
        incoming.insert("host", HeaderValue::from_static("productpage:9080"));
        incoming.insert("content-length", HeaderValue::from_static("0"));
        let out = forwarded(&incoming);
        assert_eq!(out.len(), 3);
        assert_eq!(out["x-request-id"], "r-1");
        assert_eq!(out["x-b3-traceid"], "80f198ee56343ba8");
        assert_eq!(out["traceparent"], "00-abc-def-01");
        assert!(out.get("host").is_none());
    }

    #[test]
    fn a_signed_in_user_becomes_end_user() {
        let mut incoming = HeaderMap::new();
        incoming.insert("end-user", HeaderValue::from_static("mallory"));
        let out = forwarded_for_user(&incoming, Some("jason"));
        assert_eq!(out.get_all("end-user").iter().count(), 1);
        assert_eq!(out["end-user"], "jason");
        assert_eq!(forwarded_for_user(&incoming, None)["end-user"], "mallory");
    }

    #[test]
    fn every_name_is_a_valid_lowercase_header() {
        for name in PROPAGATED {
            assert_eq!(HeaderName::from_static(name).as_str(), *name);
        }
    }
}
