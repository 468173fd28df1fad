//! The journal of one stand-in: every webhook request it answered, in
//! arrival order, and the faults waiting to be applied to each webhook.
//!
//! Webhook handlers ask it first for a delay (`take_delay`) and a fault
//! (`take_fault`) for the webhook's key, answer, then `record` what they
//! answered. Tests and the messages page read it back. Faults are keyed by
//! a vendor-chosen key (Slack: the URL path, Discord: the webhook id) so that
//! the host spelling of a URL (`127.0.0.1` or `localhost`) does not matter.
//!
//! The journal also holds the stand-in's clock for rate limits and arrival
//! times: the real clock, or one running `factor` times faster
//! ([`Journal::speed_up`]) for tests that drive Perly with an accelerated
//! clock and still want the vendors' limits enforced on that time scale.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::{Fault, Received};

#[derive(Default)]
pub(crate) struct Journal {
    inner: Mutex<Inner>,
    clock: Mutex<Option<Scaled>>,
}

#[derive(Default)]
struct Inner {
    requests: Vec<Received>,
    faults: HashMap<String, Vec<Fault>>,
}

/// The stand-in's clock: the real one, run `factor` times faster from
/// `origin`, plus `offset` moved on by hand.
#[derive(Debug, Clone, Copy)]
struct Scaled {
    origin: Instant,
    origin_utc: chrono::DateTime<chrono::Utc>,
    factor: f64,
    offset: Duration,
}

impl Scaled {
    fn real() -> Self {
        Self {
            origin: Instant::now(),
            origin_utc: chrono::Utc::now(),
            factor: 1.0,
            offset: Duration::ZERO,
        }
    }

    fn elapsed(&self) -> Duration {
        Instant::now()
            .saturating_duration_since(self.origin)
            .mul_f64(self.factor)
            + self.offset
    }
}

impl Journal {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the lists half-written.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn clock(&self) -> MutexGuard<'_, Option<Scaled>> {
        self.clock.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// From now on, time (rate limits, arrival times) runs `factor` times
    /// faster than the real clock; 1.0 is the real speed.
    pub(crate) fn speed_up(&self, factor: f64) {
        let factor = if factor.is_finite() && factor > 0.0 {
            factor
        } else {
            1.0
        };
        let mut clock = self.clock();
        let mut c = clock.unwrap_or_else(Scaled::real);
        // Restart from the current reading at the new speed.
        let (now, now_utc) = (c.origin + c.elapsed(), c.origin_utc + chrono_of(c.elapsed()));
        c = Scaled {
            origin: Instant::now(),
            origin_utc: now_utc,
            factor,
            offset: now.saturating_duration_since(Instant::now()),
        };
        c.origin_utc -= chrono_of(c.offset);
        *clock = Some(c);
    }

    /// Moves the stand-in's clock on by `by` (for tests whose clock is
    /// moved by hand: rate limits see the same time as Perly).
    pub(crate) fn advance(&self, by: Duration) {
        let mut clock = self.clock();
        let mut c = clock.unwrap_or_else(Scaled::real);
        c.offset += by;
        *clock = Some(c);
    }

    /// The stand-in's monotonic time (see [`Journal::speed_up`]).
    pub(crate) fn now(&self) -> Instant {
        match *self.clock() {
            None => Instant::now(),
            Some(c) => c.origin + c.elapsed(),
        }
    }

    /// The stand-in's wall-clock time (see [`Journal::speed_up`]).
    pub(crate) fn now_utc(&self) -> chrono::DateTime<chrono::Utc> {
        match *self.clock() {
            None => chrono::Utc::now(),
            Some(c) => c.origin_utc + chrono_of(c.elapsed()),
        }
    }

    pub(crate) fn record(&self, received: Received) {
        self.lock().requests.push(received);
    }

    pub(crate) fn requests(&self) -> Vec<Received> {
        self.lock().requests.clone()
    }

    pub(crate) fn messages(&self) -> Vec<Received> {
        self.lock().requests.iter().filter(|r| r.accepted()).cloned().collect()
    }

    /// Requests from the `from`-th on (for readers that poll a long journal).
    pub(crate) fn requests_from(&self, from: usize) -> Vec<Received> {
        self.lock().requests.iter().skip(from).cloned().collect()
    }

    pub(crate) fn clear(&self) {
        self.lock().requests.clear();
    }

    pub(crate) fn inject(&self, key: String, fault: Fault) {
        self.lock().faults.entry(key).or_default().push(fault);
    }

    /// Faults still pending, per key (for the faults page).
    pub(crate) fn pending(&self) -> Vec<(String, Fault)> {
        let inner = self.lock();
        let mut all: Vec<(String, Fault)> = inner
            .faults
            .iter()
            .flat_map(|(k, fs)| fs.iter().map(move |f| (k.clone(), f.clone())))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    pub(crate) fn clear_faults(&self, key: &str) {
        self.lock().faults.remove(key);
    }

    /// Uses up one `Slow` fault for `key`, if any, and returns its delay.
    pub(crate) fn take_delay(&self, key: &str) -> Option<Duration> {
        let mut inner = self.lock();
        let faults = inner.faults.get_mut(key)?;
        let i = faults
            .iter()
            .position(|f| matches!(f, Fault::Slow { times, .. } if *times > 0))?;
        let Fault::Slow { delay_ms, times } = &mut faults[i] else {
            return None;
        };
        let delay = Duration::from_millis(*delay_ms);
        *times -= 1;
        if *times == 0 {
            faults.remove(i);
        }
        Some(delay)
    }

    /// Uses up one answer of the first non-`Slow` fault for `key`.
    /// Permanent faults are never used up.
    pub(crate) fn take_fault(&self, key: &str) -> Option<Fault> {
        let mut inner = self.lock();
        let faults = inner.faults.get_mut(key)?;
        let i = faults.iter().position(|f| match f {
            Fault::Slow { .. } => false,
            Fault::Status { times, .. } | Fault::RateLimit { times, .. } => *times > 0,
            Fault::Delete | Fault::Archive | Fault::Revoke => true,
        })?;
        let fault = faults[i].clone();
        let left = match &mut faults[i] {
            Fault::Status { times, .. } | Fault::RateLimit { times, .. } => {
                *times -= 1;
                Some(*times)
            }
            _ => None,
        };
        if left == Some(0) {
            faults.remove(i);
        }
        Some(fault)
    }
}

fn chrono_of(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_faults_are_used_up_in_order_and_permanent_ones_stay() {
        let j = Journal::default();
        j.inject("k".into(), Fault::Status { status: 500, times: 2 });
        j.inject("k".into(), Fault::Revoke);
        assert_eq!(j.take_fault("k"), Some(Fault::Status { status: 500, times: 2 }));
        assert_eq!(j.take_fault("k"), Some(Fault::Status { status: 500, times: 1 }));
        assert_eq!(j.take_fault("k"), Some(Fault::Revoke));
        assert_eq!(j.take_fault("k"), Some(Fault::Revoke));
        assert_eq!(j.take_fault("other"), None);
    }

    #[tokio::test]
    async fn a_sped_up_clock_runs_faster_than_the_real_one() {
        let j = Journal::default();
        j.speed_up(100.0);
        let (t0, u0) = (j.now(), j.now_utc());
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(j.now() - t0 >= Duration::from_secs(2));
        assert!(j.now_utc() - u0 >= chrono::Duration::seconds(2));
        j.speed_up(1.0);
        let t1 = j.now();
        assert!(
            t1 - t0 >= Duration::from_secs(2),
            "slowing down does not go back in time"
        );
        assert!(j.now() - t1 < Duration::from_secs(1));
        j.advance(Duration::from_secs(60));
        assert!(j.now() - t1 >= Duration::from_secs(60));
        assert!(j.now_utc() - u0 >= chrono::Duration::seconds(62));
    }

    #[test]
    fn slow_faults_are_separate_from_answer_faults() {
        let j = Journal::default();
        j.inject("k".into(), Fault::Slow { delay_ms: 50, times: 1 });
        assert_eq!(j.take_fault("k"), None);
        assert_eq!(j.take_delay("k"), Some(Duration::from_millis(50)));
        assert_eq!(j.take_delay("k"), None);
    }
}
