//! `scenarios/schema.json`, the schema editors check scenarios with: it is what
//! `istio-e2e schema` prints now, every shipped scenario names it and matches it, and the
//! broken fixtures whose mistake is one of shape are refused by it as by the parser.

use std::path::{Path, PathBuf};

use rstest::rstest;
use serde_json::Value;

const REGENERATE: &str = "cargo run -q -p istio-e2e -- schema > scenarios/schema.json";

/// The line an editor's YAML language server reads the schema from.
const SCHEMA_COMMENT: &str = "# yaml-language-server: $schema=./schema.json";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The validator of the committed schema, as an editor would load it.
fn validator() -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(&read("scenarios/schema.json")).unwrap();
    jsonschema::draft7::new(&schema).expect("scenarios/schema.json is a draft-07 schema")
}

/// The YAML file as the JSON value a schema checks.
fn instance(rel: &str) -> Value {
    serde_saphyr::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// `path: message` for each place the file does not match the schema.
fn schema_errors(rel: &str) -> Vec<String> {
    let value = instance(rel);
    validator()
        .iter_errors(&value)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

#[test]
fn committed_schema_is_current() {
    let committed = read("scenarios/schema.json");
    let generated = harness::scenario::schema::json();
    if committed != generated {
        let line = committed
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .map_or_else(|| "the end".to_string(), |i| format!("line {}", i + 1));
        panic!(
            "scenarios/schema.json is stale (first difference at {line}); regenerate it with\n    {REGENERATE}"
        );
    }
}

#[test]
fn shipped_scenarios_name_and_match_the_schema() {
    let mut checked = 0;
    for entry in std::fs::read_dir(root().join("scenarios")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let rel = format!("scenarios/{}", path.file_name().unwrap().to_string_lossy());
        let first = read(&rel).lines().next().unwrap_or_default().to_string();
        assert_eq!(first, SCHEMA_COMMENT, "first line of {rel}");
        assert_eq!(schema_errors(&rel), Vec::<String>::new(), "{rel}");
        checked += 1;
    }
    assert!(checked >= 4, "{checked} scenarios");
}

/// The lab's test scenarios are valid scenarios too, and the schema agrees.
#[rstest]
#[case("fixtures/scenarios/lab/passes.yaml")]
#[case("fixtures/scenarios/lab/fails.yaml")]
#[case("fixtures/scenarios/lab/waits-forever.yaml")]
fn lab_fixture_scenarios_match_the_schema(#[case] rel: &str) {
    harness::scenario::load(&root().join(rel)).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(schema_errors(rel), Vec::<String>::new(), "{rel}");
}

/// Each fixture whose mistake is one of shape, and where the schema finds it (the instance
/// path of one of its errors). The other fixtures need more than shape (a missing file, an
/// unknown variable, a bad regex) and are left to `validate`.
#[rstest]
#[case::unknown_step_kind("01-unknown-step-kind", "/steps/0")]
#[case::misspelled_step_kind("02-misspelled-step-kind", "/steps/0")]
#[case::unknown_field("03-unknown-field", "/steps/0/http/expect")]
#[case::bad_duration("04-bad-duration", "/steps/0/timeout")]
#[case::two_kinds("08-two-kinds-in-one-step", "/steps/0")]
#[case::no_kind("09-step-without-kind", "/steps/0")]
#[case::unknown_provider("11-unknown-provider", "/cluster/provider")]
#[case::wait_without_target("12-wait-without-target", "/steps/0/wait")]
#[case::missing_steps("15-missing-steps", "")]
#[case::wrong_type("16-wrong-type", "/steps/0/exec/command")]
#[case::bad_condition("19-bad-condition", "/steps/0/when")]
#[case::patch_without_change("21-patch-without-change", "/steps/0/patch")]
#[case::bad_retry_backoff("22-bad-retry-backoff", "/steps/0/retry")]
#[case::zero_retry_attempts("23-zero-retry-attempts", "/steps/0/retry")]
#[case::patch_with_two_changes("26-patch-with-two-changes", "/steps/1/patch")]
#[case::assert_name_and_selector("28-assert-name-and-selector", "/steps/0/absent")]
fn structural_mistakes_are_refused_by_the_schema(#[case] name: &str, #[case] at: &str) {
    let rel = format!("fixtures/scenarios/invalid/{name}.yaml");
    let errors = schema_errors(&rel);
    assert!(
        errors
            .iter()
            .any(|e| e.split_once(": ").is_some_and(|(path, _)| path == at)),
        "{rel}: no schema error at {at:?}: {errors:?}"
    );
}

/// A plain scalar in a text field is text to the parser (`port: 9080`, `version: 1.30`,
/// `status: True`), so the schema takes it too, while a field with a shape stays checked.
#[test]
fn plain_scalars_in_text_fields_are_text_for_the_schema_as_for_the_parser() {
    let text = "name: t\nistio: { version: 1.30 }\nsteps:\n  - port-forward: { service: s, port: 9080 }\n  - wait: { condition: { api-version: v1, kind: Node, name: n, type: Ready, status: True } }\n";
    let file = harness::scenario::parse_str(Path::new("t.yaml"), text.to_string()).unwrap();
    assert_eq!(
        file.scenario.istio.unwrap().version.as_deref(),
        Some("1.30")
    );
    let schema = harness::scenario::schema::root();
    let validator = jsonschema::draft7::new(&schema).unwrap();
    let value: Value = serde_saphyr::from_str(text).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&value)
        .map(|e| e.to_string())
        .collect();
    assert_eq!(errors, Vec::<String>::new());
    let shaped: Value =
        serde_saphyr::from_str(&text.replace("name: t\n", "name: t\ntimeout: 30\n")).unwrap();
    assert!(!validator.is_valid(&shaped), "a duration without a unit");
}
