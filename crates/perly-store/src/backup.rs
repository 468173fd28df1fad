//! `perly backup FILE`: a consistent copy of a live SQLite database.
//!
//! SQLite's `VACUUM INTO` writes the database as one read transaction saw
//! it: a snapshot, taken while the server keeps writing (in WAL mode
//! readers and the writer do not wait for each other). The copy is written
//! next to FILE under a temporary name, checked (`PRAGMA integrity_check`),
//! switched to a rollback journal (one self-contained file), synced to disk
//! and only then moved to FILE, so FILE is never a half-written backup.
//! PostgreSQL is refused: `pg_dump` does this job there.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection, Row};

use crate::db::{sqlite_path, Dialect};

/// Why a backup was not made. FILE is left as it was.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(
        "perly backup copies a SQLite database, and this one is PostgreSQL: use pg_dump, e.g. \
         `pg_dump --format=custom --file=perly.dump \"$PERLY_DATABASE_URL\"` (restore with pg_restore)"
    )]
    Postgres,
    #[error("{0}")]
    Invalid(String),
    #[error("there is no SQLite database at {0}")]
    Missing(PathBuf),
    #[error("{0} already exists: choose another file, or pass --force to replace it")]
    Exists(PathBuf),
    #[error("cannot {what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("copying the database failed")]
    Database(#[from] sqlx::Error),
    #[error("the copy failed SQLite's integrity check ({0}); FILE was not written")]
    Integrity(String),
}

/// A backup that was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backup {
    pub path: PathBuf,
    pub bytes: u64,
    /// The newest migration the copy has (its schema version).
    pub latest_migration: Option<i64>,
}

/// Removes the temporary copy unless it was moved into place.
struct Partial(Option<PathBuf>);

impl Drop for Partial {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            for suffix in ["", "-journal", "-wal", "-shm"] {
                let mut name = p.clone().into_os_string();
                name.push(suffix);
                let _ = std::fs::remove_file(PathBuf::from(name));
            }
        }
    }
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BackupError {
    let path = path.to_owned();
    move |source| BackupError::Io { what, path, source }
}

/// Copies the SQLite database of `url` to `dest` (refusing an existing
/// `dest` unless `overwrite`).
pub async fn backup_sqlite(url: &str, dest: &Path, overwrite: bool) -> Result<Backup, BackupError> {
    if Dialect::from_url(url).map_err(|e| BackupError::Invalid(e.to_string()))? == Dialect::Postgres {
        return Err(BackupError::Postgres);
    }
    let source = PathBuf::from(
        sqlite_path(url).ok_or_else(|| BackupError::Invalid("the SQLite URL names no database file".into()))?,
    );
    if !source.is_file() {
        return Err(BackupError::Missing(source));
    }
    if dest.exists() {
        if !overwrite {
            return Err(BackupError::Exists(dest.to_owned()));
        }
        let same = std::fs::canonicalize(dest).ok() == std::fs::canonicalize(&source).ok();
        if same || !dest.is_file() {
            return Err(BackupError::Invalid(format!(
                "{} is {}: choose another file",
                dest.display(),
                if same { "the database itself" } else { "not a file" }
            )));
        }
    }
    let name = dest
        .file_name()
        .ok_or_else(|| BackupError::Invalid(format!("{} names no file", dest.display())))?;
    let dir = match dest.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(io("create", &dir))?;
    let mut partial_name = std::ffi::OsString::from(".");
    partial_name.push(name);
    partial_name.push(format!(".{}.partial", uuid::Uuid::new_v4().simple()));
    let partial = Partial(Some(dir.join(partial_name)));
    let tmp = partial.0.clone().unwrap_or_default();
    let tmp_text = tmp
        .to_str()
        .ok_or_else(|| BackupError::Invalid(format!("{} is not UTF-8", tmp.display())))?
        .to_owned();

    // The snapshot: one read transaction of a connection of our own.
    let options = SqliteConnectOptions::from_str(url)?
        .create_if_missing(false)
        .busy_timeout(Duration::from_secs(30));
    let mut conn = options.connect().await?;
    sqlx::query("VACUUM INTO ?").bind(tmp_text).execute(&mut conn).await?;
    conn.close().await?;

    // Check the copy, and make it one self-contained file.
    let mut copy: SqliteConnection = SqliteConnectOptions::new()
        .filename(&tmp)
        .create_if_missing(false)
        .foreign_keys(false)
        .connect()
        .await?;
    sqlx::query("PRAGMA journal_mode = DELETE").execute(&mut copy).await?;
    let check: Vec<String> = sqlx::query("PRAGMA integrity_check")
        .fetch_all(&mut copy)
        .await?
        .iter()
        .map(|r| r.try_get::<String, _>(0))
        .collect::<Result<_, _>>()?;
    if check != ["ok"] {
        return Err(BackupError::Integrity(check.join("; ")));
    }
    let has_migrations: i64 =
        sqlx::query("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'")
            .fetch_one(&mut copy)
            .await?
            .try_get(0)?;
    let latest_migration = if has_migrations > 0 {
        sqlx::query("SELECT MAX(version) FROM _sqlx_migrations")
            .fetch_one(&mut copy)
            .await?
            .try_get::<Option<i64>, _>(0)?
    } else {
        None
    };
    copy.close().await?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(io("sync", &tmp))?;
    let bytes = std::fs::metadata(&tmp).map_err(io("read", &tmp))?.len();

    // Into place: replacing FILE only when asked to; never over a FILE that
    // appeared meanwhile otherwise (a hard link fails if the name exists).
    if overwrite {
        std::fs::rename(&tmp, dest).map_err(io("write", dest))?;
    } else {
        match std::fs::hard_link(&tmp, dest) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(BackupError::Exists(dest.to_owned()));
            }
            // A file system without hard links.
            Err(_) if !dest.exists() => std::fs::rename(&tmp, dest).map_err(io("write", dest))?,
            Err(e) => return Err(io("write", dest)(e)),
        }
    }
    drop(partial);
    // The new name is durable once its folder is synced.
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(Backup {
        path: dest.to_owned(),
        bytes,
        latest_migration,
    })
}
