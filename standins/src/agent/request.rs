//! `pilot-agent request [--debug-port=N] METHOD PATH`: one HTTP request to the proxy's admin
//! (Envoy's 15000 unless `--debug-port` says otherwise), its body printed, as Istio's
//! `pilot/cmd/pilot-agent/app/request.go` does (e.g. `pilot-agent request POST
//! healthcheck/fail`). The native sidecar's preStop hook `request --debug-port=15020 POST drain`
//! asks the agent to drain: the stand-in has no graceful drain (Envoy stops on the SIGTERM that
//! follows), so that one succeeds at once.

use std::net::SocketAddr;

use hyper::Method;

/// A `request` command line that cannot be run, or a request that failed.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// Wrong arguments.
    #[error("pilot-agent request: {0} (usage: request [--debug-port=N] METHOD PATH)")]
    Usage(String),
    /// The request itself failed.
    #[error("pilot-agent request: {0}")]
    Http(#[from] super::status::HttpError),
    /// The admin answered an error status.
    #[error("pilot-agent request: {method} {path} answered {status}: {body}")]
    Status {
        /// Method sent.
        method: Method,
        /// Path asked.
        path: String,
        /// Status answered.
        status: hyper::StatusCode,
        /// Body answered.
        body: String,
    },
}

/// Parsed arguments: the port, method and path (with a leading `/`).
pub fn parse(args: &[String]) -> Result<(u16, Method, String), RequestError> {
    let mut port = 15000;
    let mut rest = vec![];
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let value = match a.strip_prefix("--debug-port") {
            Some(v) if v.starts_with('=') => v[1..].to_string(),
            Some("") => it.next().cloned().unwrap_or_default(),
            _ => {
                rest.push(a.clone());
                continue;
            }
        };
        port = value
            .parse()
            .map_err(|_| RequestError::Usage(format!("--debug-port {value:?} is not a port")))?;
    }
    let [method, path] = rest.as_slice() else {
        return Err(RequestError::Usage(format!(
            "expected METHOD PATH, got {rest:?}"
        )));
    };
    let method = Method::from_bytes(method.to_uppercase().as_bytes())
        .map_err(|_| RequestError::Usage(format!("{method:?} is not an HTTP method")))?;
    Ok((port, method, format!("/{}", path.trim_start_matches('/'))))
}

/// Runs the command: prints the answer's body; fails on a non-2xx answer.
pub fn run(args: &[String]) -> Result<i32, RequestError> {
    let (port, method, path) = parse(args)?;
    if port != 15000 && path == "/drain" {
        return Ok(0);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let (status, body) = rt.block_on(super::status::request(method.clone(), addr, &path))?;
    let body = String::from_utf8_lossy(&body).into_owned();
    if !status.is_success() {
        return Err(RequestError::Status {
            method,
            path,
            status,
            body,
        });
    }
    print!("{body}");
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_admin_port_unless_a_debug_port_is_given() {
        let (port, m, p) = parse(&args(&["POST", "healthcheck/fail"])).unwrap();
        assert_eq!(
            (port, m, p.as_str()),
            (15000, Method::POST, "/healthcheck/fail")
        );
        let (port, _, p) = parse(&args(&["--debug-port=15020", "POST", "drain"])).unwrap();
        assert_eq!((port, p.as_str()), (15020, "/drain"));
        assert!(parse(&args(&["POST"])).is_err());
        assert!(parse(&args(&["--debug-port", "x", "GET", "stats"])).is_err());
    }
}
