//! Retry policy and backoff, shared by the runner's step retries and the probes' polling.

use std::time::Duration;

/// The longest wait between two tries.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Waits between tries: `first`, then doubled after each further try, capped at `cap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    next: Duration,
    cap: Duration,
}

impl Backoff {
    /// Starts at `first`, doubles, never exceeds `cap`.
    pub fn new(first: Duration, cap: Duration) -> Self {
        Backoff {
            next: first.min(cap),
            cap,
        }
    }
}

impl Iterator for Backoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let now = self.next;
        self.next = (self.next * 2).min(self.cap);
        Some(now)
    }
}

/// How often a step is tried, and how long to wait in between.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct RetryPolicy {
    /// Total attempts, the first included (at least 1).
    pub attempts: u32,
    /// The wait before the second attempt; doubled after each further failure.
    pub backoff: Duration,
}

impl Default for RetryPolicy {
    /// One attempt; 1 s before a second one if a step asks for more attempts.
    fn default() -> Self {
        RetryPolicy {
            attempts: 1,
            backoff: Duration::from_secs(1),
        }
    }
}

impl RetryPolicy {
    /// The waits between attempts, capped at [`MAX_BACKOFF`].
    pub fn backoff(&self) -> Backoff {
        Backoff::new(self.backoff, MAX_BACKOFF)
    }

    /// True when a failure after `attempts` tries may be retried.
    pub fn allows_another(&self, attempts: u32) -> bool {
        attempts < self.attempts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let waits: Vec<u64> = Backoff::new(Duration::from_secs(4), MAX_BACKOFF)
            .take(5)
            .map(|d| d.as_secs())
            .collect();
        assert_eq!(waits, [4, 8, 16, 30, 30]);
    }

    #[test]
    fn attempts_count_the_first() {
        let p = RetryPolicy {
            attempts: 2,
            backoff: Duration::from_secs(1),
        };
        assert!(p.allows_another(1));
        assert!(!p.allows_another(2));
    }
}
