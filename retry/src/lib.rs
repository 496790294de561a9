//! How switchyard's reconcilers (the controller's and the node agent's) retry a failed
//! reconcile: an error is either [`Retry::Transient`] (retried per object with exponential
//! backoff and jitter, [`Backoffs`]) or [`Retry::Invalid`] (the request itself is wrong:
//! retrying would only repeat the refusal, so the reconciler waits for the object to change).
//! And how their watches go on past an object they cannot decode ([`watch::decodable`]).

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::sync::Mutex;
use std::time::Duration;

pub mod watch;

/// What to do about a failed reconcile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Retrying can help (a server error, a conflict, throttling, a lost connection).
    Transient,
    /// Retrying cannot help until the object changes.
    Invalid,
}

impl Retry {
    /// The label the metrics use: `transient` or `invalid`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Transient => "transient",
            Self::Invalid => "invalid",
        }
    }
}

/// Server errors, conflicts, throttling and connection failures are transient; any other 4xx
/// means the request itself is wrong.
pub fn classify_kube(error: &kube::Error) -> Retry {
    match error {
        kube::Error::Api(status)
            if (400..500).contains(&status.code) && !matches!(status.code, 409 | 429) =>
        {
            Retry::Invalid
        }
        _ => Retry::Transient,
    }
}

/// The first retry waits about this long; each further failure doubles it, up to
/// [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// The longest wait between retries of one object.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// The delay before retry number `failures` (1-based), without jitter.
pub fn backoff(failures: u32) -> Duration {
    FIRST_BACKOFF
        .saturating_mul(1 << failures.saturating_sub(1).min(16))
        .min(MAX_BACKOFF)
}

/// `delay` spread over ±25 % by `random` (any `u64`), so objects that failed together are
/// not all retried at the same instant.
pub fn jittered(delay: Duration, random: u64) -> Duration {
    let quarter = delay / 4;
    let spread = quarter.as_nanos() as u64 * 2;
    let offset = if spread == 0 { 0 } else { random % spread };
    (delay - quarter + Duration::from_nanos(offset)).min(MAX_BACKOFF)
}

/// Consecutive failures per object, for exponential backoff.
#[derive(Debug)]
pub struct Backoffs<K> {
    failures: Mutex<HashMap<K, u32>>,
}

impl<K: Eq + Hash> Default for Backoffs<K> {
    fn default() -> Self {
        Self {
            failures: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Eq + Hash> Backoffs<K> {
    /// No failures yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts a failure of `key`; returns which attempt this was and the jittered delay
    /// before the next.
    pub fn failed(&self, key: K) -> (u32, Duration) {
        let attempt = {
            let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
            let count = failures.entry(key).or_default();
            *count = count.saturating_add(1);
            *count
        };
        // A fresh RandomState is keyed randomly: enough randomness for spreading retries.
        let random = std::collections::hash_map::RandomState::new().hash_one(attempt);
        (attempt, jittered(backoff(attempt), random))
    }

    /// Forgets `key`'s failures (it reconciled, or it is gone).
    pub fn succeeded(&self, key: &K) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_five_minutes() {
        assert_eq!(backoff(1), Duration::from_millis(500));
        assert_eq!(backoff(2), Duration::from_secs(1));
        assert_eq!(backoff(4), Duration::from_secs(4));
        assert_eq!(backoff(20), MAX_BACKOFF);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }

    #[test]
    fn jitter_stays_within_a_quarter() {
        let delay = Duration::from_secs(4);
        for random in [0, 1, 12_345, u64::MAX] {
            let spread = jittered(delay, random);
            assert!(spread >= Duration::from_secs(3) && spread < Duration::from_secs(5));
        }
        assert!(jittered(MAX_BACKOFF, u64::MAX) <= MAX_BACKOFF);
        assert_eq!(jittered(Duration::ZERO, 7), Duration::ZERO);
    }

    #[test]
    fn failures_count_per_object_until_success() {
        let backoffs = Backoffs::new();
        assert_eq!(backoffs.failed("a").0, 1);
        assert_eq!(backoffs.failed("a").0, 2);
        let (attempt, delay) = backoffs.failed("a");
        assert_eq!(attempt, 3);
        assert!(delay >= Duration::from_millis(1500) && delay < Duration::from_millis(2500));
        assert_eq!(backoffs.failed("b").0, 1);
        backoffs.succeeded(&"a");
        assert_eq!(backoffs.failed("a").0, 1);
    }

    #[test]
    fn client_errors_are_invalid_and_server_errors_transient() {
        let api = |code| {
            kube::Error::Api(Box::new(
                kube::core::Status::failure("x", "y").with_code(code),
            ))
        };
        assert_eq!(classify_kube(&api(422)), Retry::Invalid);
        assert_eq!(classify_kube(&api(403)), Retry::Invalid);
        assert_eq!(classify_kube(&api(409)), Retry::Transient);
        assert_eq!(classify_kube(&api(429)), Retry::Transient);
        assert_eq!(classify_kube(&api(500)), Retry::Transient);
    }
}
