//! The lab's stand-ins for Istio's programs (`fixtures/standins/build-images`, the workspace's
//! `standins` crate): an archive of images the lab node imports at start (istiod, the proxy
//! image with Envoy and iptables, Bookinfo's apps, the Grafana and Kiali addons), tagged
//! inside the node with the image names the run's Istio release uses, and the host-side
//! stand-in istioctl the lab runs instead of the release's own (a real istioctl could not
//! install anything on an offline node).

use std::path::{Path, PathBuf};

use crate::istio::Istioctl;

/// The command that builds the stand-ins.
pub const BUILD_COMMAND: &str = "fixtures/standins/build-images";
/// Where the node's entrypoint imports image archives from (`fixtures/lab/entrypoint`).
pub const NODE_IMAGES_DIR: &str = "/opt/istio-e2e-lab/images";

/// What `build-images` made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standins {
    /// `docker save` of the images under neutral names.
    pub archive: PathBuf,
    /// The stand-in istioctl.
    pub istioctl: PathBuf,
}

/// The stand-ins under `$ISTIO_E2E_LAB_CACHE/standins` (default `/var/cache/istio-e2e-lab`),
/// when they are built.
pub fn find() -> Option<Standins> {
    let cache = std::env::var_os("ISTIO_E2E_LAB_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/istio-e2e-lab"));
    found_in(&cache.join("standins"))
}

fn found_in(dir: &Path) -> Option<Standins> {
    let s = Standins {
        archive: dir.join("images.tar"),
        istioctl: dir.join("bin/istioctl"),
    };
    (s.archive.is_file() && s.istioctl.is_file()).then_some(s)
}

/// The release an lab run installs: its directory and version.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Release {
    /// The release directory (samples, manifests).
    pub dir: PathBuf,
    /// Its version, e.g. `1.12.1`.
    pub version: String,
}

/// The istioctl a lab run uses for `release`: the stand-in, unless the release directory
/// carries a stand-in of its own (`fixtures/istio/standin-release`, whose script says
/// STAND-IN at its top), which it keeps.
pub fn istioctl_for(release: &Release, standins: Option<&Standins>) -> Option<Istioctl> {
    let own = release.dir.join("bin/istioctl");
    if is_script_standin(&own) {
        return Some(Istioctl::at(own));
    }
    standins.map(|s| Istioctl::standin(s.istioctl.clone(), &release.dir, &release.version))
}

fn is_script_standin(path: &Path) -> bool {
    std::fs::read(path)
        .map(|b| {
            b.starts_with(b"#!")
                && String::from_utf8_lossy(&b[..b.len().min(400)]).contains("STAND-IN")
        })
        .unwrap_or(false)
}

/// (neutral name in the archive, the name the release uses) for every stand-in image: istiod
/// and the proxy as the stand-in istioctl names them (`docker.io/istio/{pilot,proxyv2}:<v>`),
/// each image `samples/bookinfo/platform/kube/bookinfo.yaml` names that has a stand-in, and the
/// Grafana and Kiali images of `samples/addons/{grafana,kiali}.yaml`.
pub fn image_tags(release: &Release) -> Vec<(String, String)> {
    let mut tags: Vec<(String, String)> = ["pilot", "proxyv2"]
        .iter()
        .map(|c| {
            (
                format!("istio-e2e.local/standin-{c}:1"),
                format!("docker.io/istio/{c}:{}", release.version),
            )
        })
        .collect();
    let bookinfo = release
        .dir
        .join("samples/bookinfo/platform/kube/bookinfo.yaml");
    let text = std::fs::read_to_string(bookinfo).unwrap_or_default();
    tags.extend(bookinfo_images(&text));
    for (manifest, repository, standin) in ADDON_IMAGES {
        let text = std::fs::read_to_string(release.dir.join(manifest)).unwrap_or_default();
        for image in manifest_images(&text) {
            let full = normalized(&image);
            let repo = full.rsplit_once(':').map_or(full.as_str(), |(r, _)| r);
            if repo.ends_with(&format!("/{repository}")) && !tags.iter().any(|(_, t)| *t == full) {
                tags.push((format!("istio-e2e.local/{standin}:1"), full));
            }
        }
    }
    tags
}

/// (addon manifest in the release, image repository it names, the stand-in image): the
/// programs of `samples/addons/*.yaml` the lab runs under the addon's own image names.
pub const ADDON_IMAGES: &[(&str, &str, &str)] = &[
    // Prometheus itself, built from its Go module (fixtures/standins/build-images).
    (
        "samples/addons/prometheus.yaml",
        "prom/prometheus",
        "standin-prometheus",
    ),
    // The config reloader next to it (1.12: configmap-reload; today: prometheus-config-reloader).
    (
        "samples/addons/prometheus.yaml",
        "jimmidyson/configmap-reload",
        "standin-config-reloader",
    ),
    (
        "samples/addons/prometheus.yaml",
        "prometheus-operator/prometheus-config-reloader",
        "standin-config-reloader",
    ),
    // Jaeger v2 built from its Go module; 1.x's all-in-one through the stand-in that turns its
    // environment into Jaeger v2's config.
    (
        "samples/addons/jaeger.yaml",
        "jaegertracing/jaeger",
        "standin-jaeger",
    ),
    (
        "samples/addons/jaeger.yaml",
        "jaegertracing/all-in-one",
        "standin-jaeger-all-in-one",
    ),
    // Grafana (AGPL: a stand-in answering what the probe asks, from the mounted dashboards) and
    // Kiali (an image only: a stand-in whose graph comes from the lab's Prometheus).
    (
        "samples/addons/grafana.yaml",
        "grafana/grafana",
        "standin-grafana",
    ),
    ("samples/addons/kiali.yaml", "kiali/kiali", "standin-kiali"),
];

/// Every `image:` value of a manifest, unquoted.
pub fn manifest_images(manifest: &str) -> Vec<String> {
    let re =
        regex::Regex::new(r#"(?m)^\s*(?:-\s*)?image:\s*"?([^\s"]+)"?\s*$"#).expect("a valid regex");
    re.captures_iter(manifest)
        .map(|c| c[1].to_string())
        .collect()
}

/// An image reference as containerd's CRI stores it: `prom/prometheus:v2.26.0` is
/// `docker.io/prom/prometheus:v2.26.0`, `busybox` is `docker.io/library/busybox:latest`.
pub fn normalized(image: &str) -> String {
    let (first, rest) = image.split_once('/').unwrap_or(("", image));
    let named = if first.is_empty() {
        format!("docker.io/library/{rest}")
    } else if first.contains(['.', ':']) || first == "localhost" {
        image.to_string()
    } else {
        format!("docker.io/{image}")
    };
    let last = named.rsplit('/').next().unwrap_or_default();
    if last.contains([':', '@']) {
        named
    } else {
        format!("{named}:latest")
    }
}

/// The stand-in of each Bookinfo image a manifest names (`image: .../examples-bookinfo-
/// reviews-v2:1.16.2` -> `istio-e2e.local/standin-bookinfo-reviews-v2:1`).
pub fn bookinfo_images(manifest: &str) -> Vec<(String, String)> {
    let re = regex::Regex::new(
        r#"(?m)^\s*image:\s*"?([^\s"]*examples-bookinfo-(productpage|details|ratings|reviews)-(v[123])(?::[^\s"]+)?)"?\s*$"#,
    )
    .expect("a valid regex");
    let mut out: Vec<(String, String)> = re
        .captures_iter(manifest)
        .map(|c| {
            (
                format!("istio-e2e.local/standin-bookinfo-{}-{}:1", &c[2], &c[3]),
                c[1].to_string(),
            )
        })
        .collect();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bookinfo_images_map_to_their_stand_ins_whatever_the_registry() {
        let m = "        image: docker.io/istio/examples-bookinfo-reviews-v2:1.16.2\n\
                 \x20       image: registry.istio.io/release/examples-bookinfo-productpage-v1:1.20.3\n\
                 \x20       image: docker.io/istio/examples-bookinfo-mongodb:1.16.2\n";
        assert_eq!(
            bookinfo_images(m),
            [
                (
                    "istio-e2e.local/standin-bookinfo-reviews-v2:1".to_string(),
                    "docker.io/istio/examples-bookinfo-reviews-v2:1.16.2".to_string()
                ),
                (
                    "istio-e2e.local/standin-bookinfo-productpage-v1:1".to_string(),
                    "registry.istio.io/release/examples-bookinfo-productpage-v1:1.20.3".to_string()
                ),
            ]
        );
    }

    #[test]
    fn addon_images_are_named_as_containerd_stores_them() {
        assert_eq!(
            normalized("prom/prometheus:v2.26.0"),
            "docker.io/prom/prometheus:v2.26.0"
        );
        assert_eq!(normalized("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(
            normalized("ghcr.io/prometheus-operator/prometheus-config-reloader:v0.89.0"),
            "ghcr.io/prometheus-operator/prometheus-config-reloader:v0.89.0"
        );
        let d = tempfile::tempdir().unwrap();
        let addons = d.path().join("samples/addons");
        std::fs::create_dir_all(&addons).unwrap();
        std::fs::write(
            addons.join("prometheus.yaml"),
            "        - name: reload\n          image: \"jimmidyson/configmap-reload:v0.5.0\"\n\
             \x20         image: \"prom/prometheus:v2.26.0\"\n",
        )
        .unwrap();
        let rel = Release {
            dir: d.path().into(),
            version: "1.12.1".into(),
        };
        let tags = image_tags(&rel);
        assert!(tags.contains(&(
            "istio-e2e.local/standin-prometheus:1".into(),
            "docker.io/prom/prometheus:v2.26.0".into()
        )));
        assert!(tags.contains(&(
            "istio-e2e.local/standin-config-reloader:1".into(),
            "docker.io/jimmidyson/configmap-reload:v0.5.0".into()
        )));
    }

    #[test]
    fn the_real_addons_name_their_images_in_every_release() {
        let Some(dir) = std::env::var_os("ISTIO_E2E_ISTIO_DIR") else {
            println!(
                "SKIPPED: ISTIO_E2E_ISTIO_DIR is not set (a directory of release directories)"
            );
            return;
        };
        for (v, grafana, kiali) in [
            (
                "1.12.1",
                "docker.io/grafana/grafana:8.1.2",
                "quay.io/kiali/kiali:v1.42",
            ),
            (
                "1.30.3",
                "docker.io/grafana/grafana:12.0.1",
                "quay.io/kiali/kiali:v2.26",
            ),
        ] {
            let rel = Release {
                dir: std::path::Path::new(&dir).join(v),
                version: v.into(),
            };
            if !rel.dir.is_dir() {
                continue;
            }
            let tags = image_tags(&rel);
            assert!(
                tags.contains(&("istio-e2e.local/standin-grafana:1".into(), grafana.into())),
                "{tags:?}"
            );
            assert!(
                tags.contains(&("istio-e2e.local/standin-kiali:1".into(), kiali.into())),
                "{tags:?}"
            );
        }
    }

    #[test]
    fn a_release_with_a_stand_in_script_keeps_it_else_the_lab_uses_the_built_stand_in() {
        let d = tempfile::tempdir().unwrap();
        let rel = Release {
            dir: d.path().into(),
            version: "1.12.1".into(),
        };
        let built = Standins {
            archive: "/x/images.tar".into(),
            istioctl: "/x/bin/istioctl".into(),
        };
        let got = istioctl_for(&rel, Some(&built)).unwrap();
        assert_eq!(got.path, PathBuf::from("/x/bin/istioctl"));
        assert!(
            got.env
                .contains(&("ISTIO_E2E_STANDIN_VERSION".into(), "1.12.1".into()))
        );
        std::fs::create_dir_all(d.path().join("bin")).unwrap();
        std::fs::write(
            d.path().join("bin/istioctl"),
            "#!/bin/sh\n# STAND-IN for istioctl\n",
        )
        .unwrap();
        assert_eq!(
            istioctl_for(&rel, Some(&built)).unwrap(),
            Istioctl::at(d.path().join("bin/istioctl"))
        );
        assert!(istioctl_for(&Release::default(), None).is_none());
    }
}
