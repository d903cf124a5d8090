//! Managed nodes and the hybrid activations that register them.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::clock::Millis;
use crate::error::RegistrationRefusal;
use crate::ids::{ActivationId, InstanceId};

/// How long a node may go without polling before it is reported ConnectionLost.
pub const DEFAULT_PING_TIMEOUT_MS: Millis = 60_000;

/// A tag (key, value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    pub key: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewActivation {
    pub id: ActivationId,
    pub code_hash: String,
    pub description: String,
    pub default_instance_name: String,
    pub iam_role: String,
    pub registration_limit: u32,
    pub expires_at: Millis,
    pub created_at: Millis,
    pub tags: Vec<Tag>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Activation {
    pub id: ActivationId,
    pub description: String,
    pub default_instance_name: String,
    pub iam_role: String,
    pub registration_limit: u32,
    pub registrations_count: u32,
    pub expires_at: Millis,
    pub created_at: Millis,
    pub tags: Vec<Tag>,
}

/// What an agent says about its machine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeInfo {
    pub computer_name: String,
    pub ip_address: String,
    pub platform_type: String,
    pub platform_name: String,
    pub platform_version: String,
    pub agent_version: String,
}

/// The platform a node counts as: the one it reported, or `Linux` for a node that never reported
/// one (fleetrun's choice; agents on Linux and macOS always report theirs).
pub fn effective_platform_type(reported: &str) -> &str {
    if reported.is_empty() {
        "Linux"
    } else {
        reported
    }
}

/// A registration attempt, with the public key the node will prove its identity with.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeRegistration {
    pub activation_id: ActivationId,
    pub activation_code: String,
    pub instance_id: InstanceId,
    /// See [`Node::public_key`].
    pub public_key: String,
    pub info: NodeInfo,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub instance_id: InstanceId,
    pub activation_id: String,
    pub name: String,
    pub iam_role: String,
    pub registered_at: Millis,
    pub last_ping_at: Millis,
    /// Standard base64 of the node's 32-byte Ed25519 public key: all the server keeps of the
    /// node's credentials (the private key never leaves the node). Empty for a node registered
    /// with agent protocol v1: it is listed, tagged and targeted as before but cannot
    /// authenticate until it registers again.
    pub public_key: String,
    pub info: NodeInfo,
    /// When the node's agent last said goodbye (stopped cleanly), unless it has polled since:
    /// such a node is unreachable at once, without waiting for its ping timeout.
    pub signed_off_at: Option<Millis>,
}

impl Node {
    /// Whether the node's channel is up: it polled within `ping_timeout_ms` and has not signed off
    /// since. The one reachability rule: PingStatus shows it, and the store's
    /// [`crate::Store::mark_unreachable`] applies the same rule to released work.
    pub fn reachable(&self, now: Millis, ping_timeout_ms: Millis) -> bool {
        self.signed_off_at.is_none() && now - self.last_ping_at <= ping_timeout_ms
    }

    /// `Online` while [`Node::reachable`], else `ConnectionLost`.
    pub fn ping_status(&self, now: Millis, ping_timeout_ms: Millis) -> &'static str {
        if self.reachable(now, ping_timeout_ms) {
            "Online"
        } else {
            "ConnectionLost"
        }
    }
}

/// What a registration needs to know about its activation, besides the code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActivationState {
    pub deleted: bool,
    pub expires_at: Millis,
    pub registration_limit: u32,
    pub registrations: u32,
}

/// Why the activation cannot take another node at `now`, if it cannot. The code is checked before
/// this (a caller without it learns nothing), and an agent retrying with the key it already
/// registered gets its node back before this is asked.
pub fn registration_refusal(a: &ActivationState, now: Millis) -> Option<RegistrationRefusal> {
    if a.deleted {
        Some(RegistrationRefusal::Deleted)
    } else if a.expires_at <= now {
        Some(RegistrationRefusal::Expired)
    } else if a.registrations >= a.registration_limit {
        Some(RegistrationRefusal::LimitReached {
            limit: a.registration_limit,
        })
    } else {
        None
    }
}

/// Hex SHA-256 of a secret: activation codes are stored only hashed.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Compares two strings without an early exit on the first differing byte (only the lengths are
/// compared first; callers compare fixed-length digests, so the length says nothing).
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a
        .bytes()
        .zip(b.bytes())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // Keeps the optimiser from turning the fold back into an early-exit comparison.
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::RegistrationRefusal;

    #[test]
    fn ping_status_follows_last_ping() {
        let mut n = Node {
            instance_id: InstanceId::generate(),
            activation_id: String::new(),
            name: String::new(),
            iam_role: String::new(),
            registered_at: 0,
            last_ping_at: 1_000,
            public_key: String::new(),
            info: NodeInfo::default(),
            signed_off_at: None,
        };
        assert_eq!(n.ping_status(1_000 + 60_000, 60_000), "Online");
        assert_eq!(n.ping_status(1_000 + 60_001, 60_000), "ConnectionLost");
        n.last_ping_at = 100_000;
        assert_eq!(n.ping_status(100_500, 60_000), "Online");
        // A goodbye makes it ConnectionLost at once, however recent its last poll.
        n.signed_off_at = Some(100_400);
        assert_eq!(n.ping_status(100_500, 60_000), "ConnectionLost");
        assert!(!n.reachable(100_500, 60_000));
    }

    #[test]
    fn secrets_hash_and_compare() {
        assert_eq!(hash_secret("a"), hash_secret("a"));
        assert!(constant_time_eq(&hash_secret("a"), &hash_secret("a")));
        assert!(!constant_time_eq(&hash_secret("a"), &hash_secret("b")));
        assert!(!constant_time_eq("ab", "abc"));
    }

    #[test]
    fn registration_refusal_table() {
        let open = ActivationState {
            deleted: false,
            expires_at: 100,
            registration_limit: 2,
            registrations: 1,
        };
        assert_eq!(registration_refusal(&open, 99), None);
        assert_eq!(
            registration_refusal(&open, 100),
            Some(RegistrationRefusal::Expired)
        );
        let full = ActivationState {
            registrations: 2,
            ..open
        };
        assert_eq!(
            registration_refusal(&full, 0),
            Some(RegistrationRefusal::LimitReached { limit: 2 })
        );
        let deleted = ActivationState {
            deleted: true,
            ..full
        };
        assert_eq!(
            registration_refusal(&deleted, 1_000),
            Some(RegistrationRefusal::Deleted),
            "deletion is said before expiry and the limit"
        );
    }
}
