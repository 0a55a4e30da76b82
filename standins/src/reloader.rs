//! **STAND-IN** for the config reloaders of Istio's Prometheus addon
//! (`samples/addons/prometheus.yaml`): `jimmidyson/configmap-reload` (Istio 1.12:
//! `--volume-dir`, `--webhook-url`) and `prometheus-operator/prometheus-config-reloader`
//! (today's: `--watched-dir`, `--reload-url`, `--listen-address`, `/healthz`). Neither image can
//! be pulled here and neither program is on the Go module proxy's approved list, so this one
//! does what both do for the addon: when a file in a watched directory changes (a ConfigMap
//! update swaps the volume's `..data` link), it POSTs to the reload URL, Prometheus's
//! `/-/reload`. Flags the addon does not pass are accepted and ignored, with a log line.
//!
//! Followed: configmap-reload's `configmap-reload.go` (the webhook on change, retried) and
//! prometheus-operator's `cmd/prometheus-config-reloader/main.go` (flags, `/healthz`).

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A command line the reloader cannot run with.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ArgsError {
    /// No `--volume-dir` / `--watched-dir`.
    #[error("no directory to watch: pass --volume-dir=DIR or --watched-dir=DIR")]
    NoDirectory,
    /// No `--webhook-url` / `--reload-url`.
    #[error("no reload URL: pass --webhook-url=URL or --reload-url=URL")]
    NoUrl,
    /// `--listen-address` that is not host:port.
    #[error("--listen-address={0:?} is not host:port")]
    Listen(String),
}

/// What to watch, whom to tell, and where to answer health checks.
#[derive(Debug, Clone, PartialEq)]
pub struct Args {
    /// The watched directories.
    pub dirs: Vec<PathBuf>,
    /// The URL POSTed on a change.
    pub url: String,
    /// Where `/healthz` is served (both programs' defaults: 9533 and 8080).
    pub listen: SocketAddr,
    /// Flags given but not acted on.
    pub ignored: Vec<String>,
}

impl Args {
    /// Both programs' flags, `--name=value` or `--name value`.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Self, ArgsError> {
        let mut it = args.into_iter();
        let (mut dirs, mut url, mut listen, mut ignored) = (vec![], None, None, vec![]);
        while let Some(a) = it.next() {
            let (name, inline) = match a.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (a.clone(), None),
            };
            let known = [
                "--volume-dir",
                "--watched-dir",
                "--webhook-url",
                "--reload-url",
                "--listen-address",
                "--web.listen-address",
            ];
            if !known.contains(&name.as_str()) {
                ignored.push(a);
                continue;
            }
            let value = inline.or_else(|| it.next()).unwrap_or_default();
            match name.as_str() {
                "--volume-dir" | "--watched-dir" => dirs.push(PathBuf::from(value)),
                "--webhook-url" | "--reload-url" => url = Some(value),
                _ => listen = Some(value),
            }
        }
        let listen = listen.unwrap_or_else(|| "0.0.0.0:8080".into());
        let host_port = if listen.starts_with(':') {
            format!("0.0.0.0{listen}")
        } else {
            listen.clone()
        };
        if dirs.is_empty() {
            return Err(ArgsError::NoDirectory);
        }
        Ok(Args {
            listen: host_port.parse().map_err(|_| ArgsError::Listen(listen))?,
            url: url.ok_or(ArgsError::NoUrl)?,
            dirs,
            ignored,
        })
    }
}

/// A hash of every visible file's name and content (links followed, `..`-names skipped as
/// the kubelet's `..data` bookkeeping): equal while nothing a reader sees has changed.
pub fn fingerprint(dirs: &[PathBuf]) -> u64 {
    let mut h = DefaultHasher::new();
    for dir in dirs {
        let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| !name_of(p).starts_with(".."))
            .collect();
        names.sort();
        for p in names {
            name_of(&p).hash(&mut h);
            std::fs::read(&p).unwrap_or_default().hash(&mut h);
        }
    }
    h.finish()
}

fn name_of(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Watches `args.dirs` every `period` and POSTs `args.url` after each change, until the
/// reload succeeds (retried each period). Counts successful reloads in `reloads`.
pub async fn watch(args: &Args, period: Duration, reloads: Arc<AtomicU64>) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    let mut seen = fingerprint(&args.dirs);
    let mut pending = false;
    loop {
        tokio::time::sleep(period).await;
        let now = fingerprint(&args.dirs);
        if now != seen {
            eprintln!("config-reloader STAND-IN: {:?} changed", args.dirs);
            seen = now;
            pending = true;
        }
        if pending {
            match client.post(&args.url).send().await {
                Ok(r) if r.status().is_success() => {
                    pending = false;
                    reloads.fetch_add(1, Ordering::Relaxed);
                    eprintln!("config-reloader STAND-IN: reloaded ({})", args.url);
                }
                Ok(r) => eprintln!(
                    "config-reloader STAND-IN: {} answered {}",
                    args.url,
                    r.status()
                ),
                Err(e) => eprintln!("config-reloader STAND-IN: {}: {e}", args.url),
            }
        }
    }
}

/// Serves `/healthz` (200 `OK`) and `/metrics` (the reload count) on `args.listen`.
pub async fn serve(args: &Args, reloads: Arc<AtomicU64>) -> std::io::Result<()> {
    use axum::routing::get;
    let app = axum::Router::new()
        .route("/healthz", get(|| async { "OK" }))
        .route(
            "/metrics",
            get(move || {
                let n = reloads.load(Ordering::Relaxed);
                async move { format!("reloader_reloads_total {n}\n") }
            }),
        );
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    axum::serve(listener, app).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(a: &[&str]) -> Result<Args, ArgsError> {
        Args::parse(a.iter().map(|s| s.to_string()))
    }

    #[test]
    fn both_programs_flags_as_the_addons_pass_them() {
        let old = parse(&[
            "--volume-dir=/etc/config",
            "--webhook-url=http://127.0.0.1:9090/-/reload",
        ])
        .unwrap();
        assert_eq!(old.dirs, [PathBuf::from("/etc/config")]);
        assert_eq!(old.url, "http://127.0.0.1:9090/-/reload");
        let new = parse(&[
            "--watched-dir=/etc/config",
            "--listen-address=0.0.0.0:8080",
            "--reload-url",
            "http://127.0.0.1:9090/-/reload",
            "--log-level=info",
        ])
        .unwrap();
        assert_eq!(new.listen, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(new.ignored, ["--log-level=info"]);
        assert_eq!(parse(&["--reload-url=x"]), Err(ArgsError::NoDirectory));
        assert_eq!(parse(&["--watched-dir=/d"]), Err(ArgsError::NoUrl));
    }

    #[test]
    fn the_fingerprint_changes_with_content_not_with_kubelet_bookkeeping() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("prometheus.yml"), "a").unwrap();
        let dirs = vec![d.path().to_path_buf()];
        let first = fingerprint(&dirs);
        std::fs::write(d.path().join("..2026_12_04"), "x").unwrap();
        assert_eq!(fingerprint(&dirs), first);
        std::fs::write(d.path().join("prometheus.yml"), "b").unwrap();
        assert_ne!(fingerprint(&dirs), first);
    }
}
