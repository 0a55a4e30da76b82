//! `istio-install`: the walkthrough's `istioctl install --set profile=demo -y`, after the
//! compatibility precheck, then a wait for the profile's components to roll out.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::Outputs;
use crate::context::Context;
use crate::error::StepError;
use crate::istio::{InstallPlan, InstalledControlPlane};

/// Spec of an `istio-install` step.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct IstioInstallSpec {
    /// Profile; the scenario's `istio.profile` (or `demo`) when not given.
    #[serde(default)]
    pub profile: Option<String>,
    /// `--set` values, e.g. `meshConfig.enableTracing=true`.
    #[serde(default)]
    pub set: Vec<String>,
    /// Install as this revision (canary upgrades).
    #[serde(default)]
    pub revision: Option<String>,
}

async fn run(
    s: &IstioInstallSpec,
    ctx: &mut Context,
    deadline: Instant,
) -> Result<Outputs, StepError> {
    let client = ctx.client().await?;
    let mut out = Outputs::new();
    let found = crate::istio::installed(&client).await?;
    let plan = crate::istio::install_plan(found, ctx.cluster_outlives_run, ctx.reinstall_istio);
    // The precheck is against the Istio that will run: the one found, when the run uses it.
    let version = match &plan {
        InstallPlan::UseExisting(planes) => planes.iter().find_map(|p| p.version.clone()),
        _ => ctx.istio.version.clone(),
    };
    if let Some(warning) = crate::istio::check_cluster(&client, version.as_deref()).await? {
        out.insert("compatibility-warning".into(), warning.into());
    }
    if let InstallPlan::UseExisting(planes) = &plan {
        return use_existing(planes, ctx, out);
    }
    let Some(istioctl) = ctx.istio.istioctl.clone() else {
        return Err(StepError::fatal("istioctl not found: neither <istio dir>/bin/istioctl nor istioctl on PATH")
            .with_hint("set ISTIO_E2E_ISTIO_VERSION so the harness downloads the release, or pass --istio-dir with a release that has bin/istioctl; on the lab provider, build the stand-ins once with fixtures/standins/build-images"));
    };
    let cluster = ctx
        .cluster
        .clone()
        .ok_or_else(|| StepError::fatal("istio-install needs a cluster"))?;
    let profile = s
        .profile
        .clone()
        .unwrap_or_else(|| ctx.istio.profile.clone());
    let args = crate::istio::install_args(&profile, &s.set, s.revision.as_deref());
    let log = ctx.artifacts.join("istioctl-install.log");
    crate::istio::run_checked(&istioctl, "install", &args, &cluster, &log, deadline).await?;
    if plan == InstallPlan::Install {
        ctx.cleanup.push(crate::cleanup::Cleanup::Istio);
    }
    ctx.istio.revision = s.revision.clone();
    let components = crate::istio::profile_components(&profile);
    let done = crate::kubeops::wait::deployments_rolled_out(
        &client,
        "istio-system",
        &components,
        deadline,
    )
    .await?;
    out.insert("profile".into(), profile.into());
    out.insert("components".into(), done.into());
    Ok(out)
}

/// An Istio is already on a cluster that outlives the run: use it (its version and revision
/// become the run's), install nothing, and leave it at teardown.
fn use_existing(
    planes: &[InstalledControlPlane],
    ctx: &mut Context,
    mut out: Outputs,
) -> Result<Outputs, StepError> {
    let shown: Vec<String> = planes
        .iter()
        .map(|p| {
            format!(
                "{} (revision {}, {})",
                p.name,
                p.revision,
                p.version.as_deref().unwrap_or("version unknown")
            )
        })
        .collect();
    tracing::info!(
        "using the Istio already on the cluster: {}",
        shown.join(", ")
    );
    if let Some(p) = planes.first() {
        if p.revision != "default" {
            ctx.istio.revision = Some(p.revision.clone());
        }
        if let Some(v) = &p.version {
            ctx.istio.version = Some(v.clone());
            ctx.vars.set("istio.version", v.clone());
        }
    }
    out.insert("existing".into(), shown.join(", ").into());
    Ok(out)
}

impl super::Kind for IstioInstallSpec {
    fn default_timeout(&self) -> std::time::Duration {
        super::secs(600)
    }
    fn summary(&self) -> String {
        format!(
            "profile={}",
            self.profile.as_deref().unwrap_or("(scenario)")
        )
    }
    fn uses_istio(&self) -> bool {
        true
    }
    async fn run(
        &self,
        ctx: &mut Context,
        deadline: std::time::Instant,
    ) -> Result<Outputs, StepError> {
        run(self, ctx, deadline).await
    }
}

crate::scenario::resolve::resolve_fields!(IstioInstallSpec {
    profile,
    set,
    revision
});
