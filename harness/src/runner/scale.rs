//! `--timeout-scale` / `ISTIO_E2E_TIMEOUT_SCALE`: one factor for every step and scenario
//! timeout, for machines slower than the ones the scenario's timeouts were written on (a
//! loaded CI runner). Shown in the run's reports when it is not 1.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A positive factor for timeouts; 1 leaves them as written.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimeoutScale(f64);

impl Default for TimeoutScale {
    fn default() -> Self {
        TimeoutScale(1.0)
    }
}

/// Why a timeout scale was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error(
    "timeout scale {given:?}: {why} (give a number such as 2 or 1.5, at least 0.1 and at most 100)"
)]
pub struct BadTimeoutScale {
    given: String,
    why: &'static str,
}

impl FromStr for TimeoutScale {
    type Err = BadTimeoutScale;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why| BadTimeoutScale {
            given: s.to_string(),
            why,
        };
        let f: f64 = s.trim().parse().map_err(|_| bad("not a number"))?;
        if !(0.1..=100.0).contains(&f) {
            return Err(bad("out of range"));
        }
        Ok(TimeoutScale(f))
    }
}

impl fmt::Display for TimeoutScale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "x{}", self.0)
    }
}

impl TimeoutScale {
    /// The factor.
    pub fn factor(self) -> f64 {
        self.0
    }

    /// True when timeouts stay as written.
    pub fn is_one(self) -> bool {
        self.0 == 1.0
    }

    /// `d` scaled.
    pub fn apply(self, d: Duration) -> Duration {
        d.mul_f64(self.0)
    }

    /// From `ISTIO_E2E_TIMEOUT_SCALE` (1 when unset).
    pub fn from_env() -> Result<Self, BadTimeoutScale> {
        match std::env::var("ISTIO_E2E_TIMEOUT_SCALE") {
            Ok(v) if !v.trim().is_empty() => v.parse(),
            _ => Ok(TimeoutScale::default()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scale_multiplies_and_bad_ones_say_why() {
        let s: TimeoutScale = "2.5".parse().unwrap();
        assert_eq!(s.apply(Duration::from_secs(60)), Duration::from_secs(150));
        assert_eq!(s.to_string(), "x2.5");
        assert!(TimeoutScale::default().is_one());
        let e = "fast".parse::<TimeoutScale>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "timeout scale \"fast\": not a number (give a number such as 2 or 1.5, at least 0.1 and at most 100)"
        );
        assert!("0".parse::<TimeoutScale>().is_err());
        assert!("NaN".parse::<TimeoutScale>().is_err());
        assert!("1000".parse::<TimeoutScale>().is_err());
    }
}
