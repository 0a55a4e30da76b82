//! `istio-upgrade`: move a running mesh to another Istio release, the two ways Istio's docs
//! describe, and wait until the data plane runs the new proxies.
//!
//! - `in-place`: `istioctl upgrade --set profile=<p> -y` with the new release's istioctl, a wait
//!   for the profile's components, then `kubectl rollout restart` of the workloads so their
//!   sidecars are injected again.
//! - `canary`: `istioctl install --set profile=<p> --revision <rev> -y` beside the old control
//!   plane, a wait for `istiod-<rev>`, then each namespace relabeled (`istio-injection`
//!   removed, `istio.io/rev=<rev>`), its workloads restarted, and the old revision removed with
//!   `istioctl uninstall --revision <old> -y` (unless `remove-old: false`).
//!
//! Either way the step ends when every pod with a sidecar in `namespaces`, and every gateway in
//! `istio-system` (gateways are upgraded in place in both modes), runs the new version's proxy
//! and is ready. The new release is prepared like the scenario's own (a
//! verified download recorded in `istio-e2e.lock`, or `dir:`), and later steps see it:
//! `${istio.version}`, `${istio.dir}` and the istioctl of later steps are the new release's.
//! Run background `traffic` across this step to prove the upgrade drops no requests.
//!
//! ```yaml
//! - name: upgrade to ${param.to}
//!   istio-upgrade: { to: "${param.to}", mode: canary, namespaces: [default] }
//! ```

use std::path::PathBuf;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::Outputs;
use crate::context::Context;
use crate::error::StepError;
use crate::scenario::Templated;

/// How the upgrade is done.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum UpgradeMode {
    /// `istioctl upgrade`: the control plane is replaced where it runs.
    #[default]
    InPlace,
    /// A second control plane revision, workloads moved to it, the old one removed.
    Canary,
}

/// Spec of an `istio-upgrade` step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct IstioUpgradeSpec {
    /// The version to move to, e.g. `1.30.3`.
    pub to: String,
    /// An extracted release of that version to use instead of a download.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
    /// `in-place` (default) or `canary`; a variable such as `${param.mode}` is allowed.
    #[serde(default)]
    pub mode: Templated<UpgradeMode>,
    /// Canary: the new revision's name; the version with dashes (`1-30-3`) by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// Profile; the scenario's `istio.profile` when not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// `--set` values for the new control plane.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub set: Vec<String>,
    /// Namespaces whose workloads move to the new data plane; the scenario's by default.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// Canary: remove the old revision once the data plane moved (default true).
    #[serde(default = "default_remove_old")]
    pub remove_old: Templated<bool>,
}

fn default_remove_old() -> Templated<bool> {
    Templated::Literal(true)
}

impl std::fmt::Display for UpgradeMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            UpgradeMode::InPlace => "in-place",
            UpgradeMode::Canary => "canary",
        })
    }
}

impl schemars::JsonSchema for UpgradeMode {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "UpgradeMode".into()
    }

    /// The names [`UpgradeMode::from_str`](std::str::FromStr) reads.
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "How the upgrade is done: `in-place` or `canary`.",
            "type": "string",
            "enum": ["in-place", "canary"],
        })
    }
}

/// A `mode` that is no upgrade mode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`mode` {0:?} is not an upgrade mode: use `in-place` or `canary`")]
pub struct UnknownMode(pub String);

impl std::str::FromStr for UpgradeMode {
    type Err = UnknownMode;

    /// Reads `in-place` or `canary`; the error says which are accepted.
    fn from_str(text: &str) -> Result<UpgradeMode, UnknownMode> {
        match text.trim() {
            "in-place" => Ok(UpgradeMode::InPlace),
            "canary" => Ok(UpgradeMode::Canary),
            other => Err(UnknownMode(other.to_string())),
        }
    }
}

impl IstioUpgradeSpec {
    /// The mode, once variables are expanded.
    pub fn mode(&self) -> Result<UpgradeMode, crate::scenario::vars::VarError> {
        self.mode.resolve(&Default::default())
    }
}

fn problems(s: &IstioUpgradeSpec) -> Vec<String> {
    let mut p = Vec::new();
    if !s.to.contains("${") && crate::istio::minor_of(&s.to).is_none() {
        p.push(format!(
            "`to` {:?} is not an Istio version like 1.30.3",
            s.to
        ));
    }
    if s.mode.literal() == Some(&UpgradeMode::InPlace) && s.revision.is_some() {
        p.push("`revision` is for `mode: canary`".into());
    }
    p
}

fn summary(s: &IstioUpgradeSpec) -> String {
    format!("to {} ({})", s.to, s.mode)
}

/// The istioctl argument vectors the upgrade runs, in order (without `--kubeconfig`): the
/// upgrade or canary install, then, for a canary that removes the old revision, its uninstall.
pub fn plan(
    s: &IstioUpgradeSpec,
    mode: UpgradeMode,
    profile: &str,
    old_revision: Option<&str>,
) -> Vec<Vec<String>> {
    match mode {
        UpgradeMode::InPlace => vec![crate::istio::upgrade_args(profile, &s.set)],
        UpgradeMode::Canary => {
            let rev = new_revision(s);
            let mut v = vec![crate::istio::install_args(profile, &s.set, Some(&rev))];
            if s.remove_old.value() {
                v.push(crate::istio::uninstall_revision_args(
                    old_revision.unwrap_or("default"),
                    &s.to,
                ));
            }
            v
        }
    }
}

fn new_revision(s: &IstioUpgradeSpec) -> String {
    s.revision
        .clone()
        .unwrap_or_else(|| crate::istio::revision_for(&s.to))
}

/// The release an upgrade moves to, prepared before anything changes in the cluster.
struct NewRelease {
    /// Its files, when prepared from a directory or a download.
    release: Option<crate::download::IstioRelease>,
    /// Its istioctl.
    istioctl: crate::istio::Istioctl,
    /// The compatibility warning for this Kubernetes version, if any.
    warning: Option<String>,
}

/// Checks that the cluster supports version `to` and prepares its release and istioctl.
async fn prepare(s: &IstioUpgradeSpec, client: &kube::Client) -> Result<NewRelease, StepError> {
    let warning = crate::istio::check_cluster(client, Some(&s.to))
        .await
        .map_err(|e| {
            if e.is_incompatible() {
                StepError::from(e)
                    .with_hint("pick an Istio version this Kubernetes version supports")
            } else {
                e.into()
            }
        })?;
    // The new release: a local directory or a verified download.
    let release =
        crate::istio::prepare_release(s.dir.as_ref().map(PathBuf::from).as_deref(), Some(&s.to))
            .await?;
    let istioctl = release
        .as_ref()
        .and_then(|r| r.istioctl.clone())
        .ok_or_else(|| {
            StepError::fatal(format!("no istioctl for Istio {}", s.to)).with_hint(
                "give a release with bin/istioctl in `dir`, or let the harness download it",
            )
        })?;
    Ok(NewRelease {
        release,
        istioctl: crate::istio::Istioctl::at(istioctl),
        warning,
    })
}

/// The components the new control plane must roll out, and the canary's revision.
fn new_components(
    s: &IstioUpgradeSpec,
    mode: UpgradeMode,
    profile: &str,
) -> (Vec<String>, Option<String>) {
    let mut components = crate::istio::profile_components(profile);
    let revision = match mode {
        UpgradeMode::InPlace => None,
        UpgradeMode::Canary => {
            let rev = new_revision(s);
            components.retain(|c| c != "istiod");
            components.push(format!("istiod-{rev}"));
            Some(rev)
        }
    };
    (components, revision)
}

/// Moves each namespace's workloads to the new data plane: relabeled (canary), restarted, and
/// waited for until their proxies run version `to`. Returns the restarted deployments
/// (`ns/name`) and the number of proxies at the new version.
async fn move_data_plane(
    client: &kube::Client,
    namespaces: &[String],
    revision: Option<&str>,
    to: &str,
    deadline: Instant,
) -> Result<(Vec<String>, usize), StepError> {
    let mut restarted = Vec::new();
    let mut proxies = 0;
    for ns in namespaces {
        if let Some(rev) = revision {
            let api: kube::Api<k8s_openapi::api::core::v1::Namespace> =
                kube::Api::all(client.clone());
            let patch = serde_json::json!({"metadata": {"labels": {
                "istio-injection": null, "istio.io/rev": rev
            }}});
            api.patch(
                ns,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&patch),
            )
            .await
            .map_err(|e| super::kube_err(&format!("relabeling namespace {ns}"), e))?;
        }
        let names = crate::kubeops::wait::rollout_restart(client, ns, &[]).await?;
        crate::kubeops::wait::deployments_rolled_out(client, ns, &names, deadline).await?;
        proxies += crate::kubeops::wait::proxies_at_version(client, ns, to, deadline).await?;
        restarted.extend(names.into_iter().map(|n| format!("{ns}/{n}")));
    }
    // The gateways are upgraded in place by either mode (they are not per-revision).
    proxies +=
        crate::kubeops::wait::proxies_at_version(client, "istio-system", to, deadline).await?;
    Ok((restarted, proxies))
}

/// Makes later steps use the new release (`${istio.version}`, its istioctl and files, the
/// canary's revision); returns the version the mesh ran before.
fn switch_to(ctx: &mut Context, to: &str, new: &NewRelease, revision: Option<String>) -> String {
    let from = ctx
        .istio
        .version
        .replace(to.to_string())
        .unwrap_or_default();
    ctx.istio.istioctl = Some(new.istioctl.clone());
    if let Some(r) = &new.release {
        crate::istio::use_release(ctx, r);
    }
    ctx.istio.revision = revision;
    ctx.vars.set("istio.version", to.to_string());
    from
}

async fn run(
    s: &IstioUpgradeSpec,
    ctx: &mut Context,
    deadline: Instant,
) -> Result<Outputs, StepError> {
    let mode = s.mode().map_err(|e| StepError::fatal(e.to_string()))?;
    let client = ctx.client().await?;
    let cluster = ctx
        .cluster
        .clone()
        .ok_or_else(|| StepError::fatal("istio-upgrade needs a cluster"))?;
    let mut new = prepare(s, &client).await?;
    if cluster.provider == crate::cluster::ProviderKind::Lab.name()
        && let Some(rel) = &new.release
    {
        // The lab runs the stand-in istioctl for the new release too (see the runner's
        // `use_lab_standin`). Its images are tagged for the run's first release only.
        let release = crate::cluster::standins::Release {
            dir: rel.dir.clone(),
            version: s.to.clone(),
        };
        let built = crate::cluster::standins::find();
        if let Some(i) = crate::cluster::standins::istioctl_for(&release, built.as_ref()) {
            new.istioctl = i;
        }
    }
    let profile = s
        .profile
        .clone()
        .unwrap_or_else(|| ctx.istio.profile.clone());
    let namespaces = if s.namespaces.is_empty() {
        vec![ctx.namespace.clone()]
    } else {
        s.namespaces.clone()
    };
    let steps = plan(s, mode, &profile, ctx.istio.revision.as_deref());
    let log = ctx.artifacts.join(format!("istioctl-upgrade-{}.log", s.to));

    // 1. The new control plane.
    let first = steps[0][0].clone();
    crate::istio::run_checked(&new.istioctl, &first, &steps[0], &cluster, &log, deadline).await?;
    ctx.cleanup.push(crate::cleanup::Cleanup::Istio);
    let (components, revision) = new_components(s, mode, &profile);
    crate::kubeops::wait::deployments_rolled_out(&client, "istio-system", &components, deadline)
        .await?;

    // 2. The data plane: relabel (canary), restart, wait for the new proxies.
    let (restarted, proxies) =
        move_data_plane(&client, &namespaces, revision.as_deref(), &s.to, deadline).await?;

    // 3. Canary: the old revision goes.
    if let Some(args) = steps.get(1) {
        crate::istio::run_checked(&new.istioctl, "uninstall", args, &cluster, &log, deadline)
            .await?;
    }

    let from = switch_to(ctx, &s.to, &new, revision.clone());
    let mut out = Outputs::new();
    out.insert("from".into(), from.into());
    out.insert("to".into(), s.to.clone().into());
    out.insert("mode".into(), summary(s).into());
    if let Some(r) = revision {
        out.insert("revision".into(), r.into());
    }
    out.insert("restarted".into(), restarted.into());
    out.insert("proxies".into(), proxies.into());
    if let Some(w) = new.warning {
        out.insert("compatibility-warning".into(), w.into());
    }
    Ok(out)
}

impl super::Kind for IstioUpgradeSpec {
    fn default_timeout(&self) -> std::time::Duration {
        super::secs(900)
    }
    fn summary(&self) -> String {
        summary(self)
    }
    fn problems(&self) -> Vec<String> {
        problems(self)
    }
    async fn run(
        &self,
        ctx: &mut Context,
        deadline: std::time::Instant,
    ) -> Result<Outputs, StepError> {
        run(self, ctx, deadline).await
    }
}

crate::scenario::resolve::resolve_fields!(IstioUpgradeSpec {
    to,
    dir,
    mode,
    revision,
    profile,
    set,
    namespaces,
    remove_old
});

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> IstioUpgradeSpec {
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn in_place_runs_istioctl_upgrade_of_the_profile() {
        let s = spec("to: 1.30.3");
        assert_eq!(s.mode(), Ok(UpgradeMode::InPlace));
        assert_eq!(
            plan(&s, UpgradeMode::InPlace, "demo", None),
            vec![vec!["upgrade", "--set", "profile=demo", "-y"]]
        );
        assert!(problems(&s).is_empty());
    }

    #[test]
    fn canary_installs_a_revision_then_removes_the_old_one() {
        let s = spec("{ to: 1.30.3, mode: canary, set: [meshConfig.accessLogFile=/dev/stdout] }");
        assert_eq!(
            plan(&s, UpgradeMode::Canary, "demo", None),
            vec![
                vec![
                    "install",
                    "--set",
                    "profile=demo",
                    "-y",
                    "--set",
                    "meshConfig.accessLogFile=/dev/stdout",
                    "--revision",
                    "1-30-3"
                ],
                vec!["uninstall", "--revision", "default", "-y"],
            ]
        );
        let keep = spec("{ to: 1.30.3, mode: canary, revision: canary, remove-old: false }");
        let c = UpgradeMode::Canary;
        assert_eq!(plan(&keep, c, "minimal", Some("1-29-0")).len(), 1);
        assert_eq!(plan(&keep, c, "minimal", Some("1-29-0"))[0][5], "canary");
        let chained = spec("{ to: 1.30.3, mode: canary }");
        assert_eq!(
            plan(&chained, c, "demo", Some("1-29-0"))[1],
            vec!["uninstall", "--revision", "1-29-0", "-y"]
        );
    }

    #[test]
    fn bad_specs_are_explained() {
        let s = spec("{ to: latest, revision: x }");
        let p = problems(&s);
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].contains("not an Istio version"));
        assert!(p[1].contains("`revision` is for `mode: canary`"));
        // A mode that is none is refused when the file is read.
        let e = serde_saphyr::from_str::<IstioUpgradeSpec>("{ to: 1.30.3, mode: blue-green }")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`mode` \"blue-green\" is not an upgrade mode: use `in-place` or `canary`"),
            "{e}"
        );
        // A variable is checked once expanded.
        assert!(problems(&spec("{ to: \"${param.to}\", mode: \"${param.mode}\" }")).is_empty());
    }
}
