//! **STAND-IN** for Grafana as Istio's `samples/addons/grafana.yaml` runs it. Grafana itself is
//! AGPL and is neither used nor copied: this is a small HTTP server that answers the parts of
//! Grafana's HTTP API the harness calls, computed from what the addon mounts:
//!
//! - `GET /api/health`: `{"commit", "database", "version"}`; `database` is `ok` while the data
//!   directory (`[paths] data`, `GF_PATHS_DATA`) is a directory the server could create, else
//!   503 with `failing`, as Grafana answers when its database is down.
//! - `GET /api/search?query=&type=&tag=&folderUIDs=&limit=`: dashboards (`dash-db`) and folders
//!   (`dash-folder`) whose title contains `query` (case-insensitive), sorted by title, with
//!   Grafana's hit fields (`id`, `uid`, `title`, `uri`, `url`, `slug`, `type`, `tags`,
//!   `isStarred`, `folderUid`, `folderTitle`, ...).
//! - `GET /api/dashboards/uid/{uid}`: `{"dashboard": <the file's JSON>, "meta": {...}}`.
//! - `GET /api/folders`: the provisioned folders.
//!
//! The dashboards are read on every request from the file providers of the dashboards
//! provisioning files (`<provisioning>/dashboards/*.yaml`, as the addon's
//! `dashboardproviders.yaml`), each reading the `*.json` files under its `options.path` (where
//! the addon mounts the `istio-*-grafana-dashboards` ConfigMaps), so nothing is canned.
//!
//! Configuration as Grafana takes it: `--config PATH` (default `/etc/grafana/grafana.ini`),
//! its `[server] http_addr`/`http_port` (default all addresses, 3000) and `[paths]
//! data`/`provisioning`, each overridden by `GF_<SECTION>_<KEY>` (`GF_PATHS_PROVISIONING`,
//! `GF_SERVER_HTTP_PORT`, ...). Other settings and arguments are ignored. Where it differs:
//! no users, datasources, alerting or UI; dashboards without a `uid` get a stable one derived
//! from their provider and path (Grafana makes a random one); `$VAR` in provisioning files is
//! not expanded.

mod config;
mod provisioning;
mod server;

pub use config::Config;
pub use provisioning::{Dashboard, Library, Provider, load_library};
pub use server::{router, run};

use std::path::PathBuf;

/// What can stop the Grafana stand-in from starting or serving.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration file named on the command line cannot be read.
    #[error(
        "cannot read Grafana's configuration {path}: {source} (pass --config PATH or mount grafana.ini there)"
    )]
    ConfigFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A setting has a value the stand-in cannot use.
    #[error("setting {key} = {value:?} is not valid: {reason}")]
    Setting {
        /// `section.key` or the environment variable.
        key: String,
        /// The value.
        value: String,
        /// Why.
        reason: String,
    },
    /// A provisioning file cannot be read or parsed.
    #[error("dashboards provisioning file {path}: {reason}")]
    Provisioning {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Listening or serving failed.
    #[error("cannot serve on {addr}: {source}")]
    Serve {
        /// The address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
}
