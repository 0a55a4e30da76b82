//! Server-side apply of any multi-document YAML, CRDs first, with a dry run of the whole input
//! before anything changes.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::{ApiResource, Discovery, Scope};
use kube::runtime::wait::{await_condition, conditions};

use super::delete::ObjectRef;
use super::{FIELD_MANAGER, KubeError};

/// How long an apply keeps asking discovery about a kind it does not find before calling it
/// unknown.
const DISCOVERY_SETTLE: Duration = Duration::from_secs(15);

/// One YAML document of the input, with where it came from.
#[derive(Debug, Clone)]
pub struct Document {
    /// The file it was read from.
    pub file: PathBuf,
    /// 1-based index of the document in its file (empty documents counted).
    pub index: usize,
    /// The object.
    pub object: DynamicObject,
}

impl Document {
    /// `Kind/name` of the object.
    pub fn kind_name(&self) -> String {
        let kind = self
            .object
            .types
            .as_ref()
            .map(|t| t.kind.as_str())
            .unwrap_or("?");
        format!(
            "{kind}/{}",
            self.object.metadata.name.as_deref().unwrap_or("?")
        )
    }

    fn whereis(&self) -> String {
        format!(
            "{} document {} ({})",
            self.file.display(),
            self.index,
            self.kind_name()
        )
    }

    fn is_namespace(&self) -> bool {
        self.object
            .types
            .as_ref()
            .is_some_and(|t| t.kind == "Namespace" && t.api_version == "v1")
    }

    fn is_crd(&self) -> bool {
        self.object.types.as_ref().is_some_and(|t| {
            t.kind == "CustomResourceDefinition"
                && t.api_version.starts_with("apiextensions.k8s.io/")
        })
    }
}

/// Reads files and directories (their `*.yaml`/`*.yml`/`*.json` in name order) into
/// documents; empty documents are skipped.
pub fn read_documents(paths: &[PathBuf]) -> Result<Vec<Document>, KubeError> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|source| KubeError::ReadManifest {
                    path: p.clone(),
                    is_dir: true,
                    source,
                })?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| {
                    f.extension()
                        .and_then(|x| x.to_str())
                        .is_some_and(|x| matches!(x, "yaml" | "yml" | "json"))
                })
                .collect();
            entries.sort();
            files.extend(entries);
        } else if p.exists() {
            files.push(p.clone());
        } else {
            return Err(KubeError::MissingManifest(p.clone()));
        }
    }
    let mut docs = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).map_err(|source| KubeError::ReadManifest {
            path: f.clone(),
            is_dir: false,
            source,
        })?;
        docs.extend(parse_documents(&f, &text)?);
    }
    Ok(docs)
}

/// Parses multi-document YAML text into objects.
pub fn parse_documents(file: &Path, text: &str) -> Result<Vec<Document>, KubeError> {
    // Kubernetes manifests are YAML 1.1 as kubectl reads them (go-yaml): `0755` is octal.
    let opts = serde_saphyr::options! { legacy_octal_numbers: true };
    let values: Vec<serde_json::Value> = serde_saphyr::from_multiple_with_options(text, opts)
        .map_err(|e| {
            let at = e
                .location()
                .map(|l| format!(":{}:{}", l.line(), l.column()))
                .unwrap_or_default();
            KubeError::NotYaml {
                file: file.to_path_buf(),
                at,
                reason: e.without_snippet().to_string(),
            }
        })?;
    let mut out = Vec::new();
    for (i, v) in values.into_iter().enumerate() {
        if v.is_null() || v.as_object().is_some_and(|o| o.is_empty()) {
            continue;
        }
        if v.get("kind")
            .and_then(|k| k.as_str())
            .is_some_and(|k| k.ends_with("List"))
        {
            for item in v
                .get("items")
                .and_then(|i| i.as_array())
                .cloned()
                .unwrap_or_default()
            {
                out.push(to_document(file, i + 1, item)?);
            }
            continue;
        }
        out.push(to_document(file, i + 1, v)?);
    }
    Ok(out)
}

fn to_document(file: &Path, index: usize, v: serde_json::Value) -> Result<Document, KubeError> {
    let object: DynamicObject =
        serde_json::from_value(v).map_err(|source| KubeError::NotAnObject {
            file: file.to_path_buf(),
            index,
            source,
        })?;
    if object.types.is_none() || object.metadata.name.is_none() {
        return Err(KubeError::Incomplete {
            file: file.to_path_buf(),
            index,
        });
    }
    Ok(Document {
        file: file.to_path_buf(),
        index,
        object,
    })
}

/// What an apply did.
#[derive(Debug, Clone, Default)]
pub struct ApplyReport {
    /// `Kind/namespace/name` of every object, in apply order.
    pub objects: Vec<String>,
    /// Objects whose generation or resourceVersion changed (created or updated).
    pub changed: usize,
    /// Objects this apply created (they did not exist before it), in apply order: what a
    /// cluster that outlives the run must have removed at teardown. An object that existed
    /// and was only updated is not here.
    pub created: Vec<ObjectRef>,
}

/// Applies documents: CRDs first (waited for `Established`), then a dry run of the rest, then
/// the rest. A document the server refuses fails the whole step before the rest is changed.
pub async fn apply(
    client: &kube::Client,
    docs: &[Document],
    default_ns: &str,
    deadline: Instant,
) -> Result<ApplyReport, KubeError> {
    let mut report = ApplyReport::default();
    apply_into(client, docs, default_ns, deadline, &mut report).await?;
    Ok(report)
}

/// [`apply`], recording into `report` as it goes, so that what was created before a failure
/// is known too (and can be removed at teardown).
pub async fn apply_into(
    client: &kube::Client,
    docs: &[Document],
    default_ns: &str,
    deadline: Instant,
    report: &mut ApplyReport,
) -> Result<(), KubeError> {
    let (crds, rest): (Vec<&Document>, Vec<&Document>) = docs.iter().partition(|d| d.is_crd());
    let (namespaces, rest): (Vec<&Document>, Vec<&Document>) =
        rest.into_iter().partition(|d| d.is_namespace());
    let mut discovery = super::discover(client).await?;

    // Namespaces of the input come first: a dry run of an object in a namespace that does not
    // exist yet is refused by the server. They are checked by a dry run of their own first.
    if !namespaces.is_empty() {
        let dry = PatchParams::apply(FIELD_MANAGER).force().dry_run();
        let pp = PatchParams::apply(FIELD_MANAGER).force();
        for d in &namespaces {
            let (api, _) =
                api_for(client, &discovery, d, default_ns)?.ok_or_else(|| unknown_kind(d))?;
            patch(&api, d, &dry).await?;
        }
        for d in &namespaces {
            let (api, ar) =
                api_for(client, &discovery, d, default_ns)?.ok_or_else(|| unknown_kind(d))?;
            apply_tracked(&api, &ar, d, &pp, report).await?;
        }
    }

    // Dry run of everything whose kind is known now (CRs of CRDs in this input are checked
    // after their CRDs exist).
    // A kind the cluster does not serve is asked about again for a few seconds first: right
    // after an apiserver (re)start, discovery lists groups before it serves them all.
    let dry = PatchParams::apply(FIELD_MANAGER).force().dry_run();
    let settle = Instant::now() + DISCOVERY_SETTLE;
    for d in crds.iter().chain(rest.iter()) {
        loop {
            if let Some((api, _)) = api_for(client, &discovery, d, default_ns)? {
                patch(&api, d, &dry).await?;
                break;
            }
            if crd_in_input(&crds, d) {
                break;
            }
            if Instant::now() >= settle.min(deadline) {
                return Err(unknown_kind(d));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            discovery = super::discover(client).await?;
        }
    }

    if !crds.is_empty() {
        let pp = PatchParams::apply(FIELD_MANAGER).force();
        let crd_api: Api<CustomResourceDefinition> = Api::all(client.clone());
        for d in &crds {
            let (api, ar) =
                api_for(client, &discovery, d, default_ns)?.ok_or_else(|| unknown_kind(d))?;
            apply_tracked(&api, &ar, d, &pp, report).await?;
        }
        for d in &crds {
            let name = d.object.metadata.name.clone().unwrap_or_default();
            let left = deadline.saturating_duration_since(Instant::now());
            tokio::time::timeout(
                left,
                await_condition(crd_api.clone(), &name, conditions::is_crd_established()),
            )
            .await
            .map_err(|_| KubeError::CrdNotEstablished(name.clone()))?
            .map_err(|source| KubeError::WatchCrd {
                name: name.clone(),
                source,
            })?;
        }
        // Discovery lags Established: run it again until every kind of the input resolves.
        loop {
            discovery = super::discover(client).await?;
            let missing = rest.iter().find(|d| {
                api_for(client, &discovery, d, default_ns)
                    .ok()
                    .flatten()
                    .is_none()
            });
            match missing {
                None => break,
                Some(d) if Instant::now() >= deadline => return Err(unknown_kind(d)),
                Some(_) => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
        for d in &rest {
            if crd_in_input(&crds, d) {
                let (api, _) =
                    api_for(client, &discovery, d, default_ns)?.ok_or_else(|| unknown_kind(d))?;
                patch(&api, d, &dry).await?;
            }
        }
    }

    let pp = PatchParams::apply(FIELD_MANAGER).force();
    for d in &rest {
        let (api, ar) =
            api_for(client, &discovery, d, default_ns)?.ok_or_else(|| unknown_kind(d))?;
        apply_tracked(&api, &ar, d, &pp, report).await?;
    }
    Ok(())
}

/// Applies one document and records it; "changed" means created or given a new
/// resourceVersion (a no-op apply keeps the old one). It is recorded as created only when the
/// server said it did not exist just before (a failed lookup counts as existing: on someone
/// else's cluster, never risk removing what was there).
async fn apply_tracked(
    api: &Api<DynamicObject>,
    ar: &ApiResource,
    d: &Document,
    pp: &PatchParams,
    report: &mut ApplyReport,
) -> Result<(), KubeError> {
    let name = d.object.metadata.name.as_deref().unwrap_or_default();
    let before = api.get_opt(name).await;
    let existed = !matches!(before, Ok(None));
    let before = before.ok().flatten();
    let after = patch(api, d, pp).await?;
    if !existed {
        report.created.push(ObjectRef {
            resource: ar.clone(),
            namespace: after.metadata.namespace.clone(),
            name: name.to_string(),
            uid: after.metadata.uid.clone(),
        });
    }
    let changed = !existed
        || before.is_none_or(|b| b.metadata.resource_version != after.metadata.resource_version);
    let object = match &after.metadata.namespace {
        Some(ns) => format!("{}/{ns}/{name}", kind_of(d)),
        None => format!("{}/{name}", kind_of(d)),
    };
    report.objects.push(object);
    if changed {
        report.changed += 1;
    }
    Ok(())
}

fn kind_of(d: &Document) -> String {
    d.object
        .types
        .as_ref()
        .map(|t| t.kind.clone())
        .unwrap_or_default()
}

fn crd_in_input(crds: &[&Document], d: &Document) -> bool {
    let Some(t) = d.object.types.as_ref() else {
        return false;
    };
    let group = t.api_version.split('/').next().unwrap_or("");
    crds.iter().any(|c| {
        let spec = c.object.data.get("spec");
        spec.and_then(|s| s.get("group")).and_then(|g| g.as_str()) == Some(group)
            && spec
                .and_then(|s| s.get("names"))
                .and_then(|n| n.get("kind"))
                .and_then(|k| k.as_str())
                == Some(t.kind.as_str())
    })
}

fn unknown_kind(d: &Document) -> KubeError {
    let t = d.object.types.as_ref();
    KubeError::UnknownKind {
        document: d.whereis(),
        api_version: t
            .map(|t| t.api_version.clone())
            .unwrap_or_else(|| "?".into()),
        kind: t.map(|t| t.kind.clone()).unwrap_or_else(|| "?".into()),
    }
}

type ApiPair = (Api<DynamicObject>, ApiResource);

fn api_for(
    client: &kube::Client,
    discovery: &Discovery,
    d: &Document,
    default_ns: &str,
) -> Result<Option<ApiPair>, KubeError> {
    let t = d.object.types.as_ref().ok_or_else(|| unknown_kind(d))?;
    let gvk = GroupVersionKind::try_from(t).map_err(|e| KubeError::BadKind {
        document: d.whereis(),
        reason: e.to_string(),
    })?;
    let Some((ar, caps)) = discovery.resolve_gvk(&gvk) else {
        return Ok(None);
    };
    let api = match caps.scope {
        Scope::Cluster => Api::<DynamicObject>::all_with(client.clone(), &ar),
        Scope::Namespaced => {
            let ns = d
                .object
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| default_ns.to_string());
            Api::namespaced_with(client.clone(), &ns, &ar)
        }
    };
    Ok(Some((api, ar)))
}

async fn patch(
    api: &Api<DynamicObject>,
    d: &Document,
    pp: &PatchParams,
) -> Result<DynamicObject, KubeError> {
    let name = d.object.metadata.name.clone().unwrap_or_default();
    let mut obj = d.object.clone();
    // The namespace comes from the Api; a cluster-scoped object must not carry one.
    obj.metadata.namespace = None;
    default_port_protocols(&mut obj.data);
    let (what, doing) = (d.whereis(), format!("applying {}", d.whereis()));
    let refused = |e: kube::Error| KubeError::change(&what, &doing, pp.dry_run, e);
    match api.patch(&name, pp, &Patch::Apply(&obj)).await {
        // Server-side apply cannot represent lists with duplicate keys, e.g. two container
        // ports with the same number (Istio's grafana.yaml; kubernetes/kubernetes#113482).
        // kubectl's client-side apply takes them; so does a create or replace.
        Err(kube::Error::Api(s)) if s.message.contains("duplicate entries for key") => {
            create_or_replace(api, &name, &obj, pp.dry_run)
                .await
                .map_err(refused)
        }
        other => other.map_err(refused),
    }
}

/// Creates the object, or replaces the existing one (keeping its resourceVersion), the way
/// `kubectl create` / `kubectl replace` would.
async fn create_or_replace(
    api: &Api<DynamicObject>,
    name: &str,
    obj: &DynamicObject,
    dry_run: bool,
) -> Result<DynamicObject, kube::Error> {
    let pp = PostParams {
        dry_run,
        field_manager: Some(FIELD_MANAGER.to_string()),
    };
    match api.get_opt(name).await? {
        None => api.create(&pp, obj).await,
        Some(existing) => {
            let mut o = obj.clone();
            o.metadata.resource_version = existing.metadata.resource_version;
            api.replace(name, &pp, &o).await
        }
    }
}

/// Sets `protocol: TCP` on Service and container ports that omit it. Server-side apply on
/// Kubernetes before 1.21 refuses such ports ("associative list with keys has an element that
/// omits key field protocol", kubernetes/kubernetes#58477), and Bookinfo's own manifests omit
/// it; TCP is the API's documented default, so the object means the same.
pub fn default_port_protocols(data: &mut serde_json::Value) {
    fn fix_ports(ports: Option<&mut serde_json::Value>) {
        for p in ports.and_then(|p| p.as_array_mut()).into_iter().flatten() {
            if let Some(o) = p.as_object_mut() {
                o.entry("protocol").or_insert_with(|| "TCP".into());
            }
        }
    }
    fn fix_pod_spec(spec: Option<&mut serde_json::Value>) {
        let Some(spec) = spec else { return };
        for key in ["containers", "initContainers"] {
            for c in spec
                .get_mut(key)
                .and_then(|c| c.as_array_mut())
                .into_iter()
                .flatten()
            {
                fix_ports(c.get_mut("ports"));
            }
        }
    }
    let Some(spec) = data.get_mut("spec") else {
        return;
    };
    if spec.get("ports").is_some() && spec.get("containers").is_none() {
        fix_ports(spec.get_mut("ports"));
    }
    fix_pod_spec(Some(spec));
    fix_pod_spec(spec.get_mut("template").and_then(|t| t.get_mut("spec")));
    fix_pod_spec(
        spec.get_mut("jobTemplate")
            .and_then(|j| j.get_mut("spec"))
            .and_then(|s| s.get_mut("template"))
            .and_then(|t| t.get_mut("spec")),
    );
}
