//! How a background worker rides out a database outage: after a failed
//! round it waits a capped exponential backoff ([`Backoff::failed`]) instead
//! of its usual poll, logs one warning when the outage starts and one line
//! when it ends (the failures in between go to the debug log), and carries
//! on by itself once a round succeeds again ([`Backoff::succeeded`]).

use std::time::{Duration, Instant};

/// The first wait after a failure.
pub const FIRST: Duration = Duration::from_millis(250);
/// The longest wait between two attempts.
pub const CAP: Duration = Duration::from_secs(10);

/// One worker's backoff state.
#[derive(Debug)]
pub struct Backoff {
    worker: &'static str,
    failures: u32,
    since: Option<Instant>,
}

impl Backoff {
    pub fn new(worker: &'static str) -> Self {
        Self {
            worker,
            failures: 0,
            since: None,
        }
    }

    /// Records a failed round; returns how long to wait before the next.
    pub fn failed(&mut self, error: &crate::Error) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let wait = delay(self.failures);
        if self.since.is_none() {
            self.since = Some(Instant::now());
            tracing::warn!(
                worker = self.worker,
                error = %error,
                unreachable = error.is_unreachable(),
                "{}: store failed; backing off (up to {} s) until it answers again",
                self.worker,
                CAP.as_secs()
            );
        } else {
            tracing::debug!(worker = self.worker, error = %error, failures = self.failures, wait_ms = wait.as_millis() as u64, "{}: still failing", self.worker);
        }
        wait
    }

    /// Records a successful round (logging the end of an outage).
    pub fn succeeded(&mut self) {
        if let Some(since) = self.since.take() {
            tracing::info!(
                worker = self.worker,
                failures = self.failures,
                outage_ms = since.elapsed().as_millis() as u64,
                "{}: store answers again; resuming",
                self.worker
            );
        }
        self.failures = 0;
    }

    /// Whether the last round failed.
    pub fn failing(&self) -> bool {
        self.since.is_some()
    }
}

/// The wait after `failures` failures in a row: [`FIRST`] doubled each
/// time, at most [`CAP`].
pub fn delay(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    FIRST.saturating_mul(1 << doublings).min(CAP)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_doubles_up_to_the_cap_and_resets_on_success() {
        assert_eq!(delay(1), Duration::from_millis(250));
        assert_eq!(delay(2), Duration::from_millis(500));
        assert_eq!(delay(4), Duration::from_secs(2));
        assert_eq!(delay(7), CAP);
        assert_eq!(delay(u32::MAX), CAP);
        let mut b = Backoff::new("test");
        let e = crate::Error::Unreachable(sqlx::Error::PoolTimedOut);
        assert_eq!(b.failed(&e), FIRST);
        assert_eq!(b.failed(&e), FIRST * 2);
        assert!(b.failing());
        b.succeeded();
        assert!(!b.failing());
        assert_eq!(b.failed(&e), FIRST);
    }

    #[test]
    fn connection_errors_are_unreachable_and_query_errors_are_not() {
        let refused = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(crate::Error::from(refused).is_unreachable());
        assert!(crate::Error::from(sqlx::Error::PoolTimedOut).is_unreachable());
        assert!(!crate::Error::from(sqlx::Error::ColumnNotFound("x".into())).is_unreachable());
        assert!(!crate::Error::from(sqlx::Error::RowNotFound).is_unreachable());
    }
}
