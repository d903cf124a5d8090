//! An in-process fleetrun server for the end-to-end target: the real router over a real SQLite
//! store in a temporary data dir (on tmpfs when there is one), its administrator key, and one
//! registered node holding session credentials. Requests go through `tower::ServiceExt::oneshot`,
//! so no socket is involved and a handler's panic reaches libFuzzer as a crash.
//!
//! Every request is signed for real (the administrator key for the SSM and admin API, the node's
//! Ed25519 key for `/agent/v2/token`, its session credentials for poll and result), so the fuzz
//! input reaches the decoders and handlers behind authentication. Each carries a counter header,
//! so the replay check never refuses a repeated input.
//!
//! Placeholders reach the live state: [`NODE_PLACEHOLDER`] in a body becomes the registered node's
//! id and [`COMMAND_PLACEHOLDER`] the id of the last command SendCommand created, so seeds can tag
//! the node, send it work, poll for it and report results. In DeregisterManagedInstance the node
//! placeholder names a second, sacrificial node.
//!
//! The server is rebuilt now and then: the replay set fills up (by design it refuses when full)
//! and the database only grows.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use fleetrun_agent::signing::{sign_token_request, sign_with_session, NodeKey, SessionCredentials};
use fleetrun_server::{Server, ServerConfig};
use fleetrun_store::SqliteStore;
use fleetrun_wire::agent::{
    MachineInfo, RegisterRequest, RegisterResponse, TokenResponse, KEY_TYPE_ED25519, REGISTER_PATH,
    TOKEN_PATH,
};
use tower::ServiceExt;

const HOST: &str = "fuzz.fleetrun.local";
const REGION: &str = "us-east-1";
/// Requests served before the server is rebuilt (well under the replay set's 250,000).
const REBUILD_EVERY: u64 = 100_000;

/// Stands for the registered node's `mi-` id in a request body.
pub const NODE_PLACEHOLDER: &str = "mi-00000000000000000";
/// Stands for the id of the last command the server created.
pub const COMMAND_PLACEHOLDER: &str = "00000000-0000-0000-0000-000000000000";

/// What the server answered.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Answer {
    /// The promise of issue 9 item 5 for every answer: a 2xx or 4xx with a JSON body, errors
    /// typed `{"__type": …}` (4xx), never a 5xx. Panics (a libFuzzer crash) otherwise.
    pub fn check(&self, what: &str) {
        let text = String::from_utf8_lossy(&self.body);
        if trace() {
            eprintln!(
                "{what} -> {} {}",
                self.status,
                text.chars().take(300).collect::<String>()
            );
        }
        assert!(
            self.status < 500,
            "{what}: HTTP {} (a server error on client input): {text}",
            self.status
        );
        let json: serde_json::Value = serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{what}: HTTP {} body is not JSON ({e}): {text}",
                self.status
            )
        });
        if self.status >= 400 {
            assert!(
                json.get("__type").and_then(|t| t.as_str()).is_some(),
                "{what}: HTTP {} error without __type: {text}",
                self.status
            );
        }
    }
}

/// `FLEETRUN_FUZZ_TRACE=1` prints every answer (to see which seeds get past authentication).
fn trace() -> bool {
    static TRACE: OnceLock<bool> = OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("FLEETRUN_FUZZ_TRACE").is_some())
}

struct Live {
    _dir: tempfile::TempDir,
    router: axum::Router,
    admin: (String, String),
    node_key: NodeKey,
    instance_id: String,
    /// A second node, the one DeregisterManagedInstance's placeholder names (deregistering the
    /// node the agent inputs act as would end their coverage until the next rebuild).
    victim: String,
    session: SessionCredentials,
    /// The CommandId of the last successful SendCommand.
    last_command: Option<String>,
    served: u64,
}

impl Live {
    /// `body` with the placeholders replaced by live ids.
    fn fill(&self, target: &str, body: &[u8]) -> Vec<u8> {
        let node = if target.ends_with("DeregisterManagedInstance") {
            &self.victim
        } else {
            &self.instance_id
        };
        let body = replace(body, NODE_PLACEHOLDER.as_bytes(), node.as_bytes());
        match &self.last_command {
            Some(id) => replace(&body, COMMAND_PLACEHOLDER.as_bytes(), id.as_bytes()),
            None => body,
        }
    }

    /// Remembers the command a SendCommand answer created.
    fn note(&mut self, answer: &Answer) {
        if answer.status != 200 {
            return;
        }
        let id = serde_json::from_slice::<serde_json::Value>(&answer.body)
            .ok()
            .and_then(|v| v["Command"]["CommandId"].as_str().map(str::to_owned));
        if id.is_some() {
            self.last_command = id;
        }
    }
}

/// Every occurrence of `from` in `data` replaced by `to`.
fn replace(data: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        if data[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(data[i]);
            i += 1;
        }
    }
    out
}

/// The process-wide server (libFuzzer runs inputs one at a time on one thread).
pub struct Harness {
    rt: tokio::runtime::Runtime,
    live: Mutex<Option<Live>>,
    nonce: AtomicU64,
}

static HARNESS: OnceLock<Harness> = OnceLock::new();

/// The server, started on first use.
pub fn harness() -> &'static Harness {
    HARNESS.get_or_init(|| Harness {
        // Multi-threaded (one worker) so handlers that move work off the async threads behave as
        // in production.
        rt: tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("tokio runtime"),
        live: Mutex::new(None),
        nonce: AtomicU64::new(0),
    })
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

async fn send(router: &axum::Router, req: Request<Body>) -> Answer {
    let resp = router
        .clone()
        .oneshot(req)
        .await
        .unwrap_or_else(|e| match e {});
    let status = resp.status().as_u16();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .expect("response body")
        .to_vec();
    Answer { status, body }
}

/// A POST of `body` to `path` with `headers` plus the signature headers `sign` computes over them.
fn build(
    path: &str,
    mut headers: Vec<(String, String)>,
    body: &[u8],
    sign: impl FnOnce(&fleetrun_sigv4::HttpRequest) -> Vec<(String, String)>,
) -> Option<Request<Body>> {
    let signed = {
        let refs: Vec<(&str, &[u8])> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_bytes()))
            .collect();
        sign(&fleetrun_sigv4::HttpRequest {
            method: "POST",
            path,
            query: "",
            headers: &refs,
            body,
        })
    };
    headers.extend(signed);
    let mut builder = Request::builder().method("POST").uri(path);
    for (n, v) in &headers {
        builder = builder.header(n.as_str(), v.as_str());
    }
    // A target the fuzzer made that is no valid header value never reaches a server.
    builder.body(Body::from(body.to_vec())).ok()
}

/// Registers a node with `key` through the agent endpoint; returns its `mi-` id.
async fn register(server: &Server, router: &axum::Router, key: &NodeKey) -> String {
    let (activation_id, activation_code) = server.local_activation().await.expect("activation");
    let register = RegisterRequest {
        activation_id,
        activation_code,
        public_key: key.public_key_base64(),
        public_key_type: KEY_TYPE_ED25519.into(),
        machine: MachineInfo {
            computer_name: "fuzz".into(),
            ip_address: "127.0.0.1".into(),
            platform_type: "Linux".into(),
            platform_name: "Debian".into(),
            platform_version: "12".into(),
            agent_version: "0.1.0".into(),
        },
    };
    let body = serde_json::to_vec(&register).expect("json");
    let req = build(REGISTER_PATH, base_headers(), &body, |_| Vec::new()).expect("request");
    let answer = send(router, req).await;
    assert_eq!(answer.status, 200, "register: {answer:?}");
    let registered: RegisterResponse = serde_json::from_slice(&answer.body).expect("register");
    registered.instance_id
}

impl Harness {
    async fn start() -> Live {
        let base = std::path::Path::new("/dev/shm");
        let dir = if base.is_dir() {
            tempfile::tempdir_in(base)
        } else {
            tempfile::tempdir()
        }
        .expect("tempdir");
        let data = dir.path().join("data");
        fleetrun_server::private_dir(&data).expect("data dir");
        let store = SqliteStore::open(&data.join("fleetrun.db")).expect("store");
        let mut config = ServerConfig::new(&data);
        // A long poll must never hold the fuzzer; the timekeeper does not run here.
        config.max_poll_wait = Duration::ZERO;
        config.tick = Duration::from_secs(3600);
        let server = Server::new(config, Arc::new(store))
            .await
            .expect("server");
        let admin = server
            .admin_credentials()
            .await
            .expect("admin key")
            .expect("admin-credentials file");
        let router = fleetrun_server::router(server.state().clone());
        let node_key = NodeKey::generate();
        let instance_id = register(&server, &router, &node_key).await;
        let victim = register(&server, &router, &NodeKey::generate()).await;

        let req = build(TOKEN_PATH, base_headers(), b"{}", |r| {
            sign_token_request(&node_key, &instance_id, REGION, r, unix_now())
        })
        .expect("request");
        let answer = send(&router, req).await;
        assert_eq!(answer.status, 200, "token: {answer:?}");
        let token: TokenResponse = serde_json::from_slice(&answer.body).expect("token");
        Live {
            _dir: dir,
            router,
            admin: (admin.access_key_id, admin.secret_access_key),
            node_key,
            instance_id,
            victim,
            session: token.into(),
            last_command: None,
            served: 0,
        }
    }

    fn with_live<T>(&self, f: impl FnOnce(&mut Live, u64) -> T) -> T {
        let mut guard = self.live.lock().unwrap_or_else(|p| p.into_inner());
        if guard.as_ref().is_none_or(|l| l.served >= REBUILD_EVERY) {
            // Drop the old server (and its data dir) before building the next.
            *guard = None;
            *guard = Some(self.rt.block_on(Self::start()));
        }
        let live = guard.as_mut().expect("started above");
        live.served += 1;
        f(live, self.nonce.fetch_add(1, Ordering::Relaxed))
    }

    /// `POST /` with `X-Amz-Target: target`, signed with the administrator key.
    pub fn ssm(&self, target: &str, body: &[u8]) -> Option<Answer> {
        self.with_live(|live, nonce| {
            let mut headers = base_headers();
            headers.push(("x-amz-target".into(), target.into()));
            headers.push(("x-fuzz-nonce".into(), nonce.to_string()));
            let (id, secret) = live.admin.clone();
            let body = live.fill(target, body);
            let req = build("/", headers, &body, |r| {
                fleetrun_sigv4::sign(
                    r,
                    &fleetrun_sigv4::Credentials {
                        access_key_id: &id,
                        secret_access_key: &secret,
                        session_token: None,
                    },
                    REGION,
                    "ssm",
                    unix_now(),
                )
            })?;
            let answer = self.rt.block_on(send(&live.router, req));
            live.note(&answer);
            Some(answer)
        })
    }

    /// A POST to an agent path, signed as the registered node signs it there: nothing for
    /// registration and v1 paths, the node key for the token request, session credentials
    /// otherwise. `path` may be followed by a space and an `X-Amz-Security-Token` to send instead
    /// of the session's (so the session-token decoder sees input too).
    pub fn agent(&self, path: &str, body: &[u8]) -> Option<Answer> {
        let (path, token) = match path.split_once(' ') {
            Some((p, t)) => (p, Some(t)),
            None => (path, None),
        };
        self.with_live(|live, nonce| {
            let mut headers = base_headers();
            headers.push(("x-fuzz-nonce".into(), nonce.to_string()));
            let now = unix_now();
            let body = &live.fill(path, body)[..];
            let req = if path == TOKEN_PATH {
                build(path, headers, body, |r| {
                    sign_token_request(&live.node_key, &live.instance_id, REGION, r, now)
                })
            } else if path.starts_with("/agent/v2/") && path != REGISTER_PATH {
                let mut session = live.session.clone();
                if let Some(token) = token {
                    // A token from the input, signed with the live session's key: what a node
                    // holding the secret but a forged or stale token would send.
                    session.session_token = token.to_owned();
                }
                build(path, headers, body, |r| {
                    sign_with_session(&session, REGION, r, now)
                })
            } else {
                build(path, headers, body, |_| Vec::new())
            }?;
            Some(self.rt.block_on(send(&live.router, req)))
        })
    }
}

fn base_headers() -> Vec<(String, String)> {
    vec![
        ("host".into(), HOST.into()),
        ("content-type".into(), "application/x-amz-json-1.1".into()),
    ]
}
