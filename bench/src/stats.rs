//! Summaries of timed operations.

use std::time::Duration;

/// One timed phase: how many operations, how long all of them took, and each one's latency.
#[derive(Debug, Clone, Default)]
pub struct Phase {
    /// Operations done.
    pub ops: usize,
    /// Wall time of the whole phase.
    pub total: Duration,
    /// Latency of each operation (may be empty when only the total is known).
    pub latencies: Vec<Duration>,
}

impl Phase {
    /// A phase known only by its total.
    pub fn total_only(ops: usize, total: Duration) -> Self {
        Self {
            ops,
            total,
            latencies: Vec::new(),
        }
    }

    /// Wall time per operation, µs.
    pub fn per_op_us(&self) -> f64 {
        if self.ops == 0 {
            return f64::NAN;
        }
        self.total.as_secs_f64() * 1e6 / self.ops as f64
    }

    /// Operations per second.
    pub fn rate(&self) -> f64 {
        if self.total.is_zero() {
            return f64::NAN;
        }
        self.ops as f64 / self.total.as_secs_f64()
    }

    /// The `q` quantile of the latencies (nearest rank), µs.
    pub fn quantile_us(&self, q: f64) -> f64 {
        quantile(&self.latencies, q).map_or(f64::NAN, |d| d.as_secs_f64() * 1e6)
    }
}

/// Nearest-rank quantile; `None` when empty.
pub fn quantile(values: &[Duration], q: f64) -> Option<Duration> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_use_nearest_rank() {
        let values: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile(&values, 0.5), Some(Duration::from_millis(50)));
        assert_eq!(quantile(&values, 0.99), Some(Duration::from_millis(99)));
        assert_eq!(quantile(&values[..1], 0.99), Some(Duration::from_millis(1)));
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn rates_and_per_op() {
        let phase = Phase::total_only(1000, Duration::from_millis(500));
        assert_eq!(phase.rate(), 2000.0);
        assert_eq!(phase.per_op_us(), 500.0);
    }
}
