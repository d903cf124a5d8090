//! The node's session credentials while the agent runs: fetched from `/agent/v2/token` on first
//! use, reused until half their lifetime has passed (as amazon-ssm-agent does, after RFC 2131's
//! renewal time), then fetched anew on the next request — polls come at least every poll wait, so
//! rotation needs no timer and no operator. A failed refresh keeps using credentials that have not
//! expired yet; an answer that says they are bad drops them ([`SessionCache::forget`]).

use std::time::Instant;

use tokio::sync::Mutex;

use crate::signing::SessionCredentials;

/// Credentials with their deadlines on this node's monotonic clock (from when they arrived).
#[derive(Debug, Clone)]
struct Session {
    creds: SessionCredentials,
    refresh_at: Instant,
    expires_at: Instant,
}

/// What [`SessionCache::current`] decided.
#[derive(Debug)]
pub(crate) enum Lookup {
    /// Fresh enough: use them.
    Fresh(SessionCredentials),
    /// Past half-life (or none yet): fetch new ones; `fallback` is still valid if the fetch fails.
    Refresh {
        fallback: Option<SessionCredentials>,
    },
}

/// One node's credentials. Requests that find them stale queue on the lock, so one refresh serves
/// them all.
#[derive(Debug, Default)]
pub(crate) struct SessionCache {
    slot: Mutex<Option<Session>>,
}

impl SessionCache {
    /// Looks at the credentials, then lets `fetch` replace them when they are due (holding the
    /// lock meanwhile). `fetch` failing yields the still-valid old credentials, else its error.
    pub(crate) async fn get<E, F, Fut>(&self, fetch: F) -> Result<SessionCredentials, E>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<SessionCredentials, E>>,
        E: std::fmt::Display,
    {
        let mut slot = self.slot.lock().await;
        let fallback = match lookup(slot.as_ref(), Instant::now()) {
            Lookup::Fresh(creds) => return Ok(creds),
            Lookup::Refresh { fallback } => fallback,
        };
        match fetch().await {
            Ok(creds) => {
                tracing::debug!(access_key_id = %creds.access_key_id, lifetime = ?creds.lifetime,
                    "new session credentials");
                *slot = Some(session(creds.clone(), Instant::now()));
                Ok(creds)
            }
            Err(e) => match fallback {
                Some(creds) => {
                    tracing::warn!(error = %e, "cannot refresh the session credentials; using the current ones until they expire");
                    Ok(creds)
                }
                None => Err(e),
            },
        }
    }

    /// Drops `creds` (the server refused them), unless they were replaced meanwhile.
    pub(crate) async fn forget(&self, creds: &SessionCredentials) {
        let mut slot = self.slot.lock().await;
        if slot
            .as_ref()
            .is_some_and(|s| s.creds.access_key_id == creds.access_key_id)
        {
            *slot = None;
        }
    }
}

fn session(creds: SessionCredentials, now: Instant) -> Session {
    Session {
        refresh_at: now + creds.lifetime / 2,
        expires_at: now + creds.lifetime,
        creds,
    }
}

fn lookup(current: Option<&Session>, now: Instant) -> Lookup {
    match current {
        Some(s) if now < s.refresh_at => Lookup::Fresh(s.creds.clone()),
        Some(s) if now < s.expires_at => Lookup::Refresh {
            fallback: Some(s.creds.clone()),
        },
        _ => Lookup::Refresh { fallback: None },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    fn creds(id: &str, secs: u64) -> SessionCredentials {
        SessionCredentials {
            access_key_id: id.into(),
            secret_access_key: "s".into(),
            session_token: "t".into(),
            lifetime: Duration::from_secs(secs),
        }
    }

    #[test]
    fn refreshed_at_half_life_with_the_old_ones_as_fallback_until_expiry() {
        let t0 = Instant::now();
        let s = session(creds("A", 60), t0);
        assert!(
            matches!(lookup(Some(&s), t0 + Duration::from_secs(29)), Lookup::Fresh(c) if c.access_key_id == "A")
        );
        assert!(matches!(
            lookup(Some(&s), t0 + Duration::from_secs(30)),
            Lookup::Refresh { fallback: Some(c) } if c.access_key_id == "A"
        ));
        assert!(matches!(
            lookup(Some(&s), t0 + Duration::from_secs(60)),
            Lookup::Refresh { fallback: None }
        ));
        assert!(matches!(
            lookup(None, t0),
            Lookup::Refresh { fallback: None }
        ));
    }

    #[tokio::test]
    async fn one_fetch_serves_until_due_and_refused_credentials_are_dropped() {
        let cache = SessionCache::default();
        let fetches = AtomicU32::new(0);
        let fetch = || async {
            let n = fetches.fetch_add(1, Ordering::SeqCst);
            Ok::<_, String>(creds(&format!("K{n}"), 3600))
        };
        let a = cache.get(fetch).await.expect("first");
        let b = cache.get(fetch).await.expect("cached");
        assert_eq!(
            (a.access_key_id.as_str(), b.access_key_id.as_str()),
            ("K0", "K0")
        );
        cache.forget(&creds("other", 1)).await;
        assert_eq!(cache.get(fetch).await.expect("kept").access_key_id, "K0");
        cache.forget(&a).await;
        assert_eq!(cache.get(fetch).await.expect("fresh").access_key_id, "K1");
        let failing = || async { Err::<SessionCredentials, _>("down".to_string()) };
        cache.forget(&creds("K1", 1)).await;
        assert_eq!(cache.get(failing).await.expect_err("no fallback"), "down");
    }
}
