//! AWS Signature Version 4 (header form, `AWS4-HMAC-SHA256`) as pure functions: verification in
//! four steps and signing. No HTTP stack, no clock, no storage: the caller hands in the request
//! as received, looks the access key up itself, and injects the time.
//!
//! Verification, in the order security-facts §1 suggests (presence → parse → key lookup → token →
//! scope → time → signature):
//! 1. [`parse`]: presence, the `Authorization` grammar, the date header, and the canonical request
//!    and string to sign rebuilt from exactly the client's `SignedHeaders`;
//! 2. (caller: look up `auth.access_key_id`, validate `session_token`), then [`check_scope`];
//! 3. [`check_time`]: the clock window, both directions;
//! 4. [`verify_signature`] (or [`verify_signature_with_key`] with a cached [`signing_key`]).
//!
//! Every failure is an [`AuthError`] carrying data; the server owns the AWS codes and sentences.
//! Signing: [`sign`], or [`string_to_sign_for`] + [`authorization_header`] for a caller that
//! signs the same string with another algorithm (the agent's Ed25519 token request).

mod canonical;
mod error;
mod parse;
mod sign;
mod timestamp;

use std::fmt;

pub use canonical::{
    canonical_query, canonical_uri, sha256_hex, string_to_sign, ALGORITHM, TERMINATOR,
};
pub use error::{AuthError, MissingPart};
pub use parse::parse_authorization_header;
pub use sign::{
    authorization_header, sign, signature_hex, signing_key, string_to_sign_for, verify_signature,
    verify_signature_with_key,
};
pub use timestamp::format_basic;

/// One HTTP request as received (or about to be sent).
#[derive(Debug, Clone, Copy)]
pub struct HttpRequest<'a> {
    pub method: &'a str,
    /// Raw path as on the wire, e.g. "/" (no query).
    pub path: &'a str,
    /// Raw query string without '?', "" when none.
    pub query: &'a str,
    /// Headers in arrival order; names in any case; a name may repeat. Behind HTTP/2 there is no
    /// `Host` header: the caller adds `("host", authority)` from the URI.
    pub headers: &'a [(&'a str, &'a [u8])],
    pub body: &'a [u8],
}

/// The parsed `Authorization: AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub access_key_id: String,
    /// `YYYYMMDD` as the client wrote it (checked against the timestamp by [`check_scope`]).
    pub scope_date: String,
    pub region: String,
    pub service: String,
    pub terminator: String,
    /// Lower case, sorted, duplicate-free, containing `host` (all checked by [`parse`]).
    pub signed_headers: Vec<String>,
    /// As the client sent it: 64 hex digits for HMAC (checked by [`verify_signature`]); another
    /// encoding for callers verifying an asymmetric signature over the same string to sign.
    pub signature: String,
}

/// A request whose authorization parsed: everything needed to check it, computed once.
#[derive(Clone)]
pub struct SignedRequest {
    pub auth: Authorization,
    /// The request timestamp in basic ISO-8601 `YYYYMMDDTHHMMSSZ` (from X-Amz-Date, or converted from Date).
    pub timestamp: String,
    /// The same instant as Unix seconds.
    pub timestamp_unix: i64,
    /// X-Amz-Security-Token if present (signed or not).
    pub session_token: Option<String>,
    pub canonical_request: String,
    pub string_to_sign: String,
}

impl fmt::Debug for SignedRequest {
    // The token and the canonical request (which may contain it) stay out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedRequest")
            .field("auth", &self.auth)
            .field("timestamp", &self.timestamp)
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .field("string_to_sign", &self.string_to_sign)
            .finish_non_exhaustive()
    }
}

/// Credentials for [`sign`].
#[derive(Clone, Copy)]
pub struct Credentials<'a> {
    pub access_key_id: &'a str,
    pub secret_access_key: &'a str,
    pub session_token: Option<&'a str>,
}

impl fmt::Debug for Credentials<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// Step 1: presence, parse, date header, canonical request and string to sign (uses the client's
/// SignedHeaders). Total: any bytes in any header give `Ok` or an [`AuthError`], never a panic.
pub fn parse(req: &HttpRequest) -> Result<SignedRequest, AuthError> {
    parse::parse(req)
}

/// Step 2 (caller has looked the key up): region, service, scope date against the timestamp,
/// terminator, in that order.
pub fn check_scope(signed: &SignedRequest, region: &str, service: &str) -> Result<(), AuthError> {
    let a = &signed.auth;
    if a.region != region {
        return Err(AuthError::WrongRegion {
            region: a.region.clone(),
        });
    }
    if a.service != service {
        return Err(AuthError::WrongService {
            expected: service.to_owned(),
        });
    }
    // `timestamp` is always the 16-character ASCII basic form built by `parse`.
    let date = signed.timestamp.get(..8).unwrap_or_default();
    if a.scope_date != date {
        return Err(AuthError::ScopeDateMismatch {
            scope: a.scope_date.clone(),
            date: date.to_owned(),
            timestamp: signed.timestamp.clone(),
        });
    }
    if a.terminator != TERMINATOR {
        return Err(AuthError::BadTerminator {
            terminator: a.terminator.clone(),
        });
    }
    Ok(())
}

/// Step 3: clock window, both directions; `now_unix` injected so tests can freeze time. A
/// timestamp exactly `window_secs` away is still inside.
pub fn check_time(
    signed: &SignedRequest,
    now_unix: i64,
    window_secs: i64,
) -> Result<(), AuthError> {
    let earliest = now_unix.saturating_sub(window_secs);
    let latest = now_unix.saturating_add(window_secs);
    let window_mins = window_secs / 60;
    if signed.timestamp_unix < earliest {
        return Err(AuthError::Expired {
            timestamp: signed.timestamp.clone(),
            earliest: format_basic(earliest),
            now: format_basic(now_unix),
            window_mins,
        });
    }
    if signed.timestamp_unix > latest {
        return Err(AuthError::NotYetCurrent {
            timestamp: signed.timestamp.clone(),
            latest: format_basic(latest),
            now: format_basic(now_unix),
            window_mins,
        });
    }
    Ok(())
}
