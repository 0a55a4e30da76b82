//! `wait`: pods ready with every container ready and an expected container count (the
//! walkthrough's "until every pod is 2/2 Running"), deployment rollouts, or any condition.

use std::time::Instant;

use kube::api::{Api, DynamicObject};
use kube::core::GroupVersionKind;
use kube::runtime::wait::await_condition;
use serde::{Deserialize, Serialize};

use crate::Outputs;
use crate::context::Context;
use crate::error::StepError;
use crate::scenario::Templated;

/// Spec of a `wait` step: exactly one of `pods`, `deployments`, `condition`, written as that
/// one key (`wait: { pods: { ... } }`). A block with none or several is refused when the file
/// is read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case", try_from = "WaitFields")]
pub enum WaitSpec {
    /// Pods ready.
    Pods(PodsWait),
    /// Deployments rolled out.
    Deployments(DeploymentsWait),
    /// Any object's condition.
    Condition(ConditionWait),
}

/// The block as written, before "exactly one of" is checked.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[schemars(
    description = "Wait for exactly one of `pods`, `deployments`, `condition`.",
    extend("oneOf" = [
        { "required": ["pods"] }, { "required": ["deployments"] }, { "required": ["condition"] }
    ])
)]
struct WaitFields {
    /// Pods ready.
    #[serde(default)]
    pods: Option<PodsWait>,
    /// Deployments rolled out.
    #[serde(default)]
    deployments: Option<DeploymentsWait>,
    /// Any object's condition.
    #[serde(default)]
    condition: Option<ConditionWait>,
}

impl TryFrom<WaitFields> for WaitSpec {
    type Error = super::SpecError;

    fn try_from(f: WaitFields) -> Result<Self, super::SpecError> {
        match (f.pods, f.deployments, f.condition) {
            (Some(p), None, None) => Ok(WaitSpec::Pods(p)),
            (None, Some(d), None) => Ok(WaitSpec::Deployments(d)),
            (None, None, Some(c)) => Ok(WaitSpec::Condition(c)),
            (p, d, c) => {
                let n =
                    usize::from(p.is_some()) + usize::from(d.is_some()) + usize::from(c.is_some());
                Err(super::SpecError::new(
                    "wait",
                    format!(
                        "a wait step needs exactly one of `pods`, `deployments`, `condition` (found {n})"
                    ),
                ))
            }
        }
    }
}

/// Pods ready: all pods matching `selector` (or all in the namespace).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PodsWait {
    /// Namespace (the scenario's when not given).
    #[serde(default)]
    pub namespace: Option<String>,
    /// Label selector, e.g. `app=ratings`.
    #[serde(default)]
    pub selector: Option<String>,
    /// Containers every pod must have (2 = app + sidecar).
    #[serde(default)]
    pub containers: Option<Templated<usize>>,
    /// At least this many pods (1 by default).
    #[serde(default)]
    pub min: Option<Templated<usize>>,
    /// How long an image pull may keep failing (`ErrImagePull`, `ImagePullBackOff`) before
    /// the wait fails with the image and the last pull error (`30s`, `5m`; 2m by default).
    #[schemars(with = "Option<crate::scenario::parse::HumanDuration>")]
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::scenario::parse::opt_duration"
    )]
    pub image_pull_grace: Option<std::time::Duration>,
    /// The sidecar every pod must carry beside its app, e.g. `istio-proxy`: a regular
    /// container (Istio on nodes before 1.33) or a native sidecar (an init container with
    /// `restartPolicy: Always`, Istio >= 1.27 on 1.33+ nodes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sidecar: Option<String>,
}

/// Deployments rolled out (`kubectl rollout status`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DeploymentsWait {
    /// Namespace (the scenario's when not given).
    #[serde(default)]
    pub namespace: Option<String>,
    /// Names; every deployment of the namespace when empty.
    #[serde(default)]
    pub names: Vec<String>,
}

/// An object's status condition, e.g. a CRD's `Established`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ConditionWait {
    /// apiVersion, e.g. `apps/v1`.
    pub api_version: String,
    /// Kind, e.g. `Deployment`.
    pub kind: String,
    /// Object name.
    pub name: String,
    /// Namespace for namespaced kinds (the scenario's when not given).
    #[serde(default)]
    pub namespace: Option<String>,
    /// The condition type, e.g. `Available`.
    #[serde(rename = "type")]
    pub type_: String,
    /// Expected status, `True` by default.
    #[serde(default)]
    pub status: Option<String>,
}

fn summary(s: &WaitSpec) -> String {
    match s {
        WaitSpec::Pods(p) => format!(
            "pods {}{}",
            p.selector.as_deref().unwrap_or("(all)"),
            p.containers
                .as_ref()
                .map(|c| format!(" {c}/{c}"))
                .unwrap_or_default()
        ),
        WaitSpec::Deployments(d) => format!(
            "deployments {}",
            if d.names.is_empty() {
                "(all)".to_string()
            } else {
                d.names.join(",")
            }
        ),
        WaitSpec::Condition(c) => format!("{}/{} {}", c.kind, c.name, c.type_),
    }
}

async fn run(s: &WaitSpec, ctx: &mut Context, deadline: Instant) -> Result<Outputs, StepError> {
    let client = ctx.client().await?;
    match s {
        WaitSpec::Pods(p) => pods(p, &client, ctx, deadline).await,
        WaitSpec::Deployments(d) => {
            let ns = ctx.ns(d.namespace.as_ref());
            let done =
                crate::kubeops::wait::deployments_rolled_out(&client, &ns, &d.names, deadline)
                    .await?;
            let mut out = Outputs::new();
            out.insert("deployments".into(), done.into());
            Ok(out)
        }
        WaitSpec::Condition(c) => condition(c, &client, ctx, deadline).await,
    }
}

/// Pods ready; outputs their names and the distinct READY counts.
async fn pods(
    p: &PodsWait,
    client: &kube::Client,
    ctx: &mut Context,
    deadline: Instant,
) -> Result<Outputs, StepError> {
    let want = crate::kubeops::wait::PodsReady {
        namespace: ctx.ns(p.namespace.as_ref()),
        selector: p.selector.clone(),
        containers: p.containers.as_ref().map(Templated::value),
        min_pods: p.min.as_ref().map_or(1, Templated::value),
        image_pull_grace: p
            .image_pull_grace
            .unwrap_or(crate::kubeops::wait::DEFAULT_IMAGE_PULL_GRACE),
        sidecar: p.sidecar.clone(),
    };
    ctx.waited_on = Some(crate::kubeops::diagnostics::PodSelection {
        namespace: want.namespace.clone(),
        selector: want.selector.clone(),
    });
    let status = ctx.status.clone();
    let report = move |line: &str| status.set(line);
    let pods = crate::kubeops::wait::pods_ready_reporting(client, &want, deadline, &report).await?;
    let mut names: Vec<String> = pods
        .iter()
        .map(|p| p.metadata.name.clone().unwrap_or_default())
        .collect();
    names.sort();
    let mut out = Outputs::new();
    out.insert("pods".into(), names.into());
    out.insert(
        "ready".into(),
        pods.iter()
            .map(|p| {
                // As kubectl's READY column: native sidecars count (they are ready now).
                let n = crate::kubeops::wait::container_readiness(p).total;
                format!("{n}/{n}")
            })
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
            .into(),
    );
    Ok(out)
}

/// An object's condition; outputs `condition: <type>=<status>`.
async fn condition(
    c: &ConditionWait,
    client: &kube::Client,
    ctx: &Context,
    deadline: Instant,
) -> Result<Outputs, StepError> {
    let (group, version) = match c.api_version.split_once('/') {
        Some((g, v)) => (g.to_string(), v.to_string()),
        None => (String::new(), c.api_version.clone()),
    };
    let gvk = GroupVersionKind::gvk(&group, &version, &c.kind);
    let (ar, caps) = kube::discovery::pinned_kind(client, &gvk)
        .await
        .map_err(|e| super::kube_err(&format!("resolving {} {}", c.api_version, c.kind), e))?;
    let api: Api<DynamicObject> = match caps.scope {
        kube::discovery::Scope::Cluster => Api::all_with(client.clone(), &ar),
        kube::discovery::Scope::Namespaced => {
            Api::namespaced_with(client.clone(), &ctx.ns(c.namespace.as_ref()), &ar)
        }
    };
    let want = c.status.clone().unwrap_or_else(|| "True".into());
    let (ty, status) = (c.type_.clone(), want.clone());
    let cond = move |o: Option<&DynamicObject>| {
        o.and_then(|o| o.data.get("status"))
            .and_then(|s| s.get("conditions"))
            .and_then(|cs| cs.as_array())
            .is_some_and(|cs| {
                cs.iter().any(|x| {
                    x.get("type").and_then(|t| t.as_str()) == Some(ty.as_str())
                        && x.get("status").and_then(|t| t.as_str()) == Some(status.as_str())
                })
            })
    };
    let left = super::time_left(deadline);
    tokio::time::timeout(left, await_condition(api, &c.name, cond))
        .await
        .map_err(|_| {
            StepError::new(format!(
                "{} {} never had condition {}={want}",
                c.kind, c.name, c.type_
            ))
        })?
        .map_err(|e| StepError::new(format!("watching {} {}: {e}", c.kind, c.name)))?;
    let mut out = Outputs::new();
    out.insert("condition".into(), format!("{}={want}", c.type_).into());
    Ok(out)
}

impl super::Kind for WaitSpec {
    fn default_timeout(&self) -> std::time::Duration {
        super::secs(300)
    }
    fn summary(&self) -> String {
        summary(self)
    }
    async fn run(
        &self,
        ctx: &mut Context,
        deadline: std::time::Instant,
    ) -> Result<Outputs, StepError> {
        run(self, ctx, deadline).await
    }
}

crate::scenario::resolve::resolve_fields!(PodsWait {
    namespace,
    selector,
    containers,
    min,
    image_pull_grace,
    sidecar
});
crate::scenario::resolve::resolve_fields!(DeploymentsWait { namespace, names });
crate::scenario::resolve::resolve_fields!(ConditionWait {
    api_version,
    kind,
    name,
    namespace,
    type_,
    status
});

impl crate::scenario::Resolve for WaitSpec {
    fn resolve(
        &self,
        vars: &crate::scenario::vars::Vars,
    ) -> Result<Self, crate::scenario::vars::VarError> {
        Ok(match self {
            WaitSpec::Pods(p) => WaitSpec::Pods(p.resolve(vars)?),
            WaitSpec::Deployments(d) => WaitSpec::Deployments(d.resolve(vars)?),
            WaitSpec::Condition(c) => WaitSpec::Condition(c.resolve(vars)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::scenario::validate::ValidateOptions;

    fn parse(step: &str) -> Result<crate::scenario::ScenarioFile, String> {
        let text = format!("name: t\nnamespace: demo\nsteps:\n  - wait:\n{step}");
        crate::scenario::parse_str(std::path::Path::new("t.yaml"), text).map_err(|d| d.to_string())
    }

    #[test]
    fn image_pull_grace_and_sidecar_are_read_validated_and_survive_variable_expansion() {
        let file = parse(
            "      pods: { selector: app=reviews, containers: 2, image-pull-grace: 30s, sidecar: istio-proxy }\n",
        )
        .expect("parses");
        assert_eq!(
            crate::scenario::validate(&file, &ValidateOptions::default()),
            vec![]
        );
        let kind = &file.scenario.steps[0].value.kind;
        let v = serde_json::to_value(kind).unwrap();
        assert_eq!(v["wait"]["pods"]["image-pull-grace"], "30s");
        assert_eq!(v["wait"]["pods"]["sidecar"], "istio-proxy");
        let back: crate::steps::StepKind = serde_json::from_value(v).unwrap();
        assert_eq!(&back, kind);
    }

    #[test]
    fn an_image_pull_grace_that_is_not_a_duration_is_refused() {
        let e = parse("      pods: { image-pull-grace: soon }\n").expect_err("refused");
        assert!(e.starts_with("t.yaml:"), "{e}");
    }
}
