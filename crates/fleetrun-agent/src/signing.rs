//! The node's credentials and how its requests are signed (agent protocol v2, see
//! `fleetrun_wire::agent`): the long-term Ed25519 key ([`NodeKey`], generated at registration,
//! kept in `identity.json`), the token request signed with it in the SigV4 layout
//! ([`sign_token_request`]), and ordinary SigV4 signing with the short-lived session credentials
//! the server hands out ([`sign_with_session`]). Pure functions over `fleetrun_sigv4`; the bench
//! and the server tests use them to act as nodes.

use std::fmt;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ed25519_dalek::{Signer, SigningKey};
use fleetrun_sigv4::{Credentials, HttpRequest};
use fleetrun_wire::agent::{TokenResponse, SIGNING_SERVICE};

/// The node's long-term Ed25519 key pair. Only its public half ever leaves the node.
#[derive(Clone, PartialEq, Eq)]
pub struct NodeKey(SigningKey);

impl NodeKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Self {
        Self(SigningKey::generate(&mut rand_core::OsRng))
    }

    /// The key from the standard base64 of its 32-byte seed (as [`NodeKey::to_base64`] wrote it).
    pub fn from_base64(text: &str) -> Option<Self> {
        let bytes = STANDARD.decode(text.trim()).ok()?;
        let seed: [u8; 32] = bytes.try_into().ok()?;
        Some(Self(SigningKey::from_bytes(&seed)))
    }

    /// Standard base64 of the 32-byte private seed: what `identity.json` holds.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0.to_bytes())
    }

    /// Standard base64 of the 32-byte public key: what registration sends.
    pub fn public_key_base64(&self) -> String {
        STANDARD.encode(self.0.verifying_key().to_bytes())
    }

    /// The Ed25519 signature of `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.0.sign(message).to_bytes()
    }
}

impl fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeKey")
            .field("public_key", &self.public_key_base64())
            .finish_non_exhaustive()
    }
}

/// Session credentials from `/agent/v2/token`.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
    /// How long they were valid when issued.
    pub lifetime: Duration,
}

impl From<TokenResponse> for SessionCredentials {
    fn from(t: TokenResponse) -> Self {
        Self {
            access_key_id: t.access_key_id,
            secret_access_key: t.secret_access_key,
            session_token: t.session_token,
            lifetime: Duration::from_secs(t.expires_in_secs),
        }
    }
}

impl fmt::Debug for SessionCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

/// Headers to add to a token request: `x-amz-date` and an `Authorization` in the SigV4 layout
/// whose access key id is the node's `mi-` id and whose `Signature` is the base64 Ed25519
/// signature of the SigV4 string to sign (AWS hybrid nodes do the same with RSA-PSS).
/// `req.headers` must hold `host`; every header in it is signed.
pub fn sign_token_request(
    key: &NodeKey,
    instance_id: &str,
    region: &str,
    req: &HttpRequest,
    now_unix: i64,
) -> Vec<(String, String)> {
    let (mut headers, signed_headers, string_to_sign) = fleetrun_sigv4::string_to_sign_for(
        req,
        instance_id,
        region,
        SIGNING_SERVICE,
        now_unix,
        None,
    );
    let stamp = fleetrun_sigv4::format_basic(now_unix);
    let date = stamp.get(..8).unwrap_or_default();
    let signature = STANDARD.encode(key.sign(string_to_sign.as_bytes()));
    headers.push((
        "authorization".to_owned(),
        fleetrun_sigv4::authorization_header(
            instance_id,
            date,
            region,
            SIGNING_SERVICE,
            &signed_headers,
            &signature,
        ),
    ));
    headers
}

/// Headers to add to a poll or result: ordinary SigV4 (`AWS4-HMAC-SHA256`) with the session
/// credentials, `X-Amz-Security-Token` included and signed. `req.headers` must hold `host`.
pub fn sign_with_session(
    creds: &SessionCredentials,
    region: &str,
    req: &HttpRequest,
    now_unix: i64,
) -> Vec<(String, String)> {
    fleetrun_sigv4::sign(
        req,
        &Credentials {
            access_key_id: &creds.access_key_id,
            secret_access_key: &creds.secret_access_key,
            session_token: Some(&creds.session_token),
        },
        region,
        SIGNING_SERVICE,
        now_unix,
    )
}

/// This node's wall clock in Unix seconds (what `X-Amz-Date` carries).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The `Host` header value for a URL, as HTTP clients send it: the host, plus `:port` unless the
/// port is the scheme's default (IPv6 hosts in brackets).
pub fn host_header(url: &reqwest::Url) -> Option<String> {
    let host = url.host_str()?;
    Some(match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signature, Verifier, VerifyingKey};

    const HOST: &str = "127.0.0.1:8089";

    fn request<'a>(headers: &'a [(&'a str, &'a [u8])], body: &'a [u8]) -> HttpRequest<'a> {
        HttpRequest {
            method: "POST",
            path: "/agent/v2/token",
            query: "",
            headers,
            body,
        }
    }

    #[test]
    fn keys_round_trip_through_base64_and_debug_hides_the_seed() {
        let key = NodeKey::generate();
        let text = key.to_base64();
        assert_eq!(NodeKey::from_base64(&text), Some(key.clone()));
        assert_ne!(NodeKey::generate(), key, "each key is fresh");
        assert_eq!(NodeKey::from_base64("c2hvcnQ="), None);
        assert_eq!(NodeKey::from_base64("not base64!"), None);
        let shown = format!("{key:?}");
        assert!(shown.contains(&key.public_key_base64()) && !shown.contains(&text));
        assert_eq!(
            STANDARD.decode(key.public_key_base64()).map(|b| b.len()),
            Ok(32)
        );
    }

    /// The token request parses as SigV4 and its signature verifies, with the node's public key,
    /// over exactly the string to sign the server rebuilds; another body does not.
    #[test]
    fn token_requests_carry_an_ed25519_signature_over_the_sigv4_string_to_sign() {
        let key = NodeKey::generate();
        let base: Vec<(&str, &[u8])> = vec![
            ("host", HOST.as_bytes()),
            ("content-type", b"application/json"),
        ];
        let added = sign_token_request(
            &key,
            "mi-0123456789abcdef0",
            "eu-west-1",
            &request(&base, b"{}"),
            1_700_000_000,
        );
        let mut all = base.clone();
        all.extend(added.iter().map(|(n, v)| (n.as_str(), v.as_bytes())));
        let signed = fleetrun_sigv4::parse(&request(&all, b"{}")).expect("parses as SigV4");
        assert_eq!(signed.auth.access_key_id, "mi-0123456789abcdef0");
        assert_eq!(
            (signed.auth.region.as_str(), signed.auth.service.as_str()),
            ("eu-west-1", "ssm")
        );
        fleetrun_sigv4::check_scope(&signed, "eu-west-1", "ssm").expect("scope");
        fleetrun_sigv4::check_time(&signed, 1_700_000_100, 300).expect("time");
        let public: [u8; 32] = STANDARD
            .decode(key.public_key_base64())
            .expect("b64")
            .try_into()
            .expect("32 bytes");
        let verifying = VerifyingKey::from_bytes(&public).expect("key");
        let sig_bytes: [u8; 64] = STANDARD
            .decode(&signed.auth.signature)
            .expect("base64 signature")
            .try_into()
            .expect("64 bytes");
        let signature = Signature::from_bytes(&sig_bytes);
        verifying
            .verify(signed.string_to_sign.as_bytes(), &signature)
            .expect("verifies");
        let tampered = fleetrun_sigv4::parse(&request(&all, b"{\"x\":1}")).expect("parses");
        assert!(verifying
            .verify(tampered.string_to_sign.as_bytes(), &signature)
            .is_err());
    }

    #[test]
    fn session_requests_are_hmac_signed_with_the_token() {
        let creds = SessionCredentials {
            access_key_id: "ASIAFLEETRUNTEST001".into(),
            secret_access_key: "c2VjcmV0".into(),
            session_token: "token-123".into(),
            lifetime: Duration::from_secs(3600),
        };
        let base: Vec<(&str, &[u8])> = vec![("host", HOST.as_bytes())];
        let body = br#"{"sessionId":"s"}"#;
        let req = |h| HttpRequest {
            path: "/agent/v2/poll",
            ..request(h, body)
        };
        let added = sign_with_session(&creds, "us-east-1", &req(&base), 1_700_000_000);
        let mut all = base.clone();
        all.extend(added.iter().map(|(n, v)| (n.as_str(), v.as_bytes())));
        let signed = fleetrun_sigv4::parse(&req(&all)).expect("parse");
        assert_eq!(signed.session_token.as_deref(), Some("token-123"));
        assert!(signed
            .auth
            .signed_headers
            .iter()
            .any(|h| h == "x-amz-security-token"));
        fleetrun_sigv4::verify_signature(&signed, "c2VjcmV0").expect("verifies");
        assert!(fleetrun_sigv4::verify_signature(&signed, "other").is_err());
        assert!(!format!("{creds:?}").contains("c2VjcmV0"));
    }

    #[test]
    fn host_header_keeps_non_default_ports() {
        let host = |u: &str| host_header(&reqwest::Url::parse(u).expect("url"));
        assert_eq!(
            host("http://127.0.0.1:8089/x").as_deref(),
            Some("127.0.0.1:8089")
        );
        assert_eq!(
            host("http://example.com:80/").as_deref(),
            Some("example.com")
        );
        assert_eq!(
            host("https://example.com:8443").as_deref(),
            Some("example.com:8443")
        );
        assert_eq!(host("http://[::1]:9000").as_deref(), Some("[::1]:9000"));
    }
}
