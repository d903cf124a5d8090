//! Walking a store listing that pages by key (nodes by id, documents by name) in batches, for the
//! operations whose filters must run here (a ping status depends on the time of the request).
//!
//! The caller pulls rows one at a time and stops once it has a page plus one; the store is asked
//! for a batch only when the previous one is used up. The first batch is the page plus one (all a
//! request without filters needs); each further batch doubles, up to [`MAX_BATCH`], so a selective
//! filter costs few round trips while memory stays bounded whatever the number of rows.

use std::future::Future;

use fleetrun_core::error::CoreResult;

use crate::error::ApiResult;

/// The most rows one batch asks for.
pub const MAX_BATCH: usize = 1024;

/// The rows of a keyset listing strictly after a key, fetched batch by batch.
pub struct Batches<T, K, F> {
    fetch: F,
    key_of: fn(&T) -> K,
    /// The key of the last row fetched: where the next batch starts.
    after: Option<K>,
    size: usize,
    rows: std::vec::IntoIter<T>,
    /// A batch came back short: the store has no more rows.
    exhausted: bool,
}

impl<T, K, F, Fut> Batches<T, K, F>
where
    K: Clone,
    F: FnMut(Option<K>, usize) -> Fut,
    Fut: Future<Output = CoreResult<Vec<T>>>,
{
    /// Rows after `after` (from the start when `None`); `fetch(after, limit)` asks the store for
    /// at most `limit` rows strictly after `after`, in key order; `key_of` reads a row's key.
    pub fn new(after: Option<K>, first_batch: usize, key_of: fn(&T) -> K, fetch: F) -> Self {
        Self {
            fetch,
            key_of,
            after,
            size: first_batch.clamp(1, MAX_BATCH),
            rows: Vec::new().into_iter(),
            exhausted: false,
        }
    }

    /// The next row in key order, or `None` when the store has no more.
    pub async fn next(&mut self) -> ApiResult<Option<T>> {
        loop {
            if let Some(row) = self.rows.next() {
                return Ok(Some(row));
            }
            if self.exhausted {
                return Ok(None);
            }
            let batch = (self.fetch)(self.after.clone(), self.size).await?;
            self.exhausted = batch.len() < self.size;
            if let Some(last) = batch.last() {
                self.after = Some((self.key_of)(last));
            }
            self.rows = batch.into_iter();
            self.size = (self.size * 2).min(MAX_BATCH);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Rows 0..n through a fake store that records each request.
    async fn walk(n: u32, after: Option<u32>, first: usize, take: usize) -> (Vec<u32>, Vec<usize>) {
        let rows: Vec<u32> = (0..n).collect();
        let asked = Mutex::new(Vec::new());
        let mut batches = Batches::new(
            after,
            first,
            |r: &u32| *r,
            |after, limit| {
                asked.lock().expect("lock").push(limit);
                let page: Vec<u32> = rows
                    .iter()
                    .copied()
                    .filter(|r| after.is_none_or(|a| *r > a))
                    .take(limit)
                    .collect();
                async move { Ok(page) }
            },
        );
        let mut got = Vec::new();
        while got.len() < take {
            match batches.next().await.expect("next") {
                Some(r) => got.push(r),
                None => break,
            }
        }
        drop(batches);
        (got, asked.into_inner().expect("lock"))
    }

    #[tokio::test]
    async fn walks_every_row_once_in_order_across_batches() {
        let (got, asked) = walk(50, None, 3, usize::MAX).await;
        assert_eq!(got, (0..50).collect::<Vec<_>>());
        // 3 + 6 + 12 + 24 = 45 rows, then a short batch of 5 ends the walk.
        assert_eq!(asked, [3, 6, 12, 24, 48]);
    }

    #[tokio::test]
    async fn starts_after_the_key_and_asks_no_more_than_needed() {
        let (got, asked) = walk(100, Some(9), 6, 6).await;
        assert_eq!(got, (10..16).collect::<Vec<_>>());
        assert_eq!(asked, [6]);
    }

    #[tokio::test]
    async fn an_exact_batch_ends_with_one_empty_request() {
        let (got, asked) = walk(4, None, 4, usize::MAX).await;
        assert_eq!(got, [0, 1, 2, 3]);
        assert_eq!(asked, [4, 8]);
    }

    #[tokio::test]
    async fn batches_are_capped() {
        let (got, asked) = walk(5000, None, 600, usize::MAX).await;
        assert_eq!(got.len(), 5000);
        assert!(asked.iter().all(|n| *n <= MAX_BATCH), "{asked:?}");
    }
}
