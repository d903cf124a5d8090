//! API access keys: who may call the SSM API, with which secret, under which policy.
//!
//! A key is an IAM-style user's long-term credential (`AKIA…` id, 40-character secret). The policy
//! is kept as the JSON text the operator gave; the server parses and evaluates it
//! (`fleetrun-policy`). Secrets are needed in clear text to verify SigV4 signatures, so the store
//! keeps them in files only its user can read (SECURITY.md).

use crate::clock::Millis;

/// Whether a key may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessKeyStatus {
    Active,
    Inactive,
}

impl AccessKeyStatus {
    /// The IAM wire name (`Active` / `Inactive`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "Active",
            Self::Inactive => "Inactive",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "Active" => Some(Self::Active),
            "Inactive" => Some(Self::Inactive),
            _ => None,
        }
    }
}

/// One access key.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessKey {
    pub access_key_id: String,
    pub secret_access_key: String,
    /// The IAM-style user name the key belongs to; the principal ARN is built from it.
    pub user_name: String,
    /// The identity policy document (JSON text).
    pub policy_json: String,
    pub status: AccessKeyStatus,
    pub created_at: Millis,
}

impl std::fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessKey")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("user_name", &self.user_name)
            .field("status", &self.status)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

/// A fresh long-term access key id: `AKIA` + 16 upper-case letters and digits, as IAM issues.
pub fn generate_access_key_id() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut rng = rand::thread_rng();
    let tail: String = (0..16)
        .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
        .collect();
    format!("AKIA{tail}")
}

/// A fresh 40-character secret access key (letters and digits; ~238 bits).
pub fn generate_secret_access_key() -> String {
    crate::ids::random_secret(40)
}

/// IAM user names: 1..64 characters of `[\w+=,.@-]`.
pub fn valid_user_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_have_iam_shapes() {
        let id = generate_access_key_id();
        assert_eq!(id.len(), 20);
        assert!(id.starts_with("AKIA"));
        assert!(id
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()));
        assert_eq!(generate_secret_access_key().len(), 40);
        assert_ne!(generate_access_key_id(), id);
    }

    #[test]
    fn debug_hides_the_secret() {
        let key = AccessKey {
            access_key_id: "AKIAEXAMPLE".into(),
            secret_access_key: "hunter2hunter2".into(),
            user_name: "admin".into(),
            policy_json: "{}".into(),
            status: AccessKeyStatus::Active,
            created_at: 0,
        };
        assert!(!format!("{key:?}").contains("hunter2"));
    }

    #[test]
    fn user_names() {
        assert!(valid_user_name("ops-team@example.com"));
        assert!(!valid_user_name(""));
        assert!(!valid_user_name("has space"));
        assert!(!valid_user_name(&"x".repeat(65)));
    }
}
