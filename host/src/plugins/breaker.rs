//! The circuit breaker of one loaded plugin version: after `threshold`
//! consecutive calls that trapped (a panic, a deadline, the memory cap),
//! calls are refused at once — a fast 503 instead of another second-long
//! trap per request — until the cool-down has passed or the plugin is
//! reloaded (a new version comes with a closed breaker; reloading an
//! unchanged one closes its breaker). When the
//! cool-down is over one call is let through: it closes the breaker by
//! succeeding or opens it again by trapping.

use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct CircuitBreaker {
    threshold: u32,
    cool_down: Duration,
    state: Mutex<BreakerState>,
}

#[derive(Default)]
struct BreakerState {
    consecutive_traps: u32,
    open_until: Option<Instant>,
    /// A call admitted after the cool-down whose outcome is not known yet:
    /// others are still refused meanwhile.
    probing: bool,
}

/// The breaker refused a call; retry after this long.
#[derive(Debug, Clone, Copy)]
pub struct Open {
    pub retry_after: Duration,
}

impl CircuitBreaker {
    pub fn new(threshold: u32, cool_down: Duration) -> Self {
        Self { threshold: threshold.max(1), cool_down, state: Mutex::default() }
    }

    /// Whether a call may run now.
    pub fn admit(&self, now: Instant) -> Result<(), Open> {
        let mut state = self.state.lock().expect("poisoned");
        let Some(open_until) = state.open_until else { return Ok(()) };
        if now < open_until || state.probing {
            let retry_after = open_until.saturating_duration_since(now).max(Duration::from_secs(1));
            return Err(Open { retry_after });
        }
        state.probing = true;
        Ok(())
    }

    /// Counts how an admitted call ended; answers the new state (`true`:
    /// open) when the call opened or closed the breaker.
    pub fn record(&self, trapped: bool, now: Instant) -> Option<bool> {
        let mut state = self.state.lock().expect("poisoned");
        let was_open = state.open_until.is_some();
        state.probing = false;
        if !trapped {
            *state = BreakerState::default();
        } else {
            state.consecutive_traps = state.consecutive_traps.saturating_add(1);
            if state.consecutive_traps >= self.threshold {
                state.open_until = Some(now + self.cool_down);
            }
        }
        let open = state.open_until.is_some();
        (open != was_open).then_some(open)
    }

    /// Closes the breaker: an operator reloaded the plugin.
    pub fn close(&self) {
        *self.state.lock().expect("poisoned") = BreakerState::default();
    }

    pub fn is_open(&self, now: Instant) -> bool {
        let state = self.state.lock().expect("poisoned");
        state.open_until.is_some_and(|until| now < until || state.probing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COOL_DOWN: Duration = Duration::from_secs(30);

    #[test]
    fn opens_after_threshold_consecutive_traps() {
        let breaker = CircuitBreaker::new(3, COOL_DOWN);
        let now = Instant::now();
        for _ in 0..2 {
            breaker.admit(now).unwrap();
            assert_eq!(breaker.record(true, now), None, "still closed");
        }
        breaker.admit(now).unwrap();
        breaker.record(false, now);
        for _ in 0..2 {
            breaker.admit(now).expect("a success in between resets the count");
            breaker.record(true, now);
        }
        breaker.admit(now).unwrap();
        assert_eq!(breaker.record(true, now), Some(true), "the third trap opens it");
        let refused = breaker.admit(now + Duration::from_secs(10)).unwrap_err();
        assert_eq!(refused.retry_after, Duration::from_secs(20));
        assert!(breaker.is_open(now));
    }

    #[test]
    fn after_the_cool_down_one_probe_decides() {
        let breaker = CircuitBreaker::new(1, COOL_DOWN);
        let now = Instant::now();
        breaker.admit(now).unwrap();
        breaker.record(true, now);
        let later = now + COOL_DOWN;
        breaker.admit(later).expect("the probe is let through");
        assert!(breaker.admit(later).is_err(), "only one probe at a time");
        breaker.record(true, later);
        assert!(breaker.admit(later + Duration::from_secs(1)).is_err(), "a trapping probe reopens it");

        let again = later + COOL_DOWN;
        breaker.admit(again).unwrap();
        assert_eq!(breaker.record(false, again), Some(false), "the succeeding probe closes it");
        assert!(!breaker.is_open(again));
        breaker.admit(again).expect("a succeeding probe closes it");
    }
}
