use serde_json::{json, Value};

use crate::helpers::*;

#[tokio::test]
async fn customers_and_events_are_ingested_with_per_row_results() {
    let app = spawn_app().await;
    let (status, body) = app
        .post(
            "/api/v1/customers",
            json!({"customers": [
                {"external_id": "acme", "name": "Acme Corp", "plan": "pro", "mrr": 4200.0, "seats_purchased": 50,
                 "owner_email": "ana@example.com", "parent_external_id": null},
                {"external_id": "acme-eu", "name": "Acme EU", "parent_external_id": "acme"}
            ]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((body["created"].as_u64(), body["updated"].as_u64()), (Some(2), Some(0)));

    // Upserting again updates, keeping fields that were not sent.
    let (_, body) = app
        .post(
            "/api/v1/customers",
            json!({"customers": [{"external_id": "acme", "name": "Acme Corporation"}]}),
        )
        .await;
    assert_eq!(body["results"][0]["status"], "updated");
    let acme = app.customer("acme").await;
    assert_eq!(acme["name"], "Acme Corporation");
    assert_eq!(acme["plan"], "pro");
    assert_eq!(acme["seats_purchased"], 50);

    let now = app.now();
    let body = app
        .events(vec![
            event("evt_1", "acme", now, json!({"type": "user_active", "user_id": "u1"})),
            event(
                "evt_2",
                "acme",
                now,
                json!({"type": "ticket_opened", "ticket_id": "t1", "priority": "urgent"}),
            ),
        ])
        .await;
    assert_eq!(body["accepted"], 2, "{body}");
    assert_eq!(
        body["results"][1],
        json!({"index": 1, "id": "evt_2", "status": "accepted"})
    );
}

#[tokio::test]
async fn a_resent_batch_is_answered_duplicate_and_changes_nothing() {
    let app = spawn_app().await;
    app.customers(json!([{"external_id": "acme", "name": "Acme", "seats_purchased": 10}]))
        .await;
    let now = app.now();
    let mut batch = activity("acme", 4, 59, 0, now);
    batch.push(event(
        "pf1",
        "acme",
        now,
        json!({"type": "payment_failed", "amount": 100.0}),
    ));
    batch.push(event(
        "rf1",
        "acme",
        now,
        json!({"type": "billing_retry_failed", "amount": 100.0, "attempt": 1}),
    ));
    send_all(&app, batch.clone()).await;
    app.rescore().await;
    let before = app.customer("acme").await;
    let alerts_before = app.get("/api/v1/alerts?customer_id=acme").await.1;

    let again = app.events(batch[..1000.min(batch.len())].to_vec()).await;
    assert_eq!(again["accepted"], 0);
    assert_eq!(again["duplicates"].as_u64(), Some(1000.min(batch.len()) as u64));
    send_all_duplicates(&app, batch).await;
    assert_eq!(app.rescore().await.scored, 0, "duplicates mark nobody for rescoring");
    // Rescored all the same, the stored events give the same score and no new alert.
    assert_eq!(app.rescore_everyone().await, 1);
    let after = app.customer("acme").await;
    assert_eq!(before["score"], after["score"]);
    assert_eq!(before["explanation"], after["explanation"]);
    assert_eq!(alerts_before, app.get("/api/v1/alerts?customer_id=acme").await.1);
}

async fn send_all_duplicates(app: &TestApp, rows: Vec<serde_json::Value>) {
    for chunk in rows.chunks(1000) {
        let body = app.events(chunk.to_vec()).await;
        assert_eq!(body["accepted"], 0, "{body}");
    }
}

#[tokio::test]
async fn duplicate_ids_within_one_batch_are_accepted_once() {
    let app = spawn_app().await;
    app.customers(json!([{"external_id": "acme", "name": "Acme"}])).await;
    let now = app.now();
    let e = event("same", "acme", now, json!({"type": "user_active", "user_id": "u1"}));
    let body = app.events(vec![e.clone(), e]).await;
    assert_eq!(body["results"][0]["status"], "accepted");
    assert_eq!(body["results"][1]["status"], "duplicate");
}

#[tokio::test]
async fn a_batch_with_bad_rows_keeps_the_good_ones() {
    let app = spawn_app().await;
    app.customers(json!([{"external_id": "acme", "name": "Acme"}])).await;
    let now = app.now();
    let body = app
        .events(vec![
            event("ok1", "acme", now, json!({"type": "user_active", "user_id": "u1"})),
            event("bad1", "nobody", now, json!({"type": "user_active", "user_id": "u1"})),
            event("bad2", "acme", now, json!({"type": "nps_response", "score": 11})),
            event("ok2", "acme", now, json!({"type": "nps_response", "score": 9})),
        ])
        .await;
    assert_eq!(
        (body["accepted"].as_u64(), body["rejected"].as_u64()),
        (Some(2), Some(2)),
        "{body}"
    );
    assert_eq!(body["results"][1]["error"]["code"], "unknown_customer");
    assert_eq!(body["results"][1]["error"]["field"], "events[1].customer_id");
    assert_eq!(body["results"][2]["error"]["field"], "events[2].score");
    // The good rows were stored: re-sending them is a duplicate.
    let again = app
        .events(vec![event(
            "ok2",
            "acme",
            now,
            json!({"type": "nps_response", "score": 9}),
        )])
        .await;
    assert_eq!(again["results"][0]["status"], "duplicate");
    // And the bad ones were not: fixed, they are accepted.
    let fixed = app
        .events(vec![event(
            "bad2",
            "acme",
            now,
            json!({"type": "nps_response", "score": 10}),
        )])
        .await;
    assert_eq!(fixed["results"][0]["status"], "accepted");
}

#[tokio::test]
async fn the_openapi_document_describes_the_api() {
    let app = spawn_app().await;
    let (status, doc) = app.send(reqwest::Method::GET, "/api/v1/openapi.json", None, None).await;
    assert_eq!(status, 200);
    for path in [
        "/api/v1/events",
        "/api/v1/customers",
        "/api/v1/customers/{external_id}",
        "/api/v1/alerts",
        "/api/v1/scorecard",
    ] {
        assert!(
            doc["paths"].get(path).is_some(),
            "{path} missing from the OpenAPI document"
        );
    }
    assert!(doc["components"]["schemas"].get("CustomerDetail").is_some());
}

/// Two batches sent at once carry the same event ids for two customers:
/// each id is stored once and accepted by exactly one of them (on
/// PostgreSQL the two transactions really run side by side).
#[tokio::test]
async fn one_event_id_sent_at_once_for_two_customers_is_accepted_once() {
    let app = spawn_app().await;
    app.customers(json!([{"external_id": "acme", "name": "Acme"}, {"external_id": "globex", "name": "Globex"}]))
        .await;
    let now = app.now();
    for round in 0..10 {
        let batch = |customer: &str| -> Vec<serde_json::Value> {
            (0..50)
                .map(|i| {
                    event(
                        &format!("race_{round}_{i}"),
                        customer,
                        now,
                        json!({"type": "ticket_opened", "ticket_id": format!("t{i}"), "priority": "low"}),
                    )
                })
                .collect()
        };
        let (a, b) = tokio::join!(app.events(batch("acme")), app.events(batch("globex")));
        for i in 0..50 {
            let statuses = [&a["results"][i]["status"], &b["results"][i]["status"]];
            let accepted = statuses.iter().filter(|s| **s == "accepted").count();
            assert_eq!(accepted, 1, "round {round}, event {i}: {statuses:?}");
        }
        assert_eq!(
            a["accepted"].as_u64().unwrap_or(0) + b["accepted"].as_u64().unwrap_or(0),
            50
        );
    }
}

/// Ingest only appends events; the rescoring worker folds each customer's
/// new ones in before scoring. Whatever the order, the batching, the
/// resends and the rescoring passes in between, every customer ends with
/// the score and explanation of one batch holding every event scored once.
#[tokio::test]
async fn scores_do_not_depend_on_order_batching_resends_or_passes_in_between() {
    use rand::seq::SliceRandom;
    use rand::{Rng, SeedableRng};
    let customers = json!([
        {"external_id": "a", "name": "A", "plan": "pro", "seats_purchased": 10},
        {"external_id": "b", "name": "B", "plan": "pro", "seats_purchased": 20},
        {"external_id": "c", "name": "C", "plan": "basic", "seats_purchased": 5}
    ]);
    let rows = |now: chrono::DateTime<chrono::Utc>| {
        let mut rows = Vec::new();
        for (c, users) in [("a", 6), ("b", 2), ("c", 4)] {
            rows.extend(activity(c, users, 50, 0, now));
            for (i, d) in [40i64, 20, 3].iter().enumerate() {
                let at = now - chrono::Duration::days(*d);
                rows.push(event(
                    &format!("{c}-seats-{i}"),
                    c,
                    at,
                    json!({"type": "seats_changed", "seats_used": 2 + i}),
                ));
                rows.push(event(
                    &format!("{c}-nps-{i}"),
                    c,
                    at,
                    json!({"type": "nps_response", "score": 3 + 3 * i}),
                ));
                rows.push(event(
                    &format!("{c}-t-{i}"),
                    c,
                    at,
                    json!({"type": "ticket_opened", "ticket_id": format!("t{i}"), "priority": "high"}),
                ));
                rows.push(event(
                    &format!("{c}-pay-{i}"),
                    c,
                    at,
                    json!({"type": "payment_succeeded", "amount": 100.0}),
                ));
            }
            rows.push(event(
                &format!("{c}-tc"),
                c,
                now - chrono::Duration::days(1),
                json!({"type": "ticket_closed", "ticket_id": "t0"}),
            ));
        }
        rows
    };
    // The score and each measure's value and data: what the folded events
    // decide. (The risk band also depends on the band before, by design,
    // so passes in between may leave a different one.)
    async fn verdicts(app: &TestApp) -> Vec<(&'static str, Value, Value, Value)> {
        let mut out = Vec::new();
        for c in ["a", "b", "c"] {
            let v = app.customer(c).await;
            out.push((
                c,
                v["score"].clone(),
                v["explanation"]["measures"].clone(),
                v["explanation"]["coverage"].clone(),
            ));
        }
        out
    }

    // Reference: every event in one batch, one pass.
    let reference = spawn_app().await;
    reference.customers(customers.clone()).await;
    let all = rows(reference.now());
    for chunk in all.chunks(1000) {
        reference.events(chunk.to_vec()).await;
    }
    reference.rescore().await;
    let expected = verdicts(&reference).await;
    assert!(
        expected
            .iter()
            .all(|v| v.1.is_number() && v.2.as_array().is_some_and(|m| !m.is_empty())),
        "{expected:?}"
    );

    for seed in 1..=4u64 {
        let app = spawn_app().await;
        app.customers(customers.clone()).await;
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut shuffled = rows(app.now());
        shuffled.shuffle(&mut rng);
        // A fifth of the rows resent in a later batch.
        let resent: Vec<_> = shuffled.iter().filter(|_| rng.gen_bool(0.2)).cloned().collect();
        shuffled.extend(resent);
        let mut rest = shuffled.as_slice();
        while !rest.is_empty() {
            let n = rng.gen_range(1..=rest.len().min(120));
            let (batch, tail) = rest.split_at(n);
            app.events(batch.to_vec()).await;
            // Sometimes a pass between batches: folding in several steps.
            if rng.gen_bool(0.3) {
                app.rescore_in_batches(rng.gen_range(1..=3)).await;
            }
            rest = tail;
        }
        app.rescore().await;
        assert_eq!(verdicts(&app).await, expected, "seed {seed}");
    }
}

/// Two servers of one process on one SQLite file (a test's, or a tool's
/// beside the server): their writers join one shared page cache, where a
/// table another connection writes is locked without SQLite's busy wait,
/// and two connections waiting for each other fail at once. They share one
/// write pool instead and take turns, so imports and flat-out ingest on
/// both, with their rescoring workers, lose no batch to a 503 and store
/// every event. (With a write pool each, about one run in twenty failed.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_of_one_process_on_one_sqlite_file_both_take_every_batch() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("perly.db").display());
    let a = spawn_app_with_workers_and_standins_on(url.clone(), &|_| {}).await;
    let b = spawn_app_with_workers_and_standins_on(url, &|_| {}).await;
    for app in [&a, &b] {
        app.customers(json!((0..50)
            .map(|i| json!({"external_id": format!("c{i}"), "name": format!("C {i}")}))
            .collect::<Vec<_>>()))
            .await;
    }
    let (from_a, from_b) = tokio::join!(twenty_batches(&a, "a"), twenty_batches(&b, "b"));
    assert_eq!((from_a, from_b), (2_000, 2_000));
}

/// Sends 20 batches of 100 events one after the other, asserting each is
/// answered 200, and answers how many events were accepted.
async fn twenty_batches(app: &TestApp, tag: &str) -> u64 {
    let now = app.now().to_rfc3339();
    let mut accepted = 0;
    for batch in 0..20 {
        let rows: Vec<Value> = (0..100)
            .map(|i| {
                json!({"id": format!("{tag}-{batch}-{i}"), "customer_id": format!("c{}", i % 50),
                       "type": "user_active", "user_id": format!("u{i}"), "occurred_at": now})
            })
            .collect();
        let (status, body) = app.post("/api/v1/events", json!({ "events": rows })).await;
        assert_eq!(status, 200, "{tag} batch {batch}: {body}");
        accepted += body["accepted"].as_u64().expect("accepted");
    }
    accepted
}

/// A customer waiting to be rescored for history (a backfill) that then
/// gets live data waits for live data: the live batch's mark takes it out
/// of the import, so its next verdict is news for the channels, not a line
/// of the import's summary.
#[tokio::test]
async fn live_data_takes_a_customer_waiting_for_history_out_of_its_import() {
    let app = spawn_app().await;
    app.customers(json!([{"external_id": "acme", "name": "Acme Corp"}]))
        .await;
    let now = app.now();
    let nps = |id: &str, at: chrono::DateTime<chrono::Utc>| json!({"id": id, "customer_id": "acme", "type": "nps_response", "score": 3, "occurred_at": at.to_rfc3339()});
    let (status, body) = app
        .post(
            "/api/v1/events",
            json!({"backfill": true, "events": [nps("old", now - chrono::Duration::days(3))]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let waiting = || async {
        // As the rescoring worker sees it (PostgreSQL marks customers once
        // their events' transactions are certainly over).
        app.store.pending_rescore(app.ws).await.expect("pending");
        let mut conn = connect_database(&app.database_url).await;
        let sql = format!(
            "SELECT CAST(r.dirty AS BIGINT), r.dirty_import FROM rollups r JOIN customers c ON c.id = r.customer_id \
             WHERE c.workspace_id = '{}' AND c.external_id = 'acme'",
            app.ws
        );
        sqlx::query_as::<_, (i64, Option<String>)>(&sql)
            .fetch_one(&mut conn)
            .await
            .expect("the customer's mark")
    };
    let (dirty, import) = waiting().await;
    assert_eq!(dirty, 1);
    assert!(import.is_some(), "the backfill's customer waits for its import");

    app.events(vec![nps("new", now)]).await;
    assert_eq!(
        waiting().await,
        (1, None),
        "live data came: the customer waits for live data"
    );
}
