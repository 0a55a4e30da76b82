//! Kubernetes operations on the real lab node (a Kubernetes in a container, see fixtures/lab):
//! apply, wait, exec, port-forward, ingress, faults. No mocks.
//!
//! The trials run on the node `ISTIO_E2E_K8S_VERSION` names (v1.20 by default, or v1.34; its
//! first entry when it lists several); the native-sidecar trials always run on the v1.34 node.
//! Each trial is reported as ignored, with the reason, when the lab cannot run here (no Docker
//! or the image is not built); with `ISTIO_E2E_REQUIRE=1` (as in CI) it fails instead.

#[path = "lab/mesh.rs"]
mod mesh;
#[path = "support/release.rs"]
mod release;

use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use harness::cluster::lab::{self, Lab, LabNode};
use harness::cluster::{ClusterInfo, ClusterRequest, Provider};
use harness::kubeops::{apply, exec, ingress, portforward, wait};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, DeleteParams, ListParams, ResourceExt};
use libtest_mimic::{Arguments, Completion, Failed, Trial};

static RT: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
});

/// One lab node per purpose, started on first use and removed at the end.
static NODES: LazyLock<Mutex<Vec<(String, Lab, ClusterInfo)>>> =
    LazyLock::new(|| Mutex::new(Vec::new()));

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The node the trials run on (`ISTIO_E2E_K8S_VERSION`, else the default).
fn this_node() -> LabNode {
    Lab::default()
        .node(None)
        .expect("ISTIO_E2E_K8S_VERSION names a lab node")
}

/// The Bookinfo stand-in for a node: on v1.34 `istio-proxy` is a native sidecar, as Istio
/// 1.30 injects it there (fixtures/lab/manifests/v1.34/bookinfo.yaml).
fn bookinfo_manifest(node: LabNode) -> PathBuf {
    let m = root().join("fixtures/lab/manifests");
    let own = m.join(node.minor).join("bookinfo.yaml");
    if own.exists() {
        own
    } else {
        m.join("bookinfo.yaml")
    }
}

fn node(purpose: &str) -> Result<(kube::Client, ClusterInfo), Failed> {
    node_on(purpose, this_node())
}

/// A node of `version` for `purpose`, started on first use (one per purpose and version).
fn node_on(purpose: &str, version: LabNode) -> Result<(kube::Client, ClusterInfo), Failed> {
    node_with_istio(purpose, version, None)
}

/// [`node_on`], the node started with the stand-in images tagged for `istio` when given.
fn node_with_istio(
    purpose: &str,
    version: LabNode,
    istio: Option<harness::cluster::standins::Release>,
) -> Result<(kube::Client, ClusterInfo), Failed> {
    let purpose = format!("{purpose}-{}", version.minor.replace('.', "-"));
    let mut nodes = NODES.lock().unwrap();
    if let Some((_, _, info)) = nodes.iter().find(|(p, _, _)| *p == purpose) {
        let info = info.clone();
        let client = RT
            .block_on(harness::kubeops::client_for(&info.kubeconfig, None))
            .map_err(|e| e.to_string())?;
        return Ok((client, info));
    }
    // The trials run in the order listed, grouped by node: a node no later trial uses is
    // removed before the next one starts, so a 2-core machine runs one idle node, not four.
    for (_, mut old, _) in nodes.drain(..) {
        if let Err(e) = RT.block_on(old.teardown(false)) {
            eprintln!("teardown of an earlier lab node: {e}");
        }
    }
    let (lab, info) = start_node(&purpose, version, istio)?;
    let client = RT
        .block_on(harness::kubeops::client_for(&info.kubeconfig, None))
        .map_err(|e| e.to_string())?;
    nodes.push((purpose, lab, info.clone()));
    Ok((client, info))
}

/// Starts a node for `purpose`; a start that failed in a way that may pass on a second try
/// (a node slow to become Ready on a loaded machine) is tried once more, after saying why.
fn start_node(
    purpose: &str,
    version: LabNode,
    istio: Option<harness::cluster::standins::Release>,
) -> Result<(Lab, ClusterInfo), Failed> {
    for attempt in 1..=2 {
        let mut lab = Lab::for_version(Some(version.minor.to_string()));
        let dir = tempfile::tempdir().unwrap().keep();
        let req = ClusterRequest {
            run_id: format!("labtest-{purpose}-{}-{attempt}", std::process::id()),
            artifacts: dir,
            istio: istio.clone(),
            ..Default::default()
        };
        match RT.block_on(lab.create(&req)) {
            Ok(info) => return Ok((lab, info)),
            Err(e) => {
                let _ = RT.block_on(lab.teardown(false));
                if attempt == 2 || !e.is_retryable() {
                    return Err(format!("lab node did not start: {e}").into());
                }
                eprintln!("lab node did not start (trying once more): {e}");
            }
        }
    }
    unreachable!("the second attempt returns")
}

fn lab_trial(name: &str, f: fn() -> Result<(), Failed>) -> Trial {
    lab_trial_on(name, None, f)
}

/// A trial that needs the node of `version` (None: the one `ISTIO_E2E_K8S_VERSION` names).
fn lab_trial_on(name: &str, version: Option<&'static str>, f: fn() -> Result<(), Failed>) -> Trial {
    Trial::ignorable_test(name, move || {
        let lab = Lab::for_version(version.map(String::from));
        if let Some(why) = harness::matrix::runnable_here("the lab", lab.check())? {
            return Ok(Completion::ignored_with(why));
        }
        f().map(|_| Completion::Completed)
    })
    .with_kind("lab")
}

/// A lab trial that also needs the stand-in images (the mesh trials).
fn mesh_trial(name: &str, f: fn() -> Result<(), Failed>) -> Trial {
    Trial::ignorable_test(name, move || {
        let lab = Lab::for_version(None);
        if let Some(why) = harness::matrix::runnable_here("the lab", lab.check())? {
            return Ok(Completion::ignored_with(why));
        }
        let standins = mesh::cannot_run().map_or(Ok(()), Err);
        if let Some(why) = harness::matrix::runnable_here("the mesh trials", standins)? {
            return Ok(Completion::ignored_with(why));
        }
        f().map(|_| Completion::Completed)
    })
    .with_kind("lab")
}

fn deadline(secs: u64) -> Instant {
    Instant::now() + Duration::from_secs(secs)
}

fn ensure(cond: bool, msg: impl Into<String>) -> Result<(), Failed> {
    if cond { Ok(()) } else { Err(msg.into().into()) }
}

/// Applies the gateway and Bookinfo stand-ins (idempotent: a second apply changes nothing).
async fn deploy_standins(client: &kube::Client) -> Result<(), Failed> {
    let m = root().join("fixtures/lab/manifests");
    let docs =
        apply::read_documents(&[m.join("istio-system.yaml"), bookinfo_manifest(this_node())])
            .map_err(|e| e.to_string())?;
    apply::apply(client, &docs, "default", deadline(60))
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

async fn create_ns(client: &kube::Client, ns: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    let body =
        serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
    api.patch(
        ns,
        &kube::api::PatchParams::apply("istio-e2e-test"),
        &kube::api::Patch::Apply(&body),
    )
    .await
    .unwrap();
}

/// The real Istio 1.12.1 CRDs, Bookinfo, its gateway and the addons: every object is created,
/// and waiting for Bookinfo fails once its image pull has failed past the wait's grace,
/// naming the image and the pull error, after saying what it waits on.
fn real_istio_samples_apply_and_image_pulls_fail_clearly() -> Result<(), Failed> {
    let test = "real_istio_samples_apply_and_image_pulls_fail_clearly";
    let Some(s) = RT.block_on(release::istio_release("1.12.1", test)) else {
        return Ok(()); // said why (ISTIO_E2E_SKIP_MISSING_TOOLS=1)
    };
    let crds = harness::download::release_crds(&s).ok_or("the release has no CRD file")?;
    let (client, _) = node("samples")?;
    RT.block_on(async {
        let files = [
            crds,
            s.join("samples/bookinfo/platform/kube/bookinfo.yaml"),
            s.join("samples/bookinfo/networking/bookinfo-gateway.yaml"),
        ];
        let docs = apply::read_documents(&files).map_err(|e| e.to_string())?;
        let report = apply::apply(&client, &docs, "default", deadline(180))
            .await
            .map_err(|e| e.to_string())?;
        ensure(
            report.objects.len() == docs.len(),
            format!(
                "{} objects for {} documents",
                report.objects.len(),
                docs.len()
            ),
        )?;
        create_ns(&client, "istio-system").await;
        let addons: Vec<PathBuf> = ["prometheus", "grafana", "jaeger", "kiali"]
            .iter()
            .map(|a| s.join(format!("samples/addons/{a}.yaml")))
            .collect();
        let adocs = apply::read_documents(&addons).map_err(|e| e.to_string())?;
        let areport = apply::apply(&client, &adocs, "istio-system", deadline(120))
            .await
            .map_err(|e| e.to_string())?;
        ensure(
            areport.objects.len() == adocs.len(),
            format!(
                "addons: {} objects for {} documents",
                areport.objects.len(),
                adocs.len()
            ),
        )?;
        eprintln!(
            "applied {} + {} objects",
            report.objects.len(),
            areport.objects.len()
        );

        // A short image-pull grace: the wait fails once the pull has failed for 10 s instead
        // of running to its deadline (before that change it always took the full 45 s).
        let want = wait::PodsReady {
            namespace: "default".into(),
            selector: Some("app=ratings".into()),
            containers: None,
            min_pods: 1,
            image_pull_grace: Duration::from_secs(10),
            ..Default::default()
        };
        let lines = std::sync::Mutex::new(Vec::<String>::new());
        let report = |l: &str| lines.lock().unwrap().push(l.to_string());
        let t0 = Instant::now();
        let err = wait::pods_ready_reporting(&client, &want, deadline(45), &report)
            .await
            .err()
            .ok_or("Bookinfo's ratings became ready without its image")?;
        let took = t0.elapsed();
        eprintln!("the wait failed after {:.1}s", took.as_secs_f64());
        ensure(
            took < Duration::from_secs(30),
            format!("the wait took {took:?}, not the grace of 10 s plus a pull"),
        )?;
        let msg = err.to_string();
        ensure(
            msg.contains(
                "could not pull image docker.io/istio/examples-bookinfo-ratings-v1:1.16.2 for ",
            ) && msg.contains("(the image-pull grace is 10s); last pull error: "),
            format!("not the image-pull grace message: {msg}"),
        )?;
        let lines = lines.into_inner().unwrap();
        ensure(
            // The first line goes out at once; on a fast apiserver (v1.34) the pod may not
            // exist yet then, and the next line is 15 s away, after the 10 s grace.
            lines.iter().any(|l| {
                l.starts_with("0/1 pods ready; waiting on ratings-v1-") && l.contains("s)")
            }) || lines
                .first()
                .is_some_and(|l| l == "0/0 pods ready (at least 1 expected)"),
            format!("progress lines: {lines:?}"),
        )?;
        eprintln!("wait failed as expected: {msg}");
        Ok(())
    })
}

/// The stand-ins: 2/2, exec by service name, port-forward to a Service, the gateway's http2
/// nodePort from the host.
fn standins_ready_exec_port_forward_and_ingress() -> Result<(), Failed> {
    let (client, info) = node("standins")?;
    RT.block_on(async {
        deploy_standins(&client).await?;
        let want = wait::PodsReady {
            namespace: "default".into(),
            selector: None,
            containers: Some(2),
            min_pods: 6,
            ..Default::default()
        };
        let pods = wait::pods_ready(&client, &want, deadline(180))
            .await
            .map_err(|e| e.to_string())?;
        ensure(pods.len() == 6, format!("{} pods", pods.len()))?;
        wait::deployments_rolled_out(
            &client,
            "istio-system",
            &["istio-ingressgateway".into()],
            deadline(120),
        )
        .await
        .map_err(|e| e.to_string())?;

        let pod = exec::first_ready_pod(&client, "default", "app=ratings")
            .await
            .map_err(|e| e.to_string())?;
        let cmd: Vec<String> = ["wget", "-qO-", "http://productpage:9080/productpage"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let out = exec::exec(&client, "default", &pod, Some("ratings"), &cmd)
            .await
            .map_err(|e| e.to_string())?;
        ensure(
            out.exit_code == 0 && out.stdout.contains("<title>Simple Bookstore App</title>"),
            format!("exec: {out:?}"),
        )?;
        let bad: Vec<String> = ["sh", "-c", "exit 3"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let out = exec::exec(&client, "default", &pod, Some("ratings"), &bad)
            .await
            .map_err(|e| e.to_string())?;
        ensure(out.exit_code == 3, format!("exit code {}", out.exit_code))?;

        let pf = portforward::start(
            client.clone(),
            "default",
            "productpage",
            "9080",
            "127.0.0.1:0".parse().unwrap(),
        )
        .await
        .map_err(|e| e.to_string())?;
        let body = http_get(&format!("http://{}/productpage", pf.local_addr())).await?;
        ensure(body.contains("Simple Bookstore App"), "port-forward page")?;
        pf.stop();

        let ing = ingress::find(
            &client,
            "istio-system",
            "istio-ingressgateway",
            "http2",
            info.node_address.as_deref(),
        )
        .await
        .map_err(|e| e.to_string())?;
        let body = http_get(&format!(
            "http://{}:{}/productpage",
            ing.host, ing.node_port
        ))
        .await?;
        ensure(body.contains("Simple Bookstore App"), "nodePort page")?;
        // Without the provider's address the node's InternalIP / the pod's hostIP is used.
        let ing2 = ingress::find(
            &client,
            "istio-system",
            "istio-ingressgateway",
            "http2",
            None,
        )
        .await
        .map_err(|e| e.to_string())?;
        ensure(
            ing2.host == ing.host,
            format!("{} vs {}", ing2.host, ing.host),
        )?;
        Ok(())
    })
}

async fn http_get(url: &str) -> Result<String, Failed> {
    let client = harness::probes::client();
    for _ in 0..20 {
        if let Ok(r) = client.get(url).timeout(Duration::from_secs(5)).send().await
            && r.status().is_success()
        {
            return r.text().await.map_err(|e| e.to_string().into());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(format!("no 200 from {url}").into())
}

/// Deleting a pod while its Deployment is waited on: the wait still succeeds with the
/// replacement.
fn wait_survives_a_deleted_pod() -> Result<(), Failed> {
    let (client, _) = node("standins")?;
    RT.block_on(async {
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        let victim = exec::first_ready_pod(&client, "default", "app=details")
            .await
            .map_err(|e| e.to_string())?;
        pods.delete(&victim, &DeleteParams::default())
            .await
            .map_err(|e| e.to_string())?;
        let want = wait::PodsReady {
            namespace: "default".into(),
            selector: Some("app=details".into()),
            containers: Some(2),
            min_pods: 1,
            ..Default::default()
        };
        let ready = wait::pods_ready(&client, &want, deadline(120))
            .await
            .map_err(|e| e.to_string())?;
        ensure(
            ready.iter().all(|p| p.name_any() != victim),
            "the deleted pod was counted as ready",
        )?;
        wait::deployments_rolled_out(&client, "default", &["details-v1".into()], deadline(60))
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    })
}

/// A multi-document file whose third document is invalid creates nothing.
fn invalid_third_document_creates_nothing() -> Result<(), Failed> {
    let (client, _) = node("standins")?;
    RT.block_on(async {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: first}\ndata: {a: b}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: second}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: third}\nspec: {replicas: -1}\n";
        let docs = apply::parse_documents(Path::new("broken.yaml"), text).map_err(|e| e.to_string())?;
        let err = apply::apply(&client, &docs, "default", deadline(30)).await.err().ok_or("the invalid document was accepted")?.to_string();
        ensure(err.contains("broken.yaml document 3 (Deployment/third)") && err.contains("nothing was changed"), format!("message: {err}"))?;
        let cms: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client.clone(), "default");
        ensure(cms.get_opt("first").await.map_err(|e| e.to_string())?.is_none(), "first was created")?;
        ensure(cms.get_opt("second").await.map_err(|e| e.to_string())?.is_none(), "second was created")?;
        Ok(())
    })
}

/// Applying the same input twice changes nothing the second time.
fn reapply_is_a_no_op() -> Result<(), Failed> {
    let (client, _) = node("standins")?;
    RT.block_on(async {
        let docs =
            apply::read_documents(&[bookinfo_manifest(this_node())]).map_err(|e| e.to_string())?;
        apply::apply(&client, &docs, "default", deadline(60))
            .await
            .map_err(|e| e.to_string())?;
        let deps: Api<Deployment> = Api::namespaced(client.clone(), "default");
        let gen_before = deps
            .get("reviews-v2")
            .await
            .map_err(|e| e.to_string())?
            .metadata
            .generation;
        let again = apply::apply(&client, &docs, "default", deadline(60))
            .await
            .map_err(|e| e.to_string())?;
        let gen_after = deps
            .get("reviews-v2")
            .await
            .map_err(|e| e.to_string())?
            .metadata
            .generation;
        ensure(
            again.changed == 0,
            format!("{} objects changed on re-apply", again.changed),
        )?;
        ensure(gen_before == gen_after, "generation changed")?;
        Ok(())
    })
}

/// A wait on a namespace that does not exist fails at once with a clear message.
fn wait_on_a_missing_namespace_says_so() -> Result<(), Failed> {
    let (client, _) = node("standins")?;
    RT.block_on(async {
        let want = wait::PodsReady {
            namespace: "no-such-ns".into(),
            selector: None,
            containers: None,
            min_pods: 1,
            ..Default::default()
        };
        let t0 = Instant::now();
        let e = wait::pods_ready(&client, &want, deadline(60))
            .await
            .err()
            .ok_or("no error")?;
        ensure(
            t0.elapsed() < Duration::from_secs(10),
            "it waited instead of failing",
        )?;
        ensure(
            e.to_string()
                .starts_with("namespace no-such-ns does not exist"),
            e.to_string(),
        )?;
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        ensure(
            !pods
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?
                .items
                .is_empty(),
            "no pods at all",
        )?;
        Ok(())
    })
}

/// The compatibility precheck against the lab's real server version: on 1.20 Istio 1.12 passes
/// and Istio 1.30 is refused with the clear error, before anything is installed; on 1.34 Istio
/// 1.30 passes and 1.12 only warns. The node reports the version it was built as (a node built
/// without the version stamped in reports v0.0.0).
fn compatibility_precheck_on_the_labs_version() -> Result<(), Failed> {
    let this = this_node();
    let (client, _) = node("standins")?;
    let v = RT
        .block_on(client.apiserver_version())
        .map_err(|e| e.to_string())?;
    ensure(
        v.git_version.starts_with(&format!("{}.", this.minor)),
        format!("the {} lab reports {}", this.minor, v.git_version),
    )?;
    if this.minor == "v1.34" {
        let ok = harness::istio::check_compatibility("1.30.3", &v.git_version)
            .map_err(|e| format!("1.30.3 refused on {}: {e}", v.git_version))?;
        ensure(ok.is_none(), format!("1.30.3 on {}: {ok:?}", v.git_version))?;
        let warn = harness::istio::check_compatibility("1.12.1", &v.git_version)
            .map_err(|e| format!("1.12.1 refused on {}: {e}", v.git_version))?;
        return ensure(
            warn.as_deref()
                .is_some_and(|w| w.contains("not officially supported")),
            format!("1.12.1 on {}: {warn:?}", v.git_version),
        );
    }
    harness::istio::check_compatibility("1.12.1", &v.git_version)
        .map_err(|e| format!("1.12.1 refused: {e}"))?;
    let e = harness::istio::check_compatibility("1.30.3", &v.git_version)
        .err()
        .ok_or("1.30.3 accepted on 1.20")?
        .to_string();
    ensure(
        e == format!(
            "Istio 1.30.3 needs Kubernetes 1.32 or newer (supported: 1.32 to 1.36); this cluster is Kubernetes {}",
            v.git_version
        ),
        e,
    )
}

/// A pod shaped like Istio 1.30's injection on a 1.33+ node: `istio-proxy` a native sidecar
/// (init container, `restartPolicy: Always`) whose readiness probe asks `probe_port`.
fn native_sidecar_pod(name: &str, probe_port: u16) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      terminationGracePeriodSeconds: 0
      initContainers:
      - name: istio-proxy
        image: istio-e2e.local/busybox:1
        imagePullPolicy: Never
        restartPolicy: Always
        command: [sh, -c, 'mkdir -p /tmp/www && echo ok >/tmp/www/index.html && exec httpd -f -p 15021 -h /tmp/www']
        readinessProbe:
          httpGet: {{path: /, port: {probe_port}}}
          periodSeconds: 1
      containers:
      - {{name: app, image: istio-e2e.local/busybox:1, imagePullPolicy: Never, command: [sleep, '3600']}}
"
    )
}

/// On the v1.34 node: a pod with a native sidecar is 2/2 through the harness's wait (as
/// kubectl's READY column counts it since 1.29), and the same wait fails, naming the container,
/// when the sidecar's readiness probe fails. The node and its kubelet report v1.34.
fn native_sidecar_ready_and_unready_on_v1_34() -> Result<(), Failed> {
    // the v1.34 "standins" node when the trials run on v1.34 (its own namespace: no clash)
    let (client, _) = node_on("standins", lab::node_for(Some("v1.34")).unwrap())?;
    RT.block_on(async {
        let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
        let kubelet = nodes
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?
            .items
            .first()
            .and_then(|n| {
                n.status
                    .as_ref()?
                    .node_info
                    .as_ref()
                    .map(|i| i.kubelet_version.clone())
            })
            .ok_or("no node")?;
        ensure(kubelet.starts_with("v1.34."), format!("kubelet {kubelet}"))?;
        create_ns(&client, "native").await;
        let manifest = format!(
            "{}---\n{}",
            native_sidecar_pod("sidecar-ready", 15021),
            native_sidecar_pod("sidecar-unready", 15999)
        );
        let docs = apply::parse_documents(Path::new("native.yaml"), &manifest)
            .map_err(|e| e.to_string())?;
        apply::apply(&client, &docs, "native", deadline(60))
            .await
            .map_err(|e| e.to_string())?;
        let want = |app: &str| wait::PodsReady {
            namespace: "native".into(),
            selector: Some(format!("app={app}")),
            containers: Some(2),
            min_pods: 1,
            sidecar: Some("istio-proxy".into()),
            ..Default::default()
        };
        let pods = wait::pods_ready(&client, &want("sidecar-ready"), deadline(120))
            .await
            .map_err(|e| e.to_string())?;
        let pod = pods.first().ok_or("no pod")?;
        let spec = pod.spec.as_ref().ok_or("no spec")?;
        ensure(
            spec.containers.len() == 1
                && spec
                    .init_containers
                    .as_ref()
                    .is_some_and(|i| i.len() == 1 && wait::is_native_sidecar(&i[0])),
            "the apiserver did not keep istio-proxy a native sidecar",
        )?;
        let r = wait::container_readiness(pod);
        ensure((r.ready, r.total) == (2, 2), format!("{r:?}"))?;
        ensure(r.names == ["app", "istio-proxy"], format!("{r:?}"))?;

        let t0 = Instant::now();
        let e = wait::pods_ready(&client, &want("sidecar-unready"), deadline(20))
            .await
            .err()
            .ok_or("a pod whose sidecar fails its readiness probe was ready")?
            .to_string();
        ensure(
            t0.elapsed() < Duration::from_secs(30),
            "the wait overran its timeout",
        )?;
        eprintln!("wait failed as expected: {e}");
        ensure(
            e.contains("1/2 ready")
                && e.contains(
                    "container istio-proxy running but not ready (readiness probe failing?)",
                ),
            format!("message: {e}"),
        )?;
        let ns: Api<Namespace> = Api::all(client.clone());
        ns.delete("native", &DeleteParams::default())
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    })
}

/// Stop and restart kube-apiserver while a wait is watching: the wait recovers (the watcher
/// re-lists and resumes) and sees the pods created after the restart.
fn wait_recovers_from_an_apiserver_restart() -> Result<(), Failed> {
    let (client, info) = node("standins")?;
    RT.block_on(async {
        let want = wait::PodsReady { namespace: "default".into(), selector: Some("app=restart-probe".into()), containers: Some(1), min_pods: 1, ..Default::default() };
        let c2 = client.clone();
        let waiting = tokio::spawn(async move { wait::pods_ready(&c2, &want, deadline(180)).await });
        // Give the watch time to be established before pulling the server from under it.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let docker = |args: &[&str]| {
            std::process::Command::new("docker").args(args).status().map(|s| s.success()).unwrap_or(false)
        };
        ensure(docker(&["exec", &info.name, "touch", "/run/lab/kube-apiserver.restart"]), "docker exec touch failed")?;
        ensure(docker(&["exec", &info.name, "pkill", "-x", "kube-apiserver"]), "could not stop kube-apiserver")?;
        // Until the new apiserver answers, every call fails.
        let t0 = Instant::now();
        loop {
            let deps: Api<Deployment> = Api::namespaced(client.clone(), "default");
            // Serving the apps group again means the new apiserver has finished starting.
            if t0.elapsed() > Duration::from_secs(1)
                && deps.list(&ListParams::default().limit(1)).await.is_ok()
                && kube::discovery::pinned_kind(&client, &kube::core::GroupVersionKind::gvk("apps", "v1", "Deployment")).await.is_ok()
            {
                break;
            }
            ensure(t0.elapsed() < Duration::from_secs(90), "kube-apiserver did not come back within 90 s")?;
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        eprintln!("kube-apiserver back after {:.1}s", t0.elapsed().as_secs_f64());
        let manifest = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: restart-probe}\nspec:\n  selector: {matchLabels: {app: restart-probe}}\n  template:\n    metadata: {labels: {app: restart-probe}}\n    spec:\n      terminationGracePeriodSeconds: 0\n      containers:\n      - {name: c, image: istio-e2e.local/busybox:1, imagePullPolicy: Never, command: [sleep, '3600']}\n";
        let docs = apply::parse_documents(Path::new("restart-probe.yaml"), manifest).map_err(|e| e.to_string())?;
        apply::apply(&client, &docs, "default", deadline(60)).await.map_err(|e| e.to_string())?;
        let pods = waiting.await.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?;
        ensure(pods.len() == 1 && pods[0].name_any().starts_with("restart-probe-"), format!("{} pods", pods.len()))?;
        Ok(())
    })
}

/// The data-plane half of `istio-upgrade` on the stand-ins: `rollout_restart` replaces the pods
/// of every Deployment, and `proxies_at_version` passes for the sidecars' image tag (1.40) and,
/// for another version, fails naming each pod and the image it runs. `patch` refuses an object
/// that does not exist and a patch the server rejects, changing nothing.
fn upgrade_data_plane_restart_and_proxy_version() -> Result<(), Failed> {
    let (client, _) = node("standins")?;
    RT.block_on(async {
        deploy_standins(&client).await?;
        wait::deployments_rolled_out(&client, "default", &[], deadline(180))
            .await
            .map_err(|e| e.to_string())?;
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        let before: Vec<String> = pods
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?
            .items
            .iter()
            .map(|p| p.name_any())
            .collect();
        let restarted = wait::rollout_restart(&client, "default", &[])
            .await
            .map_err(|e| e.to_string())?;
        ensure(restarted.len() == 6, format!("restarted {restarted:?}"))?;
        wait::deployments_rolled_out(&client, "default", &restarted, deadline(180))
            .await
            .map_err(|e| e.to_string())?;
        let n = wait::proxies_at_version(&client, "default", "1.40", deadline(120))
            .await
            .map_err(|e| e.to_string())?;
        ensure(n == 6, format!("{n} proxies at 1.40"))?;
        let after: Vec<String> = pods
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?
            .items
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .map(|p| p.name_any())
            .collect();
        ensure(
            after.iter().all(|p| !before.contains(p)),
            format!("pods not replaced: before {before:?}, after {after:?}"),
        )?;
        let e = wait::proxies_at_version(&client, "default", "1.41.0", deadline(3))
            .await
            .err()
            .ok_or("1.41.0 accepted")
            .map(harness::error::StepError::from)?;
        ensure(
            e.message.starts_with("the data plane in namespace default did not move to Istio 1.41.0: pod productpage-v1-")
                || e.message.contains("its istio-proxy runs istio-e2e.local/envoy:1.40, not 1.41.0"),
            e.message.clone(),
        )?;
        ensure(
            e.message.matches("its istio-proxy runs istio-e2e.local/envoy:1.40, not 1.41.0").count() == 6,
            e.message.clone(),
        )?;

        use harness::kubeops::patch::{Change, Target, patch};
        let missing = Target { kind: "Deployment", api_version: None, name: "nope", namespace: "default" };
        let e = patch(&client, &missing, &Change::Merge(serde_json::json!({"spec": {"replicas": 2}})))
            .await
            .err()
            .ok_or("patch of a missing object passed")
            .map(harness::error::StepError::from)?;
        ensure(e.message == "patch Deployment/default/nope: no such object", e.message.clone())?;
        let pp = Target { kind: "deployment", api_version: Some("apps/v1"), name: "productpage-v1", namespace: "default" };
        let bad = Change::Merge(serde_json::json!({"spec": {"replicas": -1}}));
        let e = patch(&client, &pp, &bad).await.err().ok_or("replicas -1 accepted").map(harness::error::StepError::from)?;
        ensure(
            e.message.contains("(dry run, nothing was changed): the API server refused it"),
            e.message.clone(),
        )?;
        let same = Change::Json(serde_json::from_value(serde_json::json!([{"op": "replace", "path": "/spec/replicas", "value": 1}])).unwrap());
        let changed = patch(&client, &pp, &same).await.map_err(|e| e.to_string())?;
        ensure(!changed, "replacing replicas 1 with 1 changed the object")?;
        Ok(())
    })
}

/// A pod whose image is absent with `imagePullPolicy: Never` (`ErrImageNeverPull`) fails the
/// wait at once, naming the pod, container, state and image, long before the wait's deadline.
fn a_state_waiting_cannot_fix_fails_the_wait_at_once() -> Result<(), Failed> {
    let (client, _) = node("samples")?;
    RT.block_on(async {
        create_ns(&client, "never").await;
        let manifest = "apiVersion: v1
kind: Pod
metadata: {name: never-pulled, labels: {app: never-pulled}}
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - {name: app, image: istio-e2e.local/absent:1, imagePullPolicy: Never}
";
        let docs = apply::parse_documents(Path::new("never.yaml"), manifest)
            .map_err(|e| e.to_string())?;
        apply::apply(&client, &docs, "never", deadline(60))
            .await
            .map_err(|e| e.to_string())?;
        let want = wait::PodsReady {
            namespace: "never".into(),
            selector: Some("app=never-pulled".into()),
            ..Default::default()
        };
        let t0 = Instant::now();
        let e = wait::pods_ready(&client, &want, deadline(120))
            .await
            .err()
            .ok_or("a pod without its image became ready")?;
        let took = t0.elapsed();
        eprintln!("failed after {:.1}s: {e}", took.as_secs_f64());
        ensure(took < Duration::from_secs(30), format!("took {took:?}"))?;
        ensure(!e.is_retryable(), "a state waiting cannot fix is retried")?;
        let e = e.to_string();
        ensure(
            e.starts_with("pod never/never-pulled: container app (image istio-e2e.local/absent:1) is in ErrImageNeverPull, which waiting does not fix"),
            format!("message: {e}"),
        )?;
        let ns: Api<Namespace> = Api::all(client.clone());
        ns.delete("never", &DeleteParams::default())
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    })
}

/// What istio.io's tests compare before and after a run on someone's cluster: every
/// namespace with its labels, and the deployments, services, configmaps and serviceaccounts of
/// every namespace (by name; `istiod` also by uid, so a delete-and-recreate would show).
async fn cluster_objects(
    client: &kube::Client,
) -> Result<std::collections::BTreeSet<String>, Failed> {
    use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
    async fn names<K>(client: &kube::Client, kind: &str) -> Result<Vec<String>, Failed>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        let api: Api<K> = Api::all(client.clone());
        let list = api
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        Ok(list
            .items
            .iter()
            .map(|o| {
                let uid = match (kind, o.meta().name.as_deref()) {
                    ("Deployment", Some("istiod")) => {
                        format!(" uid={}", o.uid().unwrap_or_default())
                    }
                    _ => String::new(),
                };
                format!(
                    "{kind}/{}/{}{uid}",
                    o.namespace().unwrap_or_default(),
                    o.name_any()
                )
            })
            .collect())
    }
    let nss: Api<Namespace> = Api::all(client.clone());
    let mut all: std::collections::BTreeSet<String> = nss
        .list(&ListParams::default())
        .await
        .map_err(|e| e.to_string())?
        .items
        .iter()
        .map(|n| format!("Namespace/{} labels={:?}", n.name_any(), n.labels()))
        .collect();
    all.extend(names::<Deployment>(client, "Deployment").await?);
    all.extend(names::<Service>(client, "Service").await?);
    all.extend(names::<ConfigMap>(client, "ConfigMap").await?);
    all.extend(names::<ServiceAccount>(client, "ServiceAccount").await?);
    Ok(all)
}

/// Someone's cluster before the run: an Istio control plane (a stand-in `istiod` Deployment
/// in `istio-system`, labelled as Istio labels it, at Istio 1.12.1, no replicas) and a
/// namespace `shop` with labels and a ConfigMap of its own.
async fn someones_cluster(client: &kube::Client) -> Result<(), Failed> {
    let text = "apiVersion: v1
kind: Namespace
metadata: {name: istio-system}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: istiod
  namespace: istio-system
  labels: {app: istiod, istio: pilot, istio.io/rev: default, install.operator.istio.io/owning-resource: installed-state}
spec:
  replicas: 0
  selector: {matchLabels: {app: istiod, istio: pilot}}
  template:
    metadata: {labels: {app: istiod, istio: pilot}}
    spec:
      containers:
      - {name: discovery, image: docker.io/istio/pilot:1.12.1}
---
apiVersion: v1
kind: Namespace
metadata:
  name: shop
  labels: {team: payments, istio-injection: disabled}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: shop}
data: {owner: payments}
";
    let docs = apply::parse_documents(Path::new("someones-cluster.yaml"), text)
        .map_err(|e| e.to_string())?;
    apply::apply(client, &docs, "default", deadline(60))
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// Waits until the node's controllers have settled, so that what they create on their own (a
/// fresh node's controller ServiceAccounts, every namespace's `default` ServiceAccount and
/// `kube-root-ca.crt`) is not mistaken for what a run left behind: `shop`'s own are there,
/// then no ServiceAccount appears for 3 s (a watch with a quiet period, up to 90 s).
async fn controllers_settled(client: &kube::Client) -> Result<(), Failed> {
    use futures::StreamExt;
    use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
    use kube::runtime::wait::await_condition;
    use kube::runtime::watcher;
    let exists = |o: Option<&ServiceAccount>| o.is_some();
    let sa: Api<ServiceAccount> = Api::namespaced(client.clone(), "shop");
    let ca: Api<ConfigMap> = Api::namespaced(client.clone(), "shop");
    let both = futures::future::try_join(
        await_condition(sa, "default", exists),
        await_condition(ca, "kube-root-ca.crt", |o: Option<&ConfigMap>| o.is_some()),
    );
    tokio::time::timeout(Duration::from_secs(90), both)
        .await
        .map_err(|_| "shop's default ServiceAccount and kube-root-ca.crt did not appear in 90 s")?
        .map_err(|e| e.to_string())?;
    let all: Api<ServiceAccount> = Api::all(client.clone());
    let mut events = std::pin::pin!(watcher(all, watcher::Config::default()));
    let until = deadline(90);
    // The initial listing first, then events until 3 s pass without one.
    while let Some(e) = events.next().await {
        if matches!(e, Ok(watcher::Event::InitDone)) {
            break;
        }
    }
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_secs(3), events.next()).await {
        ensure(
            Instant::now() < until,
            "ServiceAccounts kept appearing for 90 s",
        )?;
    }
    Ok(())
}

/// What the run applies: an update of the user's ConfigMap (which stays), a ConfigMap next to
/// it, a Deployment, Service and ServiceAccount in a namespace a `label` step creates, and a
/// namespace of its own with a ConfigMap in it.
const RUN_MANIFEST: &str = "apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: shop}
data: {owner: payments, checked-by: istio-e2e}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: run-notes, namespace: shop}
data: {a: b}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: web, namespace: fresh}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: fresh}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: fresh}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      serviceAccountName: web
      terminationGracePeriodSeconds: 0
      containers:
      - {name: web, image: istio-e2e.local/busybox:1, imagePullPolicy: Never, command: [sleep, '3600']}
---
apiVersion: v1
kind: Namespace
metadata: {name: run-own}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: inside, namespace: run-own}
data: {a: b}
";

/// A scenario on provider `existing` pointed at the node's kubeconfig, with `steps`; the
/// manifest `manifest` is written beside it as `objects.yaml`.
fn existing_scenario(
    dir: &Path,
    kubeconfig: &Path,
    manifest: &str,
    steps: &str,
) -> harness::scenario::ScenarioFile {
    let objects = dir.join("objects.yaml");
    std::fs::write(&objects, manifest).unwrap();
    let text = format!(
        "name: existing-cluster\ncluster:\n  provider: existing\n  kubeconfig: {}\nnamespace: default\nsteps:\n{}",
        kubeconfig.display(),
        steps.replace("OBJECTS", &objects.display().to_string())
    );
    harness::scenario::parse_str(&dir.join("existing.yaml"), text).unwrap()
}

fn run_options(dir: &Path) -> harness::runner::RunOptions {
    harness::runner::RunOptions {
        artifacts_root: Some(dir.join("artifacts")),
        quiet: true,
        no_signal_handler: true,
        ..Default::default()
    }
}

fn failures(r: &harness::results::RunResult) -> String {
    r.steps
        .iter()
        .filter_map(|s| s.error.as_ref().map(|e| format!("{}: {e}", s.name)))
        .collect::<Vec<_>>()
        .join("; ")
}

const RUN_STEPS: &str = "  - istio-install: {}
  - name: label shop
    label: {namespace: shop, labels: {istio-injection: enabled, run: e2e}}
  - name: label fresh
    label: {namespace: fresh, labels: {istio-injection: enabled}}
  - name: apply the objects
    apply: {files: OBJECTS}
  - name: web rolled out
    timeout: 2m
    wait: {deployments: {namespace: fresh, names: [web]}}
";

/// Provider `existing` on a lab node that already has an Istio (a stand-in `istiod`) and a
/// user's namespace: the run uses that Istio and leaves it; it labels the user's namespace,
/// creates a namespace, applies objects into both and a namespace of its own, and its
/// teardown leaves the cluster exactly as it found it (the object list before and after, as
/// istio.io's tests compare it), twice in a row. The user's ConfigMap, which the run updated,
/// stays as updated.
fn existing_cluster_is_left_as_found() -> Result<(), Failed> {
    let (client, info) = node("existing")?;
    RT.block_on(async {
        someones_cluster(&client).await?;
        controllers_settled(&client).await?;
        let before = cluster_objects(&client).await?;
        let dir = tempfile::tempdir().unwrap();
        let file = existing_scenario(dir.path(), &info.kubeconfig, RUN_MANIFEST, RUN_STEPS);
        for round in 1..=2 {
            let r = harness::runner::run_file(&file, &run_options(dir.path()))
                .await
                .map_err(|e| e.to_string())?;
            eprintln!("round {round} teardown:\n  {}", r.teardown.join("\n  "));
            ensure(
                r.status == harness::results::Status::Passed,
                format!("round {round}: {:?}: {}", r.status, failures(&r)),
            )?;
            let install = r.steps.iter().find(|s| s.kind == "istio-install").ok_or("no istio-install")?;
            ensure(
                install.outputs.get("existing").and_then(|v| v.as_str())
                    == Some("istiod (revision default, 1.12.1)"),
                format!("istio-install outputs: {:?}", install.outputs),
            )?;
            let torn = r.teardown.join("\n");
            for want in [
                "deleted objects created by `apply the objects`: ConfigMap/run-own/inside, Deployment/fresh/web, Service/fresh/web, ServiceAccount/fresh/web, ConfigMap/shop/run-notes, Namespace/run-own",
                "deleted namespace fresh: Namespace/fresh",
                "restored namespace shop's labels: istio-injection=disabled, run removed",
            ] {
                ensure(torn.contains(want), format!("round {round}: no `{want}` in teardown:\n{torn}"))?;
            }
            ensure(!torn.contains("istio-system") && !torn.contains("uninstall"), format!("teardown touched Istio:\n{torn}"))?;
            let after = cluster_objects(&client).await?;
            let gone: Vec<_> = before.difference(&after).collect();
            let left: Vec<_> = after.difference(&before).collect();
            ensure(
                gone.is_empty() && left.is_empty(),
                format!("round {round}: removed {gone:?}; left behind {left:?}"),
            )?;
        }
        let cms: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client.clone(), "shop");
        let settings = cms.get("settings").await.map_err(|e| e.to_string())?;
        ensure(
            settings.data.unwrap_or_default().get("checked-by").map(String::as_str) == Some("istio-e2e"),
            "the user's ConfigMap lost the run's update (it was updated, not created: it stays as updated)",
        )?;
        Ok(())
    })
}

/// `--keep-on-failure` on provider `existing`: a failing run keeps everything it made (the
/// namespace, the objects, the labels) and says so in its teardown lines.
fn existing_cluster_keep_on_failure_keeps_everything() -> Result<(), Failed> {
    let (client, info) = node("existing")?;
    RT.block_on(async {
        someones_cluster(&client).await?;
        let dir = tempfile::tempdir().unwrap();
        let steps = "  - name: label kept
    label: {namespace: kept, labels: {istio-injection: enabled}}
  - name: label shop
    label: {namespace: shop, labels: {kept: 'yes'}}
  - name: apply the objects
    apply: {files: OBJECTS}
  - name: fail
    timeout: 3s
    wait: {deployments: {namespace: kept, names: [no-such-deployment]}}
";
        let manifest = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: kept-cm, namespace: kept}\ndata: {a: b}\n";
        let file = existing_scenario(dir.path(), &info.kubeconfig, manifest, steps);
        let opts = harness::runner::RunOptions { keep_on_failure: true, ..run_options(dir.path()) };
        let r = harness::runner::run_file(&file, &opts).await.map_err(|e| e.to_string())?;
        ensure(r.status == harness::results::Status::Failed, format!("status {:?}", r.status))?;
        let torn = r.teardown.join("\n");
        for want in [
            "kept objects created by `apply the objects`: ConfigMap/kept/kept-cm",
            "kept labels kept on namespace shop",
            "kept namespace kept",
        ] {
            ensure(torn.contains(want), format!("no `{want}` in teardown:\n{torn}"))?;
        }
        let cms: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client.clone(), "kept");
        ensure(cms.get_opt("kept-cm").await.map_err(|e| e.to_string())?.is_some(), "kept-cm was deleted")?;
        let nss: Api<Namespace> = Api::all(client.clone());
        let shop = nss.get("shop").await.map_err(|e| e.to_string())?;
        ensure(shop.labels().get("kept").map(String::as_str) == Some("yes"), "the label was removed")?;
        // Leave the node as the other trials expect it.
        let undo = [harness::kubeops::delete::ObjectRef::namespace("kept", None)];
        harness::kubeops::delete::delete_and_wait(&client, &undo, deadline(120))
            .await
            .map_err(|e| e.to_string())?;
        let body = serde_json::json!({"metadata": {"labels": {"kept": null}}});
        nss.patch("shop", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&body))
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    })
}

/// A run whose apply created an object with a finalizer nobody removes: teardown waits its
/// deadline (here 5 s), no longer, and names the object and its finalizer, then the namespace
/// (still terminating on its content) and its own finalizer. Removing the finalizer lets both
/// go.
fn existing_cluster_deletion_deadline_names_finalizers() -> Result<(), Failed> {
    let (client, info) = node("existing")?;
    RT.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let steps = "  - name: label held
    label: {namespace: held, labels: {istio-injection: enabled}}
  - name: apply the held object
    apply: {files: OBJECTS}
";
        let manifest = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: held, namespace: held, finalizers: [istio-e2e.test/hold]}\ndata: {a: b}\n";
        let file = existing_scenario(dir.path(), &info.kubeconfig, manifest, steps);
        let opts = harness::runner::RunOptions {
            delete_timeout: Some(Duration::from_secs(5)),
            ..run_options(dir.path())
        };
        let t0 = Instant::now();
        let r = harness::runner::run_file(&file, &opts).await.map_err(|e| e.to_string())?;
        let took = t0.elapsed();
        let torn = r.teardown.join("\n");
        eprintln!("teardown after {took:?}:\n{torn}");
        ensure(r.status == harness::results::Status::Passed, format!("{:?}: {}", r.status, failures(&r)))?;
        ensure(took < Duration::from_secs(40), format!("the run took {took:?}"))?;
        ensure(
            torn.contains("teardown of objects created by `apply the held object` incomplete: 1 object not deleted (5s after asking): ConfigMap/held/held is still there, waiting on finalizers istio-e2e.test/hold"),
            format!("teardown:\n{torn}"),
        )?;
        ensure(
            torn.contains("teardown of namespace held incomplete: 1 object not deleted (5s after asking): Namespace/held is still there, waiting on finalizers kubernetes"),
            format!("teardown:\n{torn}"),
        )?;
        // Remove the finalizer; both go.
        let cms: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client.clone(), "held");
        let body = serde_json::json!({"metadata": {"finalizers": null}});
        cms.patch("held", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&body))
            .await
            .map_err(|e| e.to_string())?;
        let ns = [harness::kubeops::delete::ObjectRef::namespace("held", None)];
        let done = harness::kubeops::delete::delete_and_wait(&client, &ns, deadline(120))
            .await
            .map_err(|e| e.to_string())?;
        ensure(done.gone == ["Namespace/held"], format!("{done:?}"))?;
        Ok(())
    })
}

/// Runs one `assert` or `absent` step, written as in a scenario, against the node with the
/// scenario namespace `default` and a timeout of `secs`.
async fn run_step(
    info: &ClusterInfo,
    yaml: &str,
    secs: u64,
) -> Result<harness::Outputs, harness::error::StepError> {
    let kind: harness::steps::StepKind =
        serde_saphyr::from_str(yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"));
    let mut ctx = harness::context::Context::new("lab-assert", "default", std::env::temp_dir());
    ctx.cluster = Some(info.clone());
    kind.run(&mut ctx, deadline(secs)).await
}

/// The stand-ins applied and every Deployment rolled out, for the assert trials.
async fn standins_rolled_out(client: &kube::Client) -> Result<(), Failed> {
    deploy_standins(client).await?;
    wait::deployments_rolled_out(client, "default", &[], deadline(180))
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// The message of a step that had to fail, up to its last-event line (events vary).
async fn step_failure(info: &ClusterInfo, yaml: &str, secs: u64) -> Result<String, Failed> {
    let t0 = Instant::now();
    let e = run_step(info, yaml, secs)
        .await
        .err()
        .ok_or_else(|| format!("passed: {yaml}"))?;
    ensure(
        t0.elapsed() < Duration::from_secs(secs + 10),
        format!("overran its {secs}s timeout: {yaml}"),
    )?;
    eprintln!("failed as expected: {e}");
    Ok(e.message
        .split("\nlast event of")
        .next()
        .unwrap_or_default()
        .to_string())
}

/// `assert` on a Deployment: a partial match passes; a mismatch fails at its timeout with the
/// first mismatch's path and the unified diff of `match` against the object.
fn assert_matches_and_a_mismatch_shows_the_diff() -> Result<(), Failed> {
    let (client, info) = node("standins")?;
    RT.block_on(async {
        standins_rolled_out(&client).await?;
        let out = run_step(&info, "assert: {api-version: apps/v1, kind: Deployment, name: details-v1, match: {spec: {replicas: 1}, metadata: {labels: {app: details}}}}", 30)
            .await
            .map_err(|e| e.to_string())?;
        ensure(
            out["matched"] == 1 && out["objects"] == serde_json::json!(["details-v1"]),
            format!("{out:?}"),
        )?;
        let msg = step_failure(&info, "assert: {api-version: apps/v1, kind: Deployment, name: details-v1, match: {spec: {replicas: 3}, status: {conditions: [{type: Available, status: \"False\"}]}}}", 3).await?;
        // (lines joined: a `\` continuation would eat the diff's leading spaces)
        let want = [
            "expected at least 1 Deployment (name details-v1) in namespace default to match; 0 of 1 do",
            "details-v1: spec.replicas: expected 3, found 1",
            "--- expected",
            "+++ Deployment/details-v1",
            "@@ -1,6 +1,6 @@",
            " spec:",
            "-  replicas: 3",
            "+  replicas: 1",
            " status:",
            "   conditions:",
            "-  - status: \"False\"",
            "+  - status: \"True\"",
            "     type: Available",
        ]
        .join("\n");
        ensure(msg.trim_end() == want, format!("message:\n{msg}\nwanted:\n{want}"))
    })
}

/// An expected list matches when each element matches some actual element, in any order,
/// whatever else the list holds: a Deployment's `status.conditions`.
fn assert_list_semantics_on_deployment_conditions() -> Result<(), Failed> {
    let (client, info) = node("standins")?;
    RT.block_on(async {
        standins_rolled_out(&client).await?;
        for conditions in [
            "[{type: Progressing, status: \"True\"}, {type: Available, status: True}]",
            "[{type: Available, reason: MinimumReplicasAvailable}]",
            "[{reason: NewReplicaSetAvailable}]",
        ] {
            let yaml = format!("assert: {{api-version: apps/v1, kind: Deployment, name: ratings-v1, match: {{status: {{conditions: {conditions}}}}}}}");
            run_step(&info, &yaml, 30)
                .await
                .map_err(|e| format!("{conditions}: {e}"))?;
        }
        let msg = step_failure(&info, "assert: {api-version: apps/v1, kind: Deployment, name: ratings-v1, match: {status: {conditions: [{type: Available}, {type: Programmed, status: \"True\"}]}}}", 2).await?;
        ensure(
            msg.contains("\nratings-v1: status.conditions[type=Programmed]: expected {\"status\":\"True\",\"type\":\"Programmed\"}, found no element with type=Programmed\n"),
            msg.clone(),
        )?;
        let msg = step_failure(&info, "assert: {api-version: apps/v1, kind: Deployment, name: ratings-v1, match: {status: {conditions: [{type: Available, status: \"False\"}]}}}", 2).await?;
        ensure(
            msg.contains("\nratings-v1: status.conditions[type=Available].status: expected \"False\", found \"True\" (MinimumReplicasAvailable: Deployment has minimum availability.)\n"),
            msg.clone(),
        )
    })
}

/// `count` over a label selector: exactly the six Bookinfo Deployments, not five; a
/// cluster-scoped kind takes no namespace; a bad selector fails at once.
fn assert_count_over_a_selector() -> Result<(), Failed> {
    let (client, info) = node("standins")?;
    RT.block_on(async {
        standins_rolled_out(&client).await?;
        let six = "assert: {api-version: apps/v1, kind: Deployment, selector: \"app in (details,productpage,ratings,reviews)\", count: COUNT, match: {status: {conditions: [{type: Available, status: \"True\"}]}}}";
        let out = run_step(&info, &six.replace("COUNT", "6"), 30)
            .await
            .map_err(|e| e.to_string())?;
        ensure(
            out["objects"] == serde_json::json!(["details-v1", "productpage-v1", "ratings-v1", "reviews-v1", "reviews-v2", "reviews-v3"]),
            format!("{out:?}"),
        )?;
        let msg = step_failure(&info, &six.replace("COUNT", "5"), 2).await?;
        ensure(
            msg == "expected exactly 5 Deployment (selector app in (details,productpage,ratings,reviews)) in namespace default to match; 6 of 6 do: details-v1, productpage-v1, ratings-v1, reviews-v1, reviews-v2, reviews-v3",
            msg.clone(),
        )?;
        let out = run_step(&info, "assert: {api-version: apps/v1, kind: Deployment, selector: app=reviews, count: 3}", 30)
            .await
            .map_err(|e| e.to_string())?;
        ensure(out["matched"] == 3, format!("{out:?}"))?;
        run_step(&info, "assert: {api-version: v1, kind: Namespace, name: default, match: {status: {phase: Active}}}", 30)
            .await
            .map_err(|e| e.to_string())?;
        let e = run_step(&info, "assert: {api-version: v1, kind: Namespace, name: default, namespace: default}", 30)
            .await
            .err()
            .ok_or("a namespace for a cluster-scoped kind was accepted")?;
        ensure(
            e.fatal && e.message == "Namespace is cluster-scoped, but the step names namespace default",
            e.to_string(),
        )?;
        let t0 = Instant::now();
        let e = run_step(&info, "assert: {api-version: v1, kind: Pod, selector: \"app in (\"}", 30)
            .await
            .err()
            .ok_or("a bad selector was accepted")?;
        ensure(
            e.fatal && t0.elapsed() < Duration::from_secs(10) && e.message.starts_with("listing Pod (selector app in () in namespace default was refused"),
            format!("{e} after {:?}", t0.elapsed()),
        )
    })
}

/// `absent`: passes for what is not there (or does not match), fails for what is, and waits
/// for a delete made after it started.
fn absent_passes_fails_and_sees_a_delete() -> Result<(), Failed> {
    let (client, info) = node("standins")?;
    RT.block_on(async {
        standins_rolled_out(&client).await?;
        run_step(&info, "absent: {api-version: apps/v1, kind: Deployment, name: nope}", 10)
            .await
            .map_err(|e| e.to_string())?;
        run_step(&info, "absent: {api-version: apps/v1, kind: Deployment, selector: app=reviews, match: {spec: {replicas: 5}}}", 10)
            .await
            .map_err(|e| e.to_string())?;
        let msg = step_failure(&info, "absent: {api-version: apps/v1, kind: Deployment, name: productpage-v1}", 2).await?;
        ensure(
            msg == "expected no Deployment (name productpage-v1) in namespace default; still there: productpage-v1",
            msg.clone(),
        )?;
        let cms: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client.clone(), "default");
        let body = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "assert-probe"}});
        cms.patch("assert-probe", &kube::api::PatchParams::apply("istio-e2e-test"), &kube::api::Patch::Apply(&body))
            .await
            .map_err(|e| e.to_string())?;
        let deleter = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            cms.delete("assert-probe", &DeleteParams::default()).await.map(|_| ())
        });
        let t0 = Instant::now();
        run_step(&info, "absent: {api-version: v1, kind: ConfigMap, name: assert-probe}", 30)
            .await
            .map_err(|e| e.to_string())?;
        deleter.await.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?;
        ensure(
            t0.elapsed() >= Duration::from_secs(1),
            format!("passed after {:?}, before the delete", t0.elapsed()),
        )
    })
}

/// The watch sees a change made after the step started: a label put on a Deployment 1 s in.
fn assert_sees_a_change_made_after_it_started() -> Result<(), Failed> {
    let (client, info) = node("standins")?;
    RT.block_on(async {
        standins_rolled_out(&client).await?;
        let deps: Api<Deployment> = Api::namespaced(client.clone(), "default");
        let label = |v: serde_json::Value| {
            let deps = deps.clone();
            async move {
                let p = serde_json::json!({"metadata": {"labels": {"assert-probe": v}}});
                deps.patch("ratings-v1", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&p))
                    .await
                    .map(|_| ())
            }
        };
        label(serde_json::Value::Null).await.map_err(|e| e.to_string())?;
        let later = label("later".into());
        let labeller = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            later.await
        });
        let t0 = Instant::now();
        let out = run_step(&info, "assert: {api-version: apps/v1, kind: Deployment, selector: assert-probe=later, count: 1, match: {metadata: {name: ratings-v1}}}", 30)
            .await
            .map_err(|e| e.to_string())?;
        let took = t0.elapsed();
        labeller.await.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?;
        label(serde_json::Value::Null).await.map_err(|e| e.to_string())?;
        eprintln!("assert held {:.2}s after it started", took.as_secs_f64());
        ensure(
            took >= Duration::from_secs(1) && took < Duration::from_secs(10),
            format!("held after {took:?}"),
        )?;
        ensure(out["objects"] == serde_json::json!(["ratings-v1"]), format!("{out:?}"))
    })
}

/// A node start cancelled the moment Docker has created its container (a run's deadline or
/// Ctrl-C dropping the creation, as the runner's `guarded` does) leaves nothing once the
/// provider is torn down, even when testcontainers had not yet handed over a handle to remove
/// it by. Docker's own event stream says when the container exists (no polling).
fn a_start_cancelled_at_creation_leaves_nothing() -> Result<(), Failed> {
    let run_id = format!("labtest-cancelled-{}", std::process::id());
    let label = format!("{}={run_id}", harness::cluster::RUN_LABEL);
    RT.block_on(async {
        let mut events = tokio::process::Command::new("docker")
            .args(["events", "--filter", &format!("label={label}")])
            .args(["--filter", "event=create", "--format", "{{.ID}}"])
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("docker events: {e}"))?;
        let out = events.stdout.take().ok_or("docker events: no stdout")?;
        let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(out));
        let mut lab = Lab::for_version(None);
        let dir = tempfile::tempdir()?;
        let req = ClusterRequest {
            run_id: run_id.clone(),
            artifacts: dir.path().into(),
            ..Default::default()
        };
        let created = tokio::select! {
            r = lab.create(&req) => Err(format!("the start ended before it was cancelled: {:?}", r.map(|i| i.name))),
            line = lines.next_line() => line.map_err(|e| e.to_string())?.ok_or("docker events ended".to_string()),
        }?;
        let handed_over = lab.container_id().is_some();
        let said = lab.teardown(false).await.map_err(|e| e.to_string())?;
        let left = harness::cluster::docker_ids(&format!("label={label}"));
        eprintln!("cancelled once {created:.12} existed (handle handed over: {handed_over}); teardown: {said}");
        ensure(left.is_empty(), format!("left behind: {left:?} (teardown said {said:?})"))
    })
}

fn main() -> std::process::ExitCode {
    harness::install_crypto_provider();
    let mut args = Arguments::from_args();
    args.test_threads = Some(1);
    let trials = vec![
        mesh_trial(
            "lab::mesh::injection_follows_the_namespace_label",
            mesh::injection_follows_the_namespace_label,
        ),
        mesh_trial(
            "lab::mesh::a_request_is_counted_by_the_destination_sidecar",
            mesh::a_request_is_counted_by_the_destination_sidecar,
        ),
        mesh_trial(
            "lab::mesh::envoy_failing_readiness_is_named_by_the_wait",
            mesh::envoy_failing_readiness_is_named_by_the_wait,
        ),
        lab_trial(
            "lab::real_istio_samples_apply_and_image_pulls_fail_clearly",
            real_istio_samples_apply_and_image_pulls_fail_clearly,
        ),
        lab_trial(
            "lab::a_state_waiting_cannot_fix_fails_the_wait_at_once",
            a_state_waiting_cannot_fix_fails_the_wait_at_once,
        ),
        lab_trial(
            "lab::standins_ready_exec_port_forward_and_ingress",
            standins_ready_exec_port_forward_and_ingress,
        ),
        lab_trial(
            "lab::wait_survives_a_deleted_pod",
            wait_survives_a_deleted_pod,
        ),
        lab_trial(
            "lab::invalid_third_document_creates_nothing",
            invalid_third_document_creates_nothing,
        ),
        lab_trial("lab::reapply_is_a_no_op", reapply_is_a_no_op),
        lab_trial(
            "lab::wait_on_a_missing_namespace_says_so",
            wait_on_a_missing_namespace_says_so,
        ),
        lab_trial(
            "lab::upgrade_data_plane_restart_and_proxy_version",
            upgrade_data_plane_restart_and_proxy_version,
        ),
        lab_trial(
            "lab::wait_recovers_from_an_apiserver_restart",
            wait_recovers_from_an_apiserver_restart,
        ),
        lab_trial(
            "lab::compatibility_precheck_on_the_labs_version",
            compatibility_precheck_on_the_labs_version,
        ),
        lab_trial(
            "lab::assert::matches_and_a_mismatch_shows_the_diff",
            assert_matches_and_a_mismatch_shows_the_diff,
        ),
        lab_trial(
            "lab::assert::list_semantics_on_deployment_conditions",
            assert_list_semantics_on_deployment_conditions,
        ),
        lab_trial(
            "lab::assert::count_over_a_selector",
            assert_count_over_a_selector,
        ),
        lab_trial(
            "lab::assert::absent_passes_fails_and_sees_a_delete",
            absent_passes_fails_and_sees_a_delete,
        ),
        lab_trial(
            "lab::assert::sees_a_change_made_after_it_started",
            assert_sees_a_change_made_after_it_started,
        ),
        lab_trial_on(
            "lab::v1_34::native_sidecar_ready_and_unready",
            Some("v1.34"),
            native_sidecar_ready_and_unready_on_v1_34,
        ),
        lab_trial(
            "lab::a_start_cancelled_at_creation_leaves_nothing",
            a_start_cancelled_at_creation_leaves_nothing,
        ),
        lab_trial(
            "lab::existing::cluster_is_left_as_found",
            existing_cluster_is_left_as_found,
        ),
        lab_trial(
            "lab::existing::keep_on_failure_keeps_everything",
            existing_cluster_keep_on_failure_keeps_everything,
        ),
        lab_trial(
            "lab::existing::deletion_deadline_names_finalizers",
            existing_cluster_deletion_deadline_names_finalizers,
        ),
    ];
    let conclusion = libtest_mimic::run(&args, trials);
    let nodes: Vec<_> = NODES.lock().unwrap().drain(..).collect();
    for (_, mut lab, _) in nodes {
        if let Err(e) = RT.block_on(lab.teardown(false)) {
            eprintln!("teardown: {e}");
        }
    }
    conclusion.exit_code()
}
