//! [`Resolve`]: a step's spec with the run's variables put in, field by field.
//!
//! Each spec type says which of its fields take part (`resolve_fields!`); strings are
//! expanded (`${name}`), [`Templated`] fields are expanded and then parsed into their type, and
//! values that cannot hold a variable (numbers, durations, parsed regexes) are kept as they are
//! (`resolve_as_is!`). Nothing is serialized and read back, so a spec keeps the types it was
//! read with and a field that forgets to resolve is a compile error (the macros build the
//! struct literal, which must name every field).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use super::template::Templated;
use super::vars::{VarError, Vars};

/// A value whose strings may hold `${...}`, resolved with the run's variables.
pub trait Resolve: Sized {
    /// The value with every variable replaced; the error names the unknown variable or the
    /// value that is not valid once expanded.
    fn resolve(&self, vars: &Vars) -> Result<Self, VarError>;
}

impl Resolve for String {
    fn resolve(&self, vars: &Vars) -> Result<Self, VarError> {
        vars.expand(self)
    }
}

impl<T: Resolve> Resolve for Option<T> {
    fn resolve(&self, vars: &Vars) -> Result<Self, VarError> {
        self.as_ref().map(|v| v.resolve(vars)).transpose()
    }
}

impl<T: Resolve> Resolve for Vec<T> {
    fn resolve(&self, vars: &Vars) -> Result<Self, VarError> {
        self.iter().map(|v| v.resolve(vars)).collect()
    }
}

/// Values are resolved, keys are kept (a key names a label or a header, as written).
impl<T: Resolve> Resolve for BTreeMap<String, T> {
    fn resolve(&self, vars: &Vars) -> Result<Self, VarError> {
        self.iter()
            .map(|(k, v)| Ok((k.clone(), v.resolve(vars)?)))
            .collect()
    }
}

/// Every string inside the document (a merge patch, a JSON value to compare).
impl Resolve for serde_json::Value {
    fn resolve(&self, vars: &Vars) -> Result<Self, VarError> {
        let mut v = self.clone();
        vars.expand_value(&mut v)?;
        Ok(v)
    }
}

/// A template becomes a literal of its type once expanded.
impl<T: FromStr + Clone> Resolve for Templated<T>
where
    T::Err: fmt::Display,
{
    fn resolve(&self, vars: &Vars) -> Result<Self, VarError> {
        Templated::resolve(self, vars).map(Templated::Literal)
    }
}

/// Implements [`Resolve`] for a struct by resolving each named field; every field must be
/// named (the struct literal it builds is checked by the compiler).
macro_rules! resolve_fields {
    ($ty:path { $($field:ident),* $(,)? }) => {
        impl $crate::scenario::resolve::Resolve for $ty {
            fn resolve(
                &self,
                vars: &$crate::scenario::vars::Vars,
            ) -> Result<Self, $crate::scenario::vars::VarError> {
                Ok(Self {
                    $($field: $crate::scenario::resolve::Resolve::resolve(&self.$field, vars)?,)*
                })
            }
        }
    };
}
pub(crate) use resolve_fields;

/// Implements [`Resolve`] as a copy for types that hold no variable (numbers, durations,
/// values parsed when the file is read).
macro_rules! resolve_as_is {
    ($($ty:ty),* $(,)?) => {
        $(impl $crate::scenario::resolve::Resolve for $ty {
            fn resolve(
                &self,
                _: &$crate::scenario::vars::Vars,
            ) -> Result<Self, $crate::scenario::vars::VarError> {
                Ok(self.clone())
            }
        })*
    };
}
pub(crate) use resolve_as_is;

resolve_as_is!(bool, u16, u32, u64, i32, usize, f64, std::time::Duration,);

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Sample {
        url: String,
        n: Templated<u32>,
        tags: Vec<String>,
        map: BTreeMap<String, String>,
        keep: u16,
    }
    resolve_fields!(Sample {
        url,
        n,
        tags,
        map,
        keep
    });

    #[test]
    fn strings_templates_and_containers_are_resolved_and_numbers_kept() {
        let mut vars = Vars::default();
        vars.set("gw.url", "http://10.0.0.1:80");
        vars.set("param.n", "7");
        let s = Sample {
            url: "${gw.url}/productpage".into(),
            n: Templated::Template("${param.n}".into()),
            tags: vec!["$${literal}".into()],
            map: [("${k}".to_string(), "${param.n}".to_string())].into(),
            keep: 3,
        };
        let r = s.resolve(&vars).unwrap();
        assert_eq!(r.url, "http://10.0.0.1:80/productpage");
        assert_eq!(r.n, Templated::Literal(7));
        assert_eq!(r.tags, vec!["${literal}".to_string()]);
        assert_eq!(r.map["${k}"], "7");
        assert_eq!(r.keep, 3);
        let e = Sample {
            url: "${nope}".into(),
            ..s
        }
        .resolve(&vars)
        .unwrap_err();
        assert_eq!(e, VarError::Unknown("nope".into()));
    }
}
