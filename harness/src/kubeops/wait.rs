//! Watch-based waits: pods ready (every container, an expected container count), deployment
//! rollouts with `kubectl rollout status` semantics, and any condition. No fixed sleeps: each
//! wait re-evaluates on every watch event, and the watcher re-lists and resumes when the API
//! server drops the watch.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Event, Namespace, Pod};
use kube::api::{Api, ListParams, LogParams, ResourceExt};
use kube::runtime::{WatchStreamExt, watcher};

use super::KubeError;
pub use super::podstate::DEFAULT_IMAGE_PULL_GRACE;
use super::podstate::{PROGRESS_EVERY, PodsJudge, Throttle, Verdict, blocker};

/// How often a wait re-judges without events: image-pull graces and the ages in the
/// progress line move on while the watch is quiet.
const TICK: Duration = Duration::from_secs(5);

/// What "pods ready" means for one wait.
#[derive(Debug, Clone)]
pub struct PodsReady {
    /// Namespace.
    pub namespace: String,
    /// Label selector (`app=ratings`); all pods of the namespace when empty.
    pub selector: Option<String>,
    /// Every pod must have exactly this many containers (2 with a sidecar).
    pub containers: Option<usize>,
    /// At least this many pods must exist (1 by default).
    pub min_pods: usize,
    /// How long an image pull may keep failing (`ErrImagePull`, `ImagePullBackOff`) before
    /// the wait fails ([`DEFAULT_IMAGE_PULL_GRACE`] by default).
    pub image_pull_grace: Duration,
    /// The sidecar every pod must carry beside its app, e.g. `istio-proxy`, as a regular
    /// container or a native sidecar (see [`super::podstate::sidecar_problem`]).
    pub sidecar: Option<String>,
}

impl Default for PodsReady {
    fn default() -> Self {
        PodsReady {
            namespace: String::new(),
            selector: None,
            containers: None,
            min_pods: 1,
            image_pull_grace: DEFAULT_IMAGE_PULL_GRACE,
            sidecar: None,
        }
    }
}

/// A pod's containers counted the way kubectl's READY column counts them since Kubernetes
/// 1.29: the regular containers plus the restartable init containers (native sidecars,
/// `restartPolicy: Always`, as Istio >= 1.27 injects `istio-proxy` on 1.33+ nodes). A
/// restartable init container is ready when it has started and its status says ready; other
/// init containers run to completion before the pod runs and are not counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerReadiness {
    /// How many of the counted containers are ready.
    pub ready: usize,
    /// How many containers are counted (the `2` of `2/2` for an app with a sidecar).
    pub total: usize,
    /// The names of the counted containers: regular ones first, then native sidecars.
    pub names: Vec<String>,
}

/// True for an init container the kubelet keeps running beside the app (a native sidecar).
pub fn is_native_sidecar(c: &k8s_openapi::api::core::v1::Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

/// The names of the pod's native sidecars (init containers with `restartPolicy: Always`).
pub fn native_sidecar_names(pod: &Pod) -> Vec<&str> {
    pod.spec
        .iter()
        .flat_map(|s| s.init_containers.iter().flatten())
        .filter(|c| is_native_sidecar(c))
        .map(|c| c.name.as_str())
        .collect()
}

/// The statuses of the containers [`container_readiness`] counts: regular containers and
/// restartable init containers (native sidecars).
pub fn counted_statuses(pod: &Pod) -> Vec<&k8s_openapi::api::core::v1::ContainerStatus> {
    let sidecars = native_sidecar_names(pod);
    let status = pod.status.as_ref();
    status
        .into_iter()
        .flat_map(|s| s.container_statuses.iter().flatten())
        .chain(
            status
                .into_iter()
                .flat_map(|s| s.init_container_statuses.iter().flatten())
                .filter(|c| sidecars.contains(&c.name.as_str())),
        )
        .collect()
}

/// Counts a pod's ready containers as kubectl's READY column does (see [`ContainerReadiness`]).
pub fn container_readiness(pod: &Pod) -> ContainerReadiness {
    let spec = pod.spec.as_ref();
    let names: Vec<String> = spec
        .into_iter()
        .flat_map(|s| s.containers.iter())
        .chain(
            spec.into_iter()
                .flat_map(|s| s.init_containers.iter().flatten())
                .filter(|c| is_native_sidecar(c)),
        )
        .map(|c| c.name.clone())
        .collect();
    let ready = counted_statuses(pod)
        .iter()
        .filter(|c| c.ready && c.started != Some(false))
        .count();
    ContainerReadiness {
        ready,
        total: names.len(),
        names,
    }
}

/// Why one pod is not ready, in words a person would use. `want_containers` counts as
/// [`container_readiness`] does: `2` is an app with its sidecar, native or not.
pub fn pod_not_ready_reason(pod: &Pod, want_containers: Option<usize>) -> Option<String> {
    let status = pod.status.as_ref();
    let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("Unknown");
    let statuses = counted_statuses(pod);
    let ContainerReadiness { ready, total, .. } = container_readiness(pod);
    let no_status = statuses.is_empty();
    let mut why = Vec::new();
    if let Some(w) = want_containers
        && total != w
    {
        why.push(format!(
            "has {total} containers, expected {w} (is sidecar injection on?)"
        ));
    }
    for c in statuses {
        if let Some(wt) = c.state.as_ref().and_then(|s| s.waiting.as_ref()) {
            let reason = wt.reason.clone().unwrap_or_default();
            let msg = wt.message.clone().unwrap_or_default();
            if reason.contains("ImagePull")
                || reason == "ErrImagePull"
                || reason == "InvalidImageName"
            {
                why.push(format!(
                    "container {} {reason}: image {} ({})",
                    c.name,
                    c.image,
                    first_line(&msg)
                ));
            } else if !reason.is_empty() {
                why.push(
                    format!(
                        "container {} waiting: {reason} {}",
                        c.name,
                        first_line(&msg)
                    )
                    .trim_end()
                    .to_string(),
                );
            }
        } else if let Some(t) = c.state.as_ref().and_then(|s| s.terminated.as_ref()) {
            why.push(format!(
                "container {} terminated: {} (exit code {})",
                c.name,
                t.reason.clone().unwrap_or_default(),
                t.exit_code
            ));
        } else if !c.ready {
            why.push(format!(
                "container {} running but not ready (readiness probe failing?)",
                c.name
            ));
        }
    }
    if phase == "Pending" && no_status {
        let cond = status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| {
                cs.iter()
                    .find(|c| c.type_ == "PodScheduled" && c.status == "False")
            })
            .map(|c| {
                format!(
                    "{}: {}",
                    c.reason.clone().unwrap_or_default(),
                    c.message.clone().unwrap_or_default()
                )
            });
        why.push(format!(
            "Pending{}",
            cond.map(|c| format!(" ({c})")).unwrap_or_default()
        ));
    }
    let all_ready = phase == "Running" && total > 0 && ready == total;
    if all_ready && why.is_empty() {
        return None;
    }
    if why.is_empty() {
        why.push(format!("phase {phase}"));
    }
    Some(format!("{ready}/{total} ready, {}", why.join("; ")))
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

/// Waits until the selected pods are all ready; on timeout the error lists each pod that is
/// not and why (image pull errors with the image, crash loops with log lines, scheduling).
/// Fails at once on a state waiting does not fix, and on an image pull failing longer than
/// the grace (see [`super::podstate`]).
pub async fn pods_ready(
    client: &kube::Client,
    want: &PodsReady,
    deadline: Instant,
) -> Result<Vec<Pod>, KubeError> {
    pods_ready_reporting(client, want, deadline, &|_: &str| {}).await
}

/// As [`pods_ready`], and tells `progress` what it still waits on (`4/6 pods ready; waiting
/// on reviews-v2-x (ContainerCreating 12s)`), as events arrive but at most every 15 s.
pub async fn pods_ready_reporting(
    client: &kube::Client,
    want: &PodsReady,
    deadline: Instant,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<Vec<Pod>, KubeError> {
    ensure_namespace(client, &want.namespace).await?;
    let api: Api<Pod> = Api::namespaced(client.clone(), &want.namespace);
    let mut cfg = watcher::Config::default();
    if let Some(sel) = &want.selector {
        cfg = cfg.labels(sel);
    }
    let stream = watcher(api.clone(), cfg).default_backoff();
    let mut stream = std::pin::pin!(stream);
    let mut store = Store::default();
    let mut judge = PodsJudge::new(want);
    let mut throttle = Throttle::new(PROGRESS_EVERY);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match tokio::time::timeout(left.min(TICK), stream.try_next()).await {
            Err(_) => {} // quiet: judge again, time has moved on
            Ok(Ok(Some(ev))) => store.apply(ev),
            Ok(Ok(None)) => break,
            Ok(Err(e)) => {
                tracing::debug!("pod watch error (the watcher re-lists and resumes): {e}");
                continue;
            }
        }
        if !store.listed {
            continue;
        }
        let now = Instant::now();
        match judge.judge(store.objects.values(), now) {
            Verdict::Ready => return Ok(store.live()),
            Verdict::Failed(e) => return Err(e),
            Verdict::Waiting(line) if throttle.due(now) => progress(&line),
            Verdict::Waiting(_) => {}
        }
    }
    // Timed out: explain with a fresh list, events and logs.
    let pods = api
        .list(&list_params(want.selector.as_deref()))
        .await
        .map(|l| l.items)
        .unwrap_or_else(|_| store.objects.into_values().collect());
    Err(KubeError::PodsNotReady(
        explain_pods(client, &want.namespace, &pods, want).await,
    ))
}

/// The objects a watch has seen, by name, once the first list is complete.
struct Store<K> {
    objects: BTreeMap<String, K>,
    init: BTreeMap<String, K>,
    listed: bool,
}

impl<K> Default for Store<K> {
    fn default() -> Self {
        Store {
            objects: BTreeMap::new(),
            init: BTreeMap::new(),
            listed: false,
        }
    }
}

impl<K: kube::Resource> Store<K> {
    /// Takes in one watch event (a re-list replaces everything at its end).
    fn apply(&mut self, ev: watcher::Event<K>) {
        match ev {
            watcher::Event::Init => self.init.clear(),
            watcher::Event::InitApply(o) => {
                self.init.insert(o.name_any(), o);
            }
            watcher::Event::InitDone => {
                self.objects = std::mem::take(&mut self.init);
                self.listed = true;
            }
            watcher::Event::Apply(o) => {
                self.objects.insert(o.name_any(), o);
            }
            watcher::Event::Delete(o) => {
                self.objects.remove(&o.name_any());
            }
        }
    }

    /// The objects not being deleted.
    fn live(self) -> Vec<K> {
        self.objects
            .into_values()
            .filter(|o| o.meta().deletion_timestamp.is_none())
            .collect()
    }
}

fn list_params(selector: Option<&str>) -> ListParams {
    match selector {
        Some(s) => ListParams::default().labels(s),
        None => ListParams::default(),
    }
}

async fn explain_pods(client: &kube::Client, ns: &str, pods: &[Pod], want: &PodsReady) -> String {
    let sel = want
        .selector
        .as_deref()
        .map(|s| format!(" matching {s}"))
        .unwrap_or_default();
    if pods.is_empty() {
        return format!(
            "no pods{sel} in namespace {ns} (expected at least {})",
            want.min_pods.max(1)
        );
    }
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let mut lines = Vec::new();
    for p in pods {
        let Some(why) = blocker(p, want) else {
            continue;
        };
        let mut line = format!("pod {}: {why}", p.name_any());
        let crashing: Vec<String> = counted_statuses(p)
            .into_iter()
            .filter(|c| {
                c.state
                    .as_ref()
                    .and_then(|s| s.waiting.as_ref())
                    .and_then(|w| w.reason.as_deref())
                    == Some("CrashLoopBackOff")
            })
            .map(|c| c.name.clone())
            .collect();
        for c in crashing {
            let lp = LogParams {
                container: Some(c.clone()),
                previous: true,
                tail_lines: Some(5),
                ..Default::default()
            };
            if let Ok(log) = api.logs(&p.name_any(), &lp).await {
                line.push_str(&format!(
                    "; last log lines of {c}: {}",
                    log.trim().replace('\n', " | ")
                ));
            }
        }
        if p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Pending")
            && let Some(ev) = last_event(client, ns, &p.name_any()).await
        {
            line.push_str(&format!("; last event: {ev}"));
        }
        lines.push(line);
    }
    if lines.is_empty() {
        return format!(
            "only {} pods{sel} in namespace {ns}, expected at least {}",
            pods.len(),
            want.min_pods
        );
    }
    format!(
        "{} of {} pods{sel} in namespace {ns} not ready: {}",
        lines.len(),
        pods.len(),
        lines.join(". ")
    )
}

/// The newest event about an object, as `Reason: message`.
pub async fn last_event(client: &kube::Client, ns: &str, name: &str) -> Option<String> {
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    let lp = ListParams::default().fields(&format!("involvedObject.name={name}"));
    let mut evs = api.list(&lp).await.ok()?.items;
    evs.sort_by_key(|e| e.last_timestamp.clone().map(|t| t.0));
    evs.last().map(|e| {
        format!(
            "{}: {}",
            e.reason.clone().unwrap_or_default(),
            e.message.clone().unwrap_or_default()
        )
    })
}

/// Fails clearly when a namespace does not exist.
pub async fn ensure_namespace(client: &kube::Client, ns: &str) -> Result<(), KubeError> {
    let api: Api<Namespace> = Api::all(client.clone());
    match api.get_opt(ns).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(KubeError::NoNamespace(ns.to_string())),
        Err(e) => Err(KubeError::call(format!("looking up namespace {ns}"), e)),
    }
}

/// Why a deployment's rollout is not complete (`kubectl rollout status` semantics), or None.
pub fn rollout_pending(d: &Deployment) -> Option<String> {
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let generation = d.metadata.generation.unwrap_or(0);
    let st = d.status.clone().unwrap_or_default();
    if st.observed_generation.unwrap_or(0) < generation {
        return Some("waiting for the deployment spec update to be observed".into());
    }
    if let Some(c) = st
        .conditions
        .as_ref()
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Progressing"))
        && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
    {
        return Some(format!(
            "exceeded its progress deadline: {}",
            c.message.clone().unwrap_or_default()
        ));
    }
    let updated = st.updated_replicas.unwrap_or(0);
    let replicas = st.replicas.unwrap_or(0);
    let available = st.available_replicas.unwrap_or(0);
    if updated < want {
        return Some(format!("{updated} of {want} updated replicas"));
    }
    if replicas > updated {
        return Some(format!(
            "{} old replicas pending termination",
            replicas - updated
        ));
    }
    if available < updated {
        return Some(format!(
            "{available} of {updated} updated replicas available"
        ));
    }
    None
}

/// Waits for deployments (by name, or every one in the namespace) to finish rolling out.
pub async fn deployments_rolled_out(
    client: &kube::Client,
    ns: &str,
    names: &[String],
    deadline: Instant,
) -> Result<Vec<String>, KubeError> {
    ensure_namespace(client, ns).await?;
    let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let pending = |store: &BTreeMap<String, Deployment>| -> Vec<String> {
        let mut out = Vec::new();
        if names.is_empty() {
            if store.is_empty() {
                out.push(format!("no deployments in namespace {ns}"));
            }
            for (n, d) in store {
                if let Some(w) = rollout_pending(d) {
                    out.push(format!("deployment {n}: {w}"));
                }
            }
        } else {
            for n in names {
                match store.get(n) {
                    None => out.push(format!("deployment {n} does not exist")),
                    Some(d) => {
                        if let Some(w) = rollout_pending(d) {
                            out.push(format!("deployment {n}: {w}"));
                        }
                    }
                }
            }
        }
        out
    };
    let p = match watch_until(api, deadline, pending).await {
        Ok(store) => {
            return Ok(store
                .keys()
                .filter(|k| names.is_empty() || names.contains(k))
                .cloned()
                .collect());
        }
        Err(p) => p,
    };
    let mut msg = format!("rollout not complete in namespace {ns}: {}", p.join("; "));
    // Add why the pods are not ready, which is what a person looks at next.
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    if let Ok(list) = pods.list(&ListParams::default()).await {
        let why: Vec<String> = list
            .items
            .iter()
            .filter_map(|p| {
                pod_not_ready_reason(p, None).map(|w| format!("pod {}: {w}", p.name_any()))
            })
            .collect();
        if !why.is_empty() {
            msg.push_str(&format!(". {}", why.join(". ")));
        }
    }
    Err(KubeError::RolloutIncomplete(msg))
}

/// Watches every object of `api` until `pending` (what is still missing, given the objects by
/// name) is empty, and returns them; at the deadline, returns what was still pending. The
/// watcher re-lists and resumes when the API server drops the watch.
pub async fn watch_until<K>(
    api: Api<K>,
    deadline: Instant,
    pending: impl Fn(&BTreeMap<String, K>) -> Vec<String>,
) -> Result<BTreeMap<String, K>, Vec<String>>
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
{
    let stream = watcher(api, watcher::Config::default()).default_backoff();
    let mut stream = std::pin::pin!(stream);
    let mut store = Store::default();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.next()).await {
            Err(_) | Ok(None) => break,
            Ok(Some(Err(e))) => tracing::debug!("watch error (re-listing): {e}"),
            Ok(Some(Ok(ev))) => store.apply(ev),
        }
        if store.listed && pending(&store.objects).is_empty() {
            return Ok(store.objects);
        }
    }
    Err(pending(&store.objects))
}

/// Why a pod's `istio-proxy` sidecar is not at `version` (its image tag, e.g.
/// `proxyv2:1.30.3` or `proxyv2:1.30.3-distroless`), or None; pods without a sidecar and pods
/// on their way out do not count.
pub fn proxy_version_pending(pod: &Pod, version: &str) -> Option<String> {
    if pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let spec = pod.spec.as_ref()?;
    let proxy = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == "istio-proxy")?;
    let image = proxy.image.as_deref().unwrap_or("");
    let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or("");
    let tag = tag.split('@').next().unwrap_or(tag);
    if tag != version && !tag.starts_with(&format!("{version}-")) {
        return Some(format!("its istio-proxy runs {image}, not {version}"));
    }
    pod_not_ready_reason(pod, None)
}

/// Waits until every pod with an Istio sidecar in `ns` runs the proxy of `version` and is
/// ready: the data plane has moved to the new control plane.
pub async fn proxies_at_version(
    client: &kube::Client,
    ns: &str,
    version: &str,
    deadline: Instant,
) -> Result<usize, KubeError> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let pending = |store: &BTreeMap<String, Pod>| -> Vec<String> {
        store
            .iter()
            .filter_map(|(n, p)| proxy_version_pending(p, version).map(|w| format!("pod {n}: {w}")))
            .collect()
    };
    match watch_until(api, deadline, pending).await {
        Ok(store) => Ok(store
            .values()
            .filter(|p| {
                p.metadata.deletion_timestamp.is_none()
                    && container_readiness(p)
                        .names
                        .iter()
                        .any(|c| c == "istio-proxy")
            })
            .count()),
        Err(pending) => Err(KubeError::ProxiesNotMoved {
            namespace: ns.to_string(),
            version: version.to_string(),
            pending,
        }),
    }
}

/// `kubectl rollout restart` of deployments (every one in `ns` when `names` is empty): sets
/// the pod template's `kubectl.kubernetes.io/restartedAt`; returns the names restarted.
pub async fn rollout_restart(
    client: &kube::Client,
    ns: &str,
    names: &[String],
) -> Result<Vec<String>, KubeError> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let targets: Vec<String> = if names.is_empty() {
        api.list(&ListParams::default())
            .await
            .map_err(|e| KubeError::call(format!("listing deployments in {ns}"), e))?
            .items
            .iter()
            .map(|d| d.name_any())
            .collect()
    } else {
        names.to_vec()
    };
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let patch = serde_json::json!({"spec": {"template": {"metadata": {"annotations": {
        "kubectl.kubernetes.io/restartedAt": now
    }}}}});
    for n in &targets {
        api.patch(
            n,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Strategic(&patch),
        )
        .await
        .map_err(|e| KubeError::call(format!("restarting deployment {ns}/{n}"), e))?;
    }
    Ok(targets)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Bookinfo pod as Istio 1.30 injects it: on a 1.33+ node `istio-proxy` is a native
    /// sidecar (an init container with `restartPolicy: Always`) after `istio-init`; on a 1.32
    /// node it is a regular container. Statuses as the kubelet reports them.
    fn injected_pod(native: bool, proxy_ready: bool) -> Pod {
        let proxy = serde_json::json!({
            "name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.30.3",
            "restartPolicy": if native { Some("Always") } else { None },
            "readinessProbe": {"httpGet": {"path": "/healthz/ready", "port": 15021}}
        });
        let init =
            serde_json::json!({"name": "istio-init", "image": "docker.io/istio/proxyv2:1.30.3"});
        let app = serde_json::json!({"name": "reviews", "image": "docker.io/istio/examples-bookinfo-reviews-v1:1.20.3"});
        let running = |name: &str, ready: bool| {
            serde_json::json!({"name": name, "image": "x", "imageID": "", "restartCount": 0,
                "ready": ready, "started": true,
                "state": {"running": {"startedAt": "2026-12-03T18:00:00Z"}}})
        };
        let done = serde_json::json!({"name": "istio-init", "image": "x", "imageID": "",
            "restartCount": 0, "ready": true, "started": false,
            "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}});
        let (inits, containers, init_st, st) = if native {
            (
                vec![init, proxy],
                vec![app],
                vec![done, running("istio-proxy", proxy_ready)],
                vec![running("reviews", true)],
            )
        } else {
            (
                vec![init],
                vec![app, proxy],
                vec![done],
                vec![
                    running("reviews", true),
                    running("istio-proxy", proxy_ready),
                ],
            )
        };
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "reviews-v1-abc", "namespace": "default"},
            "spec": {"initContainers": inits, "containers": containers},
            "status": {"phase": "Running", "initContainerStatuses": init_st, "containerStatuses": st}
        }))
        .expect("a valid Pod")
    }

    #[test]
    fn a_native_sidecar_counts_as_a_container_like_kubectls_ready_column() {
        let r = container_readiness(&injected_pod(true, true));
        assert_eq!((r.ready, r.total), (2, 2));
        assert_eq!(r.names, ["reviews", "istio-proxy"]);
        assert_eq!(
            pod_not_ready_reason(&injected_pod(true, true), Some(2)),
            None
        );
    }

    #[test]
    fn a_regular_sidecar_on_a_1_32_node_counts_the_same() {
        let r = container_readiness(&injected_pod(false, true));
        assert_eq!((r.ready, r.total), (2, 2));
        assert_eq!(r.names, ["reviews", "istio-proxy"]);
        assert_eq!(
            pod_not_ready_reason(&injected_pod(false, true), Some(2)),
            None
        );
    }

    #[test]
    fn an_unready_sidecar_is_named_native_or_not() {
        for native in [true, false] {
            let pod = injected_pod(native, false);
            let r = container_readiness(&pod);
            assert_eq!((r.ready, r.total), (1, 2), "native={native}");
            let why = pod_not_ready_reason(&pod, Some(2)).expect("not ready");
            assert!(why.starts_with("1/2 ready"), "{why}");
            assert!(
                why.contains("container istio-proxy running but not ready"),
                "{why}"
            );
        }
    }

    #[test]
    fn a_native_sidecar_that_has_not_started_is_not_ready() {
        let mut pod = injected_pod(true, true);
        let st = pod.status.as_mut().unwrap();
        st.init_container_statuses.as_mut().unwrap()[1].started = Some(false);
        assert_eq!(container_readiness(&pod).ready, 1);
    }

    #[test]
    fn a_completed_init_container_is_not_counted_and_the_count_is_checked() {
        let pod = injected_pod(true, true);
        let why = pod_not_ready_reason(&pod, Some(3)).expect("wrong count");
        assert!(why.contains("has 2 containers, expected 3"), "{why}");
    }

    #[test]
    fn the_upgrade_counts_native_sidecars_at_their_version() {
        let pod = injected_pod(true, true);
        assert_eq!(proxy_version_pending(&pod, "1.30.3"), None);
        let why = proxy_version_pending(&pod, "1.31.0").expect("old proxy");
        assert!(why.contains("proxyv2:1.30.3, not 1.31.0"), "{why}");
    }
}
