//! Migrations are append-only, and upgrades never break an install:
//! - the baseline: every migration file's checksum is in
//!   `migrations/checksums.txt` and must not change;
//! - every database an earlier build made (each earlier text of an edited
//!   migration) is brought forward to the schema of a fresh database;
//! - what Perly cannot account for is refused, naming the migration, with
//!   nothing changed.
//!
//! The database tests run on SQLite, and on PostgreSQL too when
//! `PERLY_TEST_DATABASE_URL` is a postgres URL (a fresh database each).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use perly_store::db::Dialect;
use perly_store::migrations::{self, MigrationError};
use sha2::{Digest, Sha384};
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Row};

const INIT: i64 = 20261124000001;
const SESSIONS: i64 = 20261124000002;
const CHANNELS: i64 = 20261201000001;

fn migrations_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `checksums.txt`: path (under migrations/) → hex checksum.
fn listed() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(migrations_dir().join("checksums.txt")).expect("migrations/checksums.txt");
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (path, sum) = l.split_once(' ').expect("`path checksum` lines");
            (path.to_owned(), sum.trim().to_owned())
        })
        .collect()
}

/// The migration files on disk (texts, not repairs), under migrations/.
fn files_on_disk() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for dir in ["sqlite", "postgres", "earlier/sqlite", "earlier/postgres"] {
        for entry in std::fs::read_dir(migrations_dir().join(dir)).expect("migrations folder") {
            let name = entry.expect("entry").file_name().to_string_lossy().into_owned();
            if name.ends_with(".sql") && !name.ends_with(".repair.sql") {
                out.insert(format!("{dir}/{name}"));
            }
        }
    }
    out
}

fn sha384_hex(path: &str) -> String {
    hex(&Sha384::digest(
        std::fs::read(migrations_dir().join(path)).expect("read migration"),
    ))
}

#[test]
fn the_baseline_migrations_never_change_and_new_ones_are_listed() {
    let listed = listed();
    let on_disk = files_on_disk();
    let mut problems = Vec::new();
    for (path, sum) in &listed {
        if !on_disk.contains(path) {
            problems.push(format!(
                "{path} is listed but gone: a migration is never removed or renamed (databases recorded it)"
            ));
        } else if sha384_hex(path) != *sum {
            problems.push(format!(
                "{path} changed after it landed: databases that applied it would be refused. \
                 Put the file back as it was and add a new migration instead"
            ));
        }
    }
    for path in on_disk.difference(&listed.keys().cloned().collect()) {
        problems.push(format!(
            "{path} is not in migrations/checksums.txt: add this line\n{path} {}",
            sha384_hex(path)
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // The list holds sqlx's own checksums, those the databases record.
    for (dir, migrator) in [("sqlite", &migrations::SQLITE), ("postgres", &migrations::POSTGRES)] {
        for m in migrator.iter() {
            let path = format!("{dir}/{}_{}.sql", m.version, m.description.replace(' ', "_"));
            assert_eq!(listed.get(&path), Some(&hex(&m.checksum)), "{path}");
        }
    }
    // And the earlier texts Perly brings forward are the listed ones.
    for (dir, dialect) in [("sqlite", Dialect::Sqlite), ("postgres", Dialect::Postgres)] {
        for e in migrations::earlier_edits(dialect) {
            assert!(
                listed
                    .iter()
                    .any(|(p, sum)| p.starts_with(&format!("earlier/{dir}/{}_", e.version))
                        && p.ends_with(&format!(".{}.sql", e.commit))
                        && *sum == hex(&e.checksum())),
                "{dir} {} as of {}",
                e.version,
                e.commit
            );
        }
    }
}

#[test]
fn both_backends_have_the_same_migrations() {
    let names = |m: &sqlx::migrate::Migrator| {
        m.iter()
            .map(|m| (m.version, m.description.to_string()))
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&migrations::SQLITE), names(&migrations::POSTGRES));
}

/// A fresh, empty database: a SQLite file in `dir`, or a new PostgreSQL
/// database on the server of `PERLY_TEST_DATABASE_URL`.
async fn fresh(dialect: Dialect, dir: &tempfile::TempDir, name: &str) -> String {
    match dialect {
        Dialect::Sqlite => format!("sqlite://{}/{name}.db", dir.path().display()),
        Dialect::Postgres => {
            let url = std::env::var("PERLY_TEST_DATABASE_URL").expect("a postgres URL");
            perly_store::db::create_scratch_postgres(&url)
                .await
                .expect("a fresh database")
        }
    }
}

fn backends() -> Vec<Dialect> {
    let mut out = vec![Dialect::Sqlite];
    if std::env::var("PERLY_TEST_DATABASE_URL").is_ok_and(|u| u.starts_with("postgres")) {
        out.push(Dialect::Postgres);
    }
    out
}

async fn pool(url: &str) -> AnyPool {
    sqlx::any::install_default_drivers();
    let url = if url.starts_with("sqlite") {
        format!("{url}?mode=rwc")
    } else {
        url.to_owned()
    };
    AnyPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .expect("connect")
}

async fn strings(pool: &AnyPool, sql: &str) -> Vec<String> {
    sqlx::query(sql)
        .fetch_all(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|r| {
            (0..r.len())
                .map(|i| {
                    r.try_get::<Option<String>, _>(i)
                        .map(Option::unwrap_or_default)
                        .or_else(|_| r.try_get::<i64, _>(i).map(|n| n.to_string()))
                        .expect("text or integer")
                })
                .collect::<Vec<_>>()
                .join(" | ")
        })
        .collect()
}

/// Everything about a schema that matters, one line each, in a stable
/// order: tables' columns (by name: a column added later sits last in its
/// table, which nothing reads by position), constraints, indexes.
async fn schema(url: &str, dialect: Dialect) -> Vec<String> {
    let pool = pool(url).await;
    let mut out = Vec::new();
    match dialect {
        Dialect::Sqlite => {
            let tables = strings(
                &pool,
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
                 AND name <> '_sqlx_migrations' ORDER BY name",
            )
            .await;
            for t in &tables {
                out.push(format!("table {t}"));
                for c in strings(
                    &pool,
                    &format!(
                        "SELECT name, type, \"notnull\", COALESCE(dflt_value, ''), pk FROM pragma_table_info('{t}') ORDER BY name"
                    ),
                )
                .await
                {
                    out.push(format!("column {t}.{c}"));
                }
                for fk in strings(
                    &pool,
                    &format!(
                        "SELECT \"from\", \"table\", \"to\" FROM pragma_foreign_key_list('{t}') ORDER BY \"from\""
                    ),
                )
                .await
                {
                    out.push(format!("foreign key {t}: {fk}"));
                }
                for (i, idx) in strings(
                    &pool,
                    &format!("SELECT name FROM pragma_index_list('{t}') WHERE origin <> 'c' ORDER BY name"),
                )
                .await
                .iter()
                .enumerate()
                {
                    let cols = strings(
                        &pool,
                        &format!("SELECT name FROM pragma_index_info('{idx}') ORDER BY seqno"),
                    )
                    .await;
                    out.push(format!("constraint {t} #{i}: {}", cols.join(", ")));
                }
            }
            for idx in strings(
                &pool,
                "SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL ORDER BY name",
            )
            .await
            {
                out.push(format!(
                    "index {}",
                    idx.split_whitespace().collect::<Vec<_>>().join(" ")
                ));
            }
        }
        Dialect::Postgres => {
            for c in strings(
                &pool,
                "SELECT table_name::text, column_name::text, data_type::text, is_nullable::text, \
                 COALESCE(column_default::text, '') FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name <> '_sqlx_migrations' \
                 ORDER BY table_name, column_name",
            )
            .await
            {
                out.push(format!("column {c}"));
            }
            for c in strings(
                &pool,
                "SELECT conrelid::regclass::text, conname::text, pg_get_constraintdef(oid) FROM pg_constraint \
                 WHERE connamespace = current_schema()::regnamespace AND conrelid::regclass::text <> '_sqlx_migrations' \
                 ORDER BY 1, 2",
            )
            .await
            {
                out.push(format!("constraint {c}"));
            }
            for i in strings(
                &pool,
                "SELECT indexname::text, indexdef FROM pg_indexes WHERE schemaname = current_schema() \
                 AND tablename <> '_sqlx_migrations' ORDER BY indexname",
            )
            .await
            {
                out.push(format!("index {i}"));
            }
        }
    }
    pool.close().await;
    out
}

async fn recorded(url: &str) -> Vec<(i64, Vec<u8>)> {
    let pool = pool(url).await;
    let rows = sqlx::query("SELECT version, checksum FROM _sqlx_migrations ORDER BY version")
        .fetch_all(&pool)
        .await
        .expect("applied migrations");
    pool.close().await;
    rows.iter()
        .map(|r| (r.get::<i64, _>(0), r.get::<Vec<u8>, _>(1)))
        .collect()
}

/// A build's migrations: each by version, with the commit of the text of
/// its file the build applied (`None`: the file as it is now).
type MigrationSet = &'static [(i64, Option<&'static str>)];

/// The migration sets of earlier builds (named by their commit ranges).
const EARLIER_BUILDS: &[(&str, MigrationSet)] = &[
    ("66cd4ed..2759308", &[(INIT, Some("66cd4ed"))]),
    ("5c1e236..785855e", &[(INIT, Some("5c1e236"))]),
    (
        "52ce315..f6b0610",
        &[(INIT, Some("5c1e236")), (SESSIONS, Some("52ce315"))],
    ),
    (
        "b3c074b..f5949ec",
        &[(INIT, None), (SESSIONS, None), (CHANNELS, Some("b3c074b"))],
    ),
    (
        "c5ce936..823f08e",
        &[(INIT, None), (SESSIONS, None), (CHANNELS, Some("c5ce936"))],
    ),
];

#[tokio::test]
async fn every_database_an_earlier_build_made_is_brought_forward_to_the_schema_of_a_fresh_one() {
    for dialect in backends() {
        let dir = tempfile::tempdir().expect("dir");
        let fresh_url = fresh(dialect, &dir, "fresh").await;
        perly_store::db::connect(&fresh_url).await.expect("fresh database");
        let want = schema(&fresh_url, dialect).await;
        let want_recorded = recorded(&fresh_url).await;
        // The snapshot sees columns, constraints and indexes.
        for kind in ["column", "constraint", "index"] {
            assert!(want.iter().any(|l| l.starts_with(kind)), "{dialect:?}: {want:#?}");
        }
        assert!(want.iter().any(|l| l.contains("customer_scores")), "{want:#?}");

        for (build, set) in EARLIER_BUILDS {
            let url = fresh(dialect, &dir, &build.replace('.', "_")).await;
            let old = pool(&url).await;
            migrations::apply_as_of(&old, dialect, set)
                .await
                .expect("migrations as that build applied them");
            old.close().await;
            assert!(
                perly_store::db::connect(&url).await.is_ok(),
                "{dialect:?}, database of {build}: migrating it failed"
            );
            let pools = perly_store::db::open(&url).await.expect("open");
            let again = perly_store::db::migrate(&pools).await.expect("migrate again");
            assert_eq!(again, Default::default(), "nothing left to do");
            pools.write.close().await;
            pools.read.close().await;
            let got = schema(&url, dialect).await;
            let missing: Vec<_> = want.iter().filter(|l| !got.contains(l)).collect();
            let extra: Vec<_> = got.iter().filter(|l| !want.contains(l)).collect();
            assert!(
                missing.is_empty() && extra.is_empty(),
                "{dialect:?}, database of {build}: schema differs from a fresh one\nmissing: {missing:#?}\nextra: {extra:#?}"
            );
            assert_eq!(
                recorded(&url).await,
                want_recorded,
                "{dialect:?} {build}: recorded checksums"
            );
        }
    }
}

#[tokio::test]
async fn migrating_reports_what_it_brought_forward_and_applied() {
    for dialect in backends() {
        let dir = tempfile::tempdir().expect("dir");
        let url = fresh(dialect, &dir, "old").await;
        let old = pool(&url).await;
        migrations::apply_as_of(&old, dialect, &[(INIT, Some("5c1e236")), (SESSIONS, Some("52ce315"))])
            .await
            .expect("old build");
        old.close().await;
        let pools = perly_store::db::open(&url).await.expect("open");
        let run = perly_store::db::migrate(&pools).await.expect("migrate");
        let forward: Vec<_> = run.brought_forward.iter().map(|b| (b.version, b.from_commit)).collect();
        assert_eq!(forward, [(INIT, "5c1e236"), (SESSIONS, "52ce315")]);
        let applied: Vec<i64> = run.applied.iter().map(|(v, _)| *v).collect();
        let later: Vec<i64> = migrations::migrator(dialect)
            .iter()
            .map(|m| m.version)
            .filter(|v| *v > SESSIONS)
            .collect();
        assert_eq!(applied, later);
    }
}

/// Builds the channels-era database of b3c074b, then tampers with one
/// recorded checksum (`sql`); migrating must fail with `check` and change
/// nothing: not even the channels repair it could have made.
async fn refused_untouched(dialect: Dialect, sql: &str, check: impl Fn(&MigrationError)) {
    let dir = tempfile::tempdir().expect("dir");
    let url = fresh(dialect, &dir, "tampered").await;
    let old = pool(&url).await;
    migrations::apply_as_of(
        &old,
        dialect,
        &[(INIT, None), (SESSIONS, None), (CHANNELS, Some("b3c074b"))],
    )
    .await
    .expect("old build");
    sqlx::query(sql).execute(&old).await.expect("tamper");
    old.close().await;
    let before = (schema(&url, dialect).await, recorded(&url).await);
    let pools = perly_store::db::open(&url).await.expect("open");
    match perly_store::db::migrate(&pools).await {
        Err(perly_store::Error::Migrate(e)) => check(&e),
        other => panic!("{dialect:?}: migrating must be refused, got {other:?}"),
    }
    pools.write.close().await;
    pools.read.close().await;
    assert_eq!(
        (schema(&url, dialect).await, recorded(&url).await),
        before,
        "{dialect:?}: a refused database is left as it was"
    );
}

#[tokio::test]
async fn a_checksum_perly_cannot_account_for_is_refused_naming_the_migration() {
    for dialect in backends() {
        let tamper = match dialect {
            Dialect::Sqlite => {
                "UPDATE _sqlx_migrations SET checksum = X'0123456789abcdef' WHERE version = 20261124000002"
            }
            Dialect::Postgres => {
                "UPDATE _sqlx_migrations SET checksum = '\\x0123456789abcdef'::bytea WHERE version = 20261124000002"
            }
        };
        refused_untouched(dialect, tamper, |e| {
            assert!(
                matches!(e, MigrationError::UnknownChecksum { version: SESSIONS, .. }),
                "{e:?}"
            );
            let text = e.to_string();
            assert!(
                text.contains("migration 20261124000002 (sessions)") && text.contains("0123456789abcdef"),
                "{text}"
            );
            assert!(text.contains("does not know"), "{text}");
        })
        .await;
    }
}

#[tokio::test]
async fn a_database_a_newer_perly_migrated_is_refused() {
    for dialect in backends() {
        let bool_true = if dialect == Dialect::Sqlite { "1" } else { "TRUE" };
        let tamper = format!(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             SELECT 29991231000001, 'from the future', {bool_true}, checksum, 0 FROM _sqlx_migrations WHERE version = 20261124000001"
        );
        refused_untouched(dialect, &tamper, |e| {
            assert!(
                matches!(
                    e,
                    MigrationError::NotInThisBuild {
                        version: 29991231000001,
                        ..
                    }
                ),
                "{e:?}"
            );
            assert!(e.to_string().contains("newer Perly"), "{e}");
        })
        .await;
        let failed = format!(
            "UPDATE _sqlx_migrations SET success = {} WHERE version = 20261201000001",
            if dialect == Dialect::Sqlite { "0" } else { "FALSE" }
        );
        refused_untouched(dialect, &failed, |e| {
            assert!(matches!(e, MigrationError::Failed { version: CHANNELS, .. }), "{e:?}");
        })
        .await;
    }
}
