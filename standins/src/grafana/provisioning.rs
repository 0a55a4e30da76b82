//! The dashboards Grafana's file providers would provision: the providers of
//! `<provisioning>/dashboards/*.yaml`, and the `*.json` dashboards under each one's path.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use super::Error;

/// One dashboards provider of a provisioning file (`apiVersion: 1`, `providers:`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Provider {
    /// `name`.
    #[serde(default)]
    pub name: String,
    /// `folder`: the folder its dashboards go in (empty: General).
    #[serde(default)]
    pub folder: String,
    /// `folderUid`.
    #[serde(default)]
    pub folder_uid: String,
    /// `type` (only `file` providers provision anything).
    #[serde(default = "file_type", rename = "type")]
    pub kind: String,
    /// `options`.
    #[serde(default)]
    pub options: ProviderOptions,
}

fn file_type() -> String {
    "file".into()
}

/// A provider's `options`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProviderOptions {
    /// `path`: a folder (read recursively) or one file.
    #[serde(default)]
    pub path: PathBuf,
    /// `foldersFromFilesStructure`: subfolders become Grafana folders.
    #[serde(default)]
    pub folders_from_files_structure: bool,
}

#[derive(Deserialize)]
struct ProvisioningFile {
    #[serde(default)]
    providers: Vec<Provider>,
}

/// A provisioned dashboard.
#[derive(Debug, Clone, PartialEq)]
pub struct Dashboard {
    /// Its `uid` (or one derived from provider and path when the file has none).
    pub uid: String,
    /// Its `title`.
    pub title: String,
    /// Its `tags`.
    pub tags: Vec<String>,
    /// The folder's title (empty: General).
    pub folder: String,
    /// The folder's uid (empty: General).
    pub folder_uid: String,
    /// The file it was read from.
    pub path: PathBuf,
    /// The file's JSON.
    pub json: Value,
}

/// Everything provisioned, and what could not be read (Grafana logs those and goes on).
#[derive(Debug, Clone, Default)]
pub struct Library {
    /// Dashboards, first provider first; a uid seen again is skipped, as Grafana does.
    pub dashboards: Vec<Dashboard>,
    /// (uid, title) of each folder that holds a dashboard.
    pub folders: BTreeSet<(String, String)>,
    /// Files skipped, with why.
    pub skipped: Vec<String>,
}

/// The providers of every `*.yaml`/`*.yml` in `<provisioning>/dashboards` (none when the folder
/// is missing, as Grafana starts without one).
pub fn providers(provisioning: &Path) -> Result<Vec<Provider>, Error> {
    let dir = provisioning.join("dashboards");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(Vec::new());
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| matches!(p.extension().and_then(|x| x.to_str()), Some("yaml" | "yml")))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).map_err(|e| Error::Provisioning {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let parsed: ProvisioningFile =
            serde_saphyr::from_str(&text).map_err(|e| Error::Provisioning {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        out.extend(parsed.providers);
    }
    Ok(out)
}

/// Reads every dashboard the file providers under `provisioning` point at.
pub fn load_library(provisioning: &Path) -> Result<Library, Error> {
    let mut lib = Library::default();
    let mut seen = BTreeSet::new();
    for p in providers(provisioning)?.iter().filter(|p| p.kind == "file") {
        let mut files = Vec::new();
        json_files(&p.options.path, &mut files);
        files.sort();
        for file in files {
            match read_dashboard(p, &file) {
                Ok(d) if seen.insert(d.uid.clone()) => {
                    if !d.folder.is_empty() {
                        lib.folders.insert((d.folder_uid.clone(), d.folder.clone()));
                    }
                    lib.dashboards.push(d);
                }
                Ok(d) => lib
                    .skipped
                    .push(format!("{}: uid {} is taken", file.display(), d.uid)),
                Err(why) => lib.skipped.push(format!("{}: {why}", file.display())),
            }
        }
    }
    Ok(lib)
}

/// `*.json` under `path`, following symlinks and skipping dot-entries (a mounted ConfigMap's
/// `..data` and `..<timestamp>` folders hold the same files again).
fn json_files(path: &Path, out: &mut Vec<PathBuf>) {
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    if meta.is_file() {
        if path.extension().and_then(|x| x.to_str()) == Some("json") {
            out.push(path.to_path_buf());
        }
        return;
    }
    let Ok(entries) = std::fs::read_dir(path) else {
        return;
    };
    for e in entries.flatten() {
        if !e.file_name().to_string_lossy().starts_with('.') {
            json_files(&e.path(), out);
        }
    }
}

fn read_dashboard(p: &Provider, file: &Path) -> Result<Dashboard, String> {
    let text = std::fs::read_to_string(file).map_err(|e| e.to_string())?;
    let json: Value = serde_json::from_str(&text).map_err(|e| format!("not JSON: {e}"))?;
    let json = json.get("dashboard").cloned().unwrap_or(json);
    let title = json
        .get("title")
        .and_then(Value::as_str)
        .filter(|t| !t.trim().is_empty())
        .ok_or("the dashboard has no title")?
        .to_string();
    let uid = json
        .get("uid")
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| stable_uid(&format!("{}/{}", p.name, file.display())));
    let tags = json
        .get("tags")
        .and_then(Value::as_array)
        .map(|t| {
            t.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let folder = if p.options.folders_from_files_structure {
        subfolder(&p.options.path, file).unwrap_or_else(|| p.folder.clone())
    } else {
        p.folder.clone()
    };
    let folder_uid = match (&folder, p.folder_uid.as_str()) {
        (f, _) if f.is_empty() => String::new(),
        (f, "") => stable_uid(&format!("folder/{f}")),
        (f, u) if *f == p.folder => u.to_string(),
        (f, _) => stable_uid(&format!("folder/{f}")),
    };
    Ok(Dashboard {
        uid,
        title,
        tags,
        folder,
        folder_uid,
        path: file.to_path_buf(),
        json,
    })
}

fn subfolder(root: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(root).ok()?;
    let parent = rel.parent()?.to_string_lossy().to_string();
    (!parent.is_empty()).then_some(parent)
}

/// A 14-character uid that is the same for the same input (FNV-1a, base 36).
pub fn stable_uid(key: &str) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in key.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x100000001b3);
    }
    let alphabet = b"0123456789abcdefghijklmnopqrstuvwxyz";
    (0..14)
        .map(|i| {
            let v = h.rotate_left(i * 5) % 36;
            alphabet[v as usize] as char
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn providers_read_their_folders_and_skip_configmap_internals() {
        let d = tempfile::tempdir().unwrap();
        let dash = d.path().join("dashboards/istio");
        std::fs::create_dir_all(dash.join("..2026_01_01")).unwrap();
        std::fs::write(
            dash.join("..2026_01_01/mesh.json"),
            r#"{"title":"Istio Mesh Dashboard","uid":"G8wLrJIZk","tags":["istio"]}"#,
        )
        .unwrap();
        std::os::unix::fs::symlink("..2026_01_01", dash.join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/mesh.json", dash.join("mesh.json")).unwrap();
        std::fs::write(dash.join("broken.json"), "{").unwrap();
        let prov = d.path().join("prov/dashboards");
        std::fs::create_dir_all(&prov).unwrap();
        std::fs::write(
            prov.join("dashboardproviders.yaml"),
            format!(
                "apiVersion: 1\nproviders:\n- name: istio\n  folder: istio\n  type: file\n  \
                 options:\n    path: {}\n",
                dash.display()
            ),
        )
        .unwrap();
        let lib = load_library(&d.path().join("prov")).unwrap();
        assert_eq!(lib.dashboards.len(), 1, "{lib:?}");
        assert_eq!(lib.dashboards[0].title, "Istio Mesh Dashboard");
        assert_eq!(lib.dashboards[0].folder, "istio");
        assert_eq!(lib.skipped.len(), 1);
        assert!(
            load_library(&d.path().join("none"))
                .unwrap()
                .dashboards
                .is_empty()
        );
        assert_eq!(stable_uid("a"), stable_uid("a"));
        assert_ne!(stable_uid("a"), stable_uid("b"));
    }
}
