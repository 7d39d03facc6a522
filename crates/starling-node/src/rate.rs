//! A token bucket, for the connection-rate and command-rate limits.
//!
//! Time is passed in, so the bucket is tested without a clock.

use std::time::Duration;

use tokio::time::Instant;

/// Refills at `rate` tokens per second up to `burst`; each admitted event takes one token.
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket. `burst` below 1 is raised to 1 so a positive rate admits something.
    pub(crate) fn new(rate: u32, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        TokenBucket {
            rate: f64::from(rate),
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Takes one token if there is one.
    pub(crate) fn try_take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Takes one token now or, when there is none, reserves the next free one if it comes
    /// within `max_wait`: the bucket goes into debt, so later callers queue behind this one and
    /// reservations are spaced at the rate. Returns how long to wait before using the token,
    /// or `None` when the queue is longer than `max_wait` (nothing is taken).
    pub(crate) fn reserve(&mut self, now: Instant, max_wait: Duration) -> Option<Duration> {
        self.refill(now);
        let after = self.tokens - 1.0;
        if after >= 0.0 {
            self.tokens = after;
            return Some(Duration::ZERO);
        }
        if self.rate <= 0.0 {
            return None;
        }
        let wait = Duration::from_secs_f64(-after / self.rate);
        if wait > max_wait {
            return None;
        }
        self.tokens = after;
        Some(wait)
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_queue_at_the_rate_up_to_the_timeout() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(10, 2, start);
        let max = Duration::from_millis(350);
        let waits: Vec<Option<Duration>> = (0..7).map(|_| bucket.reserve(start, max)).collect();
        let ms = |w: &Option<Duration>| w.map(|d| d.as_millis());
        // Two from the burst at once, then one every 100 ms while the wait fits in 350 ms.
        assert_eq!(
            waits.iter().map(ms).collect::<Vec<_>>(),
            vec![
                Some(0),
                Some(0),
                Some(100),
                Some(200),
                Some(300),
                None,
                None
            ]
        );
        // A refusal took nothing: after 100 ms exactly one more slot has freed up.
        let later = start + Duration::from_millis(100);
        assert_eq!(ms(&bucket.reserve(later, max)), Some(300));
    }

    #[test]
    fn admits_a_burst_then_refills_at_the_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(10, 3, start);
        assert!((0..3).all(|_| bucket.try_take(start)));
        assert!(!bucket.try_take(start), "burst spent");
        // 10 per second: one token after 100 ms, not before.
        assert!(!bucket.try_take(start + Duration::from_millis(50)));
        assert!(bucket.try_take(start + Duration::from_millis(101)));
        // A long pause refills only up to the burst.
        let later = start + Duration::from_secs(60);
        assert_eq!((0..10).filter(|_| bucket.try_take(later)).count(), 3);
    }
}
