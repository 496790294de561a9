//! Whether the agent's loops are alive, for `/healthz`: each loop beats a [`Heartbeat`] when it
//! finishes a piece of work and, when idle, on a tick (the reconcile loop on a probe sent
//! through it, the deletion batcher on a timer of its own). A loop whose last beat is older
//! than the limit is dead or wedged: a panicked task, a kernel call that never returns, every
//! reconcile slot held by a call that hangs. The process itself still answers, so only this
//! check tells the kubelet to restart it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The default limit: far above any healthy pause (a deletion batch, a burst of reconciles
/// queued behind the probe), far below the time an operator would wait for a stuck node.
pub const DEFAULT_LIVENESS_LIMIT: Duration = Duration::from_secs(60);

/// The last time one loop showed it is alive.
#[derive(Debug)]
pub struct Heartbeat {
    loop_name: &'static str,
    epoch: Instant,
    /// Milliseconds after `epoch` of the last beat.
    last: AtomicU64,
}

impl Heartbeat {
    /// A heartbeat that has just beaten.
    pub fn new(loop_name: &'static str) -> Arc<Self> {
        Arc::new(Self {
            loop_name,
            epoch: Instant::now(),
            last: AtomicU64::new(0),
        })
    }

    /// Records that the loop is alive now.
    pub fn beat(&self) {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.fetch_max(now, Ordering::Release);
    }

    /// How long ago the loop last beat.
    pub fn age(&self) -> Duration {
        let last = Duration::from_millis(self.last.load(Ordering::Acquire));
        self.epoch.elapsed().saturating_sub(last)
    }
}

/// The loops `/healthz` judges and the age at which a loop counts as dead.
#[derive(Debug, Clone)]
pub struct Liveness {
    hearts: Vec<Arc<Heartbeat>>,
    limit: Duration,
}

impl Liveness {
    /// Judges `hearts` against `limit`.
    pub fn new(hearts: Vec<Arc<Heartbeat>>, limit: Duration) -> Self {
        Self { hearts, limit }
    }

    /// How often an idle loop should beat: often enough that a healthy one is never near the
    /// limit.
    pub fn tick(limit: Duration) -> Duration {
        (limit / 4).clamp(Duration::from_millis(100), Duration::from_secs(5))
    }

    /// `Ok` while every loop beat within the limit; else what is wrong, for the probe's body.
    pub fn check(&self) -> Result<(), String> {
        verdict(
            self.hearts
                .iter()
                .map(|heart| (heart.loop_name, heart.age())),
            self.limit,
        )
    }
}

/// The loops whose last beat is older than `limit`, said in one line.
fn verdict(
    ages: impl IntoIterator<Item = (&'static str, Duration)>,
    limit: Duration,
) -> Result<(), String> {
    let stale: Vec<String> = ages
        .into_iter()
        .filter(|(_, age)| *age > limit)
        .map(|(name, age)| format!("the {name} has made no progress for {}s", age.as_secs()))
        .collect();
    if stale.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} (limit {}s)",
            stale.join("; "),
            limit.as_secs_f64()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loop_older_than_the_limit_is_named() {
        let limit = Duration::from_secs(60);
        assert_eq!(
            verdict(
                [
                    ("reconcile loop", Duration::from_secs(3)),
                    ("deletion batcher", Duration::from_secs(60))
                ],
                limit
            ),
            Ok(())
        );
        let wrong = verdict(
            [
                ("reconcile loop", Duration::from_secs(3)),
                ("deletion batcher", Duration::from_secs(61)),
            ],
            limit,
        )
        .unwrap_err();
        assert_eq!(
            wrong,
            "the deletion batcher has made no progress for 61s (limit 60s)"
        );
    }

    #[test]
    fn a_beat_makes_a_heart_young_again() {
        let heart = Heartbeat::new("deletion batcher");
        std::thread::sleep(Duration::from_millis(30));
        assert!(heart.age() >= Duration::from_millis(30));
        let before = Instant::now();
        heart.beat();
        let age = heart.age();
        // Beats are kept in whole milliseconds.
        assert!(
            age <= before.elapsed() + Duration::from_millis(1),
            "{age:?}"
        );
    }

    #[test]
    fn a_wedged_reconcile_loop_fails_health_and_a_busy_one_that_progresses_does_not() {
        let limit = Duration::from_millis(150);
        let reconciler = Heartbeat::new("reconcile loop");
        let deleter = Heartbeat::new("deletion batcher");
        let liveness = Liveness::new(vec![reconciler.clone(), deleter.clone()], limit);
        // Busy: work keeps coming and each piece finishes (a beat) well within the limit,
        // for several limits in all.
        let start = Instant::now();
        while start.elapsed() < limit * 4 {
            std::thread::sleep(Duration::from_millis(20));
            reconciler.beat();
            deleter.beat();
            assert_eq!(liveness.check(), Ok(()), "after {:?}", start.elapsed());
        }
        // Wedged: work is pending but the loop finishes nothing (no beat) past the limit; the
        // batcher goes on beating.
        let wedged = Instant::now();
        while wedged.elapsed() <= limit + Duration::from_millis(20) {
            std::thread::sleep(Duration::from_millis(20));
            deleter.beat();
        }
        let why = liveness.check().unwrap_err();
        assert!(
            why.starts_with("the reconcile loop has made no progress") && !why.contains("batcher"),
            "{why}"
        );
        // Progress again: healthy again.
        reconciler.beat();
        assert_eq!(liveness.check(), Ok(()));
    }

    #[test]
    fn idle_loops_beat_well_within_the_limit() {
        assert_eq!(
            Liveness::tick(Duration::from_secs(60)),
            Duration::from_secs(5)
        );
        assert_eq!(
            Liveness::tick(Duration::from_secs(2)),
            Duration::from_millis(500)
        );
        assert_eq!(
            Liveness::tick(Duration::from_millis(100)),
            Duration::from_millis(100)
        );
    }
}
