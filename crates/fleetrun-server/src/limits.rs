//! The server's hard limits (timeouts, connection cap, body and header sizes, parser slots), their
//! defaults and the reasons for them, and the open-file limit the connection cap derives from.
//!
//! Every limit is a field so tests can shrink it; `fleetrun server` uses the defaults.

use std::time::Duration;

/// Limits on what one client or node may hold or send.
#[derive(Debug, Clone)]
pub struct Limits {
    /// A request's head (request line and headers) must arrive within this, counted from the
    /// connection's accept or from the first byte after a keep-alive pause. Slowloris clients get a
    /// typed 408 and a closed connection.
    pub header_timeout: Duration,
    /// A keep-alive connection with no request in flight is closed after this. Long polls are
    /// requests in flight (up to 25 s), so they never count as idle.
    pub idle_timeout: Duration,
    /// A TLS handshake must finish within this.
    pub tls_handshake_timeout: Duration,
    /// A request body must arrive within this (a 4 MiB report at 70 KB/s).
    pub body_timeout: Duration,
    /// After shutdown begins, in-flight requests get this long before their connections are cut.
    pub drain_timeout: Duration,
    /// Open connections at most; `None` derives it from the open-file limit minus `fd_reserve`.
    pub max_connections: Option<usize>,
    /// File descriptors kept for the database, its WAL, the token key, the local node's pipes.
    pub fd_reserve: usize,
    /// Request line plus headers, in bytes (hyper counts; over it: typed 431).
    pub max_header_bytes: usize,
    /// Headers per request (hyper counts; over it: typed 431).
    pub max_headers: usize,
    /// Body of an SSM API call (`POST /`). The largest legitimate one is a CreateDocument or
    /// UpdateDocument with 64 KB of content, which JSON escaping can grow to a few hundred KB.
    pub api_body_limit: usize,
    /// Body of an agent call (`/agent/*`): result reports carry output (bounded below 1 MiB by
    /// the agent), with room for older agents.
    pub agent_body_limit: usize,
    /// A body over its limit is still read and discarded up to this many bytes, so the client gets
    /// the typed 413 on a live connection; a larger one gets it with `Connection: close`.
    pub drain_limit: usize,
    /// Document contents parsed at once, each on a blocking thread.
    pub content_parsers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(75),
            tls_handshake_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(60),
            drain_timeout: Duration::from_secs(10),
            max_connections: None,
            fd_reserve: 128,
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            api_body_limit: 1024 * 1024,
            agent_body_limit: 4 * 1024 * 1024,
            drain_limit: 64 * 1024 * 1024,
            content_parsers: 2,
        }
    }
}

impl Limits {
    /// The body limit for a request path.
    pub fn body_limit(&self, path: &str) -> usize {
        if path.starts_with("/agent/") {
            self.agent_body_limit
        } else {
            self.api_body_limit
        }
    }

    /// The connection cap: `max_connections`, or the open-file limit (raised to its hard limit
    /// first) minus `fd_reserve`, at least 16.
    pub fn connection_cap(&self) -> usize {
        if let Some(n) = self.max_connections {
            return n.max(1);
        }
        let files = raise_open_file_limit();
        files.saturating_sub(self.fd_reserve).max(16)
    }
}

/// Raises the soft RLIMIT_NOFILE to the hard limit (systemd's default soft limit is 1,024 while
/// the hard one is far higher) and returns the soft limit in force afterwards.
pub fn raise_open_file_limit() -> usize {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    // Above this the number only feeds a cap no machine reaches.
    const CEILING: u64 = 1 << 20;
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return 1024;
    };
    let mut current = soft;
    if hard > soft {
        let target = hard.min(CEILING.max(soft));
        match setrlimit(Resource::RLIMIT_NOFILE, target, hard) {
            Ok(()) => current = target,
            Err(e) => tracing::warn!(error = %e, soft, hard, "could not raise the open-file limit"),
        }
    }
    current.min(CEILING) as usize
}
