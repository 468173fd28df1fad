//! `perly migrate` and `perly migrate --status`, run as a user would, on a
//! database an earlier build made, then migrated, then tampered with.

use std::process::Command;

use perly_store::db::Dialect;
use perly_store::migrations;
use sqlx::any::AnyPoolOptions;

use crate::helpers::*;

/// Runs `perly ARGS` on `db`: (exit code, stdout, stderr).
pub fn perly(db: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_perly"))
        .args(args)
        .env("PERLY_DATABASE_URL", db)
        .env_remove("PERLY_SECRET_KEY")
        .env("PERLY_LOG", "error")
        .output()
        .expect("run perly");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// The status line of one migration.
fn line<'a>(out: &'a str, version: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with(version))
        .unwrap_or_else(|| panic!("no line for {version}:\n{out}"))
}

#[tokio::test]
async fn migrate_status_lists_applied_pending_and_mismatched_migrations() {
    let dir = tempfile::tempdir().expect("dir");
    let db = fresh_database(&dir).await;
    let dialect = Dialect::from_url(&db).expect("url");
    let all = migrations::migrator(dialect).iter().count();

    // Nothing yet: everything pending, and no SQLite file is made.
    let (code, out, err) = perly(&db, &["migrate", "--status"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.lines().filter(|l| l.ends_with(" pending")).count(), all, "{out}");
    assert!(
        out.contains(&format!("0 applied, {all} pending, 0 to bring forward")),
        "{out}"
    );
    if dialect == Dialect::Sqlite {
        assert!(out.contains("no database there yet"), "{out}");
        assert!(!dir.path().join("perly.db").exists(), "--status creates nothing");
    }

    // A database of b3c074b: channels applied from its earlier text.
    sqlx::any::install_default_drivers();
    let pool = AnyPoolOptions::new()
        .max_connections(1)
        .connect(&match dialect {
            Dialect::Sqlite => format!("{db}?mode=rwc"),
            Dialect::Postgres => db.clone(),
        })
        .await
        .expect("connect");
    migrations::apply_as_of(
        &pool,
        dialect,
        &[
            (20261124000001, None),
            (20261124000002, None),
            (20261201000001, Some("b3c074b")),
        ],
    )
    .await
    .expect("b3c074b's migrations");
    pool.close().await;
    let (code, out, err) = perly(&db, &["migrate", "--status"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(line(&out, "20261124000001").contains("init"), "{out}");
    assert!(line(&out, "20261124000001").contains("applied 20"), "{out}");
    assert!(line(&out, "20261124000002").contains("applied 20"), "{out}");
    let channels = line(&out, "20261201000001");
    assert!(
        channels.contains("channels")
            && channels.contains("checksum mismatch")
            && channels.contains("earlier edit")
            && channels.contains("b3c074b"),
        "{out}"
    );
    assert!(line(&out, "20261205000200").contains("portfolio"), "{out}");
    assert!(line(&out, "20261205000200").ends_with("pending"), "{out}");
    assert!(
        out.contains(&format!("2 applied, {} pending, 1 to bring forward", all - 3)),
        "{out}"
    );

    // `perly migrate` brings it forward and applies the rest.
    let (code, out, err) = perly(&db, &["migrate"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("brought forward 20261201000001 channels"), "{out}");
    assert!(out.contains("b3c074b"), "{out}");
    assert!(out.contains("applied 20261205000200 portfolio"), "{out}");
    let (code, out, _) = perly(&db, &["migrate", "--status"]);
    assert_eq!(code, 0);
    assert!(
        out.contains(&format!("{all} applied, 0 pending, 0 to bring forward")),
        "{out}"
    );
    assert!(!out.contains("mismatch"), "{out}");

    // A checksum Perly cannot account for: shown, and refused.
    let mut conn = connect_database(&db).await;
    let tamper = match dialect {
        Dialect::Sqlite => "UPDATE _sqlx_migrations SET checksum = X'0123456789abcdef' WHERE version = 20261124000002",
        Dialect::Postgres => {
            "UPDATE _sqlx_migrations SET checksum = '\\x0123456789abcdef'::bytea WHERE version = 20261124000002"
        }
    };
    sqlx::query(tamper).execute(&mut conn).await.expect("tamper");
    let (code, out, err) = perly(&db, &["migrate", "--status"]);
    assert_eq!(code, 1, "{out}{err}");
    let sessions = line(&out, "20261124000002");
    assert!(
        sessions.contains("checksum mismatch")
            && sessions.contains("0123456789abcdef")
            && !sessions.contains("applied from an earlier edit"),
        "{out}"
    );
    assert!(
        err.contains("would refuse to migrate") && err.contains("20261124000002 (sessions)"),
        "{err}"
    );
    let (code, out, err) = perly(&db, &["migrate"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("migration 20261124000002 (sessions) was applied from a text of its file that this build of Perly does not know"),
        "{err}"
    );

    // Put the right checksum back; then a migration of a newer build.
    let sessions_checksum = migrations::migrator(dialect)
        .iter()
        .find(|m| m.version == 20261124000002)
        .map(|m| m.checksum.to_vec())
        .expect("sessions");
    sqlx::query("UPDATE _sqlx_migrations SET checksum = $1 WHERE version = 20261124000002")
        .bind(sessions_checksum)
        .execute(&mut conn)
        .await
        .expect("untamper");
    assert_eq!(perly(&db, &["migrate", "--status"]).0, 0);
    sqlx::query(&format!(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         SELECT 29991231000001, 'from the future', {}, checksum, 0 FROM _sqlx_migrations WHERE version = 20261124000001",
        if dialect == Dialect::Sqlite { "1" } else { "TRUE" }
    ))
    .execute(&mut conn)
    .await
    .expect("newer migration");
    let (code, out, err) = perly(&db, &["migrate", "--status"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(line(&out, "29991231000001").contains("not in this build"), "{out}");
    assert!(
        err.contains("29991231000001 (from the future) is not in this build"),
        "{err}"
    );
    let (code, _, err) = perly(&db, &["migrate"]);
    assert_eq!(code, 1);
    assert!(err.contains("a newer Perly migrated this database"), "{err}");
}
