//! The walk's ceiling: the same pagination walk, with the same client, against a server that does
//! no work — it replays fleetrun's own answers, recorded beforehand, from memory. No SQL, no
//! decoding, no encoding: what this reaches is the most any server could reach behind this client,
//! on this machine, in this run.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;
use serde_json::Value;
use tokio::sync::watch;

use crate::list::{self, Walk};
use crate::util::sdk_client;

/// Pages recorded at most (100,000 commands): the walk's rate is per page, and 20,000 recorded
/// pages of the 1M walk would hold ~700 MB in memory for nothing.
const MAX_PAGES: usize = 2_000;

/// Recorded answers by the NextToken of the request that got them ("" for the first page).
type Recording = HashMap<String, Bytes>;

fn next_token(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("NextToken")?.as_str().map(String::from))
        .unwrap_or_default()
}

/// Records the walk's answers from `endpoint` as raw bytes, each request signed with `key` by
/// hand (the SDK would not hand back the raw answer); the last recorded page loses its NextToken so
/// the replayed walk ends.
async fn record(endpoint: &str, key: &(String, String)) -> anyhow::Result<Recording> {
    let http = reqwest::Client::new();
    let host = endpoint.trim_start_matches("http://").to_owned();
    let mut pages = Recording::new();
    let mut token = String::new();
    for _ in 0..MAX_PAGES {
        let mut request = serde_json::json!({ "MaxResults": 50 });
        if !token.is_empty() {
            request["NextToken"] = Value::String(token.clone());
        }
        let body = request.to_string();
        let mut post = http
            .post(format!("{endpoint}/"))
            .header("X-Amz-Target", "AmazonSSM.ListCommands")
            .header(header::CONTENT_TYPE, "application/x-amz-json-1.1");
        for (name, value) in sign_list_commands(&host, key, body.as_bytes()) {
            post = post.header(name, value);
        }
        let answer = post
            .body(body)
            .send()
            .await
            .context("recording ListCommands")?
            .error_for_status()?
            .bytes()
            .await?;
        let next = next_token(&answer);
        pages.insert(std::mem::replace(&mut token, next), answer);
        if token.is_empty() {
            return Ok(pages);
        }
    }
    // Cut the chain at the last recorded page.
    let last = pages
        .iter()
        .find(|(_, answer)| next_token(answer) == token)
        .map(|(k, answer)| (k.clone(), answer.clone()));
    if let Some((key, answer)) = last {
        let mut page: Value = serde_json::from_slice(&answer)?;
        if let Some(map) = page.as_object_mut() {
            map.remove("NextToken");
        }
        pages.insert(key, Bytes::from(serde_json::to_vec(&page)?));
    }
    Ok(pages)
}

/// The SigV4 headers of a ListCommands POST with `body`, signed now.
fn sign_list_commands(host: &str, key: &(String, String), body: &[u8]) -> Vec<(String, String)> {
    let headers: Vec<(&str, &[u8])> = vec![
        ("content-type", b"application/x-amz-json-1.1"),
        ("host", host.as_bytes()),
        ("x-amz-target", b"AmazonSSM.ListCommands"),
    ];
    let request = fleetrun_sigv4::HttpRequest {
        method: "POST",
        path: "/",
        query: "",
        headers: &headers,
        body,
    };
    let creds = fleetrun_sigv4::Credentials {
        access_key_id: &key.0,
        secret_access_key: &key.1,
        session_token: None,
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    fleetrun_sigv4::sign(&request, &creds, "us-east-1", "ssm", now)
}

async fn answer(State(pages): State<Arc<Recording>>, body: Bytes) -> impl IntoResponse {
    match pages.get(&next_token(&body)) {
        Some(page) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/x-amz-json-1.1")],
            page.clone(),
        ),
        None => (
            StatusCode::BAD_REQUEST,
            [(header::CONTENT_TYPE, "application/x-amz-json-1.1")],
            Bytes::from_static(br#"{"__type":"InvalidNextToken","message":"not recorded"}"#),
        ),
    }
}

/// Records the walk from `endpoint`, then walks the recording through a replaying server that runs
/// on `rt` (the runtime the real server uses, so both walks cross the same threads).
pub async fn ceiling(
    endpoint: &str,
    key: &(String, String),
    rt: &tokio::runtime::Runtime,
) -> anyhow::Result<Walk> {
    let pages = Arc::new(record(endpoint, key).await?);
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let replay = format!("http://{}", listener.local_addr()?);
    let listener = {
        let _in_server_runtime = rt.enter();
        tokio::net::TcpListener::from_std(listener)?
    };
    let app = Router::new().route("/", post(answer)).with_state(pages);
    let (stop, mut stopped) = watch::channel(false);
    let server = rt.spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.wait_for(|s| *s).await;
            })
            .await;
    });
    let client = sdk_client(&replay);
    let walk = list::walk(&client).await;
    let _ = stop.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    walk
}
