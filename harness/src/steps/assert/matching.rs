//! The partial match of `assert` and `absent`, pure (no cluster): an expected YAML tree holds
//! for an object when every field it writes holds there.
//!
//! - Maps: each written key must be there and match, recursively; other keys do not matter.
//!   `null` means "not there (or null)".
//! - Lists: each expected element must match some actual element, in any order, whatever else
//!   the list holds (`conditions: [{type: Ready, status: "True"}]`).
//! - Scalars: equal, with a string and a number or boolean compared as YAML reads them (`"80"`
//!   matches `80`, `True` matches `"True"`).
//!
//! When it does not hold: the path of the first mismatch, and the object cut to the expected
//! tree's shape for a diff against it.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

/// Where and how an object differs from the expected tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The field's path, e.g. `status.conditions[type=Ready].status`.
    pub path: String,
    /// What was expected there, as JSON (`"True"`).
    pub expected: String,
    /// What the object has there (`"False"`, `nothing`).
    pub found: String,
    /// Why, when the object says: the `reason` and `message` of the condition the field is in
    /// (`AddressNotAssigned: ... address pending for hostname ...`).
    pub why: Option<String>,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: expected {}, found {}",
            self.path, self.expected, self.found
        )?;
        match &self.why {
            Some(why) => write!(f, " ({why})"),
            None => Ok(()),
        }
    }
}

/// True when `actual` holds every field `expected` writes.
pub fn matches(expected: &Value, actual: &Value) -> bool {
    first_mismatch(expected, actual).is_none()
}

/// The first field (in key order) where `actual` does not hold `expected`, or None.
pub fn first_mismatch(expected: &Value, actual: &Value) -> Option<Mismatch> {
    mismatch_at("", expected, Some(actual))
}

fn mismatch_at(path: &str, expected: &Value, actual: Option<&Value>) -> Option<Mismatch> {
    let miss = |found: String| {
        Some(Mismatch {
            path: if path.is_empty() {
                ".".into()
            } else {
                path.into()
            },
            expected: render(expected),
            found,
            why: None,
        })
    };
    let Some(actual) = actual else {
        return if expected.is_null() {
            None
        } else {
            miss("nothing".into())
        };
    };
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => e
            .iter()
            .find_map(|(k, ev)| mismatch_at(&key_path(path, k), ev, a.get(k))),
        (Value::Array(e), Value::Array(a)) => e.iter().enumerate().find_map(|(i, ee)| {
            if a.iter().any(|ae| matches(ee, ae)) {
                return None;
            }
            element_mismatch(path, i, ee, a)
        }),
        (Value::Object(_), _) => miss(format!("{} instead of a map", render(actual))),
        (Value::Array(_), _) => miss(format!("{} instead of a list", render(actual))),
        _ if scalar_eq(expected, actual) => None,
        _ => miss(render(actual)),
    }
}

/// Why no element of `actual` matches the expected element `i`: the element with the same
/// identifying field (`type`, `name`), or else the closest one, compared field by field.
fn element_mismatch(path: &str, i: usize, expected: &Value, actual: &[Value]) -> Option<Mismatch> {
    if let Some((key, id)) = identity(expected) {
        let label = format!("{path}[{key}={}]", scalar_text(id));
        return match actual.iter().find(|a| a.get(key) == Some(id)) {
            Some(a) => mismatch_at(&label, expected, Some(a)).map(|m| Mismatch {
                why: m.why.or_else(|| reason_of(a)),
                ..m
            }),
            None => Some(Mismatch {
                path: label,
                expected: render(expected),
                found: format!("no element with {key}={}", scalar_text(id)),
                why: None,
            }),
        };
    }
    match closest(expected, actual) {
        Some(j) => mismatch_at(&format!("{path}[{j}]"), expected, Some(&actual[j])),
        None => Some(Mismatch {
            path: format!("{path}[{i}]"),
            expected: render(expected),
            found: "an empty list".into(),
            why: None,
        }),
    }
}

/// A condition's own explanation: `reason: message` (either alone when the other is absent).
fn reason_of(element: &Value) -> Option<String> {
    let text = |k: &str| element.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
    match (text("reason"), text("message")) {
        (Some(r), Some(m)) => Some(format!("{r}: {m}")),
        (r, m) => r.or(m).map(String::from),
    }
}

/// The field that names a list element (`type` of a condition, `name` of a port or container).
fn identity(expected: &Value) -> Option<(&'static str, &Value)> {
    ["type", "name"].into_iter().find_map(|k| {
        let v = expected.get(k)?;
        (!v.is_object() && !v.is_array() && !v.is_null()).then_some((k, v))
    })
}

/// The index of the element that holds most of `expected` (the first of equals).
fn closest(expected: &Value, actual: &[Value]) -> Option<usize> {
    (0..actual.len())
        .rev()
        .max_by_key(|&j| score(expected, &actual[j]))
}

/// How many of the expected tree's leaves `actual` holds: the measure of "closest".
pub fn score(expected: &Value, actual: &Value) -> usize {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => e
            .iter()
            .map(|(k, ev)| match a.get(k) {
                Some(av) => score(ev, av),
                None => usize::from(ev.is_null()),
            })
            .sum(),
        (Value::Array(e), Value::Array(a)) => e
            .iter()
            .map(|ee| a.iter().map(|ae| score(ee, ae)).max().unwrap_or(0))
            .sum(),
        (Value::Object(_) | Value::Array(_), _) => 0,
        _ => usize::from(scalar_eq(expected, actual)),
    }
}

/// `actual` cut to the shape of `expected`: only the keys it writes, and for each expected
/// list element the actual element it matches (or the closest), in the expected order. Its
/// YAML lines up with the expected tree's for a diff.
pub fn project(expected: &Value, actual: &Value) -> Value {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => Value::Object(
            e.iter()
                .filter_map(|(k, ev)| Some((k.clone(), project(ev, a.get(k)?))))
                .collect(),
        ),
        (Value::Array(e), Value::Array(a)) => Value::Array(
            e.iter()
                .filter_map(|ee| {
                    let j =
                        a.iter()
                            .position(|ae| matches(ee, ae))
                            .or_else(|| match identity(ee) {
                                Some((key, id)) => a.iter().position(|ae| ae.get(key) == Some(id)),
                                None => closest(ee, a),
                            })?;
                    Some(project(ee, &a[j]))
                })
                .collect(),
        ),
        _ => actual.clone(),
    }
}

/// A unified diff of the expected tree against an object cut to its shape, as YAML:
/// `-` lines are expected, `+` lines are what `actual_label` has.
pub fn diff(expected: &Value, actual: &Value, actual_label: &str) -> String {
    let e = yaml(expected);
    let a = yaml(&project(expected, actual));
    similar::TextDiff::from_lines(&e, &a)
        .unified_diff()
        .context_radius(3)
        .header("expected", actual_label)
        .to_string()
}

fn yaml(v: &Value) -> String {
    let mut s = serde_saphyr::to_string(v).unwrap_or_else(|_| format!("{v:#}"));
    if !s.ends_with('\n') {
        s.push('\n');
    }
    s
}

/// How many objects must match: exactly `n`, or at least one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    /// `count:` not given: one or more.
    AtLeastOne,
    /// `count: n`.
    Exactly(usize),
}

impl Count {
    /// True when `matched` objects satisfy it.
    pub fn holds(self, matched: usize) -> bool {
        match self {
            Count::AtLeastOne => matched >= 1,
            Count::Exactly(n) => matched == n,
        }
    }
}

impl fmt::Display for Count {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Count::AtLeastOne => f.write_str("at least 1"),
            Count::Exactly(n) => write!(f, "exactly {n}"),
        }
    }
}

/// The objects that match and, when some do not, the closest of those and where it differs.
#[derive(Debug, Clone, PartialEq)]
pub struct Tally {
    /// Names of the matching objects, sorted.
    pub matched: Vec<String>,
    /// The non-matching object that holds most of the expected tree, and its first mismatch.
    pub closest: Option<(String, Mismatch)>,
    /// How many objects were looked at.
    pub total: usize,
}

/// Matches every object (by name) against `expected` (none: every object matches).
pub fn tally(objects: &BTreeMap<String, Value>, expected: Option<&Value>) -> Tally {
    let mut matched = Vec::new();
    let mut closest: Option<(usize, String, Mismatch)> = None;
    for (name, obj) in objects {
        let Some(m) = expected.and_then(|e| first_mismatch(e, obj)) else {
            matched.push(name.clone());
            continue;
        };
        let s = expected.map_or(0, |e| score(e, obj));
        if closest.as_ref().is_none_or(|(best, _, _)| s > *best) {
            closest = Some((s, name.clone(), m));
        }
    }
    Tally {
        matched,
        closest: closest.map(|(_, n, m)| (n, m)),
        total: objects.len(),
    }
}

/// A key appended to a path: `a.b`, or `a["x.io/y"]` when the key has dots or brackets.
fn key_path(path: &str, key: &str) -> String {
    let simple = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_alphanumeric() || c == '-' || c == '_');
    match (path.is_empty(), simple) {
        (true, true) => key.to_string(),
        (false, true) => format!("{path}.{key}"),
        (_, false) => format!("{path}[{}]", render(&Value::String(key.into()))),
    }
}

/// A value in a message: scalars as JSON (`"True"`, `3`), trees as compact JSON.
fn render(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 120 {
        format!("{}…", s.chars().take(120).collect::<String>())
    } else {
        s
    }
}

/// A scalar as written in a path label: strings without quotes.
fn scalar_text(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_string)
}

/// Scalars equal as YAML reads them: numbers by value; a string against a number or boolean
/// by what the string reads as in YAML. `null` only equals `null`.
fn scalar_eq(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        (Value::String(s), other @ (Value::Number(_) | Value::Bool(_)))
        | (other @ (Value::Number(_) | Value::Bool(_)), Value::String(s)) => {
            match serde_saphyr::from_str::<Value>(s) {
                Ok(read @ (Value::Number(_) | Value::Bool(_))) => scalar_eq(&read, other),
                _ => false,
            }
        }
        _ => expected == actual,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment() -> Value {
        json!({
            "metadata": {"name": "reviews-v1", "labels": {"app": "reviews", "app.kubernetes.io/name": "reviews"}},
            "spec": {"replicas": 1},
            "status": {"conditions": [
                {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"},
                {"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable",
                 "message": "Deployment does not have minimum availability."}
            ]}
        })
    }

    #[test]
    fn maps_match_only_the_written_fields() {
        let d = deployment();
        assert!(matches(&json!({"spec": {"replicas": 1}}), &d));
        assert!(matches(
            &json!({"metadata": {"labels": {"app": "reviews"}}}),
            &d
        ));
        assert!(matches(&json!({}), &d));
        assert!(!matches(&json!({"spec": {"replicas": 2}}), &d));
        assert!(!matches(&json!({"spec": {"paused": true}}), &d));
        // null: the field must not be there
        assert!(matches(&json!({"spec": {"paused": null}}), &d));
        assert!(!matches(&json!({"spec": {"replicas": null}}), &d));
    }

    #[test]
    fn an_expected_list_element_matches_any_actual_element() {
        let d = deployment();
        let both = json!({"status": {"conditions": [
            {"type": "Available", "status": "False"},
            {"type": "Progressing"}
        ]}});
        assert!(matches(&both, &d));
        let one = json!({"status": {"conditions": [{"reason": "NewReplicaSetAvailable"}]}});
        assert!(matches(&one, &d));
        let wrong = json!({"status": {"conditions": [{"type": "Available", "status": "True"}]}});
        assert!(!matches(&wrong, &d));
        assert!(!matches(&json!({"spec": [1]}), &d));
        assert!(matches(&json!([]), &json!([1, 2])));
        assert!(!matches(&json!([3]), &json!([1, 2])));
    }

    #[test]
    fn scalars_compare_as_yaml_reads_them() {
        assert!(scalar_eq(&json!(80), &json!("80")));
        assert!(scalar_eq(&json!("80"), &json!(80)));
        assert!(scalar_eq(&json!(1.0), &json!(1)));
        assert!(scalar_eq(&json!(true), &json!("True")));
        assert!(scalar_eq(&json!(true), &json!("true")));
        assert!(!scalar_eq(&json!(true), &json!("False")));
        assert!(!scalar_eq(&json!("80"), &json!(81)));
        assert!(!scalar_eq(&json!("abc"), &json!(true)));
        assert!(!scalar_eq(&json!(null), &json!("null")));
        assert!(scalar_eq(&json!("True"), &json!("True")));
        assert!(!scalar_eq(&json!("True"), &json!("true")));
    }

    #[test]
    fn the_first_mismatch_names_its_path() {
        let d = deployment();
        let m = first_mismatch(
            &json!({"status": {"conditions": [{"type": "Available", "status": "True"}]}}),
            &d,
        )
        .unwrap();
        assert_eq!(
            m.to_string(),
            r#"status.conditions[type=Available].status: expected "True", found "False" (MinimumReplicasUnavailable: Deployment does not have minimum availability.)"#
        );
        let m = first_mismatch(
            &json!({"status": {"conditions": [{"type": "Progressing", "status": "False"}]}}),
            &d,
        )
        .unwrap();
        assert_eq!(m.why.as_deref(), Some("NewReplicaSetAvailable"), "a reason alone");
        let m = first_mismatch(
            &json!({"status": {"conditions": [{"type": "Programmed"}]}}),
            &d,
        )
        .unwrap();
        assert_eq!(
            m.to_string(),
            r#"status.conditions[type=Programmed]: expected {"type":"Programmed"}, found no element with type=Programmed"#
        );
        let m = first_mismatch(&json!({"spec": {"replicas": 3}}), &d).unwrap();
        assert_eq!(m.to_string(), "spec.replicas: expected 3, found 1");
        let m = first_mismatch(&json!({"spec": {"strategy": {"type": "Recreate"}}}), &d).unwrap();
        assert_eq!(
            m.to_string(),
            r#"spec.strategy: expected {"type":"Recreate"}, found nothing"#
        );
        let m = first_mismatch(
            &json!({"metadata": {"labels": {"app.kubernetes.io/name": "x"}}}),
            &d,
        )
        .unwrap();
        assert_eq!(
            m.to_string(),
            r#"metadata.labels["app.kubernetes.io/name"]: expected "x", found "reviews""#
        );
        // no identifying field: the closest element, by its index
        let m = first_mismatch(
            &json!([{"a": 1, "b": 2}]),
            &json!([{"a": 9}, {"a": 1, "b": 3}]),
        )
        .unwrap();
        assert_eq!(m.to_string(), "[1].b: expected 2, found 3");
        let m = first_mismatch(&json!({"spec": {"replicas": {"n": 1}}}), &d).unwrap();
        assert_eq!(
            m.to_string(),
            r#"spec.replicas: expected {"n":1}, found 1 instead of a map"#
        );
    }

    #[test]
    fn the_diff_shows_expected_against_the_object_cut_to_its_shape() {
        let expected = json!({
            "spec": {"replicas": 3},
            "status": {"conditions": [{"type": "Available", "status": "True"}]}
        });
        let d = diff(&expected, &deployment(), "Deployment/reviews-v1");
        assert_eq!(
            d,
            "--- expected\n+++ Deployment/reviews-v1\n@@ -1,6 +1,6 @@\n spec:\n-  replicas: 3\n+  replicas: 1\n status:\n   conditions:\n-  - status: \"True\"\n+  - status: \"False\"\n     type: Available\n"
        );
        // a field the object lacks is a removed line
        let d = diff(
            &json!({"spec": {"paused": true, "replicas": 1}}),
            &deployment(),
            "x",
        );
        assert!(d.contains("-  paused: true\n"), "{d}");
        assert!(d.contains("   replicas: 1\n"), "{d}");
    }

    #[test]
    fn count_and_tally() {
        let objs: BTreeMap<String, Value> = [
            ("a".to_string(), json!({"spec": {"replicas": 1}, "x": 1})),
            ("b".to_string(), json!({"spec": {"replicas": 1}, "x": 2})),
            ("c".to_string(), json!({"spec": {"replicas": 2}, "x": 1})),
        ]
        .into();
        let t = tally(&objs, Some(&json!({"spec": {"replicas": 1}, "x": 1})));
        assert_eq!(t.matched, ["a"]);
        assert_eq!(t.total, 3);
        let (name, m) = t.closest.unwrap();
        assert_eq!(
            name, "b",
            "b and c both hold one of two leaves; the first wins"
        );
        assert_eq!(m.to_string(), "x: expected 1, found 2");
        assert_eq!(tally(&objs, None).matched, ["a", "b", "c"]);
        assert!(Count::AtLeastOne.holds(3) && !Count::AtLeastOne.holds(0));
        assert!(Count::Exactly(0).holds(0) && !Count::Exactly(2).holds(3));
        assert_eq!(Count::Exactly(6).to_string(), "exactly 6");
    }
}
