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
    let api = api_for(client, target).await?;
    let dry = PatchParams::default().dry_run();
    let real = PatchParams::default();
    let strategic = matches!(change, Change::Merge(_));
    let send = |p: &PatchParams, strategic: bool, change: Change| {
        let api = api.clone();
        let p = p.clone();
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
    let read = || async {
        api.get_opt(target.name)
            .await
            .map_err(|e| KubeError::call(format!("reading {}", target.describe()), e))?
            .ok_or_else(|| KubeError::NoSuchObject(target.describe()))
    };
    read().await?;
    // Kinds without strategic merge (custom resources) answer 415: use a JSON merge patch.
    let strategic = match send(&dry, strategic, change.clone()).await {
        Ok(_) => strategic,
        Err(kube::Error::Api(s)) if strategic && s.code == 415 => {
            send(&dry, false, change.clone())
                .await
                .map_err(|e| refused(e, true))?;
            false
        }
        Err(e) => return Err(refused(e, true)),
    };
    // Pinned to the resourceVersion read just before, so a new one afterwards is this patch's
    // doing, not a controller's (a Deployment's status written meanwhile): on a conflict the
    // object is read again and the patch sent again.
    let mut tries = 0;
    loop {
        tries += 1;
        let rv = read().await?.metadata.resource_version;
        match send(&real, strategic, change.pinned_to(rv.as_deref())).await {
            Ok(after) => return Ok(after.metadata.resource_version != rv),
            Err(kube::Error::Api(s)) if s.code == 409 && tries < MAX_CONFLICTS => continue,
            Err(e) => return Err(refused(e, false)),
        }
    }
}

/// The API of the target's kind (its `apiVersion`, else the one the cluster prefers).
async fn api_for(
    client: &kube::Client,
    target: &Target<'_>,
) -> Result<Api<DynamicObject>, KubeError> {
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
    Ok(match caps.scope {
        Scope::Cluster => Api::all_with(client.clone(), &ar),
        Scope::Namespaced => Api::namespaced_with(client.clone(), target.namespace, &ar),
    })
}

/// How often a patch meets an object changed under it before it gives up.
const MAX_CONFLICTS: u32 = 5;

impl Change {
    /// The change, applied only if the object is still at `resource_version` (the apiserver
    /// answers 409 Conflict otherwise): the version in a merge patch's `metadata`, or a
    /// `replace` of it before the JSON patch's own operations.
    fn pinned_to(&self, resource_version: Option<&str>) -> Change {
        let Some(rv) = resource_version else {
            return self.clone();
        };
        match self {
            Change::Merge(v) => {
                let mut v = v.clone();
                if let Some(obj) = v.as_object_mut() {
                    let meta = obj
                        .entry("metadata")
                        .or_insert_with(|| serde_json::json!({}));
                    if let Some(meta) = meta.as_object_mut() {
                        meta.insert("resourceVersion".into(), rv.into());
                    }
                }
                Change::Merge(v)
            }
            Change::Json(ops) => {
                let pin = serde_json::json!([{"op": "replace", "path": "/metadata/resourceVersion", "value": rv}]);
                let mut pinned: json_patch::Patch =
                    serde_json::from_value(pin).expect("a replace operation is a JSON patch");
                pinned.0.extend(ops.0.iter().cloned());
                Change::Json(pinned)
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A pinned change carries the resourceVersion it was read at, so the apiserver refuses it
    /// (409) when something else changed the object since: a merge patch in its metadata, a
    /// JSON patch as a first `replace`; the change itself is kept.
    #[test]
    fn a_pinned_change_carries_the_version_it_was_read_at() {
        let merge = Change::Merge(serde_json::json!({"spec": {"replicas": 2}}));
        let Change::Merge(v) = merge.pinned_to(Some("42")) else {
            panic!()
        };
        assert_eq!(
            v,
            serde_json::json!({"spec": {"replicas": 2}, "metadata": {"resourceVersion": "42"}})
        );
        let ops = serde_json::json!([{"op": "add", "path": "/metadata/labels/a", "value": "b"}]);
        let json = Change::Json(serde_json::from_value(ops).unwrap());
        let Change::Json(p) = json.pinned_to(Some("42")) else {
            panic!()
        };
        assert_eq!(
            serde_json::to_value(&p).unwrap(),
            serde_json::json!([
                {"op": "replace", "path": "/metadata/resourceVersion", "value": "42"},
                {"op": "add", "path": "/metadata/labels/a", "value": "b"}
            ])
        );
        assert_eq!(merge.pinned_to(None), merge);
    }
}
