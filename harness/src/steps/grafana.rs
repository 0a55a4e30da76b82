//! `grafana`: the walkthrough's "look at each dashboard" for Grafana (health and dashboards), as API checks through a
//! `port-forward` step's URL (the `istioctl dashboard grafana` equivalent).

use serde::{Deserialize, Serialize};

/// Spec of a `grafana` step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct GrafanaSpec {
    /// Base URL, e.g. `${grafana.url}`.
    pub url: String,
    /// What to check.
    #[serde(default)]
    pub expect: crate::probes::grafana::GrafanaCheck,
}

super::dashboard_kind!(GrafanaSpec, crate::probes::grafana::check_until);

crate::scenario::resolve::resolve_fields!(GrafanaSpec { url, expect });
