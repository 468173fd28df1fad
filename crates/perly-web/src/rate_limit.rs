//! The ingest rate limit: token buckets counted in rows (events or
//! customers), one per API key and one per workspace, so neither one key
//! nor a workspace that makes many keys can monopolise the database writer
//! that every workspace shares. `POST /api/v1/events` and
//! `POST /api/v1/customers` take their row count from both buckets before
//! any work; over either limit the answer is 429 with `Retry-After`.
//!
//! The buckets live in this process's memory: with N replicas behind a load
//! balancer a key may send up to N times the rate. Full buckets are
//! forgotten once there are many, so the map stays small. Time comes from
//! the app's clock, so tests move it by hand.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use perly_domain::ids::{ApiKeyId, WorkspaceId};

use crate::error::ApiError;

/// Buckets kept before full ones are forgotten.
const PRUNE_AT: usize = 10_000;

/// One kind of bucket: `rate` rows a second, up to `burst` at once; a
/// rate of 0 is no limit.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    pub per_second: u32,
    pub burst: u32,
}

impl Rate {
    pub const OFF: Rate = Rate {
        per_second: 0,
        burst: 0,
    };

    fn on(&self) -> bool {
        self.per_second > 0
    }
    fn rate(&self) -> f64 {
        f64::from(self.per_second)
    }
    fn burst(&self) -> f64 {
        f64::from(self.burst.max(1))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Owner {
    Key(ApiKeyId),
    Workspace(WorkspaceId),
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: DateTime<Utc>,
}

impl Bucket {
    /// The bucket refilled up to `now` (a clock that went back refills nothing).
    fn at(self, rate: Rate, now: DateTime<Utc>) -> Bucket {
        let elapsed = (now - self.at).num_milliseconds().max(0) as f64 / 1000.0;
        Bucket {
            tokens: (self.tokens + elapsed * rate.rate()).min(rate.burst()),
            at: self.at.max(now),
        }
    }
}

/// The ingest buckets of every key and workspace.
#[derive(Debug)]
pub struct IngestLimit {
    key: Rate,
    workspace: Rate,
    buckets: Mutex<HashMap<Owner, Bucket>>,
}

impl IngestLimit {
    /// `key` per API key, `workspace` per workspace (all its keys together).
    pub fn new(key: Rate, workspace: Rate) -> Self {
        Self {
            key,
            workspace,
            buckets: Mutex::default(),
        }
    }

    /// No limit.
    pub fn off() -> Self {
        Self::new(Rate::OFF, Rate::OFF)
    }

    /// Takes `rows` from the buckets of `key` and of its workspace `ws` at
    /// `now`, or answers 429 with the whole seconds to wait (and takes
    /// nothing). A request larger than a burst is let through with a full
    /// bucket and leaves it in debt, so it is never refused for good and the
    /// rate still holds.
    pub fn take(&self, ws: WorkspaceId, key: ApiKeyId, rows: usize, now: DateTime<Utc>) -> Result<(), ApiError> {
        let rows = rows as f64;
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= PRUNE_AT {
            let (k, w) = (self.key, self.workspace);
            buckets.retain(|owner, b| {
                let rate = match owner {
                    Owner::Key(_) => k,
                    Owner::Workspace(_) => w,
                };
                b.at(rate, now).tokens < rate.burst()
            });
        }
        let checks = [
            (Owner::Key(key), self.key, "this API key"),
            (
                Owner::Workspace(ws),
                self.workspace,
                "this workspace (all its API keys together)",
            ),
        ];
        let mut refilled = Vec::with_capacity(2);
        for (owner, rate, who) in checks {
            if !rate.on() {
                continue;
            }
            let bucket = buckets
                .get(&owner)
                .copied()
                .unwrap_or(Bucket {
                    tokens: rate.burst(),
                    at: now,
                })
                .at(rate, now);
            let needed = rows.min(rate.burst());
            if bucket.tokens < needed {
                let wait = ((needed - bucket.tokens) / rate.rate()).ceil().max(1.0) as u64;
                return Err(ApiError::too_many_requests(
                    wait,
                    format!(
                        "{who} is over its ingest limit of {} rows per second (burst {}); retry in {wait} s",
                        rate.per_second,
                        rate.burst.max(1)
                    ),
                ));
            }
            refilled.push((owner, bucket));
        }
        for (owner, mut bucket) in refilled {
            bucket.tokens -= rows;
            buckets.insert(owner, bucket);
        }
        Ok(())
    }

    /// How many buckets are kept (for tests).
    pub fn buckets(&self) -> usize {
        self.buckets.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).single().expect("time")
    }

    fn rate(per_second: u32, burst: u32) -> Rate {
        Rate { per_second, burst }
    }

    #[test]
    fn a_key_gets_its_burst_then_its_rate_and_others_are_untouched() {
        let limit = IngestLimit::new(rate(10, 20), Rate::OFF);
        let ws = WorkspaceId::new();
        let (a, b) = (ApiKeyId::new(), ApiKeyId::new());
        assert!(limit.take(ws, a, 15, t0()).is_ok());
        let refused = limit.take(ws, a, 10, t0()).expect_err("over the burst");
        assert_eq!((refused.status.as_u16(), refused.retry_after), (429, Some(1)));
        assert!(limit.take(ws, b, 20, t0()).is_ok(), "another key has its own bucket");
        assert!(limit.take(ws, a, 10, t0() + Duration::milliseconds(400)).is_err());
        assert!(limit.take(ws, a, 10, t0() + Duration::seconds(1)).is_ok());
    }

    #[test]
    fn a_batch_larger_than_the_burst_waits_for_a_full_bucket_and_pays_its_debt() {
        let limit = IngestLimit::new(rate(10, 20), Rate::OFF);
        let (ws, a) = (WorkspaceId::new(), ApiKeyId::new());
        assert!(limit.take(ws, a, 50, t0()).is_ok(), "a full bucket lets it through");
        let refused = limit.take(ws, a, 1, t0() + Duration::seconds(1)).expect_err("in debt");
        assert_eq!(refused.retry_after, Some(3), "21 rows short at 10 a second");
        assert!(limit.take(ws, a, 1, t0() + Duration::seconds(4)).is_ok());
    }

    #[test]
    fn many_keys_of_one_workspace_share_its_ceiling_and_other_workspaces_are_untouched() {
        let limit = IngestLimit::new(rate(10, 20), rate(10, 30));
        let (ws, other) = (WorkspaceId::new(), WorkspaceId::new());
        let keys: Vec<ApiKeyId> = (0..5).map(|_| ApiKeyId::new()).collect();
        assert!(limit.take(ws, keys[0], 20, t0()).is_ok());
        assert!(limit.take(ws, keys[1], 10, t0()).is_ok());
        let refused = limit
            .take(ws, keys[2], 10, t0())
            .expect_err("the workspace is at its ceiling");
        assert!(refused.message.contains("workspace"), "{}", refused.message);
        assert!(limit.take(other, ApiKeyId::new(), 20, t0()).is_ok());
        // A refused request takes nothing: key 2's own bucket is still full.
        assert!(limit.take(ws, keys[2], 20, t0() + Duration::seconds(2)).is_ok());
    }

    #[test]
    fn full_buckets_are_forgotten_once_there_are_many() {
        let limit = IngestLimit::new(rate(10, 20), Rate::OFF);
        let ws = WorkspaceId::new();
        for _ in 0..PRUNE_AT {
            assert!(limit.take(ws, ApiKeyId::new(), 1, t0()).is_ok());
        }
        assert_eq!(limit.buckets(), PRUNE_AT);
        // A second later every bucket has refilled: all are forgotten.
        assert!(limit.take(ws, ApiKeyId::new(), 1, t0() + Duration::seconds(1)).is_ok());
        assert_eq!(limit.buckets(), 1);
    }

    #[test]
    fn a_rate_of_zero_is_no_limit() {
        let limit = IngestLimit::off();
        assert!(limit.take(WorkspaceId::new(), ApiKeyId::new(), 1_000_000, t0()).is_ok());
    }
}
