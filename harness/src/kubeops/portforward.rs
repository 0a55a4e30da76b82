//! Port-forward to a Service port, like `kubectl port-forward svc/x` and `istioctl dashboard`:
//! the Service's selector is resolved to a Ready pod and its targetPort (named or numeric),
//! and every local connection gets its own stream through the API server. When the pod goes
//! away the next connection resolves the Service again and reaches another Ready pod.

use std::net::SocketAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, ListParams, ResourceExt};
use tokio::net::TcpListener;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use super::KubeError;
use super::exec::is_ready;

/// A running port-forward; stops when [`PortForward::stop`] is called or it is dropped.
pub struct PortForward {
    local: SocketAddr,
    task: JoinHandle<()>,
    target: Arc<Mutex<(String, u16)>>,
}

impl PortForward {
    /// The local address clients connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The pod and port currently forwarded to.
    pub async fn target(&self) -> (String, u16) {
        self.target.lock().await.clone()
    }

    /// Stops accepting connections and closes the forward.
    pub fn stop(self) {
        self.task.abort();
    }
}

impl Drop for PortForward {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Resolves a Service port (by name or number) to a Ready pod and the container port.
pub async fn resolve_service(
    client: &kube::Client,
    ns: &str,
    service: &str,
    port: &str,
) -> Result<(String, u16), KubeError> {
    let (svc, sp) = super::service_port(client, ns, service, port).await?;
    let spec = svc.spec.clone().unwrap_or_default();
    let selector = spec.selector.clone().unwrap_or_default();
    if selector.is_empty() {
        return Err(KubeError::NoSelector {
            namespace: ns.to_string(),
            service: service.to_string(),
        });
    }
    let sel = super::selector_string(&selector);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let list = pods
        .list(&ListParams::default().labels(&sel))
        .await
        .map_err(|e| KubeError::call(format!("listing pods of service {ns}/{service}"), e))?;
    let mut ready: Vec<&Pod> = list.items.iter().filter(|p| is_ready(p)).collect();
    ready.sort_by_key(|p| p.name_any());
    let pod = ready.first().ok_or_else(|| KubeError::NoReadyPodBehind {
        namespace: ns.to_string(),
        service: service.to_string(),
        selector: sel.clone(),
    })?;
    let target = sp.target_port.clone().unwrap_or(IntOrString::Int(sp.port));
    let container_port = match target {
        IntOrString::Int(n) => n as u16,
        IntOrString::String(name) => pod
            .spec
            .as_ref()
            .into_iter()
            .flat_map(|s| s.containers.iter())
            .flat_map(|c| c.ports.iter().flatten())
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .map(|p| p.container_port as u16)
            .ok_or_else(|| KubeError::NoNamedPort {
                pod: pod.name_any(),
                name: name.clone(),
            })?,
    };
    Ok((pod.name_any(), container_port))
}

/// Starts forwarding `listen` (e.g. `127.0.0.1:0`) to `service`'s `port` in `ns`.
pub async fn start(
    client: kube::Client,
    ns: &str,
    service: &str,
    port: &str,
    listen: SocketAddr,
) -> Result<PortForward, KubeError> {
    let first = resolve_service(&client, ns, service, port).await?;
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| KubeError::Listen {
            addr: listen,
            source,
        })?;
    let local = listener.local_addr().map_err(KubeError::LocalAddr)?;
    let target = Arc::new(Mutex::new(first));
    let (ns, service, port) = (ns.to_string(), service.to_string(), port.to_string());
    let t = target.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                continue;
            };
            let client = client.clone();
            let t = t.clone();
            let (ns, service, port) = (ns.clone(), service.clone(), port.clone());
            tokio::spawn(async move {
                for attempt in 0..2 {
                    let (pod, pport) = t.lock().await.clone();
                    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
                    match pods.portforward(&pod, &[pport]).await {
                        Ok(mut pf) => {
                            if let Some(mut upstream) = pf.take_stream(pport) {
                                let _ =
                                    tokio::io::copy_bidirectional(&mut conn, &mut upstream).await;
                            }
                            drop(pf);
                            return;
                        }
                        Err(e) => {
                            tracing::warn!(
                                "port-forward to pod {ns}/{pod}:{pport} failed: {e}; resolving service {service} again"
                            );
                            if attempt == 0
                                && let Ok(next) =
                                    resolve_service(&client, &ns, &service, &port).await
                            {
                                *t.lock().await = next;
                            }
                        }
                    }
                }
            });
        }
    });
    Ok(PortForward {
        local,
        task,
        target,
    })
}
