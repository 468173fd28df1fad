//! Connecting to the database named by `PERLY_DATABASE_URL`, choosing the
//! dialect by URL scheme, and running the embedded migrations of that backend.
//!
//! SQLite runs in WAL mode with one writer connection per file and process
//! (SQLite allows one writer at a time; queueing writers in the pool avoids
//! lock errors) and a few reader connections. PostgreSQL uses one pool for both.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use sqlx::any::{install_default_drivers, AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

use crate::{Error, Result};

/// The few places where SQLite and PostgreSQL SQL differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    pub fn from_url(url: &str) -> Result<Self> {
        if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Ok(Self::Postgres)
        } else {
            Err(Error::Invalid(
                "database URL must start with sqlite:// or postgres://".to_owned(),
            ))
        }
    }

    /// A query of one row holding the rows of `inner` as one JSON text: an
    /// array with, per row, the array of `columns` (names or expressions
    /// over `inner`'s columns). Read with `fetch_json_rows`. SQLite's
    /// driver hands every result row from its worker thread to the caller
    /// on its own, waking it each time; on the write path, where a page of
    /// 1,000 records read hundreds of rows, that was the largest cost after
    /// SQLite's own work. One row per query makes it one wake-up.
    pub fn json_rows(self, inner: &str, columns: &str) -> String {
        match self {
            Self::Sqlite => format!("SELECT json_group_array(json_array({columns})) FROM ({inner})"),
            Self::Postgres => format!(
                "SELECT COALESCE(json_agg(json_build_array({columns})), '[]'::json)::text FROM ({inner}) AS rows"
            ),
        }
    }

    /// `column` as a condition no index is chosen for: SQLite, which keeps
    /// no table statistics, otherwise walks one of the workspace's sort
    /// indexes for `workspace_id = ? AND id IN (…)` instead of looking the
    /// ids up by primary key (a 300,000-account sync took 100 s instead of
    /// 18 s). The unary `+` is SQLite's documented way to say so.
    pub fn unindexed(self, column: &str) -> String {
        match self {
            Self::Sqlite => format!("+{column}"),
            Self::Postgres => column.to_owned(),
        }
    }

    /// `insert` (an `INSERT … ON CONFLICT DO NOTHING`) made to answer, as
    /// one JSON row like [`Self::json_rows`], the `column` of the rows it
    /// stored: on PostgreSQL, where another transaction may store the same
    /// keys meanwhile. `None` on SQLite: with its one writer, keys looked
    /// up in the same transaction are exact, and `RETURNING` would hand
    /// the rows over one by one.
    pub fn inserted_json(self, insert: &str, column: &str) -> Option<String> {
        match self {
            Self::Sqlite => None,
            Self::Postgres => Some(format!(
                "WITH stored AS ({insert} RETURNING {column}) {}",
                self.json_rows(&format!("SELECT {column} FROM stored"), column)
            )),
        }
    }

    /// A blob column as hexadecimal text (JSON holds no bytes).
    pub fn hex(self, column: &str) -> String {
        match self {
            Self::Sqlite => format!("hex({column})"),
            Self::Postgres => format!("encode({column}, 'hex')"),
        }
    }

    /// Row locks for read-modify-write inside a transaction (SQLite has one writer).
    pub fn for_update(self) -> &'static str {
        match self {
            Self::Sqlite => "",
            Self::Postgres => " FOR UPDATE",
        }
    }

    /// A table hint for substring search: SQLite reads the table straight
    /// through (fast) instead of walking a sort index with a row lookup per
    /// entry; PostgreSQL's planner decides on its own.
    pub fn scan_hint(self) -> &'static str {
        match self {
            Self::Sqlite => " NOT INDEXED",
            Self::Postgres => "",
        }
    }

    /// The SQL text to send. On SQLite, `$1 … $n` that appear exactly in
    /// order, once each, become anonymous `?` parameters: sqlx resolves a
    /// numbered parameter through SQLite's name lookup, which is linear in the
    /// number of parameters, so a 700-parameter batch statement would cost
    /// O(n²). Any other statement is sent as written.
    pub fn positional(self, sql: String) -> String {
        if self != Self::Sqlite {
            return sql;
        }
        let bytes = sql.as_bytes();
        let mut out = String::with_capacity(sql.len());
        let mut expected = 1usize;
        let mut i = 0;
        let mut last = 0;
        while i < bytes.len() {
            if bytes[i] == b'$' {
                let start = i + 1;
                let mut end = start;
                while end < bytes.len() && bytes[end].is_ascii_digit() {
                    end += 1;
                }
                if end > start {
                    let n: usize = sql[start..end].parse().unwrap_or(0);
                    if n != expected {
                        return sql;
                    }
                    out.push_str(&sql[last..i]);
                    out.push('?');
                    expected += 1;
                    last = end;
                    i = end;
                    continue;
                }
            }
            i += 1;
        }
        out.push_str(&sql[last..]);
        out
    }

    /// Claiming work without waiting on rows another replica holds.
    pub fn skip_locked(self) -> &'static str {
        match self {
            Self::Sqlite => "",
            Self::Postgres => " FOR UPDATE SKIP LOCKED",
        }
    }
}

/// The pools of one database.
#[derive(Debug, Clone)]
pub struct Pools {
    pub dialect: Dialect,
    pub write: AnyPool,
    pub read: AnyPool,
    /// On SQLite, this handle's share of the file's one write pool
    /// ([`FileWriter`]), which lives as long as one of its sharers.
    _file_writer: Option<Arc<FileWriter>>,
}

/// The write pool of one SQLite file, shared by every [`Pools`] this
/// process opens on that file (two servers of one process, a test's, or a
/// tool beside the server). SQLite allows one writer, and the write pools
/// join one shared page cache ([`shared_cache_url`]), where a lock is not
/// waited for by the busy timeout but by unlock notification, which fails
/// at once with `SQLITE_LOCKED` when two connections wait for each other:
/// one transaction reading the customers before writing them, another
/// writing the rollups and then reading the customers, say. Two write pools
/// on one file met in that deadlock (a 503 to about one run in twenty of
/// two servers importing and ingesting side by side); with one pool the
/// writes of every store take turns on one connection, and each store's
/// ingest writer writes only while it holds that connection
/// ([`crate::sqlite_ingest`]).
#[derive(Debug)]
struct FileWriter {
    pool: AnyPool,
}

/// The live write pools of this process, by SQLite file.
static FILE_WRITERS: tokio::sync::Mutex<BTreeMap<PathBuf, Weak<FileWriter>>> =
    tokio::sync::Mutex::const_new(BTreeMap::new());

/// The write pool of the SQLite file at `path`: the one this process has
/// open on it, or a new one from `open`. A pool closed by one of its
/// sharers is replaced, as is one all its sharers have dropped.
async fn file_writer<F>(path: &Path, open: F) -> Result<Arc<FileWriter>>
where
    F: std::future::Future<Output = Result<AnyPool>>,
{
    let key = file_key(path)?;
    let mut writers = FILE_WRITERS.lock().await;
    writers.retain(|_, writer| writer.strong_count() > 0);
    if let Some(writer) = writers
        .get(&key)
        .and_then(Weak::upgrade)
        .filter(|writer| !writer.pool.is_closed())
    {
        return Ok(writer);
    }
    let writer = Arc::new(FileWriter { pool: open.await? });
    writers.insert(key, Arc::downgrade(&writer));
    Ok(writer)
}

/// One name for a SQLite file however its path is spelled: its folder's
/// canonical path (the folder exists, [`sqlite_url`] makes it) and its name.
fn file_key(path: &Path) -> Result<PathBuf> {
    let name = path
        .file_name()
        .ok_or_else(|| Error::Invalid(format!("SQLite URL names no file: {}", path.display())))?;
    let folder = folder_of(path);
    let folder =
        std::fs::canonicalize(folder).map_err(|e| Error::Invalid(format!("cannot open {}: {e}", folder.display())))?;
    Ok(folder.join(name))
}

/// The folder of a database file's path: `.` for a bare file name.
fn folder_of(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// The file of a SQLite URL (`None` for an in-memory database or no path).
pub fn sqlite_path(url: &str) -> Option<&str> {
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:")
        .split('?')
        .next()
        .unwrap_or_default();
    (!path.is_empty() && path != ":memory:").then_some(path)
}

/// Makes sure a SQLite URL creates the file and its folder.
fn sqlite_url(url: &str) -> Result<String> {
    let Some(path) = sqlite_path(url) else {
        return Err(Error::Invalid(
            "SQLite URL needs a file path, e.g. sqlite://data/perly.db".into(),
        ));
    };
    let dir = folder_of(Path::new(path));
    std::fs::create_dir_all(dir).map_err(|e| Error::Invalid(format!("cannot create {}: {e}", dir.display())))?;
    Ok(if url.contains('?') {
        url.to_owned()
    } else {
        format!("sqlite://{path}?mode=rwc")
    })
}

/// `url` (a SQLite URL with its query) with `cache=shared`, whatever cache
/// it asked for: the URL of sqlx's one write connection, which shares its
/// page cache with the ingest writer's (see [`crate::sqlite_ingest`]). The
/// readers keep caches of their own: a connection of a shared cache locks
/// whole tables against the cache's other connections, and WAL readers
/// must never wait for the writer.
fn shared_cache_url(url: &str) -> String {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut params: Vec<&str> = query
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("cache="))
        .collect();
    params.push("cache=shared");
    format!("{base}?{}", params.join("&"))
}

/// How long a PostgreSQL request waits for a connection (connecting
/// included): while the server is down every request fails within this
/// ([`crate::Error::Unreachable`], 503 with `Retry-After`) instead of
/// hanging for sqlx's default 30 s. Queries on a connection have no such
/// limit: a slow query is not an outage. SQLite keeps 30 s: its one writer
/// is a queue, and waiting in it is not an outage.
pub const POSTGRES_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a SQLite connection waits for a lock another process holds (a
/// `perly` command, a `sqlite3` shell, a backup tool) before giving up with
/// SQLITE_BUSY, which the API answers with 503 and `Retry-After`
/// ([`crate::Error::Unreachable`]). Perly's own writes never wait on it:
/// they go through the one writer connection, and WAL readers do not block it.
pub const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(3);

/// The writers' settings on top of the shared ones, for bulk writes (a
/// Salesforce sync's pages of 1,000 rows, event batches): sqlx's write
/// connection and the ingest writer ([`crate::sqlite_ingest`]) alike.
/// Measured on a 300,000-account initial sync, 73.6 s instead of 92.1 s:
/// - statement journals in memory: a multi-row upsert keeps the pages it
///   may have to roll back, which otherwise go to a temporary file;
/// - a checkpoint every 80,000 WAL pages (320 MB) instead of SQLite's
///   1,000 (the automatic checkpoint, run by the committing connection
///   while it holds the write lock): pages rewritten by consecutive commits
///   (index leaves, the rollups, the customers' rows) are copied into the
///   database once per checkpoint, not once per commit, and every writer
///   waits less often behind one. Measured at 100,000 customers with
///   rescoring (BENCHMARKS.md, issue 17, ninth session): with 20,000 pages
///   a fifth of the ingest writer's time went to checkpoints; 80,000 with
///   the covering customer lookup took 23.9–26.9 k events/s and caught up
///   in 31–32 s, against 21.2–24.6 k and 35–40 s. The WAL file grows to
///   that size between checkpoints, the wal-index read by the readers to
///   about 700 KB, and a restart after a crash reads it back once.
pub(crate) const WRITER_PRAGMAS: &[&str] = &[
    "PRAGMA temp_store = MEMORY",
    "PRAGMA wal_autocheckpoint = 80000",
    "PRAGMA cache_size = -65536",
];

/// A PostgreSQL session setting of every Perly connection: statements are
/// planned with their values each time they run, never from a generic plan
/// cached by the connection. A generic plan is made once, from the table
/// sizes of that moment; on a table that was young then and that no
/// `ANALYZE` has visited since (autovacuum off, or not yet come by: a fresh
/// workspace importing 100,000 customers), it stays a sequential scan
/// forever. Measured: a customer lookup by external id took the scan over
/// 100,000 rows on every request of a long-lived connection (about 10 ms
/// instead of 0.04), and the API's reads took the database's CPU from
/// ingest and rescoring. Planning each time costs a fraction of a
/// millisecond per statement.
pub const POSTGRES_SESSION: &str = "SET plan_cache_mode = force_custom_plan";

fn postgres_pool_options(max: u32) -> AnyPoolOptions {
    AnyPoolOptions::new()
        .max_connections(max)
        .acquire_timeout(POSTGRES_ACQUIRE_TIMEOUT)
        .after_connect(|conn, _| {
            Box::pin(async move {
                conn.execute(POSTGRES_SESSION).await?;
                Ok(())
            })
        })
}

/// Opens the pools and runs migrations.
pub async fn connect(url: &str) -> Result<Pools> {
    let pools = open(url).await?;
    migrate(&pools).await?;
    Ok(pools)
}

/// Opens the pools without migrating.
pub async fn open(url: &str) -> Result<Pools> {
    install_default_drivers();
    let dialect = Dialect::from_url(url)?;
    let pools = match dialect {
        Dialect::Sqlite => {
            let url = sqlite_url(url)?;
            let options = AnyConnectOptions::from_str(&url)?;
            let shared = AnyConnectOptions::from_str(&shared_cache_url(&url))?;
            let pool = |options: AnyConnectOptions, max: u32, role: &'static [&'static str]| {
                AnyPoolOptions::new()
                    .max_connections(max)
                    .acquire_timeout(Duration::from_secs(30))
                    .after_connect(move |conn, _| {
                        Box::pin(async move {
                            conn.execute(format!("PRAGMA busy_timeout = {}", SQLITE_BUSY_TIMEOUT.as_millis()).as_str())
                                .await?;
                            conn.execute("PRAGMA journal_mode = WAL").await?;
                            conn.execute("PRAGMA synchronous = NORMAL").await?;
                            conn.execute("PRAGMA foreign_keys = ON").await?;
                            for pragma in role {
                                conn.execute(*pragma).await?;
                            }
                            Ok(())
                        })
                    })
                    .connect_with(options)
            };
            let path = sqlite_path(&url).map(PathBuf::from).unwrap_or_default();
            let writer = file_writer(&path, async { Ok(pool(shared, 1, WRITER_PRAGMAS).await?) }).await?;
            let read = pool(options, 4, &[]).await?;
            Pools {
                dialect,
                write: writer.pool.clone(),
                read,
                _file_writer: Some(writer),
            }
        }
        Dialect::Postgres => {
            let options = AnyConnectOptions::from_str(url)?;
            let pool = postgres_pool_options(16).connect_with(options).await?;
            Pools {
                dialect,
                write: pool.clone(),
                read: pool,
                _file_writer: None,
            }
        }
    };
    Ok(pools)
}

/// Pools that open their connections on first use, without migrations and
/// without creating a SQLite file or folder: for tools and tests that must
/// start whatever the database's state (a readiness check of a database
/// that is down). [`connect`] is what a server uses.
pub fn connect_lazy(url: &str) -> Result<Pools> {
    install_default_drivers();
    let dialect = Dialect::from_url(url)?;
    let options = AnyConnectOptions::from_str(url)?;
    let pool = match dialect {
        Dialect::Sqlite => AnyPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(30)),
        Dialect::Postgres => postgres_pool_options(4),
    }
    .connect_lazy_with(options);
    Ok(Pools {
        dialect,
        write: pool.clone(),
        read: pool,
        _file_writer: None,
    })
}

/// A new, empty PostgreSQL database on the server `url` names (same host and
/// credentials), named `perly_test_` and a random suffix: its URL. For the
/// tests' fresh databases (`PERLY_TEST_DATABASE_URL`); nothing drops it.
pub async fn create_scratch_postgres(url: &str) -> Result<String> {
    use sqlx::Connection;
    let (base, _) = url
        .rsplit_once('/')
        .ok_or_else(|| Error::Invalid(format!("the database URL {url} names no database")))?;
    let name = format!("perly_test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(url).await?;
    admin.execute(format!("CREATE DATABASE {name}").as_str()).await?;
    admin.close().await?;
    Ok(format!("{base}/{name}"))
}

/// Runs the embedded migrations of the backend, first bringing forward
/// those applied from earlier edits of their files (see [`crate::migrations`]).
pub async fn migrate(pools: &Pools) -> Result<crate::migrations::MigrationRun> {
    crate::migrations::run(pools).await.map_err(Error::Migrate)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `pools`' write connection can be had within 200 ms.
    async fn writable(pools: &Pools) -> bool {
        tokio::time::timeout(Duration::from_millis(200), pools.write.acquire())
            .await
            .is_ok_and(|conn| conn.is_ok())
    }

    /// Two opens of one SQLite file in one process, its path spelled two
    /// ways, write through one connection: while one holds it, the other
    /// waits. Another file has its own; a pool closed by one of its sharers
    /// or dropped by all of them is replaced by the next open.
    #[tokio::test]
    async fn one_process_writes_a_sqlite_file_through_one_write_pool() {
        let dir = tempfile::tempdir().expect("dir");
        let url = format!("sqlite://{}/perly.db", dir.path().display());
        let other_spelling = format!("sqlite://{}/./perly.db", dir.path().display());
        let a = open(&url).await.expect("open a");
        let b = open(&other_spelling).await.expect("open b");
        let elsewhere = open(&format!("sqlite://{}/other.db", dir.path().display()))
            .await
            .expect("open another file");

        let held = a.write.acquire().await.expect("a's write connection");
        assert!(!writable(&b).await, "b wrote beside a's write connection");
        assert!(writable(&elsewhere).await, "another file waited for this one's writer");
        drop(held);
        assert!(writable(&b).await, "b waited for a write connection nobody holds");

        a.write.close().await;
        let c = open(&url).await.expect("open c");
        assert!(writable(&c).await, "the next open got the closed pool");
        drop((a, b));
        let held = c.write.acquire().await.expect("c's write connection");
        let d = open(&url).await.expect("open d");
        assert!(!writable(&d).await, "d wrote beside c's write connection");
        drop((held, c, d));

        let e = open(&url).await.expect("open e");
        assert!(writable(&e).await);
        let folder = std::fs::canonicalize(dir.path()).expect("dir");
        let live = FILE_WRITERS
            .lock()
            .await
            .iter()
            .filter(|(file, writer)| file.starts_with(&folder) && writer.strong_count() > 0)
            .count();
        assert_eq!(live, 2, "e's and the other file's");
    }

    #[test]
    fn the_write_connection_asks_for_the_shared_cache_whatever_the_url_asked() {
        assert_eq!(
            shared_cache_url("sqlite://data/perly.db?mode=rwc"),
            "sqlite://data/perly.db?mode=rwc&cache=shared"
        );
        assert_eq!(
            shared_cache_url("sqlite://data/perly.db?cache=private&mode=rwc"),
            "sqlite://data/perly.db?mode=rwc&cache=shared"
        );
        assert_eq!(shared_cache_url("sqlite://perly.db"), "sqlite://perly.db?cache=shared");
    }

    #[test]
    fn sqlite_gets_anonymous_parameters_only_when_they_are_in_order() {
        let d = Dialect::Sqlite;
        assert_eq!(
            d.positional("SELECT $1, $2 WHERE x IN ($3, $4)".into()),
            "SELECT ?, ? WHERE x IN (?, ?)"
        );
        // Reused or out-of-order parameters keep their numbers.
        assert_eq!(d.positional("SELECT $2, $1".into()), "SELECT $2, $1");
        assert_eq!(d.positional("SELECT $1 WHERE a = $1".into()), "SELECT $1 WHERE a = $1");
        assert_eq!(d.positional("SELECT '$' || $1".into()), "SELECT '$' || ?");
        assert_eq!(Dialect::Postgres.positional("SELECT $1".into()), "SELECT $1");
    }
}
