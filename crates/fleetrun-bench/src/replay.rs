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

/// Records the walk's answers from `endpoint` as raw bytes (fleetrun does not check signatures yet,
/// so plain HTTP is enough); the last recorded page loses its NextToken so the replayed walk ends.
async fn record(endpoint: &str) -> anyhow::Result<Recording> {
    let http = reqwest::Client::new();
    let mut pages = Recording::new();
    let mut token = String::new();
    for _ in 0..MAX_PAGES {
        let mut request = serde_json::json!({ "MaxResults": 50 });
        if !token.is_empty() {
            request["NextToken"] = Value::String(token.clone());
        }
        let answer = http
            .post(format!("{endpoint}/"))
            .header("X-Amz-Target", "AmazonSSM.ListCommands")
            .header(header::CONTENT_TYPE, "application/x-amz-json-1.1")
            .body(request.to_string())
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
pub async fn ceiling(endpoint: &str, rt: &tokio::runtime::Runtime) -> anyhow::Result<Walk> {
    let pages = Arc::new(record(endpoint).await?);
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
