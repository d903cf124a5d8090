//! Notifications delivered to webhooks standing in for SNS topics (ARCHITECTURE.md,
//! "Notifications"). The operator maps each topic ARN a command may name to HTTP(S) subscribers
//! (`--webhook <topic-arn>=<url>`). The store's outbox holds every notice until each subscriber of
//! its topic has taken it (a 2xx answer); this task leases due notices, posts them, and retries
//! failures with exponential backoff. Nothing here runs on a request's path: a slow or dead
//! receiver delays only its own notices.
//!
//! Each POST carries SNS's HTTP notification envelope (`Type`, `MessageId`, `TopicArn`,
//! `Message`, `Timestamp`) with SNS's `x-amz-sns-*` headers, and `X-Fleetrun-Signature:
//! sha256=<hex HMAC-SHA256 of the body>` under the subscriber's own secret. The secrets derive
//! from a key every server on the store shares, so any replica signs alike; they are written to
//! `<data-dir>/webhook-secrets` (0600), never logged.

use std::path::{Path, PathBuf};
use std::time::Duration;

use fleetrun_core::clock::{iso8601, now_millis, Millis};
use fleetrun_core::ids::random_secret;
use fleetrun_core::notification::OutboxEntry;
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;

use crate::AppState;

/// One subscriber of one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscriber {
    pub topic_arn: String,
    pub url: String,
}

impl Subscriber {
    /// The URL as logs show it: without a user, password or query, which may hold credentials.
    pub fn shown(&self) -> String {
        match reqwest::Url::parse(&self.url) {
            Ok(u) => format!(
                "{}://{}{}{}",
                u.scheme(),
                u.host_str().unwrap_or_default(),
                u.port().map(|p| format!(":{p}")).unwrap_or_default(),
                u.path()
            ),
            Err(_) => "<unparsable url>".into(),
        }
    }

    /// Parses `<topic-arn>=<url>` (the ARN holds no `=`; the URL may).
    pub fn parse(spec: &str) -> Result<Subscriber, String> {
        let (arn, url) = spec
            .split_once('=')
            .ok_or_else(|| format!("{spec:?}: expected <topic-arn>=<url>"))?;
        let arn_ok = arn.starts_with("arn:")
            && arn.split(':').count() == 6
            && arn.split(':').nth(2) == Some("sns");
        if !arn_ok {
            return Err(format!(
                "{arn:?} is not an SNS topic ARN (arn:aws:sns:<region>:<account>:<topic>)"
            ));
        }
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("{url:?}: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!("{url:?}: only http and https webhooks"));
        }
        Ok(Subscriber {
            topic_arn: arn.to_string(),
            url: url.to_string(),
        })
    }
}

/// The store secret the subscribers' signing secrets derive from.
const SIGNING_KEY: &str = "webhook-signing-key";
/// The file the subscribers' secrets are written to, in the data dir.
pub const SECRETS_FILE: &str = "webhook-secrets";
/// How long a leased notice is this server's before another may try it.
const LEASE_MS: Millis = 60_000;
/// Notices leased at once.
const BATCH: usize = 64;
/// How often the outbox is looked at when nothing rang (other replicas' notices, retries).
const POLL: Duration = Duration::from_secs(1);
/// A receiver that has not answered by then counts as failed.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// A subscriber's secret: hex HMAC-SHA256 of its URL under the shared key.
pub fn secret_for(key: &[u8], url: &str) -> String {
    hex::encode(mac(key, url.as_bytes()))
}

fn mac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length; the fallback is unreachable but avoids a panic path.
    let Ok(mut m) = <Hmac<Sha256> as Mac>::new_from_slice(key) else {
        return vec![0; 32];
    };
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

/// The signature header's value for `body` under `secret`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    format!("sha256={}", hex::encode(mac(secret.as_bytes(), body)))
}

/// Writes every subscriber's secret to `<data_dir>/webhook-secrets` (0600), one `<url> <secret>`
/// line each; returns the path.
pub(crate) async fn write_secrets(
    store: &dyn fleetrun_core::Store,
    data_dir: &Path,
    subscribers: &[Subscriber],
) -> std::io::Result<PathBuf> {
    let key = store
        .shared_secret(SIGNING_KEY, random_secret(48).as_bytes())
        .await
        .map_err(std::io::Error::other)?;
    let mut text = String::from(
        "# fleetrun webhook signing secrets: X-Fleetrun-Signature = sha256=HMAC-SHA256(secret, body)\n",
    );
    let mut seen = std::collections::BTreeSet::new();
    for s in subscribers {
        if seen.insert(s.url.as_str()) {
            text.push_str(&format!("{} {}\n", s.url, secret_for(&key, &s.url)));
        }
    }
    let path = data_dir.join(SECRETS_FILE);
    crate::write_private(&path, text.as_bytes())?;
    Ok(path)
}

/// TLS for https webhooks: rustls (ring, as everywhere) trusting the system's roots.
fn webhook_tls() -> Option<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        // A system store may hold certificates rustls cannot use; skip them.
        let _ = roots.add(cert);
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .ok()?;
    Some(builder.with_root_certificates(roots).with_no_client_auth())
}

/// SNS's HTTP notification envelope.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Envelope<'a> {
    #[serde(rename = "Type")]
    kind: &'a str,
    message_id: &'a str,
    topic_arn: &'a str,
    message: &'a str,
    timestamp: String,
}

/// The delivery loop; runs until the server stops.
pub(crate) async fn deliver(st: AppState) {
    let key = match st
        .store
        .shared_secret(SIGNING_KEY, random_secret(48).as_bytes())
        .await
    {
        Ok(k) => k,
        Err(e) => {
            tracing::error!(error = %e, "notifications: cannot read the webhook signing key; none will be delivered");
            return;
        }
    };
    let mut builder = reqwest::Client::builder()
        .timeout(DELIVERY_TIMEOUT)
        .user_agent(concat!("fleetrun/", env!("CARGO_PKG_VERSION")));
    match webhook_tls() {
        Some(tls) => builder = builder.use_preconfigured_tls(tls),
        None => tracing::warn!("notifications: no TLS configuration; https webhooks will fail"),
    }
    let client = match builder.build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "notifications: cannot build the HTTP client; none will be delivered");
            return;
        }
    };
    let mut shutting_down = st.shutting_down.clone();
    loop {
        // A read first: an idle server must not take the store's write path every second.
        let waiting = st.store.notice_backlog().await.unwrap_or(1);
        let leased = if waiting == 0 {
            Ok(Vec::new())
        } else {
            st.store.lease_notices(now_millis(), LEASE_MS, BATCH).await
        };
        match leased {
            Ok(due) if !due.is_empty() => {
                let mut sends = tokio::task::JoinSet::new();
                for entry in due {
                    let (st, client, key) = (st.clone(), client.clone(), key.clone());
                    sends.spawn(async move { send(&st, &client, &key, entry).await });
                }
                while sends.join_next().await.is_some() {}
                continue;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "notifications: cannot read the outbox"),
        }
        tokio::select! {
            () = st.outbox.notified() => {}
            () = tokio::time::sleep(POLL) => {}
            _ = shutting_down.changed() => return,
        }
    }
}

/// Posts one notice to every subscriber of its topic; removes it when all took it, else sets
/// its next attempt.
async fn send(st: &AppState, client: &reqwest::Client, key: &[u8], entry: OutboxEntry) {
    let subscribers: Vec<&Subscriber> = st
        .config
        .webhooks
        .iter()
        .filter(|s| s.topic_arn == entry.topic_arn)
        .collect();
    let envelope = Envelope {
        kind: "Notification",
        message_id: &entry.message_id,
        topic_arn: &entry.topic_arn,
        message: &entry.body,
        timestamp: iso8601(entry.event_time),
    };
    let Ok(body) = serde_json::to_vec(&envelope) else {
        return;
    };
    let mut failed = false;
    for s in &subscribers {
        let secret = secret_for(key, &s.url);
        let answer = client
            .post(&s.url)
            .header("content-type", "text/plain; charset=UTF-8")
            .header("x-amz-sns-message-type", "Notification")
            .header("x-amz-sns-message-id", &entry.message_id)
            .header("x-amz-sns-topic-arn", &entry.topic_arn)
            .header("x-fleetrun-signature", signature(&secret, &body))
            .body(body.clone())
            .send()
            .await;
        match answer {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => {
                failed = true;
                tracing::warn!(url = %s.shown(), status = r.status().as_u16(), message_id = %entry.message_id,
                    attempts = entry.attempts, "notification refused by its webhook; will retry");
            }
            Err(e) => {
                failed = true;
                tracing::warn!(url = %s.shown(), error = %e, message_id = %entry.message_id,
                    attempts = entry.attempts, "notification not delivered; will retry");
            }
        }
    }
    if subscribers.is_empty() {
        tracing::warn!(topic = %entry.topic_arn, message_id = %entry.message_id,
            "notification for a topic no --webhook names any more; dropped");
    }
    let done = if failed {
        let at =
            now_millis().saturating_add(backoff_ms(entry.attempts, st.config.webhook_retry_max));
        st.store.retry_notice_at(&entry.message_id, at).await
    } else {
        st.store.notice_delivered(&entry.message_id).await
    };
    if let Err(e) = done {
        // The lease runs out and the notice is tried again: at least once, never lost.
        tracing::warn!(error = %e, message_id = %entry.message_id, "notifications: cannot update the outbox");
    }
}

/// 1 s, 2 s, 4 s, … up to `max`.
fn backoff_ms(attempts: u32, max: Duration) -> Millis {
    let max = Millis::try_from(max.as_millis()).unwrap_or(Millis::MAX);
    let exp = attempts.saturating_sub(1).min(30);
    (1_000 as Millis).saturating_mul(1 << exp).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribers_parse_and_refuse_what_is_not_a_topic_or_a_url() {
        let s =
            Subscriber::parse("arn:aws:sns:us-east-1:123456789012:ops=https://hooks.example/x?a=b")
                .expect("parse");
        assert_eq!(s.topic_arn, "arn:aws:sns:us-east-1:123456789012:ops");
        assert_eq!(s.url, "https://hooks.example/x?a=b");
        for bad in [
            "https://hooks.example/x",
            "arn:aws:sqs:us-east-1:123456789012:q=https://h/x",
            "arn:aws:sns:us-east-1:123456789012:ops=ftp://h/x",
            "arn:aws:sns:us-east-1:123456789012:ops=not a url",
        ] {
            assert!(Subscriber::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn logged_urls_hide_credentials() {
        let s = Subscriber::parse(
            "arn:aws:sns:us-east-1:123456789012:ops=https://user:pw@hooks.example:8443/x?token=t",
        )
        .expect("parse");
        assert_eq!(s.shown(), "https://hooks.example:8443/x");
    }

    #[test]
    fn signatures_are_hmac_sha256_of_the_body_under_the_subscribers_secret() {
        let secret = secret_for(b"shared key", "https://hooks.example/x");
        assert_eq!(secret.len(), 64);
        assert_ne!(secret, secret_for(b"shared key", "https://hooks.example/y"));
        // RFC 4231 test case 2.
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(b"Jefe").expect("key");
        m.update(b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(m.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn retries_back_off_exponentially_up_to_the_limit() {
        let max = Duration::from_secs(60);
        assert_eq!(backoff_ms(1, max), 1_000);
        assert_eq!(backoff_ms(2, max), 2_000);
        assert_eq!(backoff_ms(4, max), 8_000);
        assert_eq!(backoff_ms(10, max), 60_000);
        assert_eq!(backoff_ms(u32::MAX, max), 60_000);
    }
}
