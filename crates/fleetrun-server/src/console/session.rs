//! Console sessions: a stateless signed cookie and the CSRF token derived from it.
//!
//! The cookie names the access key that signed in and when the session ends, under an HMAC with
//! a key every replica on the store shares (`shared_secret("console-session-key")`), so a session
//! made on one server works on the others and none of them keeps session state. Each request looks
//! the key up again ([`crate::auth::KeyCache`]): a key disabled or deleted stops its sessions
//! within the cache's TTL (at once on the server that changed it). The secret itself never goes
//! into the cookie.
//!
//! CSRF: the cookie is `SameSite=Strict`, and every POST must also carry the session's token in
//! `X-Fleetrun-Csrf`, an HMAC of the cookie the page learns from `whoami` (a cross-site page can
//! neither read it nor send a custom header without a CORS preflight, which is never granted).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::HeaderMap;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use fleetrun_core::ids::random_secret;
use fleetrun_core::Store;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The session cookie's name.
pub const COOKIE: &str = "fleetrun_session";
/// The header every POST of a signed-in page carries.
pub const CSRF_HEADER: &str = "x-fleetrun-csrf";
/// How long a session lasts after sign-in.
pub const LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// The store's shared secret the sessions are signed with.
const SECRET_NAME: &str = "console-session-key";
/// The cookie format's version (the first field of the signed payload).
const VERSION: &str = "1";

/// The HMAC key of console sessions, the same on every replica of a store.
#[derive(Clone)]
pub struct SessionKey(std::sync::Arc<[u8]>);

/// A verified session cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub access_key_id: String,
    /// Unix seconds.
    pub expires: u64,
    /// The cookie's value, which the CSRF token is derived from.
    value: String,
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl SessionKey {
    /// The store's session key, created by the first server to start.
    pub async fn load(store: &dyn Store) -> std::io::Result<Self> {
        let key = store
            .shared_secret(SECRET_NAME, random_secret(48).as_bytes())
            .await
            .map_err(std::io::Error::other)?;
        Ok(Self::new(key))
    }

    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes.into())
    }

    fn mac(&self, purpose: &str, payload: &[u8]) -> [u8; 32] {
        // HMAC takes keys of any length: the error arm cannot happen, and fails closed.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.0) else {
            return [0; 32];
        };
        mac.update(purpose.as_bytes());
        mac.update(&[0]);
        mac.update(payload);
        mac.finalize().into_bytes().into()
    }

    /// A new session for `access_key_id`, ending [`LIFETIME`] from now.
    pub fn issue(&self, access_key_id: &str) -> Session {
        self.issue_at(access_key_id, now_unix() + LIFETIME.as_secs())
    }

    fn issue_at(&self, access_key_id: &str, expires: u64) -> Session {
        // The nonce makes two sign-ins of one key in one second two sessions (two CSRF tokens).
        let payload = format!("{VERSION}|{access_key_id}|{expires}|{}", random_secret(16));
        let mac = self.mac("session", payload.as_bytes());
        let value = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(payload),
            URL_SAFE_NO_PAD.encode(mac)
        );
        Session {
            access_key_id: access_key_id.to_owned(),
            expires,
            value,
        }
    }

    /// The session a cookie value proves, if its MAC holds and it has not expired.
    pub fn verify(&self, value: &str) -> Option<Session> {
        self.verify_at(value, now_unix())
    }

    fn verify_at(&self, value: &str, now: u64) -> Option<Session> {
        let (payload, mac) = value.split_once('.')?;
        let payload = URL_SAFE_NO_PAD.decode(payload).ok()?;
        let mac = URL_SAFE_NO_PAD.decode(mac).ok()?;
        let want = self.mac("session", &payload);
        if !bool::from(want.as_slice().ct_eq(&mac)) {
            return None;
        }
        let text = String::from_utf8(payload).ok()?;
        let mut fields = text.split('|');
        if fields.next()? != VERSION {
            return None;
        }
        let access_key_id = fields.next()?.to_owned();
        let expires: u64 = fields.next()?.parse().ok()?;
        if expires <= now {
            return None;
        }
        Some(Session {
            access_key_id,
            expires,
            value: value.to_owned(),
        })
    }

    /// The CSRF token of `session`.
    pub fn csrf(&self, session: &Session) -> String {
        URL_SAFE_NO_PAD.encode(self.mac("csrf", session.value.as_bytes()))
    }

    /// True when `token` is `session`'s CSRF token (compared in constant time).
    pub fn csrf_matches(&self, session: &Session, token: &str) -> bool {
        bool::from(self.csrf(session).as_bytes().ct_eq(token.trim().as_bytes()))
    }
}

impl Session {
    /// The `Set-Cookie` value that installs this session; `secure` when the server speaks TLS.
    pub fn set_cookie(&self, secure: bool) -> String {
        format!(
            "{COOKIE}={}; Path=/console; Max-Age={}; HttpOnly; SameSite=Strict{}",
            self.value,
            LIFETIME.as_secs(),
            if secure { "; Secure" } else { "" }
        )
    }
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clear_cookie(secure: bool) -> String {
    format!(
        "{COOKIE}=; Path=/console; Max-Age=0; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    )
}

/// The session cookie's value among the request's cookies (the last one wins, as browsers
/// send the most specific path first and there is only one path here).
pub fn cookie_value(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim().to_owned())
        .rfind(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SessionKey {
        SessionKey::new(b"0123456789abcdef0123456789abcdef".to_vec())
    }

    #[test]
    fn an_issued_session_verifies_until_it_expires() {
        let s = key().issue_at("AKIAEXAMPLE", 1_000);
        let back = key().verify_at(&s.value, 999).expect("valid");
        assert_eq!(back.access_key_id, "AKIAEXAMPLE");
        assert_eq!(back.expires, 1_000);
        assert_eq!(key().verify_at(&s.value, 1_000), None);
    }

    #[test]
    fn a_tampered_or_foreign_cookie_is_refused() {
        let s = key().issue_at("AKIAEXAMPLE", u64::MAX);
        let other = SessionKey::new(b"another key, another store".to_vec());
        assert_eq!(other.verify_at(&s.value, 0), None);
        let (payload, mac) = s.value.split_once('.').expect("dot");
        let forged = URL_SAFE_NO_PAD.encode(format!("1|AKIAOTHER|{}|x", u64::MAX));
        assert_eq!(key().verify_at(&format!("{forged}.{mac}"), 0), None);
        assert_eq!(key().verify_at(payload, 0), None);
        assert_eq!(key().verify_at("", 0), None);
        assert_eq!(key().verify_at("..", 0), None);
    }

    #[test]
    fn the_csrf_token_belongs_to_one_session() {
        let k = key();
        let a = k.issue_at("AKIAEXAMPLE", u64::MAX);
        let b = k.issue_at("AKIAEXAMPLE", u64::MAX);
        assert!(k.csrf_matches(&a, &k.csrf(&a)));
        assert!(!k.csrf_matches(&a, &k.csrf(&b)));
        assert!(!k.csrf_matches(&a, ""));
    }

    #[test]
    fn the_cookie_is_http_only_strict_and_secure_under_tls() {
        let s = key().issue_at("AKIAEXAMPLE", u64::MAX);
        let plain = s.set_cookie(false);
        assert!(plain.contains("HttpOnly") && plain.contains("SameSite=Strict"));
        assert!(plain.contains("Path=/console") && !plain.contains("Secure"));
        assert!(s.set_cookie(true).ends_with("; Secure"));
        let mut headers = HeaderMap::new();
        headers.insert(
            axum::http::header::COOKIE,
            format!("a=b; {COOKIE}={}", s.value)
                .parse()
                .expect("header"),
        );
        assert_eq!(cookie_value(&headers).as_deref(), Some(s.value.as_str()));
    }
}
