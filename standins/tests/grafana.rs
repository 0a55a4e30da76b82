//! The Grafana STAND-IN binary against the release's own addon: the `grafana` ConfigMap's
//! `grafana.ini` and `dashboardproviders.yaml` and the `istio-*-grafana-dashboards` ConfigMaps
//! of `samples/addons/grafana.yaml`, laid out as the kubelet mounts them (under a temporary
//! root, ConfigMap folders with their `..data` links), and the harness's Grafana probe run
//! against the process. Needs `ISTIO_E2E_ISTIO_DIR` (a release directory, or a directory of
//! release directories); without it the test says so and checks nothing.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use harness::probes::grafana::{GrafanaCheck, check_until};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

fn releases() -> Option<Vec<PathBuf>> {
    let dir = PathBuf::from(std::env::var_os("ISTIO_E2E_ISTIO_DIR")?);
    let addon = |d: &Path| d.join("samples/addons/grafana.yaml").is_file();
    if addon(&dir) {
        return Some(vec![dir]);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|d| addon(d))
        .collect();
    found.sort();
    Some(found)
}

/// The `data` of each ConfigMap of a manifest, by name.
fn configmaps(manifest: &str) -> Vec<(String, serde_json::Map<String, Value>)> {
    let docs: Vec<Value> = serde_saphyr::from_str_multiple(manifest).expect("the addon parses");
    docs.into_iter()
        .filter(|d| d["kind"] == "ConfigMap")
        .map(|d| {
            let name = d["metadata"]["name"].as_str().unwrap_or("").to_string();
            (name, d["data"].as_object().cloned().unwrap_or_default())
        })
        .collect()
}

/// Writes a ConfigMap volume as the kubelet does: files in `..<ts>/`, `..data` -> it, and a
/// link per key.
fn mount(dir: &Path, data: &serde_json::Map<String, Value>) {
    let ts = dir.join("..2026_12_04_00_00_00.1");
    std::fs::create_dir_all(&ts).unwrap();
    for (k, v) in data {
        std::fs::write(ts.join(k), v.as_str().unwrap()).unwrap();
        std::os::unix::fs::symlink(format!("..data/{k}"), dir.join(k)).unwrap();
    }
    std::os::unix::fs::symlink(ts.file_name().unwrap(), dir.join("..data")).unwrap();
}

/// The pod's filesystem under `root` (paths of the addon's volumeMounts, under `root`), with
/// the dashboards ConfigMaps mounted only when `dashboards`. Returns the `--config` file.
fn lay_out(root: &Path, manifest: &str, dashboards: bool) -> PathBuf {
    let under = |p: &str| root.join(p.trim_start_matches('/'));
    for (name, data) in configmaps(manifest) {
        match name.as_str() {
            "grafana" => {
                for (key, at) in [
                    ("grafana.ini", "/etc/grafana/grafana.ini"),
                    (
                        "datasources.yaml",
                        "/etc/grafana/provisioning/datasources/datasources.yaml",
                    ),
                    (
                        "dashboardproviders.yaml",
                        "/etc/grafana/provisioning/dashboards/dashboardproviders.yaml",
                    ),
                ] {
                    let text = data[key].as_str().unwrap();
                    // subPath mounts; the providers' absolute paths are under the same root
                    let text = text.replace(
                        "/var/lib/grafana/",
                        &format!("{}/", under("/var/lib/grafana").display()),
                    );
                    std::fs::create_dir_all(under(at).parent().unwrap()).unwrap();
                    std::fs::write(under(at), text).unwrap();
                }
            }
            "istio-grafana-dashboards" | "istio-services-grafana-dashboards" => {
                let folder = name.trim_end_matches("-grafana-dashboards");
                let dir = under(&format!("/var/lib/grafana/dashboards/{folder}"));
                std::fs::create_dir_all(&dir).unwrap();
                if dashboards {
                    mount(&dir, &data);
                }
            }
            _ => {}
        }
    }
    under("/etc/grafana/grafana.ini")
}

/// Starts the stand-in with the addon's environment (paths under `root`) on an ephemeral port.
async fn start(root: &Path, ini: &Path) -> (Child, String) {
    let under = |p: &str| root.join(p.trim_start_matches('/')).display().to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_grafana"))
        .args(["--config", &ini.display().to_string()])
        .env_clear()
        .env("GF_PATHS_DATA", under("/var/lib/grafana/"))
        .env("GF_PATHS_LOGS", under("/var/log/grafana"))
        .env("GF_PATHS_PLUGINS", under("/var/lib/grafana/plugins"))
        .env("GF_PATHS_PROVISIONING", under("/etc/grafana/provisioning"))
        .env("GF_AUTH_ANONYMOUS_ENABLED", "true")
        .env("GF_AUTH_ANONYMOUS_ORG_ROLE", "Admin")
        .env("GF_SECURITY_ADMIN_USER", "admin")
        .env("GF_SERVER_HTTP_ADDR", "127.0.0.1")
        .env("GF_SERVER_HTTP_PORT", "0")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the grafana binary starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    loop {
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .expect("grafana prints its address within 10 s")
            .unwrap()
            .expect("a line before the address");
        if let Some((_, addr)) = line.rsplit_once(" listening on ") {
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            return (child, format!("http://{addr}"));
        }
    }
}

#[tokio::test]
async fn the_probe_finds_the_release_dashboards_and_fails_without_them() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let Some(releases) = releases() else {
        println!(
            "SKIPPED: ISTIO_E2E_ISTIO_DIR is not set: the test needs the release's samples/addons/grafana.yaml"
        );
        return;
    };
    assert!(
        !releases.is_empty(),
        "ISTIO_E2E_ISTIO_DIR has no samples/addons/grafana.yaml"
    );
    let client = harness::probes::client();
    for release in releases {
        println!("release {}: samples/addons/grafana.yaml", release.display());
        let manifest =
            std::fs::read_to_string(release.join("samples/addons/grafana.yaml")).unwrap();
        let root = tempfile::tempdir().unwrap();
        let ini = lay_out(root.path(), &manifest, true);
        let (mut child, url) = start(root.path(), &ini).await;
        let out = check_until(
            &client,
            &url,
            &GrafanaCheck::default(),
            Duration::from_secs(10),
        )
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", release.display()));
        assert_eq!(out["database"], "ok");
        assert_eq!(out["dashboards"].as_array().unwrap().len(), 3);
        // The search is a title search: a query for one dashboard finds it only.
        let hits: Value = client
            .get(format!("{url}/api/search?query=workload"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let titles: Vec<&str> = hits
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|h| h["title"].as_str())
            .collect();
        assert_eq!(
            titles,
            ["Istio Workload Dashboard"],
            "{}",
            release.display()
        );
        child.kill().await.unwrap();

        // The same addon with the dashboards ConfigMaps not mounted: the probe names what is missing.
        let bare = tempfile::tempdir().unwrap();
        let ini = lay_out(bare.path(), &manifest, false);
        let (mut child, url) = start(bare.path(), &ini).await;
        let err = check_until(
            &client,
            &url,
            &GrafanaCheck::default(),
            Duration::from_secs(3),
        )
        .await
        .expect_err("no dashboards mounted: the probe must fail")
        .to_string();
        assert!(
            err.contains("Istio Mesh Dashboard") && err.contains("found: none"),
            "{err}"
        );
        child.kill().await.unwrap();
    }
}
