//! What a run created and must undo: whoever creates something pushes its [`Cleanup`] onto the
//! run's [`CleanupStack`], and teardown undoes the stack in reverse (Chainsaw's model).
//!
//! Some entries live in the run's own process (forwarders, background traffic,
//! port-forwards) and are always stopped. Others live in the cluster (objects an `apply`
//! created, labels a `label` step added or changed, a namespace the run created, the Istio it
//! installed): they are undone only when the cluster outlives the run (provider `existing`)
//! and the run was not told to keep them (`--keep-cluster`, `--keep-on-failure` after a
//! failure); a cluster the run created goes as a whole. Deletions are watched until the
//! objects are gone, up to [`DELETE_TIMEOUT`]; what is still there then is named, with its
//! finalizers, in the teardown lines.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;

use crate::context::Context;
use crate::forwarder::Forwarder;
use crate::kubeops::delete::{ObjectRef, delete_and_wait};
use crate::kubeops::portforward::PortForward;
use crate::probes::traffic::BackgroundTraffic;

/// One thing a run created.
pub enum Cleanup {
    /// A TCP forwarder (`forward` step).
    Forwarder {
        /// The step that started it.
        step: String,
        /// The running forwarder.
        forwarder: Forwarder,
    },
    /// Background traffic (`traffic` step with `background`), until its `traffic-stop`.
    Traffic {
        /// The step that started it.
        step: String,
        /// The running traffic.
        traffic: BackgroundTraffic,
    },
    /// A port-forward to a Service (`port-forward` step).
    PortForward {
        /// The step that started it.
        step: String,
        /// The running port-forward.
        handle: PortForward,
    },
    /// A namespace that did not exist before the run (`label` step).
    Namespace {
        /// Its name.
        name: String,
        /// Its uid when the run created it (another namespace of that name is left alone).
        uid: Option<String>,
    },
    /// Objects an `apply` step created (they did not exist before it), in apply order.
    /// Objects it only updated are not the run's to remove.
    Objects {
        /// The step that created them.
        step: String,
        /// The objects.
        objects: Vec<ObjectRef>,
    },
    /// Labels a `label` step added to or changed on a namespace that existed before it.
    Labels {
        /// The namespace.
        namespace: String,
        /// Each label's value before the step; `None` when the step added it.
        previous: BTreeMap<String, Option<String>>,
    },
    /// The Istio control plane this run installed (`istio-install`, a canary `istio-upgrade`).
    Istio,
}

impl Cleanup {
    /// True for what lives in the cluster rather than in this process.
    pub fn in_cluster(&self) -> bool {
        matches!(
            self,
            Cleanup::Namespace { .. }
                | Cleanup::Objects { .. }
                | Cleanup::Labels { .. }
                | Cleanup::Istio
        )
    }

    /// What it is, for a teardown line that says it was kept.
    pub fn describe(&self) -> String {
        match self {
            Cleanup::Forwarder { step, .. } => format!("forwarder of `{step}`"),
            Cleanup::Traffic { traffic, .. } => format!("background traffic `{}`", traffic.name),
            Cleanup::PortForward { step, .. } => format!("port-forward of `{step}`"),
            Cleanup::Namespace { name, .. } => format!("namespace {name}"),
            Cleanup::Objects { step, objects } => format!(
                "objects created by `{step}`: {}",
                objects
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Cleanup::Labels {
                namespace,
                previous,
            } => format!(
                "labels {} on namespace {namespace}",
                previous.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
            Cleanup::Istio => "the Istio control plane the run installed".into(),
        }
    }

    /// Undoes it; the lines say what was done, for the run's teardown list.
    pub async fn undo(self, ctx: &mut Context) -> Vec<String> {
        match self {
            Cleanup::Forwarder { step, forwarder } => {
                let stats = forwarder.stop(Duration::from_secs(5)).await;
                vec![format!(
                    "stopped forwarder of `{step}` ({} connections, {} failed)",
                    stats.accepted, stats.failed
                )]
            }
            Cleanup::Traffic { step, traffic } => {
                let name = traffic.name.clone();
                let report = traffic.stop().await;
                report.write_csv(&ctx.artifacts);
                vec![format!(
                    "stopped background traffic `{name}` of `{step}`, which no traffic-stop step checked ({} requests, {} failed)",
                    report.samples.len(),
                    report.failed()
                )]
            }
            Cleanup::PortForward { step, handle } => {
                handle.stop();
                vec![format!("stopped port-forward of `{step}`")]
            }
            Cleanup::Namespace { name, uid } => {
                let ns = ObjectRef::namespace(&name, uid);
                delete_objects(ctx, &format!("namespace {name}"), &[ns]).await
            }
            Cleanup::Objects { step, mut objects } => {
                objects.reverse();
                delete_objects(ctx, &format!("objects created by `{step}`"), &objects).await
            }
            Cleanup::Labels {
                namespace,
                previous,
            } => restore_labels(ctx, &namespace, &previous).await,
            Cleanup::Istio => uninstall_istio(ctx).await,
        }
    }
}

/// The run's cleanup stack, in creation order.
#[derive(Default)]
pub struct CleanupStack(Vec<Cleanup>);

impl CleanupStack {
    /// Registers something the run created.
    pub fn push(&mut self, c: Cleanup) {
        self.0.push(c);
    }

    /// Registers what the run created, in order.
    pub fn extend(&mut self, c: impl IntoIterator<Item = Cleanup>) {
        self.0.extend(c);
    }

    /// The entries, oldest first.
    pub fn entries(&self) -> &[Cleanup] {
        &self.0
    }

    /// Takes the background traffic named `name` off the stack (its `traffic-stop` step
    /// stops and checks it).
    pub fn take_traffic(&mut self, name: &str) -> Option<BackgroundTraffic> {
        let pos = self
            .0
            .iter()
            .position(|c| matches!(c, Cleanup::Traffic { traffic, .. } if traffic.name == name))?;
        match self.0.remove(pos) {
            Cleanup::Traffic { traffic, .. } => Some(traffic),
            _ => None,
        }
    }

    /// True once this run installed Istio.
    pub fn installed_istio(&self) -> bool {
        self.0.iter().any(|c| matches!(c, Cleanup::Istio))
    }

    /// Takes every entry, newest first.
    pub fn drain_newest_first(&mut self) -> Vec<Cleanup> {
        let mut all = std::mem::take(&mut self.0);
        all.reverse();
        all
    }
}

/// Undoes the run's cleanup stack, newest first. Entries in the cluster are undone only when
/// the cluster outlives the run (`cluster_outlives_run`) and the run does not `keep` what it
/// made (each kept entry gets a line saying so); the first `istio` entry alone is undone (an
/// upgrade registers the same control plane again).
pub async fn undo_all(ctx: &mut Context, cluster_outlives_run: bool, keep: bool) -> Vec<String> {
    let mut lines = Vec::new();
    let mut istio_done = false;
    let mut entries = ctx.cleanup.drain_newest_first();
    // Namespaces go before the control plane, as `kubectl delete ns` before
    // `istioctl uninstall` in istio.io's cleanup.
    entries.sort_by_key(|c| matches!(c, Cleanup::Istio));
    for c in entries {
        if c.in_cluster() && !cluster_outlives_run {
            continue;
        }
        if matches!(c, Cleanup::Istio) {
            if istio_done {
                continue;
            }
            istio_done = true;
        }
        if c.in_cluster() && keep {
            lines.push(format!("kept {}", c.describe()));
            continue;
        }
        lines.extend(c.undo(ctx).await);
    }
    lines
}

/// How long teardown waits for what it deletes to be gone (per entry of the stack), unless
/// the run says otherwise ([`crate::runner::RunOptions::delete_timeout`]).
pub const DELETE_TIMEOUT: Duration = Duration::from_secs(180);

/// Deletes `objects` (in that order) and waits until they are gone; one line for what was
/// deleted, one for what was already gone or is someone else's now, one naming what is
/// still there (and its finalizers) at the deadline.
async fn delete_objects(ctx: &mut Context, what: &str, objects: &[ObjectRef]) -> Vec<String> {
    let client = match ctx.client().await {
        Ok(c) => c,
        Err(e) => return vec![format!("cannot delete {what}: {e}")],
    };
    let deadline = Instant::now() + ctx.delete_timeout;
    match delete_and_wait(&client, objects, deadline).await {
        Ok(done) => {
            let mut lines = Vec::new();
            let list = |v: &[String]| v.join(", ");
            if !done.gone.is_empty() {
                lines.push(format!("deleted {what}: {}", list(&done.gone)));
            }
            if !done.missing.is_empty() {
                lines.push(format!("already gone: {}", list(&done.missing)));
            }
            if !done.replaced.is_empty() {
                lines.push(format!(
                    "left alone (another object of that name is there now): {}",
                    list(&done.replaced)
                ));
            }
            lines
        }
        Err(e) => {
            let hint = e.hint().map(|h| format!(" ({h})")).unwrap_or_default();
            vec![format!("teardown of {what} incomplete: {e}{hint}")]
        }
    }
}

/// Puts a namespace's labels back as they were: removes those the run added, restores the
/// values it changed.
async fn restore_labels(
    ctx: &mut Context,
    namespace: &str,
    previous: &BTreeMap<String, Option<String>>,
) -> Vec<String> {
    let keys = previous.keys().cloned().collect::<Vec<_>>().join(", ");
    let client = match ctx.client().await {
        Ok(c) => c,
        Err(e) => {
            return vec![format!(
                "cannot restore labels {keys} on namespace {namespace}: {e}"
            )];
        }
    };
    let api: kube::Api<Namespace> = kube::Api::all(client);
    let body = serde_json::json!({ "metadata": { "labels": previous } });
    let pp = kube::api::PatchParams::default();
    match api
        .patch(namespace, &pp, &kube::api::Patch::Merge(&body))
        .await
    {
        Ok(_) => vec![format!(
            "restored namespace {namespace}'s labels: {}",
            previous
                .iter()
                .map(|(k, v)| match v {
                    Some(v) => format!("{k}={v}"),
                    None => format!("{k} removed"),
                })
                .collect::<Vec<_>>()
                .join(", ")
        )],
        Err(kube::Error::Api(s)) if s.code == 404 => {
            vec![format!(
                "namespace {namespace} is gone; its labels need no restoring"
            )]
        }
        Err(e) => vec![format!(
            "cannot restore labels {keys} on namespace {namespace}: {}",
            crate::kubeops::KubeError::call("patching the namespace", e)
        )],
    }
}

/// `istioctl uninstall --purge -y` (`x uninstall` before 1.15), then the `istio-system`
/// namespace (watched until gone).
async fn uninstall_istio(ctx: &mut Context) -> Vec<String> {
    let mut lines = Vec::new();
    let (Some(istioctl), Some(cluster)) = (ctx.istio.istioctl.clone(), ctx.cluster.clone()) else {
        return lines;
    };
    let args = crate::istio::uninstall_args(ctx.istio.version.as_deref());
    let argv = crate::istio::istioctl_argv(&args, &cluster.kubeconfig, cluster.context.as_deref());
    let deadline = Instant::now() + Duration::from_secs(300);
    lines.push(
        match crate::istio::run_istioctl(&istioctl, &argv, deadline).await {
            Ok(r) if r.exit_code == 0 => format!("uninstalled Istio (istioctl {})", args.join(" ")),
            Ok(r) => format!(
                "istioctl uninstall exited {}: {}",
                r.exit_code,
                r.stderr.trim()
            ),
            Err(e) => format!("istioctl uninstall failed: {e}"),
        },
    );
    let ns = [ObjectRef::namespace("istio-system", None)];
    lines.extend(delete_objects(ctx, "namespace istio-system", &ns).await);
    lines
}
