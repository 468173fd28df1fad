//! The ingest rate limit: a token bucket per API key, counted in rows (events
//! or customers), so one key cannot monopolise the database writer that every
//! workspace shares. `POST /api/v1/events` and `POST /api/v1/customers` take
//! their row count from the key's bucket before any work; a key over its
//! limit is answered 429 with `Retry-After`.
//!
//! The buckets live in this process's memory: with N replicas behind a load
//! balancer a key may send up to N times the rate. Time comes from the
//! app's clock, so tests move it by hand.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use perly_domain::ids::ApiKeyId;

use crate::error::ApiError;

/// Per-key ingest buckets: `rate` rows a second, up to `burst` at once.
#[derive(Debug)]
pub struct IngestLimit {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<ApiKeyId, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: DateTime<Utc>,
}

impl IngestLimit {
    /// `rate_per_second` rows a second per key, with `burst` rows at once
    /// (at least 1); a rate of 0 turns the limit off.
    pub fn new(rate_per_second: u32, burst: u32) -> Self {
        Self {
            rate: f64::from(rate_per_second),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::default(),
        }
    }

    /// No limit.
    pub fn off() -> Self {
        Self::new(0, 0)
    }

    /// Takes `rows` from `key`'s bucket at `now`, or answers 429 with the
    /// whole seconds to wait. A request larger than the burst is let through
    /// with a full bucket and leaves it in debt, so it is never refused for
    /// good and the rate still holds.
    pub fn take(&self, key: ApiKeyId, rows: usize, now: DateTime<Utc>) -> Result<(), ApiError> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        let rows = rows as f64;
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = buckets.entry(key).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        // A clock that went back refills nothing.
        let elapsed = (now - bucket.at).num_milliseconds().max(0) as f64 / 1000.0;
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.burst);
        bucket.at = bucket.at.max(now);
        let needed = rows.min(self.burst);
        if bucket.tokens >= needed {
            bucket.tokens -= rows;
            return Ok(());
        }
        let wait = ((needed - bucket.tokens) / self.rate).ceil().max(1.0) as u64;
        Err(ApiError::too_many_requests(
            wait,
            format!(
                "this API key is over its ingest limit of {} rows per second (burst {}); retry in {wait} s",
                self.rate, self.burst
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).single().expect("time")
    }

    #[test]
    fn a_key_gets_its_burst_then_its_rate_and_others_are_untouched() {
        let limit = IngestLimit::new(10, 20);
        let (a, b) = (ApiKeyId::new(), ApiKeyId::new());
        assert!(limit.take(a, 15, t0()).is_ok());
        let refused = limit.take(a, 10, t0()).expect_err("over the burst");
        assert_eq!((refused.status.as_u16(), refused.retry_after), (429, Some(1)));
        assert!(limit.take(b, 20, t0()).is_ok(), "another key has its own bucket");
        assert!(limit.take(a, 10, t0() + Duration::milliseconds(400)).is_err());
        assert!(limit.take(a, 10, t0() + Duration::seconds(1)).is_ok());
    }

    #[test]
    fn a_batch_larger_than_the_burst_waits_for_a_full_bucket_and_pays_its_debt() {
        let limit = IngestLimit::new(10, 20);
        let a = ApiKeyId::new();
        assert!(limit.take(a, 50, t0()).is_ok(), "a full bucket lets it through");
        let refused = limit.take(a, 1, t0() + Duration::seconds(1)).expect_err("in debt");
        assert_eq!(refused.retry_after, Some(3), "21 rows short at 10 a second");
        assert!(limit.take(a, 1, t0() + Duration::seconds(4)).is_ok());
    }

    #[test]
    fn a_rate_of_zero_is_no_limit() {
        let limit = IngestLimit::off();
        assert!(limit.take(ApiKeyId::new(), 1_000_000, t0()).is_ok());
    }
}
