//! What the root package's lab test targets share.

use libtest_mimic::{Completion, Failed, Trial};

/// A trial that needs the lab: reported as ignored with the reason when the lab cannot run
/// here, or failed when `ISTIO_E2E_REQUIRE=1` says nothing may be skipped.
pub fn lab_trial(name: &str, f: fn() -> Result<(), Failed>) -> Trial {
    Trial::ignorable_test(name, move || {
        use harness::cluster::Provider;
        let lab = harness::cluster::lab::Lab::default();
        if let Some(why) = harness::matrix::runnable_here("the lab", lab.check())? {
            return Ok(Completion::ignored_with(why));
        }
        f().map(|_| Completion::Completed)
    })
    .with_kind("lab")
}
