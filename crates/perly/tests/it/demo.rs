//! The demo's seeded history is produced by Perly's own pipeline, and every
//! alert kind occurs in it.

use std::sync::Arc;

use chrono::Utc;
use perly_domain::alerts::AlertKind;
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
    perly::demo::seed(&store, ws.id, 40, Utc::now()).await.expect("seed");
    let store: Arc<dyn perly_store::Store> = store;
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
