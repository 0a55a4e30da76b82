//! The mesh on the lab as Istio makes it (issue #16): the release's own `bookinfo.yaml`
//! applied unchanged after the stand-in istioctl installed the demo profile, injected by the
//! stand-in istiod's webhook, intercepted by the iptables rules its init container wrote, and
//! the checks that prove those mechanics are real (each would pass against a fake that only
//! looks injected): an unlabelled namespace gets 1/1 pods and the 2/2 wait names the missing
//! sidecar; a request is counted by the destination sidecar's inbound listener; Envoy failing
//! its health check makes the pod unready and the wait names `istio-proxy`.
//!
//! Runs on the node `ISTIO_E2E_K8S_VERSION` names with the release of its era (1.12.1 on v1.20,
//! 1.30.3 on v1.34: native sidecars), from `ISTIO_E2E_ISTIO_DIR`, and needs the stand-ins
//! (`fixtures/standins/build-images`): without them the trial says so and is ignored, or fails
//! with `ISTIO_E2E_REQUIRE=1`.

use super::*;
use harness::cluster::standins::{self, Release};

/// The Istio release a node of `minor` runs in these trials.
fn release_for(node: LabNode) -> &'static str {
    if node.minor == "v1.20" {
        "1.12.1"
    } else {
        "1.30.3"
    }
}

/// Why the mesh trials cannot run here, if they cannot.
pub fn cannot_run() -> Option<String> {
    standins::find().is_none().then(|| {
        format!(
            "the stand-in images are not built (run {})",
            standins::BUILD_COMMAND
        )
    })
}

/// A node with the stand-in images tagged for `release` and the demo profile installed by
/// the stand-in istioctl (as the istio-install step runs it on the lab).
fn mesh_node() -> Result<(kube::Client, ClusterInfo, Release), Failed> {
    let node = this_node();
    let version = release_for(node);
    let Some(dir) = release::istio_release_blocking(version, "lab::mesh") else {
        return Err(format!("no Istio {version} release (set ISTIO_E2E_ISTIO_DIR)").into());
    };
    let rel = Release {
        dir,
        version: version.into(),
    };
    let (client, info) = node_with_istio("mesh", node, Some(rel.clone()))?;
    let istioctl =
        standins::istioctl_for(&rel, standins::find().as_ref()).ok_or("no stand-in istioctl")?;
    let args = harness::istio::install_args("demo", &[], None);
    let log = info.kubeconfig.with_file_name("istioctl.log");
    RT.block_on(harness::istio::run_checked(
        &istioctl,
        "install",
        &args,
        &info,
        &log,
        deadline(300),
    ))
    .map_err(|e| e.to_string())?;
    Ok((client, info, rel))
}

/// Applies the release's own Bookinfo to `ns` (created, labelled for injection or not).
async fn bookinfo_in(
    client: &kube::Client,
    rel: &Release,
    ns: &str,
    injected: bool,
) -> Result<(), Failed> {
    let api: Api<Namespace> = Api::all(client.clone());
    let labels = if injected {
        serde_json::json!({"istio-injection": "enabled"})
    } else {
        serde_json::json!({})
    };
    let body = serde_json::json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": ns, "labels": labels}});
    api.patch(
        ns,
        &kube::api::PatchParams::apply("istio-e2e-test"),
        &kube::api::Patch::Apply(&body),
    )
    .await
    .map_err(|e| e.to_string())?;
    let file = rel.dir.join("samples/bookinfo/platform/kube/bookinfo.yaml");
    let docs = apply::read_documents(&[file]).map_err(|e| e.to_string())?;
    apply::apply(client, &docs, ns, deadline(60))
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

fn two_of_two(ns: &str, selector: Option<&str>) -> wait::PodsReady {
    wait::PodsReady {
        namespace: ns.into(),
        selector: selector.map(String::from),
        containers: Some(2),
        min_pods: if selector.is_some() { 1 } else { 6 },
        sidecar: Some("istio-proxy".into()),
        ..Default::default()
    }
}

/// The release's Bookinfo in the labelled namespace `mesh`, every pod 2/2.
async fn injected_bookinfo(client: &kube::Client, rel: &Release) -> Result<Vec<Pod>, Failed> {
    bookinfo_in(client, rel, "mesh", true).await?;
    wait::pods_ready(client, &two_of_two("mesh", None), deadline(180))
        .await
        .map_err(|e| e.to_string().into())
}

/// Injected pods are 2/2 with istio-init before the proxy (a native sidecar on >= 1.33 with a
/// release >= 1.27); pods of an unlabelled namespace are 1/1 and the wait names the sidecar.
pub fn injection_follows_the_namespace_label() -> Result<(), Failed> {
    let (client, _, rel) = mesh_node()?;
    RT.block_on(async {
        let pods = injected_bookinfo(&client, &rel).await?;
        let spec = pods[0].spec.as_ref().ok_or("no spec")?;
        let inits: Vec<&str> = spec
            .init_containers
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        let native = spec
            .init_containers
            .iter()
            .flatten()
            .any(wait::is_native_sidecar);
        let want_native = rel.version == "1.30.3";
        ensure(
            inits.first() == Some(&"istio-init") && native == want_native,
            format!("init containers {inits:?}, native sidecar {native} (want {want_native})"),
        )?;

        bookinfo_in(&client, &rel, "plain", false).await?;
        let e = wait::pods_ready(&client, &two_of_two("plain", None), deadline(30))
            .await
            .err()
            .ok_or("pods of an unlabelled namespace met the 2/2 wait")?
            .to_string();
        eprintln!("wait failed as expected: {e}");
        ensure(
            e.contains("no istio-proxy sidecar") && e.contains("is sidecar injection on"),
            format!("message: {e}"),
        )
    })
}

/// The count of inbound requests productpage's sidecar reports (`istio_requests_total` with
/// reporter destination on its agent's 15020), read with `pilot-agent request` in the proxy.
async fn inbound_count(client: &kube::Client, pod: &str) -> Result<u64, Failed> {
    let cmd: Vec<String> = [
        "pilot-agent",
        "request",
        "--debug-port=15020",
        "GET",
        "stats/prometheus",
    ]
    .map(String::from)
    .to_vec();
    let out = exec::exec(client, "mesh", pod, Some("istio-proxy"), &cmd)
        .await
        .map_err(|e| e.to_string())?;
    Ok(out
        .stdout
        .lines()
        .filter(|l| {
            l.starts_with("istio_requests_total{") && l.contains("reporter=\"destination\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64)
}

fn pod_of(pods: &[Pod], app: &str) -> Result<String, Failed> {
    pods.iter()
        .find(|p| p.labels().get("app").map(String::as_str) == Some(app))
        .map(|p| p.name_any())
        .ok_or_else(|| format!("no {app} pod").into())
}

/// One request from ratings to productpage is counted by productpage's inbound listener
/// (the iptables redirect to 15006 works), and the page is Bookinfo's.
pub fn a_request_is_counted_by_the_destination_sidecar() -> Result<(), Failed> {
    let (client, _, rel) = mesh_node()?;
    RT.block_on(async {
        let pods = injected_bookinfo(&client, &rel).await?;
        let (ratings, productpage) = (pod_of(&pods, "ratings")?, pod_of(&pods, "productpage")?);
        let before = inbound_count(&client, &productpage).await?;
        let curl: Vec<String> = ["curl", "-sS", "productpage:9080/productpage"]
            .map(String::from)
            .to_vec();
        let page = exec::exec(&client, "mesh", &ratings, Some("ratings"), &curl)
            .await
            .map_err(|e| e.to_string())?;
        ensure(
            page.stdout.contains("<title>Simple Bookstore App</title>"),
            format!(
                "not the page: {}",
                &page.stdout[..page.stdout.len().min(300)]
            ),
        )?;
        // The agent counts from Envoy's access log, which Envoy flushes about every second:
        // polled (there is nothing to watch) for up to 20 s.
        let until = deadline(20);
        let mut after = inbound_count(&client, &productpage).await?;
        while after <= before && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(500)).await;
            after = inbound_count(&client, &productpage).await?;
        }
        eprintln!("productpage inbound requests: {before} -> {after}");
        ensure(
            after > before,
            format!("inbound count {before} -> {after} in 20 s: not intercepted?"),
        )
    })
}

/// Envoy failing its health check (`pilot-agent request POST healthcheck/fail`, Envoy's admin)
/// makes the agent's readiness fail, the kubelet marks istio-proxy unready, and the 2/2 wait
/// names it; `healthcheck/ok` makes the pod ready again.
pub fn envoy_failing_readiness_is_named_by_the_wait() -> Result<(), Failed> {
    let (client, _, rel) = mesh_node()?;
    RT.block_on(async {
        let pods = injected_bookinfo(&client, &rel).await?;
        let details = pod_of(&pods, "details")?;
        let admin = |what: &str| -> Vec<String> {
            ["pilot-agent", "request", "POST", what]
                .map(String::from)
                .to_vec()
        };
        exec::exec(
            &client,
            "mesh",
            &details,
            Some("istio-proxy"),
            &admin("healthcheck/fail"),
        )
        .await
        .map_err(|e| e.to_string())?;
        let api: Api<Pod> = Api::namespaced(client.clone(), "mesh");
        let unready = |p: Option<&Pod>| p.is_some_and(|p| wait::container_readiness(p).ready < 2);
        tokio::time::timeout(
            Duration::from_secs(150),
            kube::runtime::wait::await_condition(api, &details, unready),
        )
        .await
        .map_err(|_| "istio-proxy stayed ready 150 s after Envoy failed its health check")?
        .map_err(|e| e.to_string())?;
        let e = wait::pods_ready(
            &client,
            &two_of_two("mesh", Some("app=details")),
            deadline(10),
        )
        .await
        .err()
        .ok_or("the wait passed with istio-proxy unready")?
        .to_string();
        eprintln!("wait failed as expected: {e}");
        ensure(
            e.contains("istio-proxy") && e.contains("not ready"),
            format!("message: {e}"),
        )?;
        exec::exec(
            &client,
            "mesh",
            &details,
            Some("istio-proxy"),
            &admin("healthcheck/ok"),
        )
        .await
        .map_err(|e| e.to_string())?;
        wait::pods_ready(
            &client,
            &two_of_two("mesh", Some("app=details")),
            deadline(150),
        )
        .await
        .map_err(|e| format!("not ready again after healthcheck/ok: {e}"))?;
        Ok(())
    })
}
