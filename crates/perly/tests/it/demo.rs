//! The demo's seeded history is produced by Perly's own pipeline, and every
//! alert kind occurs in it.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use perly_domain::alerts::AlertKind;
use perly_domain::ids::WorkspaceId;
use perly_domain::risk::RiskLevel;
use perly_store::{AlertQuery, CustomerQuery};

use crate::helpers::*;

#[tokio::test]
async fn the_demo_seed_produces_every_alert_kind() {
    let dir = tempfile::tempdir().expect("dir");
    let settings = test_settings(fresh_database(&dir).await, false);
    let store = perly::server::open_store(&settings, perly::cli::cipher(&settings, true).expect("cipher"))
        .await
        .expect("store");
    let ws = store.create_workspace("Demo", Utc::now()).await.expect("ws");
    let now = Utc::now();
    perly::demo::seed(&store, ws.id, 40, now).await.expect("seed");
    let store: Arc<dyn perly_store::Store> = store;
    seeded_history_starts_from_a_sensible_prior(&store, ws.id, now).await;
    for kind in AlertKind::ALL {
        let page = store
            .list_alerts(
                ws.id,
                &AlertQuery {
                    kind: Some(kind),
                    limit: 1,
                    ..Default::default()
                },
            )
            .await
            .expect("alerts");
        assert!(!page.items.is_empty(), "no {kind:?} alert in the demo");
    }
    let customers = store
        .list_customers(
            ws.id,
            &CustomerQuery {
                limit: 100,
                ..Default::default()
            },
        )
        .await
        .expect("customers");
    assert_eq!(customers.items.len(), 40);
    assert!(
        customers.items.iter().all(|c| c.score.is_some()),
        "every demo customer has a score"
    );
    let detail = store
        .get_customer(
            ws.id,
            &customers.items[0].external_id,
            Utc::now() - chrono::Duration::days(90),
        )
        .await
        .expect("get")
        .expect("exists");
    assert!(
        detail.history.len() >= 30,
        "90 days of history: {}",
        detail.history.len()
    );
}

/// A data folder from an older demo holds the demo user with the old,
/// shorter password: the login the demo prints must still work.
#[tokio::test]
async fn a_reused_demo_folder_signs_in_with_the_printed_password() {
    let dir = tempfile::tempdir().expect("dir");
    let settings = test_settings(fresh_database(&dir).await, false);
    let store = perly::server::open_store(&settings, perly::cli::cipher(&settings, true).expect("cipher"))
        .await
        .expect("store");
    let ws = store.create_workspace("Perly Demo", Utc::now()).await.expect("ws");
    let old = perly_store::auth::hash_password("perly-demo").expect("hash");
    store
        .add_user(
            ws.id,
            perly::demo::DEMO_EMAIL,
            &old,
            perly_store::Role::Admin,
            Utc::now(),
        )
        .await
        .expect("user");
    perly::demo::reset_demo_password(store.as_ref(), ws.id)
        .await
        .expect("reset");
    let users = store.users_by_email(perly::demo::DEMO_EMAIL).await.expect("users");
    assert_eq!(users.len(), 1);
    assert!(perly_store::auth::verify_password(
        perly::demo::DEMO_PASSWORD,
        &users[0].password_hash
    ));
}

/// The demo's Salesforce org holds the demo's own customers: connecting it
/// in a demo-seeded workspace and syncing adds no customer, and the
/// customers gain their Accounts' contacts, opportunities and recent
/// activities, with their owners unchanged.
#[tokio::test]
async fn connecting_the_demo_org_enriches_the_demo_customers() {
    const COUNT: usize = 40;
    let org = perly::demo::salesforce_org(COUNT, t0());
    let app = spawn_app_with_salesforce_and_settings(org, &|s| {
        s.sync.external_id_field = Some(perly::demo::CUSTOMER_ID_FIELD.to_owned());
    })
    .await;
    perly::demo::seed(&app.store, app.ws, COUNT, app.now())
        .await
        .expect("seed");
    let query = CustomerQuery {
        limit: 500,
        ..Default::default()
    };
    let before = app.store.list_customers(app.ws, &query).await.expect("customers").items;
    assert_eq!(before.len(), COUNT);

    let web = crate::salesforce::admin(&app).await;
    crate::salesforce::connect(&web, "production", "").await;
    let conn = app
        .store
        .salesforce_connection(app.ws)
        .await
        .expect("conn")
        .expect("connected");
    assert_eq!(
        conn.settings.external_id_field.as_deref(),
        Some(perly::demo::CUSTOMER_ID_FIELD),
        "matched on the field holding the demo's ids"
    );
    app.sync().await;

    let after = app.store.list_customers(app.ws, &query).await.expect("customers").items;
    assert_eq!(after.len(), COUNT, "no customer was added");
    for (b, a) in before.iter().zip(&after) {
        assert_eq!((&b.external_id, &b.name), (&a.external_id, &a.name));
        assert_eq!(b.owner_email, a.owner_email, "the org's owners are the demo's");
    }
    for c in &after {
        let crm = app.store.crm_records_for(app.ws, &c.external_id).await.expect("crm");
        assert!(
            crm.iter().any(|r| r.object == "Contact") && crm.iter().any(|r| r.object == "Opportunity"),
            "{} gained Salesforce records",
            c.external_id
        );
    }
    // Pulled Tasks and Events are crm_activity events of the customers.
    let since = (app.now() - chrono::Duration::days(43)).timestamp_millis();
    let mut db = connect_database(&app.database_url).await;
    let recent_activity: i64 = sqlx::query_scalar(&format!(
        "SELECT COUNT(DISTINCT customer_id) FROM events WHERE workspace_id = '{}' \
         AND event_id LIKE 'salesforce:%' AND type = 'crm_activity' AND occurred_at > {since}",
        app.ws
    ))
    .fetch_one(&mut db)
    .await
    .expect("count");
    let recent_activity = recent_activity as usize;
    assert!(
        recent_activity >= COUNT * 9 / 10,
        "Tasks and Events of the last weeks: {recent_activity} of {COUNT}"
    );
}

/// What a newcomer sees in the seeded history: no alerts in its first days
/// (the prior history makes the first scores sensible), some critical
/// customers, and charts that start at each customer's level instead of
/// plunging on day one.
async fn seeded_history_starts_from_a_sensible_prior(
    store: &Arc<dyn perly_store::Store>,
    ws: WorkspaceId,
    now: DateTime<Utc>,
) {
    let first = perly::demo::first_scored_day(now);
    let mut alerts = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .list_alerts(
                ws,
                &AlertQuery {
                    limit: 500,
                    cursor,
                    ..Default::default()
                },
            )
            .await
            .expect("alerts");
        alerts.extend(page.items);
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let early: Vec<String> = alerts
        .iter()
        .filter(|a| a.occurred_at < first + Duration::days(5))
        .map(|a| format!("{} {:?} {}", a.customer_external_id, a.kind, a.occurred_at))
        .collect();
    assert!(early.is_empty(), "alerts in the first days of history: {early:?}");

    let critical = store
        .list_customers(
            ws,
            &CustomerQuery {
                risk: Some(RiskLevel::Critical),
                limit: 100,
                ..Default::default()
            },
        )
        .await
        .expect("customers");
    assert!(!critical.items.is_empty(), "some demo customers are critical");

    let all = store
        .list_customers(
            ws,
            &CustomerQuery {
                limit: 100,
                ..Default::default()
            },
        )
        .await
        .expect("customers");
    let (mut charts, mut plunges) = (0, Vec::new());
    for c in &all.items {
        let detail = store
            .get_customer(ws, &c.external_id, first)
            .await
            .expect("get")
            .expect("exists");
        // Customers scored from the first day (new ones start later).
        let Some(start) = detail.history.first().filter(|p| p.at < first + Duration::days(1)) else {
            continue;
        };
        charts += 1;
        let week: Vec<i64> = detail
            .history
            .iter()
            .filter(|p| p.at < first + Duration::days(7))
            .map(|p| p.score)
            .collect();
        let low = week.iter().copied().min().unwrap_or(start.score);
        if start.score - low > 15 {
            plunges.push(format!("{}: {} then {low}", c.external_id, start.score));
        }
    }
    assert!(charts >= 30, "most customers are scored from the first day: {charts}");
    assert!(
        plunges.len() * 10 <= charts,
        "charts plunging in their first week: {plunges:?} of {charts}"
    );
}
