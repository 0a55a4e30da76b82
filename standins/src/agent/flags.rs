//! STAND-IN for the command-line parsing of Istio's `pilot-agent` (cobra/pflag): a small
//! table-driven parser accepting the spellings pflag accepts (`--name value`, `--name=value`,
//! `-p value`, `-p=value`, `-pvalue`, bare boolean flags and `--flag=false`), so the argument
//! vectors Istio's injection templates write are read unchanged. An unknown flag is an error
//! naming it, like cobra's `unknown flag: --x`.

use std::collections::BTreeMap;

/// One flag a command accepts.
#[derive(Debug, Clone, Copy)]
pub struct FlagSpec {
    /// Long name, without the leading `--` (e.g. `envoy-port`).
    pub long: &'static str,
    /// Optional one-letter short name (e.g. `p`).
    pub short: Option<char>,
    /// True when the flag takes a value; false for booleans.
    pub takes_value: bool,
}

impl FlagSpec {
    /// A flag that takes a value.
    pub const fn value(long: &'static str, short: Option<char>) -> Self {
        Self {
            long,
            short,
            takes_value: true,
        }
    }

    /// A boolean flag.
    pub const fn boolean(long: &'static str, short: Option<char>) -> Self {
        Self {
            long,
            short,
            takes_value: false,
        }
    }
}

/// What went wrong reading a command line.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FlagError {
    /// A flag that the command does not know.
    #[error(
        "unknown flag: {0} (this stand-in accepts the flags Istio's injection templates pass; see `--help`)"
    )]
    Unknown(String),
    /// A value-taking flag given last, with nothing after it.
    #[error("flag needs an argument: {0}")]
    MissingValue(String),
    /// A boolean flag given a value that is not a boolean.
    #[error("invalid boolean value {value:?} for flag --{flag}")]
    BadBool {
        /// The flag's long name.
        flag: &'static str,
        /// The value given.
        value: String,
    },
}

/// A parsed command line: flag values by long name, and the positional arguments.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// Values by long name; booleans are stored as `"true"`/`"false"`. The last one given wins.
    pub values: BTreeMap<&'static str, String>,
    /// Arguments that are not flags, in order.
    pub positionals: Vec<String>,
}

impl Parsed {
    /// The value of a flag, if given.
    pub fn get(&self, long: &str) -> Option<&str> {
        self.values.get(long).map(String::as_str)
    }

    /// True when a boolean flag was given and not set to false.
    pub fn is_set(&self, long: &str) -> bool {
        self.get(long) == Some("true")
    }
}

/// Parses `args` (without the program and subcommand names) against `specs`.
pub fn parse(specs: &[FlagSpec], args: &[String]) -> Result<Parsed, FlagError> {
    let mut parsed = Parsed::default();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if arg == "--" {
            parsed.positionals.extend(iter.by_ref().cloned());
            break;
        }
        let Some((spec, inline)) = lookup(specs, arg)? else {
            parsed.positionals.push(arg.clone());
            continue;
        };
        let value = match (spec.takes_value, inline) {
            (true, Some(v)) => v,
            (true, None) => iter
                .next()
                .cloned()
                .ok_or_else(|| FlagError::MissingValue(arg.clone()))?,
            (false, None) => "true".to_string(),
            (false, Some(v)) => parse_bool(spec.long, &v)?.to_string(),
        };
        parsed.values.insert(spec.long, value);
    }
    Ok(parsed)
}

/// Finds the spec an argument names, with its inline value (`--x=v`, `-pv`); `None` when the
/// argument is not a flag at all.
fn lookup(specs: &[FlagSpec], arg: &str) -> Result<Option<(FlagSpec, Option<String>)>, FlagError> {
    if let Some(rest) = arg.strip_prefix("--") {
        let (name, inline) = split_inline(rest);
        let spec = specs
            .iter()
            .find(|s| s.long == name)
            .ok_or_else(|| FlagError::Unknown(arg.to_string()))?;
        return Ok(Some((*spec, inline)));
    }
    let Some(rest) = arg.strip_prefix('-').filter(|r| !r.is_empty()) else {
        return Ok(None);
    };
    let mut chars = rest.chars();
    let letter = chars.next().unwrap_or_default();
    let spec = specs
        .iter()
        .find(|s| s.short == Some(letter))
        .ok_or_else(|| FlagError::Unknown(arg.to_string()))?;
    let tail: String = chars.collect();
    let inline = match tail.strip_prefix('=') {
        Some(v) => Some(v.to_string()),
        None if tail.is_empty() => None,
        None => Some(tail),
    };
    Ok(Some((*spec, inline)))
}

fn split_inline(rest: &str) -> (&str, Option<String>) {
    match rest.split_once('=') {
        Some((name, value)) => (name, Some(value.to_string())),
        None => (rest, None),
    }
}

fn parse_bool(flag: &'static str, value: &str) -> Result<bool, FlagError> {
    match value {
        "true" | "1" | "t" | "T" | "TRUE" | "True" => Ok(true),
        "false" | "0" | "f" | "F" | "FALSE" | "False" => Ok(false),
        _ => Err(FlagError::BadBool {
            flag,
            value: value.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPECS: &[FlagSpec] = &[
        FlagSpec::value("envoy-port", Some('p')),
        FlagSpec::value("istio-service-exclude-cidr", Some('x')),
        FlagSpec::boolean("dry-run", Some('n')),
        FlagSpec::value("log_output_level", None),
    ];

    fn args(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn reads_every_spelling_pflag_accepts() {
        let p = parse(
            SPECS,
            &args(&[
                "-p",
                "15001",
                "-x",
                "",
                "--log_output_level=default:info",
                "-n",
                "pos",
            ]),
        )
        .unwrap();
        assert_eq!(p.get("envoy-port"), Some("15001"));
        assert_eq!(p.get("istio-service-exclude-cidr"), Some(""));
        assert_eq!(p.get("log_output_level"), Some("default:info"));
        assert!(p.is_set("dry-run"));
        assert_eq!(p.positionals, vec!["pos".to_string()]);
        let p = parse(
            SPECS,
            &args(&["-p15002", "--dry-run=false", "--envoy-port", "15003"]),
        )
        .unwrap();
        assert_eq!(p.get("envoy-port"), Some("15003"));
        assert!(!p.is_set("dry-run"));
    }

    #[test]
    fn rejects_unknown_flags_and_missing_values() {
        assert_eq!(
            parse(SPECS, &args(&["--bogus"])),
            Err(FlagError::Unknown("--bogus".into()))
        );
        assert_eq!(
            parse(SPECS, &args(&["-Q", "1"])),
            Err(FlagError::Unknown("-Q".into()))
        );
        assert_eq!(
            parse(SPECS, &args(&["-p"])),
            Err(FlagError::MissingValue("-p".into()))
        );
        assert!(matches!(
            parse(SPECS, &args(&["--dry-run=maybe"])),
            Err(FlagError::BadBool { .. })
        ));
    }
}
