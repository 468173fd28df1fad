use std::time::Duration as StdDuration;

use chrono::Duration;
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn score_risk_signals_and_action_follow_the_events() {
    let app = spawn_app().await;
    // The measures this customer has data for make up the whole scorecard.
    scorecard_of(&app, &["usage_trend", "seat_utilisation", "billing_health"]).await;
    app.customers(json!([{"external_id": "acme", "name": "Acme", "seats_purchased": 12}]))
        .await;
    let now = app.now();
    let mut rows = activity("acme", 10, 59, 0, now);
    rows.push(event(
        "seats1",
        "acme",
        now,
        json!({"type": "seats_changed", "seats_used": 10}),
    ));
    send_all(&app, rows).await;
    app.rescore().await;
    let healthy = app.customer("acme").await;
    assert_eq!(healthy["risk_level"], "low", "{healthy}");
    let healthy_score = healthy["score"].as_i64().expect("scored");
    // Billing is not known yet: its third of the weight counts at the neutral 62.5.
    assert!(healthy_score >= 85, "{healthy}");
    assert_eq!(healthy["explanation"]["signals"][0]["sentiment"], "positive");

    // A month later only 3 of the 10 users are still active, and a payment failed twice.
    app.advance(Duration::days(30));
    let now = app.now();
    let mut rows = activity("acme", 3, 29, 0, now);
    rows.push(event(
        "seats2",
        "acme",
        now,
        json!({"type": "seats_changed", "seats_used": 3}),
    ));
    rows.push(event(
        "pf1",
        "acme",
        now - Duration::days(9),
        json!({"type": "payment_failed", "amount": 100.0}),
    ));
    rows.push(event(
        "pf2",
        "acme",
        now - Duration::days(2),
        json!({"type": "payment_failed", "amount": 100.0}),
    ));
    send_all(&app, rows).await;
    app.rescore().await;
    let risky = app.customer("acme").await;
    let score = risky["score"].as_i64().expect("scored");
    assert!(score < healthy_score - 40, "{risky}");
    assert!(
        matches!(risky["risk_level"].as_str(), Some("high" | "critical")),
        "{risky}"
    );
    let signals: Vec<String> = risky["explanation"]["signals"]
        .as_array()
        .expect("signals")
        .iter()
        .map(|s| s["text"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(
        signals
            .iter()
            .any(|s| s.starts_with("Daily active users down 70% vs prior 30 days (avg 10.0 → 3.0)")),
        "{signals:?}"
    );
    assert!(
        signals
            .iter()
            .any(|s| s.starts_with("Payment failed twice in the last 30 days")),
        "{signals:?}"
    );
    assert!(!risky["explanation"]["suggested_action"]
        .as_str()
        .unwrap_or_default()
        .is_empty());
    assert_eq!(risky["explanation"]["coverage"]["used"], 3);
    assert_eq!(risky["history"].as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn missing_data_is_not_counted_as_bad_and_is_named() {
    let app = spawn_app().await;
    app.customers(json!([{"external_id": "quiet", "name": "Quiet"}, {"external_id": "nps", "name": "NPS only"}]))
        .await;
    let now = app.now();
    app.events(vec![event(
        "n1",
        "nps",
        now,
        json!({"type": "nps_response", "score": 10}),
    )])
    .await;
    app.rescore().await;
    let quiet = app.customer("quiet").await;
    assert!(quiet["score"].is_null(), "no data, no score: {quiet}");
    let nps = app.customer("nps").await;
    // NPS is 5% of the weight: the rest counts at the neutral 62.5.
    assert_eq!(nps["score"], 64, "{nps}");
    assert!(nps["risk_level"].is_null(), "{nps}");
    assert_eq!(
        nps["coverage"]["summary"],
        "Not enough data yet (based on 1 of 8 measures: NPS)"
    );
    assert_eq!(nps["coverage"]["enough"], false);
    let missing = nps["coverage"]["missing"].as_array().expect("missing").len();
    assert_eq!(missing, 7);
}

#[tokio::test]
async fn a_customer_below_the_coverage_rule_has_no_risk_level_and_raises_no_alert_until_its_data_arrives() {
    let app = spawn_app().await;
    app.customers(json!([{"external_id": "thin", "name": "Thin", "seats_purchased": 10}]))
        .await;
    let now = app.now();
    // Everything it says is bad, but it is 23% of the scorecard's weight.
    app.events(vec![
        event("t1", "thin", now, json!({"type": "nps_response", "score": 0})),
        event(
            "t2",
            "thin",
            now - Duration::days(3),
            json!({"type": "payment_failed", "amount": 50.0}),
        ),
        event(
            "t3",
            "thin",
            now - Duration::days(1),
            json!({"type": "payment_failed", "amount": 50.0}),
        ),
    ])
    .await;
    app.rescore().await;
    let thin = app.customer("thin").await;
    assert!(thin["risk_level"].is_null(), "{thin}");
    assert!(
        thin["score"].as_i64().expect("scored") > 40,
        "shrunk toward neutral: {thin}"
    );
    assert!(thin["history"].as_array().expect("history").is_empty(), "{thin}");
    let (_, feed) = app.get("/api/v1/alerts?customer_id=thin").await;
    assert_eq!(feed["items"], json!([]), "no verdict, no alert");
    let (_, critical) = app.get("/api/v1/customers?risk_level=critical").await;
    assert_eq!(critical["items"], json!([]));

    // Its usage, seats and features arrive: now it has a verdict.
    let mut rows = activity("thin", 2, 59, 0, now);
    rows.push(event(
        "s1",
        "thin",
        now,
        json!({"type": "seats_changed", "seats_used": 2}),
    ));
    rows.push(event(
        "f1",
        "thin",
        now,
        json!({"type": "feature_used", "feature": "reports"}),
    ));
    send_all(&app, rows).await;
    app.rescore().await;
    let known = app.customer("thin").await;
    assert_eq!(known["coverage"]["enough"], true, "{known}");
    assert!(
        matches!(known["risk_level"].as_str(), Some("high" | "critical")),
        "{known}"
    );
    assert_eq!(known["history"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn an_accepted_event_shows_in_the_score_through_the_background_worker() {
    let app = spawn_app_with_worker().await;
    app.customers(json!([{"external_id": "acme", "name": "Acme"}])).await;
    let now = app.now();
    app.events(vec![event(
        "n1",
        "acme",
        now,
        json!({"type": "nps_response", "score": 2}),
    )])
    .await;
    let started = std::time::Instant::now();
    loop {
        let c = app.customer("acme").await;
        if !c["score"].is_null() {
            assert_eq!(c["explanation"]["signals"][0]["measure"], "nps");
            break;
        }
        assert!(started.elapsed() < StdDuration::from_secs(10), "score never appeared");
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_scorecard_is_editable_and_validated() {
    let app = spawn_app().await;
    let (status, card) = app.get("/api/v1/scorecard").await;
    assert_eq!(status, 200);
    assert_eq!(card["risk_bands"]["low"], 75.0);
    scorecard_of(&app, &["nps"]).await;
    let (_, mut card) = app.get("/api/v1/scorecard").await;

    app.customers(json!([{"external_id": "acme", "name": "Acme"}])).await;
    let now = app.now();
    app.events(vec![event(
        "n1",
        "acme",
        now,
        json!({"type": "nps_response", "score": 8}),
    )])
    .await;
    app.rescore().await;
    let before = app.customer("acme").await;
    assert_eq!(before["score"], 83);
    assert_eq!(before["risk_level"], "low");

    let mut bad = card.clone();
    bad["risk_bands"]["medium"] = json!(90.0);
    let (status, body) = app.put("/api/v1/scorecard", bad).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["field"], "risk_bands");
    let (status, body) = app.put("/api/v1/scorecard", json!({"measures": "nope"})).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["field"], "measures");

    card["risk_bands"]["low"] = json!(90.0);
    let (status, _) = app.put("/api/v1/scorecard", card).await;
    assert_eq!(status, 200);
    app.rescore().await;
    let after = app.customer("acme").await;
    assert_eq!(
        after["risk_level"], "medium",
        "a higher low band moves 83 to medium: {after}"
    );
}

#[tokio::test]
async fn customers_are_listed_by_score_filtered_by_risk_and_paged_with_a_cursor() {
    let app = spawn_app().await;
    scorecard_of(&app, &["nps"]).await;
    let rows: Vec<_> = (0..7)
        .map(|i| json!({"external_id": format!("c{i}"), "name": format!("Customer {i}")}))
        .collect();
    app.customers(json!(rows)).await;
    let now = app.now();
    // NPS 0..=6 → scores 0, 0, 0, 0, 17, 33, 50.
    let events: Vec<_> = (0..7)
        .map(|i| {
            event(
                &format!("n{i}"),
                &format!("c{i}"),
                now,
                json!({"type": "nps_response", "score": i}),
            )
        })
        .collect();
    app.events(events).await;
    app.rescore().await;

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/customers?limit=3&sort=-score&cursor={c}"),
            None => "/api/v1/customers?limit=3&sort=-score".to_owned(),
        };
        let (status, page) = app.get(&path).await;
        assert_eq!(status, 200, "{page}");
        for c in page["items"].as_array().expect("items") {
            seen.push((
                c["external_id"].as_str().unwrap_or_default().to_owned(),
                c["score"].as_i64().unwrap_or(-1),
            ));
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 7, "every customer once: {seen:?}");
    assert!(
        seen.windows(2).all(|w| w[0].1 >= w[1].1),
        "sorted by score, highest first: {seen:?}"
    );
    assert_eq!(seen[0].0, "c6");

    let (_, critical) = app.get("/api/v1/customers?risk_level=critical&limit=50").await;
    let ids: Vec<&str> = critical["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|c| c["external_id"].as_str())
        .collect();
    assert_eq!(ids.len(), 5, "{ids:?}");
    assert!(!ids.contains(&"c6"));
    let (_, by_name) = app.get("/api/v1/customers?sort=name&limit=2").await;
    assert_eq!(by_name["items"][0]["name"], "Customer 0");
}

#[tokio::test]
async fn a_scorecard_saved_during_a_rescoring_pass_is_not_lost() {
    let app = spawn_app().await;
    app.customers(json!([{"external_id": "acme", "name": "Acme"}])).await;
    app.events(vec![event(
        "n1",
        "acme",
        app.now(),
        json!({"type": "nps_response", "score": 8}),
    )])
    .await;
    // A pass claims the customer with the old inputs...
    let claimed = app.store.claim_rescore(app.ws, 10, app.now()).await.expect("claim");
    assert_eq!(claimed.len(), 1);
    // ...an admin saves a new scorecard meanwhile...
    let card = app.store.scorecard(app.ws).await.expect("card");
    app.store.set_scorecard(app.ws, &card, app.now()).await.expect("save");
    // ...and the pass records its (old) result: the customer stays marked.
    app.score_and_record(claimed, app.now()).await;
    assert_eq!(app.store.pending_rescore(app.ws).await.expect("pending"), 1);
}

#[tokio::test]
async fn a_failed_batch_gives_its_leases_back_and_only_its_own() {
    let app = spawn_app().await;
    app.customers(json!([{"external_id": "a", "name": "A"}, {"external_id": "b", "name": "B"}]))
        .await;
    app.events(vec![
        event("a1", "a", app.now(), json!({"type": "nps_response", "score": 8})),
        event("b1", "b", app.now(), json!({"type": "nps_response", "score": 8})),
    ])
    .await;
    // A batch claims both customers, then fails before recording (the
    // database went away): while its lease holds, nobody may take them...
    let at = app.now();
    assert_eq!(app.store.claim_rescore(app.ws, 10, at).await.expect("claim").len(), 2);
    assert!(app.store.claim_rescore(app.ws, 10, at).await.expect("claim").is_empty());
    // ...a release for another claim time gives nothing back...
    let other = at - chrono::Duration::seconds(1);
    assert_eq!(app.store.release_rescore(app.ws, other).await.expect("release"), 0);
    // ...its own release makes them claimable at once, not a lease later.
    assert_eq!(app.store.release_rescore(app.ws, at).await.expect("release"), 2);
    let again = app.store.claim_rescore(app.ws, 10, at).await.expect("claim");
    assert_eq!(again.len(), 2, "claimable again right after the release");
    // A release in another workspace touches nothing here.
    let (other_ws, _) = app.other_workspace("Other Co").await;
    assert_eq!(app.store.release_rescore(other_ws, at).await.expect("release"), 0);
    assert!(app.store.claim_rescore(app.ws, 10, at).await.expect("claim").is_empty());
}

#[tokio::test]
async fn events_stored_while_their_customer_is_being_rescored_are_scored_next() {
    let app = spawn_app().await;
    app.customers(json!([{"external_id": "acme", "name": "Acme"}])).await;
    let nps = |id: &str, score: u8| event(id, "acme", app.now(), json!({"type": "nps_response", "score": score}));
    app.events(vec![nps("n1", 8)]).await;
    // Two batches for a customer already marked: the second one, with no
    // pass holding the customer, changes nothing (ingest skips the write).
    app.events(vec![nps("n2", 7)]).await;
    // A pass claims it and reads n1 and n2; n3 arrives while it scores,
    // then a pass reading n3 gets n4 (old: history) meanwhile: each time
    // recording what the pass read leaves the customer marked.
    let claimed = app.store.claim_rescore(app.ws, 10, app.now()).await.expect("claim");
    assert_eq!(claimed.len(), 1);
    app.events(vec![nps("n3", 1)]).await;
    app.score_and_record(claimed, app.now()).await;
    assert_eq!(
        app.store.pending_rescore(app.ws).await.expect("pending"),
        1,
        "n3 waits to be scored"
    );
    let claimed = app.store.claim_rescore(app.ws, 10, app.now()).await.expect("claim");
    assert_eq!(
        claimed[0].unfolded.len() + claimed[0].folded,
        1,
        "the next pass reads n3"
    );
    let old = app.now() - Duration::days(3);
    app.events(vec![event(
        "n4",
        "acme",
        old,
        json!({"type": "nps_response", "score": 1}),
    )])
    .await;
    app.score_and_record(claimed, app.now()).await;
    assert_eq!(
        app.store.pending_rescore(app.ws).await.expect("pending"),
        1,
        "n4 waits to be scored"
    );
    let claimed = app.store.claim_rescore(app.ws, 10, app.now()).await.expect("claim");
    assert_eq!(
        claimed[0].unfolded.len() + claimed[0].folded,
        1,
        "the next pass reads n4"
    );
}

/// Claims take the customers that have waited longest. A customer whose
/// data came again while it was being rescored waits again from its claim,
/// not from its first mark: busy customers must not be claimed ahead of
/// quieter ones marked since, slice after slice.
#[tokio::test]
async fn customers_whose_data_keeps_coming_do_not_starve_the_others() {
    let app = spawn_app().await;
    app.customers(json!([
        {"external_id": "busy-1", "name": "Busy 1"},
        {"external_id": "busy-2", "name": "Busy 2"},
        {"external_id": "quiet", "name": "Quiet"}
    ]))
    .await;
    let nps = |id: &str, customer: &str| event(id, customer, app.now(), json!({"type": "nps_response", "score": 8}));
    app.events(vec![nps("b1", "busy-1"), nps("b2", "busy-2")]).await;
    app.advance(Duration::seconds(1));
    app.events(vec![nps("q1", "quiet")]).await;
    app.advance(Duration::seconds(1));
    // A slice of two takes the busy ones (marked first); more of their
    // data comes while they are scored.
    let claimed = app.store.claim_rescore(app.ws, 2, app.now()).await.expect("claim");
    let mut names = std::collections::HashMap::new();
    for external in ["busy-1", "busy-2", "quiet"] {
        let c = app
            .store
            .get_customer(app.ws, external, app.now())
            .await
            .expect("read")
            .expect("known");
        names.insert(c.summary.id, external.to_owned());
    }
    let ids = |claimed: &[perly_store::RescoreInput]| {
        let mut ids: Vec<String> = claimed.iter().map(|c| names[&c.customer_id].clone()).collect();
        ids.sort();
        ids
    };
    assert_eq!(ids(&claimed), ["busy-1", "busy-2"]);
    app.advance(Duration::seconds(1));
    app.events(vec![nps("b3", "busy-1"), nps("b4", "busy-2")]).await;
    app.score_and_record(claimed, app.now()).await;
    app.advance(Duration::seconds(1));
    // The next slice of two serves the quiet customer, waiting since
    // before the busy ones were claimed, first.
    let claimed = app.store.claim_rescore(app.ws, 2, app.now()).await.expect("claim");
    assert!(
        ids(&claimed).contains(&"quiet".to_owned()),
        "the quiet customer was claimed: {:?}",
        ids(&claimed)
    );
}

#[tokio::test]
async fn a_claim_whose_lease_ran_out_records_without_giving_back_the_next_claims_lease() {
    let app = spawn_app().await;
    app.customers(json!([{"external_id": "acme", "name": "Acme"}])).await;
    let nps = |id: &str, score: u8| event(id, "acme", app.now(), json!({"type": "nps_response", "score": score}));
    app.events(vec![nps("n1", 8)]).await;
    let at = app.now();
    // A pass claims the customer; an event arrives while it holds it...
    let first = app.store.claim_rescore(app.ws, 10, at).await.expect("claim");
    assert_eq!(first.len(), 1);
    app.events(vec![nps("n2", 7)]).await;
    // ...the pass stalls past its lease, and a second pass takes the
    // customer over, with n2...
    let later = at + Duration::seconds(61);
    let second = app.store.claim_rescore(app.ws, 10, later).await.expect("claim");
    assert_eq!(second.len(), 1, "claimable once the first lease ran out");
    // ...the first pass records late (without n2: the customer stays
    // marked), and must leave the second pass's lease alone...
    app.score_and_record(first, later).await;
    assert!(
        app.store
            .claim_rescore(app.ws, 10, later)
            .await
            .expect("claim")
            .is_empty(),
        "the second pass still holds the customer"
    );
    // ...so an event stored now tells the second pass it came: recording
    // what it read before n3, the second pass leaves the customer marked.
    app.events(vec![nps("n3", 1)]).await;
    app.score_and_record(second, later).await;
    assert_eq!(
        app.store.pending_rescore(app.ws).await.expect("pending"),
        1,
        "n3 waits to be scored"
    );
    let third = app.store.claim_rescore(app.ws, 10, later).await.expect("claim");
    assert_eq!(third.len(), 1, "claimable right after the second pass recorded");
}

#[tokio::test]
async fn a_new_customers_live_event_keeps_it_live_when_history_follows_before_its_first_score() {
    let app = spawn_app().await;
    app.customers(json!([{"external_id": "acme", "name": "Acme"}])).await;
    // Live data for a customer never scored, then history for it: the
    // customer waits for live data (its alerts are news, not an import's).
    app.events(vec![event(
        "live",
        "acme",
        app.now(),
        json!({"type": "nps_response", "score": 8}),
    )])
    .await;
    let old = app.now() - Duration::days(3);
    app.events(vec![event(
        "old",
        "acme",
        old,
        json!({"type": "nps_response", "score": 2}),
    )])
    .await;
    let claimed = app.store.claim_rescore(app.ws, 10, app.now()).await.expect("claim");
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].import, None, "scored as live data");
}

#[tokio::test]
async fn a_release_that_takes_another_claims_lease_leaves_its_customers_marked_for_new_events() {
    let app = spawn_app().await;
    app.customers(json!([{"external_id": "a", "name": "A"}, {"external_id": "b", "name": "B"}]))
        .await;
    let nps = |id: &str, customer: &str| event(id, customer, app.now(), json!({"type": "nps_response", "score": 8}));
    app.events(vec![nps("a1", "a"), nps("b1", "b")]).await;
    app.rescore().await;
    app.events(vec![nps("a2", "a"), nps("b2", "b")]).await;
    // Two replicas claim in the same millisecond (the same lease value),
    // one customer each; the first one's claim fails and it gives back
    // its lease, which is also the second one's...
    let at = app.now();
    let first = app.store.claim_rescore(app.ws, 1, at).await.expect("claim");
    let second = app.store.claim_rescore(app.ws, 1, at).await.expect("claim");
    assert_eq!((first.len(), second.len()), (1, 1));
    assert_eq!(app.store.release_rescore(app.ws, at).await.expect("release"), 2);
    // ...events come for both customers, which no lease holds now, and the
    // second replica records what it read before them.
    assert_ne!(first[0].customer_id, second[0].customer_id);
    app.events(vec![nps("a3", "a"), nps("b3", "b")]).await;
    app.score_and_record(second, at).await;
    // Both customers wait: the first (released), the second for its new event.
    assert_eq!(app.store.pending_rescore(app.ws).await.expect("pending"), 2);
}
