//! Every broken scenario under fixtures/scenarios/invalid/ is refused before anything runs,
//! with `path:line:col: message` naming the line; the messages are snapshotted.

#[path = "support/release.rs"]
mod release;

use std::path::{Path, PathBuf};

use harness::scenario::{self, validate::ValidateOptions};
use rstest::rstest;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn diagnostics(rel: &str) -> Vec<String> {
    // Paths in messages stay relative, as a user types them; files resolve from the root.
    std::env::set_current_dir(root()).unwrap();
    let path = Path::new(rel);
    match scenario::load(path) {
        Err(d) => vec![d.to_string()],
        Ok(f) => scenario::validate(&f, &ValidateOptions::default())
            .iter()
            .map(|d| d.to_string())
            .collect(),
    }
}

#[rstest]
fn every_invalid_file_is_refused_with_its_line(
    #[files("../fixtures/scenarios/invalid/*.yaml")] path: PathBuf,
) {
    let name = path.file_stem().unwrap().to_string_lossy().into_owned();
    let rel = format!("fixtures/scenarios/invalid/{name}.yaml");
    let diags = diagnostics(&rel);
    assert!(!diags.is_empty(), "{rel} was accepted");
    let located = regex::Regex::new(&format!(r"^{}:\d+:\d+: ", regex::escape(&rel))).unwrap();
    for d in &diags {
        assert!(located.is_match(d), "no file:line:col in {d:?}");
    }
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(root().join("snapshots"));
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    settings.bind(|| insta::assert_snapshot!(format!("invalid__{name}"), diags.join("\n")));
}

#[rstest]
#[case("scenarios/bookinfo-demo.yaml")]
#[case("scenarios/lab-bookinfo.yaml")]
#[case("scenarios/lab-rollout.yaml")]
#[case("scenarios/upgrade.yaml")]
fn shipped_scenarios_validate(#[case] rel: &str) {
    assert_eq!(diagnostics(rel), Vec::<String>::new());
}

#[test]
fn bookinfo_demo_validates_against_a_1_12_1_release() {
    std::env::set_current_dir(root()).unwrap();
    let f = scenario::load(Path::new("scenarios/bookinfo-demo.yaml")).unwrap();
    let test = "bookinfo_demo_validates_against_a_1_12_1_release";
    let Some(release) = release::istio_release_blocking("1.12.1", test) else {
        return;
    };
    let opts = ValidateOptions {
        istio_dir: Some(release),
        provider: None,
        ..Default::default()
    };
    assert_eq!(scenario::validate(&f, &opts), vec![]);
    // And a release directory without Bookinfo is caught, naming the file.
    let opts = ValidateOptions {
        istio_dir: Some(PathBuf::from("/nonexistent-istio")),
        provider: None,
        ..Default::default()
    };
    let d = scenario::validate(&f, &opts);
    assert!(
        d.iter().any(|d| d
            .message
            .contains("missing file ${istio.dir}/samples/bookinfo/platform/kube/bookinfo.yaml")),
        "{d:?}"
    );
}

/// Every key a capturing step records may be referenced: one list per step kind serves both
/// the step and validation (`${pf.target-port}` and `${page.attempts}` were refused before).
#[test]
fn recorded_capture_keys_are_accepted() {
    let text = "name: caps\ncluster: { provider: lab }\nsteps:\n  - port-forward: { service: productpage, port: http, capture: pf }\n  - http: { url: \"${pf.url}/\", capture: page }\n  - http: { url: \"http://x/${pf.target-port}/${pf.pod}/${page.attempts}\" }\n";
    let f = scenario::parse_str(Path::new("caps.yaml"), text.into()).unwrap();
    let d = scenario::validate(&f, &ValidateOptions::default());
    assert!(d.is_empty(), "{d:?}");
}
