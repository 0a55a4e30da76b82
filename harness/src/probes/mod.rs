//! Probes (stand-in until the probes branch lands).
#![allow(missing_docs, dead_code, clippy::all)]
use crate::Outputs;
use crate::error::StepError;
use crate::expect::Expect;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;
pub fn client() -> reqwest::Client {
    crate::install_crypto_provider();
    reqwest::Client::new()
}
pub mod http {
    use super::*;
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
    pub struct HttpCheck {
        pub url: String,
        pub method: Option<String>,
        pub headers: BTreeMap<String, String>,
        pub host: Option<String>,
        pub expect: Expect,
    }
    pub struct HttpOutcome;
    impl HttpOutcome {
        pub fn to_outputs(&self) -> Outputs {
            Outputs::new()
        }
    }
    pub async fn check_until(
        _c: &reqwest::Client,
        _h: &HttpCheck,
        _d: Duration,
    ) -> Result<HttpOutcome, StepError> {
        Err(StepError::fatal("not implemented yet"))
    }
}
pub mod traffic {
    use super::*;
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
    pub struct TrafficSpec {
        pub url: String,
        pub requests: u32,
        pub concurrency: u32,
    }
    pub struct TrafficReport;
    impl TrafficReport {
        pub fn to_outputs(&self) -> Outputs {
            Outputs::new()
        }
    }
    pub async fn send(
        _c: &reqwest::Client,
        _h: &TrafficSpec,
        _d: Duration,
    ) -> Result<TrafficReport, StepError> {
        Err(StepError::fatal("not implemented yet"))
    }
}
pub mod prometheus {
    use super::*;
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
    pub struct PromQuery {
        pub query: String,
    }
    pub async fn query_until(
        _c: &reqwest::Client,
        _u: &str,
        _q: &PromQuery,
        _d: Duration,
    ) -> Result<Outputs, StepError> {
        Err(StepError::fatal("not implemented yet"))
    }
}
macro_rules! dash {
    ($m:ident, $t:ident) => {
        pub mod $m {
            use super::*;
            #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
            pub struct $t {}
            pub async fn check_until(
                _c: &reqwest::Client,
                _u: &str,
                _q: &$t,
                _d: Duration,
            ) -> Result<Outputs, StepError> {
                Err(StepError::fatal("not implemented yet"))
            }
        }
    };
}
dash!(grafana, GrafanaCheck);
dash!(kiali, KialiCheck);
dash!(jaeger, JaegerCheck);
