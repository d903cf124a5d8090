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
    #[error("no identity in {0} and no activation to register with")]
    NotRegistered(PathBuf),
}

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
            Self::Server { status, .. } => matches!(status, 401 | 403 | 408 | 429 | 500..=599),
            Self::Protocol { .. } => true,
            Self::Config(_)
            | Self::Io { .. }
            | Self::BadIdentity { .. }
            | Self::NotRegistered(_) => false,
        }
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
    }

    #[test]
    fn causes_are_chained_once() {
        let e = AgentError::io("writing x", std::io::Error::other("disk full"));
        assert_eq!(e.to_string(), "writing x");
        assert_eq!(describe(&e), "writing x: disk full");
    }
}
