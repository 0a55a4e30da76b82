//! Where the pods of a wait stand, as pure functions of the pods and of when the wait first
//! saw each state: states that waiting does not fix, image pulls failing past their grace, a
//! sidecar that is not there, and the progress line (`4/6 pods ready; waiting on ...`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use kube::ResourceExt;

use super::KubeError;
use super::error::{CannotStart, PullStuck};
use super::wait::{PodsReady, container_readiness, is_native_sidecar, pod_not_ready_reason};

/// Waiting reasons the kubelet does not leave by itself: the pod needs a change.
pub const UNRECOVERABLE: [&str; 3] = [
    "ErrImageNeverPull",
    "InvalidImageName",
    "CreateContainerConfigError",
];
/// A container in `CrashLoopBackOff` with at least this many restarts fails the wait.
pub const CRASH_LOOP_RESTARTS: i32 = 3;
/// How long an image pull may keep failing when a wait sets no `image-pull-grace`.
pub const DEFAULT_IMAGE_PULL_GRACE: Duration = Duration::from_secs(120);
/// The progress line is printed at most this often.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(15);

/// Every container status of a pod: init containers (native sidecars among them), then the
/// regular ones.
fn all_statuses(pod: &Pod) -> impl Iterator<Item = &ContainerStatus> {
    let st = pod.status.as_ref();
    st.into_iter()
        .flat_map(|s| s.init_container_statuses.iter().flatten())
        .chain(
            st.into_iter()
                .flat_map(|s| s.container_statuses.iter().flatten()),
        )
}

fn waiting_reason(c: &ContainerStatus) -> Option<&str> {
    c.state.as_ref()?.waiting.as_ref()?.reason.as_deref()
}

fn waiting_message(c: &ContainerStatus) -> &str {
    c.state
        .as_ref()
        .and_then(|s| s.waiting.as_ref())
        .and_then(|w| w.message.as_deref())
        .map_or("", |m| m.lines().next().unwrap_or(""))
}

/// The first container of `pod` in a state that waiting does not fix, as the error that ends
/// the wait: one of [`UNRECOVERABLE`], or `CrashLoopBackOff` after [`CRASH_LOOP_RESTARTS`].
pub fn unrecoverable(pod: &Pod) -> Option<KubeError> {
    all_statuses(pod).find_map(|c| {
        let reason = waiting_reason(c)?;
        let detail = if UNRECOVERABLE.contains(&reason) {
            waiting_message(c).to_string()
        } else if reason == "CrashLoopBackOff" && c.restart_count >= CRASH_LOOP_RESTARTS {
            last_exit(c)
        } else {
            return None;
        };
        Some(KubeError::PodCannotStart(Box::new(CannotStart {
            namespace: pod.namespace().unwrap_or_default(),
            pod: pod.name_any(),
            container: c.name.clone(),
            state: reason.to_string(),
            image: c.image.clone(),
            detail,
        })))
    })
}

/// `4 restarts, last exit code 1 (Error)` for a crash-looping container.
fn last_exit(c: &ContainerStatus) -> String {
    let restarts = format!("{} restarts", c.restart_count);
    match c.last_state.as_ref().and_then(|s| s.terminated.as_ref()) {
        Some(t) => format!(
            "{restarts}, last exit code {} ({})",
            t.exit_code,
            t.reason.as_deref().unwrap_or("no reason given")
        ),
        None => restarts,
    }
}

/// One image pull this wait has seen failing without a break.
#[derive(Debug, Clone)]
struct FailingPull {
    since: Instant,
    image: String,
    last_error: String,
}

/// Image pulls failing (`ErrImagePull`, `ImagePullBackOff`), by pod and container: since
/// when this wait has seen them fail, and the last pull error the kubelet gave.
#[derive(Debug, Default)]
pub struct PullFailures(BTreeMap<(String, String), FailingPull>);

impl PullFailures {
    /// Records the pulls failing in `pods` at `now`; a pull no longer failing is forgotten.
    pub fn observe<'a>(&mut self, pods: impl IntoIterator<Item = &'a Pod>, now: Instant) {
        let mut next = BTreeMap::new();
        for p in pods {
            for c in all_statuses(p) {
                let Some(reason @ ("ErrImagePull" | "ImagePullBackOff")) = waiting_reason(c) else {
                    continue;
                };
                let key = (p.name_any(), c.name.clone());
                let mut pull = self.0.remove(&key).unwrap_or(FailingPull {
                    since: now,
                    image: c.image.clone(),
                    last_error: String::new(),
                });
                // ErrImagePull carries the registry's answer; the back-off only repeats it.
                let msg = waiting_message(c);
                if !msg.is_empty() && (reason == "ErrImagePull" || pull.last_error.is_empty()) {
                    pull.last_error = msg.to_string();
                }
                next.insert(key, pull);
            }
        }
        self.0 = next;
    }

    /// The first pull failing for longer than `grace` at `now`, as the error that ends the wait.
    pub fn expired(&self, namespace: &str, grace: Duration, now: Instant) -> Option<KubeError> {
        self.0.iter().find_map(|((pod, container), pull)| {
            let failing_for = now.saturating_duration_since(pull.since);
            (failing_for > grace).then(|| {
                KubeError::ImagePullStuck(Box::new(PullStuck {
                    namespace: namespace.to_string(),
                    pod: pod.clone(),
                    container: container.clone(),
                    image: pull.image.clone(),
                    failing_for,
                    grace,
                    last_error: if pull.last_error.is_empty() {
                        "(the kubelet gave no message)".into()
                    } else {
                        pull.last_error.clone()
                    },
                }))
            })
        })
    }
}

/// Why `pod` does not carry `name` as its sidecar, or None when it does. The sidecar is one
/// of the containers kubectl's READY column counts besides the app: a regular container (as
/// Istio injects on nodes before 1.33) or a native sidecar, an init container with
/// `restartPolicy: Always` (as Istio >= 1.27 injects on 1.33+ nodes).
pub fn sidecar_problem(pod: &Pod, name: &str) -> Option<String> {
    let counted = container_readiness(pod).names;
    if counted.iter().any(|c| c == name) {
        return (counted.len() < 2)
            .then(|| format!("{name} is the pod's only container: there is no app beside it"));
    }
    let spec = pod.spec.as_ref();
    let inits: Vec<&str> = spec
        .into_iter()
        .flat_map(|s| s.init_containers.iter().flatten())
        .map(|c| c.name.as_str())
        .collect();
    if spec
        .into_iter()
        .flat_map(|s| s.init_containers.iter().flatten())
        .any(|c| c.name == name && !is_native_sidecar(c))
    {
        return Some(format!(
            "{name} is an init container without restartPolicy: Always, so it runs to completion instead of beside the app"
        ));
    }
    Some(format!(
        "no {name} sidecar: containers [{}], init containers [{}] (is sidecar injection on for the namespace?)",
        counted.join(", "),
        inits.join(", ")
    ))
}

/// Why one pod does not meet the wait, or None: not ready (see [`pod_not_ready_reason`]) or
/// without the sidecar the wait asks for.
pub fn blocker(pod: &Pod, want: &PodsReady) -> Option<String> {
    let not_ready = pod_not_ready_reason(pod, want.containers);
    let sidecar = want
        .sidecar
        .as_deref()
        .and_then(|s| sidecar_problem(pod, s));
    match (not_ready, sidecar) {
        (None, None) => None,
        (Some(r), None) => Some(r),
        (None, Some(s)) => Some(s),
        (Some(r), Some(s)) => Some(format!("{r}; {s}")),
    }
}

/// One phrase for where a pod that is not ready stands, as `kubectl get pods` STATUS does: a
/// waiting reason (`ContainerCreating`, `ImagePullBackOff`), `Unschedulable`/`Pending`,
/// `1/2 ready`, or `no istio-proxy sidecar`.
pub fn state_word(pod: &Pod, want: &PodsReady) -> String {
    if let Some(r) = all_statuses(pod).find_map(waiting_reason) {
        return r.to_string();
    }
    let status = pod.status.as_ref();
    if status.and_then(|s| s.phase.as_deref()) == Some("Pending") {
        let unscheduled = status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| {
                cs.iter()
                    .find(|c| c.type_ == "PodScheduled" && c.status == "False")
            })
            .and_then(|c| c.reason.clone());
        return unscheduled.unwrap_or_else(|| "Pending".into());
    }
    let r = container_readiness(pod);
    match &want.sidecar {
        Some(s) if r.ready == r.total && sidecar_problem(pod, s).is_some() => {
            format!("no {s} sidecar")
        }
        _ => format!("{}/{} ready", r.ready, r.total),
    }
}

/// When this wait first saw each pod in the state it is in now, for the ages in the
/// progress line.
#[derive(Debug, Default)]
pub struct StateAges(BTreeMap<String, (String, Instant)>);

impl StateAges {
    /// Records each pod's state (`(pod, state)`) at `now`; a changed state starts anew.
    pub fn observe(&mut self, states: &[(String, String)], now: Instant) {
        let mut next = BTreeMap::new();
        for (pod, state) in states {
            let since = match self.0.get(pod) {
                Some((s, t)) if s == state => *t,
                _ => now,
            };
            next.insert(pod.clone(), (state.clone(), since));
        }
        self.0 = next;
    }

    /// `(pod, state, how long)` for every pod recorded, by name.
    pub fn entries(&self, now: Instant) -> Vec<(String, String, Duration)> {
        self.0
            .iter()
            .map(|(p, (s, t))| (p.clone(), s.clone(), now.saturating_duration_since(*t)))
            .collect()
    }
}

/// `12s`, `2m05s`: an age as `kubectl get pods` would print it.
fn age(d: Duration) -> String {
    let s = d.as_secs();
    if s < 60 {
        format!("{s}s")
    } else {
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

/// The line a wait prints while waiting: `4/6 pods ready; waiting on reviews-v2-x
/// (ContainerCreating 12s)`, naming at most three pods.
pub fn progress_line(
    ready: usize,
    live: usize,
    min: usize,
    waiting: &[(String, String, Duration)],
) -> String {
    let mut line = format!("{ready}/{live} pods ready");
    if live < min {
        line.push_str(&format!(" (at least {min} expected)"));
    }
    if waiting.is_empty() {
        return line;
    }
    let named: Vec<String> = waiting
        .iter()
        .take(3)
        .map(|(p, s, d)| format!("{p} ({s} {})", age(*d)))
        .collect();
    line.push_str(&format!("; waiting on {}", named.join(", ")));
    if waiting.len() > 3 {
        line.push_str(&format!(" and {} more", waiting.len() - 3));
    }
    line
}

/// Lets something through at most once per period, the first time at once.
#[derive(Debug)]
pub struct Throttle {
    every: Duration,
    last: Option<Instant>,
}

impl Throttle {
    /// A throttle that lets one through per `every`.
    pub fn new(every: Duration) -> Self {
        Throttle { every, last: None }
    }

    /// True (and the period restarts) when nothing went through in the last period.
    pub fn due(&mut self, now: Instant) -> bool {
        let due = self
            .last
            .is_none_or(|t| now.saturating_duration_since(t) >= self.every);
        if due {
            self.last = Some(now);
        }
        due
    }
}

/// What a pods wait makes of the pods at one moment.
#[derive(Debug)]
pub enum Verdict {
    /// Every pod is ready (and there are enough).
    Ready,
    /// A pod cannot become ready by waiting: the wait ends with this error.
    Failed(KubeError),
    /// Still waiting: the progress line.
    Waiting(String),
}

/// A pods wait's memory between watch events: what it wants, which pulls have been failing
/// since when, and how long each pod has been in its state.
#[derive(Debug)]
pub struct PodsJudge {
    want: PodsReady,
    pulls: PullFailures,
    ages: StateAges,
}

impl PodsJudge {
    /// A judge for `want`, having seen nothing yet.
    pub fn new(want: &PodsReady) -> Self {
        PodsJudge {
            want: want.clone(),
            pulls: PullFailures::default(),
            ages: StateAges::default(),
        }
    }

    /// The verdict on `pods` (pods being deleted do not count) at `now`.
    pub fn judge<'a>(&mut self, pods: impl IntoIterator<Item = &'a Pod>, now: Instant) -> Verdict {
        let live: Vec<&Pod> = pods
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        if let Some(e) = live.iter().find_map(|p| unrecoverable(p)) {
            return Verdict::Failed(e);
        }
        self.pulls.observe(live.iter().copied(), now);
        if let Some(e) = self
            .pulls
            .expired(&self.want.namespace, self.want.image_pull_grace, now)
        {
            return Verdict::Failed(e);
        }
        let states: Vec<(String, String)> = live
            .iter()
            .filter(|p| blocker(p, &self.want).is_some())
            .map(|p| (p.name_any(), state_word(p, &self.want)))
            .collect();
        self.ages.observe(&states, now);
        let min = self.want.min_pods.max(1);
        if states.is_empty() && live.len() >= min {
            return Verdict::Ready;
        }
        let waiting = self.ages.entries(now);
        Verdict::Waiting(progress_line(
            live.len() - states.len(),
            live.len(),
            min,
            &waiting,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NATIVE: &str = include_str!("../../tests/fixtures/pods/istio-1.30-native-sidecar.yaml");
    const CLASSIC: &str = include_str!("../../tests/fixtures/pods/istio-1.30-classic-sidecar.yaml");

    fn fixture(text: &str) -> Pod {
        serde_saphyr::from_str(text).expect("a valid Pod fixture")
    }

    /// A pod of one container `app` (image `example/app:1`) whose status is `state`.
    fn pod(name: &str, state: serde_json::Value, restarts: i32) -> Pod {
        let ready = state.get("running").is_some();
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "demo"},
            "spec": {"containers": [{"name": "app", "image": "example/app:1"}]},
            "status": {"phase": if ready { "Running" } else { "Pending" }, "containerStatuses": [{
                "name": "app", "image": "example/app:1", "imageID": "", "ready": ready,
                "restartCount": restarts, "state": state,
                "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}}
            }]}
        }))
        .expect("a valid Pod")
    }

    fn waiting(reason: &str, message: &str) -> serde_json::Value {
        serde_json::json!({"waiting": {"reason": reason, "message": message}})
    }

    fn running() -> serde_json::Value {
        serde_json::json!({"running": {"startedAt": "2026-12-03T18:00:00Z"}})
    }

    fn want() -> PodsReady {
        PodsReady {
            namespace: "demo".into(),
            image_pull_grace: Duration::from_secs(60),
            ..PodsReady::default()
        }
    }

    fn failed(v: Verdict) -> String {
        match v {
            Verdict::Failed(e) => e.to_string(),
            other => panic!("expected the wait to fail, got {other:?}"),
        }
    }

    fn waiting_line(v: Verdict) -> String {
        match v {
            Verdict::Waiting(l) => l,
            other => panic!("expected the wait to go on, got {other:?}"),
        }
    }

    #[test]
    fn states_that_waiting_does_not_fix_fail_at_once_naming_pod_container_state_and_image() {
        for (reason, msg) in [
            (
                "ErrImageNeverPull",
                "Container image \"example/app:1\" is not present with pull policy of Never",
            ),
            (
                "InvalidImageName",
                "Failed to apply default image tag \"Example/App\": invalid reference format",
            ),
            (
                "CreateContainerConfigError",
                "secret \"db-password\" not found",
            ),
        ] {
            let p = pod("web-1", waiting(reason, msg), 0);
            let e = failed(PodsJudge::new(&want()).judge([&p], Instant::now()));
            assert_eq!(
                e,
                format!(
                    "pod demo/web-1: container app (image example/app:1) is in {reason}, which waiting does not fix: {msg}"
                )
            );
        }
    }

    #[test]
    fn a_crash_loop_fails_the_wait_from_its_third_restart_with_the_last_exit() {
        let now = Instant::now();
        let two = pod("web-1", waiting("CrashLoopBackOff", "back-off 20s"), 2);
        let line = waiting_line(PodsJudge::new(&want()).judge([&two], now));
        assert_eq!(
            line,
            "0/1 pods ready; waiting on web-1 (CrashLoopBackOff 0s)"
        );
        let three = pod("web-1", waiting("CrashLoopBackOff", "back-off 40s"), 3);
        let e = failed(PodsJudge::new(&want()).judge([&three], now));
        assert!(
            e.contains("container app (image example/app:1) is in CrashLoopBackOff"),
            "{e}"
        );
        assert!(e.ends_with(": 3 restarts, last exit code 1 (Error)"), "{e}");
        let err = unrecoverable(&three).expect("unrecoverable");
        assert!(!err.is_retryable());
    }

    #[test]
    fn an_image_pull_failing_past_its_grace_fails_with_the_image_and_the_last_pull_error() {
        let t0 = Instant::now();
        let pull_err = "rpc error: code = NotFound desc = failed to pull and unpack image \"example/app:1\": not found";
        let mut judge = PodsJudge::new(&want());
        let err = pod("web-1", waiting("ErrImagePull", pull_err), 0);
        let backoff = pod(
            "web-1",
            waiting(
                "ImagePullBackOff",
                "Back-off pulling image \"example/app:1\"",
            ),
            0,
        );
        let line = waiting_line(judge.judge([&err], t0));
        assert_eq!(line, "0/1 pods ready; waiting on web-1 (ErrImagePull 0s)");
        waiting_line(judge.judge([&backoff], t0 + Duration::from_secs(30)));
        let line = waiting_line(judge.judge([&backoff], t0 + Duration::from_secs(60)));
        assert_eq!(
            line,
            "0/1 pods ready; waiting on web-1 (ImagePullBackOff 30s)"
        );
        let e = failed(judge.judge([&backoff], t0 + Duration::from_secs(61)));
        assert_eq!(
            e,
            format!(
                "pod demo/web-1: container app could not pull image example/app:1 for 61s (the image-pull grace is 60s); last pull error: {pull_err}"
            )
        );
    }

    #[test]
    fn a_pull_that_recovers_starts_its_grace_anew() {
        let t0 = Instant::now();
        let mut judge = PodsJudge::new(&want());
        let backoff = pod("web-1", waiting("ImagePullBackOff", "Back-off"), 0);
        let creating = pod("web-1", waiting("ContainerCreating", ""), 0);
        waiting_line(judge.judge([&backoff], t0));
        waiting_line(judge.judge([&creating], t0 + Duration::from_secs(50)));
        waiting_line(judge.judge([&backoff], t0 + Duration::from_secs(55)));
        waiting_line(judge.judge([&backoff], t0 + Duration::from_secs(100)));
        let e = failed(judge.judge([&backoff], t0 + Duration::from_secs(116)));
        assert!(e.contains("for 61s"), "{e}");
        assert!(e.ends_with("last pull error: Back-off"), "{e}");
    }

    #[test]
    fn the_progress_line_says_which_pods_are_waited_on_in_which_state_and_for_how_long() {
        let t0 = Instant::now();
        let mut w = want();
        w.min_pods = 3;
        let mut judge = PodsJudge::new(&w);
        let a = pod("details-v1-a", running(), 0);
        let b = pod("ratings-v1-b", running(), 0);
        let c = pod("reviews-v2-c", waiting("ContainerCreating", ""), 0);
        assert_eq!(
            waiting_line(judge.judge([&a, &b], t0)),
            "2/2 pods ready (at least 3 expected)"
        );
        judge.judge([&a, &b, &c], t0);
        assert_eq!(
            waiting_line(judge.judge([&a, &b, &c], t0 + Duration::from_secs(12))),
            "2/3 pods ready; waiting on reviews-v2-c (ContainerCreating 12s)"
        );
        let c_up = pod("reviews-v2-c", running(), 0);
        assert!(matches!(judge.judge([&a, &b, &c_up], t0), Verdict::Ready));
    }

    #[test]
    fn the_progress_line_names_three_pods_and_counts_the_rest() {
        let w: Vec<(String, String, Duration)> = (1..=5)
            .map(|i| {
                (
                    format!("p{i}"),
                    "Pending".to_string(),
                    Duration::from_secs(60 + i),
                )
            })
            .collect();
        assert_eq!(
            progress_line(1, 6, 6, &w),
            "1/6 pods ready; waiting on p1 (Pending 1m01s), p2 (Pending 1m02s), p3 (Pending 1m03s) and 2 more"
        );
    }

    #[test]
    fn progress_goes_out_at_most_every_15_seconds() {
        let t0 = Instant::now();
        let mut t = Throttle::new(PROGRESS_EVERY);
        assert!(t.due(t0));
        assert!(!t.due(t0 + Duration::from_secs(1)));
        assert!(!t.due(t0 + Duration::from_secs(14)));
        assert!(t.due(t0 + Duration::from_secs(15)));
        assert!(!t.due(t0 + Duration::from_secs(29)));
        assert!(t.due(t0 + Duration::from_secs(31)));
    }

    #[test]
    fn istio_1_30_pods_carry_istio_proxy_as_native_sidecar_on_1_33_and_as_container_on_1_32() {
        let w = PodsReady {
            containers: Some(2),
            sidecar: Some("istio-proxy".into()),
            ..want()
        };
        for text in [NATIVE, CLASSIC] {
            let p = fixture(text);
            let r = container_readiness(&p);
            assert_eq!((r.ready, r.total), (2, 2), "kubectl says 2/2");
            assert_eq!(sidecar_problem(&p, "istio-proxy"), None);
            assert_eq!(blocker(&p, &w), None);
            assert!(matches!(
                PodsJudge::new(&w).judge([&p], Instant::now()),
                Verdict::Ready
            ));
        }
        assert!(is_native_sidecar(
            &fixture(NATIVE).spec.unwrap().init_containers.unwrap()[1]
        ));
    }

    #[test]
    fn a_missing_sidecar_is_named_with_what_the_pod_has_instead() {
        let mut p = fixture(CLASSIC);
        let spec = p.spec.as_mut().unwrap();
        spec.containers.retain(|c| c.name != "istio-proxy");
        let st = p.status.as_mut().unwrap();
        st.container_statuses
            .as_mut()
            .unwrap()
            .retain(|c| c.name != "istio-proxy");
        let why = sidecar_problem(&p, "istio-proxy").expect("no sidecar");
        assert_eq!(
            why,
            "no istio-proxy sidecar: containers [reviews], init containers [istio-init] (is sidecar injection on for the namespace?)"
        );
        let w = PodsReady {
            sidecar: Some("istio-proxy".into()),
            ..want()
        };
        assert_eq!(
            waiting_line(PodsJudge::new(&w).judge([&p], Instant::now())),
            "0/1 pods ready; waiting on reviews-v1-5c7f8b6d9-x2k4q (no istio-proxy sidecar 0s)"
        );
        assert_eq!(
            sidecar_problem(&p, "linkerd-proxy").map(|w| w.starts_with("no linkerd-proxy sidecar")),
            Some(true)
        );
    }

    #[test]
    fn a_proxy_init_container_that_is_not_restartable_is_not_a_sidecar() {
        let mut p = fixture(NATIVE);
        let inits = p.spec.as_mut().unwrap().init_containers.as_mut().unwrap();
        inits[1].restart_policy = None;
        let why = sidecar_problem(&p, "istio-proxy").expect("not a sidecar");
        assert!(
            why.starts_with("istio-proxy is an init container without restartPolicy: Always"),
            "{why}"
        );
    }
}
