//! The HMAC side of SigV4: the signing-key chain (§3.3), the constant-time signature check, and
//! the signer our agent and admin CLI use. The signer canonicalises with the same code as the
//! verifier, and signs every header it is given, so what it produces is what [`crate::parse`]
//! rebuilds.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::canonical::{self, ALGORITHM};
use crate::error::AuthError;
use crate::timestamp::format_basic;
use crate::{Credentials, HttpRequest, SignedRequest};

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC takes keys of any length (longer ones are hashed first): this cannot fail.
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// kSigning for (secret, `YYYYMMDD`, region, service): depends on nothing else, so a server may
/// cache it per access key per day.
pub fn signing_key(secret_access_key: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let k_secret = format!("AWS4{secret_access_key}");
    let k_date = hmac(k_secret.as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    hmac(&k_service, canonical::TERMINATOR.as_bytes())
}

/// The lower-case hex signature of `string_to_sign` under `signing_key`.
pub fn signature_hex(signing_key: &[u8; 32], string_to_sign: &str) -> String {
    hex::encode(hmac(signing_key, string_to_sign.as_bytes()))
}

/// Step 4 with a precomputed (cached) kSigning for the request's scope.
pub fn verify_signature_with_key(
    signed: &SignedRequest,
    signing_key: &[u8; 32],
) -> Result<(), AuthError> {
    let claimed = &signed.auth.signature;
    let mut given = [0u8; 32];
    if claimed.len() != 64 || hex::decode_to_slice(claimed, &mut given).is_err() {
        return Err(AuthError::MalformedSignature {
            value: claimed.clone(),
        });
    }
    let expected = hmac(signing_key, signed.string_to_sign.as_bytes());
    if bool::from(expected.ct_eq(&given)) {
        Ok(())
    } else {
        Err(AuthError::SignatureMismatch)
    }
}

/// Step 4: derive kSigning from the request's own scope (date, region, service: already checked
/// by [`crate::check_scope`]) and compare the HMAC in constant time.
pub fn verify_signature(signed: &SignedRequest, secret_access_key: &str) -> Result<(), AuthError> {
    let a = &signed.auth;
    let key = signing_key(secret_access_key, &a.scope_date, &a.region, &a.service);
    verify_signature_with_key(signed, &key)
}

/// Everything to sign `req` except the signature itself: the headers to add (`x-amz-date`, then
/// `x-amz-security-token` when a token is given), the `SignedHeaders` list, and the string to
/// sign. Signs every header of `req` except `authorization`, and except any `x-amz-date` /
/// `x-amz-security-token` already there (the returned ones replace them). `req.headers` must
/// hold `host`. The access key id is not part of the string to sign; it is taken so that
/// callers pass the same arguments to this and [`authorization_header`].
pub fn string_to_sign_for(
    req: &HttpRequest,
    _access_key_id: &str,
    region: &str,
    service: &str,
    now_unix: i64,
    session_token: Option<&str>,
) -> (Vec<(String, String)>, String, String) {
    let timestamp = format_basic(now_unix);
    let mut added = vec![("x-amz-date".to_owned(), timestamp.clone())];
    if let Some(token) = session_token {
        added.push(("x-amz-security-token".to_owned(), token.to_owned()));
    }
    let replaced = |n: &str| {
        ["authorization", "x-amz-date", "x-amz-security-token"]
            .iter()
            .any(|r| n.eq_ignore_ascii_case(r))
    };
    let mut all: Vec<(&str, &[u8])> = req
        .headers
        .iter()
        .filter(|(n, _)| !replaced(n))
        .copied()
        .collect();
    all.extend(added.iter().map(|(n, v)| (n.as_str(), v.as_bytes())));

    let mut names: Vec<String> = all.iter().map(|(n, _)| n.to_ascii_lowercase()).collect();
    names.sort();
    names.dedup();
    let values: Vec<Vec<u8>> = names
        .iter()
        .map(|n| canonical::header_value(&all, n).unwrap_or_default())
        .collect();
    let headers: Vec<(&str, &[u8])> = names
        .iter()
        .zip(&values)
        .map(|(n, v)| (n.as_str(), v.as_slice()))
        .collect();
    let signed_headers = names.join(";");
    let creq = canonical::canonical_request(
        req.method,
        req.path,
        req.query,
        &headers,
        &signed_headers,
        &canonical::sha256_hex(req.body),
    );
    let date = timestamp.get(..8).unwrap_or_default();
    let sts = canonical::string_to_sign(&timestamp, date, region, service, &creq);
    (added, signed_headers, sts)
}

/// The `Authorization` header value:
/// `AWS4-HMAC-SHA256 Credential=<akid>/<date>/<region>/<service>/aws4_request, SignedHeaders=…, Signature=…`.
pub fn authorization_header(
    access_key_id: &str,
    scope_date: &str,
    region: &str,
    service: &str,
    signed_headers: &str,
    signature: &str,
) -> String {
    format!(
        "{ALGORITHM} Credential={access_key_id}/{scope_date}/{region}/{service}/{}, \
         SignedHeaders={signed_headers}, Signature={signature}",
        canonical::TERMINATOR
    )
}

/// Signs `req` with HMAC-SHA256 and returns the headers to add: `x-amz-date`,
/// `x-amz-security-token` (when `creds` has one) and `authorization`. See [`string_to_sign_for`]
/// for which headers are signed.
pub fn sign(
    req: &HttpRequest,
    creds: &Credentials,
    region: &str,
    service: &str,
    now_unix: i64,
) -> Vec<(String, String)> {
    let (mut headers, signed_headers, sts) = string_to_sign_for(
        req,
        creds.access_key_id,
        region,
        service,
        now_unix,
        creds.session_token,
    );
    // format_basic always yields 16 ASCII characters; the first 8 are the date.
    let stamp = format_basic(now_unix);
    let date = stamp.get(..8).unwrap_or_default();
    let key = signing_key(creds.secret_access_key, date, region, service);
    let signature = signature_hex(&key, &sts);
    headers.push((
        "authorization".to_owned(),
        authorization_header(
            creds.access_key_id,
            date,
            region,
            service,
            &signed_headers,
            &signature,
        ),
    ));
    headers
}
