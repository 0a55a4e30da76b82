//! The ingress address: a Service port's nodePort and the address that reaches the node from
//! the host, as istio.io's tests do when the gateway's external IP stays `<pending>`.

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams};

use super::KubeError;

/// Where the host reaches a Service port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngressAddress {
    /// The node's address (from the provider, a gateway pod's hostIP, or the node's InternalIP).
    pub host: String,
    /// The nodePort of the named port.
    pub node_port: u16,
    /// LoadBalancer ingress IPs or hostnames, when the cluster assigned any.
    pub load_balancer: Vec<String>,
}

/// Finds `service`'s port named `port`: its nodePort, and the node address (`node_address`
/// from the provider when it knows one, else the hostIP of a pod behind the service, else the
/// first node's InternalIP).
pub async fn find(
    client: &kube::Client,
    ns: &str,
    service: &str,
    port: &str,
    node_address: Option<&str>,
) -> Result<IngressAddress, KubeError> {
    let (svc, p) = super::service_port(client, ns, service, port).await?;
    let spec = svc.spec.clone().unwrap_or_default();
    let node_port = p.node_port.ok_or_else(|| KubeError::NoNodePort {
        namespace: ns.to_string(),
        service: service.to_string(),
        port: port.to_string(),
        service_type: spec.type_.clone().unwrap_or_default(),
    })? as u16;
    let load_balancer = svc
        .status
        .and_then(|s| s.load_balancer)
        .and_then(|lb| lb.ingress)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|i| i.ip.or(i.hostname))
        .collect();
    let host = match node_address {
        Some(a) => a.to_string(),
        None => node_host(client, ns, &spec.selector.unwrap_or_default()).await?,
    };
    Ok(IngressAddress {
        host,
        node_port,
        load_balancer,
    })
}

async fn node_host(
    client: &kube::Client,
    ns: &str,
    selector: &std::collections::BTreeMap<String, String>,
) -> Result<String, KubeError> {
    if !selector.is_empty() {
        let sel = super::selector_string(selector);
        let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
        if let Ok(list) = pods.list(&ListParams::default().labels(&sel)).await
            && let Some(ip) = list
                .items
                .iter()
                .find_map(|p| p.status.as_ref().and_then(|s| s.host_ip.clone()))
        {
            return Ok(ip);
        }
    }
    let nodes: Api<Node> = Api::all(client.clone());
    let list = nodes
        .list(&ListParams::default())
        .await
        .map_err(|e| KubeError::call("listing nodes", e))?;
    list.items
        .iter()
        .flat_map(|n| n.status.iter().flat_map(|s| s.addresses.iter().flatten()))
        .find(|a| a.type_ == "InternalIP")
        .map(|a| a.address.clone())
        .ok_or(KubeError::NoNodeAddress)
}
