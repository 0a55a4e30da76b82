//! Kubernetes' own rules for names and labels, checked before anything runs so that a typo
//! is a validation error at its line, not an API error halfway through a run (the rules of
//! `k8s.io/apimachinery/pkg/util/validation`: `IsDNS1123Label`, `IsQualifiedName`,
//! `IsValidLabelValue`). Text holding a `${variable}` is checked once it is expanded.

/// A name or label that Kubernetes would refuse; each message says what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Not a DNS-1123 label.
    #[error(
        "namespace {0:?} is not a valid name: use at most 63 lower-case letters, digits and '-', starting and ending with a letter or digit"
    )]
    Namespace(String),
    /// Not `[prefix/]name`.
    #[error(
        "label key {0:?} is not valid: write [prefix/]name, the name at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit (e.g. istio-injection)"
    )]
    LabelKey(String),
    /// Not a label value (of the key given first).
    #[error(
        "label {0}={1:?}: the value is not valid: at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit (e.g. enabled)"
    )]
    LabelValue(String, String),
}

/// A namespace name: a DNS-1123 label (at most 63 of `a-z`, `0-9`, `-`, alphanumeric at both
/// ends).
pub fn namespace(name: &str) -> Result<(), NameError> {
    if templated(name) || dns1123_label(name) {
        return Ok(());
    }
    Err(NameError::Namespace(name.to_string()))
}

/// A label key: an optional DNS-1123 subdomain prefix and `/`, then a name of at most 63
/// alphanumerics, `-`, `_` and `.`, alphanumeric at both ends.
pub fn label_key(key: &str) -> Result<(), NameError> {
    if templated(key) {
        return Ok(());
    }
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let prefix_ok = prefix.is_none_or(|p| p.len() <= 253 && p.split('.').all(dns1123_label));
    if prefix_ok && qualified_name(name) {
        return Ok(());
    }
    Err(NameError::LabelKey(key.to_string()))
}

/// A label value: empty, or at most 63 alphanumerics, `-`, `_` and `.`, alphanumeric at both
/// ends.
pub fn label_value(key: &str, value: &str) -> Result<(), NameError> {
    if templated(value) || value.is_empty() || qualified_name(value) {
        return Ok(());
    }
    Err(NameError::LabelValue(key.to_string(), value.to_string()))
}

fn templated(text: &str) -> bool {
    text.contains("${")
}

fn dns1123_label(s: &str) -> bool {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    ends_alphanumeric(s) && s.len() <= 63 && s.chars().all(ok_char)
}

fn qualified_name(s: &str) -> bool {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    ends_alphanumeric(s) && s.len() <= 63 && s.chars().all(ok_char)
}

fn ends_alphanumeric(s: &str) -> bool {
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    alnum(s.chars().next()) && alnum(s.chars().last())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces() {
        assert!(namespace("bookinfo").is_ok());
        assert!(namespace("istio-system").is_ok());
        assert!(namespace("${param.ns}").is_ok());
        assert!(namespace("Bad_Namespace!").is_err());
        assert!(namespace("-x").is_err());
        assert!(namespace(&"a".repeat(64)).is_err());
    }

    #[test]
    fn labels() {
        assert!(label_key("istio-injection").is_ok());
        assert!(label_key("istio.io/rev").is_ok());
        assert!(label_key("not a label").is_err());
        assert!(label_key("Bad.Prefix/x").is_err());
        assert!(label_value("istio.io/rev", "1-30-3").is_ok());
        assert!(label_value("a", "").is_ok());
        assert!(label_value("a", "not ok").is_err());
    }
}
