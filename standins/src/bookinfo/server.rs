//! STAND-IN plumbing shared by the four Bookinfo apps: the router of the role played, one
//! stdout line per request, and a server that stops gracefully on SIGTERM/SIGINT (as the
//! real apps' servers do when Kubernetes deletes the pod).

use std::future::Future;
use std::time::Instant;

use axum::Router;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::Response;
use tokio::net::TcpListener;

use super::upstream::Upstream;
use super::{Config, Error, Role, details, productpage, ratings, reviews};

/// The HTTP app of the role `config` names, with the access log.
pub fn app(config: &Config) -> Result<Router, Error> {
    let router = match config.role {
        Role::ProductPage => productpage::router(config, Upstream::new()?),
        Role::Details => details::router(),
        Role::Reviews(_) => reviews::router(config, Upstream::new()?),
        Role::Ratings => ratings::router(),
    };
    let role = config.role;
    Ok(router.layer(middleware::from_fn(move |req, next| {
        access_log(role, req, next)
    })))
}

/// Prints `ROLE METHOD PATH STATUS MILLISms request-id=ID` once the response is ready.
async fn access_log(role: Role, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let uri = req.uri().clone();
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_string();
    let res = next.run(req).await;
    println!(
        "{role} {method} {uri} {} {}ms request-id={request_id}",
        res.status().as_u16(),
        start.elapsed().as_millis()
    );
    res
}

/// A future that resolves on SIGTERM or SIGINT. The handlers are installed when this is
/// called, not when the future is first polled, so call it before announcing the address: a
/// SIGTERM sent right after the "listening" line must stop the server, not kill it.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("cannot watch SIGTERM/SIGINT ({e}); the server stops only when killed");
                std::future::pending::<()>().await;
            }
        }
    }
}

/// Listens where `config` says, prints `ROLE listening on ADDR` (the address actually bound,
/// so a test can use port 0), and serves until `shutdown` resolves.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let app = app(&config)?;
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| Error::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| Error::Bind {
        addr: config.listen,
        source,
    })?;
    println!("{} listening on {addr}", config.role);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|source| Error::Serve { addr, source })?;
    println!("{} stopped", config.role);
    Ok(())
}
