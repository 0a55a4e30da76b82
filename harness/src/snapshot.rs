//! Snapshots: a normalized view of results, so two good runs give the same snapshot and an
//! upgrade that changes behavior gives a readable diff. Volatile values are redacted or
//! bucketed: pod hash suffixes, IP addresses, ports, UIDs, timestamps, durations, attempt and
//! request counts. Snapshots live in `snapshots/` at the repository root and are compared with
//! insta (`cargo insta review` to accept a change).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use regex::Regex;
use serde_json::{Map, Value, json};

use crate::results::RunResult;

static POD_HASH: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b([a-z0-9]+(?:-[a-z0-9]+)*?)-[a-z0-9]{8,10}-[a-z0-9]{5}\b").expect("regex")
});
static POD_STS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b([a-z][a-z0-9-]*)-[bcdfghjklmnpqrstvwxz2-9]{5}\b").expect("regex")
});
static UID: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b").expect("regex")
});
static TIMESTAMP: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})?")
        .expect("regex")
});
static IP_PORT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b(\d{1,3}\.){3}\d{1,3}:\d{1,5}\b").expect("regex"));
static IP: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b(\d{1,3}\.){3}\d{1,3}\b").expect("regex"));
static LOCALHOST_PORT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\blocalhost:\d{1,5}\b").expect("regex"));
static DURATION: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b\d+(\.\d+)?(ms|s|m)\b").expect("regex"));
static TMP_PATH: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(/tmp|target/istio-e2e)/[^\s\x22']+").expect("regex"));

/// Keys whose values are dropped: they change on every run.
const DROP_KEYS: &[&str] = &[
    "duration_ms",
    "latency-p50-ms",
    "latency-p99-ms",
    "elapsed",
    "elapsed_ms",
    "started",
    "attempts",
    "run_id",
    "artifacts",
    "diagnostics",
    "location",
];
/// Keys whose values are network ports.
const PORT_KEYS: &[&str] = &["port", "target-port", "node-port", "local-port"];
/// Keys whose numbers are request or sample counts, bucketed.
const COUNT_KEYS: &[&str] = &[
    "count", "total", "failed", "requests", "value", "restarts", "changed", "bytes",
];

/// Redacts volatile parts of a text.
pub fn redact_text(s: &str) -> String {
    let s = TIMESTAMP.replace_all(s, "[timestamp]");
    let s = UID.replace_all(&s, "[uid]");
    let s = IP_PORT.replace_all(&s, "[ip]:[port]");
    let s = IP.replace_all(&s, "[ip]");
    let s = LOCALHOST_PORT.replace_all(&s, "localhost:[port]");
    let s = TMP_PATH.replace_all(&s, "[path]");
    let s = DURATION.replace_all(&s, "[duration]");
    redact_pod_name(&s)
}

/// `productpage-v1-6b746f74dc-9stp2` -> `productpage-v1-[hash]`.
pub fn redact_pod_name(s: &str) -> String {
    let s = POD_HASH.replace_all(s, "$1-[hash]");
    POD_STS
        .replace_all(&s, |c: &regex::Captures| {
            let whole = &c[0];
            // Only a 5-character suffix with a digit or mixed letters looks like a generated one.
            let suffix = &whole[whole.len() - 5..];
            if suffix.chars().any(|ch| ch.is_ascii_digit()) {
                format!("{}-[hash]", &c[1])
            } else {
                whole.to_string()
            }
        })
        .into_owned()
}

/// Buckets a count: `0`, `1`, `2-9`, `10-99`, `100+`.
pub fn bucket(n: f64) -> String {
    match n {
        x if x <= 0.0 => "0".into(),
        x if x < 2.0 => "1".into(),
        x if x < 10.0 => "2-9".into(),
        x if x < 100.0 => "10-99".into(),
        _ => "100+".into(),
    }
}

/// Normalizes a JSON value for snapshots.
pub fn normalize(v: Value) -> Value {
    normalize_at(None, v)
}

fn normalize_at(key: Option<&str>, v: Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                if DROP_KEYS.contains(&k.as_str()) {
                    continue;
                }
                let nk = redact_text(&k);
                out.insert(nk, normalize_at(Some(&k), v));
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.into_iter().map(|x| normalize_at(key, x)).collect()),
        Value::String(s) => {
            if key.is_some_and(|k| PORT_KEYS.contains(&k)) && s.parse::<u16>().is_ok() {
                return json!("[port]");
            }
            Value::String(redact_text(&s))
        }
        Value::Number(n) => {
            if key.is_some_and(|k| PORT_KEYS.contains(&k)) {
                json!("[port]")
            } else if key.is_some_and(|k| {
                COUNT_KEYS.contains(&k)
                    || k.chars().all(|c| c.is_ascii_digit())
                    || k.starts_with('v')
            }) {
                json!(bucket(n.as_f64().unwrap_or(0.0)))
            } else {
                Value::Number(n)
            }
        }
        other => other,
    }
}

/// The normalized view of a whole run: per step, its kind, name, status, outputs and error.
pub fn run_view(r: &RunResult) -> Value {
    let steps: Vec<Value> = r
        .steps
        .iter()
        .map(|s| {
            let mut m = Map::new();
            m.insert("step".into(), json!(s.index));
            m.insert("kind".into(), json!(s.kind));
            m.insert("name".into(), json!(s.name));
            m.insert(
                "status".into(),
                serde_json::to_value(s.status).unwrap_or_default(),
            );
            if !s.outputs.is_empty() {
                m.insert("outputs".into(), Value::Object(s.outputs.clone()));
            }
            if let Some(e) = &s.error {
                m.insert("error".into(), json!(e));
            }
            Value::Object(m)
        })
        .collect();
    normalize(json!({
        "scenario": r.scenario,
        "status": r.status,
        "steps": steps,
    }))
}

/// The repository's `snapshots/` directory: `ISTIO_E2E_SNAPSHOTS`, else `snapshots` under the
/// workspace root (the `CARGO_MANIFEST_DIR` of the root package when run by cargo), else
/// `./snapshots`.
pub fn snapshot_dir() -> PathBuf {
    if let Ok(d) = std::env::var("ISTIO_E2E_SNAPSHOTS") {
        return PathBuf::from(d);
    }
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    match here.parent() {
        Some(root) if root.join("snapshots").is_dir() => root.join("snapshots"),
        _ => PathBuf::from("snapshots"),
    }
}

/// What a run's snapshots are named against: the scenario's own provider, Istio version and
/// parameter defaults (`cluster.provider`, `istio.version`, `params:`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Own<'a> {
    /// The scenario's own provider.
    pub provider: Option<&'a str>,
    /// The scenario's own Istio version.
    pub istio: Option<&'a str>,
    /// The scenario's parameters with their defaults.
    pub params: Option<&'a BTreeMap<String, String>>,
}

impl<'a> Own<'a> {
    /// The own provider, Istio version and parameters of `s`.
    pub fn of(s: &'a crate::scenario::Scenario) -> Self {
        Own {
            provider: Some(s.cluster.provider().name()),
            istio: s.istio.as_ref().and_then(|i| i.version.as_deref()),
            params: Some(&s.params),
        }
    }
}

/// The snapshot name prefix of a run: the scenario's name when it ran on the scenario's own
/// provider, Istio version (or none) and parameter defaults; `@<provider>` is added for another
/// provider, `@istio-<major.minor>` for another Istio version and `+<name>=<value>` for each
/// parameter set to another value. So a scenario's own snapshots show an upgrade as a diff
/// when its `istio.version` changes, while matrix entries on other providers, Istio versions
/// or parameters (which may run other steps, see `when:`) keep their own, e.g.
/// `bookinfo-demo@lab@istio-1.12` or `bookinfo-demo@lab+gateway=gateway-api`.
pub fn snapshot_prefix(r: &RunResult, own: Own<'_>) -> String {
    let minor = |v: &str| crate::istio::minor_of(v).map(|(a, b)| format!("{a}.{b}"));
    let mut prefix = r.scenario.clone();
    if own.provider.is_some_and(|p| p != r.provider) {
        prefix.push_str(&format!("@{}", r.provider));
    }
    match (
        r.istio.as_deref().and_then(minor),
        own.istio.and_then(minor),
    ) {
        (Some(ran), Some(own)) if ran != own => prefix.push_str(&format!("@istio-{ran}")),
        (Some(ran), None) => prefix.push_str(&format!("@istio-{ran}")),
        _ => {}
    }
    for (name, value) in &r.params {
        if own.params.and_then(|d| d.get(name)) != Some(value) {
            prefix.push_str(&format!("+{name}={value}"));
        }
    }
    prefix
}

/// Asserts the run's snapshots with insta: `<prefix>__results` (the normalized run) and one
/// `<prefix>__<name>` per `snapshot` step, with the prefix of [`snapshot_prefix`], against
/// [`snapshot_dir`]. A snapshot that exists and differs panics with the diff (insta writes
/// `.snap.new` for `cargo insta review`, except under `CI`). A snapshot that does not exist
/// yet (the first run of a new matrix entry) is recorded, not failed: see [`record_new`].
/// Returns the paths of the snapshots recorded.
pub fn assert_run(r: &RunResult, own: Own<'_>) -> Vec<PathBuf> {
    assert_run_in(r, own, &snapshot_dir())
}

/// [`assert_run`] against the snapshots in `dir`.
pub fn assert_run_in(r: &RunResult, own: Own<'_>, dir: &Path) -> Vec<PathBuf> {
    let prefix = snapshot_prefix(r, own);
    let mut views = vec![(format!("{prefix}__results"), run_view(r))];
    views.extend(
        r.snapshots
            .iter()
            .map(|(n, v)| (format!("{prefix}__{n}"), v.clone())),
    );
    let (known, new): (Vec<_>, Vec<_>) = views
        .into_iter()
        .partition(|(name, _)| dir.join(format!("{name}.snap")).exists());
    let recorded = new
        .iter()
        .filter_map(|(name, v)| record_new(r, name, v))
        .collect();
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(dir);
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    settings.set_description(format!("scenario {}", r.scenario));
    settings.bind(|| {
        for (name, v) in &known {
            insta::assert_yaml_snapshot!(name.as_str(), v);
        }
    });
    recorded
}

/// Writes a snapshot that does not exist yet into the run's artifacts
/// (`snapshots/<name>.snap`, in insta's format, ready to commit), says so on stderr and in
/// `$GITHUB_STEP_SUMMARY`, and returns its path.
pub fn record_new(r: &RunResult, name: &str, value: &Value) -> Option<PathBuf> {
    let dir = Path::new(&r.artifacts).join("snapshots");
    let path = dir.join(format!("{name}.snap"));
    let body = insta::_macro_support::serialize_value(
        value,
        insta::_macro_support::SerializationFormat::Yaml,
    );
    let text = format!(
        "---\nsource: harness/src/snapshot.rs\ndescription: scenario {}\n---\n{}\n",
        r.scenario,
        body.trim_end()
    );
    if let Err(e) = std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(&path, text)) {
        eprintln!("cannot record new snapshot {}: {e}", path.display());
        return None;
    }
    let line = format!(
        "new snapshot recorded: {}, review and commit it (copy it to snapshots/{name}.snap)",
        path.display()
    );
    eprintln!("{line}");
    if let Some(summary) = std::env::var_os("GITHUB_STEP_SUMMARY") {
        let appended =
            crate::filelock::append_locked(Path::new(&summary), format!("\n- {line}\n").as_bytes());
        if let Err(e) = appended {
            eprintln!("cannot append to $GITHUB_STEP_SUMMARY: {e}");
        }
    }
    Some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_at(artifacts: &Path) -> RunResult {
        serde_json::from_value(json!({
            "scenario": "new-entry", "file": "x.yaml", "run_id": "1", "provider": "kind",
            "status": "passed", "started": "", "duration_ms": 0, "steps": [],
            "teardown": [], "artifacts": artifacts.display().to_string(),
            "snapshots": {"mesh": {"pods": 6}}
        }))
        .unwrap()
    }

    /// The first run of a new matrix entry passes and records its snapshots in the artifacts;
    /// the recorded file, once committed, is what the next run is compared with.
    #[test]
    fn a_missing_snapshot_is_recorded_not_failed() {
        let snaps = tempfile::tempdir().unwrap();
        let artifacts = tempfile::tempdir().unwrap();
        let r = run_at(artifacts.path());
        let recorded = assert_run_in(&r, Own::default(), snaps.path());
        assert_eq!(recorded.len(), 2, "{recorded:?}");
        for p in &recorded {
            assert!(p.starts_with(artifacts.path()), "{p:?}");
            let text = std::fs::read_to_string(p).unwrap();
            assert!(text.starts_with("---\nsource: "), "{text}");
            std::fs::copy(p, snaps.path().join(p.file_name().unwrap())).unwrap();
        }
        let mesh = std::fs::read_to_string(&recorded[1]).unwrap();
        assert!(mesh.ends_with("---\npods: 6\n"), "{mesh:?}");
        // Committed, they are compared: the same run passes and records nothing.
        assert!(assert_run_in(&r, Own::default(), snaps.path()).is_empty());
    }

    /// A snapshot that exists and differs still fails.
    #[test]
    fn a_differing_snapshot_fails() {
        let snaps = tempfile::tempdir().unwrap();
        let artifacts = tempfile::tempdir().unwrap();
        let r = run_at(artifacts.path());
        for p in assert_run_in(&r, Own::default(), snaps.path()) {
            std::fs::copy(&p, snaps.path().join(p.file_name().unwrap())).unwrap();
        }
        let mut changed = r.clone();
        changed.snapshots.insert("mesh".into(), json!({"pods": 5}));
        let failed =
            std::panic::catch_unwind(|| assert_run_in(&changed, Own::default(), snaps.path()));
        assert!(failed.is_err(), "a changed snapshot passed");
    }

    #[test]
    fn volatile_values_are_redacted() {
        assert_eq!(
            redact_pod_name("productpage-v1-6b746f74dc-9stp2"),
            "productpage-v1-[hash]"
        );
        assert_eq!(redact_pod_name("reviews-v3"), "reviews-v3");
        assert_eq!(
            redact_text("http://172.18.0.2:31380/productpage"),
            "http://[ip]:[port]/productpage"
        );
        assert_eq!(
            redact_text("took 12.5s at 2026-11-25T23:40:54Z"),
            "took [duration] at [timestamp]"
        );
        let v = normalize(
            json!({"port": 31380, "address": "10.0.0.1:80", "histogram": {"200": 57}, "duration_ms": 5}),
        );
        assert_eq!(
            v,
            json!({"port": "[port]", "address": "[ip]:[port]", "histogram": {"200": "10-99"}})
        );
    }

    #[test]
    fn snapshots_of_other_providers_and_istio_versions_get_their_own_prefix() {
        let r = |provider: &str, istio: Option<&str>| RunResult {
            scenario: "bookinfo-demo".into(),
            provider: provider.into(),
            istio: istio.map(String::from),
            ..serde_json::from_value(json!({
                "scenario": "x", "file": "x.yaml", "run_id": "1", "provider": "kind",
                "status": "passed", "started": "", "duration_ms": 0, "steps": [],
                "teardown": [], "artifacts": "", "snapshots": {}
            }))
            .unwrap()
        };
        let own = |istio: Option<&'static str>| Own {
            provider: Some("kind"),
            istio,
            params: None,
        };
        let prefix = |p, i, o| snapshot_prefix(&r(p, i), own(o));
        assert_eq!(
            prefix("kind", Some("1.30.3"), Some("1.30.1")),
            "bookinfo-demo"
        );
        assert_eq!(
            prefix("kind", Some("1.12.1"), Some("1.30.3")),
            "bookinfo-demo@istio-1.12"
        );
        assert_eq!(prefix("kind", None, Some("1.30.3")), "bookinfo-demo");
        assert_eq!(prefix("kind", None, None), "bookinfo-demo");
        assert_eq!(
            prefix("lab", Some("1.30.3"), Some("1.30.3")),
            "bookinfo-demo@lab"
        );
        assert_eq!(
            prefix("lab", Some("1.12.1"), Some("1.30.3")),
            "bookinfo-demo@lab@istio-1.12"
        );
        // no own provider known: named as before
        let none = Own {
            istio: Some("1.30.3"),
            ..Own::default()
        };
        assert_eq!(
            snapshot_prefix(&r("lab", Some("1.30.3")), none),
            "bookinfo-demo"
        );
        // a parameter set to its default changes nothing; to another value, it is named
        let defaults = BTreeMap::from([("gateway".to_string(), "classic".to_string())]);
        let with = |v: &str| RunResult {
            params: BTreeMap::from([("gateway".to_string(), v.to_string())]),
            ..r("lab", Some("1.30.3"))
        };
        let own = Own {
            params: Some(&defaults),
            ..own(Some("1.30.3"))
        };
        assert_eq!(snapshot_prefix(&with("classic"), own), "bookinfo-demo@lab");
        assert_eq!(
            snapshot_prefix(&with("gateway-api"), own),
            "bookinfo-demo@lab+gateway=gateway-api"
        );
    }
}
