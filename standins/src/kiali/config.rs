//! The parts of Kiali's configuration file the stand-in uses (everything else is ignored).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::Error;

/// Kiali's default Prometheus when the config names none.
pub const DEFAULT_PROMETHEUS: &str = "http://prometheus.istio-system:9090";

/// Kiali's configuration (`config.yaml` of the addon's ConfigMap).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default)]
pub struct Config {
    /// `server`.
    pub server: Server,
    /// `external_services`.
    pub external_services: ExternalServices,
    /// `api`.
    pub api: Api,
}

/// `server`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Server {
    /// `server.address` (empty: all addresses).
    pub address: String,
    /// `server.port`, default 20001 (0: an ephemeral port).
    pub port: u16,
    /// `server.web_root`, default `/`.
    pub web_root: String,
    /// `server.metrics_enabled` (Kiali 1.x), default true.
    pub metrics_enabled: bool,
    /// `server.metrics_port` (Kiali 1.x), default 9090.
    pub metrics_port: u16,
    /// `server.observability` (Kiali 2.x; overrides the 1.x fields when it has `metrics`).
    pub observability: Observability,
}

/// `server.observability`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default)]
pub struct Observability {
    /// `server.observability.metrics`.
    pub metrics: Option<MetricsServer>,
}

/// `server.observability.metrics`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct MetricsServer {
    /// `enabled`, default true.
    pub enabled: bool,
    /// `port`, default 9090.
    pub port: u16,
}

impl Default for MetricsServer {
    fn default() -> Self {
        MetricsServer {
            enabled: true,
            port: 9090,
        }
    }
}

impl Default for Server {
    fn default() -> Self {
        Server {
            address: String::new(),
            port: 20001,
            web_root: "/".into(),
            metrics_enabled: true,
            metrics_port: 9090,
            observability: Observability::default(),
        }
    }
}

/// `external_services`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default)]
pub struct ExternalServices {
    /// `external_services.prometheus`.
    pub prometheus: Prometheus,
}

/// `external_services.prometheus`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default)]
pub struct Prometheus {
    /// `url` (empty: [`DEFAULT_PROMETHEUS`]).
    pub url: String,
}

/// `api`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default)]
pub struct Api {
    /// `api.namespaces`.
    pub namespaces: ApiNamespaces,
}

/// `api.namespaces`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default)]
pub struct ApiNamespaces {
    /// `exclude`: regular expressions of namespaces not listed.
    pub exclude: Vec<String>,
}

impl Config {
    /// The config of the command line: `-config PATH` / `--config PATH` / `-config=PATH`
    /// (defaults when none is given, as Kiali).
    pub fn from_args(args: &[String]) -> Result<Config, Error> {
        let mut path = None;
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.trim_start_matches('-') {
                "config" if a.starts_with('-') => {
                    path = Some(PathBuf::from(
                        it.next()
                            .ok_or_else(|| Error::Usage(format!("{a} needs a file")))?,
                    ))
                }
                f if a.starts_with('-') && f.starts_with("config=") => {
                    path = Some(PathBuf::from(&f["config=".len()..]))
                }
                _ => {} // Kiali's other flags (none in the addon) are ignored
            }
        }
        match path {
            Some(p) => Config::read(&p),
            None => Ok(Config::default()),
        }
    }

    /// Reads a config file.
    pub fn read(path: &Path) -> Result<Config, Error> {
        let err = |reason: String| Error::Config {
            path: path.to_path_buf(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        if text.trim().is_empty() {
            return Ok(Config::default());
        }
        serde_saphyr::from_str(&text).map_err(|e| err(e.to_string()))
    }

    /// The Prometheus base URL.
    pub fn prometheus_url(&self) -> &str {
        let u = self.external_services.prometheus.url.trim();
        if u.is_empty() { DEFAULT_PROMETHEUS } else { u }
    }

    /// The web root without a trailing slash (`""` for `/`).
    pub fn web_root(&self) -> String {
        self.server
            .web_root
            .trim()
            .trim_end_matches('/')
            .to_string()
    }

    /// The metrics server's address (the addon's `http-metrics` port, which its Prometheus
    /// scrapes), when enabled.
    pub fn metrics_addr(&self) -> Option<String> {
        let (enabled, port) = match &self.server.observability.metrics {
            Some(m) => (m.enabled, m.port),
            None => (self.server.metrics_enabled, self.server.metrics_port),
        };
        let host = self.listen_addr();
        let host = host.rsplit_once(':').map_or("0.0.0.0", |(h, _)| h);
        enabled.then(|| format!("{host}:{port}"))
    }

    /// The address to bind.
    pub fn listen_addr(&self) -> String {
        let host = if self.server.address.is_empty() {
            "0.0.0.0"
        } else {
            &self.server.address
        };
        format!("{host}:{}", self.server.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addon_style_config() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("config.yaml");
        std::fs::write(
            &p,
            "auth:\n  strategy: anonymous\nistio_namespace: istio-system\nserver:\n  port: 20001\n  web_root: /kiali\n",
        )
        .unwrap();
        let c = Config::from_args(&["-config".into(), p.display().to_string()]).unwrap();
        assert_eq!(c.web_root(), "/kiali");
        assert_eq!(c.prometheus_url(), DEFAULT_PROMETHEUS);
        assert_eq!(c.listen_addr(), "0.0.0.0:20001");
        assert_eq!(c.metrics_addr().as_deref(), Some("0.0.0.0:9090"));
        std::fs::write(
            &p,
            "server:\n  observability:\n    metrics:\n      enabled: false\n      port: 9090\n",
        )
        .unwrap();
        assert_eq!(Config::read(&p).unwrap().metrics_addr(), None);
        assert!(Config::from_args(&["-config".into()]).is_err());
        assert!(Config::from_args(&["-config=/nonexistent".into()]).is_err());
        assert_eq!(Config::from_args(&[]).unwrap(), Config::default());
    }
}
