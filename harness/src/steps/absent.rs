//! `absent`: no object of a kind (or none holding `match:`) exists, e.g. after a delete, or for
//! a resource that must never appear; watched until so or the step times out. The same target
//! fields as `assert` (`steps::assert`), without `count`.
//!
//! ```yaml
//! - name: the canary's control plane is gone
//!   absent:
//!     api-version: apps/v1
//!     kind: Deployment
//!     namespace: istio-system
//!     selector: app=istiod,istio.io/rev=canary
//! ```

use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::assert::{Goal, Target, TargetSpec};
use crate::Outputs;
use crate::context::Context;
use crate::error::StepError;

/// Spec of an `absent` step: a [`Target`] none of whose objects may exist (or match).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "TargetSpec", into = "TargetSpec")]
pub struct AbsentSpec {
    /// Which objects, and (with `match`) which of them must not exist.
    pub target: Target,
}

impl schemars::JsonSchema for AbsentSpec {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "AbsentSpec".into()
    }

    /// The target fields as `assert` has them, without `count`.
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let fields = <TargetSpec as schemars::JsonSchema>::json_schema(generator);
        crate::scenario::schema::without(fields, &["count"])
    }
}

impl TryFrom<TargetSpec> for AbsentSpec {
    type Error = super::SpecError;
    fn try_from(raw: TargetSpec) -> Result<Self, super::SpecError> {
        match raw.target("absent")? {
            (target, None) => Ok(AbsentSpec { target }),
            (_, Some(_)) => Err(super::SpecError::new(
                "absent",
                "`absent` takes no `count` (it passes when none is there); use `assert` with `count`",
            )),
        }
    }
}

impl From<AbsentSpec> for TargetSpec {
    fn from(s: AbsentSpec) -> Self {
        TargetSpec::from_target(s.target, None)
    }
}

impl super::Kind for AbsentSpec {
    fn default_timeout(&self) -> std::time::Duration {
        super::secs(60)
    }
    fn summary(&self) -> String {
        super::assert::target_summary(&self.target)
    }
    fn problems(&self) -> Vec<String> {
        super::assert::target_problems(&self.target)
    }
    async fn run(&self, ctx: &mut Context, deadline: Instant) -> Result<Outputs, StepError> {
        super::assert::watch(&self.target, Goal::Absent, ctx, deadline).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::steps::assert::Select;

    #[test]
    fn same_target_fields_without_count() {
        let s: AbsentSpec =
            serde_saphyr::from_str("{api-version: v1, kind: ConfigMap, name: gone}").unwrap();
        assert_eq!(s.target.select, Select::Name("gone".into()));
        let e = serde_saphyr::from_str::<AbsentSpec>(
            "{api-version: v1, kind: ConfigMap, selector: a=b, count: 1}",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("`absent` takes no `count`"), "{e}");
    }
}

crate::scenario::resolve::resolve_fields!(AbsentSpec { target });
