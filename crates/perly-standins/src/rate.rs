//! Rate limiters, pure over `now`.
//!
//! Slack documents incoming webhooks as "1 per second, short bursts >1
//! allowed": a [`TokenBucket`] of five that refills one token a second.
//! Discord's webhook limits (5 per 2 s per webhook, 30 per 60 s per channel,
//! community-observed) are [`FixedWindow`]s that start on the first request,
//! which is also what its `X-RateLimit-*` headers describe.

use std::time::Duration;

use tokio::time::Instant;

/// Holds up to `capacity` tokens and adds one every `refill`.
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    capacity: f64,
    refill: Duration,
    tokens: f64,
    at: Option<Instant>,
}

impl TokenBucket {
    pub(crate) fn new(capacity: u32, refill: Duration) -> Self {
        Self {
            capacity: f64::from(capacity),
            refill,
            tokens: f64::from(capacity),
            at: None,
        }
    }

    /// Takes a token, or says how long until the next one.
    pub(crate) fn try_take(&mut self, now: Instant) -> Result<(), Duration> {
        if let Some(at) = self.at {
            let gained = now.saturating_duration_since(at).as_secs_f64() / self.refill.as_secs_f64();
            self.tokens = (self.tokens + gained).min(self.capacity);
        }
        self.at = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(self.refill.mul_f64(1.0 - self.tokens))
        }
    }
}

/// At most `limit` hits per window; the window starts at the first hit.
#[derive(Debug, Clone)]
pub(crate) struct FixedWindow {
    limit: u32,
    window: Duration,
    started: Option<Instant>,
    used: u32,
}

/// Where a window stands, as the `X-RateLimit-*` headers report it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct WindowState {
    pub(crate) limit: u32,
    pub(crate) remaining: u32,
    pub(crate) reset_after: Duration,
}

impl FixedWindow {
    pub(crate) fn new(limit: u32, window: Duration) -> Self {
        Self {
            limit,
            window,
            started: None,
            used: 0,
        }
    }

    fn roll(&mut self, now: Instant) {
        let expired = self
            .started
            .is_none_or(|s| now.saturating_duration_since(s) >= self.window);
        if expired {
            self.started = None;
            self.used = 0;
        }
    }

    /// The state without counting a hit.
    pub(crate) fn state(&mut self, now: Instant) -> WindowState {
        self.roll(now);
        let reset_after = match self.started {
            Some(s) => self.window.saturating_sub(now.saturating_duration_since(s)),
            None => self.window,
        };
        WindowState {
            limit: self.limit,
            remaining: self.limit.saturating_sub(self.used),
            reset_after,
        }
    }

    pub(crate) fn is_full(&mut self, now: Instant) -> bool {
        self.state(now).remaining == 0
    }

    /// Counts a hit (callers check [`FixedWindow::is_full`] first).
    pub(crate) fn hit(&mut self, now: Instant) -> WindowState {
        self.roll(now);
        if self.started.is_none() {
            self.started = Some(now);
        }
        self.used += 1;
        self.state(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_bucket_allows_a_burst_of_five_then_one_a_second() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(5, Duration::from_secs(1));
        for _ in 0..5 {
            assert_eq!(b.try_take(t0), Ok(()));
        }
        let wait = b.try_take(t0).expect_err("sixth in the same instant is limited");
        assert_eq!(wait, Duration::from_secs(1));
        let half = t0 + Duration::from_millis(500);
        assert_eq!(b.try_take(half), Err(Duration::from_millis(500)));
        assert_eq!(b.try_take(t0 + Duration::from_secs(1)), Ok(()));
    }

    #[test]
    fn fixed_window_counts_down_and_resets() {
        let t0 = Instant::now();
        let mut w = FixedWindow::new(5, Duration::from_secs(2));
        assert_eq!(w.state(t0).remaining, 5);
        for left in (0..5).rev() {
            assert!(!w.is_full(t0));
            assert_eq!(w.hit(t0).remaining, left);
        }
        assert!(w.is_full(t0 + Duration::from_millis(1999)));
        let s = w.state(t0 + Duration::from_millis(500));
        assert_eq!(s.reset_after, Duration::from_millis(1500));
        assert!(!w.is_full(t0 + Duration::from_secs(2)));
    }
}
