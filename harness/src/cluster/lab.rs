//! `lab`: a real single-node Kubernetes 1.20 in one Docker container, built offline from
//! Debian packages by `fixtures/lab/build-image` (see `fixtures/lab/README.md`). It works with
//! no registry and no internet, which makes it our CI cluster and a cluster for air-gapped
//! machines. Started through testcontainers with the settings of shared/lab-notes.md: no
//! `--privileged` (it fails in sandboxes without CAP_SYS_RESOURCE), all capabilities but
//! SYS_RESOURCE, unconfined seccomp/apparmor, no masked paths, every device allowed in the
//! cgroup, /dev/kmsg, and tmpfs for /run, /tmp and /var/lib/containerd.

use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use kube::runtime::watcher;
use testcontainers_modules::testcontainers::bollard::models::{DeviceMapping, PortBinding};
use testcontainers_modules::testcontainers::core::{ContainerPort, ExecCommand, Mount, WaitFor};
use testcontainers_modules::testcontainers::runners::AsyncRunner;
use testcontainers_modules::testcontainers::{ContainerAsync, GenericImage, ImageExt};

use super::{ClusterError, ClusterInfo, ClusterRequest, Leftover, Provider, RUN_LABEL};

/// The image name the build script tags (`fixtures/lab/build-image`).
pub const DEFAULT_IMAGE: &str = "istio-e2e-lab:v1.20.2";
/// The label every lab container carries, so `istio-e2e clean` finds leftovers.
pub const LAB_LABEL: &str = "io.istio-e2e.lab";
/// The line the node's entrypoint prints once the apiserver answers.
pub const READY_LINE: &str = "istio-e2e-lab: apiserver ready";
/// Where the entrypoint writes the admin kubeconfig inside the container.
pub const KUBECONFIG_IN_CONTAINER: &str = "/etc/kubernetes/admin.kubeconfig";
/// The one command that builds the image.
pub const BUILD_COMMAND: &str = "fixtures/lab/build-image";

/// The lab provider.
#[derive(Default)]
pub struct Lab {
    container: Option<ContainerAsync<GenericImage>>,
}

/// The image to run: `ISTIO_E2E_LAB_IMAGE`, else [`DEFAULT_IMAGE`].
pub fn image_name(over: Option<&str>) -> String {
    over.map(String::from)
        .or_else(|| std::env::var("ISTIO_E2E_LAB_IMAGE").ok())
        .unwrap_or_else(|| DEFAULT_IMAGE.to_string())
}

impl Lab {
    /// The running container's id, if any.
    pub fn container_id(&self) -> Option<String> {
        self.container.as_ref().map(|c| c.id().to_string())
    }
}

/// True when Docker has the image (asked with `docker image inspect`, an argv, no shell).
pub fn image_present(image: &str) -> Result<bool, ClusterError> {
    let docker = super::which("docker").ok_or(ClusterError::NotOnPath("docker"))?;
    let st = std::process::Command::new(&docker)
        .args(["image", "inspect", "--format", "{{.Id}}", image])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map_err(|source| ClusterError::Spawn {
            program: docker.clone(),
            source,
        })?;
    Ok(st.success())
}

impl Provider for Lab {
    fn name(&self) -> &'static str {
        "lab"
    }
    fn needs(&self) -> &'static str {
        "a Docker daemon and the lab image (build it with fixtures/lab/build-image; no internet needed)"
    }
    fn check(&self) -> Result<(), ClusterError> {
        super::docker_available()?;
        let image = image_name(None);
        match image_present(&image) {
            Ok(true) => Ok(()),
            Ok(false) => Err(ClusterError::NoLabImage { image }),
            Err(e) => Err(ClusterError::LabImageQuery(Box::new(e))),
        }
    }
    fn create<'a>(
        &'a mut self,
        req: &'a ClusterRequest,
    ) -> BoxFuture<'a, Result<ClusterInfo, ClusterError>> {
        Box::pin(async move {
            crate::install_crypto_provider();
            self.check()
                .map_err(|e| ClusterError::LabUnavailable(Box::new(e)))?;
            let image = image_name(req.image.as_deref());
            let (name, tag) = image.rsplit_once(':').unwrap_or((image.as_str(), "latest"));
            let started = Instant::now();
            let container = GenericImage::new(name, tag)
                .with_exposed_port(ContainerPort::Tcp(6443))
                .with_wait_for(WaitFor::message_on_stdout(READY_LINE))
                .with_label(LAB_LABEL, "1")
                .with_label(RUN_LABEL, req.run_id.clone())
                .with_container_name(format!("istio-e2e-lab-{}", req.run_id))
                .with_hostname("istio-e2e-lab")
                .with_network("bridge")
                .with_cap_add("ALL")
                .with_cap_drop("SYS_RESOURCE")
                .with_security_opt("seccomp=unconfined")
                .with_security_opt("apparmor=unconfined")
                .with_mount(Mount::tmpfs_mount("/run"))
                .with_mount(Mount::tmpfs_mount("/tmp"))
                .with_mount(Mount::tmpfs_mount("/var/lib/containerd"))
                .with_host_config_modifier(|hc| {
                    // Publish the apiserver on loopback only (a free port), never on every
                    // interface as publish-all would.
                    hc.publish_all_ports = Some(false);
                    hc.port_bindings = Some(std::collections::HashMap::from([(
                        "6443/tcp".to_string(),
                        Some(vec![PortBinding {
                            host_ip: Some("127.0.0.1".into()),
                            host_port: Some(String::new()),
                        }]),
                    )]));
                    hc.masked_paths = Some(vec![]);
                    hc.readonly_paths = Some(vec![]);
                    hc.device_cgroup_rules = Some(vec!["a *:* rwm".into()]);
                    hc.devices = Some(vec![DeviceMapping {
                        path_on_host: Some("/dev/kmsg".into()),
                        path_in_container: Some("/dev/kmsg".into()),
                        cgroup_permissions: Some("rwm".into()),
                    }]);
                })
                .with_startup_timeout(Duration::from_secs(120))
                .start()
                .await
                .map_err(|e| ClusterError::LabStart(e.into()))?;
            let id = container.id().to_string();
            self.container = Some(container);
            let c = self.container.as_ref().expect("just set");
            let port = c
                .get_host_port_ipv4(ContainerPort::Tcp(6443))
                .await
                .map_err(|e| ClusterError::container("lab apiserver port", e))?;
            let ip = super::container::node_address(c, "lab").await?;
            let reading = format!("reading {KUBECONFIG_IN_CONTAINER} from the lab node");
            let mut cat = c
                .exec(ExecCommand::new(["cat", KUBECONFIG_IN_CONTAINER]))
                .await
                .map_err(|e| ClusterError::container(&reading, e))?;
            let raw = cat
                .stdout_to_vec()
                .await
                .map_err(|e| ClusterError::container(&reading, e))?;
            let kubeconfig = super::container::write_kubeconfig(
                &String::from_utf8_lossy(&raw),
                port,
                &req.artifacts,
            )?;
            let info = ClusterInfo {
                provider: "lab".into(),
                kubeconfig: kubeconfig.clone(),
                context: None,
                node_address: Some(ip),
                name: format!("istio-e2e-lab-{}", req.run_id),
            };
            let client = crate::kube::client_for(&kubeconfig, None).await?;
            wait_node_ready(&client, Duration::from_secs(120)).await?;
            tracing::info!(
                "lab node {id} Ready {:.1}s after start",
                started.elapsed().as_secs_f64()
            );
            Ok(info)
        })
    }
    fn teardown(&mut self, keep: bool) -> BoxFuture<'_, Result<String, ClusterError>> {
        Box::pin(super::container::remove(self.container.take(), keep, "lab"))
    }
    fn clean_leftovers(&self) -> Vec<Leftover> {
        super::remove_labelled_containers(LAB_LABEL)
    }
}

/// Waits (watch, no polling) until a node reports Ready.
pub async fn wait_node_ready(client: &kube::Client, limit: Duration) -> Result<(), ClusterError> {
    let api: Api<Node> = Api::all(client.clone());
    let ready = |n: &Node| {
        n.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    };
    let stream = watcher::watcher(api, watcher::Config::default());
    let mut stream = std::pin::pin!(kube::runtime::WatchStreamExt::default_backoff(stream));
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.next()).await {
            Err(_) | Ok(None) => {
                return Err(ClusterError::NodeNotReady(limit));
            }
            Ok(Some(Ok(watcher::Event::Apply(n) | watcher::Event::InitApply(n)))) if ready(&n) => {
                return Ok(());
            }
            Ok(Some(_)) => {}
        }
    }
}
