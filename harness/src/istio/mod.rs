//! The Istio lifecycle: the compatibility precheck, istioctl (found, run with the run's own
//! kubeconfig), install and uninstall.

use std::path::{Path, PathBuf};
use std::time::Instant;

use tokio::process::Command;

use crate::error::StepError;

/// Supported Kubernetes versions per Istio minor release (official "supported" ranges from
/// the release announcements on istio.io, `data/compatibility/supportStatus.yml`; see
/// shared/research/istio-anchors.md §5.1). `(istio minor, oldest k8s minor, newest k8s minor)`.
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
pub fn check_compatibility(istio: &str, k8s: &str) -> Result<Option<String>, String> {
    let Some((1, im)) = minor_of(istio) else {
        return Err(format!("cannot read Istio version {istio:?}"));
    };
    let Some((1, km)) = minor_of(k8s) else {
        return Err(format!("cannot read Kubernetes version {k8s:?}"));
    };
    let Some(&(_, lo, hi)) = SUPPORT.iter().find(|(m, _, _)| *m == im) else {
        let newest = SUPPORT.last().map(|s| s.0).unwrap_or(0);
        if im > newest {
            return Ok(Some(format!(
                "Istio 1.{im} is newer than the support table (1.{newest}); not checked"
            )));
        }
        return Err(format!(
            "Istio 1.{im} is older than any release this harness supports (1.10+)"
        ));
    };
    if km < lo {
        return Err(format!(
            "Istio {istio} needs Kubernetes 1.{lo} or newer (supported: 1.{lo} to 1.{hi}); this cluster is Kubernetes {k8s}"
        ));
    }
    if km > hi {
        return Ok(Some(format!(
            "Istio {istio} is supported up to Kubernetes 1.{hi}; this cluster is {k8s}, which is not officially supported"
        )));
    }
    Ok(None)
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
    istioctl: &Path,
    argv: &[String],
    deadline: Instant,
) -> Result<IstioctlOutput, StepError> {
    let mut cmd = Command::new(istioctl);
    cmd.args(argv)
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
    let out = tokio::time::timeout(left, cmd.output())
        .await
        .map_err(|_| {
            StepError::new(format!(
                "istioctl {} did not finish before the step's timeout",
                argv.join(" ")
            ))
        })?
        .map_err(|e| StepError::fatal(format!("cannot run {}: {e}", istioctl.display())))?;
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

/// The argv that removes one control plane revision after a canary upgrade:
/// `istioctl uninstall --revision <rev> -y` (`default` is the revision of an install that named
/// none).
pub fn uninstall_revision_args(revision: &str) -> Vec<String> {
    vec![
        "uninstall".into(),
        "--revision".into(),
        revision.into(),
        "-y".into(),
    ]
}

/// The revision name Istio's docs use for a version: `1.30.3` -> `1-30-3`.
pub fn revision_for(version: &str) -> String {
    version.trim_start_matches('v').replace('.', "-")
}

/// Runs `istioctl <args> --kubeconfig <the cluster's own>`, appends the command and its output
/// to `log`, and fails, with an excerpt of the output, when it exits non-zero; `name` is how
/// the error names the command (`install`).
pub async fn run_checked(
    istioctl: &Path,
    name: &str,
    args: &[String],
    cluster: &crate::cluster::ClusterInfo,
    log: &Path,
    deadline: Instant,
) -> Result<IstioctlOutput, StepError> {
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
        return Err(StepError::new(format!(
            "istioctl {name} exited {}: {}",
            res.exit_code,
            crate::expect::excerpt(&format!("{} {}", res.stdout, res.stderr))
        )));
    }
    Ok(res)
}

/// The argv of the uninstall used on existing clusters: `istioctl uninstall --purge -y`.
pub fn uninstall_args() -> Vec<String> {
    vec!["uninstall".into(), "--purge".into(), "-y".into()]
}

/// Adds `istioctl analyze -A` and `istioctl proxy-status` output to a diagnostics bundle
/// (best effort, a minute at most each); returns the files written.
pub async fn diagnostics(
    istioctl: &Path,
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
        assert_eq!(check_compatibility("1.12.1", "v1.20.2"), Ok(None));
        let e = check_compatibility("1.30.3", "v1.20.2").unwrap_err();
        assert_eq!(
            e,
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
}
