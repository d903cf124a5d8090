//! The operator's web console at `/console`: a small single-page app built into the binary
//! (`assets`), signed in with an access key (`session`), whose every read and change is an AWS
//! operation posted to `/console/api` and run by the same dispatch as a SigV4-signed call
//! (`api`, `aws::dispatch_as`): the console has no rules of its own.
//!
//! ```text
//! GET  /console, /console/       the HTML shell          GET /console/console.{js,css}
//! POST /console/session          sign in {AccessKeyId, SecretAccessKey} → cookie + whoami
//! GET  /console/api/whoami       who is signed in, the CSRF token, what the key may do
//! POST /console/api              X-Amz-Target + JSON body, as on `POST /`     (CSRF header)
//! POST /console/session/end      sign out                                      (CSRF header)
//! ```

mod api;
mod assets;
mod session;
#[cfg(test)]
mod tests;

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::AppState;

pub use session::SessionKey;

/// How the server is reached, for the cookie's `Secure` attribute: added as a request extension
/// by `Server::serve_tls` (absent, as in router tests, means plain HTTP).
#[derive(Debug, Clone, Copy, Default)]
pub struct Transport {
    pub tls: bool,
}

/// Why the console refused a request before any operation ran. Answered in the API's error
/// form, so the page shows every error the same way (code and message).
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("The access key ID or secret access key is not valid.")]
    SignInFailed,
    #[error("Sign in to use the console.")]
    NoSession,
    #[error("The access key of this session is no longer active.")]
    KeyInactive,
    #[error("The request lacks this session's CSRF token (X-Fleetrun-Csrf).")]
    Csrf,
    #[error("Sign in with a JSON body {{\"AccessKeyId\": …, \"SecretAccessKey\": …}}: {0}")]
    BadSignIn(String),
}

impl ConsoleError {
    fn code(&self) -> &'static str {
        match self {
            Self::SignInFailed | Self::KeyInactive => "UnrecognizedClientException",
            Self::NoSession => "MissingAuthenticationTokenException",
            Self::Csrf => "InvalidCsrfTokenException",
            Self::BadSignIn(_) => "SerializationException",
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            Self::SignInFailed | Self::NoSession | Self::KeyInactive => StatusCode::UNAUTHORIZED,
            Self::Csrf => StatusCode::FORBIDDEN,
            Self::BadSignIn(_) => StatusCode::BAD_REQUEST,
        }
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        crate::error::aws_json_error(self.status(), self.code(), &self.to_string())
    }
}

/// The console's routes (merged into the server's router).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console", get(assets::shell))
        .route("/console/", get(assets::shell))
        .route("/console/console.js", get(assets::script))
        .route("/console/console.css", get(assets::style))
        .route("/console/session", post(api::sign_in))
        .route("/console/session/end", post(api::sign_out))
        .route("/console/api/whoami", get(api::whoami))
        .route("/console/api", post(api::call))
        .layer(axum::middleware::from_fn(hardened))
}

/// Content-Security-Policy of every console answer: only this origin's script and style (no
/// inline script, no `eval`), no framing, forms and fetches to this origin only.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Adds the console's security headers to each of its answers.
async fn hardened(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let headers = resp.headers_mut();
    for (name, value) in [
        ("content-security-policy", CSP),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    // Assets set their own caching (revalidated by ETag); nothing else may be kept.
    if !headers.contains_key("cache-control") {
        headers.insert("cache-control", HeaderValue::from_static("no-store"));
    }
    resp
}
