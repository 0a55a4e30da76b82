//! Tests of the route computation: the releases' own Bookinfo samples (from the release
//! directory `ISTIO_E2E_ISTIO_DIR`), then Istio's rules one by one on small objects.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Service;
use kube::api::DynamicObject;
use serde_json::{Value, json};

use super::*;
use crate::istioctl::profile::Install;
use crate::istiod::networking::{config, service_info};

/// The YAML documents of a file, as JSON, namespaced `ns` when they are not already (as
/// `kubectl apply -n ns` does).
fn documents(path: &Path, ns: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
    docs.into_iter()
        .filter(Value::is_object)
        .map(|mut d| {
            if d["metadata"].get("namespace").is_none() {
                d["metadata"]["namespace"] = json!(ns);
            }
            d
        })
        .collect()
}

/// Splits objects into what the watches would hold.
fn snapshot(objects: &[Value]) -> Snapshot {
    let mut snap = Snapshot::default();
    for o in objects {
        match o["kind"].as_str() {
            Some("Gateway")
                if o["apiVersion"]
                    .as_str()
                    .unwrap()
                    .starts_with("networking.istio.io") =>
            {
                let d: DynamicObject = serde_json::from_value(o.clone()).unwrap();
                snap.gateways.push(config(&d).expect("a Gateway spec"));
            }
            Some("VirtualService") => {
                let d: DynamicObject = serde_json::from_value(o.clone()).unwrap();
                snap.virtual_services
                    .push(config(&d).expect("a VirtualService spec"));
            }
            Some("Service") => {
                let s: Service = serde_json::from_value(o.clone()).unwrap();
                snap.services.push(service_info(&s));
            }
            _ => {}
        }
    }
    snap
}

/// The release directories under `ISTIO_E2E_ISTIO_DIR` (which holds `<version>/` directories,
/// or is one release), or None with the reason printed.
fn releases() -> Option<Vec<(String, PathBuf)>> {
    let Some(dir) = std::env::var_os("ISTIO_E2E_ISTIO_DIR").map(PathBuf::from) else {
        eprintln!(
            "SKIPPED: ISTIO_E2E_ISTIO_DIR is not set (a directory of Istio releases, e.g. holding 1.12.1/ and 1.30.3/); the sample-based route tests did not run"
        );
        return None;
    };
    if dir.join("samples").is_dir() {
        return Some(vec![("the release".into(), dir)]);
    }
    let found: Vec<_> = ["1.12.1", "1.30.3"]
        .iter()
        .map(|v| (v.to_string(), dir.join(v)))
        .filter(|(_, d)| d.join("samples").is_dir())
        .collect();
    assert!(
        !found.is_empty(),
        "{}: no 1.12.1/ or 1.30.3/ release with samples/",
        dir.display()
    );
    Some(found)
}

/// The demo profile's ingress gateway (the stand-in istioctl's objects): its pod's labels and
/// Service.
fn ingress(version: &str) -> (Proxy, Value) {
    let install = Install {
        version: version.parse().unwrap_or("1.30.3".parse().unwrap()),
        revision: "default".into(),
        hub: "docker.io/istio".into(),
        tag: version.into(),
        gateways: true,
        mesh: json!({}),
    };
    let objs = install.objects();
    let named = |kind: &str| {
        objs.iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == "istio-ingressgateway")
            .unwrap()
            .clone()
    };
    let labels = named("Deployment")["spec"]["template"]["metadata"]["labels"].clone();
    let labels: BTreeMap<String, String> = serde_json::from_value(labels).unwrap();
    (
        Proxy {
            namespace: "istio-system".into(),
            labels,
        },
        named("Service"),
    )
}

fn expected_bookinfo(host: &str) -> Vec<GatewayRoute> {
    let route = |path| GatewayRoute {
        hosts: vec!["*".into()],
        path,
        host: host.into(),
        port: 9080,
        weighted: vec![],
    };
    vec![
        route(PathMatch::Exact("/productpage".into())),
        route(PathMatch::Prefix("/static".into())),
        route(PathMatch::Exact("/login".into())),
        route(PathMatch::Exact("/logout".into())),
        route(PathMatch::Prefix("/api/v1/products".into())),
    ]
}

#[test]
fn the_bookinfo_gateway_of_each_release_routes_its_five_paths_to_productpage() {
    let Some(releases) = releases() else { return };
    for (version, dir) in releases {
        let bookinfo = dir.join("samples/bookinfo");
        let mut objects = documents(
            &bookinfo.join("networking/bookinfo-gateway.yaml"),
            "default",
        );
        // The mesh VirtualServices (no gateways) must not reach the gateway.
        objects.extend(documents(
            &bookinfo.join("networking/virtual-service-all-v1.yaml"),
            "default",
        ));
        objects.extend(documents(
            &bookinfo.join("platform/kube/bookinfo.yaml"),
            "default",
        ));
        let (proxy, gateway_service) = ingress(&version);
        objects.push(gateway_service);
        let snap = snapshot(&objects);
        assert!(
            snap.virtual_services.len() > 1 && !snap.gateways.is_empty(),
            "{version}"
        );
        let computed = gateway_routes(&proxy, 8080, &snap);
        assert_eq!(
            computed.routes,
            expected_bookinfo("productpage.default.svc.cluster.local"),
            "{version}"
        );
        assert!(computed.notes.is_empty(), "{version}: {:?}", computed.notes);
        let json = serde_json::to_value(&computed.routes).unwrap();
        assert_eq!(
            json[0],
            json!({"hosts": ["*"], "match": {"exact": "/productpage"},
                   "host": "productpage.default.svc.cluster.local", "port": 9080}),
            "{version}: the agent's format"
        );
        let egress = Proxy {
            namespace: "istio-system".into(),
            labels: BTreeMap::from([("istio".into(), "egressgateway".into())]),
        };
        assert!(
            gateway_routes(&egress, 8080, &snap).routes.is_empty(),
            "{version}"
        );
    }
}

#[test]
fn a_gateway_server_on_the_service_port_80_reaches_the_8080_listener_only_through_the_service() {
    let Some(releases) = releases() else { return };
    for (version, dir) in releases {
        let file = dir.join("samples/bookinfo/networking/bookinfo-gateway.yaml");
        let objects = documents(&file, "default");
        let snap = snapshot(&objects);
        let server_port = snap.gateways[0].spec.servers[0]
            .port
            .as_ref()
            .unwrap()
            .number;
        let (proxy, _) = ingress(&version);
        // No Service selecting the gateway: the server's number is the listener's as is.
        let routes = gateway_routes(&proxy, 8080, &snap).routes;
        assert_eq!(
            routes.is_empty(),
            server_port != 8080,
            "{version}: server port {server_port}"
        );
        assert_eq!(
            gateway_routes(&proxy, server_port, &snap).routes.len(),
            5,
            "{version}"
        );
    }
}

fn object(kind: &str, ns: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": "networking.istio.io/v1", "kind": kind,
        "metadata": {"name": name, "namespace": ns}, "spec": spec})
}

fn gw(ns: &str, name: &str, hosts: Value) -> Value {
    object(
        "Gateway",
        ns,
        name,
        json!({"selector": {"istio": "ingressgateway"},
        "servers": [{"port": {"number": 8080, "name": "http", "protocol": "HTTP"}, "hosts": hosts}]}),
    )
}

fn proxy() -> Proxy {
    Proxy {
        namespace: "istio-system".into(),
        labels: BTreeMap::from([("istio".into(), "ingressgateway".into())]),
    }
}

fn paths(routes: &[GatewayRoute]) -> Vec<(Vec<String>, PathMatch, String)> {
    routes
        .iter()
        .map(|r| (r.hosts.clone(), r.path.clone(), r.host.clone()))
        .collect()
}

#[test]
fn weights_split_without_zero_shares_and_a_lone_destination_takes_its_services_only_port() {
    let objects = vec![
        gw("default", "gw", json!(["*"])),
        object(
            "VirtualService",
            "default",
            "reviews",
            json!({"hosts": ["*"], "gateways": ["gw"],
            "http": [
                {"match": [{"uri": {"regex": "/r/[0-9]+"}}], "route": [
                    {"destination": {"host": "reviews", "subset": "v1"}, "weight": 80},
                    {"destination": {"host": "reviews-v3.other.svc.cluster.local", "port": {"number": 9080}}, "weight": 20},
                    {"destination": {"host": "ratings"}, "weight": 0}]},
                {"route": [{"destination": {"host": "ratings"}}]}]}),
        ),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "reviews", "namespace": "default"},
            "spec": {"selector": {"app": "reviews"}, "ports": [{"port": 9080}]}}),
    ];
    let computed = gateway_routes(&proxy(), 8080, &snapshot(&objects));
    let r = &computed.routes;
    assert_eq!(r.len(), 2);
    assert_eq!(r[0].path, PathMatch::Regex("/r/[0-9]+".into()));
    let split: Vec<_> = r[0]
        .weighted
        .iter()
        .map(|w| (w.host.as_str(), w.port, w.weight))
        .collect();
    assert_eq!(
        split,
        [
            ("reviews.default.svc.cluster.local", 9080, 80),
            ("reviews-v3.other.svc.cluster.local", 9080, 20)
        ]
    );
    // ratings has no Service: the server's port.
    assert_eq!(
        (r[1].path.clone(), r[1].host.as_str(), r[1].port),
        (
            PathMatch::Prefix("/".into()),
            "ratings.default.svc.cluster.local",
            8080
        )
    );
    assert_eq!(
        computed.notes.len(),
        1,
        "the subset is reported: {:?}",
        computed.notes
    );
}

#[test]
fn nothing_follows_a_catch_all_and_catch_alls_of_merged_virtual_services_go_last() {
    let mut first = object(
        "VirtualService",
        "default",
        "a",
        json!({"hosts": ["*"], "gateways": ["gw"],
        "http": [{"route": [{"destination": {"host": "first"}}]},
                 {"match": [{"uri": {"exact": "/never"}}], "route": [{"destination": {"host": "first"}}]}]}),
    );
    first["metadata"]["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
    let mut second = object(
        "VirtualService",
        "default",
        "b",
        json!({"hosts": ["*"], "gateways": ["default/gw"],
        "http": [{"match": [{"uri": {"prefix": "/b"}}, {"uri": {"prefix": "/"}}, {"uri": {"exact": "/after"}}],
                  "route": [{"destination": {"host": "second"}}]}]}),
    );
    second["metadata"]["creationTimestamp"] = json!("2026-01-02T00:00:00Z");
    let snap = snapshot(&[gw("default", "gw", json!(["*"])), second, first]);
    let r = paths(&gateway_routes(&proxy(), 8080, &snap).routes);
    let host = |h: &str| format!("{h}.default.svc.cluster.local");
    assert_eq!(
        r,
        [
            (
                vec!["*".into()],
                PathMatch::Prefix("/b".into()),
                host("second")
            ),
            (
                vec!["*".into()],
                PathMatch::Prefix("/".into()),
                host("first")
            ),
            (
                vec!["*".into()],
                PathMatch::Prefix("/".into()),
                host("second")
            ),
        ]
    );
}

#[test]
fn hosts_intersect_bind_by_namespace_and_collapse_when_their_routes_are_the_same() {
    let objects = vec![
        gw(
            "istio-system",
            "public",
            json!(["*.example.com", "shop/*", "./internal.local"]),
        ),
        object(
            "VirtualService",
            "shop",
            "shop",
            json!({"hosts": ["a.example.com", "b.example.com", "c.other.com"],
            "gateways": ["istio-system/public"],
            "http": [{"route": [{"destination": {"host": "shop"}}]}]}),
        ),
        // `shop/*` does not bind this namespace, `*.example.com` does; `./` is the gateway's.
        object(
            "VirtualService",
            "web",
            "web",
            json!({"hosts": ["*", "internal.local"],
            "gateways": ["public.istio-system.svc.cluster.local"],
            "http": [{"match": [{"uri": {"prefix": "/w"}}], "route": [{"destination": {"host": "web"}}]}]}),
        ),
        object(
            "VirtualService",
            "hidden",
            "hidden",
            json!({"hosts": ["*"], "gateways": ["istio-system/public"],
            "exportTo": ["."], "http": [{"route": [{"destination": {"host": "hidden"}}]}]}),
        ),
    ];
    let r = paths(&gateway_routes(&proxy(), 8080, &snapshot(&objects)).routes);
    let shop = "shop.shop.svc.cluster.local".to_string();
    let web = "web.web.svc.cluster.local".to_string();
    let prefix = |p: &str| PathMatch::Prefix(p.into());
    assert_eq!(
        r,
        [
            (vec!["*.example.com".into()], prefix("/w"), web),
            (
                vec![
                    "a.example.com".into(),
                    "b.example.com".into(),
                    "c.other.com".into()
                ],
                prefix("/"),
                shop
            ),
        ]
    );
}

#[test]
fn matches_on_another_gateway_port_source_or_on_headers_are_left_out() {
    let objects = vec![
        gw("default", "gw", json!(["*"])),
        object(
            "VirtualService",
            "default",
            "vs",
            json!({"hosts": ["*"], "gateways": ["gw", "other"],
            "http": [
                {"match": [{"uri": {"exact": "/other"}, "gateways": ["other"]},
                           {"uri": {"exact": "/port"}, "port": 80},
                           {"uri": {"exact": "/header"}, "headers": {"end-user": {"exact": "jason"}}},
                           {"uri": {"exact": "/mine"}, "gateways": ["default/gw"], "port": 8080},
                           {"uri": {"exact": "/egress"}, "sourceLabels": {"istio": "egressgateway"}},
                           {"uri": {"exact": "/ns"}, "sourceNamespace": "default"},
                           {"uri": {"exact": "/ingress"}, "sourceLabels": {"istio": "ingressgateway"},
                            "sourceNamespace": "istio-system"}],
                 "route": [{"destination": {"host": "p", "port": {"number": 1}}}]},
                {"match": [{"uri": {"exact": "/redirect"}}], "redirect": {"uri": "/x"}}]}),
        ),
    ];
    let computed = gateway_routes(&proxy(), 8080, &snapshot(&objects));
    let exact = |p: &str| {
        let host = "p.default.svc.cluster.local".to_string();
        (vec!["*".to_string()], PathMatch::Exact(p.into()), host)
    };
    assert_eq!(paths(&computed.routes), [exact("/mine"), exact("/ingress")]);
    assert_eq!(
        computed.notes.len(),
        2,
        "headers and redirect: {:?}",
        computed.notes
    );
}

#[test]
fn gateway_names_resolve_as_istio_does() {
    assert_eq!(gateway_name("gw", "default"), "default/gw");
    assert_eq!(gateway_name("./gw", "default"), "default/gw");
    assert_eq!(
        gateway_name("istio-system/gw", "default"),
        "istio-system/gw"
    );
    assert_eq!(
        gateway_name("gw.istio-system.svc.cluster.local", "default"),
        "istio-system/gw"
    );
    assert_eq!(gateway_name("mesh", "default"), "mesh");
    assert_eq!(
        fqdn("productpage", "default"),
        "productpage.default.svc.cluster.local"
    );
    assert_eq!(fqdn("productpage.default", "x"), "productpage.default");
    assert_eq!(fqdn("*", "x"), "*");
}

#[test]
fn the_gateway_api_bookinfo_gateway_is_deployed_programmed_and_routed_like_the_classic_one() {
    use crate::istiod::gatewayapi::{self, HttpRouteSpec, KubeGatewaySpec};
    let Some(releases) = releases() else { return };
    let Some((_, dir)) = releases
        .iter()
        .find(|(_, d)| d.join("samples/bookinfo/gateway-api").is_dir())
    else {
        eprintln!("SKIPPED: no release under ISTIO_E2E_ISTIO_DIR has samples/bookinfo/gateway-api");
        return;
    };
    let file = dir.join("samples/bookinfo/gateway-api/bookinfo-gateway.yaml");
    let objects = documents(&file, "default");
    let parse = |kind: &str| -> DynamicObject {
        let o = objects.iter().find(|o| o["kind"] == kind).unwrap();
        serde_json::from_value(o.clone()).unwrap()
    };
    let gateways: Vec<Config<KubeGatewaySpec>> = vec![config(&parse("Gateway")).unwrap()];
    let routes: Vec<Config<HttpRouteSpec>> = vec![config(&parse("HTTPRoute")).unwrap()];
    let made = gatewayapi::deployment_objects(
        &gateways[0],
        "LoadBalancer",
        ("uid", "gateway.networking.k8s.io/v1"),
        "proxyv2",
        &json!({}),
        "istiod",
    );
    let service = made.iter().find(|o| o["kind"] == "Service").unwrap();
    assert_eq!(service["metadata"]["name"], "bookinfo-gateway-istio");
    let http = service["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "http")
        .unwrap();
    assert_eq!(
        (http["port"].as_u64(), http["targetPort"].as_u64()),
        (Some(80), Some(8080))
    );
    let pod_labels = made.iter().find(|o| o["kind"] == "Deployment").unwrap()["spec"]["template"]
        ["metadata"]["labels"].clone();

    let snap = Snapshot {
        gateways: gateways.iter().map(gatewayapi::to_gateway).collect(),
        virtual_services: routes
            .iter()
            .map(|r| gatewayapi::to_virtual_service(r, &gateways))
            .collect(),
        services: vec![service_info(
            &serde_json::from_value(service.clone()).unwrap(),
        )],
    };
    let proxy = Proxy {
        namespace: "default".into(),
        labels: serde_json::from_value(pod_labels).unwrap(),
    };
    let got = gateway_routes(&proxy, 8080, &snap);
    let separated = |p: &str| PathMatch::PathSeparatedPrefix(p.into());
    let mut expected = expected_bookinfo("productpage.default.svc.cluster.local");
    expected[1].path = separated("/static");
    expected[4].path = separated("/api/v1/products");
    assert_eq!(got.routes, expected);
    assert!(got.notes.is_empty(), "{:?}", got.notes);

    assert_eq!(service["spec"]["type"], "LoadBalancer");
    let status_with = |address: &gatewayapi::Address| {
        gatewayapi::status(
            &gateways[0],
            1,
            &routes,
            &gateways,
            address,
            "2026-01-01T00:00:00Z",
        )["status"]
            .clone()
    };
    let conditions = |status: &serde_json::Value| -> Vec<(String, String, String)> {
        status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                let s = |k: &str| c[k].as_str().unwrap().to_string();
                (s("type"), s("status"), s("reason"))
            })
            .collect()
    };
    let as_made = gatewayapi::Address::of_service(service);
    assert_eq!(as_made, gatewayapi::Address::Pending);
    let pending = status_with(&as_made);
    assert_eq!(pending["listeners"][0]["attachedRoutes"], 1);
    assert_eq!(
        conditions(&pending)[1],
        (
            "Programmed".into(),
            "False".into(),
            "AddressNotAssigned".into()
        )
    );
    assert!(
        pending["conditions"][1]["message"]
            .as_str()
            .unwrap()
            .starts_with("Assigned to service(s) bookinfo-gateway-istio.default.svc.cluster.local:80, but failed to assign to all requested addresses: address pending for hostname \"bookinfo-gateway-istio.default.svc.cluster.local\""),
        "{pending}"
    );
    let mut node_port = service.clone();
    node_port["spec"]["type"] = json!("NodePort");
    let internal = status_with(&gatewayapi::Address::of_service(&node_port));
    assert_eq!(
        conditions(&internal),
        [
            ("Accepted".into(), "True".into(), "Accepted".into()),
            ("Programmed".into(), "True".into(), "Programmed".into())
        ]
    );
    assert_eq!(
        internal["addresses"],
        json!([{"type": "Hostname", "value": "bookinfo-gateway-istio.default.svc.cluster.local"}])
    );
    let mut balanced = service.clone();
    balanced["status"] = json!({"loadBalancer": {"ingress": [{"ip": "172.18.0.200"}]}});
    let external = status_with(&gatewayapi::Address::of_service(&balanced));
    assert_eq!(conditions(&external)[1].1, "True");
    assert_eq!(
        external["addresses"],
        json!([{"type": "IPAddress", "value": "172.18.0.200"}])
    );
    // A route of another namespace does not attach to a `Same` listener.
    let mut foreign = routes[0].clone();
    foreign.namespace = "other".into();
    foreign.spec.parent_refs[0].namespace = Some("default".into());
    assert!(gatewayapi::attachments(&foreign, &gateways).is_empty());
    foreign.namespace = "default".into();
    assert_eq!(gatewayapi::attachments(&foreign, &gateways).len(), 1);
}
