//! STAND-IN for istiod's Gateway API support, for Gateways of class `istio`:
//! - the conversion of Gateway API `Gateway`s and `HTTPRoute`s into the Istio Gateway and
//!   VirtualService model, which [`super::routes`] then routes (followed:
//!   `pilot/pkg/config/kube/gateway/conversion.go`: a Gateway selects its own pods by
//!   `gateway.networking.k8s.io/gateway-name`, a listener is a server whose hosts are
//!   `<namespace>/<hostname or *>` by `allowedRoutes` (`Same` by default), an HTTPRoute is a
//!   VirtualService bound to the Gateways of its `parentRefs` with the route's hostnames (`*`
//!   when none), `PathPrefix` with Gateway semantics (path-separated), backend weights 1 by
//!   default);
//! - what `deploymentcontroller.go` and its `kube-gateway.yaml` template make for a Gateway:
//!   ServiceAccount, Deployment and Service `<name>-istio` (Service ports named after the
//!   listeners; the stand-in Envoy listens on 8080, so they target 8080), owned by the Gateway,
//!   the Service of the type the Gateway's `networking.istio.io/service-type` annotation names,
//!   `LoadBalancer` by default (followed: `templates/service.yaml`);
//! - the Gateway's status (`Accepted`, `Programmed`, `listeners[].attachedRoutes`), where
//!   `Programmed` is computed from that Service as `ResolveGatewayInstances` (`context.go`) and
//!   `setProgrammedCondition` (`conditions.go`) do: a `LoadBalancer` Service with no
//!   `status.loadBalancer.ingress` (kind, minikube and the lab have no load balancer) leaves the
//!   Gateway `Programmed=False`, reason `AddressNotAssigned`, "address pending for hostname".
//!   Istio also writes the status again when the Service gets an address; this stand-in does
//!   on the next Gateway or HTTPRoute change (the lab never assigns one).

use std::collections::BTreeMap;

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde::Deserialize;
use serde_json::{Value, json};

use super::networking::Watches;
use super::{IstiodError, Settings};

use super::routes::{
    Config, Destination, GatewaySpec, HttpMatch, HttpRoute, PortSelector, RouteDestination, Server,
    ServerPort, StringMatch, VirtualServiceSpec, fqdn,
};

/// The Gateway API group.
pub const GROUP: &str = "gateway.networking.k8s.io";
/// The class istiod implements.
pub const CLASS: &str = "istio";
/// The label Istio puts on a Gateway's pods.
pub const NAME_LABEL: &str = "gateway.networking.k8s.io/gateway-name";
/// The Gateway annotation that picks its Service's type (`LoadBalancer` when absent).
pub const SERVICE_TYPE: &str = "networking.istio.io/service-type";

/// Where a Gateway's Service can be reached from, as `ResolveGatewayInstances` sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum Address {
    /// Only inside the cluster (`ClusterIP` or `NodePort`): its hostname is reported.
    Internal,
    /// A `LoadBalancer` whose load balancer has given it no address yet.
    Pending,
    /// The load balancer's addresses.
    External(Vec<String>),
}

impl Address {
    /// From the live Service: its type and `status.loadBalancer.ingress`.
    pub fn of_service(service: &Value) -> Self {
        let external: Vec<String> = service["status"]["loadBalancer"]["ingress"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| i["ip"].as_str().or(i["hostname"].as_str()))
            .map(String::from)
            .collect();
        match service["spec"]["type"].as_str() {
            _ if !external.is_empty() => Address::External(external),
            Some("LoadBalancer") => Address::Pending,
            _ => Address::Internal,
        }
    }
}

/// `Gateway.spec` (Gateway API): the fields read.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KubeGatewaySpec {
    /// The class.
    #[serde(default)]
    pub gateway_class_name: String,
    /// The listeners.
    #[serde(default)]
    pub listeners: Vec<Listener>,
}

/// `spec.listeners[]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Listener {
    /// Its name (the Service port's).
    pub name: String,
    /// Port.
    pub port: u32,
    /// `HTTP`, `HTTPS`, `TCP`, `TLS`...
    #[serde(default)]
    pub protocol: String,
    /// Host it serves (all when none).
    pub hostname: Option<String>,
    /// Which namespaces' routes may attach.
    pub allowed_routes: Option<Value>,
}

impl Listener {
    /// `allowedRoutes.namespaces.from`: `All` lets every namespace attach; else `Same`.
    fn admits_all_namespaces(&self) -> bool {
        self.allowed_routes
            .as_ref()
            .and_then(|a| a["namespaces"]["from"].as_str())
            == Some("All")
    }
}

/// `HTTPRoute.spec`: the fields read.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteSpec {
    /// The Gateways (and listeners) it attaches to.
    #[serde(default)]
    pub parent_refs: Vec<ParentRef>,
    /// Hostnames (all when none).
    #[serde(default)]
    pub hostnames: Vec<String>,
    /// Rules.
    #[serde(default)]
    pub rules: Vec<Rule>,
}

/// `parentRefs[]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParentRef {
    /// The Gateway's name.
    pub name: String,
    /// Its namespace (the route's when none).
    pub namespace: Option<String>,
    /// A listener's name.
    pub section_name: Option<String>,
    /// `Gateway` when none.
    pub kind: Option<String>,
}

/// `rules[]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    /// Matches (a `/` prefix when none).
    #[serde(default)]
    pub matches: Vec<Value>,
    /// Backends.
    #[serde(default)]
    pub backend_refs: Vec<BackendRef>,
    /// Filters and the rest (reported as unsupported by the routing).
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// `backendRefs[]`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct BackendRef {
    /// Service name.
    pub name: String,
    /// Its namespace (the route's when none).
    pub namespace: Option<String>,
    /// Port.
    pub port: Option<u32>,
    /// Weight (1 when none).
    pub weight: Option<i64>,
}

/// A Gateway of class `istio` as an Istio Gateway selecting its own pods.
pub fn to_gateway(gw: &Config<KubeGatewaySpec>) -> Config<GatewaySpec> {
    let servers = gw
        .spec
        .listeners
        .iter()
        .map(|l| {
            let ns = if l.admits_all_namespaces() {
                "*"
            } else {
                gw.namespace.as_str()
            };
            Server {
                port: Some(ServerPort {
                    number: l.port,
                    protocol: l.protocol.clone(),
                }),
                hosts: vec![format!("{ns}/{}", l.hostname.as_deref().unwrap_or("*"))],
                tls: None,
            }
        })
        .collect();
    Config {
        name: gw.name.clone(),
        namespace: gw.namespace.clone(),
        created: gw.created.clone(),
        spec: GatewaySpec {
            selector: BTreeMap::from([(NAME_LABEL.to_string(), gw.name.clone())]),
            servers,
        },
    }
}

/// The listeners of `gateways` (of class `istio`) a route's parentRefs attach it to, as
/// (gateway namespace/name, listener name).
pub fn attachments(
    route: &Config<HttpRouteSpec>,
    gateways: &[Config<KubeGatewaySpec>],
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in &route.spec.parent_refs {
        if p.kind.as_deref().is_some_and(|k| k != "Gateway") {
            continue;
        }
        let ns = p.namespace.as_deref().unwrap_or(&route.namespace);
        let Some(gw) = gateways
            .iter()
            .find(|g| g.name == p.name && g.namespace == ns)
        else {
            continue;
        };
        for l in &gw.spec.listeners {
            let named = p.section_name.as_deref().is_none_or(|s| s == l.name);
            let allowed = l.admits_all_namespaces() || gw.namespace == route.namespace;
            if named && allowed && l.protocol.eq_ignore_ascii_case("HTTP") {
                out.push((format!("{}/{}", gw.namespace, gw.name), l.name.clone()));
            }
        }
    }
    out
}

/// An HTTPRoute as a VirtualService bound to the Gateways it attaches to.
pub fn to_virtual_service(
    route: &Config<HttpRouteSpec>,
    gateways: &[Config<KubeGatewaySpec>],
) -> Config<VirtualServiceSpec> {
    let mut bound: Vec<String> = attachments(route, gateways)
        .into_iter()
        .map(|(g, _)| g)
        .collect();
    bound.dedup();
    let hosts = if route.spec.hostnames.is_empty() {
        vec!["*".to_string()]
    } else {
        route.spec.hostnames.clone()
    };
    let http = route
        .spec
        .rules
        .iter()
        .map(|r| rule(r, &route.namespace))
        .collect();
    Config {
        name: route.name.clone(),
        namespace: route.namespace.clone(),
        created: route.created.clone(),
        spec: VirtualServiceSpec {
            hosts,
            gateways: bound,
            http,
            export_to: vec![],
            gateway_semantics: true,
        },
    }
}

fn rule(r: &Rule, namespace: &str) -> HttpRoute {
    let matches = r.matches.iter().map(path_match).collect();
    let route = r
        .backend_refs
        .iter()
        .map(|b| RouteDestination {
            destination: Destination {
                host: fqdn(&b.name, b.namespace.as_deref().unwrap_or(namespace)),
                subset: None,
                port: b.port.map(|number| PortSelector { number }),
            },
            weight: b.weight.unwrap_or(1),
        })
        .collect();
    HttpRoute {
        matches,
        route,
        other: r.other.clone(),
    }
}

/// One `matches[]`: its path (PathPrefix `/` when none); other conditions are kept as
/// unsupported.
fn path_match(m: &Value) -> HttpMatch {
    let path = &m["path"];
    let value = path["value"].as_str().unwrap_or("/").to_string();
    let uri = match path["type"].as_str().unwrap_or("PathPrefix") {
        "Exact" => StringMatch::Exact(value),
        "RegularExpression" => StringMatch::Regex(value),
        _ => StringMatch::Prefix(value),
    };
    let other = m
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| *k != "path")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    HttpMatch {
        uri: Some(uri),
        gateways: vec![],
        port: None,
        other,
    }
}

/// What Istio's deployment controller makes for a Gateway: ServiceAccount, Deployment and
/// Service `<name>-istio` of type `service_type`, owned by the Gateway. `owner` is the
/// Gateway's (uid, apiVersion); `proxy_config` the mesh's `defaultConfig`; `istiod` the istiod
/// Service's name.
pub fn deployment_objects(
    gw: &Config<KubeGatewaySpec>,
    service_type: &str,
    owner: (&str, &str),
    proxy_image: &str,
    proxy_config: &Value,
    istiod: &str,
) -> Vec<Value> {
    let name = format!("{}-istio", gw.name);
    let meta = json!({"name": name, "namespace": gw.namespace,
        "labels": {NAME_LABEL: gw.name, "gateway.istio.io/managed": "istio.io-gateway-controller"},
        "ownerReferences": [{"apiVersion": owner.1, "kind": "Gateway", "name": gw.name, "uid": owner.0}]});
    let mut ports =
        vec![json!({"name": "status-port", "port": 15021, "targetPort": 15021, "protocol": "TCP"})];
    ports.extend(
        gw.spec.listeners.iter().map(
            |l| json!({"name": l.name, "port": l.port, "targetPort": 8080, "protocol": "TCP"}),
        ),
    );
    vec![
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta}),
        gateway_deployment(&meta, &gw.name, proxy_image, proxy_config, istiod),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": meta,
            "spec": {"type": service_type, "selector": {NAME_LABEL: gw.name}, "ports": ports}}),
    ]
}

fn gateway_deployment(
    meta: &Value,
    gateway: &str,
    image: &str,
    proxy_config: &Value,
    istiod: &str,
) -> Value {
    let name = meta["name"].as_str().unwrap_or_default();
    let field = |n: &str, p: &str| json!({"name": n, "valueFrom": {"fieldRef": {"fieldPath": p}}});
    let routes = format!(
        "http://{istiod}.istio-system.svc:15014{}?namespace=$(POD_NAMESPACE)&pod=$(POD_NAME)&port=8080",
        super::server::ROUTES_PATH
    );
    let env = vec![
        field("POD_NAME", "metadata.name"),
        field("POD_NAMESPACE", "metadata.namespace"),
        field("INSTANCE_IP", "status.podIP"),
        field("SERVICE_ACCOUNT", "spec.serviceAccountName"),
        json!({"name": "PROXY_CONFIG", "value": proxy_config.to_string()}),
        json!({"name": "ISTIO_META_WORKLOAD_NAME", "value": name}),
        json!({"name": "ISTIO_META_CLUSTER_ID", "value": "Kubernetes"}),
        json!({"name": "STANDIN_GATEWAY_ROUTES_URL", "value": routes}),
    ];
    let labels = json!({NAME_LABEL: gateway, "istio.io/gateway-name": gateway,
        "service.istio.io/canonical-name": name, "sidecar.istio.io/inject": "false"});
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
        "spec": {"replicas": 1, "selector": {"matchLabels": {NAME_LABEL: gateway}},
            "template": {"metadata": {"labels": labels, "annotations": {"sidecar.istio.io/inject": "false"}},
                "spec": {"serviceAccountName": name,
                    "containers": [{"name": "istio-proxy", "image": image, "imagePullPolicy": "IfNotPresent",
                        "args": ["proxy", "router", "--domain", "$(POD_NAMESPACE).svc.cluster.local"],
                        "ports": [{"containerPort": 15021, "protocol": "TCP"}, {"containerPort": 8080, "protocol": "TCP"}],
                        "readinessProbe": {"httpGet": {"path": "/healthz/ready", "port": 15021}, "periodSeconds": 2},
                        "env": env,
                        "volumeMounts": [
                            {"name": "istio-envoy", "mountPath": "/etc/istio/proxy"},
                            {"name": "istio-data", "mountPath": "/var/lib/istio/data"},
                            {"name": "podinfo", "mountPath": "/etc/istio/pod"},
                            {"name": "istiod-ca-cert", "mountPath": "/var/run/secrets/istio"}]}],
                    "volumes": [
                        {"name": "istio-envoy", "emptyDir": {}},
                        {"name": "istio-data", "emptyDir": {}},
                        {"name": "podinfo", "downwardAPI": {"items": [
                            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                            {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}}]}},
                        {"name": "istiod-ca-cert", "configMap": {"name": "istio-ca-root-cert"}}]}}}})
}

/// The Gateway's status: Accepted, Programmed (as `address` allows), each listener's attached
/// routes.
pub fn status(
    gw: &Config<KubeGatewaySpec>,
    generation: i64,
    routes: &[Config<HttpRouteSpec>],
    gateways: &[Config<KubeGatewaySpec>],
    address: &Address,
    now: &str,
) -> Value {
    let condition = |t: &str| {
        json!({"type": t, "status": "True", "reason": t, "observedGeneration": generation,
            "lastTransitionTime": now, "message": "Resource accepted (stand-in istiod)"})
    };
    let key = format!("{}/{}", gw.namespace, gw.name);
    let listeners: Vec<Value> = gw
        .spec
        .listeners
        .iter()
        .map(|l| {
            let attached = routes
                .iter()
                .filter(|r| attachments(r, gateways).contains(&(key.clone(), l.name.clone())))
                .count();
            json!({"name": l.name, "attachedRoutes": attached,
                "supportedKinds": [{"group": GROUP, "kind": "HTTPRoute"}],
                "conditions": [condition("Accepted"), condition("Programmed"), condition("ResolvedRefs")]})
        })
        .collect();
    let host = format!("{}-istio.{}.svc.cluster.local", gw.name, gw.namespace);
    let mut programmed = condition("Programmed");
    if *address == Address::Pending {
        let assigned: Vec<String> = gw
            .spec
            .listeners
            .iter()
            .map(|l| format!("{host}:{}", l.port))
            .collect();
        programmed["status"] = json!("False");
        programmed["reason"] = json!("AddressNotAssigned");
        programmed["message"] = json!(format!(
            "Assigned to service(s) {}, but failed to assign to all requested addresses: \
             address pending for hostname {host:?} (stand-in istiod)",
            assigned.join(" and ")
        ));
    }
    let addresses: Vec<Value> = match address {
        Address::External(a) => a
            .iter()
            .map(|v| json!({"type": "IPAddress", "value": v}))
            .collect(),
        _ => vec![json!({"type": "Hostname", "value": host})],
    };
    json!({"status": {
        "addresses": addresses,
        "conditions": [condition("Accepted"), programmed],
        "listeners": listeners}})
}

/// Keeps, for every Gateway of class `istio`, the GatewayClass, its `<name>-istio` objects and
/// its status, on every change of Gateways or HTTPRoutes (runs as long as the process).
pub async fn control(client: kube::Client, watches: Watches, settings: Settings) {
    loop {
        watches.gateway_api_changed.notified().await;
        if let Err(e) = reconcile(&client, &watches, &settings).await {
            tracing::warn!("Gateway API: {e}");
        }
    }
}

async fn reconcile(
    client: &kube::Client,
    watches: &Watches,
    settings: &Settings,
) -> Result<(), IstiodError> {
    let (gateways, routes) = watches.gateway_api();
    if gateways.is_empty() {
        return Ok(());
    }
    let pp = PatchParams::apply("istio.io-gateway-controller").force();
    let class = json!({"apiVersion": format!("{GROUP}/v1"), "kind": "GatewayClass",
        "metadata": {"name": CLASS}, "spec": {"controllerName": "istio.io/gateway-controller"}});
    apply(client, &class, &pp).await?;
    let proxy_config = super::server::proxy_config(client, settings).await?;
    // Only the watched (live) stores know their resource; fixed ones have nothing to write.
    let Some(ar) = watches.kube_gateways.resource.clone() else {
        return Ok(());
    };
    for object in watches.kube_gateways.objects() {
        let Some(gw) = gateways.iter().find(|g| {
            Some(&g.name) == object.metadata.name.as_ref()
                && Some(&g.namespace) == object.metadata.namespace.as_ref()
        }) else {
            continue;
        };
        let uid = object.metadata.uid.clone().unwrap_or_default();
        let service_type = object
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(SERVICE_TYPE))
            .map_or("LoadBalancer", String::as_str);
        for o in deployment_objects(
            gw,
            service_type,
            (&uid, &ar.api_version),
            &settings.proxy_image,
            &proxy_config,
            &settings.service(),
        ) {
            apply(client, &o, &pp).await?;
        }
        let generation = object.metadata.generation.unwrap_or(0);
        let now = k8s_openapi::jiff::Timestamp::now().to_string();
        let address = service_address(client, gw).await?;
        let desired = status(gw, generation, &routes, &gateways, &address, &now);
        if object.data.get("status").map(status_key) != Some(status_key(&desired["status"])) {
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &gw.namespace, &ar);
            api.patch_status(&gw.name, &PatchParams::default(), &Patch::Merge(&desired))
                .await
                .map_err(|e| {
                    IstiodError::kube(
                        format!("writing the status of Gateway {}/{}", gw.namespace, gw.name),
                        e,
                    )
                })?;
            tracing::info!("Gateway {}/{} programmed", gw.namespace, gw.name);
        }
    }
    Ok(())
}

/// The Gateway's Service as it is now (after the apply above), as an [`Address`].
async fn service_address(
    client: &kube::Client,
    gw: &Config<KubeGatewaySpec>,
) -> Result<Address, IstiodError> {
    let name = format!("{}-istio", gw.name);
    let api: Api<k8s_openapi::api::core::v1::Service> =
        Api::namespaced(client.clone(), &gw.namespace);
    let service = api
        .get(&name)
        .await
        .map_err(|e| IstiodError::kube(format!("reading Service {}/{name}", gw.namespace), e))?;
    Ok(Address::of_service(
        &serde_json::to_value(service).unwrap_or_default(),
    ))
}

/// What a status says, without the times (so that writing it again is no change).
fn status_key(s: &Value) -> Value {
    let conditions = |c: &Value| -> Vec<Value> {
        c.as_array()
            .into_iter()
            .flatten()
            .map(|c| json!([c["type"], c["status"], c["observedGeneration"]]))
            .collect()
    };
    let listeners: Vec<Value> = s["listeners"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| json!([l["name"], l["attachedRoutes"], conditions(&l["conditions"])]))
        .collect();
    json!([conditions(&s["conditions"]), listeners, s["addresses"]])
}

/// Server-side apply of one object (namespaced by its metadata).
async fn apply(client: &kube::Client, o: &Value, pp: &PatchParams) -> Result<(), IstiodError> {
    let (api_version, kind) = (
        o["apiVersion"].as_str().unwrap_or_default(),
        o["kind"].as_str().unwrap_or_default(),
    );
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
    let name = o["metadata"]["name"].as_str().unwrap_or_default();
    let api: Api<DynamicObject> = match o["metadata"]["namespace"].as_str() {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    };
    api.patch(name, pp, &Patch::Apply(o))
        .await
        .map(|_| ())
        .map_err(|e| IstiodError::kube(format!("applying {kind} {name}"), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writing_the_same_status_at_another_time_is_no_change_but_a_new_route_count_is() {
        let listener = Listener {
            name: "http".into(),
            port: 80,
            protocol: "HTTP".into(),
            ..Listener::default()
        };
        let gw = Config {
            name: "gw".into(),
            namespace: "default".into(),
            created: String::new(),
            spec: KubeGatewaySpec {
                gateway_class_name: CLASS.into(),
                listeners: vec![listener],
            },
        };
        let route = Config {
            name: "r".into(),
            namespace: "default".into(),
            created: String::new(),
            spec: HttpRouteSpec {
                parent_refs: vec![ParentRef {
                    name: "gw".into(),
                    ..ParentRef::default()
                }],
                ..HttpRouteSpec::default()
            },
        };
        let gws = [gw.clone()];
        let at = |t: &str, routes: &[Config<HttpRouteSpec>]| {
            status(&gw, 2, routes, &gws, &Address::Internal, t)["status"].clone()
        };
        let one = at("2026-01-01T00:00:00Z", std::slice::from_ref(&route));
        assert_eq!(one["listeners"][0]["attachedRoutes"], 1);
        assert_eq!(
            status_key(&one),
            status_key(&at("2027-01-01T00:00:00Z", &[route]))
        );
        assert_ne!(
            status_key(&one),
            status_key(&at("2026-01-01T00:00:00Z", &[]))
        );
        assert_ne!(
            status_key(&one),
            status_key(&json!({})),
            "a new Gateway's status is written"
        );
    }
}
