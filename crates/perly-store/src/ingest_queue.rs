//! Group commit for the events API: each request's batch is prepared on the
//! caller's task (payload JSON, timestamps, whether each event is late),
//! then queued; one writer task takes every batch waiting, up to
//! [`GROUP_EVENTS`] events, and stores them in one transaction through a
//! [`GroupWriter`] ([`crate::sqlite_ingest`], [`crate::postgres_ingest`]).
//! Each caller is answered after the commit: a 200 still means committed.
//!
//! Why: a commit writes every page the transaction changed. Requests that
//! arrive together share pages (the end of the events table and of its
//! indexes, the rollups of common customers, the import), written once per
//! group instead of once per request; on PostgreSQL they also stop waiting
//! on each other's row locks of shared customers. If a group fails for a
//! reason other than an outage, each batch is written again on its own, so
//! one batch's failure is not the others'.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use perly_domain::event::Event;
use perly_domain::ids::WorkspaceId;
use tokio::sync::{mpsc, oneshot};

use crate::sql::{ms, Origin};
use crate::{Error, IngestMode, IngestOutcome, Result};

/// Events per SQLite transaction at most: a group that large takes ~0.1–0.3
/// s, which bounds the wait of the last caller in it.
pub(crate) const GROUP_EVENTS: usize = 20_000;
/// Batches waiting for the writer at most; callers beyond wait to queue
/// (back-pressure on the HTTP handlers instead of memory).
const QUEUE: usize = 64;

/// One request's events, ready to store.
#[derive(Debug)]
pub(crate) struct Batch {
    pub ws: WorkspaceId,
    pub rows: Vec<Row>,
    pub origin: Origin,
    pub now: DateTime<Utc>,
    /// When it was queued: the SQLite writer bounds the whole wait for the
    /// lock by the busy timeout.
    pub queued: Instant,
}

#[derive(Debug)]
pub(crate) struct Row {
    pub event_id: String,
    pub customer: String,
    pub kind: &'static str,
    pub occurred_at: i64,
    /// Older than the live window when it arrived ([`perly_domain::imports::is_late`]).
    pub late: bool,
    pub payload: String,
}

impl Batch {
    fn of(ws: WorkspaceId, events: &[Event], mode: IngestMode, now: DateTime<Utc>) -> Result<Self> {
        let rows = events
            .iter()
            .map(|e| {
                Ok(Row {
                    event_id: e.id.clone(),
                    customer: e.customer_id.clone(),
                    kind: e.kind.type_name(),
                    occurred_at: ms(e.occurred_at),
                    late: perly_domain::imports::is_late(e.occurred_at, now),
                    payload: serde_json::to_string(e).map_err(|err| crate::sql::corrupt("event", err))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let origin = match mode {
            IngestMode::Live => Origin::Live,
            IngestMode::Backfill => Origin::Backfill,
        };
        Ok(Self {
            ws,
            rows,
            origin,
            now,
            queued: Instant::now(),
        })
    }
}

/// Stores a group of batches in one transaction.
#[async_trait]
pub(crate) trait GroupWriter: Send + Sync + 'static {
    /// The outcomes of each batch's events, in the order of `group`; in a
    /// batch, the first event with an id is stored, later ones (and ids
    /// stored before, by this group's earlier batches too) are duplicates.
    async fn write(&self, group: Vec<Arc<Batch>>) -> Result<Vec<Vec<IngestOutcome>>>;
}

/// Where a batch's outcome goes, and its place in the pending count: held
/// with the batch in the queue and given up once it is answered, so a
/// batch whose caller went away (a client that hung up) still counts until
/// it is written.
type Reply = (oneshot::Sender<Result<Vec<IngestOutcome>>>, Pending);

/// The handle the store keeps; the writer task stops when it is dropped.
#[derive(Debug)]
pub(crate) struct IngestQueue {
    queue: mpsc::Sender<(Arc<Batch>, Reply)>,
    activity: Arc<Activity>,
}

/// Whether the events API is writing: batches queued or being written, and
/// when the last one was answered. The rescoring worker reads it to leave
/// the database's writer to ingest ([`crate::Store::ingest_active`]).
#[derive(Debug)]
struct Activity {
    started: Instant,
    /// Batches queued or being written.
    pending: AtomicUsize,
    /// When the last batch was answered, in ms after `started`.
    last_answered_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            pending: AtomicUsize::new(0),
            last_answered_ms: AtomicU64::new(0),
        }
    }

    fn is_active(&self, quiet: Duration) -> bool {
        if self.pending.load(Ordering::Acquire) > 0 {
            return true;
        }
        let last = self.last_answered_ms.load(Ordering::Acquire);
        // 0: never answered.
        last > 0 && (self.started.elapsed().as_millis() as u64).saturating_sub(last) < quiet.as_millis() as u64
    }
}

/// Counts a batch as pending while it lives (queued, written, answered or
/// dropped with its caller).
struct Pending(Arc<Activity>);

impl Pending {
    fn new(activity: &Arc<Activity>) -> Self {
        activity.pending.fetch_add(1, Ordering::AcqRel);
        Self(activity.clone())
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        let at = (self.0.started.elapsed().as_millis() as u64).max(1);
        self.0.last_answered_ms.store(at, Ordering::Release);
        self.0.pending.fetch_sub(1, Ordering::AcqRel);
    }
}

impl IngestQueue {
    /// Starts `lanes` writer tasks taking groups from one queue: one for
    /// SQLite (one writer at a time anyway); several for PostgreSQL, where
    /// a group may wait on rows the rescoring worker holds while another
    /// group goes ahead.
    pub(crate) fn start(writer: impl GroupWriter, lanes: usize, group_events: usize) -> Self {
        let (queue, rx) = mpsc::channel(QUEUE);
        let (rx, writer) = (Arc::new(tokio::sync::Mutex::new(rx)), Arc::new(writer));
        for _ in 0..lanes.max(1) {
            tokio::spawn(run(rx.clone(), writer.clone(), group_events));
        }
        Self {
            queue,
            activity: Arc::new(Activity::new()),
        }
    }

    /// Whether a batch is queued or being written, or one was answered
    /// less than `quiet` ago.
    pub(crate) fn is_active(&self, quiet: Duration) -> bool {
        self.activity.is_active(quiet)
    }

    /// Batches queued or being written now, less one: above zero, more
    /// than one caller waits for its commit. Not less one per writer lane
    /// on PostgreSQL: its records hold the rows ingest's lanes lock, and
    /// with the rescoring worker's short slices from the second batch on
    /// ingest took 11.6 k events/s at 100,000 customers, from the fifth
    /// on 7.7 k/s (BENCHMARKS.md).
    pub(crate) fn waiting(&self) -> usize {
        self.activity.pending.load(Ordering::Acquire).saturating_sub(1)
    }

    /// Stores `events` of workspace `ws`: see [`crate::Store::ingest_events`].
    pub(crate) async fn ingest(
        &self,
        ws: WorkspaceId,
        events: &[Event],
        mode: IngestMode,
        now: DateTime<Utc>,
    ) -> Result<Vec<IngestOutcome>> {
        let batch = Arc::new(Batch::of(ws, events, mode, now)?);
        let pending = Pending::new(&self.activity);
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((batch, (reply, pending)))
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

fn stopped() -> Error {
    Error::Unreachable(sqlx::Error::WorkerCrashed)
}

type Queue = Arc<tokio::sync::Mutex<mpsc::Receiver<(Arc<Batch>, Reply)>>>;

async fn run(rx: Queue, writer: Arc<impl GroupWriter>, group_events: usize) {
    loop {
        let jobs = {
            let mut rx = rx.lock().await;
            let Some(first) = rx.recv().await else { break };
            let mut events = first.0.rows.len();
            let mut jobs = vec![first];
            while events < group_events {
                match rx.try_recv() {
                    Ok(job) => {
                        events += job.0.rows.len();
                        jobs.push(job);
                    }
                    Err(_) => break,
                }
            }
            jobs
        };
        let (group, replies): (Vec<Arc<Batch>>, Vec<Reply>) = jobs.into_iter().unzip();
        let answers: Vec<Result<Vec<IngestOutcome>>> = match writer.write(group.clone()).await {
            Ok(all) => all.into_iter().map(Ok).collect(),
            Err(e) if group.len() == 1 => vec![Err(e)],
            Err(e) if e.is_unreachable() => group.iter().map(|_| Err(copy(&e))).collect(),
            Err(_) => {
                let mut each = Vec::with_capacity(group.len());
                for batch in group {
                    let one = writer.write(vec![batch]).await;
                    each.push(one.map(|one| one.into_iter().next().unwrap_or_default()));
                }
                each
            }
        };
        for ((reply, pending), answer) in replies.into_iter().zip(answers) {
            let _ = reply.send(answer);
            drop(pending);
        }
    }
}

/// A store error for each caller of a failed group.
fn copy(e: &Error) -> Error {
    match e {
        Error::Unreachable(_) => Error::Unreachable(sqlx::Error::Protocol(e.to_string())),
        Error::Invalid(m) => Error::Invalid(m.clone()),
        Error::Conflict(m) => Error::Conflict(m.clone()),
        Error::Corrupt(m) => Error::Corrupt(m.clone()),
        other => Error::Unavailable(sqlx::Error::Protocol(other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ingest_is_active_while_a_batch_is_pending_and_for_a_quiet_time_after() {
        let activity = Arc::new(Activity::new());
        assert!(!activity.is_active(Duration::from_secs(60)), "nothing written yet");
        let pending = Pending::new(&activity);
        let second = Pending::new(&activity);
        assert!(activity.is_active(Duration::ZERO), "a batch is pending");
        assert_eq!(activity.pending.load(Ordering::Relaxed), 2);
        drop((pending, second));
        assert_eq!(activity.pending.load(Ordering::Relaxed), 0);
        assert!(activity.is_active(Duration::from_secs(60)), "answered just now");
        std::thread::sleep(Duration::from_millis(30));
        assert!(
            !activity.is_active(Duration::from_millis(20)),
            "quiet for longer than 20 ms since"
        );
        assert!(activity.is_active(Duration::from_secs(60)), "but not for a minute");
    }

    /// Holds every group until a permit is given.
    struct Gate(Arc<tokio::sync::Semaphore>);

    #[async_trait]
    impl GroupWriter for Gate {
        async fn write(&self, group: Vec<Arc<Batch>>) -> Result<Vec<Vec<IngestOutcome>>> {
            let _permit = self.0.acquire().await.expect("gate open");
            Ok(group.iter().map(|_| Vec::new()).collect())
        }
    }

    #[tokio::test]
    async fn batches_count_as_waiting_until_written_even_when_their_caller_went_away() {
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let queue = Arc::new(IngestQueue::start(Gate(gate.clone()), 1, GROUP_EVENTS));
        let ws = WorkspaceId::new();
        let callers: Vec<_> = (0..3)
            .map(|_| {
                let queue = queue.clone();
                tokio::spawn(async move { queue.ingest(ws, &[], IngestMode::Live, Utc::now()).await })
            })
            .collect();
        let settled = |want: usize| {
            let queue = queue.clone();
            async move {
                for _ in 0..200 {
                    if queue.waiting() == want {
                        return true;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                false
            }
        };
        // Three batches in: two count as waiting.
        assert!(settled(2).await, "two waiting: {}", queue.waiting());
        // A caller that hangs up leaves its batch queued: still waiting.
        callers[0].abort();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(
            queue.waiting(),
            2,
            "the hung-up caller's batch still waits to be written"
        );
        gate.add_permits(10);
        assert!(settled(0).await, "all written: {}", queue.waiting());
        assert!(!queue.is_active(Duration::ZERO));
    }
}
