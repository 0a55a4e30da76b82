//! Watches of what gateway routing reads: Istio `Gateway`s and `VirtualService`s
//! (networking.istio.io, the version the apiserver prefers, as istiod's CRD client reads one
//! version of each kind) and Services, each kept in a kube-rs reflector store.
//!
//! A kind whose CRD is not installed is an empty set, not an error (istiod ignores the types
//! the cluster does not serve): its watch keeps retrying with kube-rs's backoff and fills the
//! store once the CRD appears.

use std::collections::BTreeMap;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DynamicObject};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde::de::DeserializeOwned;
use tokio::sync::Notify;

use super::gatewayapi;
use super::routes::{Config, ServiceInfo, Snapshot};

/// The Istio networking API group.
pub const GROUP: &str = "networking.istio.io";
/// The version used when the group is not served (yet): served by every release from 1.5 on.
const FALLBACK_VERSION: &str = "v1beta1";

/// One watched kind: its store and whether it is known (listed once, or not served).
#[derive(Clone)]
pub struct Watched<K: 'static + reflector::Lookup + Clone>
where
    K::DynamicType: Hash + Eq + Clone,
{
    store: Store<K>,
    known: Arc<AtomicBool>,
    /// The resource (for calls on objects of a dynamic kind).
    pub resource: Option<ApiResource>,
}

impl<K: 'static + reflector::Lookup + Clone> Watched<K>
where
    K::DynamicType: Hash + Eq + Clone,
{
    /// Listed at least once, or its type is not served.
    pub fn known(&self) -> bool {
        self.known.load(Ordering::SeqCst)
    }
    /// The objects.
    pub fn objects(&self) -> Vec<Arc<K>> {
        self.store.state()
    }
}

/// The stores the routes endpoint reads.
#[derive(Clone)]
pub struct Watches {
    /// `Gateway`s.
    pub gateways: Watched<DynamicObject>,
    /// `VirtualService`s.
    pub virtual_services: Watched<DynamicObject>,
    /// Services.
    pub services: Watched<Service>,
    /// Gateway API `Gateway`s.
    pub kube_gateways: Watched<DynamicObject>,
    /// Gateway API `HTTPRoute`s.
    pub http_routes: Watched<DynamicObject>,
    /// Notified on every change of the two Gateway API kinds.
    pub gateway_api_changed: Arc<Notify>,
}

impl Watches {
    /// Starts the watches (tasks that run as long as the process).
    pub async fn start(client: &kube::Client) -> Watches {
        let gw = resource(client, GROUP, "Gateway", FALLBACK_VERSION).await;
        let vs = resource(client, GROUP, "VirtualService", FALLBACK_VERSION).await;
        let kgw = resource(client, gatewayapi::GROUP, "Gateway", "v1").await;
        let hr = resource(client, gatewayapi::GROUP, "HTTPRoute", "v1").await;
        tracing::info!(
            "watching {} {}, {} {}, {} {} and {} {} for gateway routes",
            gw.kind,
            gw.api_version,
            vs.kind,
            vs.api_version,
            kgw.kind,
            kgw.api_version,
            hr.kind,
            hr.api_version
        );
        let changed = Arc::new(Notify::new());
        Watches {
            gateways: watch_dynamic(client, gw, None),
            virtual_services: watch_dynamic(client, vs, None),
            services: watch(
                Api::all(client.clone()),
                reflector::store::Writer::default(),
                None,
            ),
            kube_gateways: watch_dynamic(client, kgw, Some(changed.clone())),
            http_routes: watch_dynamic(client, hr, Some(changed.clone())),
            gateway_api_changed: changed,
        }
    }

    /// Stores holding a fixed set of objects, known at once (for tests and tools that compute
    /// routes without an apiserver).
    pub fn fixed(
        gateways: Vec<DynamicObject>,
        virtual_services: Vec<DynamicObject>,
        services: Vec<Service>,
    ) -> Watches {
        let dynamic = |kind: &str, objects: Vec<DynamicObject>| {
            let gvk = GroupVersionKind::gvk(GROUP, FALLBACK_VERSION, kind);
            fixed(
                reflector::store::Writer::new(ApiResource::from_gvk(&gvk)),
                objects,
            )
        };
        Watches {
            gateways: dynamic("Gateway", gateways),
            virtual_services: dynamic("VirtualService", virtual_services),
            services: fixed(reflector::store::Writer::default(), services),
            kube_gateways: dynamic("KubeGateway", vec![]),
            http_routes: dynamic("HTTPRoute", vec![]),
            gateway_api_changed: Arc::new(Notify::new()),
        }
    }

    /// Every kind listed (or absent): the routes are the cluster's.
    pub fn known(&self) -> bool {
        self.gateways.known()
            && self.virtual_services.known()
            && self.services.known()
            && self.kube_gateways.known()
            && self.http_routes.known()
    }

    /// What the routes are computed from; objects whose spec does not parse are left out
    /// (logged).
    pub fn snapshot(&self) -> Snapshot {
        let (kube_gateways, http_routes) = self.gateway_api();
        let mut gateways: Vec<Config<_>> = configs(&self.gateways.objects());
        gateways.extend(kube_gateways.iter().map(gatewayapi::to_gateway));
        let mut virtual_services: Vec<Config<_>> = configs(&self.virtual_services.objects());
        virtual_services.extend(
            http_routes
                .iter()
                .map(|r| gatewayapi::to_virtual_service(r, &kube_gateways)),
        );
        Snapshot {
            gateways,
            virtual_services,
            services: self
                .services
                .objects()
                .iter()
                .map(|s| service_info(s))
                .collect(),
        }
    }
}

impl Watches {
    /// The Gateway API Gateways of class `istio` and every HTTPRoute.
    pub fn gateway_api(
        &self,
    ) -> (
        Vec<Config<gatewayapi::KubeGatewaySpec>>,
        Vec<Config<gatewayapi::HttpRouteSpec>>,
    ) {
        let gateways = configs::<gatewayapi::KubeGatewaySpec>(&self.kube_gateways.objects())
            .into_iter()
            .filter(|g| g.spec.gateway_class_name == gatewayapi::CLASS)
            .collect();
        (gateways, configs(&self.http_routes.objects()))
    }
}

/// The version of `kind` the apiserver prefers, or `fallback` when the group is not served.
async fn resource(client: &kube::Client, group: &str, kind: &str, fallback: &str) -> ApiResource {
    match kube::discovery::group(client, group).await {
        Ok(g) => g.recommended_kind(kind).map(|(ar, _)| ar),
        Err(e) => {
            tracing::info!("{group} not served yet ({e}); watching {kind} {fallback}");
            None
        }
    }
    .unwrap_or_else(|| ApiResource::from_gvk(&GroupVersionKind::gvk(group, fallback, kind)))
}

fn watch_dynamic(
    client: &kube::Client,
    ar: ApiResource,
    on_change: Option<Arc<Notify>>,
) -> Watched<DynamicObject> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
    let mut w = watch(api, reflector::store::Writer::new(ar.clone()), on_change);
    w.resource = Some(ar);
    w
}

fn watch<K>(
    api: Api<K>,
    writer: reflector::store::Writer<K>,
    on_change: Option<Arc<Notify>>,
) -> Watched<K>
where
    K: kube::Resource + reflector::Lookup + Clone + DeserializeOwned + std::fmt::Debug + Send,
    K: Sync + 'static,
    <K as reflector::Lookup>::DynamicType: Eq + Hash + Clone + Send + Sync,
{
    let known = Arc::new(AtomicBool::new(false));
    let store = writer.as_reader();
    let what = api.resource_url().to_string();
    let flag = known.clone();
    let stream =
        reflector::reflector(writer, watcher(api, watcher::Config::default())).default_backoff();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(item) = stream.next().await {
            if item.is_ok()
                && let Some(n) = &on_change
            {
                n.notify_one();
            }
            match item {
                Ok(watcher::Event::InitDone) => flag.store(true, Ordering::SeqCst),
                Ok(_) => {}
                Err(e) if not_served(&e) => {
                    if !flag.swap(true, Ordering::SeqCst) {
                        tracing::info!(
                            "{what} is not served (CRD not installed?): empty until it is"
                        );
                    }
                }
                Err(e) => tracing::warn!("watching {what}: {e} (retrying)"),
            }
        }
    });
    Watched {
        store,
        known,
        resource: None,
    }
}

fn fixed<K>(mut writer: reflector::store::Writer<K>, objects: Vec<K>) -> Watched<K>
where
    K: reflector::Lookup + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    writer.apply_watcher_event(&watcher::Event::Init);
    for o in objects {
        writer.apply_watcher_event(&watcher::Event::InitApply(o));
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);
    Watched {
        store: writer.as_reader(),
        known: Arc::new(AtomicBool::new(true)),
        resource: None,
    }
}

fn not_served(e: &watcher::Error) -> bool {
    match e {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s)) => s.code == 404,
        _ => false,
    }
}

fn configs<S: DeserializeOwned>(objects: &[Arc<DynamicObject>]) -> Vec<Config<S>> {
    objects.iter().filter_map(|o| config(o)).collect()
}

/// An object's name, namespace, creation time and typed spec.
pub fn config<S: DeserializeOwned>(o: &DynamicObject) -> Option<Config<S>> {
    let name = o.metadata.name.clone().unwrap_or_default();
    let namespace = o.metadata.namespace.clone().unwrap_or_default();
    let spec = o.data.get("spec").cloned().unwrap_or_default();
    match serde_json::from_value(spec) {
        Ok(spec) => Some(Config {
            created: o
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.to_string())
                .unwrap_or_default(),
            name,
            namespace,
            spec,
        }),
        Err(e) => {
            tracing::warn!("{namespace}/{name}: spec not understood ({e}); ignored");
            None
        }
    }
}

/// A Service's selector and (port, numeric targetPort) pairs.
pub fn service_info(s: &Service) -> ServiceInfo {
    let spec = s.spec.clone().unwrap_or_default();
    ServiceInfo {
        name: s.metadata.name.clone().unwrap_or_default(),
        namespace: s.metadata.namespace.clone().unwrap_or_default(),
        selector: spec
            .selector
            .unwrap_or_default()
            .into_iter()
            .collect::<BTreeMap<_, _>>(),
        ports: spec
            .ports
            .unwrap_or_default()
            .iter()
            .map(|p| {
                let target = match &p.target_port {
                    Some(IntOrString::Int(t)) => u32::try_from(*t).ok(),
                    // A named targetPort needs the pod's ports: taken as the port itself.
                    _ => None,
                };
                (u32::try_from(p.port).unwrap_or(0), target)
            })
            .collect(),
    }
}
