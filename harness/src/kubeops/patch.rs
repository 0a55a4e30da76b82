//! Patching one object in place (`kubectl patch`): a strategic merge patch (JSON merge patch for
//! kinds that have no strategic merge, such as custom resources) or a JSON patch.
//!
//! `apply` owns whole objects under the harness's field manager; a patch changes a few fields
//! of an object that already exists, e.g. to roll a Deployment to a new version or make its
//! rollout unsafe, without restating the rest.

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::discovery::Scope;

use super::KubeError;

/// What to change.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A strategic merge patch (falls back to a JSON merge patch for kinds without one).
    Merge(serde_json::Value),
    /// JSON patch operations (RFC 6902).
    Json(json_patch::Patch),
}

/// Which object.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    /// Its kind, e.g. `Deployment`.
    pub kind: &'a str,
    /// Its apiVersion (`apps/v1`), or none to take the one the cluster prefers for the kind.
    pub api_version: Option<&'a str>,
    /// Its name.
    pub name: &'a str,
    /// Its namespace (ignored for cluster-scoped kinds).
    pub namespace: &'a str,
}

impl Target<'_> {
    fn describe(&self) -> String {
        format!("{}/{}/{}", self.kind, self.namespace, self.name)
    }
}

/// Patches the object; returns true when the server changed it (a new resourceVersion).
/// A dry run goes first, so a patch the server refuses changes nothing.
pub async fn patch(
    client: &kube::Client,
    target: &Target<'_>,
    change: &Change,
) -> Result<bool, KubeError> {
    let discovery = super::discover(client).await?;
    let found = discovery.groups().find_map(|g| {
        let resources = match target.api_version {
            Some(av) => {
                let (group, version) = av.rsplit_once('/').unwrap_or(("", av));
                if g.name() != group {
                    return None;
                }
                g.versioned_resources(version)
            }
            None => g.recommended_resources(),
        };
        resources
            .into_iter()
            .find(|(ar, _)| ar.kind.eq_ignore_ascii_case(target.kind))
    });
    let Some((ar, caps)) = found else {
        return Err(KubeError::NoSuchKind {
            target: target.describe(),
            kind: target.kind.to_string(),
            api_version: target.api_version.map(String::from),
        });
    };
    let api: Api<DynamicObject> = match caps.scope {
        Scope::Cluster => Api::all_with(client.clone(), &ar),
        Scope::Namespaced => Api::namespaced_with(client.clone(), target.namespace, &ar),
    };
    let before = api
        .get_opt(target.name)
        .await
        .map_err(|e| KubeError::call(format!("reading {}", target.describe()), e))?;
    let Some(before) = before else {
        return Err(KubeError::NoSuchObject(target.describe()));
    };
    let dry = PatchParams::default().dry_run();
    let real = PatchParams::default();
    let strategic = matches!(change, Change::Merge(_));
    let send = |p: &PatchParams, strategic: bool| {
        let api = api.clone();
        let p = p.clone();
        let change = change.clone();
        async move {
            match change {
                Change::Merge(v) if strategic => {
                    api.patch(target.name, &p, &Patch::Strategic(v)).await
                }
                Change::Merge(v) => api.patch(target.name, &p, &Patch::Merge(v)).await,
                Change::Json(ops) => api.patch(target.name, &p, &Patch::<()>::Json(ops)).await,
            }
        }
    };
    let what = format!("patch {}", target.describe());
    let doing = format!("patching {}", target.describe());
    let refused = |e: kube::Error, dry: bool| KubeError::change(&what, &doing, dry, e);
    // Kinds without strategic merge (custom resources) answer 415: use a JSON merge patch.
    let strategic = match send(&dry, strategic).await {
        Ok(_) => strategic,
        Err(kube::Error::Api(s)) if strategic && s.code == 415 => {
            send(&dry, false).await.map_err(|e| refused(e, true))?;
            false
        }
        Err(e) => return Err(refused(e, true)),
    };
    let after = send(&real, strategic)
        .await
        .map_err(|e| refused(e, false))?;
    Ok(after.metadata.resource_version != before.metadata.resource_version)
}

/// The merge patch's strings are resolved in place; JSON patch operations through their JSON
/// form (the one value here without a typed model of its own).
impl crate::scenario::Resolve for Change {
    fn resolve(
        &self,
        vars: &crate::scenario::vars::Vars,
    ) -> Result<Self, crate::scenario::vars::VarError> {
        Ok(match self {
            Change::Merge(m) => Change::Merge(m.resolve(vars)?),
            Change::Json(p) => {
                let v = serde_json::to_value(p).expect("JSON patch operations serialize");
                let not_valid = |e: serde_json::Error| crate::scenario::vars::VarError::NotValid {
                    message: format!("the JSON patch operations are not valid: {e}"),
                    template: v.to_string(),
                };
                Change::Json(serde_json::from_value(v.resolve(vars)?).map_err(not_valid)?)
            }
        })
    }
}
