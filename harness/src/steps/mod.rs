//! Steps: one file per step kind, each with the kind's spec (what a scenario writes) and the
//! code that runs it, calling into the concept modules (`kube`, `istio`, `forwarder`,
//! `probes`). A newcomer finds the code of a walkthrough step by its name here.

pub mod apply;
pub mod dashboards;
pub mod exec;
pub mod forward;
pub mod http;
pub mod ingress;
pub mod istio_install;
pub mod istio_upgrade;
pub mod istioctl;
pub mod label;
pub mod patch;
pub mod port_forward;
pub mod snapshot;
pub mod traffic;
pub mod wait;

use std::time::Instant;

use crate::Outputs;
use crate::context::Context;
use crate::error::StepError;
use crate::scenario::StepKind;

/// Runs one step (variables already expanded) until it succeeds, fails, or `deadline` passes.
pub async fn run(
    kind: &StepKind,
    ctx: &mut Context,
    deadline: Instant,
) -> Result<Outputs, StepError> {
    match kind {
        StepKind::IstioInstall(s) => istio_install::run(s, ctx, deadline).await,
        StepKind::Istioctl(s) => istioctl::run(s, ctx, deadline).await,
        StepKind::Label(s) => label::run(s, ctx).await,
        StepKind::Apply(s) => apply::run(s, ctx, deadline).await,
        StepKind::Wait(s) => wait::run(s, ctx, deadline).await,
        StepKind::Exec(s) => exec::run(s, ctx, deadline).await,
        StepKind::Ingress(s) => ingress::run(s, ctx).await,
        StepKind::Forward(s) => forward::run(s, ctx).await,
        StepKind::PortForward(s) => port_forward::run(s, ctx).await,
        StepKind::Http(s) => http::run(s, ctx, deadline).await,
        StepKind::Traffic(s) => traffic::run(s, ctx, deadline).await,
        StepKind::TrafficStop(s) => traffic::stop(s, ctx, deadline).await,
        StepKind::Patch(s) => patch::run(s, ctx).await,
        StepKind::IstioUpgrade(s) => istio_upgrade::run(s, ctx, deadline).await,
        StepKind::Prometheus(s) => dashboards::run_prometheus(s, ctx, deadline).await,
        StepKind::Grafana(s) => dashboards::run_grafana(s, ctx, deadline).await,
        StepKind::Kiali(s) => dashboards::run_kiali(s, ctx, deadline).await,
        StepKind::Jaeger(s) => dashboards::run_jaeger(s, ctx, deadline).await,
        StepKind::Snapshot(s) => snapshot::run(s, ctx).await,
    }
}

/// Problems with a step's spec found before anything runs (messages without location).
pub fn problems(kind: &StepKind) -> Vec<String> {
    match kind {
        StepKind::IstioInstall(_) => vec![],
        StepKind::Istioctl(s) => s.expect.problems(),
        StepKind::Label(s) => label::problems(s),
        StepKind::Apply(s) => {
            if s.files.is_empty() {
                vec!["`files` is empty: name at least one file or directory".into()]
            } else {
                vec![]
            }
        }
        StepKind::Wait(s) => wait::problems(s),
        StepKind::Exec(s) => exec::problems(s),
        StepKind::Ingress(_) => vec![],
        StepKind::Forward(s) => forward::problems(s),
        StepKind::PortForward(_) => vec![],
        StepKind::Http(s) => http::problems(s),
        StepKind::Traffic(s) => s.problems(),
        StepKind::TrafficStop(_) => vec![],
        StepKind::Patch(s) => patch::problems(s),
        StepKind::IstioUpgrade(s) => istio_upgrade::problems(s),
        StepKind::Prometheus(s) => s.queries.iter().flat_map(|q| q.problems()).collect(),
        StepKind::Grafana(s) => s.expect.problems(),
        StepKind::Kiali(s) => s.expect.problems(),
        StepKind::Jaeger(s) => s.expect.problems(),
        StepKind::Snapshot(s) => snapshot::problems(s),
    }
}

/// Files a step reads, for the "missing file" check of validation.
pub fn files(kind: &StepKind) -> Vec<String> {
    match kind {
        StepKind::Apply(s) => s.files.clone(),
        _ => vec![],
    }
}

/// A one-line summary for display names.
pub fn summary(kind: &StepKind) -> String {
    match kind {
        StepKind::IstioInstall(s) => {
            format!("profile={}", s.profile.as_deref().unwrap_or("(scenario)"))
        }
        StepKind::Istioctl(s) => s.args.join(" "),
        StepKind::Label(s) => format!(
            "{} {}",
            s.namespace.as_deref().unwrap_or(""),
            s.labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        )
        .trim()
        .to_string(),
        StepKind::Apply(s) => s
            .files
            .iter()
            .map(|f| f.rsplit('/').next().unwrap_or(f).to_string())
            .collect::<Vec<_>>()
            .join(", "),
        StepKind::Wait(s) => wait::summary(s),
        StepKind::Exec(s) => s.command.join(" "),
        StepKind::Ingress(s) => format!("{}/{}", s.service, s.port),
        StepKind::Forward(s) => format!("{} -> {}", s.listen, s.to),
        StepKind::PortForward(s) => format!("svc/{}:{}", s.service, s.port),
        StepKind::Http(s) => s.url.clone(),
        StepKind::Traffic(s) => match (&s.background, s.requests) {
            (Some(name), _) => format!("{} in the background ({name})", s.url),
            (None, n) => format!("{} x{}", s.url, n.unwrap_or(0)),
        },
        StepKind::TrafficStop(s) => s.name.clone(),
        StepKind::Patch(s) => format!("{}/{}", s.kind, s.name),
        StepKind::IstioUpgrade(s) => istio_upgrade::summary(s),
        StepKind::Prometheus(s) => s.url.clone(),
        StepKind::Grafana(s) => s.url.clone(),
        StepKind::Kiali(s) => s.url.clone(),
        StepKind::Jaeger(s) => s.url.clone(),
        StepKind::Snapshot(s) => s.name.clone(),
    }
}

/// The variable prefix a step captures into, if its kind captures anything.
pub fn capture_name(kind: &StepKind) -> Option<&str> {
    match kind {
        StepKind::Exec(s) => s.capture.as_deref(),
        StepKind::Istioctl(s) => s.capture.as_deref(),
        StepKind::Ingress(s) => Some(&s.capture),
        StepKind::Forward(s) => Some(&s.capture),
        StepKind::PortForward(s) => Some(s.capture.as_deref().unwrap_or(&s.service)),
        StepKind::Http(s) => s.capture.as_deref(),
        _ => None,
    }
}

/// The keys a capturing step defines (`${capture.key}`).
pub fn capture_keys(kind: &StepKind) -> &'static [&'static str] {
    match kind {
        StepKind::Exec(_) => &["stdout", "exit-code", "title", "pod"],
        StepKind::Istioctl(_) => &["stdout", "exit-code"],
        StepKind::Ingress(_) => &["host", "port", "address", "url", "load-balancer"],
        StepKind::Forward(_) | StepKind::PortForward(_) => &["host", "port", "address", "url"],
        StepKind::Http(_) => &["status", "title"],
        _ => &[],
    }
}

/// Where a failed step's kube API error came from, as a short sentence.
pub(crate) fn kube_err(what: &str, e: kube::Error) -> StepError {
    crate::kube::describe_error(what, e)
}

/// Seconds left until `deadline` (zero when past).
pub(crate) fn left(deadline: Instant) -> std::time::Duration {
    deadline.saturating_duration_since(Instant::now())
}
