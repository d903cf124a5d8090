//! A fake node for raw agent-protocol tests: it registers over HTTP with its own Ed25519 key and
//! sends token, poll and result requests signed exactly as the agent signs them — or signed
//! wrongly, stale, replayed or tampered, as a test needs (`fleetrun_agent::signing`).

use fleetrun_agent::signing::{self, NodeKey, SessionCredentials};
use fleetrun_sigv4::HttpRequest;
use fleetrun_wire::agent::{
    TokenResponse, POLL_PATH, REGISTER_PATH, RESULT_PATH, TOKEN_PATH, VERSION_HEADER,
};
use serde_json::Value;

/// One prepared HTTP request: path, headers (signature included) and body.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// A registered node without an agent.
pub struct FakeNode {
    pub endpoint: String,
    pub instance_id: String,
    pub region: String,
    pub key: NodeKey,
    http: reqwest::Client,
}

/// A plain HTTP client. reqwest is built without a default TLS crypto provider here (the agent
/// brings its own rustls configuration), so one is installed first: `Client::new` would panic.
pub fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// A machine description for registration.
pub fn machine(platform_type: &str) -> Value {
    serde_json::json!({"computerName": "node", "ipAddress": "127.0.0.1",
        "platformType": platform_type, "platformName": platform_type,
        "platformVersion": "1", "agentVersion": "0.1.0"})
}

/// POSTs a registration body; the status and the JSON answer.
pub async fn register_raw(endpoint: &str, body: &Value) -> (u16, Value) {
    let resp = http()
        .post(format!("{endpoint}{REGISTER_PATH}"))
        .json(body)
        .send()
        .await
        .expect("register over HTTP");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// A registration body for `key`.
pub fn registration(activation_id: &str, code: &str, key: &NodeKey, platform: &str) -> Value {
    serde_json::json!({
        "activationId": activation_id,
        "activationCode": code,
        "publicKey": key.public_key_base64(),
        "publicKeyType": "Ed25519",
        "machine": machine(platform)})
}

/// A poll body that does not wait.
pub fn poll_body(session: &str) -> Vec<u8> {
    serde_json::json!({"sessionId": session, "knownCommands": [], "waitMs": 0})
        .to_string()
        .into_bytes()
}

impl FakeNode {
    /// Registers a fresh key with the activation `(id, code)`.
    pub async fn register(endpoint: &str, activation: (&str, &str), platform: &str) -> Self {
        let key = NodeKey::generate();
        let (status, answer) = register_raw(
            endpoint,
            &registration(activation.0, activation.1, &key, platform),
        )
        .await;
        assert_eq!(status, 200, "register: {answer}");
        Self {
            endpoint: endpoint.to_owned(),
            instance_id: answer["instanceId"]
                .as_str()
                .expect("instanceId")
                .to_owned(),
            region: answer["region"].as_str().expect("region").to_owned(),
            key,
            http: http(),
        }
    }

    fn host(&self) -> String {
        self.endpoint.trim_start_matches("http://").to_owned()
    }

    fn base_headers(&self) -> Vec<(String, String)> {
        // Unique per request, as the agent's (identical signed requests are accepted once).
        let invocation = uuid::Uuid::new_v4().to_string();
        vec![
            ("amz-sdk-invocation-id".into(), invocation),
            ("content-type".into(), "application/json".into()),
            ("host".into(), self.host()),
            (VERSION_HEADER.into(), "2".into()),
        ]
    }

    fn prepare(
        &self,
        path: &str,
        body: Vec<u8>,
        sign: impl FnOnce(&HttpRequest) -> Vec<(String, String)>,
    ) -> Prepared {
        let mut headers = self.base_headers();
        let borrowed: Vec<(&str, &[u8])> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_bytes()))
            .collect();
        let added = sign(&HttpRequest {
            method: "POST",
            path,
            query: "",
            headers: &borrowed,
            body: &body,
        });
        headers.extend(added);
        Prepared {
            path: path.to_owned(),
            headers,
            body,
        }
    }

    /// A token request for `access_key_id` signed with `key` at `now` (Unix seconds).
    pub fn token_request(&self, access_key_id: &str, key: &NodeKey, now: i64) -> Prepared {
        self.prepare(TOKEN_PATH, b"{}".to_vec(), |req| {
            signing::sign_token_request(key, access_key_id, &self.region, req, now)
        })
    }

    /// A poll or result signed with `creds` at `now`.
    pub fn session_request(
        &self,
        path: &str,
        body: Vec<u8>,
        creds: &SessionCredentials,
        now: i64,
    ) -> Prepared {
        self.prepare(path, body, |req| {
            signing::sign_with_session(creds, &self.region, req, now)
        })
    }

    /// A request with only the base headers (no credentials at all).
    pub fn unsigned(&self, path: &str, body: Vec<u8>) -> Prepared {
        self.prepare(path, body, |_| Vec::new())
    }

    /// Sends `p` as it is; the status and the JSON answer (`Null` when the body is not JSON).
    pub async fn send(&self, p: &Prepared) -> (u16, Value) {
        let mut req = self
            .http
            .post(format!("{}{}", self.endpoint, p.path))
            .body(p.body.clone());
        for (n, v) in &p.headers {
            req = req.header(n.as_str(), v.as_str());
        }
        let resp = req.send().await.expect("agent request");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Session credentials, as the agent fetches them.
    pub async fn credentials(&self) -> SessionCredentials {
        let p = self.token_request(&self.instance_id, &self.key, signing::unix_now());
        let (status, answer) = self.send(&p).await;
        assert_eq!(status, 200, "token: {answer}");
        let t: TokenResponse = serde_json::from_value(answer).expect("token response");
        SessionCredentials::from(t)
    }

    /// A poll (no wait) signed now with `creds`.
    pub async fn poll(&self, creds: &SessionCredentials) -> (u16, Value) {
        let p = self.session_request(
            POLL_PATH,
            poll_body("fake-session"),
            creds,
            signing::unix_now(),
        );
        self.send(&p).await
    }

    /// A result body reporting `outcome` for `command_id`.
    pub fn result_body(command_id: &str, outcome: &str) -> Vec<u8> {
        serde_json::json!({"commandId": command_id, "outcome": outcome, "responseCode": 0,
            "elapsedMs": 1, "steps": [], "heldMs": 0})
        .to_string()
        .into_bytes()
    }

    /// A result signed now with `creds`.
    pub async fn result(
        &self,
        creds: &SessionCredentials,
        command_id: &str,
        outcome: &str,
    ) -> (u16, Value) {
        let p = self.session_request(
            RESULT_PATH,
            Self::result_body(command_id, outcome),
            creds,
            signing::unix_now(),
        );
        self.send(&p).await
    }
}
