//! Document content parsing (JSON and YAML) off the async runtime's threads and bounded: at most
//! `Limits::content_parsers` contents are parsed at once, each on a blocking thread, so a burst of
//! large CreateDocument calls costs CPU on those threads only and ListCommands keeps answering.
//!
//! The cost of one parse is bounded too: 64 KB of content at most (`check_document_size`) and
//! flow nesting at most 64 levels (`fleetrun_core::content_guard`), checked before libyaml runs.
//! Contents of a few KB (nearly every real document, parsed again by every SendCommand) are
//! parsed in place: a thread hop would cost more than the parse.

use std::sync::Arc;

use fleetrun_core::document::DocumentSpec;
use fleetrun_core::document_content;
use fleetrun_core::documents::DocumentFormat;
use fleetrun_core::error::CoreResult;
use tokio::sync::Semaphore;

use crate::error::{ApiError, ApiResult};

/// Contents up to this size are parsed on the calling task.
const INLINE_BYTES: usize = 8 * 1024;

/// The parser slots, shared by every request.
#[derive(Clone)]
pub struct ContentParsers {
    slots: Arc<Semaphore>,
}

impl ContentParsers {
    pub fn new(slots: usize) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(slots.max(1))),
        }
    }

    /// `document_content::parse`, bounded.
    pub async fn parse(
        &self,
        name: &str,
        version: &str,
        content: &str,
        format: DocumentFormat,
    ) -> ApiResult<DocumentSpec> {
        if content.len() <= INLINE_BYTES {
            return Ok(document_content::parse(name, version, content, format)?);
        }
        let (name, version, content) = (name.to_string(), version.to_string(), content.to_string());
        self.run(move || document_content::parse(&name, &version, &content, format))
            .await
    }

    /// `document_content::convert`, bounded.
    pub async fn convert(
        &self,
        content: &str,
        from: DocumentFormat,
        to: DocumentFormat,
    ) -> ApiResult<String> {
        if from == to || content.len() <= INLINE_BYTES {
            return Ok(document_content::convert(content, from, to)?);
        }
        let content = content.to_string();
        self.run(move || document_content::convert(&content, from, to))
            .await
    }

    /// Runs `job` on a blocking thread once a slot is free.
    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> CoreResult<T> + Send + 'static,
    ) -> ApiResult<T> {
        let permit = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ApiError::ServiceUnavailable)?;
        let joined = tokio::task::spawn_blocking(move || {
            let _slot = permit;
            job()
        })
        .await;
        match joined {
            Ok(result) => Ok(result?),
            Err(e) => Err(ApiError::Internal(format!("document parser failed: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use super::ContentParsers;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_more_than_the_slots_run_at_once_and_the_runtime_stays_free() {
        let parsers = ContentParsers::new(2);
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let jobs: Vec<_> = (0..6)
            .map(|_| {
                let (p, running, peak) = (parsers.clone(), running.clone(), peak.clone());
                tokio::spawn(async move {
                    p.run(move || {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(now, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(100));
                        running.fetch_sub(1, Ordering::SeqCst);
                        Ok(())
                    })
                    .await
                })
            })
            .collect();
        // While six jobs block, the async threads still answer within a few milliseconds.
        for _ in 0..10 {
            let t = std::time::Instant::now();
            tokio::time::sleep(Duration::from_millis(10)).await;
            assert!(t.elapsed() < Duration::from_millis(80), "runtime stalled");
        }
        for j in jobs {
            j.await.expect("join").expect("job");
        }
        assert_eq!(peak.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn large_nested_yaml_is_refused_as_invalid_content() {
        let parsers = ContentParsers::new(2);
        let content = format!(
            "schemaVersion: '2.2'\nmainSteps: {}",
            "{a: [".repeat(12_000)
        );
        let err = parsers
            .parse(
                "Nested",
                "",
                &content,
                fleetrun_core::documents::DocumentFormat::Yaml,
            )
            .await
            .map(|_| ())
            .expect_err("refused");
        assert_eq!(err.code(), "InvalidDocumentContent");
    }
}
