//! The open connections: which have a request in flight, which are idle and since when, and the
//! close requests the accept loop sends them (timeouts, shedding, shutdown).
//!
//! A connection's state changes on its own task (hyper polls the service and the IO there); the
//! accept loop only reads that state and sets a close reason.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::limits::Limits;

/// Why a connection is asked to close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseReason {
    /// At the connection cap: the oldest idle connection makes room for a new one.
    Shed = 1,
    /// Kept alive with no request for `idle_timeout`, or silent since accept for `header_timeout`.
    Idle = 2,
    /// A request head started but did not finish within `header_timeout`: typed 408.
    HeadTimeout = 3,
    /// Shutdown: finish what is in flight, then close.
    Drain = 4,
}

impl CloseReason {
    fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::Shed),
            2 => Some(Self::Idle),
            3 => Some(Self::HeadTimeout),
            4 => Some(Self::Drain),
            _ => None,
        }
    }
}

/// Milliseconds on the registry's monotonic clock, plus one; 0 means "never".
type Ms = u64;

fn ms_since(epoch: Instant) -> Ms {
    epoch.elapsed().as_millis() as Ms + 1
}

/// One connection's state, shared by its task (service, IO wrapper) and the registry.
pub(crate) struct ConnShared {
    pub(crate) id: u64,
    epoch: Instant,
    changed: Arc<Notify>,
    /// Requests dispatched to the router whose response body has not been dropped yet.
    in_flight: AtomicUsize,
    /// A response finished but its last bytes may still sit in hyper's write buffer.
    tail: AtomicBool,
    idle_since: AtomicU64,
    /// When the first byte of a request head arrived while no request was in flight.
    head_since: AtomicU64,
    served: AtomicU64,
    close: AtomicU8,
    close_notify: Notify,
}

impl ConnShared {
    /// A request reached the router.
    pub(crate) fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.head_since.store(0, Ordering::Release);
        self.served.fetch_add(1, Ordering::AcqRel);
    }

    /// A response body was dropped (sent, or abandoned with the connection).
    pub(crate) fn request_finished(&self) {
        self.tail.store(true, Ordering::Release);
        if self.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle_since
                .store(ms_since(self.epoch), Ordering::Release);
            self.changed.notify_waiters();
        }
    }

    /// Bytes of a new request head arrived (the IO wrapper calls this).
    pub(crate) fn head_bytes(&self) {
        if self.in_flight.load(Ordering::Acquire) == 0
            && self.head_since.load(Ordering::Acquire) == 0
        {
            self.head_since
                .store(ms_since(self.epoch), Ordering::Release);
        }
    }

    /// The IO wrapper flushed everything hyper had written.
    pub(crate) fn flushed(&self) {
        if self.in_flight.load(Ordering::Acquire) == 0 && self.tail.swap(false, Ordering::AcqRel) {
            self.changed.notify_waiters();
        }
    }

    /// True when hyper can only be writing a response of its own (to a request it could not
    /// parse): no request is in flight and the last response is fully flushed.
    pub(crate) fn between_requests(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0 && !self.tail.load(Ordering::Acquire)
    }

    pub(crate) fn idle(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
    }

    /// Idle, not already closing, and not still writing a response (for `TAIL_GRACE`).
    fn sheddable(&self, now: Ms) -> bool {
        let since = self.idle_since.load(Ordering::Acquire);
        self.idle()
            && self.close_reason().is_none()
            && (!self.tail.load(Ordering::Acquire)
                || now.saturating_sub(since) >= TAIL_GRACE.as_millis() as Ms)
    }

    /// Asks the connection to close; the first reason wins. Returns whether this call set it.
    pub(crate) fn request_close(&self, reason: CloseReason) -> bool {
        let set = self
            .close
            .compare_exchange(0, reason as u8, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if set {
            self.close_notify.notify_one();
        }
        set
    }

    pub(crate) fn close_reason(&self) -> Option<CloseReason> {
        CloseReason::from_u8(self.close.load(Ordering::Acquire))
    }

    /// Resolves once a close is requested.
    pub(crate) async fn close_requested(&self) -> CloseReason {
        loop {
            let notified = self.close_notify.notified();
            if let Some(r) = self.close_reason() {
                return r;
            }
            notified.await;
        }
    }
}

/// How long a just-answered connection is spared from shedding while its response is written.
const TAIL_GRACE: Duration = Duration::from_secs(2);

/// All open connections.
pub(crate) struct Registry {
    conns: Mutex<HashMap<u64, Arc<ConnShared>>>,
    next_id: AtomicU64,
    epoch: Instant,
    /// Notified when a connection closes or goes idle.
    pub(crate) changed: Arc<Notify>,
}

impl Registry {
    pub(crate) fn new() -> Self {
        Self {
            conns: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            epoch: Instant::now(),
            changed: Arc::new(Notify::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Arc<ConnShared>>> {
        // Nothing panics while holding this lock; if something did, the map is still whole.
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a just-accepted connection (idle since now).
    pub(crate) fn open(&self) -> Arc<ConnShared> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(ConnShared {
            id,
            epoch: self.epoch,
            changed: self.changed.clone(),
            in_flight: AtomicUsize::new(0),
            tail: AtomicBool::new(false),
            idle_since: AtomicU64::new(ms_since(self.epoch)),
            head_since: AtomicU64::new(0),
            served: AtomicU64::new(0),
            close: AtomicU8::new(0),
            close_notify: Notify::new(),
        });
        self.lock().insert(id, conn.clone());
        conn
    }

    pub(crate) fn remove(&self, id: u64) {
        self.lock().remove(&id);
        self.changed.notify_waiters();
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    /// Connections asked to close (for any reason) that are still open.
    pub(crate) fn closing(&self) -> usize {
        self.lock()
            .values()
            .filter(|c| c.close_reason().is_some())
            .count()
    }

    /// True when some connection could be shed now.
    pub(crate) fn has_idle(&self) -> bool {
        let now = ms_since(self.epoch);
        self.lock().values().any(|c| c.sheddable(now))
    }

    /// Asks the connection idle the longest (no request in flight: silent, mid-head or between
    /// keep-alive requests) to close. A connection whose last response is still being written is
    /// passed over for `TAIL_GRACE` (after that its client has stopped reading). Returns false
    /// when every connection is busy.
    pub(crate) fn shed_oldest_idle(&self) -> bool {
        self.shed_oldest_idle_except(None)
    }

    /// [`Registry::shed_oldest_idle`], never choosing `spared` (the connection just accepted: it
    /// is the one the slot is being made for). Ties in idle time go to the older connection.
    pub(crate) fn shed_oldest_idle_except(&self, spared: Option<u64>) -> bool {
        let now = ms_since(self.epoch);
        let victim = self
            .lock()
            .values()
            .filter(|c| c.sheddable(now) && Some(c.id) != spared)
            .min_by_key(|c| (c.idle_since.load(Ordering::Acquire), c.id))
            .cloned();
        match victim {
            Some(c) => {
                tracing::debug!(
                    conn = c.id,
                    "at the connection cap: closing the oldest idle one"
                );
                c.request_close(CloseReason::Shed)
            }
            None => false,
        }
    }

    /// Asks timed-out connections to close; returns how many were asked.
    pub(crate) fn reap(&self, limits: &Limits) -> usize {
        let now = ms_since(self.epoch);
        let past = |since: Ms, limit: Duration| {
            since != 0 && now.saturating_sub(since) >= limit.as_millis() as Ms
        };
        let mut asked = 0;
        for c in self.lock().values() {
            if !c.idle() || c.close_reason().is_some() {
                continue;
            }
            let head = c.head_since.load(Ordering::Acquire);
            let idle = c.idle_since.load(Ordering::Acquire);
            let fresh = c.served.load(Ordering::Acquire) == 0;
            // A connection that never sent a request gets the header timeout, a kept-alive one
            // the idle timeout.
            let idle_limit = if fresh {
                limits.header_timeout
            } else {
                limits.idle_timeout
            };
            let reason = if past(head, limits.header_timeout) {
                Some(CloseReason::HeadTimeout)
            } else if head == 0 && past(idle, idle_limit) {
                Some(CloseReason::Idle)
            } else {
                None
            };
            if let Some(r) = reason {
                asked += usize::from(c.request_close(r));
            }
        }
        asked
    }

    /// Asks every connection to close (shutdown).
    pub(crate) fn close_all(&self, reason: CloseReason) {
        for c in self.lock().values() {
            c.request_close(reason);
        }
    }
}

/// Removes a connection from the registry when its task ends, however it ends.
pub(crate) struct Registered {
    pub(crate) registry: Arc<Registry>,
    pub(crate) id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.registry.remove(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pause() {
        std::thread::sleep(Duration::from_millis(3));
    }

    #[test]
    fn the_oldest_idle_connection_is_shed_and_busy_ones_never() {
        let reg = Registry::new();
        let busy = reg.open();
        busy.request_started();
        pause();
        let old = reg.open();
        pause();
        let young = reg.open();
        assert!(reg.shed_oldest_idle());
        assert_eq!(old.close_reason(), Some(CloseReason::Shed));
        assert_eq!(young.close_reason(), None);
        assert!(reg.shed_oldest_idle());
        assert_eq!(young.close_reason(), Some(CloseReason::Shed));
        assert!(!reg.shed_oldest_idle(), "only a busy connection is left");
        assert_eq!(busy.close_reason(), None);
    }

    #[test]
    fn the_connection_just_accepted_is_never_the_one_shed() {
        let reg = Registry::new();
        // Opened within the same millisecond as often as not: equal idle times.
        let old = reg.open();
        let new = reg.open();
        assert!(reg.shed_oldest_idle_except(Some(new.id)));
        assert_eq!(old.close_reason(), Some(CloseReason::Shed));
        assert_eq!(new.close_reason(), None);
        assert!(
            !reg.shed_oldest_idle_except(Some(new.id)),
            "only the spared connection is left idle"
        );
        // Equal idle times go to the older connection.
        let reg = Registry::new();
        let first = reg.open();
        let second = reg.open();
        second
            .idle_since
            .store(first.idle_since.load(Ordering::Acquire), Ordering::Release);
        assert!(reg.shed_oldest_idle());
        assert_eq!(first.close_reason(), Some(CloseReason::Shed));
        assert_eq!(second.close_reason(), None);
    }

    #[test]
    fn a_connection_idle_again_is_the_youngest() {
        let reg = Registry::new();
        let a = reg.open();
        pause();
        let b = reg.open();
        pause();
        a.request_started();
        a.request_finished();
        a.flushed();
        assert!(reg.shed_oldest_idle());
        assert_eq!(b.close_reason(), Some(CloseReason::Shed));
        assert_eq!(a.close_reason(), None);
    }

    #[test]
    fn a_response_still_being_written_is_not_cut() {
        let reg = Registry::new();
        let answering = reg.open();
        answering.request_started();
        answering.request_finished();
        assert!(
            !reg.shed_oldest_idle(),
            "its last bytes are not flushed yet"
        );
        answering.flushed();
        assert!(reg.shed_oldest_idle());
    }

    #[test]
    fn timeouts_pick_the_right_reason() {
        let limits = Limits {
            header_timeout: Duration::from_millis(20),
            idle_timeout: Duration::from_millis(60),
            ..Limits::default()
        };
        let reg = Registry::new();
        let silent = reg.open();
        let partial = reg.open();
        partial.head_bytes();
        let kept = reg.open();
        kept.request_started();
        kept.request_finished();
        let busy = reg.open();
        busy.request_started();
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(reg.reap(&limits), 2);
        assert_eq!(silent.close_reason(), Some(CloseReason::Idle));
        assert_eq!(partial.close_reason(), Some(CloseReason::HeadTimeout));
        assert_eq!(kept.close_reason(), None, "keep-alive gets idle_timeout");
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(reg.reap(&limits), 1);
        assert_eq!(kept.close_reason(), Some(CloseReason::Idle));
        assert_eq!(
            busy.close_reason(),
            None,
            "a request in flight never times out here"
        );
    }
}
