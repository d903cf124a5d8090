//! Opaque, tamper-evident paging tokens.
//!
//! A token carries the keyset position of the last row returned plus a digest of the query it belongs
//! to, signed with HMAC-SHA256 under a key kept in the data directory. A forged, truncated or foreign
//! token (another query, another server) fails verification → `InvalidNextToken`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use fleetrun_core::query::PageKey;

const MAC_LEN: usize = 16;

#[derive(Clone)]
pub struct TokenKey(Vec<u8>);

impl TokenKey {
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    fn mac(&self, scope: &str, payload: &[u8]) -> Vec<u8> {
        // HMAC accepts keys of any length; the fallback is unreachable but avoids a panic path.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.0) else {
            return vec![0; MAC_LEN];
        };
        mac.update(scope.as_bytes());
        mac.update(&[0]);
        mac.update(payload);
        mac.finalize().into_bytes()[..MAC_LEN].to_vec()
    }

    /// Encodes `key` for the query identified by `scope` (operation + query fingerprint).
    pub fn encode(&self, scope: &str, key: &PageKey) -> String {
        let payload = format!(
            "1|{}|{}|{}",
            key.requested_at,
            key.seq,
            key.instance_id.as_deref().unwrap_or("")
        );
        let mut raw = payload.into_bytes();
        let mac = self.mac(scope, &raw);
        raw.extend_from_slice(&mac);
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// Decodes a token issued by [`encode`](Self::encode) for the same scope.
    pub fn decode(&self, scope: &str, token: &str) -> Option<PageKey> {
        let raw = URL_SAFE_NO_PAD.decode(token.trim()).ok()?;
        if raw.len() <= MAC_LEN {
            return None;
        }
        let (payload, mac) = raw.split_at(raw.len() - MAC_LEN);
        let want = self.mac(scope, payload);
        if want.iter().zip(mac).fold(0u8, |acc, (a, b)| acc | (a ^ b)) != 0 {
            return None;
        }
        let text = std::str::from_utf8(payload).ok()?;
        let mut parts = text.splitn(4, '|');
        if parts.next()? != "1" {
            return None;
        }
        let requested_at = parts.next()?.parse().ok()?;
        let seq = parts.next()?.parse().ok()?;
        let instance = parts.next()?;
        Some(PageKey {
            requested_at,
            seq,
            instance_id: (!instance.is_empty()).then(|| instance.to_string()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejections() {
        let k = TokenKey::new(b"0123456789abcdef0123456789abcdef".to_vec());
        let key = PageKey {
            requested_at: 1_700_000_000_123,
            seq: 42,
            instance_id: Some("mi-0123456789abcdef0".into()),
        };
        let t = k.encode("ListCommands|q", &key);
        assert_eq!(k.decode("ListCommands|q", &t), Some(key.clone()));
        // Foreign query, other server, garbage, tampering.
        assert_eq!(k.decode("ListCommands|other", &t), None);
        let other = TokenKey::new(b"another key another key another!".to_vec());
        assert_eq!(other.decode("ListCommands|q", &t), None);
        assert_eq!(k.decode("ListCommands|q", "garbage"), None);
        assert_eq!(k.decode("ListCommands|q", ""), None);
        let mut bytes = URL_SAFE_NO_PAD.decode(&t).expect("b64");
        bytes[3] ^= 1;
        assert_eq!(
            k.decode("ListCommands|q", &URL_SAFE_NO_PAD.encode(bytes)),
            None
        );
    }
}
