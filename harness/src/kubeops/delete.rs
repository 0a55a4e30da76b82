//! Deleting what a run created on a cluster that outlives it, and waiting (with a watch, not a
//! poll) until each object is gone. An object still there at the deadline is named with the
//! finalizers it waits on, so the user knows what holds it.

use std::fmt;
use std::time::Instant;

use kube::api::{Api, DeleteParams, DynamicObject, Preconditions};
use kube::discovery::ApiResource;
use kube::runtime::wait::await_condition;

use super::KubeError;

/// One object in the cluster: its resource (group, version, kind, plural), namespace, name,
/// and the uid it had when the run created it (so an object of the same name made by someone
/// else later is neither deleted nor waited for).
#[derive(Debug, Clone)]
pub struct ObjectRef {
    /// Its resource, as discovery resolved it.
    pub resource: ApiResource,
    /// Its namespace; `None` for a cluster-scoped object.
    pub namespace: Option<String>,
    /// Its name.
    pub name: String,
    /// Its uid, when known.
    pub uid: Option<String>,
}

impl ObjectRef {
    /// A namespace, by name and (when known) uid.
    pub fn namespace(name: &str, uid: Option<String>) -> Self {
        ObjectRef {
            resource: ApiResource::erase::<k8s_openapi::api::core::v1::Namespace>(&()),
            namespace: None,
            name: name.to_string(),
            uid,
        }
    }

    fn api(&self, client: &kube::Client) -> Api<DynamicObject> {
        match &self.namespace {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &self.resource),
            None => Api::all_with(client.clone(), &self.resource),
        }
    }
}

impl fmt::Display for ObjectRef {
    /// `Kind/namespace/name`, or `Kind/name` when cluster-scoped.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{}/{ns}/{}", self.resource.kind, self.name),
            None => write!(f, "{}/{}", self.resource.kind, self.name),
        }
    }
}

/// An object a deletion did not remove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leftover {
    /// Still there at the deadline; `finalizers` are what it waits on (empty when none).
    Stuck {
        /// `Kind/namespace/name`.
        object: String,
        /// Its `metadata.finalizers` (and, for a namespace, `spec.finalizers`).
        finalizers: Vec<String>,
        /// What its status says holds it (a namespace's `NamespaceContentRemaining`,
        /// `NamespaceFinalizersRemaining`, ... conditions).
        why: Vec<String>,
    },
    /// The API server refused to delete it.
    Refused {
        /// `Kind/namespace/name`.
        object: String,
        /// The server's or client's message.
        reason: String,
    },
}

impl fmt::Display for Leftover {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Leftover::Stuck {
                object,
                finalizers,
                why,
            } => {
                write!(f, "{object} is still there")?;
                match finalizers.is_empty() {
                    true => write!(f, " (no finalizers)")?,
                    false => write!(f, ", waiting on finalizers {}", finalizers.join(", "))?,
                }
                match why.is_empty() {
                    true => Ok(()),
                    false => write!(f, " ({})", why.join("; ")),
                }
            }
            Leftover::Refused { object, reason } => write!(f, "{object}: delete refused: {reason}"),
        }
    }
}

/// What a deletion did with each object, in the order given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Deleted {
    /// Deleted and gone.
    pub gone: Vec<String>,
    /// Already gone before the run deleted it.
    pub missing: Vec<String>,
    /// Left alone: an object of that name with another uid (someone else's).
    pub replaced: Vec<String>,
}

/// Deletes `objects` in the order given (background propagation, as `kubectl delete`), then
/// watches until every one is gone or `deadline` passes. Nothing is deleted that does not
/// have the uid recorded for it.
///
/// Fails with [`KubeError::NotDeleted`] naming each object still there (and its finalizers)
/// or refused, after trying every object.
pub async fn delete_and_wait(
    client: &kube::Client,
    objects: &[ObjectRef],
    deadline: Instant,
) -> Result<Deleted, KubeError> {
    let started = Instant::now();
    let mut done = Deleted::default();
    let mut left = Vec::new();
    let mut pending = Vec::new();
    for o in objects {
        match delete_one(client, o).await {
            Asked::Deleting(uid) => pending.push((o, uid)),
            Asked::Missing => done.missing.push(o.to_string()),
            Asked::Replaced => done.replaced.push(o.to_string()),
            Asked::Refused(reason) => left.push(Leftover::Refused {
                object: o.to_string(),
                reason,
            }),
        }
    }
    let waits = pending
        .iter()
        .map(|(o, uid)| wait_gone(client, o, uid, deadline));
    for ((o, _), outcome) in pending.iter().zip(futures::future::join_all(waits).await) {
        match outcome {
            Gone::Yes => done.gone.push(o.to_string()),
            Gone::No(obj) => left.push(Leftover::Stuck {
                object: o.to_string(),
                finalizers: finalizers_of(&obj),
                why: holding_conditions(&obj),
            }),
        }
    }
    if left.is_empty() {
        Ok(done)
    } else {
        Err(KubeError::NotDeleted {
            waited: started.elapsed(),
            left,
        })
    }
}

/// How a delete request went.
enum Asked {
    /// Accepted; the object (of this uid) is going away.
    Deleting(String),
    /// There was no such object.
    Missing,
    /// An object of that name with another uid: not the run's.
    Replaced,
    /// Refused (the reason).
    Refused(String),
}

async fn delete_one(client: &kube::Client, o: &ObjectRef) -> Asked {
    let api = o.api(client);
    let dp = DeleteParams {
        preconditions: o.uid.clone().map(|uid| Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        ..DeleteParams::background()
    };
    match api.delete(&o.name, &dp).await {
        // Either the object (being deleted, with its uid) or a Status (deleted at once).
        Ok(either) => match either.left().and_then(|obj| obj.metadata.uid) {
            Some(uid) => Asked::Deleting(uid),
            None => Asked::Deleting(o.uid.clone().unwrap_or_default()),
        },
        Err(kube::Error::Api(s)) if s.code == 404 => Asked::Missing,
        // A failed uid precondition: the name now belongs to another object.
        Err(kube::Error::Api(s)) if s.code == 409 => Asked::Replaced,
        Err(e) => Asked::Refused(KubeError::call(format!("deleting {o}"), e).to_string()),
    }
}

enum Gone {
    Yes,
    /// Still there at the deadline, as it is then.
    No(Box<DynamicObject>),
}

/// Watches `o` until the object of `uid` is gone (an empty uid: until no object has its
/// name), or the deadline passes.
async fn wait_gone(client: &kube::Client, o: &ObjectRef, uid: &str, deadline: Instant) -> Gone {
    let api = o.api(client);
    let ours = |obj: &DynamicObject| uid.is_empty() || obj.metadata.uid.as_deref() == Some(uid);
    let owned = uid.to_string();
    let cond = move |obj: Option<&DynamicObject>| {
        obj.is_none_or(|obj| !owned.is_empty() && obj.metadata.uid.as_deref() != Some(&owned))
    };
    let left = deadline.saturating_duration_since(Instant::now());
    let last = match tokio::time::timeout(left, await_condition(api.clone(), &o.name, cond)).await {
        Ok(Ok(_)) => return Gone::Yes,
        // The watch failed or the deadline passed: what is there now decides.
        Ok(Err(_)) | Err(_) => api.get_opt(&o.name).await.ok().flatten(),
    };
    match last {
        Some(obj) if ours(&obj) => Gone::No(Box::new(obj)),
        _ => Gone::Yes,
    }
}

/// `metadata.finalizers`, then `spec.finalizers` (a namespace's, e.g. `kubernetes`).
fn finalizers_of(obj: &DynamicObject) -> Vec<String> {
    let spec = obj
        .data
        .pointer("/spec/finalizers")
        .and_then(|f| f.as_array())
        .into_iter()
        .flatten()
        .filter_map(|f| f.as_str().map(String::from));
    obj.metadata
        .finalizers
        .clone()
        .unwrap_or_default()
        .into_iter()
        .chain(spec)
        .collect()
}

/// The messages of true conditions that say what a deletion waits on (a namespace's
/// `NamespaceContentRemaining`, `NamespaceFinalizersRemaining`, `NamespaceDeletion*Failure`).
fn holding_conditions(obj: &DynamicObject) -> Vec<String> {
    let conditions = obj
        .data
        .pointer("/status/conditions")
        .and_then(|c| c.as_array())
        .into_iter()
        .flatten();
    conditions
        .filter(|c| c.get("status").and_then(|s| s.as_str()) == Some("True"))
        .filter(|c| {
            c.get("type")
                .and_then(|t| t.as_str())
                .is_some_and(|t| t.ends_with("Remaining") || t.starts_with("NamespaceDeletion"))
        })
        .filter_map(|c| c.get("message").and_then(|m| m.as_str()).map(String::from))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A namespace stuck in Terminating is named with its finalizers and what its conditions
    /// say is left, as the API server reports it.
    #[test]
    fn a_stuck_namespace_names_its_finalizers_and_what_remains() {
        let obj: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "held", "uid": "u1", "deletionTimestamp": "2026-12-03T21:00:00Z"},
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Terminating", "conditions": [
                {"type": "NamespaceDeletionDiscoveryFailure", "status": "False", "message": "All resources successfully discovered"},
                {"type": "NamespaceContentRemaining", "status": "True", "message": "Some resources are remaining: configmaps. has 1 resource instances"},
                {"type": "NamespaceFinalizersRemaining", "status": "True", "message": "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances"}
            ]}
        }))
        .unwrap();
        let left = Leftover::Stuck {
            object: ObjectRef::namespace("held", None).to_string(),
            finalizers: finalizers_of(&obj),
            why: holding_conditions(&obj),
        };
        assert_eq!(
            left.to_string(),
            "Namespace/held is still there, waiting on finalizers kubernetes (Some resources are remaining: configmaps. has 1 resource instances; Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances)"
        );
        let e = KubeError::NotDeleted {
            waited: std::time::Duration::from_secs(5),
            left: vec![
                Leftover::Stuck {
                    object: "ConfigMap/held/cm".into(),
                    finalizers: vec!["example.com/hold".into()],
                    why: vec![],
                },
                left,
            ],
        };
        assert!(
            e.to_string().starts_with(
                "2 objects not deleted (5s after asking): ConfigMap/held/cm is still there, waiting on finalizers example.com/hold; Namespace/held is still there"
            ),
            "{e}"
        );
        assert!(e.hint().is_some_and(|h| h.contains("finalizer")));
    }
}
