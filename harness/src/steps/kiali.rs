//! `kiali`: the walkthrough's "look at each dashboard" for Kiali (namespaces and the versioned-app graph), as API checks through a
//! `port-forward` step's URL (the `istioctl dashboard kiali` equivalent).

use serde::{Deserialize, Serialize};

/// Spec of a `kiali` step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct KialiSpec {
    /// Base URL, e.g. `${kiali.url}`.
    pub url: String,
    /// What to check.
    #[serde(default)]
    pub expect: crate::probes::kiali::KialiCheck,
}

super::dashboard_kind!(KialiSpec, crate::probes::kiali::check_until);

crate::scenario::resolve::resolve_fields!(KialiSpec { url, expect });
