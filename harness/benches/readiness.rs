//! Readiness detection: how long after the last pod of a Deployment becomes Ready does the
//! watch-based wait return, compared with what the walkthrough did by hand (`kubectl get pods`
//! every 2 s)? Needs the lab (fixtures/lab/build-image); prints numbers, asserts nothing.
//!
//! `cargo bench -p istio-e2e-harness --bench readiness` (ROUNDS=5 by default, env
//! `READINESS_ROUNDS`).
//!
//! The reference moment is when an independent watch on the pods first receives the event that
//! shows the last pod Ready (millisecond precision on this host); the Ready condition's
//! `lastTransitionTime` has one-second precision, so it is printed for reference only.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;
use harness::cluster::{ClusterRequest, Provider, lab::Lab};
use harness::kubeops::{apply, wait};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams, ResourceExt};
use kube::runtime::{WatchStreamExt, watcher};

const MANIFEST: &str = "apiVersion: apps/v1
kind: Deployment
metadata: {name: ready-bench, namespace: default}
spec:
  replicas: 0
  selector: {matchLabels: {app: ready-bench}}
  template:
    metadata: {labels: {app: ready-bench}}
    spec:
      terminationGracePeriodSeconds: 0
      containers:
      - name: c
        image: istio-e2e.local/busybox:1
        imagePullPolicy: Never
        command: [sh, -c, \"trap 'exit 0' TERM; while true; do sleep 1; done\"]
        readinessProbe: {exec: {command: [\"true\"]}, periodSeconds: 1}
";

fn is_ready(p: &Pod) -> bool {
    harness::kubeops::exec::is_ready(p)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    if v.is_empty() {
        f64::NAN
    } else {
        v[v.len() / 2]
    }
}

/// Polls `kubectl get pods` every 2 s until `n` pods are Ready; returns when it saw them.
fn kubectl_poll(kubeconfig: &str, n: usize, limit: Duration) -> Option<SystemTime> {
    let start = Instant::now();
    while start.elapsed() < limit {
        let out = Command::new("kubectl")
            .args([
                "--kubeconfig",
                kubeconfig,
                "get",
                "pods",
                "-l",
                "app=ready-bench",
                "-o",
                "json",
            ])
            .output()
            .ok()?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let ready = v["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter(|p| {
                        p["metadata"]["deletionTimestamp"].is_null()
                            && p["status"]["conditions"].as_array().is_some_and(|cs| {
                                cs.iter()
                                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
                            })
                    })
                    .count()
            })
            .unwrap_or(0);
        if ready >= n {
            return Some(SystemTime::now());
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    None
}

fn secs_between(a: SystemTime, b: SystemTime) -> f64 {
    match b.duration_since(a) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

fn main() {
    harness::install_crypto_provider();
    if let Err(why) = Lab::default().check() {
        eprintln!("readiness bench NOT RUN: the lab cannot run here: {why}");
        std::process::exit(2);
    }
    let rounds: usize = std::env::var("READINESS_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut lab = Lab::default();
    let dir = tempfile::tempdir().unwrap();
    let req = ClusterRequest {
        run_id: format!("readiness-{}", std::process::id()),
        artifacts: dir.path().into(),
        ..Default::default()
    };
    let info = rt.block_on(lab.create(&req)).expect("lab node");
    let kubeconfig = info.kubeconfig.display().to_string();
    let client = rt
        .block_on(harness::kubeops::client_for(&info.kubeconfig, None))
        .unwrap();
    let docs = apply::parse_documents(std::path::Path::new("ready-bench.yaml"), MANIFEST).unwrap();
    rt.block_on(apply::apply(
        &client,
        &docs,
        "default",
        Instant::now() + Duration::from_secs(60),
    ))
    .unwrap();
    let deps: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    let (mut watch_delays, mut poll_delays, mut ltt_watch) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=rounds {
        // Reference: an independent watch recording when it first sees each pod Ready.
        let seen: std::sync::Arc<std::sync::Mutex<BTreeMap<String, SystemTime>>> =
            Default::default();
        let seen2 = seen.clone();
        let pods2 = pods.clone();
        let reference = rt.spawn(async move {
            let mut s = std::pin::pin!(
                watcher(pods2, watcher::Config::default().labels("app=ready-bench"))
                    .default_backoff()
                    .applied_objects()
            );
            while let Some(Ok(p)) = s.next().await {
                if is_ready(&p) {
                    seen2
                        .lock()
                        .unwrap()
                        .entry(p.name_any())
                        .or_insert_with(SystemTime::now);
                }
            }
        });
        let scale = |n: i32| {
            let body = serde_json::json!({"spec": {"replicas": n}});
            rt.block_on(deps.patch("ready-bench", &PatchParams::default(), &Patch::Merge(&body)))
                .unwrap();
        };
        let kc = kubeconfig.clone();
        let poller = std::thread::spawn(move || kubectl_poll(&kc, 6, Duration::from_secs(120)));
        scale(6);
        let want = wait::PodsReady {
            namespace: "default".into(),
            selector: Some("app=ready-bench".into()),
            containers: Some(1),
            min_pods: 6,
            ..Default::default()
        };
        let ready_pods = rt
            .block_on(wait::pods_ready(
                &client,
                &want,
                Instant::now() + Duration::from_secs(120),
            ))
            .expect("pods ready");
        let t_wait = SystemTime::now();
        let t_poll = poller.join().unwrap().expect("kubectl saw the pods");
        reference.abort();
        let names: Vec<String> = ready_pods.iter().map(|p| p.name_any()).collect();
        let t_ref = names
            .iter()
            .filter_map(|n| seen.lock().unwrap().get(n).copied())
            .max()
            .expect("reference saw the pods");
        let ltt = ready_pods
            .iter()
            .filter_map(|p| {
                p.status
                    .as_ref()?
                    .conditions
                    .as_ref()?
                    .iter()
                    .find(|c| c.type_ == "Ready")?
                    .last_transition_time
                    .clone()
            })
            .map(|t| SystemTime::UNIX_EPOCH + Duration::from_secs(t.0.as_second() as u64))
            .max()
            .unwrap();
        let (dw, dp) = (secs_between(t_ref, t_wait), secs_between(t_ref, t_poll));
        eprintln!(
            "round {round}: wait returned {:.0} ms after the last Ready event; kubectl polling {:.0} ms; (lastTransitionTime, 1 s precision: wait +{:.2} s)",
            dw * 1000.0,
            dp * 1000.0,
            secs_between(ltt, t_wait)
        );
        watch_delays.push(dw);
        poll_delays.push(dp);
        ltt_watch.push(secs_between(ltt, t_wait));
        scale(0);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(60) {
            let n = rt
                .block_on(pods.list(&kube::api::ListParams::default().labels("app=ready-bench")))
                .unwrap()
                .items
                .len();
            if n == 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
    println!("| detector | median delay after the last pod's Ready event | rounds |");
    println!("|---|---|---|");
    println!(
        "| istio-e2e wait (watch) | {:.0} ms | {rounds} |",
        median(watch_delays) * 1000.0
    );
    println!(
        "| `kubectl get pods` every 2 s | {:.0} ms | {rounds} |",
        median(poll_delays) * 1000.0
    );
    println!(
        "(against lastTransitionTime, second precision: watch median {:.2} s)",
        median(ltt_watch)
    );
    rt.block_on(lab.teardown(false)).unwrap();
}
