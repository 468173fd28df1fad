//! The rescoring worker serves every workspace fairly: round-robin in
//! bounded slices, and one workspace's failure never stops the others.

use std::sync::atomic::{AtomicI64, Ordering};

use chrono::Duration;
use perly::rescore::Rescorer;
use serde_json::{json, Value};
use sqlx::Connection;

use crate::helpers::*;

/// When a customer (as the API shows it) was last scored.
fn scored_at(customer: &Value) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(customer["scored_at"].as_str().expect("scored_at"))
        .expect("a time")
        .with_timezone(&chrono::Utc)
}

/// `n` customers with some activity, through the given key.
async fn seed(app: &TestApp, key: &str, prefix: &str, n: usize) {
    let customers: Vec<Value> = (0..n)
        .map(
            |i| json!({"external_id": format!("{prefix}-{i}"), "name": format!("{prefix} {i}"), "seats_purchased": 10}),
        )
        .collect();
    let (status, body) = app
        .send(
            reqwest::Method::POST,
            "/api/v1/customers",
            Some(key),
            Some(json!({ "customers": customers })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let now = app.now();
    let events: Vec<Value> = (0..n)
        .map(|i| {
            event(
                &format!("{prefix}-e{i}"),
                &format!("{prefix}-{i}"),
                now - Duration::hours(1),
                json!({"type": "seats_changed", "seats_used": 7}),
            )
        })
        .collect();
    let (status, body) = app
        .send(
            reqwest::Method::POST,
            "/api/v1/events",
            Some(key),
            Some(json!({ "events": events })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

async fn customer_with(app: &TestApp, key: &str, external_id: &str) -> Value {
    let (status, body) = app
        .send(
            reqwest::Method::GET,
            &format!("/api/v1/customers/{external_id}"),
            Some(key),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test]
async fn a_workspace_with_corrupt_data_does_not_stop_rescoring_of_the_others() {
    let app = spawn_app().await;
    // The broken workspace is the first one the pass meets (oldest id).
    seed(&app, &app.key, "broken", 3).await;
    let (other, other_key) = app.other_workspace("Healthy Co").await;
    seed(&app, &other_key, "healthy", 3).await;
    let changed = app
        .execute_sql(&format!(
            "UPDATE workspaces SET scorecard = '{{not json' WHERE id = '{}'",
            app.ws
        ))
        .await;
    assert_eq!(changed, 1);

    let stats = app.rescore().await;
    assert_eq!(stats.failed_workspaces, 1, "{stats:?}");
    assert_eq!(stats.scored, 3, "the healthy workspace is scored: {stats:?}");
    for i in 0..3 {
        let c = customer_with(&app, &other_key, &format!("healthy-{i}")).await;
        assert!(c["score"].is_number(), "healthy-{i} has a score: {c}");
    }
    // The broken workspace's customers wait (still marked) for a fix.
    assert_eq!(app.store.pending_rescore(app.ws).await.expect("pending"), 3);
    assert_eq!(app.store.pending_rescore(other).await.expect("pending"), 0);
    assert!(!app.store.rescore_caught_up(app.ws).await.expect("caught up"));
    assert!(app.store.rescore_caught_up(other).await.expect("caught up"));
}

#[tokio::test]
async fn a_big_backlog_in_one_workspace_does_not_hold_up_another() {
    // Pipelined (the seeding's ingest counts as over at once) …
    a_big_backlog_waits_its_turn(std::time::Duration::ZERO).await;
}

#[tokio::test]
async fn a_big_backlog_does_not_hold_up_another_while_ingest_writes() {
    // … and one claim or record at a time (ingest counts as still writing).
    a_big_backlog_waits_its_turn(std::time::Duration::from_secs(3600)).await;
}

async fn a_big_backlog_waits_its_turn(ingest_quiet: std::time::Duration) {
    let app = spawn_app().await;
    // Workspace A (met first) has 40 customers waiting, B has one.
    seed(&app, &app.key, "big", 40).await;
    let (_, small_key) = app.other_workspace("Small Co").await;
    seed(&app, &small_key, "small", 1).await;

    // Each batch reads the clock twice (to claim, then to score once
    // claimed); the clock moves ten seconds per read (well within a claim's
    // lease: the pass claims the next batch while the last one records), so
    // a score's time says in which slice of the pass it was computed.
    let start = app.now();
    let step = Duration::seconds(10);
    let reads = AtomicI64::new(0);
    let clock = || start + step * reads.fetch_add(1, Ordering::SeqCst) as i32;
    let stats = Rescorer::new(app.store.clone(), 5)
        .with_ingest_quiet(ingest_quiet)
        .run_once_with_clock(&clock)
        .await
        .expect("pass");
    assert_eq!(stats.scored, 41);
    assert_eq!(stats.failed_workspaces, 0);

    let small = customer_with(&app, &small_key, "small-0").await;
    // Draining A first would take 8 slices before B's turn.
    assert!(
        scored_at(&small) <= start + step * 3,
        "B was scored in the first round, not after A's backlog: {}",
        scored_at(&small)
    );
    let mut latest = start;
    for i in 0..40 {
        latest = latest.max(scored_at(&customer_with(&app, &app.key, &format!("big-{i}")).await));
    }
    assert!(latest >= start + step * 15, "A's backlog took several slices: {latest}");
}

/// A pass that starts, then waits to claim (the database's writer is busy
/// with an ingest commit) while an event is stored, counts the event: its
/// score must not look older than the event, or a client waiting for a
/// score newer than its event waits for the customer's next change.
#[tokio::test]
async fn a_score_is_never_stamped_before_an_event_it_counts() {
    let app = spawn_app().await;
    seed(&app, &app.key, "c", 1).await;
    app.rescore().await;
    // The pass reads the clock at `start`; the event arrives a minute later,
    // before the pass's claim.
    let start = app.now();
    app.advance(Duration::minutes(1));
    let arrived = app.now();
    app.events(vec![event(
        "late-claim",
        "c-0",
        arrived,
        json!({"type": "nps_response", "score": 3}),
    )])
    .await;
    let reads = AtomicI64::new(0);
    let clock = || {
        if reads.fetch_add(1, Ordering::SeqCst) == 0 {
            start
        } else {
            arrived
        }
    };
    let stats = Rescorer::new(app.store.clone(), 10)
        .run_once_with_clock(&clock)
        .await
        .expect("pass");
    assert_eq!(stats.scored, 1);
    let customer = customer_with(&app, &app.key, "c-0").await;
    let scored_at = scored_at(&customer);
    assert!(
        scored_at >= arrived,
        "scored at {scored_at}, the event it counts arrived at {arrived}"
    );
}

/// A stored rollup that cannot be read (a format this build does not know)
/// is folded again from all the customer's events, with the same result.
#[tokio::test]
async fn an_unreadable_stored_rollup_is_folded_again_from_every_event() {
    let app = spawn_app().await;
    app.customers(json!([{"external_id": "acme", "name": "Acme", "seats_purchased": 10}]))
        .await;
    let mut rows = activity("acme", 5, 40, 0, app.now());
    rows.push(event(
        "nps",
        "acme",
        app.now(),
        json!({"type": "nps_response", "score": 9}),
    ));
    app.events(rows).await;
    app.rescore().await;
    let before = app.customer("acme").await;
    assert!(before["score"].is_number(), "{before}");

    let changed = app
        .execute_sql(&format!(
            "UPDATE rollup_blobs SET data = {} WHERE workspace_id = '{}'",
            if app.database_url.starts_with("postgres") {
                "'\\xff00'::bytea"
            } else {
                "x'ff00'"
            },
            app.ws
        ))
        .await;
    assert_eq!(changed, 1);
    // A new event: the customer is scored again from the refolded rollup
    // (an answer like the first, with the activity as well as the NPS).
    app.events(vec![event(
        "nps-2",
        "acme",
        app.now(),
        json!({"type": "nps_response", "score": 9}),
    )])
    .await;
    assert_eq!(app.rescore().await.scored, 1);
    let after = app.customer("acme").await;
    assert_eq!(after["coverage"], before["coverage"], "{after}");
    assert_eq!(after["score"], before["score"], "{after}");
    // Both NPS answers count: the one folded before the blob broke too.
    let nps = after["explanation"]["measures"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["measure"] == "nps"))
        .unwrap_or_else(|| panic!("an NPS measure: {after}"));
    assert!(
        nps["detail"].as_str().is_some_and(|d| d.contains("(2 in 180 days)")),
        "{nps}"
    );
}

/// A PostgreSQL app (`None` on SQLite, whose one writer never has two
/// transactions open at once) with the customer `acme`: five users active
/// over 40 days and one NPS answer (`nps-0`), not rescored yet.
async fn postgres_acme() -> Option<TestApp> {
    let app = spawn_app().await;
    if !app.database_url.starts_with("postgres") {
        return None;
    }
    app.customers(json!([{"external_id": "acme", "name": "Acme", "seats_purchased": 10}]))
        .await;
    let mut rows = activity("acme", 5, 40, 0, app.now());
    rows.push(nps(&app, "nps-0"));
    app.events(rows).await;
    Some(app)
}

/// Makes billing health the whole scorecard (every other measure weighs 0).
async fn billing_only_scorecard(app: &TestApp) {
    let (_, mut card) = app.get("/api/v1/scorecard").await;
    if let Some(measures) = card["measures"].as_object_mut() {
        for (name, m) in measures.iter_mut() {
            if name != "billing_health" {
                m["weight"] = json!(0.0);
            }
        }
    }
    let (status, body) = app.put("/api/v1/scorecard", card).await;
    assert_eq!(status, 200, "{body}");
}

/// An NPS answer of `acme`, now.
fn nps(app: &TestApp, id: &str) -> Value {
    event(id, "acme", app.now(), json!({"type": "nps_response", "score": 9}))
}

/// The detail of `acme`'s NPS measure, which counts its answers.
async fn nps_answers(app: &TestApp) -> String {
    let customer = app.customer("acme").await;
    customer["explanation"]["measures"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["measure"] == "nps"))
        .and_then(|m| m["detail"].as_str())
        .unwrap_or_else(|| panic!("an NPS measure: {customer}"))
        .to_owned()
}

/// PostgreSQL's ingest locks no row, so a customer's events may commit out
/// of the order they were stored in. An event whose transaction is still
/// open while a later event of the same customer commits and a rescore
/// folds the customer is folded once it commits, and counted exactly once.
/// (Folding after the newest event folded, as before the transaction-id
/// bound, loses it.) SQLite has one writer: no transaction stays open
/// beside another, so there is nothing to check there.
#[tokio::test]
async fn an_event_committed_after_a_later_one_was_folded_is_still_folded() {
    let Some(app) = postgres_acme().await else {
        return;
    };

    // Another writer stores `nps-1` for the same customer and stays open,
    // as an ingest lane in the middle of its transaction would.
    let mut conn = connect_database(&app.database_url).await;
    let (customer, payload): (String, String) =
        sqlx::query_as("SELECT customer_id, payload FROM events WHERE event_id = 'nps-0'")
            .fetch_one(&mut conn)
            .await
            .expect("nps-0 stored");
    let mut open = conn.begin().await.expect("begin");
    sqlx::query(&format!(
        "INSERT INTO events (workspace_id, event_id, customer_id, type, occurred_at, received_at, payload) \
         SELECT workspace_id, 'nps-1', customer_id, type, occurred_at, received_at, '{}' FROM events \
         WHERE event_id = 'nps-0' AND customer_id = '{customer}'",
        payload.replace("nps-0", "nps-1").replace('\'', "''")
    ))
    .execute(&mut *open)
    .await
    .expect("insert nps-1");

    // `nps-2` is stored after `nps-1` and commits first; the customer is
    // rescored meanwhile (for `nps-0` and the activity).
    app.events(vec![nps(&app, "nps-2")]).await;
    app.rescore().await;
    assert!(app.customer("acme").await["score"].is_number());

    open.commit().await.expect("commit nps-1");
    app.rescore().await;
    let answers = nps_answers(&app).await;
    assert!(
        answers.contains("(3 in 180 days)"),
        "every NPS answer counted once: {answers}"
    );
    // Nothing left to fold or mark: another pass scores nobody.
    assert_eq!(app.rescore().await.scored, 0);
}

/// A live event that arrives while its customer waits to be rescored for
/// an import (a scorecard change here) is news, also when a claim runs
/// before the marker has marked the event: a claim folds only the events
/// whose marks it sees, so the event is not scored under the import's mark
/// as history.
#[tokio::test]
async fn a_live_event_is_never_scored_under_an_imports_mark() {
    let Some(app) = postgres_acme().await else {
        return;
    };
    app.rescore().await;
    // Billing health is the whole scorecard: a failed retry alone is data
    // enough for a verdict.
    billing_only_scorecard(&app).await;

    // Another replica's marker is busy: this one's claims run without it.
    let mut conn = connect_database(&app.database_url).await;
    let mut busy = conn.begin().await.expect("begin");
    sqlx::query(perly_store::event_marks::WRITES_NO_EVENTS)
        .execute(&mut *busy)
        .await
        .expect("lock");
    sqlx::query("SELECT through FROM event_marks WHERE id = 1 FOR UPDATE")
        .execute(&mut *busy)
        .await
        .expect("the marker's row");
    app.events(vec![event(
        "retry-1",
        "acme",
        app.now(),
        json!({"type": "billing_retry_failed", "amount": 100.0, "attempt": 1}),
    )])
    .await;
    app.rescore().await;
    busy.commit().await.expect("commit");
    app.rescore().await;

    let alerts = app.alerts("acme", "billing_retry_failed").await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert!(alerts[0]["import_id"].is_null(), "news, not history: {}", alerts[0]);
}

/// A customer whose new events are marked while another replica's claim
/// takes its lease has its version moved, so that claim, which folds only
/// what was marked before, does not clear the mark: the events are scored
/// by the next claim. The marker decides whether a customer is marked
/// already from the row it holds locked, not from the statement's
/// snapshot: one leased just after that snapshot was taken was skipped,
/// the claim then cleared its mark, and its events waited for the
/// customer's next event (tried: the count below stayed at 1).
#[tokio::test]
async fn events_marked_while_another_replica_takes_the_lease_are_scored() {
    let Some(app) = postgres_acme().await else {
        return;
    };
    app.rescore().await;
    // `nps-1` is marked (live) and waits for a claim.
    app.events(vec![nps(&app, "nps-1")]).await;
    assert!(!app.store.rescore_caught_up(app.ws).await.expect("marker"));
    let mut conn = connect_database(&app.database_url).await;
    let (customer, version): (String, i64) = sqlx::query_as(
        "SELECT r.customer_id, r.version FROM rollups r JOIN customers c ON c.id = r.customer_id \
         WHERE c.external_id = 'acme'",
    )
    .fetch_one(&mut conn)
    .await
    .expect("acme's rollup");
    // `nps-2` is stored; another replica's claim leases acme and has not
    // committed when this replica's marker starts.
    app.events(vec![nps(&app, "nps-2")]).await;
    let mut claim = conn.begin().await.expect("begin");
    sqlx::query(&format!(
        "UPDATE rollups SET lease_until = 9000000000000 WHERE customer_id = '{customer}'"
    ))
    .execute(&mut *claim)
    .await
    .expect("lease");
    let store = app.store.clone();
    let ws = app.ws;
    let marker = tokio::spawn(async move { store.rescore_caught_up(ws).await });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    claim.commit().await.expect("commit the lease");
    marker.await.expect("marker task").expect("marker");
    // The other replica's claim read its bound before the marker moved it:
    // it folded `nps-1` only, and its record clears the mark if the
    // version is the one it claimed.
    app.execute_sql(&format!(
        "UPDATE rollups SET dirty = CASE WHEN version = {version} THEN 0 ELSE 1 END, lease_until = NULL \
         WHERE customer_id = '{customer}'"
    ))
    .await;
    app.rescore().await;
    let answers = nps_answers(&app).await;
    assert!(
        answers.contains("(3 in 180 days)"),
        "nps-2 scored by the next claim: {answers}"
    );
}

/// Gives the open transaction `tx` an id, as its first write would: from
/// then on it is among the running transactions the marker's bound looks at.
async fn with_an_id(tx: &mut sqlx::Transaction<'_, sqlx::Any>) {
    sqlx::query("SELECT pg_current_xact_id()::text")
        .execute(&mut **tx)
        .await
        .expect("the transaction has an id");
}

/// A transaction that stores no event and says so
/// ([`perly_store::event_marks::WRITES_NO_EVENTS`], as rescoring's
/// records do) does not hold scoring back while it stays open: the events
/// stored after it began are scored in the next pass. (Records run beside
/// the next claim; waited for, they kept every claim one record behind.)
#[tokio::test]
async fn a_transaction_that_stores_no_events_does_not_hold_scoring_back() {
    let Some(app) = postgres_acme().await else {
        return;
    };
    app.rescore().await;

    let mut conn = connect_database(&app.database_url).await;
    let mut open = conn.begin().await.expect("begin");
    sqlx::query(perly_store::event_marks::WRITES_NO_EVENTS)
        .execute(&mut *open)
        .await
        .expect("lock");
    with_an_id(&mut open).await;

    app.events(vec![nps(&app, "nps-1")]).await;
    assert_eq!(
        app.rescore().await.scored,
        1,
        "scored while the other transaction is open"
    );
    let answers = nps_answers(&app).await;
    assert!(answers.contains("(2 in 180 days)"), "{answers}");
    open.commit().await.expect("commit");
}

/// A transaction open in another database of the cluster (another
/// application's, or a test's next door) cannot store Perly's events and
/// does not hold scoring back; one open in Perly's own database that
/// writes may store events, and the events stored after it began wait for
/// its end (their order against its own is not known before).
#[tokio::test]
async fn only_transactions_of_perlys_own_database_hold_scoring_back() {
    let Some(app) = postgres_acme().await else {
        return;
    };
    app.rescore().await;
    let next_door = std::env::var("PERLY_TEST_DATABASE_URL").expect("a postgres URL");
    let mut other = connect_database(&next_door).await;
    let mut other_tx = other.begin().await.expect("begin next door");
    with_an_id(&mut other_tx).await;

    app.events(vec![nps(&app, "nps-1")]).await;
    assert_eq!(
        app.rescore().await.scored,
        1,
        "next door's open transaction is not waited for"
    );

    let mut own = connect_database(&app.database_url).await;
    let mut own_tx = own.begin().await.expect("begin");
    with_an_id(&mut own_tx).await;
    app.events(vec![nps(&app, "nps-2")]).await;
    assert_eq!(
        app.rescore().await.scored,
        0,
        "waits for the open transaction of its own database"
    );
    own_tx.commit().await.expect("commit");
    assert_eq!(app.rescore().await.scored, 1);
    let answers = nps_answers(&app).await;
    assert!(answers.contains("(3 in 180 days)"), "{answers}");
    other_tx.commit().await.expect("commit next door");
}

/// A PostgreSQL database restored (`pg_restore`) into a younger cluster
/// keeps the source's transaction ids, ahead of the new cluster's: new
/// events would sort below what the stored rollups folded and what the
/// marker marked. The marker sees its bound ahead of the current
/// transaction and renumbers them; new events are then folded and counted,
/// old ones once.
#[tokio::test]
async fn events_after_a_restore_into_a_younger_cluster_are_still_folded() {
    let Some(app) = postgres_acme().await else {
        return;
    };
    app.rescore().await;
    assert!(app.customer("acme").await["score"].is_number());

    // The source cluster was a billion transactions ahead.
    let ahead = 1_000_000_000;
    app.execute_sql(&format!("UPDATE events SET xid = xid + {ahead}")).await;
    app.execute_sql(&format!("UPDATE rollup_blobs SET folded_xid = folded_xid + {ahead}"))
        .await;
    app.execute_sql(&format!("UPDATE event_marks SET through = through + {ahead}"))
        .await;
    // The marker renumbers (a server starting on the restored database runs
    // it before it serves anything).
    app.rescore().await;

    app.events(vec![nps(&app, "nps-1")]).await;
    app.rescore().await;
    let answers = nps_answers(&app).await;
    assert!(
        answers.contains("(2 in 180 days)"),
        "the new answer counted, the old one once: {answers}"
    );
    app.events(vec![nps(&app, "nps-2")]).await;
    assert_eq!(app.rescore().await.scored, 1, "later events are marked as usual");
}

/// SQLite's marker marks a flood's backlog in slices of 20,000 events
/// (ingest's groups take turns between them), and all of it in one run: a
/// customer whose events all come after the first slice is marked too.
/// (PostgreSQL marks up to its bound in one statement.)
#[tokio::test]
async fn the_sqlite_marker_marks_a_backlog_bigger_than_a_slice_in_one_run() {
    let app = spawn_app().await;
    if app.database_url.starts_with("postgres") {
        return;
    }
    app.customers(json!([
        {"external_id": "early", "name": "Early"},
        {"external_id": "late", "name": "Late"},
    ]))
    .await;
    app.rescore().await;
    assert_eq!(app.store.pending_rescore(app.ws).await.expect("pending"), 0);
    assert!(app.store.rescore_caught_up(app.ws).await.expect("caught up"));

    // Stored as the events API stores them, without marks: 25,000 events
    // of `early`, then 20,000 of `late`.
    for (customer, n) in [("early", 25_000), ("late", 20_000)] {
        app.execute_sql(&format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {n}) \
             INSERT INTO events (workspace_id, event_id, customer_id, type, occurred_at, received_at, payload) \
             SELECT c.workspace_id, '{customer}-' || i, c.id, 'nps_response', 0, 0, '{{}}' FROM n \
             JOIN customers c ON c.workspace_id = '{}' AND c.external_id = '{customer}'",
            app.ws
        ))
        .await;
    }
    assert!(
        !app.store.rescore_caught_up(app.ws).await.expect("caught up"),
        "events not marked yet are waited for"
    );
    assert_eq!(
        app.store.pending_rescore(app.ws).await.expect("pending"),
        2,
        "both customers marked"
    );
    let mut conn = connect_database(&app.database_url).await;
    let (through, newest): (i64, i64) =
        sqlx::query_as("SELECT (SELECT through FROM event_marks), (SELECT MAX(seq) FROM events)")
            .fetch_one(&mut conn)
            .await
            .expect("the marker's position");
    assert_eq!(through, newest + 1, "every event marked");
}

/// The rescoring worker sees the events API writing (and leaves the
/// database's writer to it): from the first batch on, and for the quiet
/// time after the last one was answered.
#[tokio::test]
async fn the_store_tells_the_rescoring_worker_when_ingest_is_writing() {
    let app = spawn_app().await;
    let hour = std::time::Duration::from_secs(3600);
    assert!(!app.store.ingest_active(hour), "nothing ingested yet");
    seed(&app, &app.key, "c", 3).await;
    assert!(app.store.ingest_active(hour), "a batch was answered a moment ago");
    assert_eq!(app.store.ingest_waiting(), 0, "every batch was answered");
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(
        !app.store.ingest_active(std::time::Duration::from_millis(50)),
        "quiet for longer than 50 ms"
    );
}

/// While the events API's callers wait for the database's writer, a pass
/// takes customers in slices of at most 250 (a record holds the writer
/// while they wait); otherwise in slices of the configured size. (No batch
/// is pending here: waiting from 0 batches on stands for callers waiting.)
#[tokio::test]
async fn slices_are_short_while_ingest_waits_for_the_writer() {
    for (ingest_waiting, slices) in [(0, 2), (perly::rescore::INGEST_WAITING, 1)] {
        let app = spawn_app().await;
        seed(&app, &app.key, "c", 300).await;
        // The clock moves a second per read: customers scored in the same
        // slice share their time.
        let start = app.now();
        let reads = AtomicI64::new(0);
        let clock = || start + Duration::seconds(reads.fetch_add(1, Ordering::SeqCst));
        let stats = Rescorer::new(app.store.clone(), 1_000)
            .with_ingest_waiting(ingest_waiting)
            .run_once_with_clock(&clock)
            .await
            .expect("pass");
        assert_eq!(stats.scored, 300);
        let mut times = std::collections::BTreeSet::new();
        for i in 0..300 {
            times.insert(scored_at(&customer_with(&app, &app.key, &format!("c-{i}")).await));
        }
        assert_eq!(
            times.len(),
            slices,
            "slices with ingest waiting from {ingest_waiting} batches: {times:?}"
        );
    }
}

/// While ingest has a backlog the pass steps aside between slices (from 0
/// batches on stands for a backlog here), and every customer is still
/// scored; without one it never waits. Nothing is stepped aside for after
/// the last slice.
#[tokio::test]
async fn the_pass_steps_aside_between_slices_while_ingest_has_a_backlog() {
    for (backlog, stepped_aside) in [(0, 3), (perly::rescore::INGEST_BACKLOG, 0)] {
        let app = spawn_app().await;
        seed(&app, &app.key, "c", 300).await;
        let stats = Rescorer::new(app.store.clone(), 100)
            .with_ingest_backlog(backlog)
            .run_once(app.now())
            .await
            .expect("pass");
        assert_eq!(stats.scored, 300, "backlog from {backlog}");
        assert_eq!(stats.stepped_aside, stepped_aside, "backlog from {backlog}");
    }
}

/// Every customer of a rescored batch is stamped as scored, whether its
/// data gave a score or not: the profile's `scored_at` says when Perly last
/// looked, and a customer without a verdict is not left looking unscored.
#[tokio::test]
async fn a_customer_without_a_score_is_stamped_with_the_one_scored_beside_it() {
    let app = spawn_app().await;
    // A failed retry is data for a score, seats are data for none.
    billing_only_scorecard(&app).await;
    app.customers(json!([
        {"external_id": "paying", "name": "Paying", "seats_purchased": 10},
        {"external_id": "quiet", "name": "Quiet", "seats_purchased": 10},
    ]))
    .await;
    app.events(vec![
        event(
            "retry-1",
            "paying",
            app.now(),
            json!({"type": "billing_retry_failed", "amount": 100.0, "attempt": 1}),
        ),
        event(
            "seats-1",
            "quiet",
            app.now(),
            json!({"type": "seats_changed", "seats_used": 7}),
        ),
    ])
    .await;
    app.rescore().await;

    let paying = app.customer("paying").await;
    let quiet = app.customer("quiet").await;
    assert!(paying["score"].is_i64(), "{paying}");
    assert!(quiet["score"].is_null(), "{quiet}");
    assert_eq!(scored_at(&paying), app.now(), "{paying}");
    assert_eq!(scored_at(&quiet), app.now(), "{quiet}");
}
