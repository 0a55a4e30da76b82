//! Variables: `${name}` in any string of a step.
//!
//! Names come from three places, looked up in this order:
//! - captures of earlier steps: a step with `capture: gw` (or its kind's default capture
//!   name) defines `${gw.<key>}` for the keys its kind records (e.g. `${gw.address}`);
//! - built-ins: `${istio.dir}`, `${istio.crds}` (the release's file of all Istio CRDs, where
//!   that release keeps it), `${istio.version}`, `${istio.profile}`, `${namespace}`,
//!   `${run.id}`, `${run.artifacts}`, `${cluster.provider}`, `${cluster.kubernetes}` (the
//!   version the apiserver reports once the cluster exists), `${cluster.node-address}`,
//!   `${cluster.kubeconfig}`, `${gateway-api.crds}` (the Gateway API CRDs of the release
//!   the scenario's `gateway-api:` names);
//! - environment variables: `${HOME}`.
//!
//! `$${x}` is a literal `${x}`. A name that none of these define is a validation error before
//! anything runs.

use std::collections::BTreeMap;

use serde_json::Value;

/// Built-in variable names, always defined while a scenario runs.
pub const BUILTINS: &[&str] = &[
    "istio.dir",
    "istio.crds",
    "istio.version",
    "istio.profile",
    "namespace",
    "run.id",
    "run.artifacts",
    "cluster.provider",
    "cluster.kubernetes",
    "cluster.node-address",
    "cluster.kubeconfig",
    "gateway-api.crds",
];

/// One `${...}` reference found in a text: its name and byte offset of the `$`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The name between the braces.
    pub name: String,
    /// Byte offset of the `$` in the text.
    pub offset: usize,
}

/// Every `${name}` reference in `text`, skipping `$${...}` escapes.
pub fn references(text: &str) -> Vec<Reference> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i + 1 < bytes.len() {
        if bytes[i] == b'$' && bytes[i + 1] == b'$' {
            i += 2;
            continue;
        }
        if bytes[i] == b'$'
            && bytes[i + 1] == b'{'
            && let Some(end) = text[i + 2..].find('}')
        {
            {
                out.push(Reference {
                    name: text[i + 2..i + 2 + end].trim().to_string(),
                    offset: i,
                });
                i += end + 3;
                continue;
            }
        }
        i += 1;
    }
    out
}

/// A variable that cannot be put in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VarError {
    /// `${` without its `}`.
    #[error("unclosed `${{` in {0:?}")]
    Unclosed(String),
    /// A name that no capture, built-in or environment variable defines.
    #[error(
        "unknown variable `${{{0}}}`: no earlier step captured it, it is not a built-in, and no environment variable has that name"
    )]
    Unknown(String),
    /// Once expanded, the text is not a value of the field's type.
    #[error("{message} (from {template})")]
    NotValid {
        /// Why the expanded value is refused.
        message: String,
        /// The text as written, with its variables.
        template: String,
    },
}

/// The values variables have while a scenario runs.
#[derive(Debug, Clone, Default)]
pub struct Vars {
    values: BTreeMap<String, String>,
}

impl Vars {
    /// Sets a variable.
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.values.insert(name.into(), value.into());
    }

    /// Records a step's outputs under `prefix.key` (scalars only; other values as JSON text).
    pub fn capture(&mut self, prefix: &str, outputs: &crate::Outputs) {
        for (k, v) in outputs {
            let text = match v {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            self.set(format!("{prefix}.{k}"), text);
        }
    }

    /// A variable's value: captures and built-ins, then the environment.
    pub fn get(&self, name: &str) -> Option<String> {
        self.values
            .get(name)
            .cloned()
            .or_else(|| std::env::var(name).ok())
    }

    /// Replaces every `${name}` in `text`; the error names the first unknown variable.
    pub fn expand(&self, text: &str) -> Result<String, VarError> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        loop {
            let Some(pos) = rest.find('$') else {
                out.push_str(rest);
                return Ok(out);
            };
            out.push_str(&rest[..pos]);
            let tail = &rest[pos..];
            if let Some(after) = tail.strip_prefix("$${") {
                out.push_str("${");
                rest = after;
            } else if let Some(body) = tail.strip_prefix("${") {
                let Some(end) = body.find('}') else {
                    return Err(VarError::Unclosed(text.to_string()));
                };
                let name = body[..end].trim();
                match self.get(name) {
                    Some(v) => out.push_str(&v),
                    None => return Err(VarError::Unknown(name.to_string())),
                }
                rest = &body[end + 1..];
            } else {
                out.push('$');
                rest = &tail[1..];
            }
        }
    }

    /// Expands every string inside a JSON value (used on a step's spec before it runs).
    pub fn expand_value(&self, v: &mut Value) -> Result<(), VarError> {
        match v {
            Value::String(s) if s.contains('$') => {
                *s = self.expand(s)?;
            }
            Value::Array(a) => {
                for x in a {
                    self.expand_value(x)?;
                }
            }
            Value::Object(o) => {
                for (_, x) in o.iter_mut() {
                    self.expand_value(x)?;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_references_and_skips_escapes() {
        let r = references("a ${x.y} $${not} ${ HOME }");
        assert_eq!(
            r,
            vec![
                Reference {
                    name: "x.y".into(),
                    offset: 2
                },
                Reference {
                    name: "HOME".into(),
                    offset: 17
                }
            ]
        );
    }

    #[test]
    fn expands_captures_and_reports_unknown_names() {
        let mut v = Vars::default();
        v.set("gw.address", "172.18.0.2:31380");
        assert_eq!(
            v.expand("http://${gw.address}/p $${lit}").unwrap(),
            "http://172.18.0.2:31380/p ${lit}"
        );
        let e = v.expand("${nope.nothing}").unwrap_err();
        assert!(
            e.to_string().contains("unknown variable `${nope.nothing}`"),
            "{e}"
        );
    }
}
