//! The read side: a fixed set of threads, each owning one read-only connection, serving queries from
//! one shared queue.
//!
//! Why not `spawn_blocking` + a mutex per connection: ten thousand parked agent polls all
//! authenticating at once made tokio's blocking pool grow to hundreds of threads that mostly slept on
//! four connection mutexes — thread switches, stacks and malloc arenas for nothing. A fixed pool does
//! the same work with as many threads as connections.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use fleetrun_core::error::CoreResult;
use fleetrun_core::CoreError;
use rusqlite::Connection;

use super::reply::{self, panic_message, Reply};
use super::Result;

type ReadJob = Box<dyn FnOnce(&Connection) + Send>;

/// The handle the store keeps. Dropping it stops the threads once the queued queries are answered.
pub(crate) struct Readers {
    queue: Option<Sender<ReadJob>>,
    threads: Vec<JoinHandle<()>>,
}

impl Readers {
    /// Moves each connection onto a thread of its own.
    pub(crate) fn start(conns: Vec<Connection>) -> std::io::Result<Readers> {
        let (queue, jobs) = channel::<ReadJob>();
        let jobs = Arc::new(Mutex::new(jobs));
        let mut threads = Vec::with_capacity(conns.len());
        for (i, conn) in conns.into_iter().enumerate() {
            let jobs = jobs.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("fleetrun-sqlite-reader-{i}"))
                    .spawn(move || serve(&conn, &jobs))?,
            );
        }
        Ok(Readers {
            queue: Some(queue),
            threads,
        })
    }

    fn submit<T, F>(&self, query: F, reply: Reply<T>)
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let job: ReadJob = Box::new(move |conn| {
            let answer = match catch_unwind(AssertUnwindSafe(|| query(conn))) {
                Ok(result) => result.map_err(CoreError::from),
                Err(panic) => Err(CoreError::Store(format!(
                    "storage query panicked: {}",
                    panic_message(panic.as_ref())
                ))),
            };
            reply(answer);
        });
        // Should the threads be gone, the job (and its reply) is dropped here and the caller is
        // answered with "dropped the query".
        if let Some(queue) = &self.queue {
            let _ = queue.send(job);
        }
    }

    /// Runs `query` on a free connection and waits for it without blocking the async runtime.
    pub(crate) async fn read<T, F>(&self, query: F) -> CoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        reply::wait(|r| self.submit(query, r)).await
    }

    /// Runs `query` on a free connection, blocking the calling thread.
    pub(crate) fn read_blocking<T, F>(&self, query: F) -> CoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        reply::wait_blocking(|r| self.submit(query, r))
    }
}

impl Drop for Readers {
    fn drop(&mut self) {
        self.queue.take();
        let me = std::thread::current().id();
        for thread in self.threads.drain(..) {
            if thread.thread().id() != me {
                let _ = thread.join();
            }
        }
    }
}

fn serve(conn: &Connection, jobs: &Mutex<Receiver<ReadJob>>) {
    loop {
        // One thread waits in `recv` while the others wait for the lock; the lock is released
        // before the query runs, so queries run in parallel.
        let next = {
            let queue = jobs.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            queue.recv()
        };
        match next {
            Ok(job) => job(conn),
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_run_in_parallel_on_every_connection_and_panics_are_answered() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("r.db");
        Connection::open(&path)
            .expect("open")
            .execute_batch(
                "PRAGMA journal_mode = WAL; CREATE TABLE t (v); INSERT INTO t VALUES (42)",
            )
            .expect("schema");
        let conns = (0..3)
            .map(|_| Connection::open(&path).expect("open"))
            .collect();
        let readers = Arc::new(Readers::start(conns).expect("start"));
        // Three queries that each wait for the other two: they only finish if all three run at once.
        let barrier = Arc::new(std::sync::Barrier::new(3));
        let callers: Vec<_> = (0..3)
            .map(|_| {
                let (readers, barrier) = (readers.clone(), barrier.clone());
                std::thread::spawn(move || {
                    readers.read_blocking(move |c| {
                        barrier.wait();
                        Ok(c.query_row("SELECT v FROM t", [], |r| r.get::<_, i64>(0))?)
                    })
                })
            })
            .collect();
        for c in callers {
            assert_eq!(c.join().expect("caller").expect("query"), 42);
        }
        let panicked = readers.read_blocking(|_| -> Result<()> { panic!("bad row") });
        assert!(panicked.expect_err("error").to_string().contains("bad row"));
        assert_eq!(
            readers
                .read_blocking(|c| Ok(c.query_row("SELECT v FROM t", [], |r| r.get::<_, i64>(0))?))
                .expect("still serving"),
            42
        );
    }
}
