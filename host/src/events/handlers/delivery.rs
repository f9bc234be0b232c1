//! The retry rule of one event's delivery, apart from any I/O: after each
//! attempt, whether the event is done, is tried again (after exponential
//! backoff, up to the configured attempts), waits for the infrastructure
//! (without using up an attempt), or goes to the dead-letter topic.

use std::time::Duration;

use super::dead_letter::DeadLetter;

/// Longest wait between checks of infrastructure that is down.
const MAX_OUTAGE_BACKOFF: Duration = Duration::from_secs(5);
const FIRST_OUTAGE_BACKOFF: Duration = Duration::from_millis(100);

/// What one attempt came to.
#[derive(Debug)]
pub enum Attempt {
    /// The handler succeeded, or the ledger says it did before.
    Handled,
    /// The handler says the event can never succeed.
    Permanent(String),
    /// A retryable error, a trap, a deadline: it may pass next time.
    Failed(String),
    /// Not the handler's doing — the ledger unreadable, the commit
    /// refused, its circuit open — so it costs no attempt.
    Infrastructure(String),
}

/// What to do next.
#[derive(Debug, PartialEq)]
pub enum Step {
    Done,
    /// Call the handler again after `after` (attempt `attempt`).
    Retry {
        after: Duration,
        attempt: u32,
        error: String,
    },
    /// Try again after `after`, with the same attempt number.
    Wait {
        after: Duration,
        error: String,
    },
    DeadLetter(DeadLetter),
}

/// One event's delivery so far.
pub struct Delivery {
    attempt: u32,
    max_attempts: u32,
    backoff: Duration,
    outage: Duration,
}

impl Delivery {
    pub fn new(max_attempts: u32, backoff: Duration) -> Self {
        Self { attempt: 1, max_attempts: max_attempts.max(1), backoff, outage: FIRST_OUTAGE_BACKOFF }
    }

    /// The number of the attempt to make (from 1).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    pub fn after(&mut self, outcome: Attempt) -> Step {
        match outcome {
            Attempt::Handled => Step::Done,
            Attempt::Permanent(error) => {
                Step::DeadLetter(DeadLetter { kind: "permanent", error, attempts: self.attempt })
            }
            Attempt::Failed(error) if self.attempt >= self.max_attempts => {
                Step::DeadLetter(DeadLetter { kind: "retryable", error, attempts: self.attempt })
            }
            Attempt::Failed(error) => {
                let after = self.backoff * 2u32.saturating_pow(self.attempt - 1);
                self.attempt += 1;
                Step::Retry { after, attempt: self.attempt, error }
            }
            Attempt::Infrastructure(error) => {
                let after = self.outage;
                self.outage = (self.outage * 2).min(MAX_OUTAGE_BACKOFF);
                Step::Wait { after, error }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BACKOFF: Duration = Duration::from_millis(200);

    fn failed() -> Attempt {
        Attempt::Failed("boom".into())
    }

    #[test]
    fn a_failing_event_is_retried_with_doubling_backoff_then_dead_lettered() {
        let mut delivery = Delivery::new(3, BACKOFF);
        assert_eq!(delivery.after(failed()), Step::Retry { after: BACKOFF, attempt: 2, error: "boom".into() });
        assert_eq!(delivery.after(failed()), Step::Retry { after: BACKOFF * 2, attempt: 3, error: "boom".into() });
        assert_eq!(
            delivery.after(failed()),
            Step::DeadLetter(DeadLetter { kind: "retryable", error: "boom".into(), attempts: 3 })
        );
    }

    #[test]
    fn a_permanent_error_is_dead_lettered_at_once() {
        let mut delivery = Delivery::new(3, BACKOFF);
        let step = delivery.after(Attempt::Permanent("never".into()));
        assert_eq!(step, Step::DeadLetter(DeadLetter { kind: "permanent", error: "never".into(), attempts: 1 }));
    }

    #[test]
    fn infrastructure_trouble_waits_longer_each_time_and_uses_no_attempt() {
        let mut delivery = Delivery::new(2, BACKOFF);
        let waits: Vec<Duration> = (0..8)
            .map(|_| match delivery.after(Attempt::Infrastructure("database down".into())) {
                Step::Wait { after, .. } => after,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(waits[0], FIRST_OUTAGE_BACKOFF);
        assert!(waits.windows(2).all(|pair| pair[1] >= pair[0]));
        assert_eq!(*waits.last().unwrap(), MAX_OUTAGE_BACKOFF);
        assert_eq!(delivery.attempt(), 1);
        assert!(matches!(delivery.after(failed()), Step::Retry { attempt: 2, .. }));
        assert_eq!(delivery.after(Attempt::Handled), Step::Done);
    }

    #[test]
    fn one_attempt_means_no_retry() {
        let mut delivery = Delivery::new(0, BACKOFF);
        assert!(matches!(delivery.after(failed()), Step::DeadLetter(DeadLetter { attempts: 1, .. })));
    }
}
