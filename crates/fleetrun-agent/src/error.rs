//! The agent's one error type, [`AgentError`], the decoding of the server's AWS-style error
//! body (`{"__type": code, "Message": text}`), and which process exit code each error means
//! ([`AgentError::exit_code`], the table in [`crate::cli`]). Nothing here performs I/O.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// Everything that can go wrong in the agent's public entry points. Causes are exposed through
/// `source()`, not repeated in `Display`: print the chain (`{:#}` with anyhow) to see them.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The configuration cannot work (bad server URL, ...).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A local file or process operation failed.
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The server could not be reached, or the connection broke or timed out.
    #[error("cannot reach {url}")]
    Transport {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with an error status (4xx/5xx) and, usually, an AWS-style error body.
    #[error("server answered HTTP {status} {code}: {message}")]
    Server {
        status: u16,
        /// `__type` without any `namespace#` prefix (empty when the body carried none).
        code: String,
        message: String,
    },
    /// The server answered 2xx with a body this agent cannot understand.
    #[error("unexpected response from {url}: {detail}")]
    Protocol { url: String, detail: String },
    /// `state_dir/identity.json` exists but cannot be used.
    #[error("identity file {path} is unusable: {detail}")]
    BadIdentity { path: PathBuf, detail: String },
    /// There is no saved identity and no activation to register with.
    #[error("no identity in {0} and no activation to register with; run `fleetrun-agent register` (or `fleetrun agent register`) first")]
    NotRegistered(PathBuf),
    /// The saved identity was written by an agent speaking protocol v1 (a shared secret).
    #[error("identity file {0} was written by an agent speaking agent protocol v1; register this node again with a new activation (`fleetrun-agent register …`)")]
    LegacyIdentity(PathBuf),
    /// `register` found a saved identity and was not told to replace it.
    #[error("this node is already registered as {instance_id} ({path}); pass --force to register it again")]
    AlreadyRegistered { instance_id: String, path: PathBuf },
    /// The server speaks another agent protocol version (an older server answers 404 for the
    /// v2 paths; a newer one answers `UnsupportedAgentProtocolException`).
    #[error("the server at {url} does not speak agent protocol v2: {detail}")]
    ProtocolMismatch { url: String, detail: String },
    /// The server refused the registration with an answer that asking again cannot change: a
    /// wrong code, an unknown, expired, deleted or used-up activation, a refused key.
    #[error("the server refused the registration ({code}): {message}")]
    RegistrationRefused {
        status: u16,
        code: String,
        message: String,
    },
    /// The server stayed unreachable (or busy) for the whole registration timeout.
    #[error("gave up registering after {}s: the server at {url} stayed unreachable", waited.as_secs())]
    RegistrationGaveUp {
        url: String,
        waited: Duration,
        #[source]
        last: Box<AgentError>,
    },
    /// The server no longer knows this node (`aws ssm deregister-managed-instance`): its identity
    /// is useless, only registering again with a new activation helps.
    #[error("managed node {instance_id} was deregistered on the server; register again with a new activation: stop the agent, remove the state dir {} (it holds the old identity and results the server will not take), then run `fleetrun-agent register` (or `fleetrun agent register`) with the new activation", state_dir.display())]
    Deregistered {
        instance_id: String,
        state_dir: PathBuf,
    },
}

/// Codes of the authentication layer: retrying with fresh credentials (or a corrected clock, or
/// after the server's throttle lifts) can cure them, so a result refused with one is kept.
pub(crate) const RETRYABLE_CODES: &[&str] = &[
    "MissingAuthenticationTokenException",
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "IncompleteSignatureException",
    "ExpiredTokenException",
    "TooManyUpdates",
    "ThrottlingException",
];

/// Codes of a server (or a proxy in front of it) that is busy or starting: a registration is tried
/// again later.
const BUSY_CODES: &[&str] = &[
    "TooManyUpdates",
    "ThrottlingException",
    "ServiceUnavailable",
    "RequestTimeoutException",
    "InternalServerError",
];

/// Whether a transport failure is the TLS layer refusing the server's certificate (or the
/// handshake), somewhere in its chain of causes. `io::Error` hides the error it wraps from
/// `source()`, so each one is opened with `get_ref`.
fn is_tls_refusal(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(e) = next {
        if e.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            if is_tls_refusal(inner) {
                return true;
            }
        }
        next = e.source();
    }
    false
}

/// Codes after which the session credentials should be fetched anew before one more try.
pub(crate) const CREDENTIAL_CODES: &[&str] = &[
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "ExpiredTokenException",
];

impl AgentError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    /// True when trying the same request again later may succeed: transport failures, 5xx,
    /// throttling (429), request timeouts (408) and authentication failures (401/403, which a
    /// server restore or clock fix can cure). Other 4xx mean the request itself was refused.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Transport { .. } => true,
            Self::Server { status, code, .. } => {
                matches!(status, 401 | 403 | 408 | 429 | 500..=599)
                    || RETRYABLE_CODES.contains(&code.as_str())
            }
            // A result is kept until a server speaking this protocol takes it.
            Self::Protocol { .. } | Self::ProtocolMismatch { .. } => true,
            Self::Config(_)
            | Self::Io { .. }
            | Self::BadIdentity { .. }
            | Self::NotRegistered(_)
            | Self::LegacyIdentity(_)
            | Self::AlreadyRegistered { .. }
            | Self::RegistrationRefused { .. }
            | Self::RegistrationGaveUp { .. }
            | Self::Deregistered { .. } => false,
        }
    }

    /// True when a registration attempt may succeed later without anything changing on this
    /// node: the server was unreachable (connection refused or reset, a timeout) or answered that
    /// it is busy (5xx, 408, 429, throttling). A TLS refusal (wrong pin, unknown CA) is not: the
    /// configuration must change.
    pub(crate) fn registration_may_succeed_later(&self) -> bool {
        match self {
            Self::Transport { source, .. } => !is_tls_refusal(source),
            Self::Server { status, code, .. } => {
                matches!(status, 408 | 429 | 500..=599) || BUSY_CODES.contains(&code.as_str())
            }
            _ => false,
        }
    }

    /// True for the server's refusal of a signature made at a time too far from its own clock
    /// (SigV4's 5-minute window, security-facts §1): this node's clock needs fixing. Retrying is
    /// right (the clock may be corrected), but the log should say so.
    pub fn is_clock_skew(&self) -> bool {
        matches!(self, Self::Server { code, message, .. }
            if code == "InvalidSignatureException"
                && (message.starts_with("Signature expired") || message.starts_with("Signature not yet current")))
    }

    /// The process exit code this error ends `fleetrun agent` / `fleetrun-agent` with (see
    /// [`crate::cli::exit`]).
    pub fn exit_code(&self) -> u8 {
        use crate::cli::exit;
        match self {
            Self::RegistrationRefused { .. } => exit::REGISTRATION_REFUSED,
            Self::Deregistered { .. } => exit::DEREGISTERED,
            Self::RegistrationGaveUp { .. } => exit::REGISTRATION_GAVE_UP,
            Self::Config(_)
            | Self::Io { .. }
            | Self::Transport { .. }
            | Self::Server { .. }
            | Self::Protocol { .. }
            | Self::BadIdentity { .. }
            | Self::NotRegistered(_)
            | Self::LegacyIdentity(_)
            | Self::AlreadyRegistered { .. }
            | Self::ProtocolMismatch { .. } => exit::STARTUP,
        }
    }

    /// True for an answer that fresh session credentials may cure.
    pub(crate) fn is_credential_error(&self) -> bool {
        matches!(self, Self::Server { code, .. } if CREDENTIAL_CODES.contains(&code.as_str()))
    }

    /// Builds [`AgentError::Server`] from an error status and its body. A body that is not the
    /// AWS error shape still yields an error; its text is kept (shortened) as the message.
    pub(crate) fn from_response(status: u16, body: &[u8]) -> Self {
        #[derive(Deserialize)]
        struct ErrorBody {
            #[serde(rename = "__type", default)]
            code: String,
            #[serde(rename = "Message", alias = "message", default)]
            message: String,
        }
        match serde_json::from_slice::<ErrorBody>(body) {
            Ok(b) => {
                // AWS clients strip a `namespace#` prefix from the code; so do we.
                let code = match b.code.rsplit_once('#') {
                    Some((_, c)) => c.to_owned(),
                    None => b.code,
                };
                Self::Server {
                    status,
                    code,
                    message: b.message,
                }
            }
            Err(_) => {
                let text = String::from_utf8_lossy(body);
                let message: String = text.chars().take(200).collect();
                Self::Server {
                    status,
                    code: String::new(),
                    message,
                }
            }
        }
    }
}

/// The error with its chain of causes, for logs (reqwest's top-level messages are terse).
pub fn describe(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_is_decoded_and_namespace_stripped() {
        let e = AgentError::from_response(
            400,
            br#"{"__type":"com.amazonaws.ssm#InvalidActivation","Message":"no such activation"}"#,
        );
        match e {
            AgentError::Server {
                status,
                code,
                message,
            } => {
                assert_eq!((status, code.as_str()), (400, "InvalidActivation"));
                assert_eq!(message, "no such activation");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(!AgentError::from_response(400, b"{}").is_retryable());
        assert!(AgentError::from_response(503, b"<html>busy</html>").is_retryable());
        assert!(AgentError::from_response(401, b"").is_retryable());
        // Authentication failures are cured by fresh credentials: a result is not set aside.
        let expired = AgentError::from_response(
            400,
            br#"{"__type":"ExpiredTokenException","message":"The security token included in the request is expired"}"#,
        );
        assert!(expired.is_retryable() && expired.is_credential_error());
        let throttled = AgentError::from_response(400, br#"{"__type":"TooManyUpdates"}"#);
        assert!(throttled.is_retryable() && !throttled.is_credential_error());
    }

    #[test]
    fn registration_retries_only_what_waiting_can_cure() {
        let busy = [
            AgentError::from_response(503, b"<html>starting</html>"),
            AgentError::from_response(500, br#"{"__type":"InternalServerError"}"#),
            AgentError::from_response(400, br#"{"__type":"TooManyUpdates","Message":"later"}"#),
            AgentError::from_response(429, b""),
        ];
        for e in &busy {
            assert!(e.registration_may_succeed_later(), "{e:?}");
        }
        let refused = [
            AgentError::from_response(
                400,
                br#"{"__type":"InvalidActivation","Message":"expired"}"#,
            ),
            AgentError::from_response(400, br#"{"__type":"InvalidActivationId"}"#),
            AgentError::from_response(400, br#"{"__type":"InvalidPublicKey"}"#),
            AgentError::from_response(403, b"forbidden"),
        ];
        for e in &refused {
            assert!(!e.registration_may_succeed_later(), "{e:?}");
        }
        let tls = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        let wrapped = std::io::Error::other(tls);
        assert!(is_tls_refusal(&wrapped));
        assert!(!is_tls_refusal(&std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused
        )));
    }

    #[test]
    fn clock_skew_and_exit_codes() {
        let skew = AgentError::from_response(
            400,
            br#"{"__type":"InvalidSignatureException","message":"Signature expired: 20240101T000000Z is now earlier than 20240101T000500Z (20240101T001000Z - 5 min.)"}"#,
        );
        assert!(skew.is_clock_skew() && skew.is_retryable());
        let mismatch = AgentError::from_response(
            400,
            br#"{"__type":"InvalidSignatureException","message":"The request signature we calculated does not match"}"#,
        );
        assert!(!mismatch.is_clock_skew());
        let gone = AgentError::Deregistered {
            instance_id: "mi-0123456789abcdef0".into(),
            state_dir: "/var/lib/fleetrun-agent".into(),
        };
        let text = gone.to_string();
        assert!(
            text.contains("mi-0123456789abcdef0")
                && text
                    .contains("deregistered on the server; register again with a new activation")
                && text.contains("/var/lib/fleetrun-agent"),
            "{text}"
        );
        assert_eq!(gone.exit_code(), crate::cli::exit::DEREGISTERED);
        assert!(!gone.is_retryable());
        let refused = AgentError::RegistrationRefused {
            status: 400,
            code: "InvalidActivation".into(),
            message: "activation a has expired".into(),
        };
        assert_eq!(refused.exit_code(), crate::cli::exit::REGISTRATION_REFUSED);
        assert_eq!(
            AgentError::Config("x".into()).exit_code(),
            crate::cli::exit::STARTUP
        );
    }

    #[test]
    fn causes_are_chained_once() {
        let e = AgentError::io("writing x", std::io::Error::other("disk full"));
        assert_eq!(e.to_string(), "writing x");
        assert_eq!(describe(&e), "writing x: disk full");
    }
}
