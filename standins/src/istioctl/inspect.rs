//! The read-only subcommands, computed from the cluster: `version`, `proxy-status`, and two
//! of `analyze`'s analyzers in istioctl's output format (followed: `pkg/config/analysis/
//! analyzers/injection/injection.go` for IST0102 and IST0103, `istioctl/pkg/analyze` for the
//! summary lines).

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, ListParams};

use super::{Args, IstioctlError, Release};

const STATUS: &str = "sidecar.istio.io/status";

fn injected(p: &Pod) -> bool {
    p.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(STATUS))
}

async fn pods(client: &kube::Client, ns: Option<&str>) -> Result<Vec<Pod>, IstioctlError> {
    let api: Api<Pod> = match ns {
        Some(n) => Api::namespaced(client.clone(), n),
        None => Api::all(client.clone()),
    };
    Ok(api
        .list(&ListParams::default())
        .await
        .map_err(|e| IstioctlError::kube("listing pods", e))?
        .items)
}

/// `version`: the client's, istiod's (from its image tags) and the injected proxies'.
pub async fn version(args: &Args) -> Result<(), IstioctlError> {
    let release = Release::from_env()?;
    if args
        .flags
        .iter()
        .any(|f| f == "--remote=false" || f == "--short")
    {
        println!("{}", release.version);
        return Ok(());
    }
    let client = super::client(args).await?;
    let api: Api<Deployment> = Api::namespaced(client.clone(), "istio-system");
    let istiods = api
        .list(&ListParams::default().labels("app=istiod"))
        .await
        .map_err(|e| IstioctlError::kube("listing istiod deployments", e))?;
    let mut tags: Vec<String> = istiods
        .iter()
        .flat_map(|d| {
            d.spec
                .as_ref()
                .and_then(|s| s.template.spec.as_ref())
                .map(|s| s.containers.clone())
                .unwrap_or_default()
        })
        .filter_map(|c| {
            c.image
                .and_then(|i| i.rsplit_once(':').map(|(_, t)| t.to_string()))
        })
        .collect();
    tags.dedup();
    let proxies = pods(&client, None)
        .await?
        .iter()
        .filter(|p| injected(p))
        .count();
    println!("client version: {}", release.version);
    println!(
        "control plane version: {}",
        if tags.is_empty() {
            "none".into()
        } else {
            tags.join(", ")
        }
    );
    println!(
        "data plane version: {} ({proxies} proxies)",
        release.version
    );
    Ok(())
}

/// `proxy-status`: one row per injected pod (the stand-in proxies are configured statically,
/// so every row is SYNCED).
pub async fn proxy_status(args: &Args) -> Result<(), IstioctlError> {
    let client = super::client(args).await?;
    println!(
        "{:<60} {:<11} {:<8} {:<8} {:<8} {:<8} {:<30} VERSION",
        "NAME", "CLUSTER", "CDS", "LDS", "EDS", "RDS", "ISTIOD"
    );
    let release = Release::from_env()?;
    for p in pods(&client, None).await?.iter().filter(|p| injected(p)) {
        let name = format!(
            "{}.{}",
            p.metadata.name.as_deref().unwrap_or(""),
            p.metadata.namespace.as_deref().unwrap_or("")
        );
        println!(
            "{name:<60} {:<11} {:<8} {:<8} {:<8} {:<8} {:<30} {}",
            "Kubernetes",
            "SYNCED",
            "SYNCED",
            "SYNCED",
            "SYNCED",
            "istiod (stand-in)",
            release.version
        );
    }
    Ok(())
}

/// One finding of `analyze`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// `Info`, `Warning` or `Error`.
    pub level: &'static str,
    /// `IST0102`...
    pub code: &'static str,
    /// `Namespace default`, `Pod default/x`.
    pub resource: String,
    /// The message.
    pub message: String,
}

/// IST0102 (a namespace with pods is not enabled for injection) and IST0103 (a pod in an
/// injected namespace lacks the proxy) for one namespace.
pub fn findings(ns: &Namespace, pods: &[Pod]) -> Vec<Finding> {
    let name = ns.metadata.name.clone().unwrap_or_default();
    let labels = ns.metadata.labels.clone().unwrap_or_default();
    let enabled = labels.get("istio-injection").map(String::as_str) == Some("enabled")
        || labels.contains_key("istio.io/rev");
    let explicit = labels.contains_key("istio-injection");
    let mut out = vec![];
    if !explicit && !enabled && !pods.is_empty() {
        out.push(Finding { level: "Info", code: "IST0102", resource: format!("Namespace {name}"),
            message: format!("The namespace is not enabled for Istio injection. Run 'kubectl label namespace {name} istio-injection=enabled' to enable it, or 'kubectl label namespace {name} istio-injection=disabled' to explicitly mark it as not needing injection.") });
    }
    if enabled {
        for p in pods
            .iter()
            .filter(|p| !injected(p) && p.metadata.deletion_timestamp.is_none())
        {
            let opted_out = p
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("sidecar.istio.io/inject"))
                .map(String::as_str)
                == Some("false");
            if !opted_out {
                out.push(Finding { level: "Warning", code: "IST0103",
                    resource: format!("Pod {name}/{}", p.metadata.name.as_deref().unwrap_or("")),
                    message: "The pod is missing the Istio proxy. This can often be resolved by restarting or redeploying the workload.".into() });
            }
        }
    }
    out
}

/// `analyze [-n NS | -A]`: prints the findings like istioctl; exit code 79 when a finding is an
/// Error (istioctl's default `--failure-threshold`), else 0.
pub async fn analyze(args: &Args) -> Result<i32, IstioctlError> {
    let client = super::client(args).await?;
    let all = args
        .flags
        .iter()
        .any(|f| f == "-A" || f == "--all-namespaces");
    let api: Api<Namespace> = Api::all(client.clone());
    let namespaces = api
        .list(&ListParams::default())
        .await
        .map_err(|e| IstioctlError::kube("listing namespaces", e))?;
    let wanted = args.namespace.clone().unwrap_or_else(|| "default".into());
    let mut found = vec![];
    for ns in namespaces
        .iter()
        .filter(|n| all || n.metadata.name.as_deref() == Some(wanted.as_str()))
    {
        let name = ns.metadata.name.clone().unwrap_or_default();
        if all
            && [
                "kube-system",
                "istio-system",
                "kube-public",
                "kube-node-lease",
            ]
            .contains(&name.as_str())
        {
            continue;
        }
        found.extend(findings(ns, &pods(&client, Some(&name)).await?));
    }
    let scope = if all {
        "all namespaces".to_string()
    } else {
        format!("namespace: {wanted}")
    };
    if found.is_empty() {
        eprintln!("\u{2714} No validation issues found when analyzing {scope}.");
        return Ok(0);
    }
    for f in &found {
        println!("{} [{}] ({}) {}", f.level, f.code, f.resource, f.message);
    }
    Ok(if found.iter().any(|f| f.level == "Error") {
        eprintln!("Error: Analyzers found issues when analyzing {scope}.");
        79
    } else {
        0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(labels: &[(&str, &str)]) -> Namespace {
        let mut n = Namespace::default();
        n.metadata.name = Some("default".into());
        n.metadata.labels = Some(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        n
    }

    fn pod(name: &str, injected: bool) -> Pod {
        let mut p = Pod::default();
        p.metadata.name = Some(name.into());
        if injected {
            p.metadata.annotations = Some([(STATUS.to_string(), "{}".to_string())].into());
        }
        p
    }

    #[test]
    fn an_unlabelled_namespace_with_pods_is_ist0102_and_an_unproxied_pod_ist0103() {
        let f = findings(&ns(&[]), &[pod("a", false)]);
        assert_eq!(f.len(), 1);
        assert_eq!((f[0].level, f[0].code), ("Info", "IST0102"));
        let f = findings(
            &ns(&[("istio-injection", "enabled")]),
            &[pod("a", false), pod("b", true)],
        );
        assert_eq!(f.len(), 1);
        assert_eq!(
            (f[0].code, f[0].resource.as_str()),
            ("IST0103", "Pod default/a")
        );
        assert!(findings(&ns(&[("istio-injection", "enabled")]), &[pod("b", true)]).is_empty());
        assert!(findings(&ns(&[("istio-injection", "disabled")]), &[pod("a", false)]).is_empty());
    }
}
