//! **STAND-IN for istioctl**, not Istio: the subcommands the walkthrough and istio-e2e call,
//! doing to a cluster what the real ones do, with the release's own CRDs and the stand-in
//! control plane's images under Istio's real names:
//! - `install|upgrade [--set k=v]... [--revision R] [-y]`: the release's CRDs, then the objects
//!   of the profile ([`profile`]), then waits until they are ready, printing istioctl's lines;
//! - `uninstall --revision R | --purge [-y]`: removes what install made (`x uninstall` before
//!   1.15, as the real one);
//! - `version [--remote=false|--short]`, `analyze [-n NS|-A]` (two of istioctl's analyzers,
//!   computed from the cluster: IST0102 and IST0103), `proxy-status`.
//!
//! The release directory comes from `ISTIO_E2E_STANDIN_RELEASE` (what istio-e2e passes as
//! `--istio-dir`) and the version from `ISTIO_E2E_STANDIN_VERSION` (else the directory's name).
//! Every call's arguments are appended to `$ISTIOCTL_LOG` when it is set.

pub mod apply;
pub mod inspect;
pub mod profile;
pub mod set;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use crate::istiod::inject::IstioVersion;

/// What can fail.
#[derive(Debug, thiserror::Error)]
pub enum IstioctlError {
    /// Bad arguments.
    #[error("{0}")]
    Usage(String),
    /// The release directory is missing or incomplete.
    #[error("{0}")]
    Release(String),
    /// A call to the apiserver failed.
    #[error("{what}: {source}")]
    Kube {
        /// What was being done.
        what: String,
        /// The client's error.
        source: kube::Error,
    },
    /// A wait did not end well.
    #[error("{0}")]
    Wait(String),
}

impl IstioctlError {
    /// A kube error with what was being done.
    pub fn kube(what: impl Into<String>, source: kube::Error) -> Self {
        IstioctlError::Kube {
            what: what.into(),
            source,
        }
    }
}

/// The parsed command line.
#[derive(Debug, Clone, Default)]
pub struct Args {
    /// The subcommand (`install`, ...).
    pub command: String,
    /// `--set` assignments, in order.
    pub set: Vec<String>,
    /// `--revision`.
    pub revision: Option<String>,
    /// `--kubeconfig`.
    pub kubeconfig: Option<PathBuf>,
    /// `--context`.
    pub context: Option<String>,
    /// `-n`/`--namespace`.
    pub namespace: Option<String>,
    /// Flags given without a value (`-y`, `--purge`, `--remote=false`, `-A`, ...).
    pub flags: Vec<String>,
    /// The subcommand came under `x` (`experimental`): `istioctl x uninstall`.
    pub experimental: bool,
}

/// Parses istioctl's arguments (the flags istio-e2e and the walkthrough use).
pub fn parse(argv: &[String]) -> Result<Args, IstioctlError> {
    let mut a = Args::default();
    let mut it = argv.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| IstioctlError::Usage(format!("{name} needs a value")))
        };
        match arg.as_str() {
            "--set" | "-s" => a.set.push(value(arg)?),
            "--revision" | "-r" => a.revision = Some(value(arg)?),
            "--kubeconfig" | "-c" => a.kubeconfig = Some(value(arg)?.into()),
            "--context" => a.context = Some(value(arg)?),
            "-n" | "--namespace" => a.namespace = Some(value(arg)?),
            s if s.starts_with("--set=") => a.set.push(s["--set=".len()..].into()),
            s if s.starts_with("--revision=") => a.revision = Some(s["--revision=".len()..].into()),
            s if s.starts_with('-') => a.flags.push(s.into()),
            s if a.command.is_empty() => a.command = s.into(),
            s if matches!(a.command.as_str(), "x" | "experimental") && !a.experimental => {
                a.experimental = true;
                a.command = s.into();
            }
            s => a.flags.push(s.into()),
        }
    }
    Ok(a)
}

/// The release this stand-in stands for.
#[derive(Debug, Clone)]
pub struct Release {
    /// The release directory (samples, manifests).
    pub dir: PathBuf,
    /// Its version.
    pub version: IstioVersion,
}

impl Release {
    /// From `ISTIO_E2E_STANDIN_RELEASE` and `ISTIO_E2E_STANDIN_VERSION`.
    pub fn from_env() -> Result<Self, IstioctlError> {
        let dir = std::env::var_os("ISTIO_E2E_STANDIN_RELEASE").map(PathBuf::from).ok_or_else(|| {
            IstioctlError::Release("ISTIO_E2E_STANDIN_RELEASE is not set: the stand-in istioctl needs the Istio release directory (istio-e2e sets it from --istio-dir)".into())
        })?;
        let named = std::env::var("ISTIO_E2E_STANDIN_VERSION")
            .ok()
            .filter(|v| !v.is_empty());
        let from_dir = dir
            .file_name()
            .map(|n| n.to_string_lossy().trim_start_matches("istio-").to_string());
        let raw = named.or(from_dir).unwrap_or_default();
        let version = raw
            .parse()
            .map_err(|e| IstioctlError::Release(format!("{e} (set ISTIO_E2E_STANDIN_VERSION)")))?;
        Ok(Release { dir, version })
    }

    /// The release's CRD file (either layout).
    pub fn crd_file(&self) -> Result<PathBuf, IstioctlError> {
        [
            "manifests/charts/base/files/crd-all.gen.yaml",
            "manifests/charts/base/crds/crd-all.gen.yaml",
            "manifests/crd-all.gen.yaml",
        ]
        .iter()
        .map(|p| self.dir.join(p))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            IstioctlError::Release(format!(
                "no crd-all.gen.yaml under {}/manifests",
                self.dir.display()
            ))
        })
    }
}

/// Reads a multi-document YAML file into its non-empty documents.
pub fn read_documents(path: &Path) -> Result<Vec<Value>, IstioctlError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| IstioctlError::Release(format!("cannot read {}: {e}", path.display())))?;
    let docs: Vec<Value> = serde_saphyr::from_str_multiple(&text)
        .map_err(|e| IstioctlError::Release(format!("{} is not YAML: {e}", path.display())))?;
    Ok(docs.into_iter().filter(|d| d.is_object()).collect())
}

/// A client for `--kubeconfig`/`--context` (else the usual defaults).
pub async fn client(args: &Args) -> Result<kube::Client, IstioctlError> {
    let opts = kube::config::KubeConfigOptions {
        context: args.context.clone(),
        ..Default::default()
    };
    let config = match &args.kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path).map_err(|e| {
                IstioctlError::Usage(format!("cannot read {}: {e}", path.display()))
            })?;
            kube::Config::from_custom_kubeconfig(kc, &opts)
                .await
                .map_err(|e| IstioctlError::Usage(format!("kubeconfig {}: {e}", path.display())))?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| IstioctlError::Usage(format!("no kubeconfig: {e}")))?,
    };
    kube::Client::try_from(config).map_err(|e| IstioctlError::kube("making a client", e))
}

/// The install the arguments describe.
pub fn install_spec(args: &Args, release: &Release) -> Result<profile::Install, IstioctlError> {
    let mut tree = json!({});
    for s in &args.set {
        set::set(&mut tree, s).map_err(|e| IstioctlError::Usage(e.to_string()))?;
    }
    let profile = tree["profile"].as_str().unwrap_or("default").to_string();
    if !["demo", "default", "minimal"].contains(&profile.as_str()) {
        return Err(IstioctlError::Usage(format!(
            "the stand-in istioctl knows the profiles demo, default and minimal, not {profile}"
        )));
    }
    let mut mesh = json!({});
    if profile == "demo" {
        mesh["accessLogFile"] = json!("/dev/stdout");
    }
    profile::merge(&mut mesh, &tree["meshConfig"]);
    let global = &tree["values"]["global"];
    Ok(profile::Install {
        version: release.version,
        revision: args
            .revision
            .clone()
            .or(tree["revision"].as_str().map(String::from))
            .unwrap_or_else(|| "default".into()),
        hub: global["hub"].as_str().unwrap_or("docker.io/istio").into(),
        tag: global["tag"]
            .as_str()
            .map(String::from)
            .unwrap_or_else(|| release.version.to_string()),
        gateways: profile != "minimal",
        mesh,
    })
}

/// `install` / `upgrade`.
pub async fn install(args: &Args) -> Result<(), IstioctlError> {
    let release = Release::from_env()?;
    let spec = install_spec(args, &release)?;
    let client = client(args).await?;
    let limit = Duration::from_secs(300);
    let crds = read_documents(&release.crd_file()?)?;
    apply::apply_all(&client, &crds).await?;
    apply::crds_established(&client, &crds, limit).await?;
    println!("✔ Istio core installed");
    let objects = spec.objects();
    apply::apply_all(&client, &objects).await?;
    let (istiod, gateways): (Vec<Value>, Vec<Value>) = objects
        .into_iter()
        .partition(|o| o["metadata"]["labels"]["operator.istio.io/component"] == "Pilot");
    apply::deployments_ready(&client, &istiod, limit).await?;
    println!("✔ Istiod installed");
    apply::deployments_ready(&client, &gateways, limit).await?;
    if !gateways.is_empty() {
        println!("✔ Egress gateways installed");
        println!("✔ Ingress gateways installed");
    }
    println!("✔ Installation complete");
    Ok(())
}

/// The kinds an install makes, in the order they are applied.
const KINDS: [(&str, &str); 7] = [
    ("v1", "ServiceAccount"),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
    ("v1", "ConfigMap"),
    ("apps/v1", "Deployment"),
    ("v1", "Service"),
    (
        "admissionregistration.k8s.io/v1",
        "MutatingWebhookConfiguration",
    ),
];

/// Refuses `uninstall` outside `x` before 1.15, with the real istioctl's words.
fn uninstall_spelled_for(args: &Args, version: IstioVersion) -> Result<(), IstioctlError> {
    let promoted = IstioVersion {
        major: 1,
        minor: 15,
        patch: 0,
    };
    if args.experimental || version >= promoted {
        return Ok(());
    }
    Err(IstioctlError::Usage(format!(
        "unknown command \"uninstall\" for \"istioctl\" (istioctl {version} has `x uninstall`)\n\
         Run 'istioctl --help' for usage."
    )))
}

/// `uninstall --revision R` or `uninstall --purge`; before 1.15 only as `x uninstall`, as
/// the real one (istio/istio#40362 promoted it out of `experimental` in 1.15).
pub async fn uninstall(args: &Args) -> Result<(), IstioctlError> {
    if let Ok(release) = Release::from_env() {
        uninstall_spelled_for(args, release.version)?;
    }
    let owner = format!("{}=installed-state", profile::OWNER_LABEL);
    let selector = match (&args.revision, args.flags.iter().any(|f| f == "--purge")) {
        (Some(r), _) => format!("{owner},istio.io/rev={r}"),
        (None, true) => owner,
        (None, false) => {
            return Err(IstioctlError::Usage(
                "uninstall needs --revision R or --purge".into(),
            ));
        }
    };
    let client = client(args).await?;
    let n = apply::delete_labelled(&client, &KINDS, &selector).await?;
    println!("  Removed {n} objects.");
    println!("✔ Uninstall complete");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Args {
        parse(&line.split(' ').map(String::from).collect::<Vec<_>>()).unwrap()
    }

    /// `uninstall` left `experimental` in 1.15: 1.12's istioctl knows only `x uninstall`.
    #[test]
    fn uninstall_is_x_uninstall_before_1_15() {
        let v = |s: &str| s.parse::<IstioVersion>().unwrap();
        let x = args("x uninstall --purge -y --kubeconfig /k");
        assert_eq!(
            (x.command.as_str(), x.experimental, x.flags.as_slice()),
            (
                "uninstall",
                true,
                ["--purge".to_string(), "-y".into()].as_slice()
            )
        );
        assert_eq!(x.kubeconfig.as_deref(), Some(Path::new("/k")));
        let plain = args("uninstall --revision default -y");
        assert!(!plain.experimental);
        assert!(uninstall_spelled_for(&x, v("1.12.1")).is_ok());
        assert!(uninstall_spelled_for(&plain, v("1.15.0")).is_ok());
        let e = uninstall_spelled_for(&plain, v("1.12.1")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("unknown command \"uninstall\" for \"istioctl\""),
            "{e}"
        );
        assert_eq!(args("experimental uninstall --purge").command, "uninstall");
    }
}
