//! fleetrun's own accept loop (in place of `axum::serve`), so that no client can take the server
//! away from the others:
//!
//! * a connection cap derived from the open-file limit; at the cap the connection idle the
//!   longest (silent, mid-head, or between keep-alive requests) is closed to make room, so idle
//!   connections never lock out a new client, and requests in flight (long polls) are never cut;
//! * header, idle and TLS handshake timeouts (`limits::Limits`), checked by one reaper tick;
//! * running out of file descriptors in `accept` sheds an idle connection and backs off instead
//!   of spinning;
//! * graceful shutdown: stop accepting, let in-flight requests finish (long polls end through
//!   `AppState::shutting_down`), cut what is left after `drain_timeout`.
//!
//! Each connection runs on its own task (`conn`); `io` types hyper's own parse-error answers.

mod conn;
mod io;
mod registry;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::limits::Limits;
use conn::ConnContext;
use registry::{CloseReason, Registered, Registry};

/// Serves `router` on `listener` (over TLS when `tls` is given) until `shutdown` resolves, then
/// drains. Returns once every connection is closed.
pub async fn serve(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let cap = limits.connection_cap();
    tracing::info!(max_connections = cap, "accepting connections");
    let limits = Arc::new(limits);
    let ctx = Arc::new(ConnContext {
        router,
        limits: limits.clone(),
        tls,
    });
    let registry = Arc::new(Registry::new());
    let mut tasks = JoinSet::new();
    let mut reaper = tokio::time::interval(reap_every(&limits));
    reaper.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut backoff = Backoff::default();
    tokio::pin!(shutdown);

    loop {
        // Accept below the cap, or at it when an idle connection can make room (shed right after
        // the accept, so a slot is only taken from an idle client when a new one is waiting).
        let open = registry.len();
        if open >= cap && (open >= cap + OVERSHOOT || !registry.has_idle()) {
            let changed = registry.changed.clone();
            let notified = changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if registry.len() >= cap && !registry.has_idle() {
                tracing::debug!(cap, "every connection is busy; waiting for one to finish");
            }
            tokio::select! {
                _ = &mut shutdown => break,
                _ = notified => {}
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                _ = reaper.tick() => { registry.reap(&limits); }
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
            continue;
        }
        tokio::select! {
            biased;
            _ = &mut shutdown => break,
            _ = reaper.tick() => { registry.reap(&limits); }
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                if let Err(e) = done {
                    if e.is_panic() {
                        tracing::error!("a connection task panicked");
                    }
                }
            }
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    backoff.reset();
                    let conn = registry.open();
                    let accepted_id = conn.id;
                    let registered = Registered { registry: registry.clone(), id: conn.id };
                    tasks.spawn(conn::run(tcp, peer, conn, registered, ctx.clone()));
                    // `closing` walks every connection: only at the cap, not on every accept.
                    // The new connection has sent nothing yet, so it looks idle too; it is the
                    // one the room is made for.
                    while registry.len() > cap
                        && registry.len().saturating_sub(registry.closing()) > cap
                        && registry.shed_oldest_idle_except(Some(accepted_id))
                    {}
                }
                Err(e) => {
                    let pause = backoff.next();
                    if out_of_descriptors(&e) {
                        registry.shed_oldest_idle();
                        backoff.warn(|| tracing::warn!(error = %e, open = registry.len(), "out of file descriptors in accept; shedding an idle connection"));
                    } else {
                        tracing::debug!(error = %e, "accept failed");
                    }
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }

    drop(listener);
    let open = registry.len();
    tracing::info!(open, "stopped accepting; draining connections");
    registry.close_all(CloseReason::Drain);
    let drained = tokio::time::timeout(limits.drain_timeout, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            left = tasks.len(),
            "drain timeout: closing the remaining connections"
        );
        tasks.shutdown().await;
    }
    Ok(())
}

/// How far past the cap connections may briefly go while shed ones close.
const OVERSHOOT: usize = 16;

/// The reaper's period: a quarter of the shortest timeout, between 25 ms and 1 s.
fn reap_every(limits: &Limits) -> Duration {
    let shortest = limits.header_timeout.min(limits.idle_timeout);
    (shortest / 4).clamp(Duration::from_millis(25), Duration::from_secs(1))
}

fn out_of_descriptors(e: &std::io::Error) -> bool {
    use nix::errno::Errno;
    matches!(
        e.raw_os_error().map(Errno::from_raw),
        Some(Errno::EMFILE | Errno::ENFILE | Errno::ENOBUFS | Errno::ENOMEM)
    )
}

/// Pauses after failed accepts: 5 ms doubling to 500 ms, and one warning a second at most.
#[derive(Default)]
struct Backoff {
    failures: u32,
    last_warning: Option<std::time::Instant>,
}

impl Backoff {
    fn next(&mut self) -> Duration {
        let ms = 5u64 << self.failures.min(7);
        self.failures += 1;
        Duration::from_millis(ms.min(500))
    }

    fn reset(&mut self) {
        self.failures = 0;
    }

    fn warn(&mut self, log: impl FnOnce()) {
        let now = std::time::Instant::now();
        if self
            .last_warning
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
        {
            self.last_warning = Some(now);
            log();
        }
    }
}
