//! What the admin API shows of one loaded plugin version: its calls by
//! outcome and their duration quantiles. Lock-free counters, updated by
//! every call; Prometheus gets the same facts through the `metrics` facade
//! (see `call::run`), this is the per-version view the admin reads.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

/// Bucket `i` holds calls that took less than `2^i` × 16 µs: up to ~16 s.
const BUCKETS: usize = 21;
const FIRST_BOUND_MICROS: u64 = 16;

#[derive(Default)]
pub struct PluginStats {
    calls: AtomicU64,
    errors: AtomicU64,
    traps: AtomicU64,
    deadline_hits: AtomicU64,
    durations: [AtomicU64; BUCKETS],
}

/// How a call ended, as the statistics count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    Ok,
    /// The export answered an error, or the call failed in the host.
    Error,
    /// A trap, including running out of memory.
    Trap,
    Deadline,
}

/// A snapshot, for the admin API.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StatsSnapshot {
    pub calls: u64,
    pub errors: u64,
    pub traps: u64,
    pub deadline_hits: u64,
    /// Upper bound of the bucket holding the median call; `None` before the
    /// first call.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

impl PluginStats {
    pub fn record(&self, outcome: CallOutcome, took: Duration) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let counter = match outcome {
            CallOutcome::Ok => None,
            CallOutcome::Error => Some(&self.errors),
            CallOutcome::Trap => Some(&self.traps),
            CallOutcome::Deadline => Some(&self.deadline_hits),
        };
        if let Some(counter) = counter {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        self.durations[bucket(took)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        let counts: Vec<u64> = self.durations.iter().map(|count| count.load(Ordering::Relaxed)).collect();
        StatsSnapshot {
            calls: self.calls.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            traps: self.traps.load(Ordering::Relaxed),
            deadline_hits: self.deadline_hits.load(Ordering::Relaxed),
            p50_ms: quantile(&counts, 0.50),
            p99_ms: quantile(&counts, 0.99),
        }
    }
}

fn bucket(took: Duration) -> usize {
    let micros = took.as_micros() as u64;
    let mut bound = FIRST_BOUND_MICROS;
    for index in 0..BUCKETS - 1 {
        if micros < bound {
            return index;
        }
        bound *= 2;
    }
    BUCKETS - 1
}

fn upper_bound_ms(index: usize) -> f64 {
    (FIRST_BOUND_MICROS << index) as f64 / 1000.0
}

fn quantile(counts: &[u64], q: f64) -> Option<f64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = ((total as f64) * q).ceil().max(1.0) as u64;
    let mut seen = 0;
    counts.iter().enumerate().find_map(|(index, count)| {
        seen += count;
        (seen >= rank).then(|| upper_bound_ms(index))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_come_from_the_buckets() {
        let stats = PluginStats::default();
        assert_eq!(stats.snapshot().p50_ms, None);
        for _ in 0..98 {
            stats.record(CallOutcome::Ok, Duration::from_micros(100));
        }
        stats.record(CallOutcome::Trap, Duration::from_millis(40));
        stats.record(CallOutcome::Deadline, Duration::from_secs(1));
        let snapshot = stats.snapshot();
        assert_eq!((snapshot.calls, snapshot.errors, snapshot.traps, snapshot.deadline_hits), (100, 0, 1, 1));
        assert_eq!(snapshot.p50_ms, Some(0.128), "100 µs falls under the 128 µs bound");
        assert_eq!(snapshot.p99_ms, Some(65.536), "the 99th call took 40 ms");
    }
}
