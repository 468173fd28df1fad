//! Migrations: sqlx's embedded migrations of each backend, and what keeps
//! upgrades from breaking an install.
//!
//! sqlx records every applied migration with the SHA-384 checksum of its
//! file and refuses a database whose recorded checksum differs from the
//! file it now has. Three files were edited after they landed
//! (`20261124000001_init.sql` twice, `20261124000002_sessions.sql` once,
//! `20261201000001_channels.sql` twice), so a database made by an earlier
//! build (a demo's `./data`) was refused. Each of those earlier texts is
//! kept in `migrations/earlier/<backend>/<version>_<name>.<commit>.sql`,
//! byte for byte as that commit had it, with a `.repair.sql` beside it
//! that brings a database from that text to the next one. Before sqlx
//! runs, [`run`] looks at the recorded checksums:
//! - the file's checksum: nothing to do;
//! - the checksum of an earlier text of that same file: its repairs run, in
//!   order, up to the file as it is now, and the recorded checksum is
//!   updated, all in one transaction (with every other such migration);
//! - anything else: refused, naming the migration ([`MigrationError`]).
//!   Perly never accepts a checksum it cannot account for.
//!
//! The files in `migrations/{sqlite,postgres}` today are the baseline: from
//! now on the schema changes by new migrations only.
//! `migrations/checksums.txt` lists every file's checksum and a test fails
//! when a listed file changes or disappears, or a file is not listed.

use std::collections::{BTreeMap, HashSet};

use sha2::{Digest, Sha384};
use sqlx::migrate::{Migrate, Migration, MigrationType, Migrator};
use sqlx::AnyConnection;
use sqlx::{AnyPool, Connection, Executor, Row};

use crate::db::{Dialect, Pools};

/// The migrations of the SQLite backend, embedded at build time.
pub static SQLITE: Migrator = sqlx::migrate!("./migrations/sqlite");
/// The migrations of the PostgreSQL backend, embedded at build time.
pub static POSTGRES: Migrator = sqlx::migrate!("./migrations/postgres");

/// The embedded migrations of a backend.
pub fn migrator(dialect: Dialect) -> &'static Migrator {
    match dialect {
        Dialect::Sqlite => &SQLITE,
        Dialect::Postgres => &POSTGRES,
    }
}

/// An earlier text of a migration file, as builds from `commit` to `until`
/// applied it, and the SQL that brings a database from it to the next text
/// of the file (the next earlier edit, or the file as it is now).
#[derive(Debug, Clone, Copy)]
pub struct EarlierEdit {
    pub version: i64,
    /// The commit that wrote this text.
    pub commit: &'static str,
    /// The last commit that shipped it.
    pub until: &'static str,
    /// The file as it was.
    pub sql: &'static str,
    /// From this text to the next one.
    pub repair: &'static str,
}

impl EarlierEdit {
    pub fn checksum(&self) -> Vec<u8> {
        checksum(self.sql)
    }
}

/// sqlx's checksum of a migration: SHA-384 of the file's bytes.
pub fn checksum(sql: &str) -> Vec<u8> {
    Sha384::digest(sql.as_bytes()).to_vec()
}

macro_rules! earlier {
    ($backend:literal, $stem:literal, $version:literal, $commit:literal, $until:literal) => {
        EarlierEdit {
            version: $version,
            commit: $commit,
            until: $until,
            sql: include_str!(concat!(
                "../migrations/earlier/",
                $backend,
                "/",
                $stem,
                ".",
                $commit,
                ".sql"
            )),
            repair: include_str!(concat!(
                "../migrations/earlier/",
                $backend,
                "/",
                $stem,
                ".",
                $commit,
                ".repair.sql"
            )),
        }
    };
}

/// Every earlier text of every edited migration, oldest first per version.
/// Nothing is ever added here: migrations are no longer edited.
static SQLITE_EARLIER: [EarlierEdit; 5] = [
    earlier!("sqlite", "20261124000001_init", 20261124000001, "66cd4ed", "2759308"),
    earlier!("sqlite", "20261124000001_init", 20261124000001, "5c1e236", "f6b0610"),
    earlier!(
        "sqlite",
        "20261124000002_sessions",
        20261124000002,
        "52ce315",
        "f6b0610"
    ),
    earlier!(
        "sqlite",
        "20261201000001_channels",
        20261201000001,
        "b3c074b",
        "f5949ec"
    ),
    earlier!(
        "sqlite",
        "20261201000001_channels",
        20261201000001,
        "c5ce936",
        "823f08e"
    ),
];
static POSTGRES_EARLIER: [EarlierEdit; 5] = [
    earlier!("postgres", "20261124000001_init", 20261124000001, "66cd4ed", "2759308"),
    earlier!("postgres", "20261124000001_init", 20261124000001, "5c1e236", "f6b0610"),
    earlier!(
        "postgres",
        "20261124000002_sessions",
        20261124000002,
        "52ce315",
        "f6b0610"
    ),
    earlier!(
        "postgres",
        "20261201000001_channels",
        20261201000001,
        "b3c074b",
        "f5949ec"
    ),
    earlier!(
        "postgres",
        "20261201000001_channels",
        20261201000001,
        "c5ce936",
        "823f08e"
    ),
];

/// The earlier texts of a backend's edited migrations, oldest first per version.
pub fn earlier_edits(dialect: Dialect) -> &'static [EarlierEdit] {
    match dialect {
        Dialect::Sqlite => &SQLITE_EARLIER,
        Dialect::Postgres => &POSTGRES_EARLIER,
    }
}

/// Why Perly will not migrate a database. Nothing was changed when one of
/// these is returned.
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error(
        "migration {version} ({description}) was applied from a text of its file that this build of Perly does not \
         know (recorded checksum {stored}…): neither the file as it is now nor any earlier edit of it. Perly will not \
         guess what that text did to the schema. Run the build that applied it, or restore a backup taken before \
         (README, \"Upgrades, migrations and backups\")"
    )]
    UnknownChecksum {
        version: i64,
        description: String,
        stored: String,
    },
    #[error(
        "migration {version} ({description}) is in the database but not in this build: a newer Perly migrated \
         this database. Downgrades are not supported; run that build or a newer one"
    )]
    NotInThisBuild { version: i64, description: String },
    #[error(
        "migration {version} ({description}) failed part-way when it was applied (recorded as unsuccessful): \
         restore the database from a backup taken before"
    )]
    Failed { version: i64, description: String },
    #[error(
        "bringing migration {version} ({description}) forward from its text of {commit} failed; nothing was changed"
    )]
    Repair {
        version: i64,
        description: String,
        commit: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error(transparent)]
    Sqlx(#[from] sqlx::migrate::MigrateError),
    #[error("{0}")]
    Invalid(String),
    #[error("cannot read the applied migrations")]
    Database(#[from] sqlx::Error),
}

/// One row of `_sqlx_migrations`.
#[derive(Debug, Clone)]
struct AppliedRow {
    version: i64,
    description: String,
    checksum: Vec<u8>,
    success: bool,
    installed_on: Option<String>,
}

/// What an applied migration's recorded checksum says.
enum Recorded {
    Current,
    /// The index of its text among the earlier edits of the backend.
    Earlier(usize),
    Unknown,
    NotInThisBuild,
}

fn classify(dialect: Dialect, row: &AppliedRow) -> Recorded {
    let Some(current) = migrator(dialect).iter().find(|m| m.version == row.version) else {
        return Recorded::NotInThisBuild;
    };
    if *current.checksum == row.checksum[..] {
        return Recorded::Current;
    }
    earlier_edits(dialect)
        .iter()
        .position(|e| e.version == row.version && e.checksum() == row.checksum)
        .map_or(Recorded::Unknown, Recorded::Earlier)
}

fn short_hex(bytes: &[u8]) -> String {
    bytes.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// The applied migrations, oldest first; `None` when the database has no
/// migrations table yet.
async fn read_applied(conn: &mut AnyConnection, dialect: Dialect) -> Result<Option<Vec<AppliedRow>>, sqlx::Error> {
    let exists = match dialect {
        Dialect::Sqlite => {
            sqlx::query("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'")
                .fetch_one(&mut *conn)
                .await?
                .try_get::<i64, _>(0)?
        }
        Dialect::Postgres => sqlx::query(
            "SELECT COUNT(*) FROM information_schema.tables \
                 WHERE table_schema = current_schema() AND table_name = '_sqlx_migrations'",
        )
        .fetch_one(&mut *conn)
        .await?
        .try_get::<i64, _>(0)?,
    };
    if exists == 0 {
        return Ok(None);
    }
    let rows = sqlx::query(
        "SELECT version, description, checksum, CASE WHEN success THEN 1 ELSE 0 END AS ok, \
         CAST(installed_on AS TEXT) AS installed_on FROM _sqlx_migrations ORDER BY version",
    )
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(AppliedRow {
                version: r.try_get("version")?,
                description: r.try_get("description")?,
                checksum: r.try_get("checksum")?,
                success: r.try_get::<i64, _>("ok")? != 0,
                installed_on: r.try_get("installed_on")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()
        .map(Some)
}

/// A migration applied from an earlier text of its file and brought forward.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BroughtForward {
    pub version: i64,
    pub description: String,
    /// The commit whose text had been applied.
    pub from_commit: &'static str,
}

/// What [`run`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrationRun {
    pub brought_forward: Vec<BroughtForward>,
    /// Migrations applied now: (version, description).
    pub applied: Vec<(i64, String)>,
}

/// Any lock id: it only has to differ from the other advisory locks Perly takes.
const REPAIR_LOCK: i64 = 0x7065_726c_7901;

/// Brings migrations applied from earlier texts of their files forward
/// (see the module documentation); refuses recorded checksums it cannot
/// account for, migrations of a newer build and failed ones. Returns what
/// it brought forward and the migrations still to apply.
async fn bring_forward(pools: &Pools) -> Result<(Vec<BroughtForward>, Vec<(i64, String)>), MigrationError> {
    let dialect = pools.dialect;
    let mut tx = pools.write.begin().await?;
    if dialect == Dialect::Postgres {
        // Two servers starting at once: the second waits here, then finds
        // the checksums current.
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(REPAIR_LOCK)
            .execute(&mut *tx)
            .await?;
    }
    let applied = read_applied(&mut tx, dialect).await?.unwrap_or_default();
    let mut repairs = Vec::new();
    for row in &applied {
        if !row.success {
            return Err(MigrationError::Failed {
                version: row.version,
                description: row.description.clone(),
            });
        }
        match classify(dialect, row) {
            Recorded::Current => {}
            Recorded::Earlier(i) => repairs.push((row, i)),
            Recorded::Unknown => {
                return Err(MigrationError::UnknownChecksum {
                    version: row.version,
                    description: row.description.clone(),
                    stored: short_hex(&row.checksum),
                })
            }
            Recorded::NotInThisBuild => {
                return Err(MigrationError::NotInThisBuild {
                    version: row.version,
                    description: row.description.clone(),
                })
            }
        }
    }
    let edits = earlier_edits(dialect);
    let mut done = Vec::new();
    for (row, first) in repairs {
        let Some(current) = migrator(dialect).iter().find(|m| m.version == row.version) else {
            continue;
        };
        // This text's repair, then those of the later texts of the file.
        for edit in edits[first..].iter().filter(|e| e.version == row.version) {
            (&mut *tx)
                .execute(edit.repair)
                .await
                .map_err(|source| MigrationError::Repair {
                    version: row.version,
                    description: row.description.clone(),
                    commit: edits[first].commit,
                    source,
                })?;
        }
        sqlx::query("UPDATE _sqlx_migrations SET checksum = $1 WHERE version = $2")
            .bind(current.checksum.to_vec())
            .bind(row.version)
            .execute(&mut *tx)
            .await?;
        done.push(BroughtForward {
            version: row.version,
            description: row.description.clone(),
            from_commit: edits[first].commit,
        });
    }
    tx.commit().await?;
    let known: HashSet<i64> = applied.iter().map(|r| r.version).collect();
    let pending = migrator(dialect)
        .iter()
        .filter(|m| !known.contains(&m.version))
        .map(|m| (m.version, m.description.to_string()))
        .collect();
    Ok((done, pending))
}

/// Migrates the database to this build's schema: brings migrations applied
/// from earlier texts of their files forward, then runs sqlx's migrator.
pub async fn run(pools: &Pools) -> Result<MigrationRun, MigrationError> {
    let (brought_forward, pending) = bring_forward(pools).await?;
    for b in &brought_forward {
        tracing::warn!(
            version = b.version,
            description = %b.description,
            from_commit = b.from_commit,
            "migration had been applied from an earlier edit of its file: brought forward"
        );
    }
    migrator(pools.dialect).run(&pools.write).await?;
    Ok(MigrationRun {
        brought_forward,
        applied: pending,
    })
}

/// Where one migration stands in a database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MigrationState {
    Applied,
    Pending,
    /// Applied from an earlier text of its file, which Perly brings forward
    /// when it next migrates (`perly migrate`, `perly serve`).
    EarlierEdit {
        commit: &'static str,
        until: &'static str,
    },
    /// Applied from a text this build does not know: Perly refuses to migrate.
    ChecksumMismatch {
        stored: String,
    },
    /// Recorded as unsuccessful: Perly refuses to migrate.
    Failed,
    /// Applied by a newer build: Perly refuses to migrate.
    NotInThisBuild,
}

/// One line of `perly migrate --status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationEntry {
    pub version: i64,
    pub description: String,
    pub state: MigrationState,
    /// When it was applied, as the database recorded it.
    pub installed_on: Option<String>,
}

/// Every migration of this build and every migration the database
/// recorded, by version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationStatus {
    /// False for a SQLite file that does not exist yet (everything pending).
    pub database_exists: bool,
    pub migrations: Vec<MigrationEntry>,
}

impl MigrationStatus {
    /// Whether migrating would be refused (and why, for the first cause).
    pub fn refusal(&self) -> Option<&MigrationEntry> {
        self.migrations.iter().find(|m| {
            matches!(
                m.state,
                MigrationState::ChecksumMismatch { .. } | MigrationState::Failed | MigrationState::NotInThisBuild
            )
        })
    }
}

/// The status of every migration, read without changing anything (a
/// SQLite file that does not exist is not created).
pub async fn status(url: &str) -> Result<MigrationStatus, MigrationError> {
    sqlx::any::install_default_drivers();
    let dialect = Dialect::from_url(url).map_err(|e| MigrationError::Invalid(e.to_string()))?;
    let pending = |db_exists| MigrationStatus {
        database_exists: db_exists,
        migrations: migrator(dialect)
            .iter()
            .map(|m| MigrationEntry {
                version: m.version,
                description: m.description.to_string(),
                state: MigrationState::Pending,
                installed_on: None,
            })
            .collect(),
    };
    if dialect == Dialect::Sqlite {
        match crate::db::sqlite_path(url) {
            Some(path) if std::path::Path::new(path).exists() => {}
            _ => return Ok(pending(false)),
        }
    }
    let mut conn = AnyConnection::connect(url).await?;
    let applied = read_applied(&mut conn, dialect).await?;
    conn.close().await.ok();
    let Some(applied) = applied else {
        return Ok(pending(true));
    };
    let mut by_version: BTreeMap<i64, MigrationEntry> =
        pending(true).migrations.into_iter().map(|m| (m.version, m)).collect();
    for row in &applied {
        let state = match classify(dialect, row) {
            _ if !row.success => MigrationState::Failed,
            Recorded::Current => MigrationState::Applied,
            Recorded::Earlier(i) => {
                let e = earlier_edits(dialect)[i];
                MigrationState::EarlierEdit {
                    commit: e.commit,
                    until: e.until,
                }
            }
            Recorded::Unknown => MigrationState::ChecksumMismatch {
                stored: short_hex(&row.checksum),
            },
            Recorded::NotInThisBuild => MigrationState::NotInThisBuild,
        };
        by_version.insert(
            row.version,
            MigrationEntry {
                version: row.version,
                description: row.description.clone(),
                state,
                installed_on: row.installed_on.clone(),
            },
        );
    }
    Ok(MigrationStatus {
        database_exists: true,
        migrations: by_version.into_values().collect(),
    })
}

/// For upgrade tests: applies migrations as an earlier build did, through
/// sqlx's own `apply` (which records each with its checksum). `set` names
/// each migration by version, with the commit of an earlier text of its
/// file, or `None` for the file as it is now.
#[doc(hidden)]
pub async fn apply_as_of(pool: &AnyPool, dialect: Dialect, set: &[(i64, Option<&str>)]) -> Result<(), MigrationError> {
    let mut conn = pool.acquire().await?;
    conn.ensure_migrations_table().await?;
    for &(version, commit) in set {
        let current = migrator(dialect)
            .iter()
            .find(|m| m.version == version)
            .ok_or_else(|| MigrationError::Invalid(format!("no migration {version} in this build")))?;
        let sql = match commit {
            None => current.sql.clone(),
            Some(commit) => earlier_edits(dialect)
                .iter()
                .find(|e| e.version == version && e.commit == commit)
                .map(|e| e.sql.into())
                .ok_or_else(|| {
                    MigrationError::Invalid(format!("no earlier text of migration {version} from {commit}"))
                })?,
        };
        let migration = Migration::new(version, current.description.clone(), MigrationType::Simple, sql, false);
        conn.apply(&migration).await?;
    }
    Ok(())
}
