//! The console's routes through the real router (`tower::ServiceExt::oneshot`): sign-in, the
//! cookie's attributes with and without TLS, CSRF, and the adaptor reaching the API's dispatch.

use std::sync::Arc;

use axum::body::{to_bytes, Body};
use axum::http::{header, Request, StatusCode};
use axum::response::Response;
use axum::Router;
use tower::ServiceExt;

use super::Transport;
use crate::{router, Server, ServerConfig};

struct Fixture {
    app: Router,
    id: String,
    secret: String,
    _dir: tempfile::TempDir,
}

async fn fixture(tls: bool) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = fleetrun_store::SqliteStore::open(&dir.path().join("store.db")).expect("open");
    let server = Server::new(ServerConfig::new(dir.path().join("data")), Arc::new(store))
        .await
        .expect("server");
    let admin = server
        .admin_credentials()
        .await
        .expect("bootstrap")
        .expect("admin key");
    let app = router(server.state().clone()).layer(axum::Extension(Transport { tls }));
    Fixture {
        app,
        id: admin.access_key_id,
        secret: admin.secret_access_key,
        _dir: dir,
    }
}

async fn send(app: &Router, req: Request<Body>) -> (Response, serde_json::Value) {
    let resp = app.clone().oneshot(req).await.expect("answer");
    let (parts, body) = resp.into_parts();
    let bytes = to_bytes(body, 1 << 20).await.expect("body");
    let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    (Response::from_parts(parts, Body::empty()), json)
}

fn sign_in(f: &Fixture, secret: &str) -> Request<Body> {
    let body = serde_json::json!({"AccessKeyId": f.id, "SecretAccessKey": secret});
    Request::post("/console/session")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .expect("request")
}

fn set_cookie(resp: &Response) -> String {
    resp.headers()
        .get(header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

fn api(cookie: &str, csrf: Option<&str>, target: &str, body: &str) -> Request<Body> {
    let mut req = Request::post("/console/api")
        .header(header::COOKIE, cookie)
        .header("x-amz-target", target);
    if let Some(token) = csrf {
        req = req.header("x-fleetrun-csrf", token);
    }
    req.body(Body::from(body.to_owned())).expect("request")
}

#[tokio::test]
async fn under_tls_the_session_cookie_is_secure() {
    let f = fixture(true).await;
    let (resp, who) = send(&f.app, sign_in(&f, &f.secret)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let cookie = set_cookie(&resp);
    assert!(cookie.ends_with("; Secure"), "{cookie}");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    assert_eq!(who["CanSendCommand"], true);
}

#[tokio::test]
async fn a_session_runs_the_apis_operations_with_its_csrf_token_only() {
    let f = fixture(false).await;
    let (resp, _) = send(&f.app, sign_in(&f, "wrong")).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(set_cookie(&resp).is_empty());

    let (resp, who) = send(&f.app, sign_in(&f, &f.secret)).await;
    let cookie = set_cookie(&resp);
    assert!(!cookie.contains("Secure"), "{cookie}");
    let cookie = cookie.split(';').next().unwrap_or_default().to_owned();
    let csrf = who["CsrfToken"].as_str().unwrap_or_default().to_owned();

    let target = "AmazonSSM.ListCommands";
    let (resp, body) = send(&f.app, api(&cookie, None, target, "{}")).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(body["__type"], "InvalidCsrfTokenException");
    let (resp, body) = send(&f.app, api(&cookie, Some(&csrf), target, "{}")).await;
    assert_eq!(resp.status(), StatusCode::OK, "{body}");
    assert!(body["Commands"].is_array());
    // The API's own validation, unchanged.
    let bad = r#"{"Filters":[{"key":"Nope","value":"x"}]}"#;
    let (_, body) = send(&f.app, api(&cookie, Some(&csrf), target, bad)).await;
    assert_eq!(body["__type"], "InvalidFilterKey");
    let (resp, body) = send(&f.app, api("", Some(&csrf), target, "{}")).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(body["__type"], "MissingAuthenticationTokenException");
}
