//! The Istio lifecycle: the release (prepared once, for the run and for upgrades), the
//! compatibility precheck, istioctl (found, run with the run's own kubeconfig), install,
//! upgrade and uninstall. Failures are [`IstioError`]s.

pub mod error;

use std::path::{Path, PathBuf};
use std::time::Instant;

use tokio::process::Command;

pub use self::error::IstioError;
use crate::context::Context;
use crate::download::IstioRelease;
use crate::kubeops::KubeError;

/// Supported Kubernetes versions per Istio minor release (official "supported" ranges from
/// the release announcements on istio.io, whose site keeps them in
/// `data/compatibility/supportStatus.yml`). `(istio minor, oldest k8s minor, newest k8s minor)`.
pub const SUPPORT: &[(u32, u32, u32)] = &[
    (10, 18, 21),
    (11, 18, 22),
    (12, 19, 22),
    (13, 20, 23),
    (14, 21, 24),
    (15, 22, 25),
    (16, 22, 25),
    (17, 23, 26),
    (18, 24, 27),
    (19, 25, 28),
    (20, 25, 29),
    (21, 26, 29),
    (22, 27, 30),
    (23, 27, 30),
    (24, 28, 31),
    (25, 29, 32),
    (26, 29, 32),
    (27, 29, 33),
    (28, 29, 34),
    (29, 31, 35),
    (30, 32, 36),
];

/// `1.30.3` -> `(1, 30)`.
pub fn minor_of(version: &str) -> Option<(u32, u32)> {
    let v = version.trim().trim_start_matches('v');
    let mut it = v.split('.');
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.trim_end_matches('+').parse().ok()?;
    Some((major, minor))
}

/// Checks that Istio `istio` supports Kubernetes `k8s`. Newer Kubernetes than the table's
/// newest is allowed with a warning (it usually works); older is refused, because the CRDs
/// use features the older apiserver lacks (Istio 1.30's CRDs need CEL, Kubernetes 1.25+).
pub fn check_compatibility(istio: &str, k8s: &str) -> Result<Option<String>, IstioError> {
    let bad = |what, version: &str| IstioError::BadVersion {
        what,
        version: version.to_string(),
    };
    let Some((1, im)) = minor_of(istio) else {
        return Err(bad("Istio", istio));
    };
    let Some((1, km)) = minor_of(k8s) else {
        return Err(bad("Kubernetes", k8s));
    };
    let Some(&(_, lo, hi)) = SUPPORT.iter().find(|(m, _, _)| *m == im) else {
        let newest = SUPPORT.last().map(|s| s.0).unwrap_or(0);
        if im > newest {
            return Ok(Some(format!(
                "Istio 1.{im} is newer than the support table (1.{newest}); not checked"
            )));
        }
        return Err(IstioError::TooOld(im));
    };
    if km < lo {
        return Err(IstioError::KubernetesTooOld {
            istio: istio.to_string(),
            kubernetes: k8s.to_string(),
            oldest: lo,
            newest: hi,
        });
    }
    if km > hi {
        return Ok(Some(format!(
            "Istio {istio} is supported up to Kubernetes 1.{hi}; this cluster is {k8s}, which is not officially supported"
        )));
    }
    Ok(None)
}

/// The compatibility precheck against a running cluster, for `istio-install` and
/// `istio-upgrade`: reads the cluster's Kubernetes version, then checks `istio` (when a
/// version is known) with [`check_compatibility`]. A refusal is an error; a warning (a newer
/// Kubernetes than the table lists) is logged and returned, for the step to record.
pub async fn check_cluster(
    client: &kube::Client,
    istio: Option<&str>,
) -> Result<Option<String>, IstioError> {
    let server = client
        .apiserver_version()
        .await
        .map_err(|e| KubeError::call("reading the cluster's version", e))?;
    let Some(istio) = istio else {
        return Ok(None);
    };
    let warning = check_compatibility(istio, &server.git_version)?;
    if let Some(w) = &warning {
        tracing::warn!("{w}");
    }
    Ok(warning)
}

/// The Istio release a run (the scenario's `istio:`, `--istio-dir`) or an `istio-upgrade` step
/// uses: the extracted release in `dir`, else a verified download of `version` recorded in
/// `istio-e2e.lock`; `None` when neither is given.
pub async fn prepare_release(
    dir: Option<&Path>,
    version: Option<&str>,
) -> Result<Option<IstioRelease>, IstioError> {
    let lock = PathBuf::from(crate::download::LOCK_FILE);
    Ok(crate::download::prepare_istio(dir, version, &lock).await?)
}

/// Makes `release` the one later steps use: `ctx.istio.dir`, `${istio.dir}`, `${istio.crds}`
/// and, when the release has one, its istioctl (else the istioctl found before stays).
pub fn use_release(ctx: &mut Context, release: &IstioRelease) {
    if let Some(istioctl) = &release.istioctl {
        ctx.istio.istioctl = Some(Istioctl::at(istioctl.clone()));
    }
    ctx.istio.dir = Some(release.dir.clone());
    ctx.vars.set("istio.dir", release.dir.display().to_string());
    let crds = crate::download::release_crds(&release.dir);
    let crds = crds.map(|c| c.display().to_string()).unwrap_or_default();
    ctx.vars.set("istio.crds", crds);
}

/// The components the profile installs, as deployments in `istio-system`.
pub fn profile_components(profile: &str) -> Vec<String> {
    match profile {
        "demo" => vec!["istiod", "istio-ingressgateway", "istio-egressgateway"],
        "default" => vec!["istiod", "istio-ingressgateway"],
        "minimal" | "remote" | "empty" => vec!["istiod"],
        "ambient" => vec!["istiod"],
        _ => vec!["istiod"],
    }
    .into_iter()
    .map(String::from)
    .collect()
}

/// An istioctl to run: the program and what its environment needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Istioctl {
    /// The program.
    pub path: PathBuf,
    /// Added to its environment (the lab's stand-in learns its release this way).
    pub env: Vec<(String, String)>,
}

impl Istioctl {
    /// A real istioctl at `path`.
    pub fn at(path: PathBuf) -> Self {
        Istioctl { path, env: vec![] }
    }

    /// The lab's stand-in istioctl (`fixtures/standins/build-images`), told which release it
    /// stands for: its CRDs and version.
    pub fn standin(path: PathBuf, release: &Path, version: &str) -> Self {
        let env = vec![
            (
                "ISTIO_E2E_STANDIN_RELEASE".into(),
                release.display().to_string(),
            ),
            ("ISTIO_E2E_STANDIN_VERSION".into(), version.to_string()),
        ];
        Istioctl { path, env }
    }
}

/// Finds istioctl: `<istio dir>/bin/istioctl`, else `istioctl` on PATH.
pub fn find_istioctl(dir: Option<&Path>) -> Option<PathBuf> {
    if let Some(d) = dir {
        let p = d.join("bin/istioctl");
        if p.is_file() {
            return Some(p);
        }
    }
    crate::cluster::which("istioctl")
}

/// The output of one istioctl run.
#[derive(Debug, Clone)]
pub struct IstioctlOutput {
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// Exit code.
    pub exit_code: i32,
}

/// The argv of an istioctl call: the args, then `--kubeconfig <own file>` (never the user's
/// `~/.kube/config`).
pub fn istioctl_argv(args: &[String], kubeconfig: &Path, context: Option<&str>) -> Vec<String> {
    let mut v: Vec<String> = args.to_vec();
    v.push("--kubeconfig".into());
    v.push(kubeconfig.display().to_string());
    if let Some(c) = context {
        v.push("--context".into());
        v.push(c.into());
    }
    v
}

/// The argv of `istioctl install` for a profile and `--set` values.
pub fn install_args(profile: &str, set: &[String], revision: Option<&str>) -> Vec<String> {
    let mut v = vec![
        "install".to_string(),
        "--set".into(),
        format!("profile={profile}"),
        "-y".into(),
    ];
    for s in set {
        v.push("--set".into());
        v.push(s.clone());
    }
    if let Some(r) = revision {
        v.push("--revision".into());
        v.push(r.into());
    }
    v
}

/// Runs istioctl with an argument vector (no shell), until `deadline`.
pub async fn run_istioctl(
    istioctl: &Istioctl,
    argv: &[String],
    deadline: Instant,
) -> Result<IstioctlOutput, IstioError> {
    let mut cmd = Command::new(&istioctl.path);
    cmd.args(argv)
        .envs(istioctl.env.iter().map(|(k, v)| (k, v)))
        .kill_on_drop(true)
        .stdin(std::process::Stdio::null());
    // Keep istioctl away from the user's kubeconfig even if a flag were missed.
    cmd.env(
        "KUBECONFIG",
        argv.iter()
            .skip_while(|a| *a != "--kubeconfig")
            .nth(1)
            .cloned()
            .unwrap_or_default(),
    );
    let left = deadline.saturating_duration_since(Instant::now());
    let out = tokio::time::timeout(left, crate::process::output(&mut cmd))
        .await
        .map_err(|_| IstioError::Timeout {
            argv: argv.join(" "),
        })?
        .map_err(|source| IstioError::Spawn {
            program: istioctl.path.clone(),
            source,
        })?;
    Ok(IstioctlOutput {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        exit_code: out.status.code().unwrap_or(-1),
    })
}

/// The argv of an in-place upgrade with the new release's istioctl:
/// `istioctl upgrade --set profile=<p> -y [--set ...]`.
pub fn upgrade_args(profile: &str, set: &[String]) -> Vec<String> {
    let mut v = install_args(profile, set, None);
    v[0] = "upgrade".into();
    v
}

/// How the istioctl of `version` spells uninstall: `uninstall` from 1.15, `x uninstall` before
/// (istio/istio#40362 promoted it out of `experimental`; 1.12's istioctl answers `unknown
/// command "uninstall"`). An unknown version gets today's spelling.
fn uninstall_command(version: Option<&str>) -> Vec<String> {
    match version.and_then(minor_of) {
        Some(v) if v < (1, 15) => vec!["x".into(), "uninstall".into()],
        _ => vec!["uninstall".into()],
    }
}

/// The argv that removes one control plane revision after a canary upgrade, for the istioctl
/// of `version`: `istioctl uninstall --revision <rev> -y` (`default` is the revision of an
/// install that named none).
pub fn uninstall_revision_args(revision: &str, version: &str) -> Vec<String> {
    let mut v = uninstall_command(Some(version));
    v.extend(["--revision".into(), revision.into(), "-y".into()]);
    v
}

/// The revision name Istio's docs use for a version: `1.30.3` -> `1-30-3`.
pub fn revision_for(version: &str) -> String {
    version.trim_start_matches('v').replace('.', "-")
}

/// Runs `istioctl <args> --kubeconfig <the cluster's own>`, appends the command and its output
/// to `log`, and fails, with an excerpt of the output, when it exits non-zero; `name` is how
/// the error names the command (`install`).
pub async fn run_checked(
    istioctl: &Istioctl,
    name: &str,
    args: &[String],
    cluster: &crate::cluster::ClusterInfo,
    log: &Path,
    deadline: Instant,
) -> Result<IstioctlOutput, IstioError> {
    use std::io::Write;
    let argv = istioctl_argv(args, &cluster.kubeconfig, cluster.context.as_deref());
    let res = run_istioctl(istioctl, &argv, deadline).await?;
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
    {
        let _ = writeln!(
            f,
            "$ istioctl {}
{}
{}",
            argv.join(" "),
            res.stdout,
            res.stderr
        );
    }
    if res.exit_code != 0 {
        return Err(IstioError::Exited {
            command: name.to_string(),
            code: res.exit_code,
            excerpt: crate::expect::excerpt(&format!("{} {}", res.stdout, res.stderr)),
        });
    }
    Ok(res)
}

/// The argv of the uninstall used on existing clusters, for the istioctl of `version`:
/// `istioctl uninstall --purge -y` (`x uninstall` before 1.15).
pub fn uninstall_args(version: Option<&str>) -> Vec<String> {
    let mut v = uninstall_command(version);
    v.extend(["--purge".into(), "-y".into()]);
    v
}

/// Adds `istioctl analyze -A` and `istioctl proxy-status` output to a diagnostics bundle
/// (best effort, a minute at most each); returns the files written.
pub async fn diagnostics(
    istioctl: &Istioctl,
    kubeconfig: &Path,
    context: Option<&str>,
    dir: &Path,
) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for (file, args) in [
        ("istioctl-analyze.txt", vec!["analyze", "-A"]),
        ("istioctl-proxy-status.txt", vec!["proxy-status"]),
    ] {
        let args: Vec<String> = args.into_iter().map(String::from).collect();
        let argv = istioctl_argv(&args, kubeconfig, context);
        let text = match run_istioctl(
            istioctl,
            &argv,
            Instant::now() + std::time::Duration::from_secs(60),
        )
        .await
        {
            Ok(r) => format!(
                "$ istioctl {}\nexit code {}\n{}{}",
                args.join(" "),
                r.exit_code,
                r.stdout,
                r.stderr
            ),
            Err(e) => format!("$ istioctl {}\n{e}\n", args.join(" ")),
        };
        let p = dir.join(file);
        if std::fs::write(&p, text).is_ok() {
            out.push(p);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compatibility_table_refuses_old_clusters_and_accepts_supported_ones() {
        assert_eq!(check_compatibility("1.12.1", "v1.20.2").unwrap(), None);
        assert_eq!(
            check_compatibility("1.9.0", "v1.20.2")
                .unwrap_err()
                .to_string(),
            "Istio 1.9 is older than any release this harness supports (1.10+)"
        );
        assert_eq!(
            check_compatibility("latest", "v1.20.2")
                .unwrap_err()
                .to_string(),
            "cannot read Istio version \"latest\""
        );
        let e = check_compatibility("1.30.3", "v1.20.2").unwrap_err();
        assert!(e.is_incompatible() && !e.is_retryable());
        assert_eq!(
            e.to_string(),
            "Istio 1.30.3 needs Kubernetes 1.32 or newer (supported: 1.32 to 1.36); this cluster is Kubernetes v1.20.2"
        );
        assert!(check_compatibility("1.12.1", "v1.30.0").unwrap().is_some());
    }

    #[test]
    fn istioctl_argv_points_at_the_runs_own_kubeconfig() {
        let argv = istioctl_argv(
            &install_args("demo", &["meshConfig.enableTracing=true".into()], None),
            Path::new("/tmp/run/kubeconfig"),
            None,
        );
        assert_eq!(
            argv,
            [
                "install",
                "--set",
                "profile=demo",
                "-y",
                "--set",
                "meshConfig.enableTracing=true",
                "--kubeconfig",
                "/tmp/run/kubeconfig"
            ]
        );
    }

    /// `uninstall` left `experimental` in 1.15 (istio/istio#40362): 1.12's istioctl has only
    /// `x uninstall`.
    #[test]
    fn uninstall_is_experimental_before_1_15() {
        assert_eq!(
            uninstall_args(Some("1.12.1")),
            ["x", "uninstall", "--purge", "-y"]
        );
        assert_eq!(
            uninstall_args(Some("1.14.6")),
            ["x", "uninstall", "--purge", "-y"]
        );
        assert_eq!(
            uninstall_args(Some("1.15.0")),
            ["uninstall", "--purge", "-y"]
        );
        assert_eq!(
            uninstall_args(Some("1.30.3")),
            ["uninstall", "--purge", "-y"]
        );
        assert_eq!(uninstall_args(None), ["uninstall", "--purge", "-y"]);
        assert_eq!(
            uninstall_revision_args("1-12-1", "1.13.9"),
            ["x", "uninstall", "--revision", "1-12-1", "-y"]
        );
        assert_eq!(
            uninstall_revision_args("default", "1.30.3"),
            ["uninstall", "--revision", "default", "-y"]
        );
    }
}

/// One control plane found on a cluster: an `istiod` Deployment in `istio-system`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledControlPlane {
    /// The Deployment's name (`istiod`, `istiod-1-30-3`).
    pub name: String,
    /// Its revision (`istio.io/rev`), `default` when unlabelled.
    pub revision: String,
    /// The version its pilot image is tagged with, when the tag is a version.
    pub version: Option<String>,
}

/// The Istio control planes already on the cluster (none when `istio-system` has no `istiod`
/// Deployment), found the way `istioctl x precheck` does: Deployments labelled `app=istiod`.
pub async fn installed(client: &kube::Client) -> Result<Vec<InstalledControlPlane>, IstioError> {
    use k8s_openapi::api::apps::v1::Deployment;
    let api: kube::Api<Deployment> = kube::Api::namespaced(client.clone(), "istio-system");
    let lp = kube::api::ListParams::default().labels("app=istiod");
    let list = api.list(&lp).await.map_err(|e| {
        crate::kubeops::KubeError::call("listing istiod deployments in istio-system", e)
    })?;
    Ok(list.items.iter().map(control_plane_of).collect())
}

fn control_plane_of(d: &k8s_openapi::api::apps::v1::Deployment) -> InstalledControlPlane {
    let labels = d.metadata.labels.clone().unwrap_or_default();
    let image = d
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_default();
    InstalledControlPlane {
        name: d.metadata.name.clone().unwrap_or_default(),
        revision: labels
            .get("istio.io/rev")
            .cloned()
            .unwrap_or_else(|| "default".into()),
        version: image_version(&image),
    }
}

/// The version in an image reference's tag (`docker.io/istio/pilot:1.30.3` -> `1.30.3`,
/// `...:1.30.3-distroless` -> `1.30.3`); `None` for a digest or a non-version tag.
pub fn image_version(image: &str) -> Option<String> {
    let tag = image.rsplit_once(':')?.1;
    if tag.contains('/') {
        return None; // a registry port, no tag
    }
    let version = tag.split('-').next()?;
    minor_of(version).map(|_| version.to_string())
}

/// What an `istio-install` step does on a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstallPlan {
    /// Install, and uninstall at teardown when the cluster outlives the run.
    Install,
    /// Install over the control plane that is there (`--reinstall-istio`); it was not the
    /// run's, so teardown leaves the result in place.
    Reinstall(Vec<InstalledControlPlane>),
    /// Use the control plane that is there; install nothing, uninstall nothing.
    UseExisting(Vec<InstalledControlPlane>),
}

/// Decides how to install: a cluster the run created is always installed into; on a cluster
/// that outlives the run (`existing`), an Istio already there is someone's mesh: it is used
/// unless the run was told to reinstall, and never uninstalled.
pub fn install_plan(
    found: Vec<InstalledControlPlane>,
    cluster_outlives_run: bool,
    reinstall: bool,
) -> InstallPlan {
    match (found.is_empty(), cluster_outlives_run, reinstall) {
        (true, _, _) | (false, false, _) => InstallPlan::Install,
        (false, true, true) => InstallPlan::Reinstall(found),
        (false, true, false) => InstallPlan::UseExisting(found),
    }
}

#[cfg(test)]
mod installed_tests {
    use super::*;

    fn cp(rev: &str, v: &str) -> InstalledControlPlane {
        InstalledControlPlane {
            name: "istiod".into(),
            revision: rev.into(),
            version: Some(v.into()),
        }
    }

    #[test]
    fn versions_from_image_tags() {
        assert_eq!(
            image_version("docker.io/istio/pilot:1.30.3").as_deref(),
            Some("1.30.3")
        );
        assert_eq!(
            image_version("gcr.io/istio-release/pilot:1.28.0-distroless").as_deref(),
            Some("1.28.0")
        );
        assert_eq!(image_version("localhost:5000/pilot"), None);
        assert_eq!(image_version("istio/pilot:latest"), None);
    }

    /// A user's mesh on an existing cluster is used, not installed over and never
    /// uninstalled; a cluster the run made is always installed into.
    #[test]
    fn an_existing_mesh_is_used_not_replaced() {
        let found = vec![cp("default", "1.29.1")];
        assert_eq!(install_plan(vec![], true, false), InstallPlan::Install);
        assert_eq!(
            install_plan(found.clone(), false, false),
            InstallPlan::Install
        );
        assert_eq!(
            install_plan(found.clone(), true, false),
            InstallPlan::UseExisting(found.clone())
        );
        assert_eq!(
            install_plan(found.clone(), true, true),
            InstallPlan::Reinstall(found)
        );
    }
}
