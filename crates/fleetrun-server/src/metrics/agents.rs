//! The agent gauges: agents connected (polled this server within the ping timeout) and long polls
//! held open now.
//!
//! "Connected" is counted from the polls this server sees, not from the store: it needs no query
//! per scrape, and with several servers each counts the agents polling it (their sum is the fleet;
//! an agent that moved to another server leaves this one's count at its ping timeout).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use std::time::Instant;

use prometheus_client::metrics::gauge::Gauge;

pub(super) struct Agents {
    ping_timeout: Duration,
    /// Each agent's last poll on this server (ids stay here, never in a label).
    last_poll: Mutex<HashMap<String, Instant>>,
    pub(super) connected: Gauge,
    pub(super) polls_held: Gauge,
}

impl Agents {
    pub(super) fn new(ping_timeout: Duration) -> Self {
        Self {
            ping_timeout,
            last_poll: Mutex::new(HashMap::new()),
            connected: Gauge::default(),
            polls_held: Gauge::default(),
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.last_poll.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `node`'s agent polled at `now`.
    pub(super) fn polled(&self, node: &str, now: Instant) {
        let mut map = self.map();
        match map.get_mut(node) {
            Some(at) => *at = now,
            None => {
                map.insert(node.to_string(), now);
            }
        }
        self.connected.set(map.len() as i64);
    }

    pub(super) fn left(&self, node: &str) {
        let mut map = self.map();
        map.remove(node);
        self.connected.set(map.len() as i64);
    }

    /// Forgets the agents silent for the ping timeout at `now` and sets the gauge (before each
    /// scrape).
    pub(super) fn refresh(&self, now: Instant) {
        let mut map = self.map();
        map.retain(|_, at| now.saturating_duration_since(*at) < self.ping_timeout);
        self.connected.set(map.len() as i64);
    }

    pub(super) fn poll_held(&self) -> PollHeld {
        self.polls_held.inc();
        PollHeld {
            gauge: self.polls_held.clone(),
        }
    }
}

/// One long poll held open: the gauge counts it until this is dropped, however the poll ends
/// (answer, error, client gone).
pub(crate) struct PollHeld {
    gauge: Gauge,
}

impl Drop for PollHeld {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}
