//! `jaeger`: the walkthrough's "look at each dashboard" for Jaeger (services and traces), as API checks through a
//! `port-forward` step's URL (the `istioctl dashboard jaeger` equivalent).

use serde::{Deserialize, Serialize};

/// Spec of a `jaeger` step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct JaegerSpec {
    /// Base URL, e.g. `${tracing.url}`.
    pub url: String,
    /// What to check.
    #[serde(default)]
    pub expect: crate::probes::jaeger::JaegerCheck,
}

super::dashboard_kind!(JaegerSpec, crate::probes::jaeger::check_until);

crate::scenario::resolve::resolve_fields!(JaegerSpec { url, expect });
