//! TCP forwarder (stand-in until the forwarder branch lands).
#![allow(missing_docs, dead_code)]
use std::net::SocketAddr;
use std::time::Duration;
pub struct ForwarderConfig {
    pub listen: SocketAddr,
    pub target: String,
    pub connect_timeout: Duration,
}
impl ForwarderConfig {
    pub fn new(listen: SocketAddr, target: impl Into<String>) -> Self {
        ForwarderConfig {
            listen,
            target: target.into(),
            connect_timeout: Duration::from_secs(5),
        }
    }
}
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ForwarderStats {
    pub accepted: u64,
    pub failed: u64,
    pub active: u64,
    pub bytes_to_upstream: u64,
    pub bytes_to_client: u64,
}
pub struct Forwarder {
    addr: SocketAddr,
}
impl Forwarder {
    pub async fn start(cfg: ForwarderConfig) -> std::io::Result<Forwarder> {
        Err(std::io::Error::other(format!(
            "not implemented yet ({})",
            cfg.listen
        )))
    }
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
    pub fn stats(&self) -> ForwarderStats {
        ForwarderStats::default()
    }
    pub async fn stop(self, _drain: Duration) -> ForwarderStats {
        ForwarderStats::default()
    }
}
