//! `lab`: a real single-node Kubernetes in one Docker container, built offline by
//! `fixtures/lab/build-image` (see `fixtures/lab/README.md`): v1.20.2 from Debian's packages
//! (the walkthrough's version) or v1.34 from the Kubernetes Go modules (today's: native
//! sidecars, CEL in CRDs, cgroup v2). The node is chosen by the requested Kubernetes version
//! (the scenario's `cluster.kubernetes`, `--kubernetes`, or `ISTIO_E2E_K8S_VERSION`; a full
//! version maps to its minor). It works with no registry and no internet, which makes it our
//! CI cluster and a cluster for air-gapped machines. Started through testcontainers with no
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

/// The image name the build script tags for the default node (`fixtures/lab/build-image`).
pub const DEFAULT_IMAGE: &str = "istio-e2e-lab:v1.20.2";

/// One lab node `fixtures/lab/build-image` can build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LabNode {
    /// The Kubernetes minor it runs, e.g. `v1.34`.
    pub minor: &'static str,
    /// The image the harness starts (an alias the build script tags).
    pub image: &'static str,
    /// The one command that builds it (as root; cached, a second run takes a second).
    pub build_command: &'static str,
}

/// The lab's nodes; the first is the default.
pub const NODES: [LabNode; 2] = [
    LabNode {
        minor: "v1.20",
        image: DEFAULT_IMAGE,
        build_command: "fixtures/lab/build-image",
    },
    LabNode {
        minor: "v1.34",
        image: "istio-e2e-lab:v1.34",
        build_command: "fixtures/lab/build-image --kubernetes v1.34",
    },
];

/// Why no lab node fits a requested Kubernetes version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabVersionError {
    /// Not a version at all.
    #[error(
        "`{0}` is not a Kubernetes version; write v1.20 or v1.34 (a full version such as v1.34.4 maps to its minor)"
    )]
    NotAVersion(String),
    /// A version the lab has no node for.
    #[error(
        "the lab has no Kubernetes {asked} node; it has {known} (set ISTIO_E2E_K8S_VERSION or the scenario's cluster.kubernetes to one of them)"
    )]
    NoNode {
        /// The version asked for.
        asked: String,
        /// The minors the lab has.
        known: String,
    },
}

/// The node for a Kubernetes version (`v1.34`, `1.34`, `v1.34.4`); the default node when None.
pub fn node_for(version: Option<&str>) -> Result<LabNode, LabVersionError> {
    let Some(v) = version.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(NODES[0]);
    };
    let (major, minor) =
        crate::istio::minor_of(v).ok_or_else(|| LabVersionError::NotAVersion(v.to_string()))?;
    let want = format!("v{major}.{minor}");
    NODES
        .iter()
        .find(|n| n.minor == want)
        .copied()
        .ok_or_else(|| LabVersionError::NoNode {
            asked: v.to_string(),
            known: NODES.map(|n| n.minor).join(", "),
        })
}

/// The version asked of the lab when a run or test does not say: `ISTIO_E2E_K8S_VERSION`.
pub fn version_from_env() -> Option<String> {
    std::env::var("ISTIO_E2E_K8S_VERSION")
        .ok()
        .filter(|v| !v.trim().is_empty())
}

/// One line per lab node for `istio-e2e doctor`: whether its image is built, or how to build it.
pub fn images_report() -> Vec<(bool, String)> {
    NODES
        .iter()
        .map(|n| match image_present(n.image) {
            Ok(true) => (true, format!("{} (Kubernetes {}) built", n.image, n.minor)),
            Ok(false) => (
                false,
                format!(
                    "{} (Kubernetes {}) not built; build it with `sudo {}`",
                    n.image, n.minor, n.build_command
                ),
            ),
            Err(e) => (false, format!("{}: cannot ask Docker ({e})", n.image)),
        })
        .collect()
}
/// The label every lab container carries, so `istio-e2e clean` finds leftovers.
pub const LAB_LABEL: &str = "io.istio-e2e.lab";
/// The line the node's entrypoint prints once the apiserver answers.
pub const READY_LINE: &str = "istio-e2e-lab: apiserver ready";
/// Where the entrypoint writes the admin kubeconfig inside the container.
pub const KUBECONFIG_IN_CONTAINER: &str = "/etc/kubernetes/admin.kubeconfig";
/// The one command that builds the default node's image.
pub const BUILD_COMMAND: &str = "fixtures/lab/build-image";

/// The lab provider.
#[derive(Default)]
pub struct Lab {
    container: Option<ContainerAsync<GenericImage>>,
    kubernetes: Option<String>,
    /// The run id of the node being started: its container carries it as a label from the
    /// moment Docker creates it, before testcontainers hands back a handle (see [`Lab::teardown`]).
    starting: Option<String>,
}

/// The image to run: `over` (the scenario's `cluster.image`), else `ISTIO_E2E_LAB_IMAGE`, else
/// the image of `node`.
pub fn image_name(over: Option<&str>, node: LabNode) -> String {
    over.map(String::from)
        .or_else(|| std::env::var("ISTIO_E2E_LAB_IMAGE").ok())
        .unwrap_or_else(|| node.image.to_string())
}

/// `Ok(())` when the image to run is built; else the one command that builds it.
fn check_image(image: &str, node: LabNode) -> Result<(), ClusterError> {
    match image_present(image) {
        Ok(true) => Ok(()),
        Ok(false) if image == node.image => Err(ClusterError::NoLabImage {
            image: format!("{image} (Kubernetes {})", node.minor),
            build: node.build_command,
        }),
        Ok(false) => Err(ClusterError::NoLabImageOverride {
            image: image.to_string(),
        }),
        Err(e) => Err(ClusterError::LabImageQuery(Box::new(e))),
    }
}

impl Lab {
    /// A lab provider for a Kubernetes version (`v1.34`, `v1.34.4`); None takes
    /// `ISTIO_E2E_K8S_VERSION`, else the default node. A run's request may still name another.
    pub fn for_version(kubernetes: Option<String>) -> Self {
        Lab {
            kubernetes,
            ..Lab::default()
        }
    }

    /// The node this provider starts for a request asking for `asked` (or for nothing).
    pub fn node(&self, asked: Option<&str>) -> Result<LabNode, LabVersionError> {
        let env = version_from_env();
        node_for(asked.or(self.kubernetes.as_deref()).or(env.as_deref()))
    }

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
        let node = self.node(None)?;
        super::docker_available()?;
        check_image(&image_name(None, node), node)
    }
    fn create<'a>(
        &'a mut self,
        req: &'a ClusterRequest,
    ) -> BoxFuture<'a, Result<ClusterInfo, ClusterError>> {
        Box::pin(async move {
            crate::install_crypto_provider();
            let node = self.node(req.kubernetes.as_deref())?;
            let image = image_name(req.image.as_deref(), node);
            super::docker_available()
                .and_then(|()| check_image(&image, node))
                .map_err(|e| ClusterError::LabUnavailable(Box::new(e)))?;
            let (name, tag) = image.rsplit_once(':').unwrap_or((image.as_str(), "latest"));
            let started = Instant::now();
            let standins = req.istio.as_ref().and(super::standins::find());
            let mut request = GenericImage::new(name, tag)
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
                .with_startup_timeout(Duration::from_secs(120));
            if let Some(s) = &standins {
                // The entrypoint imports every archive there before the kubelet starts.
                let to = format!("{}/istio-standins.tar", super::standins::NODE_IMAGES_DIR);
                request = request.with_copy_to(to, s.archive.clone());
            }
            self.starting = Some(req.run_id.clone());
            let container = request
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
            let client = crate::kubeops::client_for(&kubeconfig, None).await?;
            node_ready_or_evidence(&client, c).await?;
            if let (Some(_), Some(release)) = (&standins, &req.istio) {
                tag_standins(c, release).await?;
            }
            let version = client
                .apiserver_version()
                .await
                .map(|v| v.git_version)
                .unwrap_or_else(|e| format!("unknown ({e})"));
            tracing::info!(
                "lab node {id} ({image}, Kubernetes {version}) Ready {:.1}s after start",
                started.elapsed().as_secs_f64()
            );
            Ok(info)
        })
    }
    fn teardown(&mut self, keep: bool) -> BoxFuture<'_, Result<String, ClusterError>> {
        let run = self.starting.take();
        Box::pin(super::container::remove(
            self.container.take(),
            run,
            keep,
            "lab",
        ))
    }
    fn clean_leftovers(&self) -> Vec<Leftover> {
        super::remove_labelled_containers(LAB_LABEL)
    }
}

/// How long a started node may take to report Ready: generous, the v1.34 node takes ~20 s on
/// an idle 2-core machine and ~40 s on a busy one.
const NODE_READY_LIMIT: Duration = Duration::from_secs(240);

/// The entrypoint's line when a server of the node exits (it then prints that server's log
/// tail and stops the container).
const FATAL_LINE: &str = "istio-e2e-lab: FATAL";

/// Waits until the node is Ready, or fails early when the node's container reports a fatal
/// error or stops; a failure carries the evidence (entrypoint output, kubelet log tail).
/// Tags the stand-in images inside the node with the names `release` uses (`ctr images tag`).
async fn tag_standins(
    c: &ContainerAsync<GenericImage>,
    release: &super::standins::Release,
) -> Result<(), ClusterError> {
    let tags = super::standins::image_tags(release);
    for (from, to) in &tags {
        let argv = [
            "ctr",
            "-a",
            "/run/containerd/containerd.sock",
            "-n",
            "k8s.io",
        ];
        let argv = argv
            .iter()
            .copied()
            .chain(["images", "tag", "--force", from, to]);
        let what = format!("tagging the stand-in image {from} as {to} in the lab node");
        let mut run = c
            .exec(ExecCommand::new(argv))
            .await
            .map_err(|e| ClusterError::container(&what, e))?;
        // `ctr images tag` prints the new name when it made it.
        let out = run.stdout_to_vec().await.unwrap_or_default();
        let err = run.stderr_to_vec().await.unwrap_or_default();
        if !String::from_utf8_lossy(&out).contains(to.as_str()) {
            let said = String::from_utf8_lossy(&err).trim().to_string();
            return Err(ClusterError::container(&what, format!("ctr said: {said}")));
        }
    }
    tracing::info!(
        "lab node: {} stand-in images tagged for Istio {} (fixtures/standins)",
        tags.len(),
        release.version
    );
    Ok(())
}

async fn node_ready_or_evidence(
    client: &kube::Client,
    c: &ContainerAsync<GenericImage>,
) -> Result<(), ClusterError> {
    let died = tokio::select! {
        r = wait_node_ready(client, NODE_READY_LIMIT) => match r {
            Ok(()) => return Ok(()),
            Err(e) => e,
        },
        () = container_fatal(c) => ClusterError::NodeNotReady {
            limit: NODE_READY_LIMIT,
            last: "the node's container reported a fatal error or stopped".into(),
            evidence: String::new(),
        },
    };
    match died {
        ClusterError::NodeNotReady { limit, last, .. } => Err(ClusterError::NodeNotReady {
            limit,
            last,
            evidence: node_evidence(c).await,
        }),
        other => Err(other),
    }
}

/// Resolves when the container's output has a FATAL line or ends (the container stopped).
async fn container_fatal(c: &ContainerAsync<GenericImage>) {
    use tokio::io::AsyncBufReadExt;
    let mut lines = c.stdout(true).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if line.starts_with(FATAL_LINE) {
            return;
        }
    }
}

/// The tail of the node container's output and, while it runs, of its kubelet log: what a
/// user needs to see when the node did not become Ready (each block on new lines).
async fn node_evidence(c: &ContainerAsync<GenericImage>) -> String {
    // the entrypoint prints the failed server's log tail before it exits: give it a moment
    let _ = tokio::time::timeout(Duration::from_secs(5), container_stopped(c)).await;
    let mut out = String::new();
    if let Ok(raw) = c.stdout_to_vec().await {
        out.push_str(&evidence_block(
            "the node container's output",
            &String::from_utf8_lossy(&raw),
            40,
        ));
    }
    if c.is_running().await.unwrap_or(false) {
        let tail = ExecCommand::new(["tail", "-n", "25", "/var/log/lab/kubelet.log"]);
        if let Ok(mut r) = c.exec(tail).await {
            let raw = r.stdout_to_vec().await.unwrap_or_default();
            out.push_str(&evidence_block(
                "/var/log/lab/kubelet.log in the node",
                &String::from_utf8_lossy(&raw),
                25,
            ));
        }
    }
    out
}

/// Resolves when the container's output ends.
async fn container_stopped(c: &ContainerAsync<GenericImage>) {
    use tokio::io::AsyncReadExt;
    let mut sink = Vec::new();
    let _ = c.stdout(true).read_to_end(&mut sink).await;
}

/// `text`'s last `lines` lines under a heading, starting on a new line ("" when empty).
fn evidence_block(heading: &str, text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    if all.is_empty() {
        return String::new();
    }
    let tail = &all[all.len().saturating_sub(lines)..];
    format!(
        "\n--- last {} lines of {heading} ---\n{}",
        tail.len(),
        tail.join("\n")
    )
}

/// Waits (watch, no polling) until a node reports Ready; on timeout the error names the
/// node's last Ready condition.
pub async fn wait_node_ready(client: &kube::Client, limit: Duration) -> Result<(), ClusterError> {
    let api: Api<Node> = Api::all(client.clone());
    let stream = watcher::watcher(api, watcher::Config::default());
    let mut stream = std::pin::pin!(kube::runtime::WatchStreamExt::default_backoff(stream));
    let deadline = Instant::now() + limit;
    let mut last = "no node registered with the apiserver yet".to_string();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.next()).await {
            Err(_) | Ok(None) => {
                let evidence = String::new();
                return Err(ClusterError::NodeNotReady {
                    limit,
                    last,
                    evidence,
                });
            }
            Ok(Some(Ok(watcher::Event::Apply(n) | watcher::Event::InitApply(n)))) => {
                match ready_condition(&n) {
                    Ok(()) => return Ok(()),
                    Err(why) => last = why,
                }
            }
            Ok(Some(Err(e))) => last = format!("watching nodes failed: {e}"),
            Ok(Some(_)) => {}
        }
    }
}

/// Ok when the node's Ready condition is True, else that condition as `reason: message`.
fn ready_condition(n: &Node) -> Result<(), String> {
    let name = n.metadata.name.as_deref().unwrap_or("?");
    let cond = n
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"));
    match cond {
        Some(c) if c.status == "True" => Ok(()),
        Some(c) => Err(format!(
            "node {name} Ready={} ({}: {})",
            c.status,
            c.reason.as_deref().unwrap_or("no reason"),
            c.message.as_deref().unwrap_or("no message")
        )),
        None => Err(format!("node {name} has no Ready condition yet")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node_with_ready(status: &str) -> Node {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "istio-e2e-lab"},
            "status": {"conditions": [{"type": "Ready", "status": status,
                "reason": "KubeletNotReady",
                "message": "container runtime network not ready: cni config uninitialized"}]}
        }))
        .unwrap()
    }

    #[test]
    fn a_node_not_ready_names_its_condition() {
        assert_eq!(ready_condition(&node_with_ready("True")), Ok(()));
        assert_eq!(
            ready_condition(&node_with_ready("False")),
            Err(
                "node istio-e2e-lab Ready=False (KubeletNotReady: container runtime network \
                 not ready: cni config uninitialized)"
                    .into()
            )
        );
        let bare: Node =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "n"}})).unwrap();
        assert_eq!(
            ready_condition(&bare),
            Err("node n has no Ready condition yet".into())
        );
    }

    #[test]
    fn evidence_keeps_the_last_lines_under_a_heading() {
        assert_eq!(evidence_block("x", "", 3), "");
        assert_eq!(
            evidence_block("kubelet.log", "a\nb\nc\nd\n", 2),
            "\n--- last 2 lines of kubelet.log ---\nc\nd"
        );
    }

    #[test]
    fn versions_map_to_their_minors_node() {
        assert_eq!(node_for(None).unwrap().image, "istio-e2e-lab:v1.20.2");
        assert_eq!(node_for(Some("v1.20.2")).unwrap().minor, "v1.20");
        for v in ["v1.34", "1.34", "v1.34.4", " v1.34.0 "] {
            assert_eq!(
                node_for(Some(v)).unwrap().image,
                "istio-e2e-lab:v1.34",
                "{v}"
            );
        }
        assert_eq!(
            node_for(Some("v1.34")).unwrap().build_command,
            "fixtures/lab/build-image --kubernetes v1.34"
        );
    }

    #[test]
    fn a_version_without_a_node_names_the_ones_there_are() {
        let e = node_for(Some("v1.33.1")).unwrap_err();
        assert_eq!(
            e,
            LabVersionError::NoNode {
                asked: "v1.33.1".into(),
                known: "v1.20, v1.34".into()
            }
        );
        assert!(e.to_string().contains("it has v1.20, v1.34"), "{e}");
        assert!(matches!(
            node_for(Some("latest")),
            Err(LabVersionError::NotAVersion(_))
        ));
    }

    #[test]
    fn a_missing_image_names_the_one_command_that_builds_it() {
        let node = node_for(Some("v1.34")).unwrap();
        let e = check_image("istio-e2e-lab:v1.34-no-such-tag-for-tests", node);
        // without Docker the error says so instead; with it, the image does not exist
        let e = e.unwrap_err().to_string();
        assert!(
            e.contains("does not exist") || e.contains("cannot ask Docker"),
            "{e}"
        );
        if super::super::which("docker").is_some() && super::super::docker_available().is_ok() {
            let fake = LabNode {
                image: "istio-e2e-lab:no-such-node-for-tests",
                ..node
            };
            let e = check_image(fake.image, fake).unwrap_err().to_string();
            assert!(
                e.contains(
                    "is not built; build it with `sudo fixtures/lab/build-image --kubernetes v1.34`"
                ),
                "{e}"
            );
        }
    }
}
