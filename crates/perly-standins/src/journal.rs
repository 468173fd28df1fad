//! The journal of one stand-in: every webhook request it answered, in
//! arrival order, and the faults waiting to be applied to each webhook.
//!
//! Webhook handlers ask it first for a delay (`take_delay`) and a fault
//! (`take_fault`) for the webhook's key, answer, then `record` what they
//! answered. Tests and the messages page read it back. Faults are keyed by
//! a vendor-chosen key (Slack: the URL path, Discord: the webhook id) so that
//! the host spelling of a URL (`127.0.0.1` or `localhost`) does not matter.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::{Fault, Received};

#[derive(Default)]
pub(crate) struct Journal {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    requests: Vec<Received>,
    faults: HashMap<String, Vec<Fault>>,
}

impl Journal {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the lists half-written.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
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

    #[test]
    fn slow_faults_are_separate_from_answer_faults() {
        let j = Journal::default();
        j.inject("k".into(), Fault::Slow { delay_ms: 50, times: 1 });
        assert_eq!(j.take_fault("k"), None);
        assert_eq!(j.take_delay("k"), Some(Duration::from_millis(50)));
        assert_eq!(j.take_delay("k"), None);
    }
}
