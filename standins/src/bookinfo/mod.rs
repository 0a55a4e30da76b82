//! **STAND-IN** for the four applications of Istio's Bookinfo sample (`productpage`,
//! `details`, `reviews` v1/v2/v3, `ratings`).
//!
//! Why: the real apps ship only as images (`docker.io/istio/examples-bookinfo-*`,
//! `registry.istio.io/release/examples-bookinfo-*`) built from Python, Ruby, Java/Liberty and
//! Node.js, and no image registry can be reached here. One small binary takes their place, packed
//! under the real image names, so the release's `samples/bookinfo/platform/kube/bookinfo.yaml`
//! applies unchanged and the traffic between the apps (and so through Envoy sidecars) is the
//! traffic Bookinfo makes.
//!
//! What is reimplemented (each module names the istio/istio source it follows):
//! - every role listens on `0.0.0.0:9080` and answers `/health` as the real one does;
//! - `productpage` renders the Bootstrap-layout product page (`<title>Simple Bookstore App`)
//!   from `details` and `reviews`, called over plain HTTP by service name, and degrades with
//!   the real error texts; it serves `/`, `/api/v1/products...`, `/login`, `/logout`;
//! - `reviews` v1 shows no ratings, v2 black stars, v3 red stars (`ENABLE_RATINGS`,
//!   `STAR_COLOR`), calling `ratings` for v2/v3;
//! - every app forwards the tracing headers Bookinfo forwards ([`headers`]), so the spans the
//!   sidecars emit join into one trace;
//! - one log line per request on stdout; SIGTERM (and SIGINT) stop the server gracefully.
//!
//! Where it differs from the real apps: no OpenTracing tracer in `productpage` (the `x-b3-*`
//! headers are forwarded verbatim; the real one re-injects the same values, and makes fresh
//! ones only when none came in), the login is a plain `user` cookie instead of Flask's signed
//! session, `/static/...` serves empty stylesheets and scripts, `/metrics` counts requests under
//! a stand-in metric name, `ratings` keeps its data in memory only (no `SERVICE_VERSION=v2`
//! database, no `v-faulty`/`v-delayed` modes), `details` has no external book service, and the
//! page has only the Bootstrap layout (the later Tailwind one is not rendered).
//!
//! Environment (the real apps' variables, plus three stand-in-only overrides for tests):
//! `SERVICES_DOMAIN`, `DETAILS_HOSTNAME`, `REVIEWS_HOSTNAME`, `RATINGS_HOSTNAME`,
//! `ENABLE_RATINGS`, `STAR_COLOR`, `HOSTNAME`, `CLUSTER_NAME`, `PORT` (default 9080);
//! `BOOKINFO_LISTEN` (a full `ip:port` to listen on), `BOOKINFO_DETAILS_URL`,
//! `BOOKINFO_REVIEWS_URL`, `BOOKINFO_RATINGS_URL` (base URLs replacing `http://<host>:9080`).

pub mod config;
pub mod details;
pub mod headers;
pub mod page;
pub mod productpage;
pub mod ratings;
pub mod reviews;
pub mod server;
pub mod upstream;

pub use config::{Config, ReviewsVersion, Role};
pub use server::{app, run, shutdown_signal};

use std::net::SocketAddr;

/// What can stop a Bookinfo stand-in from starting or serving.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The command line does not name a role (and version) this binary plays.
    #[error(
        "{0}\nusage: bookinfo productpage|details|ratings [v1] | bookinfo reviews v1|v2|v3 \
         (the role the image stands in for, as its CMD gives it)"
    )]
    Usage(String),
    /// An environment variable has a value the stand-in cannot use.
    #[error("environment variable {name}={value:?} is not valid: {reason}")]
    Env {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The listening socket could not be opened.
    #[error(
        "cannot listen on {addr}: {source} (another process on the port? set PORT or \
         BOOKINFO_LISTEN to another one)"
    )]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The HTTP server stopped with an error.
    #[error("serving HTTP on {addr} failed: {source}")]
    Serve {
        /// The address served.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The HTTP client for the calls to the other services could not be built.
    #[error("cannot build the HTTP client for calls to the other Bookinfo services: {0}")]
    Client(#[source] reqwest::Error),
}
