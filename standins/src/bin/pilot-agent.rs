//! STAND-IN for Istio's `pilot-agent` (`pilot/cmd/pilot-agent/main.go`), installed as
//! `/usr/local/bin/pilot-agent` in the stand-in proxyv2 image (and as `istio-iptables`, a
//! symlink). See [`standins::agent`].

fn main() {
    std::process::exit(standins::agent::main(std::env::args().collect()));
}
