//! `assert`: objects of any kind hold an expected tree, a partial match (only the fields
//! written are compared; see [`matching`]), watched until it holds or the step times out.
//! `absent` (in `steps::absent`) shares the target fields and the watch.
//!
//! ```yaml
//! - name: exactly six Bookinfo deployments available
//!   assert:
//!     api-version: apps/v1
//!     kind: Deployment
//!     selector: app in (details,productpage,ratings,reviews)   # or `name:`
//!     count: 6                                                  # default: at least one
//!     match:
//!       status:
//!         conditions: [{ type: Available, status: "True" }]
//! ```
//!
//! On failure the message says what was expected, how many objects matched, the path of the
//! closest object's first mismatch, a unified diff of `match` against that object (cut to the
//! fields `match` writes), and the object's last event.

pub mod matching;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Instant;

use futures::StreamExt;
use kube::api::{Api, DynamicObject, ResourceExt};
use kube::core::GroupVersionKind;
use kube::discovery::Scope;
use kube::runtime::{WatchStreamExt, watcher};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use self::matching::{Count, Mismatch, Tally};
use crate::Outputs;
use crate::context::Context;
use crate::error::StepError;
use crate::scenario::Templated;

/// Which objects a target selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Select {
    /// The object of this name.
    Name(String),
    /// Every object whose labels match this selector (`app=x`, `app in (a,b)`).
    Selector(String),
}

impl fmt::Display for Select {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Select::Name(n) => write!(f, "name {n}"),
            Select::Selector(s) => write!(f, "selector {s}"),
        }
    }
}

/// What `assert` and `absent` look at: a kind, which of its objects, where, and what they
/// must hold.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// apiVersion, e.g. `apps/v1`, `gateway.networking.k8s.io/v1`, `v1`.
    pub api_version: String,
    /// Kind, e.g. `Deployment`.
    pub kind: String,
    /// By name or by label selector.
    pub select: Select,
    /// Namespace (the scenario's when not given; cluster-scoped kinds have none).
    pub namespace: Option<String>,
    /// The expected tree (`match:`); none: every selected object matches.
    pub expected: Option<Value>,
}

/// Spec of an `assert` step: a [`Target`] and how many objects must match.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(try_from = "TargetSpec", into = "TargetSpec")]
pub struct AssertSpec {
    /// Which objects and what they must hold.
    pub target: Target,
    /// Exactly this many must match; at least one when not given.
    pub count: Option<Templated<usize>>,
}

/// The fields of `assert` and `absent` as written: `name` or `selector` become [`Select`].
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[schemars(
    description = "Objects of a kind, chosen by `name` or by `selector`, and the tree they hold (`match`).",
    extend("oneOf" = [{ "required": ["name"] }, { "required": ["selector"] }])
)]
pub(crate) struct TargetSpec {
    /// apiVersion, e.g. `apps/v1`, `gateway.networking.k8s.io/v1`, `v1`.
    api_version: String,
    /// Kind, e.g. `Deployment`.
    kind: String,
    /// The object of this name (or give `selector`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    /// Every object whose labels match this selector (`app=x`, `app in (a,b)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    selector: Option<String>,
    /// Namespace (the scenario's when not given; cluster-scoped kinds have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    namespace: Option<String>,
    /// The expected tree, a partial match: only the fields written are compared.
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    expected: Option<Value>,
    /// Exactly this many objects must match; at least one when not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) count: Option<Templated<usize>>,
}

impl TargetSpec {
    /// The target, or why `name` and `selector` do not say which objects.
    pub(crate) fn target(
        self,
        kind: &'static str,
    ) -> Result<(Target, Option<Templated<usize>>), super::SpecError> {
        let select = match (self.name, self.selector) {
            (Some(n), None) => Select::Name(n),
            (None, Some(s)) => Select::Selector(s),
            (Some(_), Some(_)) => {
                return Err(super::SpecError::new(kind, "give `name` or `selector`, not both"));
            }
            (None, None) => {
                let msg = "say which objects: `name` (one object) or `selector` (labels)";
                return Err(super::SpecError::new(kind, msg));
            }
        };
        let target = Target {
            api_version: self.api_version,
            kind: self.kind,
            select,
            namespace: self.namespace,
            expected: self.expected,
        };
        Ok((target, self.count))
    }

    /// The fields as written for `target`.
    pub(crate) fn from_target(t: Target, count: Option<Templated<usize>>) -> Self {
        let (name, selector) = match t.select {
            Select::Name(n) => (Some(n), None),
            Select::Selector(s) => (None, Some(s)),
        };
        TargetSpec {
            api_version: t.api_version,
            kind: t.kind,
            name,
            selector,
            namespace: t.namespace,
            expected: t.expected,
            count,
        }
    }
}

impl TryFrom<TargetSpec> for AssertSpec {
    type Error = super::SpecError;
    fn try_from(raw: TargetSpec) -> Result<Self, super::SpecError> {
        let (target, count) = raw.target("assert")?;
        Ok(AssertSpec { target, count })
    }
}

impl From<AssertSpec> for TargetSpec {
    fn from(s: AssertSpec) -> Self {
        TargetSpec::from_target(s.target, s.count)
    }
}

/// Why an `assert` or `absent` step failed.
#[derive(Debug, thiserror::Error)]
pub enum AssertError {
    /// The cluster does not serve the kind (a typo, or its CRD is not applied yet).
    #[error("the cluster serves no {kind} in {api_version}: {source}")]
    UnknownKind {
        /// As written.
        api_version: String,
        /// As written.
        kind: String,
        /// Discovery's answer.
        source: kube::Error,
    },
    /// A namespace was given for a cluster-scoped kind.
    #[error("{kind} is cluster-scoped, but the step names namespace {namespace}")]
    ClusterScoped {
        /// The kind.
        kind: String,
        /// The namespace written.
        namespace: String,
    },
    /// The API server refused to list or watch (a bad selector, no permission).
    #[error("listing {what} was refused: {source}")]
    Refused {
        /// The kind and selection.
        what: String,
        /// The watcher's error.
        source: Box<watcher::Error>,
    },
    /// Not enough (or too many) objects matched before the deadline.
    #[error("{}", unmatched(.what, .want, .matched, .total, .closest, .watch_error))]
    Unmatched {
        /// The kind, selection and namespace.
        what: String,
        /// How many had to match.
        want: Count,
        /// The names of those that did.
        matched: Vec<String>,
        /// How many objects were selected.
        total: usize,
        /// The closest non-matching object: where it differs, the diff, its last event.
        closest: Option<Box<Closest>>,
        /// The last error of the watch, if it had one.
        watch_error: Option<String>,
    },
    /// Objects that had to be absent were still there at the deadline.
    #[error("expected no {what}{}; still there: {}", filtered_note(.filtered), .present.join(", "))]
    Present {
        /// The kind, selection and namespace.
        what: String,
        /// True when `match` narrowed what must be absent.
        filtered: bool,
        /// The names of the objects still there (and matching).
        present: Vec<String>,
    },
}

/// The object closest to the expected tree, for the failure message.
#[derive(Debug, Clone, PartialEq)]
pub struct Closest {
    /// Its name.
    pub name: String,
    /// Its first difference from the expected tree.
    pub mismatch: Mismatch,
    /// The unified diff of the expected tree against it.
    pub diff: String,
    /// Its newest event, `Reason: message`.
    pub event: Option<String>,
}

fn filtered_note(filtered: &bool) -> &'static str {
    if *filtered { " matching `match`" } else { "" }
}

fn unmatched(
    what: &str,
    want: &Count,
    matched: &[String],
    total: &usize,
    closest: &Option<Box<Closest>>,
    watch_error: &Option<String>,
) -> String {
    let mut s = format!("expected {want} {what} to match; ");
    match (*total, matched.len()) {
        (0, _) => s.push_str("there is none"),
        (t, 0) => s.push_str(&format!("0 of {t} do")),
        (t, n) => s.push_str(&format!("{n} of {t} do: {}", matched.join(", "))),
    }
    if let Some(c) = closest {
        s.push_str(&format!("\n{}: {}\n{}", c.name, c.mismatch, c.diff));
        if let Some(e) = &c.event {
            s.push_str(&format!("last event of {}: {e}", c.name));
        }
    }
    if let Some(e) = watch_error {
        s.push_str(&format!("\n(the watch last failed with: {e})"));
    }
    s.trim_end().to_string()
}

impl From<AssertError> for StepError {
    fn from(e: AssertError) -> Self {
        let (retryable, hint) = match &e {
            AssertError::UnknownKind { .. } => (
                true,
                "check `api-version` (group/version) and `kind`; is the CRD applied before this step?",
            ),
            AssertError::ClusterScoped { .. } => (false, "remove `namespace` from the step"),
            AssertError::Refused { .. } => (
                false,
                "check the selector's syntax (`app=x`, `app in (a,b)`) and the kubeconfig's RBAC",
            ),
            AssertError::Unmatched {
                closest: Some(_), ..
            } => (
                true,
                "the diff shows `match` (-) against the object (+); raise the step's timeout if it is still converging",
            ),
            AssertError::Unmatched { closest: None, .. } => (
                true,
                "check the selector and `count`; raise the step's timeout if objects are still coming or going",
            ),
            AssertError::Present { .. } => (
                true,
                "raise the step's timeout if it is still being deleted",
            ),
        };
        StepError::classified(e.to_string(), retryable, Some(hint.into()))
    }
}

/// What a watch waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Goal {
    /// `assert`: this many objects match.
    Match(Count),
    /// `absent`: none does.
    Absent,
}

impl Goal {
    fn holds(self, t: &Tally) -> bool {
        match self {
            Goal::Match(c) => c.holds(t.matched.len()),
            Goal::Absent => t.matched.is_empty(),
        }
    }
}

/// The selected objects where the watch stopped.
struct Seen {
    tally: Tally,
    objects: BTreeMap<String, Value>,
    held: bool,
    watch_error: Option<String>,
}

/// Watches the target's objects until `goal` holds (outputs: how many matched, and which) or
/// the deadline passes (the error says what was seen).
pub(crate) async fn watch(
    t: &Target,
    goal: Goal,
    ctx: &mut Context,
    deadline: Instant,
) -> Result<Outputs, StepError> {
    let client = ctx.client().await?;
    let (api, ns) = resolve(&client, t, &ctx.namespace).await?;
    let what = match &ns {
        Some(ns) => format!("{} ({}) in namespace {ns}", t.kind, t.select),
        None => format!("{} ({})", t.kind, t.select),
    };
    let cfg = match &t.select {
        Select::Name(n) => watcher::Config::default().fields(&format!("metadata.name={n}")),
        Select::Selector(s) => watcher::Config::default().labels(s),
    };
    let seen = observe(api, cfg, deadline, t.expected.as_ref(), goal)
        .await
        .map_err(|source| AssertError::Refused {
            what: what.clone(),
            source: Box::new(source),
        })?;
    let Seen {
        tally,
        objects,
        held,
        watch_error,
    } = seen;
    if held {
        let mut out = Outputs::new();
        out.insert("matched".into(), tally.matched.len().into());
        if goal != Goal::Absent {
            out.insert("objects".into(), tally.matched.into());
        }
        return Ok(out);
    }
    let Goal::Match(want) = goal else {
        return Err(AssertError::Present {
            what,
            filtered: t.expected.is_some(),
            present: tally.matched,
        }
        .into());
    };
    let closest = match (&tally.closest, &t.expected) {
        (Some((name, mismatch)), Some(expected)) => {
            let event = match &ns {
                Some(ns) => crate::kubeops::wait::last_event(&client, ns, name).await,
                None => None,
            };
            let label = format!("{}/{name}", t.kind);
            Some(Box::new(Closest {
                name: name.clone(),
                mismatch: mismatch.clone(),
                diff: matching::diff(expected, &objects[name], &label),
                event,
            }))
        }
        _ => None,
    };
    Err(AssertError::Unmatched {
        what,
        want,
        matched: tally.matched,
        total: tally.total,
        closest,
        watch_error,
    }
    .into())
}

/// The API of the target's kind, and its namespace (none for a cluster-scoped kind).
async fn resolve(
    client: &kube::Client,
    t: &Target,
    default_ns: &str,
) -> Result<(Api<DynamicObject>, Option<String>), AssertError> {
    let (group, version) = t
        .api_version
        .rsplit_once('/')
        .unwrap_or(("", &t.api_version));
    let gvk = GroupVersionKind::gvk(group, version, &t.kind);
    let (ar, caps) = kube::discovery::pinned_kind(client, &gvk)
        .await
        .map_err(|source| AssertError::UnknownKind {
            api_version: t.api_version.clone(),
            kind: t.kind.clone(),
            source,
        })?;
    match (caps.scope, &t.namespace) {
        (Scope::Cluster, Some(ns)) => Err(AssertError::ClusterScoped {
            kind: t.kind.clone(),
            namespace: ns.clone(),
        }),
        (Scope::Cluster, None) => Ok((Api::all_with(client.clone(), &ar), None)),
        (Scope::Namespaced, own) => {
            let ns = own.clone().unwrap_or_else(|| default_ns.to_string());
            Ok((Api::namespaced_with(client.clone(), &ns, &ar), Some(ns)))
        }
    }
}

/// Follows the objects (list, then watch; re-listing when the server drops the watch) and
/// tallies them after every change until `goal` holds or the deadline passes. A refusal no
/// retry can change (a bad selector, no permission) is returned at once.
async fn observe(
    api: Api<DynamicObject>,
    cfg: watcher::Config,
    deadline: Instant,
    expected: Option<&Value>,
    goal: Goal,
) -> Result<Seen, watcher::Error> {
    let mut stream = std::pin::pin!(watcher(api, cfg).default_backoff());
    let (mut store, mut init) = (BTreeMap::new(), BTreeMap::new());
    let (mut listed, mut watch_error) = (false, None);
    let mut tally = matching::tally(&store, expected);
    loop {
        let left = super::time_left(deadline);
        match tokio::time::timeout(left, stream.next()).await {
            Err(_) | Ok(None) => break,
            Ok(Some(Err(e))) if is_final(&e) => return Err(e),
            Ok(Some(Err(e))) => watch_error = Some(e.to_string()),
            Ok(Some(Ok(ev))) => match ev {
                watcher::Event::Init => init.clear(),
                watcher::Event::InitApply(o) => {
                    init.insert(o.name_any(), to_value(&o));
                }
                watcher::Event::InitDone => {
                    store = std::mem::take(&mut init);
                    listed = true;
                }
                watcher::Event::Apply(o) => {
                    store.insert(o.name_any(), to_value(&o));
                }
                watcher::Event::Delete(o) => {
                    store.remove(&o.name_any());
                }
            },
        }
        if listed {
            tally = matching::tally(&store, expected);
            if goal.holds(&tally) {
                return Ok(Seen {
                    tally,
                    objects: store,
                    held: true,
                    watch_error,
                });
            }
        }
    }
    Ok(Seen {
        tally,
        objects: store,
        held: false,
        watch_error,
    })
}

fn to_value(o: &DynamicObject) -> Value {
    serde_json::to_value(o).unwrap_or(Value::Null)
}

/// A bad request or a refusal: retrying the list cannot help.
fn is_final(e: &watcher::Error) -> bool {
    let code = match e {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s)) => s.code,
        watcher::Error::WatchError(s) => s.code,
        _ => return false,
    };
    matches!(code, 400 | 401 | 403)
}

/// Problems of a target found before anything runs.
pub(crate) fn target_problems(t: &Target) -> Vec<String> {
    let mut p = Vec::new();
    if t.api_version.trim().is_empty() || t.kind.trim().is_empty() {
        p.push("`api-version` and `kind` must not be empty".into());
    }
    if matches!(&t.select, Select::Name(s) | Select::Selector(s) if s.trim().is_empty()) {
        p.push("`name` or `selector` must not be empty".into());
    }
    if t.expected.as_ref().is_some_and(|e| !e.is_object()) {
        p.push("`match` must be a map of fields, like `status: { replicas: 2 }`".into());
    }
    p
}

/// `Kind name` or `Kind selector`, for summaries.
pub(crate) fn target_summary(t: &Target) -> String {
    match &t.select {
        Select::Name(n) => format!("{}/{n}", t.kind),
        Select::Selector(s) => format!("{} {s}", t.kind),
    }
}

impl super::Kind for AssertSpec {
    fn default_timeout(&self) -> std::time::Duration {
        super::secs(60)
    }
    fn summary(&self) -> String {
        let t = target_summary(&self.target);
        match &self.count {
            Some(n) => format!("{t} ×{n}"),
            None => t,
        }
    }
    fn problems(&self) -> Vec<String> {
        let mut p = target_problems(&self.target);
        let count = self.count.as_ref().and_then(Templated::literal);
        if let (Select::Name(_), Some(n @ 2..)) = (&self.target.select, count) {
            p.push(format!(
                "`count: {n}` with `name` can never hold (a name selects one object); use `selector`"
            ));
        }
        p
    }
    async fn run(&self, ctx: &mut Context, deadline: Instant) -> Result<Outputs, StepError> {
        let count = self
            .count
            .as_ref()
            .map_or(Count::AtLeastOne, |n| Count::Exactly(n.value()));
        watch(&self.target, Goal::Match(count), ctx, deadline).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::steps::Kind;

    fn parse(yaml: &str) -> Result<AssertSpec, String> {
        serde_saphyr::from_str(yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn name_or_selector_exactly_one() {
        let s = parse(
            "{api-version: apps/v1, kind: Deployment, name: a, match: {spec: {replicas: 1}}}",
        )
        .unwrap();
        assert_eq!(s.target.select, Select::Name("a".into()));
        assert_eq!(s.summary(), "Deployment/a");
        let s = parse("{api-version: v1, kind: Pod, selector: app=x, count: 2}").unwrap();
        assert_eq!(s.target.select, Select::Selector("app=x".into()));
        assert_eq!(s.summary(), "Pod app=x ×2");
        let e = parse("{api-version: v1, kind: Pod, name: a, selector: app=x}").unwrap_err();
        assert!(e.contains("give `name` or `selector`, not both"), "{e}");
        let e = parse("{api-version: v1, kind: Pod}").unwrap_err();
        assert!(e.contains("say which objects"), "{e}");
        let e = parse("{api-version: v1, kind: Pod, name: a, mach: {}}").unwrap_err();
        assert!(e.contains("mach"), "{e}");
    }

    #[test]
    fn round_trips_through_json_as_variable_expansion_does() {
        let s = parse("{api-version: v1, kind: Service, name: gw, namespace: istio-system, match: {spec: {ports: [{name: http2}]}}}").unwrap();
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["match"]["spec"]["ports"][0]["name"], "http2");
        assert!(v.get("selector").is_none() && v.get("count").is_none());
        let back: AssertSpec = serde_json::from_value(v).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn problems_before_running() {
        let s = parse("{api-version: v1, kind: Pod, name: a, count: 2, match: [1]}").unwrap();
        let p = s.problems();
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].starts_with("`match` must be a map"), "{p:?}");
        assert!(
            p[1].starts_with("`count: 2` with `name` can never hold"),
            "{p:?}"
        );
        assert!(
            parse("{api-version: v1, kind: Pod, name: a, count: 0}")
                .unwrap()
                .problems()
                .is_empty()
        );
    }

    #[test]
    fn the_unmatched_message_says_what_was_expected_and_seen() {
        let e = AssertError::Unmatched {
            what: "Deployment (selector app=x) in namespace default".into(),
            want: Count::Exactly(2),
            matched: vec!["a".into()],
            total: 2,
            closest: Some(Box::new(Closest {
                name: "b".into(),
                mismatch: Mismatch {
                    path: "spec.replicas".into(),
                    expected: "2".into(),
                    found: "1".into(),
                    why: None,
                },
                diff: "--- expected\n+++ Deployment/b\n".into(),
                event: Some("ScalingReplicaSet: Scaled down".into()),
            })),
            watch_error: None,
        };
        assert_eq!(
            e.to_string(),
            "expected exactly 2 Deployment (selector app=x) in namespace default to match; 1 of 2 do: a\nb: spec.replicas: expected 2, found 1\n--- expected\n+++ Deployment/b\nlast event of b: ScalingReplicaSet: Scaled down"
        );
        let s: StepError = e.into();
        assert!(!s.fatal && s.hint.is_some());
    }
}

impl crate::scenario::Resolve for Select {
    fn resolve(
        &self,
        vars: &crate::scenario::vars::Vars,
    ) -> Result<Self, crate::scenario::vars::VarError> {
        Ok(match self {
            Select::Name(n) => Select::Name(vars.expand(n)?),
            Select::Selector(s) => Select::Selector(vars.expand(s)?),
        })
    }
}

crate::scenario::resolve::resolve_fields!(Target {
    api_version,
    kind,
    select,
    namespace,
    expected
});
crate::scenario::resolve::resolve_fields!(AssertSpec { target, count });
