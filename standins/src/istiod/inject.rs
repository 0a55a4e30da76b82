//! The pod mutation of Istio's sidecar injector, as a function of the pod and the settings.
//!
//! Followed: the release's `manifests/charts/istio-control/istio-discovery/files/
//! injection-template.yaml` (1.12.1 and 1.30.3) and `pkg/kube/inject/inject.go` (which pods
//! are skipped, where the proxy goes, the `sidecar.istio.io/status` annotation). Rendered here
//! for the default values of the demo profile; annotations that change the template
//! (`sidecar.istio.io/proxyImage`, interception mode, probes rewriting, resources...) are not
//! read, except `sidecar.istio.io/inject` and `sidecar.istio.io/nativeSidecar`.

use serde_json::{Map, Value, json};

/// An Istio version, `major.minor.patch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct IstioVersion {
    /// Major.
    pub major: u32,
    /// Minor.
    pub minor: u32,
    /// Patch.
    pub patch: u32,
}

impl std::str::FromStr for IstioVersion {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not an Istio version such as 1.30.3");
        let mut it = s.trim().trim_start_matches('v').split('.');
        let mut next =
            || -> Result<u32, String> { it.next().unwrap_or("0").parse().map_err(|_| bad()) };
        Ok(IstioVersion {
            major: next()?,
            minor: next()?,
            patch: next()?,
        })
    }
}

impl std::fmt::Display for IstioVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl IstioVersion {
    /// True from `major.minor` on.
    pub fn at_least(&self, major: u32, minor: u32) -> bool {
        (self.major, self.minor) >= (major, minor)
    }
}

/// `ENABLE_NATIVE_SIDECARS` (`pilot/pkg/features`): off before 1.27, `auto` from 1.27 (native
/// when every node's kubelet is 1.33 or newer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NativeSidecars {
    /// Never.
    Off,
    /// Always.
    On,
    /// When every node's kubelet is >= 1.33.
    Auto,
}

impl NativeSidecars {
    /// From the env var's value and the version's default.
    pub fn from_env(v: Option<&str>, version: &IstioVersion) -> Result<Self, String> {
        match v {
            Some("true") => Ok(NativeSidecars::On),
            Some("false") => Ok(NativeSidecars::Off),
            Some("auto") => Ok(NativeSidecars::Auto),
            Some(other) => Err(format!(
                "ENABLE_NATIVE_SIDECARS={other}: write true, false or auto"
            )),
            None if version.at_least(1, 27) => Ok(NativeSidecars::Auto),
            None => Ok(NativeSidecars::Off),
        }
    }
}

/// Everything the injection depends on besides the pod.
#[derive(Debug, Clone)]
pub struct Injection {
    /// The release the template comes from.
    pub version: IstioVersion,
    /// `hub/proxyv2:tag`.
    pub proxy_image: String,
    /// Whether this pod's proxy is a native sidecar (already decided for the cluster's nodes).
    pub native: bool,
    /// The control plane's revision (`default`).
    pub revision: String,
    /// `meshConfig.defaultConfig` as JSON (the proxy's `PROXY_CONFIG`).
    pub proxy_config: Value,
    /// The OpenTelemetry collector (`host:port`) traces go to, see [`otlp_tracing`].
    pub otlp_tracing: Option<String>,
}

/// STAND-IN DIFFERENCE: where Istio >= 1.22 sends spans when the mesh config names an
/// `opentelemetry` extension provider and tracing is on. Real istiod pushes the tracer to
/// Envoy over xDS once a `Telemetry` resource selects the provider (pilot/pkg/networking/core/
/// tracing.go); the stand-in has no xDS, so it configures the provider at injection, whether
/// or not a Telemetry resource exists yet (bookinfo-demo applies one right after).
pub fn otlp_tracing(mesh: &Value) -> Option<String> {
    if mesh["enableTracing"] == json!(false) {
        return None;
    }
    mesh["extensionProviders"].as_array()?.iter().find_map(|p| {
        let o = &p["opentelemetry"];
        Some(format!(
            "{}:{}",
            o["service"].as_str()?,
            o["port"].as_u64()?
        ))
    })
}

/// Why a pod is left alone (`pkg/kube/inject/inject.go`, `injectRequired`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// `sidecar.istio.io/inject: "false"` (label or annotation).
    OptedOut,
    /// The pod uses the host's network.
    HostNetwork,
    /// It already has `sidecar.istio.io/status`.
    AlreadyInjected,
}

const STATUS: &str = "sidecar.istio.io/status";

/// The pod with the sidecar injected, or why it is not.
pub fn inject(pod: &Value, namespace: &str, inj: &Injection) -> Result<Value, Skip> {
    skip_reason(pod).map_or(Ok(()), Err)?;
    let mut out = pod.clone();
    let apps = app_containers(pod);
    let workload = workload_name(pod);
    add_metadata(&mut out, &apps, &workload, inj);
    let spec = out["spec"].as_object_mut().expect("a pod has a spec");
    push(spec, "initContainers", init_container(inj));
    let proxy = proxy_container(pod, namespace, &apps, &workload, inj);
    if inj.native {
        push(spec, "initContainers", proxy);
    } else {
        push(spec, "containers", proxy);
    }
    for v in volumes(inj) {
        push(spec, "volumes", v);
    }
    Ok(out)
}

fn skip_reason(pod: &Value) -> Option<Skip> {
    let meta = &pod["metadata"];
    let opted_out = ["labels", "annotations"]
        .iter()
        .any(|k| meta[k]["sidecar.istio.io/inject"].as_str() == Some("false"));
    if opted_out {
        Some(Skip::OptedOut)
    } else if pod["spec"]["hostNetwork"].as_bool() == Some(true) {
        Some(Skip::HostNetwork)
    } else if meta["annotations"][STATUS].is_string() {
        Some(Skip::AlreadyInjected)
    } else {
        None
    }
}

fn push(spec: &mut Map<String, Value>, key: &str, v: Value) {
    let list = spec.entry(key).or_insert_with(|| json!([]));
    if !list.is_array() {
        *list = json!([]);
    }
    list.as_array_mut().expect("just made an array").push(v);
}

fn app_containers(pod: &Value) -> Vec<String> {
    pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .filter(|n| *n != "istio-proxy")
        .map(String::from)
        .collect()
}

/// The Deployment a pod belongs to, as `.DeploymentMeta.Name` (`inject.go`'s
/// `GetDeployMetaFromPod`): a ReplicaSet owner's name without its hash suffix, else the owner's
/// name, else the pod's generateName or name.
pub fn workload_name(pod: &Value) -> String {
    let meta = &pod["metadata"];
    let owner = meta["ownerReferences"]
        .as_array()
        .and_then(|o| o.iter().find(|r| r["controller"].as_bool() == Some(true)));
    match owner {
        Some(o) if o["kind"] == "ReplicaSet" => {
            let n = o["name"].as_str().unwrap_or_default();
            n.rsplit_once('-').map_or(n, |(d, _)| d).to_string()
        }
        Some(o) => o["name"].as_str().unwrap_or_default().to_string(),
        None => meta["generateName"]
            .as_str()
            .map(|g| g.trim_end_matches('-'))
            .or(meta["name"].as_str())
            .unwrap_or_default()
            .to_string(),
    }
}

fn label<'a>(pod: &'a Value, k: &str) -> Option<&'a str> {
    pod["metadata"]["labels"][k].as_str()
}

fn add_metadata(out: &mut Value, apps: &[String], workload: &str, inj: &Injection) {
    let canonical_name = label(out, "service.istio.io/canonical-name")
        .or(label(out, "app.kubernetes.io/name"))
        .or(label(out, "app"))
        .unwrap_or(workload)
        .to_string();
    let canonical_rev = label(out, "service.istio.io/canonical-revision")
        .or(label(out, "app.kubernetes.io/version"))
        .or(label(out, "version"))
        .unwrap_or("latest")
        .to_string();
    let meta = out["metadata"].as_object_mut().expect("a pod has metadata");
    let labels = object(meta, "labels");
    labels
        .entry("security.istio.io/tlsMode")
        .or_insert(json!("istio"));
    labels.insert(
        "service.istio.io/canonical-name".into(),
        json!(canonical_name),
    );
    labels.insert(
        "service.istio.io/canonical-revision".into(),
        json!(canonical_rev),
    );
    let annotations = object(meta, "annotations");
    if let [only] = apps {
        annotations.insert(
            "kubectl.kubernetes.io/default-container".into(),
            json!(only),
        );
        annotations.insert(
            "kubectl.kubernetes.io/default-logs-container".into(),
            json!(only),
        );
    }
    // The merged-metrics scrape the addon Prometheus discovers pods by (`prometheus.io/*`,
    // written by inject.go's `applyPrometheusMerge`).
    annotations.insert("prometheus.io/scrape".into(), json!("true"));
    annotations.insert("prometheus.io/port".into(), json!("15020"));
    annotations.insert("prometheus.io/path".into(), json!("/stats/prometheus"));
    let status = json!({
        "initContainers": if inj.native { json!(["istio-init", "istio-proxy"]) } else { json!(["istio-init"]) },
        "containers": if inj.native { json!(null) } else { json!(["istio-proxy"]) },
        "volumes": volume_names(inj),
        "imagePullSecrets": null,
        "revision": inj.revision,
    });
    annotations.insert(STATUS.into(), json!(status.to_string()));
}

fn object<'a>(m: &'a mut Map<String, Value>, k: &str) -> &'a mut Map<String, Value> {
    let v = m.entry(k).or_insert_with(|| json!({}));
    if !v.is_object() {
        *v = json!({});
    }
    v.as_object_mut().expect("just made an object")
}

/// `istio-init`: the iptables capture (inbound to 15006, outbound to 15001, uid 1337 excluded).
/// The arguments the injection templates give `istio-iptables` in `istio-init` with the
/// default values (`-p 15001 -z 15006 -u 1337 ...`; 1.20+ adds `--log_output_level`): the
/// agent's tests feed exactly these to the stand-in's istio-iptables.
pub const ISTIO_INIT_ARGS: &[&str] = &[
    "-p",
    "15001",
    "-z",
    "15006",
    "-u",
    "1337",
    "-m",
    "REDIRECT",
    "-i",
    "*",
    "-x",
    "",
    "-b",
    "*",
    "-d",
    "15090,15021,15020",
];

fn init_container(inj: &Injection) -> Value {
    let mut args = vec!["istio-iptables"];
    args.extend(ISTIO_INIT_ARGS);
    if inj.version.at_least(1, 20) {
        args.push("--log_output_level=default:info");
    }
    json!({
        "name": "istio-init",
        "image": inj.proxy_image,
        "args": args,
        "env": [release_env(inj)],
        "resources": {"limits": {"cpu": "2", "memory": "1Gi"}, "requests": {"cpu": "10m", "memory": "40Mi"}},
        "securityContext": {
            "allowPrivilegeEscalation": false, "privileged": false,
            "capabilities": {"add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"]},
            "readOnlyRootFilesystem": false, "runAsGroup": 0, "runAsNonRoot": false, "runAsUser": 0,
        },
    })
}

fn proxy_container(
    pod: &Value,
    namespace: &str,
    apps: &[String],
    workload: &str,
    inj: &Injection,
) -> Value {
    let mut c = json!({
        "name": "istio-proxy",
        "image": inj.proxy_image,
        "ports": [{"containerPort": 15090, "protocol": "TCP", "name": "http-envoy-prom"}],
        "args": proxy_args(inj),
        "env": proxy_env(pod, namespace, apps, workload, inj),
        "readinessProbe": probe(2, 30),
        "resources": {"limits": {"cpu": "2", "memory": "1Gi"}, "requests": {"cpu": "10m", "memory": "40Mi"}},
        "securityContext": {
            "allowPrivilegeEscalation": false, "privileged": false,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": true, "runAsGroup": 1337, "runAsNonRoot": true, "runAsUser": 1337,
        },
        "volumeMounts": volume_mounts(inj),
    });
    if inj.native {
        c["restartPolicy"] = json!("Always");
        c["startupProbe"] = json!({"httpGet": {"path": "/healthz/ready", "port": 15021},
            "initialDelaySeconds": 0, "periodSeconds": 1, "timeoutSeconds": 3, "failureThreshold": 600});
        c["lifecycle"] = json!({"preStop": {"exec": {"command":
            ["pilot-agent", "request", "--debug-port=15020", "POST", "drain"]}}});
    }
    c
}

fn probe(period: u32, failures: u32) -> Value {
    json!({"httpGet": {"path": "/healthz/ready", "port": 15021}, "initialDelaySeconds": 1,
        "periodSeconds": period, "timeoutSeconds": 3, "failureThreshold": failures})
}

fn proxy_args(inj: &Injection) -> Vec<&'static str> {
    let mut a = vec![
        "proxy",
        "sidecar",
        "--domain",
        "$(POD_NAMESPACE).svc.cluster.local",
        "--proxyLogLevel=warning",
        "--proxyComponentLogLevel=misc:error",
        "--log_output_level=default:info",
    ];
    if !inj.version.at_least(1, 13) {
        a.extend(["--concurrency", "2"]);
    }
    a
}

fn field_env(name: &str, path: &str) -> Value {
    json!({"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}})
}

fn proxy_env(
    pod: &Value,
    namespace: &str,
    apps: &[String],
    workload: &str,
    inj: &Injection,
) -> Vec<Value> {
    let istiod = if inj.revision == "default" {
        "istiod".to_string()
    } else {
        format!("istiod-{}", inj.revision)
    };
    let ports: Vec<Value> = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["ports"].as_array().cloned().unwrap_or_default())
        .collect();
    let mut env = vec![];
    if !inj.version.at_least(1, 20) {
        env.push(json!({"name": "JWT_POLICY", "value": "third-party-jwt"}));
    }
    env.extend([
        json!({"name": "PILOT_CERT_PROVIDER", "value": "istiod"}),
        json!({"name": "CA_ADDR", "value": format!("{istiod}.istio-system.svc:15012")}),
        field_env("POD_NAME", "metadata.name"),
        field_env("POD_NAMESPACE", "metadata.namespace"),
        field_env("INSTANCE_IP", "status.podIP"),
        field_env("SERVICE_ACCOUNT", "spec.serviceAccountName"),
        field_env("HOST_IP", "status.hostIP"),
        json!({"name": "PROXY_CONFIG", "value": inj.proxy_config.to_string()}),
        json!({"name": "ISTIO_META_POD_PORTS", "value": Value::Array(ports).to_string()}),
        json!({"name": "ISTIO_META_APP_CONTAINERS", "value": apps.join(",")}),
        json!({"name": "ISTIO_META_CLUSTER_ID", "value": "Kubernetes"}),
        json!({"name": "ISTIO_META_INTERCEPTION_MODE", "value": "REDIRECT"}),
        json!({"name": "ISTIO_META_WORKLOAD_NAME", "value": workload}),
        json!({"name": "ISTIO_META_OWNER", "value": format!(
            "kubernetes://apis/apps/v1/namespaces/{namespace}/deployments/{workload}")}),
        json!({"name": "ISTIO_META_MESH_ID", "value": "cluster.local"}),
        json!({"name": "TRUST_DOMAIN", "value": "cluster.local"}),
        release_env(inj),
    ]);
    if let Some(otlp) = &inj.otlp_tracing {
        env.push(json!({"name": "STANDIN_TRACING_OTLP_ADDRESS", "value": otlp}));
    }
    env
}

/// STAND-IN DIFFERENCE: Istio's proxyv2 image sets `ISTIO_META_ISTIO_VERSION` as an image ENV
/// (pilot/docker/Dockerfile.proxyv2, `ENV ISTIO_META_ISTIO_VERSION=$proxy_version`); the
/// stand-in proxy image is one image tagged for every release, so the injector passes the
/// release on the containers it adds (pilot-agent picks its iptables rule flavor from it).
fn release_env(inj: &Injection) -> Value {
    json!({"name": "ISTIO_META_ISTIO_VERSION", "value": inj.version.to_string()})
}

/// (name, the volume) of the template's volumes for the default values.
fn volume_defs(inj: &Injection) -> Vec<(&'static str, Value)> {
    let mut v = vec![];
    if inj.version.at_least(1, 14) {
        v.push(("workload-socket", json!({"emptyDir": {}})));
        v.push(("credential-socket", json!({"emptyDir": {}})));
        v.push(("workload-certs", json!({"emptyDir": {}})));
    }
    v.extend([
        ("istio-envoy", json!({"emptyDir": {"medium": "Memory"}})),
        ("istio-data", json!({"emptyDir": {}})),
        (
            "istio-podinfo",
            json!({"downwardAPI": {"items": [
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
            {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}}]}}),
        ),
        (
            "istio-token",
            json!({"projected": {"sources": [{"serviceAccountToken":
            {"audience": "istio-ca", "expirationSeconds": 43200, "path": "istio-token"}}]}}),
        ),
        (
            "istiod-ca-cert",
            json!({"configMap": {"name": "istio-ca-root-cert"}}),
        ),
    ]);
    if inj.version.at_least(1, 28) {
        v.push((
            "istio-ca-crl",
            json!({"configMap": {"name": "istio-ca-crl", "optional": true}}),
        ));
    }
    v
}

fn volumes(inj: &Injection) -> Vec<Value> {
    volume_defs(inj)
        .into_iter()
        .map(|(name, mut v)| {
            v["name"] = json!(name);
            v
        })
        .collect()
}

fn volume_names(inj: &Injection) -> Vec<&'static str> {
    volume_defs(inj).into_iter().map(|(n, _)| n).collect()
}

fn volume_mounts(inj: &Injection) -> Vec<Value> {
    let mut m = vec![];
    if inj.version.at_least(1, 14) {
        m.push(
            json!({"name": "workload-socket", "mountPath": "/var/run/secrets/workload-spiffe-uds"}),
        );
        m.push(
            json!({"name": "credential-socket", "mountPath": "/var/run/secrets/credential-uds"}),
        );
        m.push(json!({"name": "workload-certs", "mountPath": "/var/run/secrets/workload-spiffe-credentials"}));
    }
    m.push(json!({"name": "istiod-ca-cert", "mountPath": "/var/run/secrets/istio"}));
    if inj.version.at_least(1, 28) {
        m.push(json!({"name": "istio-ca-crl", "mountPath": "/var/run/secrets/istio/crl"}));
    }
    m.extend([
        json!({"name": "istio-data", "mountPath": "/var/lib/istio/data"}),
        json!({"name": "istio-envoy", "mountPath": "/etc/istio/proxy"}),
        json!({"name": "istio-token", "mountPath": "/var/run/secrets/tokens"}),
        json!({"name": "istio-podinfo", "mountPath": "/etc/istio/pod"}),
    ]);
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pod of Bookinfo's productpage-v1 as the ReplicaSet controller creates it.
    fn productpage() -> Value {
        json!({
            "metadata": {"generateName": "productpage-v1-6b746f74dc-", "namespace": "default",
                "labels": {"app": "productpage", "version": "v1", "pod-template-hash": "6b746f74dc"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "name": "productpage-v1-6b746f74dc", "controller": true}]},
            "spec": {"serviceAccountName": "bookinfo-productpage",
                "containers": [{"name": "productpage", "image": "docker.io/istio/examples-bookinfo-productpage-v1:1.16.2",
                    "ports": [{"containerPort": 9080}]}],
                "volumes": [{"name": "tmp", "emptyDir": {}}]},
        })
    }

    fn injection(version: &str, native: bool) -> Injection {
        Injection {
            version: version.parse().unwrap(),
            proxy_image: format!("docker.io/istio/proxyv2:{version}"),
            native,
            revision: "default".into(),
            proxy_config: json!({"tracing": {"zipkin": {"address": "zipkin.istio-system:9411"}}}),
            otlp_tracing: None,
        }
    }

    fn names(list: &Value) -> Vec<&str> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn istio_1_12_appends_the_proxy_to_the_containers_and_the_capture_to_the_init_containers() {
        let pod = inject(&productpage(), "default", &injection("1.12.1", false)).unwrap();
        assert_eq!(
            names(&pod["spec"]["containers"]),
            ["productpage", "istio-proxy"]
        );
        assert_eq!(names(&pod["spec"]["initContainers"]), ["istio-init"]);
        let init = &pod["spec"]["initContainers"][0];
        assert_eq!(init["args"][0], "istio-iptables");
        assert_eq!(
            init["args"].as_array().unwrap().len(),
            17,
            "1.12 has no log flag: {init}"
        );
        assert_eq!(
            init["securityContext"]["capabilities"]["add"],
            json!(["NET_ADMIN", "NET_RAW"])
        );
        let proxy = &pod["spec"]["containers"][1];
        assert_eq!(proxy["image"], "docker.io/istio/proxyv2:1.12.1");
        assert_eq!(proxy["readinessProbe"]["httpGet"]["port"], 15021);
        assert!(proxy.get("restartPolicy").is_none());
        let env = |k: &str| {
            proxy["env"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["name"] == k)
                .cloned()
        };
        assert_eq!(
            env("ISTIO_META_WORKLOAD_NAME").unwrap()["value"],
            "productpage-v1"
        );
        assert_eq!(
            env("ISTIO_META_APP_CONTAINERS").unwrap()["value"],
            "productpage"
        );
        assert_eq!(
            env("ISTIO_META_POD_PORTS").unwrap()["value"],
            r#"[{"containerPort":9080}]"#
        );
        assert!(
            env("PROXY_CONFIG").unwrap()["value"]
                .as_str()
                .unwrap()
                .contains("zipkin.istio-system:9411")
        );
        assert_eq!(
            names(&pod["spec"]["volumes"]),
            [
                "tmp",
                "istio-envoy",
                "istio-data",
                "istio-podinfo",
                "istio-token",
                "istiod-ca-cert"
            ]
        );
    }

    #[test]
    fn metadata_names_the_canonical_service_and_the_injection() {
        let pod = inject(&productpage(), "default", &injection("1.12.1", false)).unwrap();
        let labels = &pod["metadata"]["labels"];
        assert_eq!(labels["service.istio.io/canonical-name"], "productpage");
        assert_eq!(labels["service.istio.io/canonical-revision"], "v1");
        assert_eq!(labels["security.istio.io/tlsMode"], "istio");
        let a = &pod["metadata"]["annotations"];
        assert_eq!(a["kubectl.kubernetes.io/default-container"], "productpage");
        assert_eq!(a["prometheus.io/port"], "15020");
        let status: Value = serde_json::from_str(a[STATUS].as_str().unwrap()).unwrap();
        assert_eq!(status["containers"], json!(["istio-proxy"]));
        assert_eq!(status["revision"], "default");
    }

    #[test]
    fn a_native_sidecar_is_an_init_container_that_restarts_always_after_the_capture() {
        let pod = inject(&productpage(), "default", &injection("1.30.3", true)).unwrap();
        assert_eq!(names(&pod["spec"]["containers"]), ["productpage"]);
        assert_eq!(
            names(&pod["spec"]["initContainers"]),
            ["istio-init", "istio-proxy"]
        );
        let proxy = &pod["spec"]["initContainers"][1];
        assert_eq!(proxy["restartPolicy"], "Always");
        assert_eq!(proxy["startupProbe"]["httpGet"]["path"], "/healthz/ready");
        assert!(names(&pod["spec"]["volumes"]).contains(&"istio-ca-crl"));
        let init_args = pod["spec"]["initContainers"][0]["args"].as_array().unwrap();
        assert_eq!(init_args.last().unwrap(), "--log_output_level=default:info");
    }

    #[test]
    fn pods_that_opt_out_use_the_host_network_or_are_injected_already_are_left_alone() {
        let mut p = productpage();
        p["metadata"]["annotations"] = json!({"sidecar.istio.io/inject": "false"});
        assert_eq!(
            inject(&p, "default", &injection("1.12.1", false)),
            Err(Skip::OptedOut)
        );
        let mut p = productpage();
        p["spec"]["hostNetwork"] = json!(true);
        assert_eq!(
            inject(&p, "default", &injection("1.12.1", false)),
            Err(Skip::HostNetwork)
        );
        let once = inject(&productpage(), "default", &injection("1.12.1", false)).unwrap();
        assert_eq!(
            inject(&once, "default", &injection("1.12.1", false)),
            Err(Skip::AlreadyInjected)
        );
    }

    #[test]
    fn the_webhooks_json_patch_turns_the_pod_into_the_injected_one() {
        let before = productpage();
        let after = inject(&before, "default", &injection("1.30.3", false)).unwrap();
        let patch = json_patch::diff(&before, &after);
        let mut applied = before.clone();
        json_patch::patch(&mut applied, &patch).unwrap();
        assert_eq!(applied, after);
    }

    #[test]
    fn the_workload_is_the_replicasets_deployment_else_the_generate_name() {
        assert_eq!(workload_name(&productpage()), "productpage-v1");
        let bare = json!({"metadata": {"generateName": "web-"}});
        assert_eq!(workload_name(&bare), "web");
        assert_eq!(
            workload_name(&json!({"metadata": {"name": "solo"}})),
            "solo"
        );
    }

    #[test]
    fn native_sidecars_default_to_auto_from_1_27() {
        let v = |s: &str| s.parse::<IstioVersion>().unwrap();
        assert_eq!(
            NativeSidecars::from_env(None, &v("1.30.3")),
            Ok(NativeSidecars::Auto)
        );
        assert_eq!(
            NativeSidecars::from_env(None, &v("1.12.1")),
            Ok(NativeSidecars::Off)
        );
        assert_eq!(
            NativeSidecars::from_env(Some("true"), &v("1.12.1")),
            Ok(NativeSidecars::On)
        );
        assert!(NativeSidecars::from_env(Some("yes"), &v("1.30.3")).is_err());
        assert!("v1.33.0".parse::<IstioVersion>().unwrap().at_least(1, 33));
    }

    #[test]
    fn an_opentelemetry_provider_is_where_spans_go_unless_tracing_is_off() {
        let mesh = json!({"enableTracing": true, "extensionProviders": [
            {"name": "jaeger", "opentelemetry": {
                "service": "jaeger-collector.istio-system.svc.cluster.local", "port": 4317}}]});
        assert_eq!(
            otlp_tracing(&mesh).as_deref(),
            Some("jaeger-collector.istio-system.svc.cluster.local:4317")
        );
        assert_eq!(otlp_tracing(&json!({"defaultConfig": {}})), None);
        let mut off = mesh.clone();
        off["enableTracing"] = json!(false);
        assert_eq!(otlp_tracing(&off), None);
    }
}
