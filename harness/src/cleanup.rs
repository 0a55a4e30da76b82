//! What a run created and must undo: whoever creates something pushes its [`Cleanup`] onto the
//! run's [`CleanupStack`], and teardown undoes the stack in reverse (Chainsaw's model).
//!
//! Some entries live in the run's own process (forwarders, background traffic,
//! port-forwards) and are always stopped. Others live in the cluster (a namespace the run
//! created, the Istio it installed): they are undone only when the cluster outlives the run
//! (provider `existing`); a cluster the run created goes as a whole.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;

use crate::context::Context;
use crate::forwarder::Forwarder;
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
    },
    /// The Istio control plane this run installed (`istio-install`, a canary `istio-upgrade`).
    Istio,
}

impl Cleanup {
    /// True for what lives in the cluster rather than in this process.
    pub fn in_cluster(&self) -> bool {
        matches!(self, Cleanup::Namespace { .. } | Cleanup::Istio)
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
            Cleanup::Namespace { name } => delete_namespace(ctx, &name)
                .await
                .then(|| format!("deleted namespace {name}"))
                .into_iter()
                .collect(),
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
/// the cluster outlives the run (`cluster_outlives_run`), and the first `istio` entry alone
/// (an upgrade registers the same control plane again).
pub async fn undo_all(ctx: &mut Context, cluster_outlives_run: bool) -> Vec<String> {
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
        lines.extend(c.undo(ctx).await);
    }
    lines
}

async fn delete_namespace(ctx: &mut Context, name: &str) -> bool {
    let Ok(client) = ctx.client().await else {
        return false;
    };
    let api: kube::Api<Namespace> = kube::Api::all(client);
    let _ = api.delete(name, &Default::default()).await;
    true
}

/// `istioctl uninstall --purge -y` and the `istio-system` namespace.
async fn uninstall_istio(ctx: &mut Context) -> Vec<String> {
    let mut lines = Vec::new();
    let (Some(istioctl), Some(cluster)) = (ctx.istio.istioctl.clone(), ctx.cluster.clone()) else {
        return lines;
    };
    let argv = crate::istio::istioctl_argv(
        &crate::istio::uninstall_args(),
        &cluster.kubeconfig,
        cluster.context.as_deref(),
    );
    let deadline = Instant::now() + Duration::from_secs(300);
    lines.push(
        match crate::istio::run_istioctl(&istioctl, &argv, deadline).await {
            Ok(r) if r.exit_code == 0 => "uninstalled Istio (istioctl uninstall --purge -y)".into(),
            Ok(r) => format!(
                "istioctl uninstall exited {}: {}",
                r.exit_code,
                r.stderr.trim()
            ),
            Err(e) => format!("istioctl uninstall failed: {e}"),
        },
    );
    if let Ok(client) = ctx.client().await {
        let api: kube::Api<Namespace> = kube::Api::all(client);
        if api
            .delete("istio-system", &Default::default())
            .await
            .is_ok()
        {
            lines.push("deleted namespace istio-system".into());
        }
    }
    lines
}
