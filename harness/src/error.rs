//! The error a step returns when it fails: what failed, and what to try.

use std::fmt;

/// Why a step failed: a one-paragraph message and, where there is one, a hint for what to try.
///
/// The runner adds where it happened (scenario file:line, step name); the step says what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepError {
    /// What failed, naming the object (URL, pod, file) and what was seen.
    pub message: String,
    /// What to try, e.g. "raise the step's timeout" or "is the port-forward step before it?".
    pub hint: Option<String>,
    /// Retrying cannot help (a bad argument, a missing file): the runner stops retrying.
    pub fatal: bool,
}

impl StepError {
    /// A failure that a retry may cure.
    pub fn new(message: impl Into<String>) -> Self {
        StepError {
            message: message.into(),
            hint: None,
            fatal: false,
        }
    }

    /// A failure that no retry can cure.
    pub fn fatal(message: impl Into<String>) -> Self {
        StepError {
            fatal: true,
            ..StepError::new(message)
        }
    }

    /// A lower layer's error at the step boundary: its message, fatal unless a retry can help,
    /// and its hint (what to try) when it has one.
    pub fn classified(message: String, retryable: bool, hint: Option<String>) -> Self {
        let e = if retryable {
            StepError::new(message)
        } else {
            StepError::fatal(message)
        };
        match hint {
            Some(h) => e.with_hint(h),
            None => e,
        }
    }

    /// Adds what to try.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(h) = &self.hint {
            write!(f, " (try: {h})")?;
        }
        Ok(())
    }
}

impl std::error::Error for StepError {}

impl From<&str> for StepError {
    fn from(s: &str) -> Self {
        StepError::new(s)
    }
}
