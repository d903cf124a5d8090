//! The single writer: one thread owns the write connection and applies queued jobs in batches, one
//! transaction per batch (group commit).
//!
//! Why a thread and not `spawn_blocking` + a mutex per call: SQLite has one writer anyway, and a
//! fan-out to thousands of nodes queues thousands of small writes (claims, finishes). Handing each
//! to a fresh blocking-pool thread that then sleeps on the mutex cost a thread switch and a futex
//! wake-up per write, and every write paid its own commit. Here writes queue on a channel; the
//! thread takes everything queued (up to [`MAX_BATCH`]) and commits once, so a touched page (the
//! command row, an index leaf) is written to the WAL once per batch instead of once per write.
//!
//! Guarantees, whatever the batch size:
//! - each job runs in its own savepoint, so a job that fails (or panics) undoes only its own writes;
//! - a caller hears back only after the batch commits: no answer is ever given for a write that is
//!   then lost. When the commit fails, every job of the batch is answered with that error.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::thread::JoinHandle;

use fleetrun_core::error::CoreResult;
use fleetrun_core::CoreError;
use rusqlite::Connection;

use super::reply::{self, panic_message, Reply};
use super::Result;

/// Most jobs applied in one transaction: bounds how long the first caller of a batch waits.
const MAX_BATCH: usize = 256;

/// A queued write, type-erased so one channel carries every operation.
trait Job: Send {
    /// Runs the write on the connection (inside its savepoint). Returns whether it succeeded.
    fn run(&mut self, conn: &mut Connection) -> bool;
    /// Answers the caller once the batch's fate is known (`Err` = the batch did not commit).
    fn complete(self: Box<Self>, batch: &std::result::Result<(), String>);
}

struct TypedJob<T, F> {
    work: Option<F>,
    outcome: Option<CoreResult<T>>,
    reply: Reply<T>,
}

impl<T, F> Job for TypedJob<T, F>
where
    T: Send,
    F: FnOnce(&mut Connection) -> Result<T> + Send,
{
    fn run(&mut self, conn: &mut Connection) -> bool {
        let Some(work) = self.work.take() else {
            return false;
        };
        let outcome = match catch_unwind(AssertUnwindSafe(|| work(conn))) {
            Ok(result) => result.map_err(CoreError::from),
            Err(panic) => Err(CoreError::Store(format!(
                "storage write panicked: {}",
                panic_message(panic.as_ref())
            ))),
        };
        let ok = outcome.is_ok();
        self.outcome = Some(outcome);
        ok
    }

    fn complete(self: Box<Self>, batch: &std::result::Result<(), String>) {
        let answer = match (batch, self.outcome) {
            // The job's own error stands whether or not the batch committed.
            (_, Some(Err(e))) => Err(e),
            (Ok(()), Some(Ok(value))) => Ok(value),
            (Err(why), _) => Err(CoreError::Store(why.clone())),
            (Ok(()), None) => Err(CoreError::Store("storage write was not run".into())),
        };
        (self.reply)(answer);
    }
}

/// The handle the store keeps: a queue into the writer thread. Dropping it stops the thread once
/// the queued jobs are done, and waits for that.
pub(crate) struct Writer {
    queue: Option<Sender<Box<dyn Job>>>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    /// Moves `conn` onto a new writer thread.
    pub(crate) fn start(conn: Connection) -> std::io::Result<Writer> {
        let (queue, jobs) = channel::<Box<dyn Job>>();
        let thread = std::thread::Builder::new()
            .name("fleetrun-sqlite-writer".into())
            .spawn(move || serve(conn, &jobs))?;
        Ok(Writer {
            queue: Some(queue),
            thread: Some(thread),
        })
    }

    /// Queues `work`; `reply` is called on the writer thread with its result after the commit.
    fn submit<T, F>(&self, work: F, reply: Reply<T>)
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let job = Box::new(TypedJob {
            work: Some(work),
            outcome: None,
            reply,
        });
        let Some(queue) = &self.queue else {
            job.complete(&Err("storage writer is stopped".into()));
            return;
        };
        if let Err(returned) = queue.send(job) {
            returned
                .0
                .complete(&Err("storage writer thread has stopped".into()));
        }
    }

    /// Runs `work` on the writer and waits for it without blocking the async runtime.
    pub(crate) async fn write<T, F>(&self, work: F) -> CoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        reply::wait(|r| self.submit(work, r)).await
    }

    /// Runs `work` on the writer and blocks the calling thread until it is committed.
    pub(crate) fn write_blocking<T, F>(&self, work: F) -> CoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        reply::wait_blocking(|r| self.submit(work, r))
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the queue ends the thread's loop after the jobs already queued.
        self.queue.take();
        if let Some(thread) = self.thread.take() {
            if thread.thread().id() != std::thread::current().id() {
                let _ = thread.join();
            }
        }
    }
}

fn serve(mut conn: Connection, jobs: &Receiver<Box<dyn Job>>) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let outcome = apply(&mut conn, &mut batch).map_err(|e| {
            tracing::error!(error = %e, jobs = batch.len(), "storage batch did not commit");
            format!("storage write failed: {e}")
        });
        for job in batch {
            job.complete(&outcome);
        }
    }
    tracing::debug!("storage writer stopped");
}

/// Runs every job of the batch in one transaction, each in its own savepoint, and commits.
fn apply(conn: &mut Connection, batch: &mut [Box<dyn Job>]) -> rusqlite::Result<()> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let applied = run_all(conn, batch).and_then(|()| {
        if conn.is_autocommit() {
            // SQLite rolled the transaction back itself (e.g. a full disk): nothing is kept.
            return Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ABORT),
                Some("the batch transaction was rolled back".into()),
            ));
        }
        conn.execute_batch("COMMIT")
    });
    if applied.is_err() && !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    applied
}

fn run_all(conn: &mut Connection, batch: &mut [Box<dyn Job>]) -> rusqlite::Result<()> {
    // Cached statements: parsing these two on every job was ~6 % of the server's CPU in a fan-out.
    let control = |conn: &Connection, sql: &str| conn.prepare_cached(sql)?.execute([]).map(drop);
    for job in batch.iter_mut() {
        control(conn, "SAVEPOINT job")?;
        if job.run(conn) {
            control(conn, "RELEASE job")?;
        } else {
            control(conn, "ROLLBACK TO job")?;
            control(conn, "RELEASE job")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer() -> (tempfile::TempDir, Writer, std::path::PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("w.db");
        let conn = Connection::open(&path).expect("open");
        conn.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (v INTEGER UNIQUE)")
            .expect("schema");
        (dir, Writer::start(conn).expect("start"), path)
    }

    fn count(path: &std::path::Path) -> i64 {
        Connection::open(path)
            .expect("open")
            .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
            .expect("count")
    }

    #[test]
    fn a_failing_job_undoes_only_its_own_writes() {
        let (_dir, w, path) = writer();
        w.write_blocking(|c| Ok(c.execute("INSERT INTO t VALUES (1)", [])?))
            .expect("first");
        let failed = w.write_blocking(|c| {
            c.execute("INSERT INTO t VALUES (2)", [])?;
            c.execute("INSERT INTO t VALUES (1)", [])?; // UNIQUE violation
            Ok(())
        });
        assert!(failed.is_err());
        w.write_blocking(|c| Ok(c.execute("INSERT INTO t VALUES (3)", [])?))
            .expect("third");
        drop(w);
        assert_eq!(count(&path), 2, "rows 1 and 3 kept, row 2 rolled back");
    }

    #[test]
    fn a_panicking_job_is_answered_and_the_writer_keeps_serving() {
        let (_dir, w, path) = writer();
        let panicked = w.write_blocking(|c| -> Result<()> {
            c.execute("INSERT INTO t VALUES (7)", [])?;
            panic!("boom");
        });
        let err = panicked.expect_err("a panic is an error");
        assert!(err.to_string().contains("boom"), "{err}");
        w.write_blocking(|c| Ok(c.execute("INSERT INTO t VALUES (8)", [])?))
            .expect("after panic");
        drop(w);
        assert_eq!(count(&path), 1);
    }

    #[test]
    fn concurrent_writes_are_all_committed_before_their_answer() {
        let (_dir, w, path) = writer();
        let w = std::sync::Arc::new(w);
        let callers: Vec<_> = (0..64)
            .map(|i| {
                let (w, path) = (w.clone(), path.clone());
                std::thread::spawn(move || {
                    w.write_blocking(move |c| Ok(c.execute("INSERT INTO t VALUES (?1)", [i])?))
                        .expect("write");
                    // Answered only after the commit: another connection already sees the row.
                    let seen: i64 = Connection::open(&path)
                        .expect("open")
                        .query_row("SELECT COUNT(*) FROM t WHERE v = ?1", [i], |r| r.get(0))
                        .expect("read");
                    assert_eq!(seen, 1);
                })
            })
            .collect();
        for c in callers {
            c.join().expect("caller");
        }
        drop(w);
        assert_eq!(count(&path), 64);
    }
}
