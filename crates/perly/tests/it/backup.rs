//! `perly backup FILE`: a consistent copy of a live SQLite database, taken
//! while the server takes writes, restored into a new server (copy the file
//! into place, start) and read back; FILE is never overwritten unless
//! asked; PostgreSQL is refused with a pointer to pg_dump.
//!
//! Backups are of SQLite, so these tests run on SQLite whatever
//! `PERLY_TEST_DATABASE_URL` says; the refusal of PostgreSQL uses it when set.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};

use crate::helpers::*;
use crate::migrate::perly;

/// Every customer's external id, through the API, page by page.
async fn external_ids(client: &reqwest::Client, base: &str, key: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{base}/api/v1/customers?sort=name&limit=500");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page: Value = client
            .get(url)
            .bearer_auth(key)
            .send()
            .await
            .expect("list")
            .json()
            .await
            .expect("json");
        for c in page["items"].as_array().expect("items") {
            out.insert(c["external_id"].as_str().expect("external id").to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return out,
        }
    }
}

#[tokio::test]
async fn a_backup_taken_while_the_server_writes_restores_into_a_new_server() {
    let live_dir = tempfile::tempdir().expect("dir");
    let live_db = format!("sqlite://{}/perly.db", live_dir.path().display());
    let db = live_db.clone();
    let app = spawn_app_with_settings(&move |s| s.database_url = db.clone()).await;
    seat_only_scorecard(&app).await;
    app.customers(json!([{"external_id": "acme", "name": "Acme", "seats_purchased": 100}]))
        .await;
    set_score(&app, "acme", 42).await;

    // A writer: batches of ten customers, one request (one transaction) each.
    let acked = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (acked, stop) = (acked.clone(), stop.clone());
        let (client, base, key) = (app.client.clone(), app.base.clone(), app.key.clone());
        tokio::spawn(async move {
            let mut batch = 0;
            while !stop.load(Ordering::SeqCst) {
                let rows: Vec<Value> = (0..10)
                    .map(|i| json!({"external_id": format!("w{batch:05}-{i}"), "name": format!("Writer {batch} {i}")}))
                    .collect();
                let r = client
                    .post(format!("{base}/api/v1/customers"))
                    .bearer_auth(&key)
                    .json(&json!({ "customers": rows }))
                    .send()
                    .await
                    .expect("post");
                assert_eq!(r.status(), 200);
                batch += 1;
                acked.store(batch, Ordering::SeqCst);
            }
        })
    };
    let wait_for = |n: usize| {
        let acked = acked.clone();
        async move {
            while acked.load(Ordering::SeqCst) < n {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        }
    };
    wait_for(20).await;

    let backup = live_dir.path().join("backups/perly-backup.db");
    let before = acked.load(Ordering::SeqCst);
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_perly"))
        .args(["backup", backup.to_str().expect("path")])
        .env("PERLY_DATABASE_URL", &live_db)
        .env_remove("PERLY_SECRET_KEY")
        .output()
        .await
        .expect("perly backup");
    let after = acked.load(Ordering::SeqCst);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains("backed up") && stdout.contains("perly-backup.db"),
        "{stdout}"
    );
    assert!(after > before, "the server took writes while the backup ran");
    // And went on taking them.
    wait_for(after + 5).await;
    stop.store(true, Ordering::SeqCst);
    writer.await.expect("writer");
    let written = acked.load(Ordering::SeqCst);
    assert!(written > after, "writes went on after the backup");
    let no_partials: Vec<_> = std::fs::read_dir(backup.parent().expect("folder"))
        .expect("backups folder")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(no_partials, [std::ffi::OsString::from("perly-backup.db")]);

    // Restore: a new server on a copy of the backup (migrations run on start).
    let restored_dir = tempfile::tempdir().expect("dir");
    let restored = restored_dir.path().join("perly.db");
    std::fs::copy(&backup, &restored).expect("copy the backup into place");
    let server = spawn_serve(
        &format!("sqlite://{}", restored.display()),
        free_port(),
        &[("PERLY_SCORING__WORKER", "false".into())],
    )
    .await;
    let client = reqwest::Client::new();
    let ids = external_ids(&client, &server.base, &app.key).await;
    assert!(ids.contains("acme"));
    let batches: BTreeSet<&str> = ids
        .iter()
        .filter_map(|id| id.strip_prefix('w'))
        .filter_map(|id| id.split('-').next())
        .collect();
    let n = batches.len();
    // A snapshot: whole transactions only, every batch acknowledged before
    // the backup started, none written after it returned, no gaps.
    assert_eq!(ids.len() - 1, n * 10, "each batch is all there or not at all");
    assert!(
        (before..=after).contains(&n),
        "{n} batches restored; {before} acknowledged before the backup, {after} when it returned"
    );
    let expected: BTreeSet<String> = (0..n).map(|b| format!("{b:05}")).collect();
    assert_eq!(batches.iter().map(|b| b.to_string()).collect::<BTreeSet<_>>(), expected);
    let acme: Value = client
        .get(format!("{}/api/v1/customers/acme", server.base))
        .bearer_auth(&app.key)
        .send()
        .await
        .expect("acme")
        .json()
        .await
        .expect("json");
    assert_eq!(
        (&acme["score"], &acme["risk_level"]),
        (&json!(42), &json!("high")),
        "{acme}"
    );
    assert!(acme["history"].as_array().is_some_and(|h| !h.is_empty()), "{acme}");

    // The restored server takes writes of its own.
    let r = client
        .post(format!("{}/api/v1/customers", server.base))
        .bearer_auth(&app.key)
        .json(&json!({"customers": [{"external_id": "after-restore", "name": "After"}]}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
    assert!(external_ids(&client, &server.base, &app.key)
        .await
        .contains("after-restore"));
}

#[tokio::test]
async fn a_backup_never_overwrites_unless_forced_and_postgres_is_pointed_at_pg_dump() {
    let dir = tempfile::tempdir().expect("dir");
    let db = format!("sqlite://{}/perly.db", dir.path().display());
    let file = dir.path().join("copy.db");
    let file_arg = file.to_str().expect("path");

    let (code, _, err) = perly(&db, &["backup", file_arg]);
    assert_eq!(code, 1);
    assert!(err.contains("there is no SQLite database at"), "{err}");
    assert!(!file.exists());

    let (code, out, err) = perly(&db, &["migrate"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = perly(&db, &["backup", file_arg]);
    assert_eq!(code, 0, "{out}{err}");
    // The backup names the schema it holds: the newest migration.
    let newest = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../perly-store/migrations/sqlite"))
        .expect("migrations")
        .filter_map(|e| e.ok()?.file_name().to_str()?.split('_').next().map(str::to_owned))
        .max()
        .expect("a migration");
    assert!(out.contains(&format!("schema at migration {newest}")), "{out}");
    let first = std::fs::read(&file).expect("backup");

    // Something else written to FILE is not replaced without --force.
    std::fs::write(&file, b"precious").expect("write");
    let (code, _, err) = perly(&db, &["backup", file_arg]);
    assert_eq!(code, 1);
    assert!(err.contains("already exists") && err.contains("--force"), "{err}");
    assert_eq!(std::fs::read(&file).expect("file"), b"precious");
    let (code, out, err) = perly(&db, &["backup", "--force", file_arg]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(std::fs::read(&file).expect("backup").len(), first.len());
    assert!(std::fs::read(&file).expect("backup").starts_with(b"SQLite format 3\0"));

    // Not over the database itself, even forced.
    let itself = dir.path().join("perly.db");
    let (code, _, err) = perly(&db, &["backup", "--force", itself.to_str().expect("path")]);
    assert_eq!(code, 1);
    assert!(err.contains("the database itself"), "{err}");

    // PostgreSQL: pg_dump's job. Nothing is written.
    let pg = match std::env::var("PERLY_TEST_DATABASE_URL") {
        Ok(url) if url.starts_with("postgres") => fresh_database(&dir).await,
        _ => "postgres://perly@127.0.0.1:1/perly".to_owned(),
    };
    let pg_file = dir.path().join("pg.db");
    let (code, _, err) = perly(&pg, &["backup", pg_file.to_str().expect("path")]);
    assert_eq!(code, 1);
    assert!(err.contains("PostgreSQL") && err.contains("pg_dump"), "{err}");
    assert!(!pg_file.exists());
}
