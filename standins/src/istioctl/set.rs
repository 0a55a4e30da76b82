//! `--set path=value` as istioctl reads it (`operator/pkg/tpath`: dotted paths, `[i]` list
//! indices, values typed as booleans and numbers when they parse as such).

use serde_json::{Map, Value};

/// Why a `--set` is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetError {
    /// No `=`.
    #[error("--set {0}: write path=value")]
    NoValue(String),
    /// A bad index.
    #[error("--set {0}: bad list index")]
    BadIndex(String),
}

/// Writes `value` at `path` into `tree`, making objects and lists on the way.
pub fn set(tree: &mut Value, assignment: &str) -> Result<(), SetError> {
    let (path, raw) = assignment
        .split_once('=')
        .ok_or_else(|| SetError::NoValue(assignment.into()))?;
    let mut at = tree;
    for part in path.split('.') {
        let (key, index) = match part.split_once('[') {
            Some((k, rest)) => {
                let i = rest
                    .trim_end_matches(']')
                    .parse::<usize>()
                    .map_err(|_| SetError::BadIndex(assignment.into()))?;
                (k, Some(i))
            }
            None => (part, None),
        };
        at = child(at, key);
        if let Some(i) = index {
            if !at.is_array() {
                *at = Value::Array(vec![]);
            }
            let list = at.as_array_mut().expect("just made a list");
            while list.len() <= i {
                list.push(Value::Object(Map::new()));
            }
            at = &mut list[i];
        }
    }
    *at = typed(raw);
    Ok(())
}

fn child<'a>(v: &'a mut Value, key: &str) -> &'a mut Value {
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    v.as_object_mut()
        .expect("just made an object")
        .entry(key)
        .or_insert(Value::Null)
}

fn typed(raw: &str) -> Value {
    match raw {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        _ => raw
            .parse::<i64>()
            .map(Value::from)
            .or_else(|_| raw.parse::<f64>().map(Value::from))
            .unwrap_or_else(|_| Value::String(raw.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_make_objects_and_lists_and_values_are_typed() {
        let mut t = json!({});
        set(&mut t, "meshConfig.enableTracing=true").unwrap();
        set(&mut t, "meshConfig.defaultConfig.tracing.sampling=100").unwrap();
        set(&mut t, "meshConfig.extensionProviders[0].name=jaeger").unwrap();
        set(
            &mut t,
            "meshConfig.extensionProviders[0].opentelemetry.port=4317",
        )
        .unwrap();
        assert_eq!(
            t,
            json!({"meshConfig": {"enableTracing": true,
                "defaultConfig": {"tracing": {"sampling": 100}},
                "extensionProviders": [{"name": "jaeger", "opentelemetry": {"port": 4317}}]}})
        );
        assert_eq!(
            set(&mut t, "profile"),
            Err(SetError::NoValue("profile".into()))
        );
        assert!(set(&mut t, "a[x].b=1").is_err());
    }
}
