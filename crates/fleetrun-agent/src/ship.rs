//! Live output: while a step runs, its `stdout` and `stderr` files are tailed and their new
//! complete lines shipped to the server every [`TICK`], each piece at its byte offset in the
//! stream; the server answers how many bytes it holds and the next piece starts there. So a lost
//! answer, a broken connection or a restarted agent costs a resend, never a byte: the files on
//! disk are the buffer (a slow server makes shipping lag, not memory grow: one piece of at most
//! `MAX_OUTPUT_CHUNK_BYTES` is read at a time). When the step ends, the rest is shipped, a last
//! partial line included, before its report is built.
//!
//! A stream that nothing was shipped of and that its report carries whole (a short step) is not
//! shipped: the server files the report's copy (ARCHITECTURE.md, "Live output").

use std::future::Future;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use fleetrun_wire::agent::MAX_OUTPUT_CHUNK_BYTES;
use tokio::sync::watch;

use crate::capture::incomplete_tail;

/// How often a running step's files are looked at.
pub const TICK: Duration = Duration::from_millis(200);
/// Longest wait between attempts while the server cannot take output.
const RETRY_MAX: Duration = Duration::from_secs(30);

/// Why a piece was not taken.
#[derive(Debug)]
pub enum ShipFailure {
    /// The server could not be reached or was busy: try the same piece again later.
    Retry(String),
    /// The server refused it for good (the command is gone, ...): stop shipping the stream.
    Refused(String),
}

/// One piece of a stream.
#[derive(Debug, Clone, Copy)]
pub struct Piece<'a> {
    pub command_id: &'a str,
    pub step: &'a str,
    pub stream: &'a str,
    pub offset: u64,
    pub data: &'a [u8],
}

/// Where pieces go (the server channel; tests supply their own).
pub trait OutputSink: Send + Sync {
    /// Sends a piece; answers how many bytes of the stream the receiver holds.
    fn ship<'a>(
        &'a self,
        piece: Piece<'a>,
    ) -> Pin<Box<dyn Future<Output = Result<u64, ShipFailure>> + Send + 'a>>;
}

/// A sink that takes nothing (an executor without a server: tools and tests).
pub struct NoSink;

impl OutputSink for NoSink {
    fn ship<'a>(
        &'a self,
        piece: Piece<'a>,
    ) -> Pin<Box<dyn Future<Output = Result<u64, ShipFailure>> + Send + 'a>> {
        let held = piece.offset + piece.data.len() as u64;
        Box::pin(async move { Ok(held) })
    }
}

/// A shared sink, as the executor holds it.
pub type Sink = Arc<dyn OutputSink>;

/// One stream being tailed.
#[derive(Debug)]
struct Tail {
    name: &'static str,
    path: PathBuf,
    /// Bytes the server holds; `None` until asked (a step this agent process did not start).
    held: Option<u64>,
    /// Something was shipped (or the server held something) for this stream.
    shipped: bool,
    /// The server refused the stream: nothing more is sent.
    refused: bool,
}

/// The shipping state of a step's two streams.
#[derive(Debug)]
pub struct StepShipping {
    command_id: String,
    step: String,
    tails: [Tail; 2],
}

impl StepShipping {
    /// For a step whose files are in `dir`. `fresh`: this process just created them, so the
    /// server holds nothing yet; otherwise it is asked first.
    pub fn new(command_id: &str, step: &str, dir: &Path, fresh: bool) -> Self {
        let held = fresh.then_some(0);
        let tail = |name: &'static str| Tail {
            name,
            path: dir.join(name),
            held,
            shipped: false,
            refused: false,
        };
        Self {
            command_id: command_id.to_owned(),
            step: step.to_owned(),
            tails: [tail("stdout"), tail("stderr")],
        }
    }

    /// Ships new complete lines every [`TICK`] until `ended` turns true. Failures are retried
    /// with backoff and never end the step.
    pub async fn follow(&mut self, sink: &dyn OutputSink, mut ended: watch::Receiver<bool>) {
        let mut delay = TICK;
        let mut warned = false;
        loop {
            if *ended.borrow_and_update() {
                return;
            }
            let mut failed = false;
            for i in 0..self.tails.len() {
                match self.ship_available(sink, i, false).await {
                    Ok(()) => {}
                    Err(why) => {
                        failed = true;
                        if !warned {
                            warned = true;
                            tracing::warn!(command_id = %self.command_id, step = %self.step,
                                error = %why, "cannot ship live output; retrying with backoff");
                        }
                    }
                }
            }
            delay = if failed {
                (delay * 2).min(RETRY_MAX)
            } else {
                TICK
            };
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                _ = ended.changed() => {}
            }
        }
    }

    /// After the step ended: ships everything left, a partial last line included, retrying
    /// while the server cannot be reached. `whole_in_report` says, per stream, that the report
    /// carries all of it: such a stream is left to the report unless something of it was shipped.
    pub async fn finish(&mut self, sink: &dyn OutputSink, whole_in_report: [bool; 2]) {
        let mut delay = Duration::from_secs(1);
        for (i, whole) in whole_in_report.into_iter().enumerate() {
            let tail = &self.tails[i];
            if whole && tail.held == Some(0) && !tail.shipped {
                continue;
            }
            loop {
                match self.ship_available(sink, i, true).await {
                    Ok(()) => break,
                    Err(why) => {
                        tracing::warn!(command_id = %self.command_id, step = %self.step,
                            stream = self.tails[i].name, error = %why,
                            "cannot ship the rest of the step's output; retrying");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(RETRY_MAX);
                    }
                }
            }
        }
    }

    /// Ships what the file holds past what the server holds: complete lines only unless
    /// `to_end`. Returns once there is nothing more to send now.
    async fn ship_available(
        &mut self,
        sink: &dyn OutputSink,
        i: usize,
        to_end: bool,
    ) -> Result<(), String> {
        loop {
            let tail = &self.tails[i];
            if tail.refused {
                return Ok(());
            }
            let held = match tail.held {
                Some(h) => h,
                None => {
                    let h = self.send(sink, i, 0, &[]).await?;
                    self.tails[i].shipped |= h > 0;
                    h
                }
            };
            let path = self.tails[i].path.clone();
            let piece = tokio::task::spawn_blocking(move || read_piece(&path, held, to_end))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("reading {}: {e}", self.tails[i].path.display()))?;
            let Some(data) = piece else { return Ok(()) };
            let now_held = self.send(sink, i, held, &data).await?;
            self.tails[i].shipped = true;
            if now_held <= held {
                // The server holds no more than before: nothing to gain by sending again now.
                return Ok(());
            }
        }
    }

    async fn send(
        &mut self,
        sink: &dyn OutputSink,
        i: usize,
        offset: u64,
        data: &[u8],
    ) -> Result<u64, String> {
        let piece = Piece {
            command_id: &self.command_id,
            step: &self.step,
            stream: self.tails[i].name,
            offset,
            data,
        };
        match sink.ship(piece).await {
            Ok(held) => {
                self.tails[i].held = Some(held);
                Ok(held)
            }
            Err(ShipFailure::Retry(why)) => Err(why),
            Err(ShipFailure::Refused(why)) => {
                tracing::warn!(command_id = %self.command_id, step = %self.step,
                    stream = self.tails[i].name, error = %why,
                    "the server refused this step's output; it stays on this node only");
                self.tails[i].refused = true;
                Ok(offset)
            }
        }
    }
}

/// The next piece of `path` from byte `from`: at most `MAX_OUTPUT_CHUNK_BYTES`, ending after a
/// newline unless `to_end` (or the piece is full and holds none, then cut on a character
/// boundary). `None` when there is nothing to send yet.
fn read_piece(path: &Path, from: u64, to_end: bool) -> std::io::Result<Option<Vec<u8>>> {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if file.metadata()?.len() <= from {
        return Ok(None);
    }
    file.seek(SeekFrom::Start(from))?;
    let mut buf = Vec::new();
    (&mut file)
        .take(MAX_OUTPUT_CHUNK_BYTES as u64)
        .read_to_end(&mut buf)?;
    let full = buf.len() == MAX_OUTPUT_CHUNK_BYTES;
    let keep = match buf.iter().rposition(|b| *b == b'\n') {
        _ if to_end && !full => buf.len(),
        Some(nl) => nl + 1,
        None if full => buf.len() - incomplete_tail(&buf),
        None => 0,
    };
    buf.truncate(keep);
    Ok((!buf.is_empty()).then_some(buf))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Keeps what it is sent, like the server: each byte once, at its offset.
    #[derive(Default)]
    struct Receiver {
        streams: Mutex<std::collections::HashMap<String, Vec<u8>>>,
        calls: Mutex<usize>,
        fail_next: Mutex<usize>,
    }

    impl OutputSink for Receiver {
        fn ship<'a>(
            &'a self,
            piece: Piece<'a>,
        ) -> Pin<Box<dyn Future<Output = Result<u64, ShipFailure>> + Send + 'a>> {
            Box::pin(async move {
                *self.calls.lock().expect("lock") += 1;
                {
                    let mut fail = self.fail_next.lock().expect("lock");
                    if *fail > 0 {
                        *fail -= 1;
                        return Err(ShipFailure::Retry("down".into()));
                    }
                }
                let mut streams = self.streams.lock().expect("lock");
                let s = streams.entry(piece.stream.to_owned()).or_default();
                let held = s.len() as u64;
                if piece.offset <= held {
                    let skip = usize::try_from(held - piece.offset).unwrap_or(usize::MAX);
                    if skip < piece.data.len() {
                        s.extend_from_slice(&piece.data[skip..]);
                    }
                }
                Ok(s.len() as u64)
            })
        }
    }

    impl Receiver {
        fn got(&self, stream: &str) -> Vec<u8> {
            self.streams
                .lock()
                .expect("lock")
                .get(stream)
                .cloned()
                .unwrap_or_default()
        }
    }

    #[test]
    fn pieces_end_at_lines_until_the_end() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("stdout");
        std::fs::write(&path, "one\ntwo\npart").expect("write");
        assert_eq!(
            read_piece(&path, 0, false).expect("read"),
            Some(b"one\ntwo\n".to_vec())
        );
        assert_eq!(read_piece(&path, 8, false).expect("read"), None, "partial");
        assert_eq!(
            read_piece(&path, 8, true).expect("read"),
            Some(b"part".to_vec())
        );
        assert_eq!(read_piece(&path, 12, true).expect("read"), None);
        assert_eq!(
            read_piece(&dir.path().join("missing"), 0, true).expect("read"),
            None
        );
        // A line longer than a piece is cut, never through a character.
        let long = "é".repeat(MAX_OUTPUT_CHUNK_BYTES);
        std::fs::write(&path, &long).expect("write");
        let piece = read_piece(&path, 0, false).expect("read").expect("piece");
        assert_eq!(piece.len(), MAX_OUTPUT_CHUNK_BYTES);
        assert!(std::str::from_utf8(&piece).is_ok());
    }

    #[tokio::test]
    async fn a_running_step_is_shipped_as_it_writes_and_resumes_after_failures() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("stdout");
        std::fs::write(&out, "").expect("write");
        let sink = Arc::new(Receiver::default());
        let (done, ended) = watch::channel(false);
        let mut shipping = StepShipping::new("c", "s", dir.path(), true);
        let writer = {
            let out = out.clone();
            let sink = Arc::clone(&sink);
            async move {
                use std::io::Write;
                let mut f = std::fs::OpenOptions::new()
                    .append(true)
                    .open(&out)
                    .expect("open");
                for i in 0..5 {
                    writeln!(f, "line {i}").expect("write");
                    if i == 2 {
                        *sink.fail_next.lock().expect("lock") = 2;
                    }
                    tokio::time::sleep(TICK).await;
                }
                write!(f, "tail").expect("write");
                tokio::time::sleep(TICK * 3).await;
                let _ = done.send(true);
            }
        };
        let sink_ref: &dyn OutputSink = sink.as_ref();
        tokio::join!(writer, shipping.follow(sink_ref, ended));
        let live = String::from_utf8(sink.got("stdout")).expect("utf8");
        assert!(live.starts_with("line 0\n"), "{live:?}");
        assert!(!live.contains("tail"), "a partial line waits: {live:?}");
        shipping.finish(sink_ref, [false, true]).await;
        let all = String::from_utf8(sink.got("stdout")).expect("utf8");
        let expected: String = (0..5).map(|i| format!("line {i}\n")).collect();
        assert_eq!(all, format!("{expected}tail"));
        assert!(sink.got("stderr").is_empty());
    }

    #[tokio::test]
    async fn a_short_step_is_left_to_its_report_and_a_resumed_one_asks_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("stdout"), "hi\n").expect("write");
        let sink = Receiver::default();
        let mut fresh = StepShipping::new("c", "s", dir.path(), true);
        fresh.finish(&sink, [true, true]).await;
        assert_eq!(*sink.calls.lock().expect("lock"), 0, "nothing shipped");

        // A step this process did not start: the server is asked what it holds.
        sink.streams
            .lock()
            .expect("lock")
            .insert("stdout".into(), b"h".to_vec());
        let mut resumed = StepShipping::new("c", "s", dir.path(), false);
        resumed.finish(&sink, [true, true]).await;
        assert_eq!(sink.got("stdout"), b"hi\n".to_vec());
    }
}
