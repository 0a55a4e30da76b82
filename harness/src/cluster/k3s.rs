//! `k3s`: k3s in a privileged container through testcontainers (testcontainers-modules' K3s
//! image). The kubeconfig is read out of the container and pointed at the published port.

use futures::future::BoxFuture;
use testcontainers_modules::k3s::{K3s as K3sImage, KUBE_SECURE_PORT};
use testcontainers_modules::testcontainers::runners::AsyncRunner;
use testcontainers_modules::testcontainers::{ContainerAsync, ImageExt};

use super::{ClusterError, ClusterInfo, ClusterRequest, Leftover, Provider, RUN_LABEL};

/// `k3s` arguments: testcontainers-modules' default (`server --snapshotter=native`) and no
/// traefik.
pub const K3S_SERVER_ARGS: [&str; 3] = ["server", "--snapshotter=native", "--disable=traefik"];

/// The k3s provider.
#[derive(Default)]
pub struct K3s {
    container: Option<ContainerAsync<K3sImage>>,
    /// The run id of the container being started (see [`super::container::remove`]).
    starting: Option<String>,
}

impl Provider for K3s {
    fn name(&self) -> &'static str {
        "k3s"
    }
    fn needs(&self) -> &'static str {
        "a Docker daemon that allows privileged containers, and the rancher/k3s image (pulled or loaded)"
    }
    fn check(&self) -> Result<(), ClusterError> {
        super::docker_available()?;
        privileged_containers_possible()
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
            // The module's own command, plus traefik disabled, as Istio's k3d setup page does
            // (`--disable=traefik`): it is a second ingress whose servicelb pod competes with
            // istio-ingressgateway's for the node's ports 80/443.
            let mut image = K3sImage::default()
                .with_conf_mount(&conf)
                .with_cmd(K3S_SERVER_ARGS)
                .with_privileged(true)
                .with_userns_mode("host")
                .with_label(RUN_LABEL, req.run_id.clone());
            if let Some(t) = tag {
                image = image.with_tag(t);
            }
            self.starting = Some(req.run_id.clone());
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
        let run = self.starting.take();
        Box::pin(super::container::remove(
            self.container.take(),
            run,
            keep,
            "k3s",
        ))
    }
    fn clean_leftovers(&self) -> Vec<Leftover> {
        super::remove_labelled_containers(RUN_LABEL)
    }
}

/// The k3s node runs privileged. A privileged container gets every capability of Docker's
/// bounding set, and runc refuses to start it when that set lacks any (a sandboxed machine).
/// With a local daemon, the set is this process's (`CapBnd` in `/proc/self/status`); with a
/// remote `DOCKER_HOST` nothing here can tell, so the check passes.
fn privileged_containers_possible() -> Result<(), ClusterError> {
    let remote = std::env::var("DOCKER_HOST").is_ok_and(|h| !h.starts_with("unix://"));
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let last = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|t| t.trim().parse().ok());
    match (remote, missing_capabilities(&status, last)) {
        (false, Some(missing)) if !missing.is_empty() => Err(ClusterError::NoPrivileged {
            missing: missing.join(", "),
        }),
        _ => Ok(()),
    }
}

/// Capabilities `0..=last` absent from the `CapBnd` line of a `/proc/<pid>/status` text, by
/// name where the name is known; `None` when the text has no such line.
fn missing_capabilities(status: &str, last: Option<u32>) -> Option<Vec<String>> {
    const NAMES: &[(u32, &str)] = &[
        (21, "CAP_SYS_ADMIN"),
        (24, "CAP_SYS_RESOURCE"),
        (25, "CAP_SYS_TIME"),
        (33, "CAP_MAC_ADMIN"),
        (37, "CAP_AUDIT_READ"),
    ];
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))?
        .trim();
    let set = u64::from_str_radix(hex, 16).ok()?;
    let last = last.unwrap_or(40).min(63);
    let missing = (0..=last)
        .filter(|bit| set & (1u64 << bit) == 0)
        .map(|bit| match NAMES.iter().find(|(b, _)| *b == bit) {
            Some((_, name)) => (*name).to_string(),
            None => format!("capability {bit}"),
        })
        .collect();
    Some(missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This sandbox's bounding set (CAP_SYS_RESOURCE dropped) makes privileged containers
    /// fail; a full set does not.
    #[test]
    fn a_bounding_set_without_sys_resource_cannot_run_privileged() {
        let sandbox = "Name:\tx\nCapBnd:\t000001fffeffffff\n";
        assert_eq!(
            missing_capabilities(sandbox, Some(40)),
            Some(vec!["CAP_SYS_RESOURCE".to_string()])
        );
        let full = "CapBnd:\t000001ffffffffff\n";
        assert_eq!(missing_capabilities(full, Some(40)), Some(vec![]));
        assert_eq!(missing_capabilities("Name: x\n", Some(40)), None);
    }
}
