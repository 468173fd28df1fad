//! A rusqlite connection kept on one thread of its own, for the ingest
//! writer and the rescoring claims' reader.
//!
//! Why not a blocking task per call: SQLite allocates with the C library's
//! malloc, and glibc gives each thread that allocates a heap (arena) of its
//! own, keeping what is freed there. A connection handed from one of
//! tokio's blocking threads to the next spread its page cache and its
//! statements' scratch memory over up to 16 arenas: ingest at 100,000
//! customers with rescoring peaked at 468–477 MB RSS (server and load
//! generator), against 288 MB with glibc held to one arena
//! (`MALLOC_ARENA_MAX=1`) and the same throughput (BENCHMARKS.md, issue 17).
//! One thread per connection keeps each connection's memory in one arena.

use std::sync::mpsc;

use rusqlite::Connection;

use crate::{Error, Result};

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// The connection's thread: jobs run one at a time, in the order sent.
#[derive(Debug)]
pub(crate) struct ConnThread {
    jobs: mpsc::Sender<Job>,
    name: &'static str,
}

impl ConnThread {
    /// Moves `conn` to a new thread named `name`; the thread ends when the
    /// `ConnThread` is dropped.
    pub(crate) fn spawn(name: &'static str, mut conn: Connection) -> Result<Self> {
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                for job in queue {
                    // A job that panics answers nothing (its caller gets an
                    // error); the thread goes on with the next.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&mut conn)));
                }
            })
            .map_err(|e| Error::Unavailable(sqlx::Error::Protocol(format!("{name}: cannot start its thread: {e}"))))?;
        Ok(Self { jobs, name })
    }

    /// Runs `f` with the connection on its thread and answers its result
    /// (an error if the job panicked).
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> T + Send + 'static,
    ) -> Result<T> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let _ = reply.send(f(conn));
        });
        let gone = || Error::Unavailable(sqlx::Error::Protocol(format!("{}: its thread stopped", self.name)));
        self.jobs.send(job).map_err(|_| gone())?;
        answer.await.map_err(|_| gone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_in_order_on_the_connections_own_thread() {
        let conn = Connection::open_in_memory().expect("open");
        let thread = ConnThread::spawn("test-sqlite", conn).expect("spawn");
        thread
            .run(|c| c.execute_batch("CREATE TABLE t (n INTEGER)"))
            .await
            .expect("run")
            .expect("create");
        for n in 0..3 {
            thread
                .run(move |c| c.execute("INSERT INTO t VALUES (?1)", [n]))
                .await
                .expect("run")
                .expect("insert");
        }
        let (names, sum) = thread
            .run(|c| {
                let sum: i64 = c.query_row("SELECT SUM(n) FROM t", [], |r| r.get(0)).expect("sum");
                (std::thread::current().name().map(str::to_owned), sum)
            })
            .await
            .expect("run");
        assert_eq!(names.as_deref(), Some("test-sqlite"));
        assert_eq!(sum, 3);
    }

    /// The bundled SQLite is built as `.cargo/config.toml` asks: connections
    /// on several threads at once would otherwise share one page-cache mutex
    /// and take another on every allocation (ingest at 100,000 customers:
    /// 11.5-11.9 k events/s with them, 16.7-17.8 k without).
    #[test]
    fn sqlite_is_built_without_the_process_wide_cache_and_memory_mutexes() {
        let conn = Connection::open_in_memory().expect("open");
        let mut stmt = conn.prepare("PRAGMA compile_options").expect("prepare");
        let options: Vec<String> = stmt
            .query_map([], |r| r.get(0))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("options");
        assert!(!options.iter().any(|o| o == "ENABLE_MEMORY_MANAGEMENT"), "{options:?}");
        assert!(options.iter().any(|o| o == "DEFAULT_MEMSTATUS=0"), "{options:?}");
        assert!(options.iter().any(|o| o == "THREADSAFE=1"), "{options:?}");
    }
}
