//! Replay protection for signed agent requests. SigV4 by itself lets a captured request be sent
//! again while its timestamp is inside the clock window; the server therefore remembers each
//! accepted signature until its timestamp has left the window, and refuses a second use.
//!
//! Memory is bounded: at most [`CAPACITY`] signatures (32-byte digests, about 100 bytes each with
//! the map and the expiry heap: ~25 MB at the cap). Only requests that passed signature
//! verification are remembered, so filling the set takes authenticated nodes sending more than
//! CAPACITY requests in 10 minutes (1,000 nodes polling every 20 s send 30,000); when it is full,
//! new requests are refused (fail closed) rather than replays let through.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use sha2::{Digest, Sha256};

/// Most signatures remembered at once.
pub const CAPACITY: usize = 250_000;

/// Why a request was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// This signature was accepted before.
    Replayed,
    /// The set is full of signatures still inside their window.
    Full,
}

/// Signatures accepted and still inside their window.
pub(crate) struct ReplayCache {
    capacity: usize,
    /// Digest → the Unix second after which it can no longer be replayed.
    seen: HashMap<[u8; 32], i64>,
    /// The same entries, soonest-forgotten first.
    expiry: BinaryHeap<Reverse<(i64, [u8; 32])>>,
}

impl ReplayCache {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            seen: HashMap::new(),
            expiry: BinaryHeap::new(),
        }
    }

    /// Records the signature `signature` of `access_key_id`, usable until `valid_until` (Unix
    /// seconds: the request timestamp plus the window); refuses one seen before.
    pub(crate) fn admit(
        &mut self,
        access_key_id: &str,
        signature: &str,
        valid_until: i64,
        now: i64,
    ) -> Result<(), Refused> {
        self.forget_expired(now);
        let digest: [u8; 32] = Sha256::new()
            .chain_update(access_key_id.as_bytes())
            .chain_update([0])
            .chain_update(signature.as_bytes())
            .finalize()
            .into();
        if self.seen.contains_key(&digest) {
            return Err(Refused::Replayed);
        }
        if self.seen.len() >= self.capacity {
            return Err(Refused::Full);
        }
        self.seen.insert(digest, valid_until);
        self.expiry.push(Reverse((valid_until, digest)));
        Ok(())
    }

    fn forget_expired(&mut self, now: i64) {
        while let Some(Reverse((until, digest))) = self.expiry.peek().copied() {
            if until >= now {
                break;
            }
            self.expiry.pop();
            self.seen.remove(&digest);
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.seen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_is_accepted_once_until_its_window_passes() {
        let mut c = ReplayCache::new(10);
        assert_eq!(c.admit("ASIA1", "sig-a", 1_300, 1_000), Ok(()));
        assert_eq!(
            c.admit("ASIA1", "sig-a", 1_300, 1_200),
            Err(Refused::Replayed)
        );
        // The same signature text under another key is another request.
        assert_eq!(c.admit("ASIA2", "sig-a", 1_300, 1_200), Ok(()));
        assert_eq!(
            c.admit("ASIA1", "sig-a", 1_300, 1_300),
            Err(Refused::Replayed)
        );
        // Past its window the timestamp check refuses it anyway, so it is forgotten.
        assert_eq!(c.admit("ASIA1", "sig-b", 1_700, 1_301), Ok(()));
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn a_full_set_refuses_instead_of_forgetting() {
        let mut c = ReplayCache::new(2);
        assert_eq!(c.admit("K", "1", 2_000, 1_000), Ok(()));
        assert_eq!(c.admit("K", "2", 1_500, 1_000), Ok(()));
        assert_eq!(c.admit("K", "3", 2_000, 1_000), Err(Refused::Full));
        assert_eq!(c.admit("K", "1", 2_000, 1_000), Err(Refused::Replayed));
        // Entries leave in expiry order, not insertion order.
        assert_eq!(c.admit("K", "3", 2_000, 1_501), Ok(()));
        assert_eq!(c.admit("K", "1", 2_000, 1_501), Err(Refused::Replayed));
    }
}
