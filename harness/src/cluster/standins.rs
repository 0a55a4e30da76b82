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
    for addon in ["grafana", "kiali"] {
        let manifest = release.dir.join(format!("samples/addons/{addon}.yaml"));
        let text = std::fs::read_to_string(manifest).unwrap_or_default();
        tags.extend(addon_images(&text, addon));
    }
    tags
}

/// The stand-in of the addon image a manifest names (`image: "grafana/grafana:8.1.2"` ->
/// `istio-e2e.local/standin-grafana:1`, tagged as `docker.io/grafana/grafana:8.1.2`, the
/// name the kubelet asks containerd for), for `addon` `grafana` or `kiali`.
pub fn addon_images(manifest: &str, addon: &str) -> Vec<(String, String)> {
    let re =
        regex::Regex::new(r#"(?m)^\s*(?:-\s*)?image:\s*"?([^\s"]+)"?\s*$"#).expect("a valid regex");
    let mut out: Vec<(String, String)> = re
        .captures_iter(manifest)
        .map(|c| normalized_image(&c[1]))
        .filter(|name| {
            let repo = name.rsplit_once(':').map_or(name.as_str(), |(r, _)| r);
            repo.ends_with(&format!("/{addon}/{addon}"))
        })
        .map(|name| (format!("istio-e2e.local/standin-{addon}:1"), name))
        .collect();
    out.dedup();
    out
}

/// An image reference as containerd's CRI stores it: `docker.io/` added to a name without a
/// registry (`docker.io/library/` to a single-component one), `:latest` to one without a tag.
pub fn normalized_image(name: &str) -> String {
    let (first, rest) = name.split_once('/').unwrap_or(("", name));
    let qualified = if first.is_empty() {
        format!("docker.io/library/{rest}")
    } else if first.contains(['.', ':']) || first == "localhost" {
        name.to_string()
    } else {
        format!("docker.io/{name}")
    };
    let last = qualified.rsplit('/').next().unwrap_or("");
    if last.contains([':', '@']) {
        qualified
    } else {
        format!("{qualified}:latest")
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
    fn addon_images_map_to_their_stand_ins_under_the_names_containerd_keeps() {
        let g = "          image: \"grafana/grafana:8.1.2\"\n          image: busybox\n";
        assert_eq!(
            addon_images(g, "grafana"),
            [(
                "istio-e2e.local/standin-grafana:1".to_string(),
                "docker.io/grafana/grafana:8.1.2".to_string()
            )]
        );
        let k = "      - image: \"quay.io/kiali/kiali:v2.26\"\n        image_name: quay.io/kiali/kiali\n";
        assert_eq!(
            addon_images(k, "kiali"),
            [(
                "istio-e2e.local/standin-kiali:1".to_string(),
                "quay.io/kiali/kiali:v2.26".to_string()
            )]
        );
        assert!(addon_images(k, "grafana").is_empty());
        assert_eq!(
            normalized_image("busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            normalized_image("localhost:5000/x/y@sha256:ab"),
            "localhost:5000/x/y@sha256:ab"
        );
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
