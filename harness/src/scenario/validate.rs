//! Validation before any cluster work: every problem as `file:line:column: message`.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use super::vars::{self, BUILTINS, Vars};
use super::{ScenarioFile, StepKind};

/// One problem in a scenario file, with where it is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Diagnostic {
    /// The scenario file as the user named it.
    pub path: PathBuf,
    /// 1-based line (0 when the file could not be read at all).
    pub line: u64,
    /// 1-based column.
    pub column: u64,
    /// What is wrong and, where it helps, what to write instead.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.path.display(), self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.path.display(),
                self.line,
                self.column,
                self.message
            )
        }
    }
}

impl std::error::Error for Diagnostic {}

/// What validation may assume about the run.
#[derive(Debug, Clone, Default)]
pub struct ValidateOptions {
    /// The Istio release directory `${istio.dir}` will point at (`--istio-dir`, or the
    /// scenario's `istio.dir`); files under it are checked when it is known.
    pub istio_dir: Option<PathBuf>,
    /// The provider the run will use, when overridden.
    pub provider: Option<String>,
    /// Parameter overrides of the run (`--set name=value`); each must be a declared param.
    pub params: std::collections::BTreeMap<String, String>,
}

/// Checks a parsed scenario; an empty result means it may run.
pub fn validate(file: &ScenarioFile, opts: &ValidateOptions) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let starts = step_starts(file);
    let static_vars = static_vars(file, opts);
    check_header(file, opts, &mut out);
    check_steps(file, &starts, &static_vars, &mut out);
    check_background(file, &mut out);
    check_cluster_config(file, &static_vars, &mut out);
    check_variables(file, &starts, &mut out);
    out.sort();
    out.dedup();
    out
}

fn diag_at(file: &ScenarioFile, line: u64, column: u64, message: String) -> Diagnostic {
    Diagnostic {
        path: file.path.clone(),
        line,
        column,
        message,
    }
}

/// Line and column of the first `needle` at or after byte `from` (1:1 when absent).
fn find_in(file: &ScenarioFile, needle: &str, from: usize) -> (u64, u64) {
    match file.source.get(from..).and_then(|t| t.find(needle)) {
        Some(off) => line_col(&file.source, from + off),
        None => (1, 1),
    }
}

/// The scenario's name, parameter overrides, and that it has steps.
fn check_header(file: &ScenarioFile, opts: &ValidateOptions, out: &mut Vec<Diagnostic>) {
    let s = &file.scenario;
    let diag = |line: u64, column: u64, message: String| diag_at(file, line, column, message);
    let find = |needle: &str, from: usize| find_in(file, needle, from);
    if s.name.trim().is_empty() {
        let (l, c) = find("name:", 0);
        out.push(diag(l, c, "the scenario needs a non-empty `name`".into()));
    }
    // Provider names are checked when the file is read (`ProviderKind`'s deserializer).
    for row in &s.matrix {
        for p in &row.providers {
            if !s.cluster.allows(&p.to_string()) {
                let (l, c) = find("matrix:", 0);
                let msg = format!(
                    "a matrix row is for provider {p}, which the scenario does not allow: \
                     add it to `cluster.providers`"
                );
                out.push(diag(l, c, msg));
            }
        }
    }
    for name in opts.params.keys() {
        if !s.params.contains_key(name) {
            let declared: Vec<&String> = s.params.keys().collect();
            out.push(diag(
                1,
                1,
                format!(
                    "--set {name}=...: the scenario has no parameter `{name}`; it declares {}",
                    if declared.is_empty() {
                        "none".to_string()
                    } else {
                        declared
                            .iter()
                            .map(|k| format!("`{k}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                ),
            ));
        }
    }
    let uses_crds = || {
        model_references(file)
            .iter()
            .any(|(_, n)| n == "gateway-api.crds")
    };
    if s.gateway_api.is_none() && uses_crds() {
        let (l, c) = find("${gateway-api.crds}", 0);
        let msg = "`${gateway-api.crds}` needs the release it comes from: add \
                   `gateway-api: { version: v1.5.1 }` to the scenario";
        out.push(diag(l, c, msg.into()));
    }
    if let Err(e) = super::names::namespace(&s.namespace) {
        let (l, c) = find("namespace:", 0);
        out.push(diag(l, c, e.to_string()));
    }
    if s.steps.is_empty() {
        let (l, c) = find("steps:", 0);
        out.push(diag(l, c, "the scenario has no steps".into()));
    }
}

/// Where each step starts in the source, to know which captures a reference can see.
fn step_starts(file: &ScenarioFile) -> Vec<usize> {
    let s = &file.scenario;
    s.steps
        .iter()
        .map(|st| {
            st.referenced
                .span()
                .byte_offset()
                .map(|b| b as usize)
                .unwrap_or_else(|| {
                    offset_of(&file.source, st.referenced.line(), st.referenced.column())
                })
        })
        .collect()
}

/// The variables known before anything runs: `${istio.dir}` and `${istio.crds}` (when a
/// release directory is given) and `${namespace}`.
fn static_vars(file: &ScenarioFile, opts: &ValidateOptions) -> Vars {
    let s = &file.scenario;
    let istio_dir = opts.istio_dir.clone().or_else(|| {
        s.istio
            .as_ref()
            .and_then(|i| i.dir.as_ref())
            .map(PathBuf::from)
    });
    let version = s.istio.as_ref().and_then(|i| i.version.as_deref());
    // a directory of releases without this version: the run says so; nothing to check here
    let istio_dir = istio_dir
        .map(|d| crate::download::release_dir(&d, version))
        .filter(|d| !crate::download::holds_releases(d));
    let mut static_vars = Vars::default();
    if let Some(d) = &istio_dir {
        static_vars.set("istio.dir", d.display().to_string());
        if let Some(crds) = crate::download::release_crds(d) {
            static_vars.set("istio.crds", crds.display().to_string());
        }
    }
    static_vars.set("namespace", s.namespace.clone());
    static_vars
}

/// Each step's own problems, its retry policy, and the files it reads.
fn check_steps(
    file: &ScenarioFile,
    starts: &[usize],
    static_vars: &Vars,
    out: &mut Vec<Diagnostic>,
) {
    let s = &file.scenario;
    let diag = |line: u64, column: u64, message: String| diag_at(file, line, column, message);
    let find = |needle: &str, from: usize| find_in(file, needle, from);
    for (i, st) in s.steps.iter().enumerate() {
        let (line, col) = (st.referenced.line(), st.referenced.column());
        for p in st.value.kind.spec().problems() {
            out.push(diag(
                line,
                col,
                format!("{} step: {p}", st.value.kind.kind_name()),
            ));
        }
        if let Some(r) = st.value.retry
            && r.attempts == 0
        {
            out.push(diag(line, col, "retry attempts must be at least 1".into()));
        }
        for path in st.value.kind.spec().files() {
            // a conditional step's files may exist only where it runs (e.g. a sample that
            // only newer releases have, under `when: ${istio.version} >= 1.24`)
            let conditional = st.value.when.is_some() && !vars::references(&path).is_empty();
            if conditional
                || !vars::references(&path)
                    .iter()
                    .all(|r| static_vars.get(&r.name).is_some())
            {
                continue; // conditional, or depends on a capture or an unknown istio.dir: checked at run time
            }
            let Ok(expanded) = static_vars.expand(&path) else {
                continue;
            };
            if !Path::new(&expanded).exists() {
                let (l, c) = find(&path, starts[i]);
                let via = if expanded != path {
                    format!(" ({expanded})")
                } else {
                    String::new()
                };
                out.push(diag(
                    l,
                    c,
                    format!("missing file {path}{via}: no such file or directory; paths are relative to the directory you run from"),
                ));
            }
        }
    }
}

/// Background traffic: unique names, each stopped by a later `traffic-stop`.
fn check_background(file: &ScenarioFile, out: &mut Vec<Diagnostic>) {
    let s = &file.scenario;
    let diag = |line: u64, column: u64, message: String| diag_at(file, line, column, message);
    let mut running: Vec<(String, u64, u64)> = Vec::new();
    for st in &s.steps {
        let (line, col) = (st.referenced.line(), st.referenced.column());
        match &st.value.kind {
            StepKind::Traffic(t) => {
                if let crate::probes::traffic::TrafficMode::Background { name, .. } = &t.mode {
                    if let Some((_, at, _)) = running.iter().find(|(n, _, _)| n == name) {
                        out.push(diag(line, col, format!(
                            "background traffic `{name}` is already running (started at line {at}); stop it first or pick another name"
                        )));
                    } else {
                        running.push((name.clone(), line, col));
                    }
                }
            }
            StepKind::TrafficStop(t) => match running.iter().position(|(n, _, _)| *n == t.name) {
                Some(i) => {
                    running.remove(i);
                }
                None => out.push(diag(
                    line,
                    col,
                    format!(
                        "traffic-stop step: no background traffic named `{}` runs here; start it earlier with a `traffic` step that has `background: {}`",
                        t.name, t.name
                    ),
                )),
            },
            _ => {}
        }
    }
    for (name, at, col) in running {
        out.push(diag(at, col, format!(
            "background traffic `{name}` is never stopped: add a `traffic-stop` step with `name: {name}` to check what it recorded"
        )));
    }
}

/// The cluster config file exists.
fn check_cluster_config(file: &ScenarioFile, static_vars: &Vars, out: &mut Vec<Diagnostic>) {
    let s = &file.scenario;
    let diag = |line: u64, column: u64, message: String| diag_at(file, line, column, message);
    let find = |needle: &str, from: usize| find_in(file, needle, from);
    if let Some(cfg) = &s.cluster.config {
        let expanded = static_vars.expand(cfg).unwrap_or_else(|_| cfg.clone());
        if vars::references(cfg).is_empty() && !Path::new(&expanded).exists() {
            let (l, c) = find(cfg, 0);
            out.push(diag(
                l,
                c,
                format!("missing file {cfg}: the cluster config does not exist"),
            ));
        }
    }
}

/// Every `${name}` is known where it is used.
fn check_variables(file: &ScenarioFile, starts: &[usize], out: &mut Vec<Diagnostic>) {
    let s = &file.scenario;
    let diag = |line: u64, column: u64, message: String| diag_at(file, line, column, message);
    let mut captures_before: Vec<BTreeSet<String>> = Vec::with_capacity(s.steps.len());
    let mut defined = BTreeSet::new();
    let mut all_captures: Vec<(usize, String)> = Vec::new();
    for (i, st) in s.steps.iter().enumerate() {
        captures_before.push(defined.clone());
        if let Some(c) = st.value.kind.capture() {
            for key in st.value.kind.spec().capture_keys() {
                defined.insert(format!("{c}.{key}"));
            }
            all_captures.push((i, c.to_string()));
        }
    }
    for (step, name) in model_references(file) {
        let (line, column) = locate(file, starts, step, &name);
        let visible = step.map(|i| &captures_before[i]);
        let name = name.as_str();
        let known = BUILTINS.contains(&name)
            || name
                .strip_prefix("param.")
                .is_some_and(|p| s.params.contains_key(p))
            || visible.is_some_and(|v| v.contains(name))
            || std::env::var(name).is_ok();
        if known {
            continue;
        }
        let prefix = name.split('.').next().unwrap_or(name);
        let later = all_captures
            .iter()
            .find(|(i, c)| c == prefix && step.is_none_or(|s| *i >= s));
        let message = if let Some((i, _)) = later {
            format!(
                "variable `${{{name}}}` is used before step {} (line {}) captures it",
                i + 1,
                s.steps[*i].referenced.line()
            )
        } else if let Some(keys) = visible.and_then(|v| {
            let ks: Vec<&String> = v
                .iter()
                .filter(|k| k.starts_with(&format!("{prefix}.")))
                .collect();
            (!ks.is_empty()).then_some(ks)
        }) {
            format!(
                "unknown variable `${{{name}}}`: `{prefix}` captures {}",
                keys.iter()
                    .map(|k| format!("${{{k}}}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        } else if let Some(p) = name.strip_prefix("param.") {
            format!(
                "unknown variable `${{{name}}}`: declare it under `params:` with a default (`params: {{ {p}: ... }}`)"
            )
        } else {
            format!(
                "unknown variable `${{{name}}}`: no earlier step captures it, it is not a built-in ({}), and no environment variable has that name",
                BUILTINS.join(", ")
            )
        };
        out.push(diag(line, column, message));
    }
}

/// Every `${name}` the typed model holds, once per place: the header's fields (step `None`),
/// then each step's spec and `when:`. Only values count, as only values are resolved (a key,
/// such as a label's name, is kept as written), and a comment is no part of the model.
fn model_references(file: &ScenarioFile) -> Vec<(Option<usize>, String)> {
    let s = &file.scenario;
    let mut out = Vec::new();
    let mut add = |step: Option<usize>, v: serde_json::Value| {
        let mut names = BTreeSet::new();
        strings_in(&v, &mut |text| {
            names.extend(vars::references(text).into_iter().map(|r| r.name));
        });
        out.extend(names.into_iter().map(|n| (step, n)));
    };
    let header = serde_json::json!([s.cluster, s.istio, s.namespace]);
    add(None, header);
    for (i, st) in s.steps.iter().enumerate() {
        let when = st.value.when.as_ref().map(ToString::to_string);
        add(Some(i), serde_json::json!([st.value.kind, when]));
    }
    out
}

/// Calls `f` with every string value in `v` (map keys left out).
fn strings_in(v: &serde_json::Value, f: &mut impl FnMut(&str)) {
    match v {
        serde_json::Value::String(t) => f(t),
        serde_json::Value::Array(a) => a.iter().for_each(|x| strings_in(x, f)),
        serde_json::Value::Object(m) => m.values().for_each(|x| strings_in(x, f)),
        _ => {}
    }
}

/// Where `${name}` is written in `step` (the header when `None`): its first use outside a
/// comment from where the step starts, else the step itself.
fn locate(file: &ScenarioFile, starts: &[usize], step: Option<usize>, name: &str) -> (u64, u64) {
    let from = step.map_or(0, |i| starts[i]);
    let until = step
        .and_then(|i| starts.get(i + 1).copied())
        .or_else(|| starts.first().copied().filter(|_| step.is_none()))
        .unwrap_or(file.source.len());
    let found = vars::references(&file.source[from..until])
        .into_iter()
        .map(|r| (r.offset + from, r.name))
        .find(|(at, n)| n == name && !in_comment(&file.source, *at));
    match (found, step) {
        (Some((at, _)), _) => line_col(&file.source, at),
        (None, Some(i)) => {
            let r = &file.scenario.steps[i].referenced;
            (r.line(), r.column())
        }
        (None, None) => (1, 1),
    }
}

fn in_comment(source: &str, offset: usize) -> bool {
    let line_start = source[..offset].rfind('\n').map(|p| p + 1).unwrap_or(0);
    let before = &source[line_start..offset];
    before.trim_start().starts_with('#') || before.contains(" #")
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(source: &str, offset: usize) -> (u64, u64) {
    let offset = offset.min(source.len());
    let before = &source[..offset];
    let line = before.matches('\n').count() as u64 + 1;
    let line_start = before.rfind('\n').map(|p| p + 1).unwrap_or(0);
    let column = source[line_start..offset].chars().count() as u64 + 1;
    (line, column)
}

fn offset_of(source: &str, line: u64, column: u64) -> usize {
    let mut off = 0;
    for (i, l) in source.split_inclusive('\n').enumerate() {
        if i as u64 + 1 == line {
            return off
                + l.char_indices()
                    .nth(column.saturating_sub(1) as usize)
                    .map(|(b, _)| b)
                    .unwrap_or(0);
        }
        off += l.len();
    }
    off
}

/// True for step kinds that talk to a cluster (everything but probes of URLs).
pub fn needs_cluster(kind: &StepKind) -> bool {
    kind.spec().needs_cluster()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(text: &str) -> Vec<String> {
        let file = super::super::parse_str(Path::new("v.yaml"), text.to_string()).unwrap();
        validate(&file, &ValidateOptions::default())
            .into_iter()
            .map(|d| format!("{}:{}: {}", d.line, d.column, d.message))
            .collect()
    }

    /// Variables are what the typed model holds: values, not keys (a label's name is kept as
    /// written), never comments; each is named where it is written.
    #[test]
    fn variables_are_read_from_the_model_and_located_in_the_file() {
        let text = "name: v\nsteps:\n  # ${commented.out}\n  - label:\n      labels: { \"${kept}\": a }\n  - http: { url: \"http://a/${nope.url}\" }\n";
        let m = messages(text);
        assert_eq!(m.len(), 1, "{m:?}");
        assert!(
            m[0].starts_with("6:28: unknown variable `${nope.url}`: no earlier step captures it"),
            "{m:?}"
        );
    }
}
