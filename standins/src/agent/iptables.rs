//! STAND-IN for Istio's `istio-iptables` (run as `pilot-agent istio-iptables ...` by the
//! injected `istio-init` container). Reimplements, for REDIRECT mode and IPv4, the rules of
//! `tools/istio-iptables/pkg/capture/run.go` (`IptablesConfigurator.Run`) with the flag names
//! of `tools/istio-iptables/pkg/cmd/root.go` and `.../pkg/constants/constants.go`, renders them
//! as the `iptables-restore` input Istio logs (`* nat`, `-N` for each Istio chain in order of
//! first use, the rules in order, `COMMIT`), prints it and applies it with
//! `iptables-restore --noflush` (stdin, no shell).
//!
//! Two rule flavors, chosen like the real image does by its `ISTIO_META_ISTIO_VERSION`
//! environment variable (Istio's proxyv2 Dockerfile sets it):
//! - [`Flavor::Istio112`] (versions before 1.13): as Istio 1.12.1's istio-init logs them:
//!   SSH's port 22 excluded, `-A OUTPUT -p tcp -j ISTIO_OUTPUT`, owner rules without the
//!   tunnel-port match;
//! - [`Flavor::Current`] (anything else, or unset): as the golden files of today's
//!   `tools/istio-iptables/pkg/capture/testdata/*.golden`.
//!
//! Not supported (rejected with an error, they change the rules): TPROXY, DNS capture, drop
//! invalid, trace logging, dual stack, native nftables, CNI mode; the environment variables
//! that would turn DNS capture or invalid-drop on (`ISTIO_META_DNS_CAPTURE`, `INVALID_DROP`) are
//! ignored with a warning. IPv6 CIDRs are ignored and no `ip6tables-restore` is run (the lab is
//! IPv4 only).

use std::io::Write;
use std::process::{Command, Stdio};

use super::flags::{self, FlagSpec, Parsed};

/// Envoy's uid and gid in Istio's images (`constants.DefaultProxyUID`).
pub const DEFAULT_PROXY_UID: &str = "1337";
/// The tunnel port Istio always excludes (`--inbound-tunnel-port` default).
pub const DEFAULT_TUNNEL_PORT: &str = "15008";
/// `HostIPv4LoopbackCidr`'s default.
const LOOPBACK_CIDR: &str = "127.0.0.1/32";

/// Istio's chains.
const INBOUND: &str = "ISTIO_INBOUND";
const IN_REDIRECT: &str = "ISTIO_IN_REDIRECT";
const OUTPUT: &str = "ISTIO_OUTPUT";
const REDIRECT: &str = "ISTIO_REDIRECT";

/// Flags `istio-iptables` accepts (1.12.1 and 1.30.3 together). Values of flags not read by
/// [`CaptureConfig::from_parsed`] do not change the rules and are accepted and ignored.
pub const FLAGS: &[FlagSpec] = &[
    FlagSpec::value("envoy-port", Some('p')),
    FlagSpec::value("inbound-capture-port", Some('z')),
    FlagSpec::value("inbound-tunnel-port", Some('e')),
    FlagSpec::value("proxy-uid", Some('u')),
    FlagSpec::value("proxy-gid", Some('g')),
    FlagSpec::value("istio-inbound-interception-mode", Some('m')),
    FlagSpec::value("istio-inbound-ports", Some('b')),
    FlagSpec::value("istio-local-exclude-ports", Some('d')),
    FlagSpec::value("istio-exclude-interfaces", Some('c')),
    FlagSpec::value("istio-service-cidr", Some('i')),
    FlagSpec::value("istio-service-exclude-cidr", Some('x')),
    FlagSpec::value("istio-outbound-ports", Some('q')),
    FlagSpec::value("istio-local-outbound-ports-exclude", Some('o')),
    FlagSpec::value("kube-virt-interfaces", Some('k')),
    FlagSpec::value("reroute-virtual-interfaces", None),
    FlagSpec::value("istio-inbound-tproxy-mark", Some('t')),
    FlagSpec::value("istio-inbound-tproxy-route-table", Some('r')),
    FlagSpec::value("iptables-probe-port", None),
    FlagSpec::value("probe-timeout", None),
    FlagSpec::value("network-namespace", None),
    FlagSpec::value("log_output_level", None),
    FlagSpec::value("log_target", None),
    FlagSpec::value("log_caller", None),
    FlagSpec::value("log_stacktrace_level", None),
    FlagSpec::boolean("log_as_json", None),
    FlagSpec::boolean("dry-run", Some('n')),
    FlagSpec::boolean("restore-format", Some('f')),
    FlagSpec::boolean("skip-rule-apply", None),
    FlagSpec::boolean("run-validation", None),
    FlagSpec::boolean("reconcile", None),
    FlagSpec::boolean("force-apply", None),
    FlagSpec::boolean("capture-all-dns", None),
    FlagSpec::boolean("redirect-dns", None),
    FlagSpec::boolean("drop-invalid", None),
    FlagSpec::boolean("iptables-trace-logging", None),
    FlagSpec::boolean("dual-stack", None),
    FlagSpec::boolean("native-nftables", None),
    FlagSpec::boolean("cleanup-only", None),
    FlagSpec::boolean("cni-mode", None),
    FlagSpec::boolean("host-nsenter-exec", None),
];

/// Boolean flags whose rules this stand-in does not produce: given true, they are an error.
const UNSUPPORTED_BOOLS: &[&str] = &[
    "redirect-dns",
    "drop-invalid",
    "iptables-trace-logging",
    "dual-stack",
    "native-nftables",
    "cleanup-only",
    "cni-mode",
    "host-nsenter-exec",
];

/// What went wrong setting up interception.
#[derive(Debug, thiserror::Error)]
pub enum IptablesError {
    /// The command line could not be read.
    #[error("istio-iptables: {0}")]
    Flags(#[from] flags::FlagError),
    /// A flag asks for something this stand-in does not implement.
    #[error(
        "istio-iptables stand-in: {0} is not supported (only REDIRECT interception over IPv4 is; \
         remove the flag or the annotation that adds it)"
    )]
    Unsupported(String),
    /// A flag value is invalid.
    #[error("istio-iptables: invalid value {value:?} for {flag}: {why}")]
    Invalid {
        /// The flag.
        flag: &'static str,
        /// The value given.
        value: String,
        /// Why it is refused.
        why: &'static str,
    },
    /// `iptables-restore` could not be run.
    #[error(
        "istio-iptables: could not run iptables-restore --noflush: {0} (is iptables installed in the image?)"
    )]
    Spawn(#[source] std::io::Error),
    /// `iptables-restore` refused the rules.
    #[error("istio-iptables: iptables-restore --noflush failed ({status}): {stderr}")]
    Restore {
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it printed on stderr.
        stderr: String,
    },
}

/// Which Istio release's rule set to reproduce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// Istio before 1.13 (verified against 1.12.1's istio-init log).
    Istio112,
    /// Today's `istio-iptables` (its golden files), used for 1.30.3.
    Current,
}

impl Flavor {
    /// The flavor for an Istio version string like `1.12.1`; unknown or absent → `Current`.
    pub fn for_version(version: Option<&str>) -> Self {
        let minor = version
            .and_then(|v| v.trim_start_matches('v').strip_prefix("1."))
            .and_then(|rest| rest.split('.').next())
            .and_then(|m| m.parse::<u32>().ok());
        match minor {
            Some(m) if m < 13 => Flavor::Istio112,
            _ => Flavor::Current,
        }
    }
}

/// The interception wanted, from Istio's flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureConfig {
    /// Outbound capture port (`-p`, 15001).
    pub proxy_port: String,
    /// Inbound capture port (`-z`, 15006).
    pub inbound_capture_port: String,
    /// Tunnel port never captured (`-e`, 15008).
    pub tunnel_port: String,
    /// Uids whose traffic is not captured (`-u`, comma separated in Istio).
    pub proxy_uids: Vec<String>,
    /// Gids whose traffic is not captured (`-g`, defaults to the uids).
    pub proxy_gids: Vec<String>,
    /// Inbound ports captured (`-b`): `*`, a list, or empty for none.
    pub inbound_ports_include: String,
    /// Inbound ports not captured when `-b` is `*` (`-d`).
    pub inbound_ports_exclude: Vec<String>,
    /// Outbound IPv4 ranges captured (`-i`): `*` or CIDRs.
    pub outbound_ranges_include: String,
    /// Outbound IPv4 ranges not captured (`-x`).
    pub outbound_ranges_exclude: Vec<String>,
    /// Outbound ports always captured (`-q`).
    pub outbound_ports_include: Vec<String>,
    /// Outbound ports never captured (`-o`).
    pub outbound_ports_exclude: Vec<String>,
    /// Interfaces whose inbound traffic is treated as outbound (`-k`).
    pub reroute_interfaces: Vec<String>,
    /// Interfaces never captured (`-c`).
    pub exclude_interfaces: Vec<String>,
    /// Print only (`-n`).
    pub dry_run: bool,
    /// Do not apply (`--skip-rule-apply`, with Istio CNI).
    pub skip_apply: bool,
    /// Which release's rules.
    pub flavor: Flavor,
}

/// Splits Istio's comma-separated lists, dropping empty items (`config.Split`).
fn split(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(String::from)
        .collect()
}

impl CaptureConfig {
    /// Reads Istio's `istio-iptables` flags.
    pub fn from_args(args: &[String], flavor: Flavor) -> Result<Self, IptablesError> {
        Self::from_parsed(&flags::parse(FLAGS, args)?, flavor)
    }

    /// Builds the config from parsed flags, refusing what this stand-in cannot do.
    pub fn from_parsed(p: &Parsed, flavor: Flavor) -> Result<Self, IptablesError> {
        check_supported(p)?;
        let get = |name: &str, default: &str| p.get(name).unwrap_or(default).to_string();
        let uids = split(&get("proxy-uid", DEFAULT_PROXY_UID));
        let gids = p
            .get("proxy-gid")
            .map(split)
            .filter(|g| !g.is_empty())
            .unwrap_or_else(|| uids.clone());
        let exclude = split(&get("istio-service-exclude-cidr", ""));
        if exclude.iter().any(|c| c == "*") {
            return Err(invalid(
                "-x",
                "*",
                "OUTBOUND_IP_RANGES_EXCLUDE cannot be a wildcard",
            ));
        }
        let reroute = p
            .get("reroute-virtual-interfaces")
            .or(p.get("kube-virt-interfaces"))
            .unwrap_or("");
        Ok(Self {
            proxy_port: get("envoy-port", "15001"),
            inbound_capture_port: get("inbound-capture-port", "15006"),
            tunnel_port: get("inbound-tunnel-port", DEFAULT_TUNNEL_PORT),
            proxy_uids: uids,
            proxy_gids: gids,
            inbound_ports_include: get("istio-inbound-ports", ""),
            inbound_ports_exclude: split(&get("istio-local-exclude-ports", "")),
            outbound_ranges_include: get("istio-service-cidr", ""),
            outbound_ranges_exclude: v4_only(exclude),
            outbound_ports_include: split(&get("istio-outbound-ports", "")),
            outbound_ports_exclude: split(&get("istio-local-outbound-ports-exclude", "")),
            reroute_interfaces: split(reroute),
            exclude_interfaces: split(&get("istio-exclude-interfaces", "")),
            dry_run: p.is_set("dry-run"),
            skip_apply: p.is_set("skip-rule-apply"),
            flavor,
        })
    }
}

fn invalid(flag: &'static str, value: &str, why: &'static str) -> IptablesError {
    IptablesError::Invalid {
        flag,
        value: value.to_string(),
        why,
    }
}

fn check_supported(p: &Parsed) -> Result<(), IptablesError> {
    if let Some(flag) = UNSUPPORTED_BOOLS.iter().find(|f| p.is_set(f)) {
        return Err(IptablesError::Unsupported(format!("--{flag}")));
    }
    if p.get("network-namespace").is_some_and(|ns| !ns.is_empty()) {
        return Err(IptablesError::Unsupported("--network-namespace".into()));
    }
    match p
        .get("istio-inbound-interception-mode")
        .unwrap_or("REDIRECT")
    {
        "REDIRECT" | "" => Ok(()),
        other => Err(IptablesError::Unsupported(format!(
            "interception mode {other:?} (-m)"
        ))),
    }
}

/// Keeps the IPv4 CIDRs of a list (IPv6 ones would go to ip6tables, which this stand-in skips).
fn v4_only(cidrs: Vec<String>) -> Vec<String> {
    cidrs.into_iter().filter(|c| !c.contains(':')).collect()
}

/// One rule of the nat table.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    chain: &'static str,
    insert_first: bool,
    args: String,
}

/// The nat table rules, in the order Istio's builder emits them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct NatRules {
    rules: Vec<Rule>,
}

impl NatRules {
    fn append(&mut self, chain: &'static str, args: impl Into<String>) {
        self.rules.push(Rule {
            chain,
            insert_first: false,
            args: args.into(),
        });
    }

    fn insert_first(&mut self, chain: &'static str, args: impl Into<String>) {
        self.rules.push(Rule {
            chain,
            insert_first: true,
            args: args.into(),
        });
    }

    /// The `iptables-restore` input: `* nat`, `-N` for Istio's chains in order of first use,
    /// the rules, `COMMIT`, each line ending in a newline.
    pub fn restore_input(&self) -> String {
        let mut out = String::from("* nat\n");
        let mut created: Vec<&str> = Vec::new();
        for rule in &self.rules {
            if rule.chain.starts_with("ISTIO_") && !created.contains(&rule.chain) {
                created.push(rule.chain);
                out.push_str(&format!("-N {}\n", rule.chain));
            }
        }
        for rule in &self.rules {
            let op = if rule.insert_first { "-I" } else { "-A" };
            let pos = if rule.insert_first { " 1" } else { "" };
            out.push_str(&format!("{op} {}{pos} {}\n", rule.chain, rule.args));
        }
        out.push_str("COMMIT\n");
        out
    }
}

/// The rules Istio's capture would produce for `cfg` (`IptablesConfigurator.Run`, nat table).
pub fn build_rules(cfg: &CaptureConfig) -> NatRules {
    let mut r = NatRules::default();
    for nic in &cfg.exclude_interfaces {
        r.append("PREROUTING", format!("-i {nic} -j RETURN"));
        r.append("OUTPUT", format!("-o {nic} -j RETURN"));
    }
    for nic in &cfg.reroute_interfaces {
        r.insert_first("PREROUTING", format!("-i {nic} -j RETURN"));
    }
    r.append(
        INBOUND,
        format!("-p tcp --dport {} -j RETURN", cfg.tunnel_port),
    );
    r.append(
        REDIRECT,
        format!("-p tcp -j REDIRECT --to-ports {}", cfg.proxy_port),
    );
    r.append(
        IN_REDIRECT,
        format!("-p tcp -j REDIRECT --to-ports {}", cfg.inbound_capture_port),
    );
    inbound_rules(cfg, &mut r);
    let output_jump = match cfg.flavor {
        Flavor::Istio112 => format!("-p tcp -j {OUTPUT}"),
        Flavor::Current => format!("-j {OUTPUT}"),
    };
    r.append("OUTPUT", output_jump);
    for port in &cfg.outbound_ports_exclude {
        r.append(OUTPUT, format!("-p tcp --dport {port} -j RETURN"));
        if cfg.flavor == Flavor::Current {
            r.append(OUTPUT, format!("-p udp --dport {port} -j RETURN"));
        }
    }
    r.append(OUTPUT, "-o lo -s 127.0.0.6/32 -j RETURN");
    owner_rules(cfg, &mut r);
    outbound_rules(cfg, &mut r);
    r
}

/// `handleInboundPortsInclude` for REDIRECT mode.
fn inbound_rules(cfg: &CaptureConfig, r: &mut NatRules) {
    if cfg.inbound_ports_include.is_empty() {
        return;
    }
    r.append("PREROUTING", format!("-p tcp -j {INBOUND}"));
    if cfg.inbound_ports_include == "*" {
        if cfg.flavor == Flavor::Istio112 {
            r.append(INBOUND, "-p tcp --dport 22 -j RETURN");
        }
        for port in &cfg.inbound_ports_exclude {
            r.append(INBOUND, format!("-p tcp --dport {port} -j RETURN"));
        }
        r.append(INBOUND, format!("-p tcp -j {IN_REDIRECT}"));
        return;
    }
    for port in split(&cfg.inbound_ports_include) {
        r.append(INBOUND, format!("-p tcp --dport {port} -j {IN_REDIRECT}"));
    }
}

/// The per-uid and per-gid rules: Envoy's own traffic is not captured, except its calls back
/// to this pod through a service VIP, which go to the inbound listener.
fn owner_rules(cfg: &CaptureConfig, r: &mut NatRules) {
    let loopback_included = split(&cfg.outbound_ranges_include)
        .iter()
        .any(|c| c.starts_with("127."));
    let tunnel = match cfg.flavor {
        Flavor::Istio112 => String::new(),
        Flavor::Current => format!(" -p tcp ! --dport {}", cfg.tunnel_port),
    };
    let owners = cfg
        .proxy_uids
        .iter()
        .map(|u| ("uid", u))
        .chain(cfg.proxy_gids.iter().map(|g| ("gid", g)));
    for (kind, id) in owners {
        r.append(
            OUTPUT,
            format!(
                "-o lo ! -d {LOOPBACK_CIDR}{tunnel} -m owner --{kind}-owner {id} -j {IN_REDIRECT}"
            ),
        );
        if !loopback_included {
            r.append(
                OUTPUT,
                format!("-o lo -m owner ! --{kind}-owner {id} -j RETURN"),
            );
        }
        r.append(OUTPUT, format!("-m owner --{kind}-owner {id} -j RETURN"));
    }
}

/// Loopback return, outbound exclusions, then inclusions (`handleOutboundIncludeRules`).
fn outbound_rules(cfg: &CaptureConfig, r: &mut NatRules) {
    r.append(OUTPUT, format!("-d {LOOPBACK_CIDR} -j RETURN"));
    for cidr in &cfg.outbound_ranges_exclude {
        r.append(OUTPUT, format!("-d {cidr} -j RETURN"));
    }
    for port in &cfg.outbound_ports_include {
        r.append(OUTPUT, format!("-p tcp --dport {port} -j {REDIRECT}"));
    }
    if cfg.outbound_ranges_include == "*" {
        r.append(OUTPUT, format!("-j {REDIRECT}"));
        for nic in &cfg.reroute_interfaces {
            r.insert_first("PREROUTING", format!("-i {nic} -j {REDIRECT}"));
        }
        return;
    }
    for cidr in v4_only(split(&cfg.outbound_ranges_include)) {
        for nic in &cfg.reroute_interfaces {
            r.insert_first("PREROUTING", format!("-i {nic} -d {cidr} -j {REDIRECT}"));
        }
        r.append(OUTPUT, format!("-d {cidr} -j {REDIRECT}"));
    }
}

/// `pilot-agent istio-iptables ARGS`: prints the rules and applies them unless told not to.
pub fn run(args: &[String]) -> Result<(), IptablesError> {
    let version = std::env::var("ISTIO_META_ISTIO_VERSION").ok();
    let cfg = CaptureConfig::from_args(args, Flavor::for_version(version.as_deref()))?;
    for env in ["ISTIO_META_DNS_CAPTURE", "INVALID_DROP"] {
        if std::env::var(env).is_ok_and(|v| v == "true") {
            eprintln!(
                "istio-iptables STAND-IN: {env}=true is ignored (its rules are not implemented)"
            );
        }
    }
    let input = build_rules(&cfg).restore_input();
    eprintln!(
        "istio-iptables STAND-IN: {:?} rules (ISTIO_META_ISTIO_VERSION={})",
        cfg.flavor,
        version.as_deref().unwrap_or("unset")
    );
    print!("{input}");
    if cfg.dry_run || cfg.skip_apply {
        eprintln!("istio-iptables STAND-IN: not applied (dry run or --skip-rule-apply)");
        return Ok(());
    }
    restore(&input)?;
    eprintln!("istio-iptables STAND-IN: applied with iptables-restore --noflush");
    Ok(())
}

/// Feeds `input` to `iptables-restore --noflush` on stdin.
pub fn restore(input: &str) -> Result<(), IptablesError> {
    let mut child = Command::new("iptables-restore")
        .arg("--noflush")
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(IptablesError::Spawn)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .map_err(IptablesError::Spawn)?;
    }
    let out = child.wait_with_output().map_err(IptablesError::Spawn)?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err(IptablesError::Restore {
            status: out.status,
            stderr,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
