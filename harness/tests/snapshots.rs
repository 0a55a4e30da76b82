//! Two runs that differ only in volatile values (pod hashes, IPs, ports, timings, counts of
//! requests) give the same snapshot; a behavior change does not.

use harness::results::{RunResult, Status, StepResult};
use serde_json::json;

fn run(pod: &str, ip: &str, port: u16, ms: u64, requests: u64, reviews: &str) -> RunResult {
    let mut outputs = harness::Outputs::new();
    outputs.insert("pod".into(), json!(pod));
    outputs.insert(
        "url".into(),
        json!(format!("http://{ip}:{port}/productpage")),
    );
    outputs.insert("port".into(), json!(port));
    outputs.insert("histogram".into(), json!({"200": requests}));
    outputs.insert("reviews".into(), json!({reviews: requests / 2}));
    RunResult {
        scenario: "lab-bookinfo".into(),
        file: "scenarios/lab-bookinfo.yaml".into(),
        run_id: format!("run-{ms}"),
        provider: "lab".into(),
        kubernetes: None,
        istio: None,
        status: Status::Passed,
        started: "2026-11-25T23:40:54Z".into(),
        duration_ms: ms,
        steps: vec![StepResult {
            index: 1,
            kind: "traffic".into(),
            name: "traffic through the gateway".into(),
            location: "scenarios/lab-bookinfo.yaml:80:5".into(),
            status: Status::Passed,
            duration_ms: ms,
            attempts: 2,
            outputs,
            error: None,
        }],
        teardown: vec![],
        artifacts: format!("target/istio-e2e/run-{ms}"),
        diagnostics: None,
        snapshots: Default::default(),
        params: Default::default(),
        timeout_scale: None,
    }
}

#[test]
fn runs_differing_only_in_redacted_fields_snapshot_the_same() {
    let a = harness::snapshot::run_view(&run(
        "ratings-v1-6b746f74dc-9stp2",
        "172.17.0.2",
        31380,
        1200,
        57,
        "v1",
    ));
    let b = harness::snapshot::run_view(&run(
        "ratings-v1-7c8d9e0f1a-x2k4m",
        "172.17.0.3",
        30412,
        4800,
        83,
        "v1",
    ));
    assert_eq!(a, b);
    let text = serde_json::to_string(&a).unwrap();
    assert!(
        text.contains("ratings-v1-[hash]") && text.contains("[ip]:[port]"),
        "{text}"
    );
    // Which reviews version answered is behavior, and shows up.
    let c = harness::snapshot::run_view(&run(
        "ratings-v1-6b746f74dc-9stp2",
        "172.17.0.2",
        31380,
        1200,
        57,
        "v3",
    ));
    assert_ne!(a, c);
}

#[test]
fn the_normalized_view_is_what_insta_records() {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(concat!(env!("CARGO_MANIFEST_DIR"), "/../snapshots"));
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| {
        insta::assert_yaml_snapshot!(
            "normalized-run-view",
            harness::snapshot::run_view(&run(
                "ratings-v1-6b746f74dc-9stp2",
                "172.17.0.2",
                31380,
                1200,
                57,
                "v1"
            ))
        );
    });
}
