//! The process's background work — relay, consumers, jobs, group commit,
//! pruning loops — spawned on one tracker, so that shutdown can stop it
//! and wait for it in one place.

use std::time::Duration;

use tokio::time::{Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Clone, Default)]
pub struct Background {
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

impl Background {
    /// Runs `work`, which watches `shutdown()` and ends soon after it fires.
    pub fn spawn<F>(&self, work: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(work);
    }

    /// Runs `work` until shutdown, then drops it wherever it is: for work
    /// that holds nothing that must be finished (a pruning loop).
    pub fn spawn_until_shutdown<F>(&self, work: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let shutdown = self.shutdown.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = work => {}
            }
        });
    }

    /// Fires when the process stops.
    pub fn shutdown(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Tells every task to stop and waits up to `deadline` for them;
    /// `false` when some did not stop in time.
    pub async fn stop(&self, deadline: Duration) -> bool {
        self.shutdown.cancel();
        self.tasks.close();
        tokio::time::timeout(deadline, self.tasks.wait()).await.is_ok()
    }
}

/// A period's ticks until shutdown, for work done every so often; a tick
/// that overruns delays the next rather than bunching them.
pub struct Ticks {
    interval: Interval,
    shutdown: CancellationToken,
}

impl Ticks {
    /// The first tick comes at once.
    pub fn new(period: Duration, shutdown: CancellationToken) -> Self {
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Self { interval, shutdown }
    }

    /// Waits for the next tick; `false` once the process stops.
    pub async fn next(&mut self) -> bool {
        tokio::select! {
            _ = self.shutdown.cancelled() => false,
            _ = self.interval.tick() => true,
        }
    }
}
