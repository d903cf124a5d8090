//! Node session credentials without server-side state, so that several server replicas sharing
//! the key file can all accept them: the session token is a MAC-protected blob naming the node,
//! the access key id and the expiry; the secret access key is derived from the same key and the
//! access key id. Nothing is stored per issuance; deregistering a node cuts its credentials off
//! because every request also looks the node up.
//!
//! ```text
//! access key id  ASIA + 16 random characters of [A-Z2-7]
//! secret         base64url(HMAC-SHA256(key, "fleetrun node secret\0" ‖ access key id))
//! session token  base64url(payload ‖ HMAC-SHA256(key, "fleetrun node session\0" ‖ payload))
//!                payload = "fst1|<mi- id>|<access key id>|<expiry, Unix seconds>"
//! key            <data_dir>/node-session.key: 32 random bytes, mode 0600
//! ```

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
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

    /// Reads `<data_dir>/node-session.key`, or creates it (mode 0600) when missing or short.
    pub(crate) fn load_or_create(data_dir: &Path) -> std::io::Result<Self> {
        let path = data_dir.join(KEY_FILE);
        match std::fs::read(&path) {
            Ok(bytes) if bytes.len() >= KEY_LEN => {
                let meta = std::fs::metadata(&path)?;
                if meta.permissions().mode() & 0o077 != 0 {
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
                }
                let mut key = [0u8; KEY_LEN];
                key.copy_from_slice(&bytes[..KEY_LEN]);
                Ok(Self(key))
            }
            Ok(_) => create(&path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => create(&path),
            Err(e) => Err(e),
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

/// Writes a fresh key: created 0600 under a temporary name, then renamed into place, so it is
/// never readable by others nor seen half-written.
fn create(path: &Path) -> std::io::Result<SessionKey> {
    let mut key = [0u8; KEY_LEN];
    rand::thread_rng().fill(&mut key[..]);
    let tmp = path.with_extension("key.tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(&key)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(SessionKey(key))
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
    fn the_key_file_is_private_and_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = SessionKey::load_or_create(dir.path()).expect("create");
        let path = dir.path().join(KEY_FILE);
        let mode = || std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(), 0o600);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let b = SessionKey::load_or_create(dir.path()).expect("load");
        assert_eq!(mode(), 0o600);
        assert_eq!(
            a.0, b.0,
            "a restart keeps the key, so issued credentials stay valid"
        );
    }
}
