//! What one worker counted, merged into the run's totals at the end: no shared counters on the hot
//! path, so the load generator's bookkeeping does not contend across its threads.
//!
//! Also the run's [`Clock`] (when measuring starts and when everything must stop) and the shared
//! request [`Budget`] for `--requests`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::histogram::Histogram;

/// One worker's (or the whole run's) counts over the measured window.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    /// Completed round trips (chat: deliveries).
    pub requests: u64,
    pub bytes_out: u64,
    pub bytes_in: u64,
    pub latency: Histogram,
    pub errors: u64,
    /// The earliest error: when it happened and what it said.
    pub first_error: Option<(Instant, String)>,
    /// The last completion counted, which ends the measured window of a count-bounded run.
    pub last_done: Option<Instant>,
}

impl Tally {
    /// Counts one completed round trip.
    pub fn record(&mut self, latency: Duration, bytes_out: usize, bytes_in: usize, done: Instant) {
        self.requests += 1;
        self.bytes_out += bytes_out as u64;
        self.bytes_in += bytes_in as u64;
        self.latency
            .record(u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX));
        self.last_done = Some(self.last_done.map_or(done, |t| t.max(done)));
    }

    /// Counts an error (during warm-up too: a failing server should not look clean).
    pub fn error(&mut self, msg: impl std::fmt::Display) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some((Instant::now(), msg.to_string()));
        }
    }

    pub fn merge(&mut self, other: &Tally) {
        self.requests += other.requests;
        self.bytes_out += other.bytes_out;
        self.bytes_in += other.bytes_in;
        self.latency.merge(&other.latency);
        self.errors += other.errors;
        if let Some((at, msg)) = &other.first_error {
            if self.first_error.as_ref().is_none_or(|(mine, _)| at < mine) {
                self.first_error = Some((*at, msg.clone()));
            }
        }
        if let Some(done) = other.last_done {
            self.last_done = Some(self.last_done.map_or(done, |t| t.max(done)));
        }
    }
}

/// The run's timeline: warm-up until `measure_from`, then measuring until `deadline` at the latest.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    pub start: Instant,
    pub measure_from: Instant,
    pub deadline: Instant,
}

impl Clock {
    pub fn new(warmup: Duration, duration: Duration) -> Clock {
        let start = Instant::now();
        Clock {
            start,
            measure_from: start + warmup,
            deadline: start + warmup + duration,
        }
    }

    /// Whether work may still start.
    pub fn running(&self) -> bool {
        Instant::now() < self.deadline
    }

    /// Whether a request sent at `sent` counts in the results.
    pub fn measured(&self, sent: Instant) -> bool {
        sent >= self.measure_from
    }

    /// Sleeps until `at` or the deadline, whichever is first, in short naps (so a test's clock and a
    /// stop are both honoured without a wake-up mechanism).
    pub fn sleep_until(&self, at: Instant) {
        let at = at.min(self.deadline);
        loop {
            let now = Instant::now();
            if now >= at {
                return;
            }
            std::thread::sleep((at - now).min(Duration::from_millis(50)));
        }
    }
}

/// The `--requests` budget shared by all workers: measured requests left to start. Warm-up requests
/// do not draw on it.
#[derive(Debug)]
pub struct Budget {
    left: Option<AtomicU64>,
}

impl Budget {
    pub fn new(requests: Option<u64>) -> Budget {
        Budget {
            left: requests.map(AtomicU64::new),
        }
    }

    /// Whether one more request may start at `now`: always during warm-up and in a time-bound run,
    /// otherwise while the budget lasts.
    pub fn take(&self, clock: &Clock, now: Instant) -> bool {
        match &self.left {
            None => true,
            Some(_) if !clock.measured(now) => true,
            Some(left) => left
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_keeps_the_earliest_error_and_latest_completion() {
        let (mut a, mut b) = (Tally::default(), Tally::default());
        b.error("first");
        a.error("second");
        let now = Instant::now();
        a.record(Duration::from_micros(5), 10, 10, now);
        b.record(
            Duration::from_micros(7),
            10,
            10,
            now + Duration::from_millis(1),
        );
        a.merge(&b);
        assert_eq!(a.first_error.unwrap().1, "first");
        assert_eq!((a.requests, a.errors, a.bytes_in), (2, 2, 20));
        assert_eq!(a.last_done, Some(now + Duration::from_millis(1)));
    }

    #[test]
    fn budget_counts_measured_requests_only() {
        let clock = Clock::new(Duration::from_secs(10), Duration::from_secs(1));
        let budget = Budget::new(Some(2));
        assert!(budget.take(&clock, clock.start)); // warm-up: free
        let later = clock.measure_from;
        assert!(budget.take(&clock, later));
        assert!(budget.take(&clock, later));
        assert!(!budget.take(&clock, later));
        assert!(Budget::new(None).take(&clock, later));
    }
}
