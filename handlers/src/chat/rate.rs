//! A member's sending rate: a token bucket, sans-IO (the time is an argument).
//!
//! Each message a member sends costs a token; the bucket holds at most `burst` tokens and refills at
//! `rate` tokens a second. While it is empty the member's input is not read at all — its reader
//! thread waits, or its session pauses the reactor's reading — its bytes stay in the socket, and
//! TCP slows the sender down, so a member that floods the room is slowed at its own connection
//! instead of its readers' queues overflowing.

use std::time::{Duration, Instant};

/// One member's bucket.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    /// Tokens a second.
    rate: f64,
    /// The most tokens held.
    burst: f64,
    tokens: f64,
    /// When `tokens` was last brought up to date.
    at: Instant,
}

impl TokenBucket {
    /// A full bucket at `now`: a member starts with its whole burst.
    pub fn new(rate: f64, burst: usize, now: Instant) -> TokenBucket {
        let burst = burst.max(1) as f64;
        TokenBucket {
            rate,
            burst,
            tokens: burst,
            at: now,
        }
    }

    /// Whole tokens at `now`: how many messages the member may send now.
    pub fn available(&mut self, now: Instant) -> usize {
        self.refill(now);
        self.tokens.floor() as usize
    }

    /// Spends `n` tokens (at most those available).
    pub fn spend(&mut self, n: usize) {
        self.tokens = (self.tokens - n as f64).max(0.0);
    }

    /// How long from `now` until one whole token is there (zero if one is).
    pub fn until_next(&mut self, now: Instant) -> Duration {
        self.refill(now);
        let short = 1.0 - self.tokens;
        if short <= 0.0 {
            return Duration::ZERO;
        }
        // Rounded up to the microsecond, so that waking at that time finds the token there.
        Duration::from_micros((short / self.rate * 1e6).ceil() as u64)
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.at = self.at.max(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        let mut bucket = TokenBucket::new(10.0, 3, start);
        assert_eq!(bucket.available(start), 3);
        bucket.spend(3);
        assert_eq!(bucket.available(start), 0);
        assert_eq!(bucket.until_next(start), Duration::from_millis(100));
        assert_eq!(bucket.available(at(99)), 0);
        assert_eq!(bucket.available(at(100)), 1);
        bucket.spend(1);
        assert_eq!(bucket.until_next(at(150)), Duration::from_millis(50));
        // Never more than the burst, however long it rested.
        assert_eq!(bucket.available(at(60_000)), 3);
    }

    #[test]
    fn a_slow_rate_and_waking_when_told_finds_a_token() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(0.3, 1, start);
        bucket.spend(1);
        let wait = bucket.until_next(start);
        let mut early = bucket.clone();
        assert_eq!(early.available(start + wait - Duration::from_millis(1)), 0);
        assert_eq!(bucket.available(start + wait), 1);
    }

    #[test]
    fn waking_when_told_always_finds_a_token_whatever_the_rate() {
        for rate in [0.3, 1.0, 3.0, 7.0, 10.0, 33.3, 100.0, 999.0] {
            let mut now = Instant::now();
            let mut bucket = TokenBucket::new(rate, 3, now);
            bucket.spend(3);
            for n in 0..1000 {
                now += bucket.until_next(now);
                assert_eq!(bucket.available(now), 1, "rate {rate}, token {n}");
                bucket.spend(1);
            }
        }
    }

    #[test]
    fn time_going_backwards_changes_nothing() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(10.0, 2, start + Duration::from_secs(1));
        bucket.spend(2);
        assert_eq!(bucket.available(start), 0);
    }
}
