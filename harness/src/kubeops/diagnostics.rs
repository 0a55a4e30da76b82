//! The diagnostics bundle written when a step fails: pods and their container states, the
//! namespace's events sorted by time, logs (and previous logs) of not-ready or restarted
//! containers, and the objects the failing step applied.

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

/// Collects the bundle for `namespaces` into `dir`; best effort: what cannot be read is noted
/// in the files, never an error.
pub async fn collect(
    client: &kube::Client,
    namespaces: &[String],
    applied: &[String],
    step_error: &str,
    dir: &Path,
) -> Bundle {
    let _ = std::fs::create_dir_all(dir.join("logs"));
    let mut bundle = Bundle {
        dir: dir.to_path_buf(),
        ..Default::default()
    };
    let write = |name: &str, text: String, bundle: &mut Bundle| {
        let p = dir.join(name);
        if std::fs::write(&p, text).is_ok() {
            bundle.files.push(p);
        }
    };
    write("step-error.txt", format!("{step_error}\n"), &mut bundle);
    if !applied.is_empty() {
        write("applied.txt", applied.join("\n") + "\n", &mut bundle);
    }
    for ns in namespaces {
        let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
        let mut text = String::new();
        match pods.list(&ListParams::default()).await {
            Err(e) => {
                let _ = writeln!(text, "cannot list pods: {e}");
            }
            Ok(list) => {
                for p in &list.items {
                    let st = p.status.clone().unwrap_or_default();
                    let _ = writeln!(
                        text,
                        "{} phase={} node={} hostIP={} podIP={}",
                        p.name_any(),
                        st.phase.clone().unwrap_or_default(),
                        p.spec
                            .as_ref()
                            .and_then(|s| s.node_name.clone())
                            .unwrap_or_default(),
                        st.host_ip.clone().unwrap_or_default(),
                        st.pod_ip.clone().unwrap_or_default()
                    );
                    // init containers too: native sidecars (istio-proxy on 1.33+) are there
                    let init = st.init_container_statuses.clone().unwrap_or_default();
                    for c in init
                        .into_iter()
                        .chain(st.container_statuses.clone().unwrap_or_default())
                    {
                        let _ = writeln!(
                            text,
                            "  container {} image={} ready={} restarts={} state={}",
                            c.name,
                            c.image,
                            c.ready,
                            c.restart_count,
                            serde_json::to_string(&c.state).unwrap_or_default()
                        );
                        if !c.ready || c.restart_count > 0 {
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
                                let log = pods
                                    .logs(&p.name_any(), &lp)
                                    .await
                                    .unwrap_or_else(|e| format!("(no log: {e})\n"));
                                let suffix = if previous { ".previous" } else { "" };
                                write(
                                    &format!("logs/{ns}.{}.{}{suffix}.log", p.name_any(), c.name),
                                    log,
                                    &mut bundle,
                                );
                            }
                        }
                    }
                    if let Some(why) = pod_not_ready_reason(p, None) {
                        bundle
                            .not_ready
                            .push(format!("{ns}/{}: {why}", p.name_any()));
                    }
                }
            }
        }
        write(&format!("pods.{ns}.txt"), text, &mut bundle);
        let events: Api<Event> = Api::namespaced(client.clone(), ns);
        let mut text = String::new();
        match events.list(&ListParams::default()).await {
            Err(e) => {
                let _ = writeln!(text, "cannot list events: {e}");
            }
            Ok(list) => {
                let mut evs = list.items;
                evs.sort_by_key(|e| {
                    e.last_timestamp
                        .clone()
                        .map(|t| t.0)
                        .or(e.event_time.clone().map(|t| t.0))
                });
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
            }
        }
        write(&format!("events.{ns}.txt"), text, &mut bundle);
    }
    bundle
}
