//! `existing`: a cluster the user already has, by kubeconfig and context. It is never deleted;
//! the kubeconfig (several, merged, when `KUBECONFIG` lists several) is written into the run's
//! artifacts so nothing writes to the user's files.

use std::path::{Path, PathBuf};

use kube::config::Kubeconfig;

use futures::future::BoxFuture;

use super::{ClusterError, ClusterInfo, ClusterRequest, Provider};

/// The existing-cluster provider.
#[derive(Default)]
pub struct Existing {
    /// The kubeconfig the scenario names (`cluster.kubeconfig`), which comes before the
    /// environment's.
    kubeconfig: Option<PathBuf>,
}

impl Existing {
    /// The provider for the kubeconfig a scenario names (`cluster.kubeconfig`); without one,
    /// `ISTIO_E2E_KUBECONFIG`, then `KUBECONFIG`.
    pub fn with_kubeconfig(kubeconfig: Option<PathBuf>) -> Self {
        Existing { kubeconfig }
    }

    /// The kubeconfig files, in order: the one the scenario or request names, else each path
    /// of `ISTIO_E2E_KUBECONFIG`, else of `KUBECONFIG` (a `:`-separated list, as kubectl reads
    /// it).
    fn source_kubeconfigs(&self, req: Option<&ClusterRequest>) -> Vec<PathBuf> {
        if let Some(p) = req
            .and_then(|r| r.kubeconfig.clone())
            .or(self.kubeconfig.clone())
        {
            return vec![p];
        }
        ["ISTIO_E2E_KUBECONFIG", "KUBECONFIG"]
            .iter()
            .filter_map(std::env::var_os)
            .map(|v| {
                std::env::split_paths(&v)
                    .filter(|p| !p.as_os_str().is_empty())
                    .collect::<Vec<_>>()
            })
            .find(|paths| !paths.is_empty())
            .unwrap_or_default()
    }
}

/// Merges `paths` as kubectl does (the first file to set a name wins; missing files of a list
/// are skipped, but not all of them), with relative certificate paths made absolute, and
/// writes the result to `dst` (mode 0600: it holds credentials).
pub fn merge_into(paths: &[PathBuf], dst: &Path) -> Result<(), ClusterError> {
    let present: Vec<&PathBuf> = paths.iter().filter(|p| p.is_file()).collect();
    let Some(first) = present.first() else {
        return Err(paths.first().map_or(ClusterError::NoKubeconfig, |p| {
            ClusterError::KubeconfigMissing(p.clone())
        }));
    };
    let read = |p: &PathBuf| {
        Kubeconfig::read_from(p).map_err(|source| ClusterError::ReadKubeconfig {
            path: p.clone(),
            source,
        })
    };
    let mut merged = read(first)?;
    for p in &present[1..] {
        merged = merged
            .merge(read(p)?)
            .map_err(|source| ClusterError::ReadKubeconfig {
                path: (*p).clone(),
                source,
            })?;
    }
    let text = serde_json::to_vec_pretty(&merged).expect("a kubeconfig serializes");
    write_private(dst, &text).map_err(|source| ClusterError::WriteKubeconfig {
        path: dst.to_path_buf(),
        source,
    })
}

fn write_private(dst: &Path, text: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(dst);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dst)?;
    f.write_all(text)
}

impl Provider for Existing {
    fn name(&self) -> &'static str {
        "existing"
    }
    fn needs(&self) -> &'static str {
        "a kubeconfig: ISTIO_E2E_KUBECONFIG, KUBECONFIG or the scenario's cluster.kubeconfig"
    }
    fn check(&self) -> Result<(), ClusterError> {
        let paths = self.source_kubeconfigs(None);
        match paths.first() {
            None => Err(ClusterError::NoKubeconfig),
            Some(_) if paths.iter().any(|p| p.is_file()) => Ok(()),
            Some(p) => Err(ClusterError::KubeconfigMissing(p.clone())),
        }
    }
    fn create<'a>(
        &'a mut self,
        req: &'a ClusterRequest,
    ) -> BoxFuture<'a, Result<ClusterInfo, ClusterError>> {
        Box::pin(async move {
            let src = self.source_kubeconfigs(Some(req));
            if src.is_empty() {
                return Err(ClusterError::NoKubeconfigForExisting);
            }
            std::fs::create_dir_all(&req.artifacts).ok();
            let dst = req.artifacts.join("kubeconfig");
            merge_into(&src, &dst)?;
            Ok(ClusterInfo {
                provider: "existing".into(),
                kubeconfig: dst,
                context: req.context.clone(),
                node_address: None,
                name: req.context.clone().unwrap_or_else(|| "existing".into()),
            })
        })
    }
    fn teardown(&mut self, _keep: bool) -> BoxFuture<'_, Result<String, ClusterError>> {
        Box::pin(async { Ok("existing cluster left as it was".to_string()) })
    }
    fn owns_cluster(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn kubeconfig(name: &str, ca: &str, current: bool) -> String {
        let current = if current {
            format!("current-context: {name}\n")
        } else {
            String::new()
        };
        format!(
            "apiVersion: v1\nkind: Config\n{current}clusters:\n- name: {name}\n  cluster: {{server: https://{name}:6443, certificate-authority: {ca}}}\ncontexts:\n- name: {name}\n  context: {{cluster: {name}, user: {name}}}\nusers:\n- name: {name}\n  user: {{token: secret-{name}}}\n"
        )
    }

    /// `KUBECONFIG=a:missing:b` is merged as kubectl merges it, relative certificate paths
    /// made absolute, into a private file; a list of only missing files is refused.
    #[test]
    fn a_kubeconfig_list_is_merged_into_the_runs_own_file() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.yaml"), dir.path().join("b.yaml"));
        std::fs::write(&a, kubeconfig("a", "ca.crt", true)).unwrap();
        std::fs::write(&b, kubeconfig("b", "/etc/b-ca.crt", true)).unwrap();
        let dst = dir.path().join("run/kubeconfig");
        std::fs::create_dir(dir.path().join("run")).unwrap();
        let list = [a.clone(), dir.path().join("missing.yaml"), b];
        merge_into(&list, &dst).unwrap();

        let merged = Kubeconfig::read_from(&dst).unwrap();
        assert_eq!(
            merged.current_context.as_deref(),
            Some("a"),
            "the first file wins"
        );
        let contexts: Vec<&str> = merged.contexts.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(contexts, ["a", "b"]);
        let ca = |i: usize| {
            merged.clusters[i]
                .cluster
                .as_ref()
                .and_then(|c| c.certificate_authority.clone())
        };
        assert_eq!(ca(0), Some(dir.path().join("ca.crt").display().to_string()));
        assert_eq!(ca(1).as_deref(), Some("/etc/b-ca.crt"));
        let text = std::fs::read_to_string(&dst).unwrap();
        assert!(text.contains("secret-b"), "credentials are kept: {text}");
        let mode = std::fs::metadata(&dst).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);

        let none = [dir.path().join("x.yaml"), dir.path().join("y.yaml")];
        let e = merge_into(&none, &dst).unwrap_err();
        assert!(
            matches!(&e, ClusterError::KubeconfigMissing(p) if p == &none[0]),
            "{e}"
        );
    }
}
