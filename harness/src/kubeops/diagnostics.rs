//! The diagnostics bundle written when a step fails: pods and their container states, the
//! namespace's events sorted by time, logs (and previous logs) of not-ready or restarted
//! containers, and the objects the failing step applied.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, ListParams, LogParams, ResourceExt};

use super::wait::pod_not_ready_reason;

/// What went into a bundle, for the failure message.
#[derive(Debug, Clone, Default)]
pub struct Bundle {
    /// The bundle's directory.
    pub dir: PathBuf,
    /// One line per not-ready pod.
    pub not_ready: Vec<String>,
    /// Files written.
    pub files: Vec<PathBuf>,
}

impl Bundle {
    /// A one-paragraph summary naming the directory.
    pub fn summary(&self) -> String {
        let mut s = format!("diagnostics in {}", self.dir.display());
        if !self.not_ready.is_empty() {
            let _ = write!(s, " (not ready: {})", self.not_ready.join("; "));
        }
        s
    }
}

/// The pods a failing wait selected: the bundle lists them first in their namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodSelection {
    /// Namespace.
    pub namespace: String,
    /// Label selector; every pod of the namespace when None.
    pub selector: Option<String>,
}

/// The bundle being written: its files go under `dir`.
struct Writer {
    dir: PathBuf,
    bundle: Bundle,
}

impl Writer {
    fn write(&mut self, name: &str, text: String) {
        let p = self.dir.join(name);
        if std::fs::write(&p, text).is_ok() {
            self.bundle.files.push(p);
        }
    }
}

/// Collects the bundle for `namespaces` (and the namespace of `selected`, first) into `dir`;
/// the pods `selected` names come first in their namespace's file, the others after them.
/// Best effort: what cannot be read is noted in the files, never an error.
pub async fn collect(
    client: &kube::Client,
    namespaces: &[String],
    applied: &[String],
    selected: Option<&PodSelection>,
    step_error: &str,
    dir: &Path,
) -> Bundle {
    let _ = std::fs::create_dir_all(dir.join("logs"));
    let mut out = Writer {
        dir: dir.to_path_buf(),
        bundle: Bundle {
            dir: dir.to_path_buf(),
            ..Default::default()
        },
    };
    out.write("step-error.txt", format!("{step_error}\n"));
    if !applied.is_empty() {
        out.write("applied.txt", applied.join("\n") + "\n");
    }
    let mut all = namespaces.to_vec();
    if let Some(s) = selected {
        all.retain(|n| n != &s.namespace);
        all.insert(0, s.namespace.clone());
    }
    for ns in &all {
        let sel = selected.filter(|s| &s.namespace == ns);
        pods_of(client, ns, sel, &mut out).await;
        let events = events_text(client, ns).await;
        out.write(&format!("events.{ns}.txt"), events);
    }
    out.bundle
}

/// Writes `pods.<ns>.txt` (the selected pods first, then the others) and the logs of
/// containers that are not ready or restarted; records the pods that are not ready.
async fn pods_of(client: &kube::Client, ns: &str, sel: Option<&PodSelection>, out: &mut Writer) {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let pods = match api.list(&ListParams::default()).await {
        Ok(list) => list.items,
        Err(e) => {
            return out.write(
                &format!("pods.{ns}.txt"),
                format!("cannot list pods: {e}\n"),
            );
        }
    };
    let chosen = match sel {
        None => None,
        Some(s) => Some(selected_names(&api, s).await),
    };
    let (first, rest) = split_selected(pods, chosen.as_ref());
    for p in first.iter().chain(&rest) {
        container_logs(&api, ns, p, out).await;
        if let Some(why) = pod_not_ready_reason(p, None) {
            out.bundle
                .not_ready
                .push(format!("{ns}/{}: {why}", p.name_any()));
        }
    }
    out.write(&format!("pods.{ns}.txt"), pods_text(ns, sel, &first, &rest));
}

/// The names of the pods `sel` selects (all pods of its namespace without a selector).
async fn selected_names(api: &Api<Pod>, sel: &PodSelection) -> BTreeSet<String> {
    let lp = match &sel.selector {
        Some(s) => ListParams::default().labels(s),
        None => ListParams::default(),
    };
    api.list(&lp)
        .await
        .map(|l| l.items.iter().map(|p| p.name_any()).collect())
        .unwrap_or_default()
}

/// Splits pods into those named in `chosen` and the others, each in the order given; with
/// no selection every pod is an "other".
pub fn split_selected(pods: Vec<Pod>, chosen: Option<&BTreeSet<String>>) -> (Vec<Pod>, Vec<Pod>) {
    match chosen {
        None => (Vec::new(), pods),
        Some(names) => pods
            .into_iter()
            .partition(|p| names.contains(&p.name_any())),
    }
}

/// The text of `pods.<ns>.txt`: with a selection, the selected pods under their own
/// heading and the namespace's other pods under another.
pub fn pods_text(ns: &str, sel: Option<&PodSelection>, first: &[Pod], rest: &[Pod]) -> String {
    let mut text = String::new();
    if let Some(s) = sel {
        let what = s.selector.as_deref().unwrap_or("every pod");
        let _ = writeln!(text, "# pods the wait selected ({what}): {}", first.len());
        first.iter().for_each(|p| text.push_str(&pod_text(p)));
        let _ = writeln!(text, "\n# other pods in namespace {ns}: {}", rest.len());
    }
    rest.iter().for_each(|p| text.push_str(&pod_text(p)));
    text
}

/// A pod's line and one line per container (init containers first; native sidecars named
/// as such), as in `pods.<ns>.txt`.
pub fn pod_text(p: &Pod) -> String {
    let st = p.status.clone().unwrap_or_default();
    let mut text = String::new();
    let _ = writeln!(
        text,
        "{} phase={} node={} hostIP={} podIP={}",
        p.name_any(),
        st.phase.unwrap_or_default(),
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default(),
        st.host_ip.unwrap_or_default(),
        st.pod_ip.unwrap_or_default()
    );
    let native = super::wait::native_sidecar_names(p);
    let init = st.init_container_statuses.unwrap_or_default();
    let regular = st.container_statuses.unwrap_or_default();
    for (c, is_init) in init
        .iter()
        .map(|c| (c, true))
        .chain(regular.iter().map(|c| (c, false)))
    {
        let what = match (is_init, native.contains(&c.name.as_str())) {
            (true, true) => "native sidecar",
            (true, false) => "init container",
            (false, _) => "container",
        };
        let _ = writeln!(
            text,
            "  {what} {} image={} ready={} restarts={} state={}",
            c.name,
            c.image,
            c.ready,
            c.restart_count,
            serde_json::to_string(&c.state).unwrap_or_default()
        );
    }
    text
}

/// Writes the logs (and previous logs after a restart) of each container of `p` that is not
/// ready or has restarted.
async fn container_logs(api: &Api<Pod>, ns: &str, p: &Pod, out: &mut Writer) {
    let st = p.status.clone().unwrap_or_default();
    let statuses = st
        .init_container_statuses
        .unwrap_or_default()
        .into_iter()
        .chain(st.container_statuses.unwrap_or_default());
    for c in statuses.filter(|c| !c.ready || c.restart_count > 0) {
        for previous in [false, true] {
            if previous && c.restart_count == 0 {
                continue;
            }
            let lp = LogParams {
                container: Some(c.name.clone()),
                previous,
                tail_lines: Some(200),
                ..Default::default()
            };
            let log = api
                .logs(&p.name_any(), &lp)
                .await
                .unwrap_or_else(|e| format!("(no log: {e})\n"));
            let suffix = if previous { ".previous" } else { "" };
            out.write(
                &format!("logs/{ns}.{}.{}{suffix}.log", p.name_any(), c.name),
                log,
            );
        }
    }
}

/// The namespace's events, oldest first, one a line.
async fn events_text(client: &kube::Client, ns: &str) -> String {
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    let mut evs = match events.list(&ListParams::default()).await {
        Ok(list) => list.items,
        Err(e) => return format!("cannot list events: {e}\n"),
    };
    evs.sort_by_key(|e| {
        e.last_timestamp
            .clone()
            .map(|t| t.0)
            .or(e.event_time.clone().map(|t| t.0))
    });
    let mut text = String::new();
    for e in evs {
        let _ = writeln!(
            text,
            "{} {} {}/{} {}: {}",
            e.last_timestamp
                .map(|t| t.0.to_string())
                .unwrap_or_default(),
            e.type_.unwrap_or_default(),
            e.involved_object.kind.unwrap_or_default(),
            e.involved_object.name.unwrap_or_default(),
            e.reason.unwrap_or_default(),
            e.message.unwrap_or_default()
        );
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "demo"},
            "spec": {"containers": [{"name": "app", "image": "example/app:1"}]},
            "status": {"phase": "Pending", "containerStatuses": [{
                "name": "app", "image": "example/app:1", "imageID": "", "ready": false,
                "restartCount": 0, "state": {"waiting": {"reason": "ImagePullBackOff"}}
            }]}
        }))
        .unwrap()
    }

    #[test]
    fn the_pods_a_wait_selected_come_first_and_the_others_apart() {
        let pods = vec![
            pod("a-other"),
            pod("b-chosen"),
            pod("c-other"),
            pod("d-chosen"),
        ];
        let chosen: BTreeSet<String> = ["b-chosen", "d-chosen"].map(String::from).into();
        let (first, rest) = split_selected(pods, Some(&chosen));
        let names = |ps: &[Pod]| ps.iter().map(|p| p.name_any()).collect::<Vec<_>>();
        assert_eq!(names(&first), ["b-chosen", "d-chosen"]);
        assert_eq!(names(&rest), ["a-other", "c-other"]);
        let sel = PodSelection {
            namespace: "demo".into(),
            selector: Some("app=chosen".into()),
        };
        let text = pods_text("demo", Some(&sel), &first, &rest);
        let heads: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with("  "))
            .map(|l| l.split(' ').next().unwrap_or(""))
            .collect();
        assert_eq!(
            text.lines().next(),
            Some("# pods the wait selected (app=chosen): 2")
        );
        assert!(
            text.contains("\n# other pods in namespace demo: 2\n"),
            "{text}"
        );
        assert_eq!(
            heads,
            ["#", "b-chosen", "d-chosen", "", "#", "a-other", "c-other"]
        );
    }

    #[test]
    fn without_a_selection_the_pods_are_listed_as_before() {
        let (first, rest) = split_selected(vec![pod("a"), pod("b")], None);
        assert!(first.is_empty());
        let text = pods_text("demo", None, &first, &rest);
        assert!(text.starts_with("a phase=Pending"), "{text}");
        assert!(!text.contains('#'), "{text}");
    }

    #[test]
    fn a_native_sidecar_is_named_as_such() {
        let p: Pod = serde_saphyr::from_str(include_str!(
            "../../tests/fixtures/pods/istio-1.30-native-sidecar.yaml"
        ))
        .unwrap();
        let text = pod_text(&p);
        assert!(text.contains("\n  init container istio-init "), "{text}");
        assert!(text.contains("\n  native sidecar istio-proxy "), "{text}");
        assert!(text.contains("\n  container reviews "), "{text}");
        let p: Pod = serde_saphyr::from_str(include_str!(
            "../../tests/fixtures/pods/istio-1.30-classic-sidecar.yaml"
        ))
        .unwrap();
        assert!(pod_text(&p).contains("\n  container istio-proxy "));
    }
}
