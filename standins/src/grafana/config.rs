//! Grafana's settings as the stand-in reads them: the ini file, then `GF_<SECTION>_<KEY>`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::Error;

/// Grafana's default configuration file in its images.
pub const DEFAULT_CONFIG: &str = "/etc/grafana/grafana.ini";

/// The settings the stand-in uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `[server] http_addr` (empty: all addresses).
    pub http_addr: String,
    /// `[server] http_port` (0: an ephemeral port).
    pub http_port: u16,
    /// `[paths] data`: the directory whose health `/api/health` reports as `database`.
    pub data: PathBuf,
    /// `[paths] provisioning`: dashboards providers are read from its `dashboards/` folder.
    pub provisioning: PathBuf,
}

impl Config {
    /// From the command line (`--config PATH`, `-config=PATH`, `cfg:...` and other arguments
    /// are ignored) and the environment (`env` answers a variable's value).
    pub fn from_args_env(
        args: &[String],
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, Error> {
        let named = config_arg(args);
        let path = named
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
        let ini = match std::fs::read_to_string(&path) {
            Ok(text) => parse_ini(&text),
            // Grafana starts without a custom file; one named on the command line must exist.
            Err(_) if named.is_none() => BTreeMap::new(),
            Err(source) => return Err(Error::ConfigFile { path, source }),
        };
        let get = |section: &str, key: &str, default: &str| -> (String, String) {
            let var = format!("GF_{}_{}", section, key)
                .to_uppercase()
                .replace(['.', '-'], "_");
            match env(&var) {
                Some(v) => (var, v),
                None => (
                    format!("{section}.{key}"),
                    ini.get(&(section.to_string(), key.to_string()))
                        .cloned()
                        .unwrap_or_else(|| default.to_string()),
                ),
            }
        };
        let (port_key, port) = get("server", "http_port", "3000");
        let http_port = port.trim().parse().map_err(|e| Error::Setting {
            key: port_key,
            value: port.clone(),
            reason: format!("{e}: a TCP port is expected"),
        })?;
        Ok(Config {
            http_addr: get("server", "http_addr", "").1.trim().to_string(),
            http_port,
            data: PathBuf::from(get("paths", "data", "/var/lib/grafana").1.trim()),
            provisioning: PathBuf::from(get("paths", "provisioning", "conf/provisioning").1.trim()),
        })
    }

    /// The address to bind: `http_addr` (all addresses when empty) and `http_port`.
    pub fn listen_addr(&self) -> String {
        let host = if self.http_addr.is_empty() {
            "0.0.0.0"
        } else {
            &self.http_addr
        };
        format!("{host}:{}", self.http_port)
    }
}

fn config_arg(args: &[String]) -> Option<PathBuf> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let flag = a.trim_start_matches('-');
        if a.starts_with('-') && flag == "config" {
            return it.next().map(PathBuf::from);
        }
        if let Some(v) = flag.strip_prefix("config=").filter(|_| a.starts_with('-')) {
            return Some(PathBuf::from(v));
        }
    }
    None
}

/// `[section]` and `key = value` lines of an ini file (`;` and `#` start comments; values may
/// be quoted), keyed by (section, key).
pub fn parse_ini(text: &str) -> BTreeMap<(String, String), String> {
    let mut out = BTreeMap::new();
    let mut section = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s.trim().to_string();
        } else if let Some((k, v)) = line.split_once('=') {
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|x| x.strip_suffix('"'))
                .unwrap_or(v);
            out.insert((section.clone(), k.trim().to_string()), v.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ini_then_environment() {
        let d = tempfile::tempdir().unwrap();
        let ini = d.path().join("grafana.ini");
        std::fs::write(
            &ini,
            "[paths]\ndata = /var/lib/grafana/\nprovisioning = /etc/grafana/provisioning\n\
             [server]\n; comment\nhttp_port = 3001\n",
        )
        .unwrap();
        let args = vec!["--config".to_string(), ini.display().to_string()];
        let c = Config::from_args_env(&args, |_| None).unwrap();
        assert_eq!(c.http_port, 3001);
        assert_eq!(c.provisioning, PathBuf::from("/etc/grafana/provisioning"));
        let c = Config::from_args_env(&args, |k| {
            (k == "GF_PATHS_PROVISIONING").then(|| "/p".to_string())
        })
        .unwrap();
        assert_eq!(c.provisioning, PathBuf::from("/p"));
        assert_eq!(c.listen_addr(), "0.0.0.0:3001");
        let bad =
            Config::from_args_env(&args, |k| (k == "GF_SERVER_HTTP_PORT").then(|| "x".into()));
        assert!(bad.unwrap_err().to_string().contains("GF_SERVER_HTTP_PORT"));
        let missing = vec!["-config=/nonexistent/grafana.ini".to_string()];
        assert!(Config::from_args_env(&missing, |_| None).is_err());
    }
}
