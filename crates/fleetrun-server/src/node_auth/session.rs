//! Node session credentials without server-side state, so that several server replicas sharing
//! the key (kept in the store, `Store::shared_secret`) can all accept them: the session token is a MAC-protected blob naming the node,
//! the access key id and the expiry; the secret access key is derived from the same key and the
//! access key id. Nothing is stored per issuance; deregistering a node cuts its credentials off
//! because every request also looks the node up.
//!
//! ```text
//! access key id  ASIA + 16 random characters of [A-Z2-7]
//! secret         base64url(HMAC-SHA256(key, "fleetrun node secret\0" ‖ access key id))
//! session token  base64url(payload ‖ HMAC-SHA256(key, "fleetrun node session\0" ‖ payload))
//!                payload = "fst1|<mi- id>|<access key id>|<expiry, Unix seconds>"
//! key            32 random bytes, the store's shared secret "node-session-key" (before schema
//!                v9: the file <data_dir>/node-session.key, adopted as the first candidate)
//! ```

use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use fleetrun_core::ids::InstanceId;
use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::Sha256;

/// The key file, beside `token.key` in the data dir.
pub const KEY_FILE: &str = "node-session.key";
const KEY_LEN: usize = 32;
const MAC_LEN: usize = 32;
const TOKEN_VERSION: &str = "fst1";
const SECRET_CONTEXT: &[u8] = b"fleetrun node secret\0";
const TOKEN_CONTEXT: &[u8] = b"fleetrun node session\0";
/// Base32 alphabet: access key ids stay upper-case alphanumerics, as AWS's do.
const AKID_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// What a valid session token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Claims {
    pub instance_id: InstanceId,
    pub access_key_id: String,
    pub expires_at: i64,
}

/// Credentials handed to a node.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Issued {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
}

/// The server's key for node sessions.
#[derive(Clone)]
pub(crate) struct SessionKey([u8; KEY_LEN]);

impl SessionKey {
    #[cfg(test)]
    pub(crate) fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// The key from the store's bytes (at least [`KEY_LEN`]; `None` if shorter).
    pub(crate) fn from_stored(bytes: &[u8]) -> Option<Self> {
        let key: [u8; KEY_LEN] = bytes.get(..KEY_LEN)?.try_into().ok()?;
        Some(Self(key))
    }

    /// What to offer the store when it holds no key yet: the key file an earlier version kept in
    /// the data dir (so the credentials it issued stay valid), else fresh random bytes.
    pub(crate) fn candidate(data_dir: &Path) -> Vec<u8> {
        match std::fs::read(data_dir.join(KEY_FILE)) {
            Ok(bytes) if bytes.len() >= KEY_LEN => bytes[..KEY_LEN].to_vec(),
            _ => {
                let mut key = [0u8; KEY_LEN];
                rand::thread_rng().fill(&mut key[..]);
                key.to_vec()
            }
        }
    }

    fn mac(&self, context: &[u8], data: &[u8]) -> [u8; MAC_LEN] {
        // HMAC takes keys of any length; a 32-byte key never fails.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.0) else {
            return [0; MAC_LEN];
        };
        mac.update(context);
        mac.update(data);
        mac.finalize().into_bytes().into()
    }

    /// The secret access key belonging to `access_key_id`.
    pub(crate) fn secret_for(&self, access_key_id: &str) -> String {
        URL_SAFE_NO_PAD.encode(self.mac(SECRET_CONTEXT, access_key_id.as_bytes()))
    }

    /// Fresh credentials for `node`, valid until `expires_at` (Unix seconds).
    pub(crate) fn issue(&self, node: &InstanceId, expires_at: i64) -> Issued {
        let mut rng = rand::thread_rng();
        let suffix: String = (0..16)
            .map(|_| char::from(AKID_ALPHABET[rng.gen_range(0..AKID_ALPHABET.len())]))
            .collect();
        let access_key_id = format!("ASIA{suffix}");
        let payload = format!("{TOKEN_VERSION}|{node}|{access_key_id}|{expires_at}");
        let mut raw = payload.into_bytes();
        let mac = self.mac(TOKEN_CONTEXT, &raw);
        raw.extend_from_slice(&mac);
        Issued {
            secret_access_key: self.secret_for(&access_key_id),
            session_token: URL_SAFE_NO_PAD.encode(raw),
            access_key_id,
        }
    }

    /// The claims of a token this key issued; `None` for anything else (forged, truncated,
    /// another server's). Expiry is the caller's check.
    pub(crate) fn open(&self, token: &str) -> Option<Claims> {
        let raw = URL_SAFE_NO_PAD.decode(token.trim()).ok()?;
        if raw.len() <= MAC_LEN {
            return None;
        }
        let (payload, mac) = raw.split_at(raw.len() - MAC_LEN);
        let Ok(mut check) = Hmac::<Sha256>::new_from_slice(&self.0) else {
            return None;
        };
        check.update(TOKEN_CONTEXT);
        check.update(payload);
        // Constant-time comparison.
        check.verify_slice(mac).ok()?;
        let text = std::str::from_utf8(payload).ok()?;
        let mut parts = text.split('|');
        if parts.next()? != TOKEN_VERSION {
            return None;
        }
        let instance_id = InstanceId::parse(parts.next()?)?;
        let access_key_id = parts.next()?.to_owned();
        let expires_at = parts.next()?.parse().ok()?;
        if parts.next().is_some() {
            return None;
        }
        Some(Claims {
            instance_id,
            access_key_id,
            expires_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> InstanceId {
        InstanceId::parse("mi-0123456789abcdef0").expect("id")
    }

    #[test]
    fn tokens_round_trip_and_forgeries_fail() {
        let key = SessionKey::from_bytes([7; 32]);
        let issued = key.issue(&node(), 1_700_003_600);
        assert!(issued.access_key_id.starts_with("ASIA") && issued.access_key_id.len() == 20);
        assert_eq!(
            key.open(&issued.session_token),
            Some(Claims {
                instance_id: node(),
                access_key_id: issued.access_key_id.clone(),
                expires_at: 1_700_003_600,
            })
        );
        assert_eq!(
            issued.secret_access_key,
            key.secret_for(&issued.access_key_id)
        );
        let other = key.issue(&node(), 1_700_003_600);
        assert_ne!(other.access_key_id, issued.access_key_id);
        assert_ne!(other.secret_access_key, issued.secret_access_key);

        // Another server's key, a flipped byte, truncation, garbage.
        assert_eq!(
            SessionKey::from_bytes([8; 32]).open(&issued.session_token),
            None
        );
        let mut raw = URL_SAFE_NO_PAD.decode(&issued.session_token).expect("b64");
        raw[10] ^= 1;
        assert_eq!(key.open(&URL_SAFE_NO_PAD.encode(&raw)), None);
        assert_eq!(key.open(&issued.session_token[..20]), None);
        assert_eq!(key.open("garbage!"), None);
        assert_eq!(key.open(""), None);
    }

    #[test]
    fn an_old_key_file_is_the_first_candidate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fresh = SessionKey::candidate(dir.path());
        assert_eq!(fresh.len(), KEY_LEN);
        assert_ne!(fresh, SessionKey::candidate(dir.path()), "random each time");
        std::fs::write(dir.path().join(KEY_FILE), [7u8; KEY_LEN]).expect("write");
        assert_eq!(SessionKey::candidate(dir.path()), vec![7u8; KEY_LEN]);
        assert!(SessionKey::from_stored(&[1u8; KEY_LEN - 1]).is_none());
        assert!(SessionKey::from_stored(&[1u8; KEY_LEN]).is_some());
    }
}
