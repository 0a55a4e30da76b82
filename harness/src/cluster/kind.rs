//! `kind` (the default provider): `kind create cluster` with the repository's
//! `kind-config.yaml`, the run's own kubeconfig file, and the node image for the requested
//! Kubernetes version. The node address is the control-plane container's IP on the `kind`
//! Docker network (reachable from the host on Linux).

use std::path::{Path, PathBuf};

use futures::future::BoxFuture;

use super::{ClusterError, ClusterInfo, ClusterRequest, Leftover, Provider, run_cmd, which};

/// The kind provider.
#[derive(Default)]
pub struct Kind {
    created: Option<(PathBuf, String, PathBuf)>,
}

/// The argv of `kind create cluster`.
pub fn create_args(
    name: &str,
    config: Option<&str>,
    kubeconfig: &str,
    image: Option<&str>,
) -> Vec<String> {
    let mut v: Vec<String> = ["create", "cluster", "--name", name]
        .iter()
        .map(|s| s.to_string())
        .collect();
    if let Some(c) = config {
        v.extend(["--config".into(), c.into()]);
    }
    v.extend(["--kubeconfig".into(), kubeconfig.into()]);
    if let Some(i) = image {
        v.extend(["--image".into(), i.into()]);
    }
    v.extend(["--wait".into(), "5m".into()]);
    v
}

/// The kind release downloaded when `kind` is not on PATH (`ISTIO_E2E_KIND_VERSION` overrides).
pub const KIND_VERSION: &str = "v0.29.0";

fn kind_version() -> String {
    std::env::var("ISTIO_E2E_KIND_VERSION").unwrap_or_else(|_| KIND_VERSION.to_string())
}

fn kind_downloader() -> Result<crate::download::Downloader, crate::download::DownloadError> {
    crate::download::Downloader::new(
        crate::download::default_cache_root()?,
        PathBuf::from(crate::download::LOCK_FILE),
    )
}

/// The kind binary already in the download cache, if any.
fn cached_kind() -> Option<PathBuf> {
    let p = kind_downloader()
        .ok()?
        .cache_path(crate::download::Tool::Kind, &kind_version());
    p.is_file().then_some(p)
}

/// Downloads kind into the cache, verified against the publisher's checksum and the lock.
async fn download_kind() -> Result<PathBuf, ClusterError> {
    Ok(kind_downloader()?.kind(&kind_version()).await?.path)
}

/// Whether to preload host images into the node (`ISTIO_E2E_KIND_PRELOAD`, on unless `0`).
pub fn preload_enabled() -> bool {
    std::env::var("ISTIO_E2E_KIND_PRELOAD")
        .map(|v| v != "0" && v != "false")
        .unwrap_or(true)
}

/// Which of the host's images (`repo:tag` lines of `docker images`) are worth loading: Istio's
/// own, Bookinfo's and the addons' (Prometheus, Grafana, Jaeger, Kiali), never `<none>` tags.
pub fn preload_candidates(docker_images: &str) -> Vec<String> {
    const WANTED: &[&str] = &[
        "istio/",
        "examples-bookinfo",
        "prom/prometheus",
        "grafana/grafana",
        "jaegertracing/",
        "kiali/kiali",
    ];
    let mut v: Vec<String> = docker_images
        .lines()
        .map(str::trim)
        .filter(|l| !l.contains("<none>") && WANTED.iter().any(|w| l.contains(w)))
        .map(String::from)
        .collect();
    v.sort();
    v.dedup();
    v
}

/// Loads the images the host's Docker already has (Istio's, Bookinfo's, the addons') into the
/// node instead of pulling them again; returns how many. A speed-up on reruns and only that, so
/// the caller only warns when it fails: `kind load docker-image` fails on multi-platform images
/// under Docker's containerd image store, the default of Docker Engine 29
/// (kubernetes-sigs/kind#3795, #3996), and then the node pulls them as it would have anyway.
pub async fn preload(kind: &Path, docker: &Path, name: &str) -> Result<usize, ClusterError> {
    let format = ["images", "--format", "{{.Repository}}:{{.Tag}}"].map(String::from);
    let images = preload_candidates(&run_cmd(docker, &format, &[]).await?);
    if !images.is_empty() {
        run_cmd(kind, &load_args(name, &images), &[]).await?;
    }
    Ok(images.len())
}

/// The argv of `kind load docker-image` for a cluster.
pub fn load_args(name: &str, images: &[String]) -> Vec<String> {
    let mut v: Vec<String> = vec![
        "load".into(),
        "docker-image".into(),
        "--name".into(),
        name.into(),
    ];
    v.extend(images.iter().cloned());
    v
}

/// Node images pinned by digest, as kind's release notes list them for the kind release that
/// built them: `(kind release, Kubernetes version, image digest)`. A tag can be moved; a
/// digest cannot, so a run on the same versions always boots the same node.
///
/// Sources: the "Images pre-built for this release" lists of kind's GitHub releases
/// (<https://github.com/kubernetes-sigs/kind/releases>), cross-checked against several public
/// repositories that pin the same digests (2026-11-26). Add a row when the workflow's matrix
/// gains a Kubernetes version; an unlisted version runs by tag, with a warning.
pub const NODE_IMAGES: &[(&str, &str, &str)] = &[
    (
        "v0.29.0",
        "v1.33.1",
        "sha256:050072256b9a903bd914c0b2866828150cb229cea0efe5892e2b644d5dd3b34f",
    ),
    (
        "v0.29.0",
        "v1.32.5",
        "sha256:e3b2327e3a5ab8c76f5ece68936e4cafaa82edf58486b769727ab0b3b97a5b0d",
    ),
    (
        "v0.20.0",
        "v1.22.17",
        "sha256:f5b2e5698c6c9d6d0adc419c0deae21a425c07d81bbf3b6a6834042f25d4fba2",
    ),
];

/// The node image for a Kubernetes version: pinned by digest when [`NODE_IMAGES`] lists it
/// (`v1.33.1` -> `kindest/node:v1.33.1@sha256:0500...`), else by tag
/// (`kindest/node:v1.34.0`).
pub fn node_image(k8s: &str) -> String {
    let v = if k8s.starts_with('v') {
        k8s.to_string()
    } else {
        format!("v{k8s}")
    };
    match NODE_IMAGES.iter().find(|(_, k, _)| *k == v) {
        Some((_, _, digest)) => format!("kindest/node:{v}@{digest}"),
        None => {
            tracing::warn!(
                "kindest/node:{v} is not pinned by digest in istio-e2e (cluster/kind.rs NODE_IMAGES); using the tag"
            );
            format!("kindest/node:{v}")
        }
    }
}

impl Provider for Kind {
    fn name(&self) -> &'static str {
        "kind"
    }
    fn needs(&self) -> &'static str {
        "a Docker daemon and `kind` on PATH (https://kind.sigs.k8s.io), plus registry access for kindest/node"
    }
    fn check(&self) -> Result<(), ClusterError> {
        super::docker_available()?;
        if which("kind").is_some() || cached_kind().is_some() {
            return Ok(());
        }
        Err(ClusterError::NoKind)
    }
    fn create<'a>(
        &'a mut self,
        req: &'a ClusterRequest,
    ) -> BoxFuture<'a, Result<ClusterInfo, ClusterError>> {
        Box::pin(async move {
            let kind = match which("kind") {
                Some(k) => k,
                None => download_kind().await?,
            };
            std::fs::create_dir_all(&req.artifacts).ok();
            let name = format!("istio-e2e-{}", req.run_id);
            let kubeconfig = req.artifacts.join("kubeconfig");
            let config = req.config.clone().or_else(|| {
                let p = PathBuf::from("kind-config.yaml");
                p.exists().then_some(p)
            });
            let image = req
                .image
                .clone()
                .or_else(|| req.kubernetes.as_deref().map(node_image));
            let args = create_args(
                &name,
                config
                    .as_ref()
                    .map(|p| p.to_string_lossy().into_owned())
                    .as_deref(),
                &kubeconfig.to_string_lossy(),
                image.as_deref(),
            );
            self.created = Some((kind.clone(), name.clone(), kubeconfig.clone()));
            run_cmd(
                &kind,
                &args,
                &[(
                    "KUBECONFIG".into(),
                    kubeconfig.to_string_lossy().into_owned(),
                )],
            )
            .await?;
            let docker = which("docker").ok_or(ClusterError::NotOnPath("docker"))?;
            let ip = run_cmd(
                &docker,
                &[
                    "inspect".into(),
                    "-f".into(),
                    "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}".into(),
                    format!("{name}-control-plane"),
                ],
                &[],
            )
            .await?;
            if preload_enabled()
                && let Err(e) = preload(&kind, &docker, &name).await
            {
                tracing::warn!(
                    "preloading images into kind failed; the node pulls them instead \
                     (ISTIO_E2E_KIND_PRELOAD=0 skips the preload): {e}"
                );
            }
            Ok(ClusterInfo {
                provider: "kind".into(),
                kubeconfig,
                context: Some(format!("kind-{name}")),
                node_address: ip.split_whitespace().next().map(String::from),
                name,
            })
        })
    }
    fn teardown(&mut self, keep: bool) -> BoxFuture<'_, Result<String, ClusterError>> {
        Box::pin(async move {
            let Some((kind, name, kubeconfig)) = self.created.take() else {
                return Ok(String::new());
            };
            if keep {
                return Ok(format!(
                    "kept kind cluster {name}; kubeconfig {}",
                    kubeconfig.display()
                ));
            }
            let args = vec![
                "delete".into(),
                "cluster".into(),
                "--name".into(),
                name.clone(),
                "--kubeconfig".into(),
                kubeconfig.to_string_lossy().into_owned(),
            ];
            run_cmd(&kind, &args, &[]).await?;
            Ok(format!("deleted kind cluster {name}"))
        })
    }
    fn clean_leftovers(&self) -> Vec<Leftover> {
        let Some(kind) = which("kind") else {
            return vec![];
        };
        let Ok(o) = std::process::Command::new(&kind)
            .args(["get", "clusters"])
            .output()
        else {
            return vec![];
        };
        let scratch = super::ScratchKubeconfig::new();
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|c| c.starts_with("istio-e2e-"))
            .map(|c| Leftover {
                // `kind delete cluster` removes the cluster's context from the kubeconfig it
                // is given (else $KUBECONFIG or ~/.kube/config): a throwaway one, never the
                // user's.
                removed: std::process::Command::new(&kind)
                    .args(["delete", "cluster", "--name", c, "--kubeconfig"])
                    .arg(scratch.path())
                    .status()
                    .is_ok_and(|s| s.success()),
                what: format!("kind cluster {c}"),
                verb: "deleted",
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preload_takes_istio_bookinfo_and_addon_images_only() {
        let listed = "docker.io/istio/proxyv2:1.30.3\nistio/pilot:1.30.3\nredis:7\n<none>:<none>\ndocker.io/istio/examples-bookinfo-ratings-v1:1.20.3\nprom/prometheus:v3.5.0\nistio/pilot:1.30.3\n";
        let c = preload_candidates(listed);
        assert_eq!(
            c,
            [
                "docker.io/istio/examples-bookinfo-ratings-v1:1.20.3",
                "docker.io/istio/proxyv2:1.30.3",
                "istio/pilot:1.30.3",
                "prom/prometheus:v3.5.0"
            ]
        );
        assert_eq!(
            load_args("istio-e2e-r1", &c[..1]),
            [
                "load",
                "docker-image",
                "--name",
                "istio-e2e-r1",
                "docker.io/istio/examples-bookinfo-ratings-v1:1.20.3"
            ]
        );
    }

    #[test]
    fn create_uses_the_runs_own_kubeconfig_and_the_node_image() {
        assert_eq!(
            create_args(
                "istio-e2e-r1",
                Some("kind-config.yaml"),
                "/a/kubeconfig",
                Some(&node_image("1.33.1"))
            ),
            [
                "create",
                "cluster",
                "--name",
                "istio-e2e-r1",
                "--config",
                "kind-config.yaml",
                "--kubeconfig",
                "/a/kubeconfig",
                "--image",
                "kindest/node:v1.33.1@sha256:050072256b9a903bd914c0b2866828150cb229cea0efe5892e2b644d5dd3b34f",
                "--wait",
                "5m"
            ]
        );
    }

    #[test]
    fn node_images_are_pinned_by_digest_where_known() {
        assert_eq!(
            node_image("1.22.17"),
            "kindest/node:v1.22.17@sha256:f5b2e5698c6c9d6d0adc419c0deae21a425c07d81bbf3b6a6834042f25d4fba2"
        );
        assert_eq!(node_image("v1.99.0"), "kindest/node:v1.99.0");
        for (_, k, d) in NODE_IMAGES {
            assert!(k.starts_with("v1."), "{k}");
            assert!(
                d.len() == 71 && d[7..].chars().all(|c| c.is_ascii_hexdigit()),
                "{d}"
            );
        }
    }

    /// Writes an executable script `name` into `dir` that logs its arguments and runs `body`.
    fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.join(name);
        let log = dir.join(format!("{name}.log"));
        let text = format!("#!/bin/sh\necho \"$@\" >> '{}'\n{body}\n", log.display());
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    /// The preload loads only the wanted images, and a failing `kind load` is an error the
    /// caller can turn into a warning (kind#3795: multi-platform images, containerd store).
    #[tokio::test]
    async fn preload_loads_the_wanted_images_and_reports_a_failed_load() {
        let dir = tempfile::tempdir().unwrap();
        let docker = script(
            dir.path(),
            "docker",
            "printf 'istio/proxyv2:1.30.3\\nbusybox:1\\n<none>:<none>\\n'",
        );
        let kind = script(dir.path(), "kind", "exit 0");
        assert_eq!(preload(&kind, &docker, "istio-e2e-r1").await.unwrap(), 1);
        let log = std::fs::read_to_string(dir.path().join("kind.log")).unwrap();
        assert_eq!(
            log,
            "load docker-image --name istio-e2e-r1 istio/proxyv2:1.30.3\n"
        );

        let refused = "ERROR: failed to load image: ctr: content digest sha256:1: not found";
        let kind = script(dir.path(), "kind", &format!("echo '{refused}' >&2; exit 1"));
        let e = preload(&kind, &docker, "istio-e2e-r1").await.unwrap_err();
        assert!(e.to_string().contains("load docker-image"), "{e}");
        assert!(format!("{e:?}").contains("content digest"), "{e:?}");
    }
}
