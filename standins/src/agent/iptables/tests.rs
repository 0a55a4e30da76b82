//! The stand-in's rules against Istio's own expected output. Fixtures are written here from:
//! - `istio/istio` `tools/istio-iptables/pkg/capture/testdata/inbound-ports-wildcard.golden`
//!   and `kube-virt-interfaces.golden` (commit 461f85ba4afe2d21406d53a1e122cbb2558b0fc2), run
//!   by `run_test.go` with `constructTestConfig()` (ports 15001/15006/15008, uid=gid=1337);
//!   the golden files also hold the `iptables-save` calls the stub records, which are not rules;
//! - an Istio 1.12.1 `istio-init` container's log (public notes of a user running
//!   `istio-1.12.1`, found through code search), for the 1.12 injection template's arguments.

use super::*;

fn args(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// The argument vector both injection templates give `pilot-agent` in `istio-init` with the
/// default values (1.30.3 adds `--log_output_level=default:info`).
const INJECTED: &[&str] = crate::istiod::inject::ISTIO_INIT_ARGS;

const ISTIO_1_12_1_INIT_LOG: &str = "\
* nat
-N ISTIO_INBOUND
-N ISTIO_REDIRECT
-N ISTIO_IN_REDIRECT
-N ISTIO_OUTPUT
-A ISTIO_INBOUND -p tcp --dport 15008 -j RETURN
-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001
-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006
-A PREROUTING -p tcp -j ISTIO_INBOUND
-A ISTIO_INBOUND -p tcp --dport 22 -j RETURN
-A ISTIO_INBOUND -p tcp --dport 15090 -j RETURN
-A ISTIO_INBOUND -p tcp --dport 15021 -j RETURN
-A ISTIO_INBOUND -p tcp --dport 15020 -j RETURN
-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT
-A OUTPUT -p tcp -j ISTIO_OUTPUT
-A ISTIO_OUTPUT -o lo -s 127.0.0.6/32 -j RETURN
-A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -m owner --uid-owner 1337 -j ISTIO_IN_REDIRECT
-A ISTIO_OUTPUT -o lo -m owner ! --uid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -m owner --gid-owner 1337 -j ISTIO_IN_REDIRECT
-A ISTIO_OUTPUT -o lo -m owner ! --gid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -m owner --gid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN
-A ISTIO_OUTPUT -j ISTIO_REDIRECT
COMMIT
";

const GOLDEN_INBOUND_PORTS_WILDCARD: &str = "\
* nat
-N ISTIO_INBOUND
-N ISTIO_REDIRECT
-N ISTIO_IN_REDIRECT
-N ISTIO_OUTPUT
-A ISTIO_INBOUND -p tcp --dport 15008 -j RETURN
-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001
-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006
-A PREROUTING -p tcp -j ISTIO_INBOUND
-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT
-A OUTPUT -j ISTIO_OUTPUT
-A ISTIO_OUTPUT -o lo -s 127.0.0.6/32 -j RETURN
-A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp ! --dport 15008 -m owner --uid-owner 1337 -j ISTIO_IN_REDIRECT
-A ISTIO_OUTPUT -o lo -m owner ! --uid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp ! --dport 15008 -m owner --gid-owner 1337 -j ISTIO_IN_REDIRECT
-A ISTIO_OUTPUT -o lo -m owner ! --gid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -m owner --gid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN
COMMIT
";

const GOLDEN_KUBE_VIRT_INTERFACES: &str = "\
* nat
-N ISTIO_INBOUND
-N ISTIO_REDIRECT
-N ISTIO_IN_REDIRECT
-N ISTIO_OUTPUT
-I PREROUTING 1 -i eth1 -j RETURN
-I PREROUTING 1 -i eth2 -j RETURN
-A ISTIO_INBOUND -p tcp --dport 15008 -j RETURN
-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001
-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006
-A OUTPUT -j ISTIO_OUTPUT
-A ISTIO_OUTPUT -o lo -s 127.0.0.6/32 -j RETURN
-A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp ! --dport 15008 -m owner --uid-owner 1337 -j ISTIO_IN_REDIRECT
-A ISTIO_OUTPUT -o lo -m owner ! --uid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp ! --dport 15008 -m owner --gid-owner 1337 -j ISTIO_IN_REDIRECT
-A ISTIO_OUTPUT -o lo -m owner ! --gid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -m owner --gid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN
-A ISTIO_OUTPUT -j ISTIO_REDIRECT
-I PREROUTING 1 -i eth1 -j ISTIO_REDIRECT
-I PREROUTING 1 -i eth2 -j ISTIO_REDIRECT
COMMIT
";

fn rules(argv: &[&str], flavor: Flavor) -> String {
    build_rules(&CaptureConfig::from_args(&args(argv), flavor).unwrap()).restore_input()
}

#[test]
fn istio_1_12_injection_gives_the_rules_istio_1_12_1_logs() {
    assert_eq!(rules(INJECTED, Flavor::Istio112), ISTIO_1_12_1_INIT_LOG);
}

#[test]
fn current_flavor_matches_istio_golden_files() {
    let wildcard = ["-p", "15001", "-z", "15006", "-u", "1337", "-b", "*"];
    assert_eq!(
        rules(&wildcard, Flavor::Current),
        GOLDEN_INBOUND_PORTS_WILDCARD
    );
    let virt = [
        "-p",
        "15001",
        "-z",
        "15006",
        "-u",
        "1337",
        "-k",
        "eth1,eth2",
        "-i",
        "*",
    ];
    assert_eq!(rules(&virt, Flavor::Current), GOLDEN_KUBE_VIRT_INTERFACES);
}

/// The 1.30.3 injection: the golden's rules plus the `-d` exclusions after the PREROUTING jump
/// and the wildcard `-i` jump last, exactly where `run.go` appends them.
#[test]
fn istio_1_30_injection_adds_exclusions_and_outbound_capture_to_the_golden_rules() {
    let mut argv = INJECTED.to_vec();
    argv.push("--log_output_level=default:info");
    let got = rules(&argv, Flavor::Current);
    let expected = GOLDEN_INBOUND_PORTS_WILDCARD
        .replace(
            "-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT\n",
            "-A ISTIO_INBOUND -p tcp --dport 15090 -j RETURN\n\
             -A ISTIO_INBOUND -p tcp --dport 15021 -j RETURN\n\
             -A ISTIO_INBOUND -p tcp --dport 15020 -j RETURN\n\
             -A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT\n",
        )
        .replace("COMMIT\n", "-A ISTIO_OUTPUT -j ISTIO_REDIRECT\nCOMMIT\n");
    assert_eq!(got, expected);
}

#[test]
fn flavor_follows_the_image_istio_version() {
    assert_eq!(Flavor::for_version(Some("1.12.1")), Flavor::Istio112);
    assert_eq!(Flavor::for_version(Some("1.30.3")), Flavor::Current);
    assert_eq!(Flavor::for_version(None), Flavor::Current);
    assert_eq!(Flavor::for_version(Some("garbage")), Flavor::Current);
}

#[test]
fn refuses_what_it_does_not_implement() {
    let tproxy = CaptureConfig::from_args(&args(&["-m", "TPROXY"]), Flavor::Current);
    assert!(matches!(tproxy, Err(IptablesError::Unsupported(m)) if m.contains("TPROXY")));
    let dns = CaptureConfig::from_args(&args(&["--redirect-dns"]), Flavor::Current);
    assert!(matches!(dns, Err(IptablesError::Unsupported(m)) if m.contains("redirect-dns")));
    let unknown = CaptureConfig::from_args(&args(&["--no-such-flag"]), Flavor::Current);
    assert!(matches!(unknown, Err(IptablesError::Flags(_))));
    let wildcard_exclude = CaptureConfig::from_args(&args(&["-x", "*"]), Flavor::Current);
    assert!(matches!(
        wildcard_exclude,
        Err(IptablesError::Invalid { .. })
    ));
}

#[test]
fn cni_flags_skip_the_apply() {
    let cfg = CaptureConfig::from_args(
        &args(&["--run-validation", "--skip-rule-apply"]),
        Flavor::Current,
    )
    .unwrap();
    assert!(cfg.skip_apply && !cfg.dry_run);
    let cfg = CaptureConfig::from_args(&args(&["-n"]), Flavor::Current).unwrap();
    assert!(cfg.dry_run);
}
