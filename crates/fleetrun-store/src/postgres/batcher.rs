//! The queues behind [`PostgresStore`]'s `claim` and `finish`: callers hand in a job and wait for
//! its answer; one task per kind takes everything queued (up to [`MAX_BATCH`]) and runs it as one
//! transaction (`polls`), so the batch grows by itself with the load — a lone poll runs at once,
//! a fan-out's thousands of polls and reports run a few hundred at a time. Whatever piles up while
//! a batch runs is the next batch (group commit, as the SQLite writer does).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use fleetrun_core::command::{Claim, Finished};
use fleetrun_core::error::CoreResult;
use fleetrun_core::CoreError;
use tokio::sync::{mpsc, oneshot};

use super::polls::{self, first_unique, ClaimJob, FinishJob};
use super::{Inner, PostgresStore};

/// Most jobs in one transaction: bounds the statements' arrays and how long the first job of a
/// batch waits for the rest.
const MAX_BATCH: usize = 512;

/// Batches committed and the jobs they carried (see [`PostgresStore::batch_counts`]).
#[derive(Default)]
pub(crate) struct BatchCounts {
    transactions: AtomicU64,
    jobs: AtomicU64,
}

impl BatchCounts {
    fn committed(&self, jobs: usize) {
        self.transactions.fetch_add(1, Ordering::Relaxed);
        self.jobs
            .fetch_add(u64::try_from(jobs).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> (u64, u64) {
        (
            self.transactions.load(Ordering::Relaxed),
            self.jobs.load(Ordering::Relaxed),
        )
    }
}

type Queued<J, T> = (J, oneshot::Sender<CoreResult<T>>);

/// The sending ends; the tasks stop when the store (and with it this) is dropped.
pub(crate) struct Batcher {
    claims: mpsc::UnboundedSender<Queued<ClaimJob, Claim>>,
    finishes: mpsc::UnboundedSender<Queued<FinishJob, Finished>>,
}

impl Batcher {
    /// Starts both tasks for the store behind `inner` (weak: the tasks must not keep it alive).
    pub(crate) fn start(inner: Weak<Inner>) -> Batcher {
        let (claims, claim_queue) = mpsc::unbounded_channel();
        let (finishes, finish_queue) = mpsc::unbounded_channel();
        tokio::spawn(run(inner.clone(), claim_queue, "claim", |store, jobs| {
            Box::pin(claim_batch(store, jobs))
        }));
        tokio::spawn(run(inner, finish_queue, "finish", |store, jobs| {
            Box::pin(finish_batch(store, jobs))
        }));
        Batcher { claims, finishes }
    }

    pub(crate) async fn claim(&self, job: ClaimJob) -> CoreResult<Claim> {
        submit(&self.claims, job).await
    }

    pub(crate) async fn finish(&self, job: FinishJob) -> CoreResult<Finished> {
        submit(&self.finishes, job).await
    }
}

/// One batch of polls in one transaction (`in_transaction!`: retried whole after a deadlock or
/// serialization failure).
async fn claim_batch(
    store: PostgresStore,
    jobs: Vec<ClaimJob>,
) -> CoreResult<Vec<CoreResult<Claim>>> {
    let (store, jobs) = (&store, &jobs);
    in_transaction!(store, "claim", |tx| polls::claim_batch(&tx, jobs))
        .await
        .map(|claims| claims.into_iter().map(Ok).collect())
}

/// One batch of reports in one transaction, like [`claim_batch`].
async fn finish_batch(
    store: PostgresStore,
    jobs: Vec<FinishJob>,
) -> CoreResult<Vec<CoreResult<Finished>>> {
    let (store, jobs) = (&store, &jobs);
    in_transaction!(store, "finish", |tx| polls::finish_batch(&tx, jobs)).await
}

async fn submit<J, T>(queue: &mpsc::UnboundedSender<Queued<J, T>>, job: J) -> CoreResult<T> {
    let (reply, answer) = oneshot::channel();
    queue
        .send((job, reply))
        .map_err(|_| CoreError::Store("postgres store is shutting down".into()))?;
    answer
        .await
        .map_err(|_| CoreError::Store("postgres batch ended without an answer".into()))?
}

/// A job's key within a batch: a node polls once per batch, an invocation is reported once.
trait BatchKey {
    fn key(&self) -> String;
}

impl BatchKey for ClaimJob {
    fn key(&self) -> String {
        self.node.to_string()
    }
}

impl BatchKey for FinishJob {
    fn key(&self) -> String {
        format!("{}/{}", self.report.command_id, self.node)
    }
}

type BatchFuture<T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = CoreResult<Vec<CoreResult<T>>>> + Send>>;

/// One queue's loop: take what is queued, run it, answer every job, repeat.
async fn run<J, T, F>(
    inner: Weak<Inner>,
    mut queue: mpsc::UnboundedReceiver<Queued<J, T>>,
    what: &'static str,
    apply: F,
) where
    J: BatchKey + Send + 'static,
    T: Send + 'static,
    F: Fn(PostgresStore, Vec<J>) -> BatchFuture<T>,
{
    let mut waiting: Vec<Queued<J, T>> = Vec::new();
    loop {
        if waiting.is_empty() {
            if queue.recv_many(&mut waiting, MAX_BATCH).await == 0 {
                return; // the store is gone
            }
        } else {
            while waiting.len() < MAX_BATCH {
                match queue.try_recv() {
                    Ok(job) => waiting.push(job),
                    Err(_) => break,
                }
            }
        }
        let (batch, later) = first_unique(std::mem::take(&mut waiting), |(job, _)| job.key());
        waiting = later;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let store = PostgresStore {
            inner: Arc::clone(&inner),
        };
        drop(inner);
        let (jobs, replies): (Vec<J>, Vec<_>) = batch.into_iter().unzip();
        let size = jobs.len();
        match apply(store.clone(), jobs).await {
            Ok(answers) => {
                store.inner.batched.committed(size);
                for (reply, answer) in replies.into_iter().zip(answers) {
                    let _ = reply.send(answer);
                }
            }
            Err(e) => {
                tracing::debug!(what, size, error = %e, "postgres batch failed");
                let text = e.to_string();
                let mut first = Some(e);
                for reply in replies {
                    let err = first
                        .take()
                        .unwrap_or_else(|| CoreError::Store(text.clone()));
                    let _ = reply.send(Err(err));
                }
            }
        }
    }
}
