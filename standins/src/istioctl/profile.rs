//! The objects `istioctl install --set profile=demo` creates, with Istio's names, labels, ports
//! and Service types (followed: the release's `manifests/profiles/demo.yaml`, and Istio 1.12's
//! `manifests/charts/istio-control/istio-discovery/templates/{deployment,service,
//! mutatingwebhook,configmap}.yaml` and `manifests/charts/gateways/istio-ingress/templates/`).
//! The pilot and proxyv2 images are the stand-ins, loaded into the lab node under the real
//! names; gateways are rendered with the proxy image directly (as Istio 1.12 did; 1.30's
//! operator renders them through the gateway injection template instead).

use serde_json::{Value, json};

use crate::istiod::inject::IstioVersion;

/// What one install is made of.
#[derive(Debug, Clone)]
pub struct Install {
    /// The release.
    pub version: IstioVersion,
    /// `--revision` (`default` when none).
    pub revision: String,
    /// `values.global.hub` (`docker.io/istio`).
    pub hub: String,
    /// `values.global.tag` (the version).
    pub tag: String,
    /// Whether the profile installs the ingress and egress gateways (`demo`).
    pub gateways: bool,
    /// The mesh config (`meshConfig`, after `--set`).
    pub mesh: Value,
}

const NS: &str = "istio-system";
/// The label every object of an install carries (istioctl's `owning-resource` label).
pub const OWNER_LABEL: &str = "install.operator.istio.io/owning-resource";

impl Install {
    fn suffix(&self) -> String {
        if self.revision == "default" {
            String::new()
        } else {
            format!("-{}", self.revision)
        }
    }
    fn istiod(&self) -> String {
        format!("istiod{}", self.suffix())
    }
    fn labels(&self, component: &str) -> Value {
        json!({OWNER_LABEL: "installed-state", "operator.istio.io/component": component,
            "istio.io/rev": self.revision})
    }
    fn image(&self, name: &str) -> String {
        format!("{}/{name}:{}", self.hub, self.tag)
    }

    /// Every object, in the order they are applied.
    pub fn objects(&self) -> Vec<Value> {
        let mut v =
            vec![json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})];
        v.extend(self.istiod_objects());
        if self.gateways && self.revision == "default" {
            v.extend(self.gateway(
                "istio-ingressgateway",
                "ingressgateway",
                "IngressGateways",
                true,
            ));
            v.extend(self.gateway(
                "istio-egressgateway",
                "egressgateway",
                "EgressGateways",
                false,
            ));
        }
        v
    }

    /// The mesh config with the defaults istiod would fill in.
    pub fn mesh_config(&self) -> Value {
        let mut mesh = json!({
            "defaultConfig": {"discoveryAddress": format!("{}.{NS}.svc:15012", self.istiod())},
            "enablePrometheusMerge": true, "rootNamespace": NS, "trustDomain": "cluster.local",
        });
        if !self.version.at_least(1, 22) {
            // Before 1.22 the proxies traced to Zipkin at this address by default
            // (values.global.tracer.zipkin.address).
            mesh["defaultConfig"]["tracing"] =
                json!({"zipkin": {"address": "zipkin.istio-system:9411"}});
        }
        merge(&mut mesh, &self.mesh);
        mesh
    }

    fn istiod_objects(&self) -> Vec<Value> {
        let name = self.istiod();
        let labels = self.labels("Pilot");
        let sel = json!({"app": "istiod", "istio.io/rev": self.revision});
        let mut pod_labels = sel.clone();
        pod_labels["istio"] = json!("pilot");
        // As in istio-discovery's deployment.yaml: the label (not only the annotation) keeps
        // the injector's object selector (`sidecar.istio.io/inject NotIn [false]`) off its own
        // pod, which could not otherwise be created while the webhook has no endpoint.
        pod_labels["sidecar.istio.io/inject"] = json!("false");
        vec![
            json!({"apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": {"name": name, "namespace": NS, "labels": labels}}),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": format!("{name}-clusterrole-{NS}"), "labels": labels},
            "rules": [
                {"apiGroups": ["admissionregistration.k8s.io"], "resources": ["mutatingwebhookconfigurations"],
                 "verbs": ["get", "list", "watch", "patch", "update"]},
                {"apiGroups": [""], "resources": ["namespaces", "nodes", "pods", "services", "endpoints"],
                 "verbs": ["get", "list", "watch"]},
                {"apiGroups": [""], "resources": ["configmaps"],
                 "verbs": ["get", "list", "watch", "create", "update", "patch"]},
                {"apiGroups": ["networking.istio.io", "gateway.networking.k8s.io"], "resources": ["*"],
                 "verbs": ["get", "list", "watch"]},
            ]}),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                "metadata": {"name": format!("{name}-clusterrole-{NS}"), "labels": labels},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": format!("{name}-clusterrole-{NS}")},
                "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": NS}]}),
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": format!("istio{}", self.suffix()), "namespace": NS, "labels": labels},
                "data": {"mesh": self.mesh_config().to_string(), "meshNetworks": "networks: {}"}}),
            self.istiod_deployment(&name, &labels, &sel, &pod_labels),
            json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": name, "namespace": NS, "labels": labels},
                "spec": {"selector": sel, "ports": [
                    {"name": "grpc-xds", "port": 15010, "protocol": "TCP"},
                    {"name": "https-dns", "port": 15012, "protocol": "TCP"},
                    {"name": "https-webhook", "port": 443, "targetPort": 15017, "protocol": "TCP"},
                    {"name": "http-monitoring", "port": 15014, "protocol": "TCP"}]}}),
            self.webhook_configuration(&name),
        ]
    }

    fn istiod_deployment(
        &self,
        name: &str,
        labels: &Value,
        sel: &Value,
        pod_labels: &Value,
    ) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": NS, "labels": labels},
            "spec": {"replicas": 1, "selector": {"matchLabels": sel},
                "template": {"metadata": {"labels": pod_labels,
                        "annotations": {"sidecar.istio.io/inject": "false", "prometheus.io/scrape": "true", "prometheus.io/port": "15014"}},
                    "spec": {"serviceAccountName": name, "containers": [{
                        "name": "discovery", "image": self.image("pilot"), "imagePullPolicy": "IfNotPresent",
                        "args": ["discovery", "--monitoringAddr=:15014", "--log_output_level=default:info",
                            "--domain", "cluster.local", "--keepaliveMaxServerConnectionAge", "30m"],
                        "ports": [{"containerPort": 8080, "protocol": "TCP"}, {"containerPort": 15010, "protocol": "TCP"},
                            {"containerPort": 15017, "protocol": "TCP"}],
                        "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}, "initialDelaySeconds": 1, "periodSeconds": 3, "timeoutSeconds": 5},
                        "env": [
                            {"name": "REVISION", "value": self.revision},
                            {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                            {"name": "PILOT_TRACE_SAMPLING", "value": "100"},
                            // Stand-in only: which release's injection template to follow.
                            {"name": "ISTIO_E2E_STANDIN_VERSION", "value": self.version.to_string()},
                            {"name": "ISTIO_E2E_STANDIN_PROXY_IMAGE", "value": self.image("proxyv2")}],
                        "resources": {"requests": {"cpu": "10m", "memory": "100Mi"}}}]}}}})
    }

    /// `istio-sidecar-injector`: the namespace label `istio-injection=enabled` (default revision)
    /// or `istio.io/rev=<revision>`, and the pod label `sidecar.istio.io/inject` (1.12's
    /// `mutatingwebhook.yaml`).
    fn webhook_configuration(&self, service: &str) -> Value {
        let hook = |name: &str, ns_sel: Value, obj_sel: Value| {
            json!({"name": name, "clientConfig": {"service": {"name": service, "namespace": NS, "path": "/inject", "port": 443}},
                "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}],
                "failurePolicy": "Fail", "sideEffects": "None", "reinvocationPolicy": "Never",
                "admissionReviewVersions": ["v1beta1", "v1"],
                "namespaceSelector": ns_sel, "objectSelector": obj_sel})
        };
        let exists = |k: &str| json!({"key": k, "operator": "DoesNotExist"});
        let rev_in = json!({"key": "istio.io/rev", "operator": "In", "values": [self.revision]});
        let not_false =
            json!({"key": "sidecar.istio.io/inject", "operator": "NotIn", "values": ["false"]});
        let mut hooks = vec![
            hook(
                "rev.namespace.sidecar-injector.istio.io",
                json!({"matchExpressions": [rev_in, exists("istio-injection")]}),
                json!({"matchExpressions": [not_false]}),
            ),
            hook(
                "rev.object.sidecar-injector.istio.io",
                json!({"matchExpressions": [exists("istio.io/rev"), exists("istio-injection")]}),
                json!({"matchExpressions": [not_false, rev_in]}),
            ),
        ];
        if self.revision == "default" {
            hooks.push(hook("namespace.sidecar-injector.istio.io",
                json!({"matchExpressions": [{"key": "istio-injection", "operator": "In", "values": ["enabled"]}]}),
                json!({"matchExpressions": [not_false]})));
            hooks.push(hook("object.sidecar-injector.istio.io",
                json!({"matchExpressions": [exists("istio-injection"), exists("istio.io/rev")]}),
                json!({"matchExpressions": [{"key": "sidecar.istio.io/inject", "operator": "In", "values": ["true"]}, exists("istio.io/rev")]})));
        }
        let mut labels = self.labels("Pilot");
        labels["app"] = json!("sidecar-injector");
        json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": format!("istio-sidecar-injector{}", self.suffix()), "labels": labels},
            "webhooks": hooks})
    }

    fn gateway(&self, name: &str, istio: &str, component: &str, ingress: bool) -> Vec<Value> {
        let labels = self.labels(component);
        let sel = json!({"app": name, "istio": istio});
        let mut pod_labels = sel.clone();
        pod_labels["service.istio.io/canonical-name"] = json!(name);
        pod_labels["istio.io/rev"] = json!(self.revision);
        pod_labels["sidecar.istio.io/inject"] = json!("false"); // as the gateway charts do
        let sa = format!("{name}-service-account");
        let ports: Vec<Value> = if ingress {
            vec![
                json!({"name": "status-port", "port": 15021, "targetPort": 15021, "protocol": "TCP"}),
                json!({"name": "http2", "port": 80, "targetPort": 8080, "protocol": "TCP"}),
                json!({"name": "https", "port": 443, "targetPort": 8443, "protocol": "TCP"}),
                json!({"name": "tcp", "port": 31400, "targetPort": 31400, "protocol": "TCP"}),
                json!({"name": "tls", "port": 15443, "targetPort": 15443, "protocol": "TCP"}),
            ]
        } else {
            vec![
                json!({"name": "http2", "port": 80, "targetPort": 8080, "protocol": "TCP"}),
                json!({"name": "https", "port": 443, "targetPort": 8443, "protocol": "TCP"}),
            ]
        };
        vec![
            json!({"apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": {"name": sa, "namespace": NS, "labels": labels}}),
            self.gateway_deployment(name, &sa, &labels, &sel, &pod_labels),
            json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": name, "namespace": NS, "labels": labels},
                "spec": {"type": if ingress { "LoadBalancer" } else { "ClusterIP" }, "selector": sel, "ports": ports}}),
        ]
    }

    fn gateway_deployment(
        &self,
        name: &str,
        sa: &str,
        labels: &Value,
        sel: &Value,
        pod_labels: &Value,
    ) -> Value {
        let field =
            |n: &str, p: &str| json!({"name": n, "valueFrom": {"fieldRef": {"fieldPath": p}}});
        let env = vec![
            json!({"name": "JWT_POLICY", "value": "third-party-jwt"}),
            json!({"name": "PILOT_CERT_PROVIDER", "value": "istiod"}),
            json!({"name": "CA_ADDR", "value": format!("{}.{NS}.svc:15012", self.istiod())}),
            field("NODE_NAME", "spec.nodeName"),
            field("POD_NAME", "metadata.name"),
            field("POD_NAMESPACE", "metadata.namespace"),
            field("INSTANCE_IP", "status.podIP"),
            field("HOST_IP", "status.hostIP"),
            field("SERVICE_ACCOUNT", "spec.serviceAccountName"),
            json!({"name": "PROXY_CONFIG", "value": self.mesh_config()["defaultConfig"].to_string()}),
            json!({"name": "ISTIO_META_WORKLOAD_NAME", "value": name}),
            json!({"name": "ISTIO_META_OWNER", "value": format!("kubernetes://apis/apps/v1/namespaces/{NS}/deployments/{name}")}),
            json!({"name": "ISTIO_META_MESH_ID", "value": "cluster.local"}),
            json!({"name": "TRUST_DOMAIN", "value": "cluster.local"}),
            json!({"name": "ISTIO_META_UNPRIVILEGED_POD", "value": "true"}),
            json!({"name": "ISTIO_META_CLUSTER_ID", "value": "Kubernetes"}),
        ];
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": NS, "labels": labels},
            "spec": {"replicas": 1, "selector": {"matchLabels": sel},
                "template": {"metadata": {"labels": pod_labels, "annotations": {"sidecar.istio.io/inject": "false",
                        "prometheus.io/scrape": "true", "prometheus.io/port": "15020", "prometheus.io/path": "/stats/prometheus"}},
                    "spec": {"serviceAccountName": sa,
                        "securityContext": {"runAsUser": 1337, "runAsGroup": 1337, "runAsNonRoot": true, "fsGroup": 1337},
                        "containers": [{"name": "istio-proxy", "image": self.image("proxyv2"), "imagePullPolicy": "IfNotPresent",
                            "args": ["proxy", "router", "--domain", "$(POD_NAMESPACE).svc.cluster.local",
                                "--proxyLogLevel=warning", "--proxyComponentLogLevel=misc:error", "--log_output_level=default:info"],
                            "ports": [{"containerPort": 15021, "protocol": "TCP"}, {"containerPort": 8080, "protocol": "TCP"},
                                {"containerPort": 8443, "protocol": "TCP"}, {"containerPort": 15090, "protocol": "TCP", "name": "http-envoy-prom"}],
                            "readinessProbe": {"httpGet": {"path": "/healthz/ready", "port": 15021}, "initialDelaySeconds": 1,
                                "periodSeconds": 2, "timeoutSeconds": 1, "failureThreshold": 30},
                            "env": env,
                            "resources": {"requests": {"cpu": "10m", "memory": "40Mi"}},
                            "volumeMounts": [
                                {"name": "istio-envoy", "mountPath": "/etc/istio/proxy"},
                                {"name": "istio-data", "mountPath": "/var/lib/istio/data"},
                                {"name": "podinfo", "mountPath": "/etc/istio/pod"},
                                {"name": "istio-token", "mountPath": "/var/run/secrets/tokens", "readOnly": true},
                                {"name": "istiod-ca-cert", "mountPath": "/var/run/secrets/istio"}]}],
                        "volumes": [
                            {"name": "istio-envoy", "emptyDir": {}},
                            {"name": "istio-data", "emptyDir": {}},
                            {"name": "podinfo", "downwardAPI": {"items": [
                                {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                                {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}}]}},
                            {"name": "istio-token", "projected": {"sources": [{"serviceAccountToken":
                                {"audience": "istio-ca", "expirationSeconds": 43200, "path": "istio-token"}}]}},
                            {"name": "istiod-ca-cert", "configMap": {"name": "istio-ca-root-cert"}}]}}}})
    }
}

/// Deep-merges `over` into `base` (objects merge, everything else replaces).
pub fn merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                merge(b.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (b, o) => *b = o.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demo(version: &str, revision: &str) -> Install {
        Install {
            version: version.parse().unwrap(),
            revision: revision.into(),
            hub: "docker.io/istio".into(),
            tag: version.into(),
            gateways: true,
            mesh: json!({"accessLogFile": "/dev/stdout"}),
        }
    }

    fn find<'a>(objs: &'a [Value], kind: &str, name: &str) -> &'a Value {
        objs.iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name}"))
    }

    #[test]
    fn the_demo_profile_has_istiod_and_both_gateways_with_istios_ports() {
        let objs = demo("1.12.1", "default").objects();
        let svc = find(&objs, "Service", "istiod");
        let ports: Vec<_> = svc["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["port"].as_i64().unwrap())
            .collect();
        assert_eq!(ports, [15010, 15012, 443, 15014]);
        let ingress = find(&objs, "Service", "istio-ingressgateway");
        assert_eq!(ingress["spec"]["type"], "LoadBalancer");
        let http2 = ingress["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "http2")
            .unwrap();
        assert_eq!(
            (http2["port"].as_i64(), http2["targetPort"].as_i64()),
            (Some(80), Some(8080))
        );
        let pilot = find(&objs, "Deployment", "istiod");
        assert_eq!(
            pilot["spec"]["template"]["spec"]["containers"][0]["image"],
            "docker.io/istio/pilot:1.12.1"
        );
        find(&objs, "Deployment", "istio-egressgateway");
        let hooks = &find(
            &objs,
            "MutatingWebhookConfiguration",
            "istio-sidecar-injector",
        )["webhooks"];
        let ns = hooks
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["name"] == "namespace.sidecar-injector.istio.io")
            .unwrap();
        assert_eq!(
            ns["namespaceSelector"]["matchExpressions"][0]["values"],
            json!(["enabled"])
        );
        assert_eq!(ns["clientConfig"]["service"]["port"], 443);
    }

    #[test]
    fn a_revision_has_its_own_istiod_and_webhook_and_no_gateways() {
        let objs = demo("1.30.3", "canary").objects();
        find(&objs, "Deployment", "istiod-canary");
        find(&objs, "ConfigMap", "istio-canary");
        let hooks = &find(
            &objs,
            "MutatingWebhookConfiguration",
            "istio-sidecar-injector-canary",
        )["webhooks"];
        assert_eq!(
            hooks.as_array().unwrap().len(),
            2,
            "only the revision's webhooks"
        );
        assert!(
            !objs
                .iter()
                .any(|o| o["metadata"]["name"] == "istio-ingressgateway")
        );
    }

    #[test]
    fn the_mesh_config_traces_to_zipkin_before_1_22_only_and_takes_the_sets() {
        let old = demo("1.12.1", "default").mesh_config();
        assert_eq!(
            old["defaultConfig"]["tracing"]["zipkin"]["address"],
            "zipkin.istio-system:9411"
        );
        let mut new = demo("1.30.3", "default");
        new.mesh = json!({"defaultConfig": {"tracing": {"sampling": 100}}, "enableTracing": true});
        let m = new.mesh_config();
        assert!(m["defaultConfig"]["tracing"].get("zipkin").is_none());
        assert_eq!(m["defaultConfig"]["tracing"]["sampling"], 100);
        assert_eq!(
            m["defaultConfig"]["discoveryAddress"],
            "istiod.istio-system.svc:15012"
        );
    }

    /// A pod label set matched by a selector's `matchExpressions` (In, NotIn, Exists, DoesNotExist).
    fn selects(sel: &Value, labels: &Value) -> bool {
        sel["matchExpressions"].as_array().into_iter().flatten().all(|e| {
            let v = labels.get(e["key"].as_str().unwrap());
            let listed = |v: &Value| e["values"].as_array().is_some_and(|l| l.contains(v));
            match e["operator"].as_str().unwrap() {
                "In" => v.is_some_and(listed),
                "NotIn" => !v.is_some_and(listed),
                "Exists" => v.is_some(),
                _ => v.is_none(),
            }
        })
    }

    #[test]
    fn no_webhook_selects_the_control_planes_own_pods() {
        // Otherwise istiod's pod waits for the webhook it serves (failurePolicy Fail).
        for rev in ["default", "canary"] {
            let objs = demo("1.30.3", rev).objects();
            let hooks: Vec<&Value> = objs
                .iter()
                .filter(|o| o["kind"] == "MutatingWebhookConfiguration")
                .flat_map(|o| o["webhooks"].as_array().unwrap())
                .collect();
            assert!(hooks.iter().any(|h| h.get("objectSelector").is_some()));
            for d in objs.iter().filter(|o| o["kind"] == "Deployment") {
                let labels = &d["spec"]["template"]["metadata"]["labels"];
                for h in &hooks {
                    assert!(
                        !selects(&h["objectSelector"], labels),
                        "{} selects {}",
                        h["name"],
                        d["metadata"]["name"]
                    );
                }
            }
        }
        let labels = json!({"app": "productpage", "istio.io/rev": "canary"});
        let objs = demo("1.30.3", "canary").objects();
        let hook = &find(&objs, "MutatingWebhookConfiguration", "istio-sidecar-injector-canary")
            ["webhooks"][1];
        assert!(selects(&hook["objectSelector"], &labels), "a revision-labelled pod is selected");
    }
}
