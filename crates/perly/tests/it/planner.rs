//! PostgreSQL's planner statistics after a big import: Perly refreshes them
//! itself, whether or not autovacuum runs (it is off on this project's CI
//! machines). Without them, at 100,000 customers and under load, a lookup of
//! one customer by external id was planned as a walk of a whole-workspace
//! index (~200 ms instead of 0.05; see BENCHMARKS.md).

use serde_json::json;
use sqlx::Row;

use crate::helpers::*;

#[tokio::test]
async fn after_a_big_import_the_planner_statistics_are_refreshed_even_without_autovacuum() {
    let app = spawn_app().await;
    let rows: Vec<_> = (0..1_000)
        .map(|i| json!({"external_id": format!("acme-{i}"), "name": format!("Acme {i}")}))
        .collect();
    app.customers(json!(rows)).await;
    if app.store.backend() == "sqlite" {
        let refreshed = app.store.refresh_statistics().await.expect("refresh");
        assert!(refreshed.is_empty(), "{refreshed:?}");
        return;
    }
    // 100,000 more in one statement (through the API it takes minutes on
    // PostgreSQL): the size at which the planner without statistics walked
    // a whole-workspace index for each lookup.
    let pool = sqlx::PgPool::connect(&app.database_url).await.expect("connect");
    sqlx::query(
        "INSERT INTO customers (id, workspace_id, external_id, name, created_at, updated_at) \
         SELECT 'bulk-' || n, $1, 'bulk-' || n, 'Bulk ' || n, 0, 0 FROM generate_series(1, 100000) AS n",
    )
    .bind(app.ws.to_string())
    .execute(&pool)
    .await
    .expect("bulk customers");
    // PostgreSQL's row counters reach `pg_stat_user_tables` up to a second
    // after the commit.
    let started = std::time::Instant::now();
    loop {
        let refreshed = app.store.refresh_statistics().await.expect("refresh");
        if refreshed.iter().any(|t| t == "customers") {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "customers never analyzed: {refreshed:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let analyzed: Option<String> = sqlx::query(
        "SELECT last_analyze::text FROM pg_stat_user_tables WHERE relname = 'customers' AND schemaname = current_schema()",
    )
    .fetch_one(&pool)
    .await
    .expect("statistics")
    .try_get(0)
    .expect("last_analyze");
    assert!(analyzed.is_some(), "customers were never analyzed");
    // Nothing changed since: nothing to analyze.
    let again = app.store.refresh_statistics().await.expect("refresh");
    assert!(!again.iter().any(|t| t == "customers"), "{again:?}");
}
