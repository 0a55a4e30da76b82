//! The JSON Schema of the scenario language, for editors: `istio-e2e schema` prints it and
//! `scenarios/schema.json` is its committed copy, which the shipped scenarios name in their
//! first line (`# yaml-language-server: $schema=./schema.json`), so an editor with the YAML
//! language server completes step kinds and fields and marks mistakes while typing.
//!
//! The schema is generated (with `schemars`) from the types the parser reads, so it cannot
//! drift from them: derived where serde's derive reads the type, written here where the parser
//! is hand-written ([`Step`], durations, `retry`, `when`, [`Templated`]). Step kinds come from
//! the `step_kinds!` list, so a new kind appears in the schema by its one line there. It is
//! draft-07, the draft editors' YAML language servers handle best.
//!
//! The schema checks shape (which keys, which types, one kind per step); what needs more than
//! shape (a file that exists, a variable defined earlier, a regex that compiles) is left to
//! `istio-e2e validate`.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, generate::SchemaSettings, json_schema};
use serde_json::{Map, Value, json};

use super::condition::Condition;
use super::parse::HumanDuration;
use super::{Scenario, Step, StepKind, Templated};
use crate::cluster::ProviderKind;

/// The scenario schema as pretty JSON with a trailing newline, as committed in
/// `scenarios/schema.json`.
pub fn json() -> String {
    let schema = root();
    let mut text = serde_json::to_string_pretty(&schema).expect("a schema is JSON");
    text.push('\n');
    text
}

/// The scenario schema as a value.
pub fn root() -> Value {
    let generator = SchemaSettings::draft07().into_generator();
    let mut schema = generator.into_root_schema_for::<Scenario>();
    schema.insert("title".into(), "istio-e2e scenario".into());
    let mut value = Value::from(schema);
    tidy(&mut value);
    value
}

/// Makes the generated schema read well in an editor: descriptions (doc comments) as one
/// paragraph per blank-line-separated block, without rustdoc link brackets; no `default: null`
/// (an editor would offer to insert it) and no null fields in default objects; free text that
/// takes any plain scalar, as the parser does (see [`scalars_as_text`]).
fn tidy(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(text)) = map.get_mut("description") {
                *text = plain_description(text);
            }
            match map.get_mut("default") {
                Some(Value::Null) => drop(map.remove("default")),
                Some(Value::Object(default)) => default.retain(|_, v| !v.is_null()),
                _ => {}
            }
            scalars_as_text(map);
            map.values_mut().for_each(tidy);
        }
        Value::Array(items) => items.iter_mut().for_each(tidy),
        _ => {}
    }
}

/// The parser reads a plain YAML scalar into a text field as the text written, so
/// `port: 9080`, `version: 1.30` (not 1.3) and `status: True` are text to it; the schema says
/// the same by letting free text (a string with no `enum` or `pattern`) be a number or a
/// boolean too. Text with a shape (durations, conditions, provider names) stays a string.
fn scalars_as_text(map: &mut Map<String, Value>) {
    const TEXT: [&str; 3] = ["string", "number", "boolean"];
    if ["enum", "pattern", "const", "format"]
        .iter()
        .any(|k| map.contains_key(*k))
    {
        return;
    }
    let types: Vec<&str> = match map.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => return,
    };
    if !types.contains(&"string") {
        return;
    }
    let others = types.into_iter().filter(|t| !TEXT.contains(t));
    let widened: Vec<String> = TEXT.into_iter().chain(others).map(String::from).collect();
    map.insert("type".into(), json!(widened));
}

/// A doc comment as plain text: lines of a paragraph joined, "[`x`]" links as "`x`".
fn plain_description(text: &str) -> String {
    let link = regex::Regex::new(r"\[(`[^`]+`)\](\([^)]*\))?").expect("static regex");
    let paragraphs: Vec<String> = text
        .split("\n\n")
        .map(|p| p.lines().map(str::trim).collect::<Vec<_>>().join(" "))
        .collect();
    link.replace_all(&paragraphs.join("\n\n"), "$1")
        .into_owned()
}

/// Humantime text: one or more `<number><unit>` (`30s`, `5m`, `1h 30m`), or `0`.
const DURATION_PATTERN: &str = r"^\s*(0|([0-9]+\s*[a-zA-Zµ]+\s*)+)$";

impl JsonSchema for HumanDuration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A duration as text: `30s`, `5m`, `1h 30m`.",
            "type": "string",
            "pattern": DURATION_PATTERN,
        })
    }
}

impl JsonSchema for Condition {
    fn schema_name() -> Cow<'static, str> {
        "Condition".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "`LEFT OP RIGHT` with OP one of `==`, `!=`, `>=`, `<=`, `>`, `<`, \
                e.g. `${istio.version} >= 1.22`; versions compare as versions.",
            "type": "string",
            "pattern": "(==|!=|>=|<=|>|<)",
        })
    }
}

impl JsonSchema for ProviderKind {
    fn schema_name() -> Cow<'static, str> {
        "Provider".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        let names: Vec<&str> = ProviderKind::ALL.map(ProviderKind::name).to_vec();
        json_schema!({
            "description": "A cluster provider.",
            "type": "string",
            "enum": names,
        })
    }
}

impl<T: JsonSchema> JsonSchema for Templated<T> {
    fn schema_name() -> Cow<'static, str> {
        format!("Templated_{}", T::schema_name()).into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "anyOf": [
                generator.subschema_for::<T>(),
                {
                    "description": "A value with variables, e.g. `${param.mode}`.",
                    "type": "string",
                    "pattern": r"\$\{",
                },
            ],
        })
    }
}

/// A field read by `one_or_many`: one string or a list of them.
pub(crate) struct OneOrMany;

impl JsonSchema for OneOrMany {
    fn schema_name() -> Cow<'static, str> {
        "OneOrMany".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "One string or a list of strings.",
            "anyOf": [
                { "type": "string" },
                { "type": "array", "items": { "type": "string" } },
            ],
        })
    }
}

impl JsonSchema for Step {
    fn schema_name() -> Cow<'static, str> {
        "Step".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let mut properties = common_properties(generator);
        let mut one_kind = Vec::new();
        for (name, doc, schema) in StepKind::schemas(generator) {
            properties.insert(name.into(), described(schema, doc));
            one_kind.push(json!({ "required": [name] }));
        }
        json_schema!({
            "description": "One step: the common fields (`name`, `timeout`, `retry`, `when`) \
                and exactly one step kind.",
            "type": "object",
            "properties": properties,
            "additionalProperties": false,
            "oneOf": one_kind,
        })
    }
}

/// The fields every step may have, as the step parser reads them.
fn common_properties(generator: &mut SchemaGenerator) -> Map<String, Value> {
    let mut p = Map::new();
    let name = json!({ "type": "string" });
    p.insert(
        "name".into(),
        described(name, "Display name; the kind and a summary when not given."),
    );
    let timeout = generator.subschema_for::<HumanDuration>();
    p.insert(
        "timeout".into(),
        described(
            timeout,
            "Deadline for one attempt of the step; the kind's default when not given.",
        ),
    );
    p.insert("retry".into(), retry(generator));
    let when = generator.subschema_for::<Condition>();
    p.insert(
        "when".into(),
        described(
            when,
            "Run the step only when this holds; skipped otherwise.",
        ),
    );
    p
}

/// `retry: 3` or `retry: { attempts: 3, backoff: 2s }`.
fn retry(generator: &mut SchemaGenerator) -> Value {
    let attempts = json!({ "type": "integer", "minimum": 1 });
    let backoff = described(
        generator.subschema_for::<HumanDuration>(),
        "The wait before the second attempt, doubled after each further failure (1s by default).",
    );
    json!({
        "description": "Tries of the step after a failure: a number of attempts, or \
            `{ attempts, backoff }`.",
        "anyOf": [
            attempts,
            {
                "type": "object",
                "properties": {
                    "attempts": described(attempts.clone(), "Total attempts, the first included."),
                    "backoff": backoff,
                },
                "required": ["attempts"],
                "additionalProperties": false,
            },
        ],
    })
}

/// `schema` (an object's, e.g. of a block read through a `...Fields` struct) without the
/// properties `keys`, for a type that reads that block and refuses those keys.
pub(crate) fn without(mut schema: Schema, keys: &[&str]) -> Schema {
    if let Some(Value::Object(properties)) = schema.get_mut("properties") {
        properties.retain(|k, _| !keys.contains(&k.as_str()));
    }
    schema
}

/// `schema` with `description` (a `$ref` keeps it beside an `allOf` in draft-07 output).
fn described(schema: impl Into<Value>, description: &str) -> Value {
    let mut value = schema.into();
    if let Value::Object(map) = &mut value
        && !description.is_empty()
    {
        map.insert("description".into(), description.trim().into());
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every step kind is a property of the step schema and one of its `oneOf` entries, and
    /// steps and scenarios refuse keys they do not know.
    #[test]
    fn step_schema_lists_every_kind_and_refuses_unknown_keys() {
        let root = root();
        let step = &root["definitions"]["Step"];
        for kind in crate::steps::STEP_KINDS {
            assert!(step["properties"][kind].is_object(), "{kind}");
            let one = json!({ "required": [kind] });
            assert!(step["oneOf"].as_array().unwrap().contains(&one), "{kind}");
        }
        assert_eq!(step["additionalProperties"], false);
        assert_eq!(root["additionalProperties"], false);
        assert_eq!(root["required"], json!(["name", "steps"]));
    }

    /// The duration pattern takes what humantime takes and refuses prose.
    #[test]
    fn duration_pattern_matches_humantime() {
        let re = regex::Regex::new(DURATION_PATTERN).unwrap();
        for ok in ["30s", "5m", "1h 30m", "500ms", "0", " 2m "] {
            assert!(re.is_match(ok), "{ok}");
            assert!(super::super::parse::parse_duration(ok).is_ok(), "{ok}");
        }
        for bad in ["five minutes", "", "m5"] {
            assert!(!re.is_match(bad), "{bad}");
        }
    }
}
