//! NextToken: `TokenKey::decode` (every paged operation, ListDocuments included, goes through
//! it) on arbitrary scopes and tokens, plus the round trip: whatever decodes re-encodes to a token
//! that decodes to the same position, and an encoded position always decodes back.
//!
//! Input: `<scope>\n<token>`.
#![no_main]

use fleetrun_core::query::PageKey;
use fleetrun_server::token::TokenKey;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = TokenKey::new(b"fuzz token key: 32 bytes or more!!".to_vec());
    let (scope, token) = fleetrun_fuzz::split_line(data);
    let scope = String::from_utf8_lossy(scope);
    let token = String::from_utf8_lossy(token);
    if let Some(page) = key.decode(&scope, &token) {
        let again = key.encode(&scope, &page);
        assert_eq!(key.decode(&scope, &again).as_ref(), Some(&page));
    }
    // A position built from the input (as a store might hand out) survives the round trip.
    let mut n = [0u8; 16];
    for (i, b) in token.bytes().take(16).enumerate() {
        n[i] = b;
    }
    let (a, b) = n.split_at(8);
    let page = PageKey {
        requested_at: i64::from_le_bytes(a.try_into().unwrap_or_default()),
        seq: i64::from_le_bytes(b.try_into().unwrap_or_default()),
        // Stored node ids are never empty (an empty one is "no node id" in the token).
        instance_id: Some(token.to_string()).filter(|s| !s.is_empty()),
    };
    let issued = key.encode(&scope, &page);
    assert_eq!(key.decode(&scope, &issued), Some(page));
    assert_eq!(
        key.decode(&format!("{scope}x"), &issued),
        None,
        "token bound to its scope"
    );
});
