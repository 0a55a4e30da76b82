//! [`Templated`]: a field that holds either a literal value of its type or a `${...}`
//! template, resolved to that type once the run's variables are known. Validation reads the
//! literal where there is one, so an enum or a number can take a variable and still be
//! checked when the file is read.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};

use super::vars::{VarError, Vars};

/// A literal `T`, or a template (text with `${...}`) that becomes a `T` when resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Templated<T> {
    /// Written as a value: parsed (and so checked) when the file is read.
    Literal(T),
    /// Written with variables: parsed after they are expanded.
    Template(String),
}

impl<T> Templated<T> {
    /// The value, when it was written literally.
    pub fn literal(&self) -> Option<&T> {
        match self {
            Templated::Literal(v) => Some(v),
            Templated::Template(_) => None,
        }
    }
}

impl<T: FromStr + Clone> Templated<T>
where
    T::Err: fmt::Display,
{
    /// The value with the run's variables expanded; the error names the unknown variable or
    /// why the expanded text is not a `T`.
    pub fn resolve(&self, vars: &Vars) -> Result<T, VarError> {
        match self {
            Templated::Literal(v) => Ok(v.clone()),
            Templated::Template(t) => {
                let text = vars.expand(t)?;
                text.parse().map_err(|e: T::Err| VarError::NotValid {
                    message: e.to_string(),
                    template: t.clone(),
                })
            }
        }
    }
}

impl<T: Default> Default for Templated<T> {
    fn default() -> Self {
        Templated::Literal(T::default())
    }
}

impl<T: fmt::Display> fmt::Display for Templated<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Templated::Literal(v) => v.fmt(f),
            Templated::Template(t) => f.write_str(t),
        }
    }
}

impl<T: FromStr> Templated<T>
where
    T::Err: fmt::Display,
{
    /// A field as written: a template when it holds `${`, else a literal parsed now.
    pub fn from_text(text: &str) -> Result<Self, T::Err> {
        if text.contains("${") {
            return Ok(Templated::Template(text.to_string()));
        }
        text.parse().map(Templated::Literal)
    }
}

impl<T: Clone> Templated<T> {
    /// The value of a field the run's variables were put into ([`Templated::resolve`], or
    /// [`crate::scenario::Resolve`] on the whole spec), which is always a literal.
    ///
    /// # Panics
    /// On a template not yet resolved: steps run on resolved specs only.
    pub fn value(&self) -> T {
        match self {
            Templated::Literal(v) => v.clone(),
            Templated::Template(t) => panic!("{t} was not resolved before the step ran"),
        }
    }
}

/// Any scalar as written (`2`, `true`, `canary`, `${param.n}`), read as its text and parsed
/// into `T` unless it is a template.
impl<'de, T: FromStr> Deserialize<'de> for Templated<T>
where
    T::Err: fmt::Display,
{
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = d.deserialize_any(ScalarText)?;
        Templated::from_text(&text).map_err(de::Error::custom)
    }
}

/// A scalar's text, whatever type YAML gave it.
struct ScalarText;

impl de::Visitor<'_> for ScalarText {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a value or a `${...}` template")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
        Ok(v.to_string())
    }
}

impl<T: fmt::Display> Serialize for Templated<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_are_parsed_when_read_and_templates_when_resolved() {
        let n: Templated<u32> = serde_json::from_value(serde_json::json!("42")).unwrap();
        assert_eq!(n.literal(), Some(&42));
        let bad = serde_json::from_value::<Templated<u32>>(serde_json::json!("lots"));
        assert!(bad.is_err());
        let t: Templated<u32> = serde_json::from_value(serde_json::json!("${param.n}")).unwrap();
        assert_eq!(t.literal(), None);
        let mut vars = Vars::default();
        vars.set("param.n", "7");
        assert_eq!(t.resolve(&vars), Ok(7));
        vars.set("param.n", "seven");
        let e = t.resolve(&vars).unwrap_err().to_string();
        assert!(e.contains("from ${param.n}"), "{e}");
        assert_eq!(serde_json::to_value(&t).unwrap(), "${param.n}");
    }
}
