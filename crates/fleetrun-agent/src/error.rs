//! The agent's one error type, [`AgentError`], and the decoding of the server's AWS-style error
//! body (`{"__type": code, "Message": text}`). Nothing here performs I/O.

use std::path::PathBuf;

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
            | Self::AlreadyRegistered { .. } => false,
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
pub(crate) fn describe(e: &dyn std::error::Error) -> String {
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
    fn causes_are_chained_once() {
        let e = AgentError::io("writing x", std::io::Error::other("disk full"));
        assert_eq!(e.to_string(), "writing x");
        assert_eq!(describe(&e), "writing x: disk full");
    }
}
