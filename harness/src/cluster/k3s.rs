//! `k3s`: k3s in a privileged container through testcontainers (testcontainers-modules' K3s
//! image). The kubeconfig is read out of the container and pointed at the published port.

use futures::future::BoxFuture;
use testcontainers_modules::k3s::{K3s as K3sImage, KUBE_SECURE_PORT};
use testcontainers_modules::testcontainers::runners::AsyncRunner;
use testcontainers_modules::testcontainers::{ContainerAsync, ImageExt};

use super::{ClusterError, ClusterInfo, ClusterRequest, Leftover, Provider, RUN_LABEL};

/// The k3s provider.
#[derive(Default)]
pub struct K3s {
    container: Option<ContainerAsync<K3sImage>>,
}

impl Provider for K3s {
    fn name(&self) -> &'static str {
        "k3s"
    }
    fn needs(&self) -> &'static str {
        "a Docker daemon that allows privileged containers, and the rancher/k3s image (pulled or loaded)"
    }
    fn check(&self) -> Result<(), ClusterError> {
        super::docker_available()
    }
    fn create<'a>(
        &'a mut self,
        req: &'a ClusterRequest,
    ) -> BoxFuture<'a, Result<ClusterInfo, ClusterError>> {
        Box::pin(async move {
            let tag = req.kubernetes.clone().map(|v| {
                format!(
                    "{}-k3s1",
                    if v.starts_with('v') {
                        v
                    } else {
                        format!("v{v}")
                    }
                )
            });
            let conf = req.artifacts.join("k3s");
            std::fs::create_dir_all(&conf).ok();
            let mut image = K3sImage::default()
                .with_conf_mount(&conf)
                .with_privileged(true)
                .with_userns_mode("host")
                .with_label(RUN_LABEL, req.run_id.clone());
            if let Some(t) = tag {
                image = image.with_tag(t);
            }
            let container = image
                .with_startup_timeout(std::time::Duration::from_secs(180))
                .start()
                .await
                .map_err(|e| ClusterError::container("cannot start the k3s container", e))?;
            let raw = container
                .image()
                .read_kube_config()
                .map_err(|e| ClusterError::container("cannot read k3s kubeconfig", e));
            let port = container
                .get_host_port_ipv4(KUBE_SECURE_PORT)
                .await
                .map_err(|e| ClusterError::container("k3s apiserver port", e))?;
            let ip = super::container::node_address(&container, "k3s").await.ok();
            self.container = Some(container);
            let kubeconfig = super::container::write_kubeconfig(&raw?, port, &req.artifacts)?;
            Ok(ClusterInfo {
                provider: "k3s".into(),
                kubeconfig,
                context: None,
                node_address: ip,
                name: "k3s".into(),
            })
        })
    }
    fn teardown(&mut self, keep: bool) -> BoxFuture<'_, Result<String, ClusterError>> {
        Box::pin(super::container::remove(self.container.take(), keep, "k3s"))
    }
    fn clean_leftovers(&self) -> Vec<Leftover> {
        super::remove_labelled_containers(RUN_LABEL)
    }
}
