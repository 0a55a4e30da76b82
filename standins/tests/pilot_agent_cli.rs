//! The pilot-agent STAND-IN's binary as the injected containers call it: `istio-iptables`
//! through the symlink Istio 1.12's image has, the rule flavor chosen by the image's
//! `ISTIO_META_ISTIO_VERSION`, and clear failures for what it does not understand.

use std::process::{Command, Output};

const AGENT: &str = env!("CARGO_BIN_EXE_pilot-agent");

/// `istio-init`'s arguments in both templates with default values, plus `-n` (dry run).
/// The injected istio-init arguments, and `-n` (dry run: print the rules, apply none).
fn init_args() -> Vec<&'static str> {
    let mut args = standins::istiod::inject::ISTIO_INIT_ARGS.to_vec();
    args.push("-n");
    args
}

fn run(program: &std::path::Path, args: &[&str], version: &str) -> Output {
    Command::new(program)
        .args(args)
        .env("ISTIO_META_ISTIO_VERSION", version)
        .output()
        .unwrap()
}

#[test]
fn istio_iptables_symlink_and_subcommand_print_the_release_rules() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("istio-iptables");
    std::os::unix::fs::symlink(AGENT, &link).unwrap();
    let old = run(&link, &init_args(), "1.12.1");
    assert!(
        old.status.success(),
        "{}",
        String::from_utf8_lossy(&old.stderr)
    );
    let old = String::from_utf8(old.stdout).unwrap();
    assert!(
        old.contains("-A ISTIO_INBOUND -p tcp --dport 22 -j RETURN\n"),
        "{old}"
    );
    assert!(old.contains("-A OUTPUT -p tcp -j ISTIO_OUTPUT\n"), "{old}");

    let mut args = vec!["istio-iptables"];
    args.extend_from_slice(&init_args());
    args.push("--log_output_level=default:info");
    let new = run(std::path::Path::new(AGENT), &args, "1.30.3");
    assert!(
        new.status.success(),
        "{}",
        String::from_utf8_lossy(&new.stderr)
    );
    let new = String::from_utf8(new.stdout).unwrap();
    assert!(!new.contains("--dport 22 "), "{new}");
    assert!(
        new.contains("-A OUTPUT -j ISTIO_OUTPUT\n")
            && new.ends_with("-A ISTIO_OUTPUT -j ISTIO_REDIRECT\nCOMMIT\n"),
        "{new}"
    );
}

#[test]
fn unknown_flags_and_commands_fail_with_a_message() {
    let out = run(
        std::path::Path::new(AGENT),
        &["istio-iptables", "--frobnicate"],
        "1.30.3",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown flag: --frobnicate"));
    let out = run(std::path::Path::new(AGENT), &["discovery"], "1.30.3");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown command \"discovery\""));
    let out = run(std::path::Path::new(AGENT), &["proxy", "sidecar"], "1.30.3");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("POD_NAMESPACE is not set"));
}

/// Both rule flavors are accepted by the real `iptables-restore` (each in a fresh network
/// namespace that disappears with the process). Needs root and `unshare`; else NOT RUN.
#[test]
fn both_flavors_apply_in_a_fresh_network_namespace() {
    // SAFETY: geteuid has no preconditions.
    let unshare_ok = Command::new("unshare")
        .args(["-n", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if unsafe { libc::geteuid() } != 0 || !unshare_ok {
        return eprintln!("NOT RUN: needs root and unshare -n");
    }
    let args: Vec<&str> = standins::istiod::inject::ISTIO_INIT_ARGS.to_vec();
    for version in ["1.12.1", "1.30.3"] {
        let out = Command::new("unshare")
            .args(["-n", "--", AGENT, "istio-iptables"])
            .args(&args)
            .env("ISTIO_META_ISTIO_VERSION", version)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{version}: {stderr}");
        assert!(
            stderr.contains("applied with iptables-restore --noflush"),
            "{version}: {stderr}"
        );
    }
}
