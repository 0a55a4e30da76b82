//! The lab's stand-ins for Istio's programs (`fixtures/standins/build-images`, the workspace's
//! `standins` crate): an archive of images the lab node imports at start (istiod, the proxy
//! image with Envoy and iptables, Bookinfo's apps), tagged inside the node with the image names
//! the run's Istio release uses, and the host-side stand-in istioctl the lab runs instead of
//! the release's own (a real istioctl could not install anything on an offline node).

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
/// and each image `samples/bookinfo/platform/kube/bookinfo.yaml` names that has a stand-in.
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
    tags
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
