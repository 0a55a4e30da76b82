//! The istioctl step through the real runner, with a stand-in `istioctl` script in a release
//! directory (istioctl cannot be downloaded here): it is found in `<istio dir>/bin`, called
//! with an argument vector that points at the run's own kubeconfig (never `~/.kube/config`),
//! and `istioctl analyze`'s verdict on stderr is checked like the walkthrough's.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use futures::future::BoxFuture;
use harness::cluster::{ClusterError, ClusterInfo, ClusterRequest, Provider};
use harness::results::Status;
use harness::runner::{RunOptions, StepRunner, run_with};

struct FakeCluster;

impl Provider for FakeCluster {
    fn name(&self) -> &'static str {
        "fake"
    }
    fn needs(&self) -> &'static str {
        "nothing"
    }
    fn check(&self) -> Result<(), ClusterError> {
        Ok(())
    }
    fn create<'a>(
        &'a mut self,
        req: &'a ClusterRequest,
    ) -> BoxFuture<'a, Result<ClusterInfo, ClusterError>> {
        Box::pin(async move {
            let kubeconfig = req.artifacts.join("kubeconfig");
            std::fs::write(&kubeconfig, "apiVersion: v1\nkind: Config\n").unwrap();
            Ok(ClusterInfo {
                provider: "fake".into(),
                kubeconfig,
                context: None,
                node_address: None,
                name: "fake".into(),
            })
        })
    }
    fn teardown(&mut self, _keep: bool) -> BoxFuture<'_, Result<String, ClusterError>> {
        Box::pin(async { Ok(String::new()) })
    }
}

/// A release directory whose bin/istioctl records its argv and KUBECONFIG, prints `verdict`
/// on stderr and exits with `code`.
fn release(verdict: &str, code: i32) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("bin")).unwrap();
    std::fs::create_dir_all(dir.path().join("samples")).unwrap();
    let log = dir.path().join("calls.log");
    let script = format!(
        "#!/bin/sh\nprintf '%s\\n' \"argv: $*\" \"KUBECONFIG=$KUBECONFIG\" >> '{}'\necho '{verdict}' >&2\nexit {code}\n",
        log.display()
    );
    let bin = dir.path().join("bin/istioctl");
    std::fs::write(&bin, script).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    (dir, log)
}

async fn run(release_dir: &Path) -> harness::results::RunResult {
    let text = format!(
        "name: istioctl-step\ncluster: {{ provider: existing }}\nistio: {{ dir: {} }}\nsteps:\n  - istioctl:\n      args: [analyze, -n, default]\n      expect:\n        stdout-contains: No validation issues found\n",
        release_dir.display()
    );
    let file = harness::scenario::parse_str(Path::new("istioctl.yaml"), text).unwrap();
    assert_eq!(
        harness::scenario::validate(&file, &Default::default()),
        vec![]
    );
    let tmp = tempfile::tempdir().unwrap().keep();
    let opts = RunOptions {
        artifacts_root: Some(tmp),
        quiet: true,
        no_signal_handler: true,
        ..Default::default()
    };
    run_with(&file, &opts, Box::new(FakeCluster), &StepRunner).await
}

#[tokio::test]
async fn analyze_passes_on_the_verdict_with_the_runs_own_kubeconfig() {
    let (dir, log) = release(
        "✔ No validation issues found when analyzing namespace: default.",
        0,
    );
    let r = run(dir.path()).await;
    assert_eq!(r.status, Status::Passed, "{:?}", r.failure_message());
    let calls = std::fs::read_to_string(&log).unwrap();
    let kubeconfig = format!("{}/kubeconfig", r.artifacts);
    assert_eq!(
        calls,
        format!("argv: analyze -n default --kubeconfig {kubeconfig}\nKUBECONFIG={kubeconfig}\n")
    );
}

#[tokio::test]
async fn analyze_warnings_with_exit_0_still_fail_the_step() {
    // istioctl analyze exits 0 on warnings; only the verdict text tells.
    let (dir, _) = release(
        "Warning [IST0102] (Namespace default) The namespace is not enabled for Istio injection.",
        0,
    );
    let r = run(dir.path()).await;
    assert_eq!(r.status, Status::Failed);
    let e = r.failure_message().unwrap();
    assert!(
        e.contains("stdout-contains: \"No validation issues found\" not found"),
        "{e}"
    );
}

#[tokio::test]
async fn analyze_errors_exit_79_and_fail_naming_the_code() {
    let (dir, _) = release("Error [IST0101] Referenced gateway not found", 79);
    let r = run(dir.path()).await;
    let e = r.failure_message().unwrap();
    assert!(e.contains("exit-code: expected 0, got 79"), "{e}");
}
