//! `when:` on a step: run it only if a comparison holds, e.g. per Istio version.
//!
//! ```yaml
//! - name: send traces to Jaeger (Istio 1.22 and later)
//!   when: ${istio.version} >= 1.22
//!   apply: { files: fixtures/istio/telemetry-tracing.yaml }
//! - name: make the rollout unsafe
//!   when: ${param.rollout} == unsafe
//!   patch: { ... }
//! ```
//!
//! A condition is `LEFT OP RIGHT` with OP one of `==`, `!=`, `>=`, `<=`, `>`, `<`, both sides
//! expanded like any other string of the step. When both sides are versions (`1.22`,
//! `v1.30.3`, `1.24.0-beta.1`), they compare as versions (`1.9 < 1.22`, a missing part is 0);
//! otherwise `==` and `!=` compare text, and ordering needs versions. A step whose condition is
//! false is reported as skipped, with the comparison that decided it.

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A comparison operator of a condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `>=`
    Ge,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `<`
    Lt,
}

impl Op {
    /// Two-character operators first, so `>=` is not read as `>`.
    const ALL: [(&'static str, Op); 6] = [
        ("==", Op::Eq),
        ("!=", Op::Ne),
        (">=", Op::Ge),
        ("<=", Op::Le),
        (">", Op::Gt),
        ("<", Op::Lt),
    ];

    fn text(self) -> &'static str {
        Op::ALL
            .iter()
            .find(|(_, o)| *o == self)
            .map(|(t, _)| *t)
            .unwrap_or("?")
    }

    fn holds(self, ord: Ordering) -> bool {
        match self {
            Op::Eq => ord == Ordering::Equal,
            Op::Ne => ord != Ordering::Equal,
            Op::Ge => ord != Ordering::Less,
            Op::Le => ord != Ordering::Greater,
            Op::Gt => ord == Ordering::Greater,
            Op::Lt => ord == Ordering::Less,
        }
    }
}

/// A step's `when:` condition, as written (variables not yet expanded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// The left side, e.g. `${istio.version}`.
    pub left: String,
    /// The operator.
    pub op: Op,
    /// The right side, e.g. `1.22`.
    pub right: String,
}

/// A `when` that cannot be read or decided; each message says what to write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConditionError {
    /// Not `LEFT OP RIGHT`.
    #[error(
        "`when: {0}` is not a comparison; write `LEFT OP RIGHT` with OP one of == != >= <= > <, e.g. `when: ${{istio.version}} >= 1.22`"
    )]
    NotComparison(String),
    /// An ordering operator with a side that is no version.
    #[error(
        "`{left} {op} {right}`: `{op}` compares versions (like 1.22 or v1.30.3), and {not_version:?} is not one"
    )]
    NotVersion {
        /// The expanded left side.
        left: String,
        /// The operator as written.
        op: &'static str,
        /// The expanded right side.
        right: String,
        /// The side that is no version.
        not_version: String,
    },
}

impl Condition {
    /// Parses `LEFT OP RIGHT`; the error says what a condition looks like.
    pub fn parse(text: &str) -> Result<Condition, ConditionError> {
        let t = text.trim();
        // The first operator outside `${...}`.
        let bytes = t.as_bytes();
        let mut depth = 0;
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'{' => depth += 1,
                b'}' => depth = (depth - 1).max(0),
                _ if depth == 0 => {
                    if let Some((tok, op)) = Op::ALL.iter().find(|(tok, _)| t[i..].starts_with(tok))
                    {
                        let left = t[..i].trim();
                        let right = t[i + tok.len()..].trim();
                        if left.is_empty() || right.is_empty() {
                            break;
                        }
                        return Ok(Condition {
                            left: unquote(left).to_string(),
                            op: *op,
                            right: unquote(right).to_string(),
                        });
                    }
                }
                _ => {}
            }
            i += 1;
        }
        Err(ConditionError::NotComparison(t.to_string()))
    }

    /// Decides the condition for already-expanded sides; `Ok(false)` means skip the step.
    pub fn decide(&self, left: &str, right: &str) -> Result<bool, ConditionError> {
        match (Version::parse(left), Version::parse(right)) {
            (Some(a), Some(b)) => Ok(self.op.holds(a.cmp(&b))),
            _ => match self.op {
                Op::Eq => Ok(left == right),
                Op::Ne => Ok(left != right),
                op => Err(ConditionError::NotVersion {
                    left: left.to_string(),
                    op: op.text(),
                    right: right.to_string(),
                    not_version: if Version::parse(left).is_none() {
                        left
                    } else {
                        right
                    }
                    .to_string(),
                }),
            },
        }
    }

    /// The comparison with expanded sides, for messages: `1.12.1 >= 1.22`.
    pub fn show(&self, left: &str, right: &str) -> String {
        format!("{left} {} {right}", self.op.text())
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.left, self.op.text(), self.right)
    }
}

impl Serialize for Condition {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_string().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Condition {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Condition::parse(&text).map_err(serde::de::Error::custom)
    }
}

fn unquote(s: &str) -> &str {
    for q in ['"', '\''] {
        if let Some(inner) = s.strip_prefix(q).and_then(|r| r.strip_suffix(q)) {
            return inner;
        }
    }
    s
}

/// A dotted version, compared part by part; a pre-release sorts before its release.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Version {
    parts: Vec<u64>,
    pre: Option<String>,
}

impl Version {
    fn parse(text: &str) -> Option<Version> {
        let t = text.trim();
        let t = t.strip_prefix('v').unwrap_or(t);
        let (core, pre) = match t.split_once('-') {
            Some((c, p)) => (c, Some(p.to_string())),
            None => (t, None),
        };
        let parts: Option<Vec<u64>> = core.split('.').map(|p| p.parse().ok()).collect();
        let parts = parts?;
        (!parts.is_empty()).then_some(Version { parts, pre })
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        let n = self.parts.len().max(other.parts.len());
        for i in 0..n {
            let a = self.parts.get(i).copied().unwrap_or(0);
            let b = other.parts.get(i).copied().unwrap_or(0);
            match a.cmp(&b) {
                Ordering::Equal => {}
                o => return o,
            }
        }
        match (&self.pre, &other.pre) {
            (None, None) => Ordering::Equal,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some(a), Some(b)) => a.cmp(b),
        }
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decide(text: &str) -> Result<bool, String> {
        let c = Condition::parse(text).map_err(|e| e.to_string())?;
        c.decide(&c.left, &c.right).map_err(|e| e.to_string())
    }

    #[test]
    fn versions_compare_as_versions() {
        assert_eq!(decide("1.12.1 >= 1.22"), Ok(false));
        assert_eq!(decide("1.30.3 >= 1.22"), Ok(true));
        assert_eq!(decide("1.9 < 1.22"), Ok(true));
        assert_eq!(decide("v1.22 == 1.22.0"), Ok(true));
        assert_eq!(decide("1.24.0-beta.1 < 1.24.0"), Ok(true));
        assert_eq!(decide("1.30 > 1.30"), Ok(false));
    }

    #[test]
    fn text_compares_for_equality_only() {
        assert_eq!(decide("unsafe == unsafe"), Ok(true));
        assert_eq!(decide("'safe' != \"unsafe\""), Ok(true));
        let e = decide("safe >= unsafe").unwrap_err();
        assert!(e.contains("compares versions"), "{e}");
    }

    #[test]
    fn variables_keep_their_braces_and_bad_text_is_explained() {
        let c = Condition::parse("${param.rollout} == unsafe").unwrap();
        assert_eq!(c.left, "${param.rollout}");
        assert_eq!(c.op, Op::Eq);
        assert_eq!(c.to_string(), "${param.rollout} == unsafe");
        let e = Condition::parse("${istio.version}")
            .unwrap_err()
            .to_string();
        assert!(e.contains("is not a comparison"), "{e}");
        assert!(Condition::parse(">= 1.22").is_err());
    }
}
