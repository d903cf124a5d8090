//! Step 1 of verification: is there authentication at all, does the `Authorization` header parse,
//! which timestamp does the request carry, and what canonical request and string to sign follow
//! from exactly the client's `SignedHeaders` (security-facts §3.1, §3.6 pitfalls 1, 2, 3, 6, 10).
//!
//! Total over arbitrary input: header values are bytes, every slice is of ASCII-checked bytes or
//! comes from `split`, and nothing here indexes into client text by position.

use crate::canonical::{self, ALGORITHM};
use crate::error::{AuthError, MissingPart};
use crate::timestamp;
use crate::{Authorization, HttpRequest, SignedRequest};

const WS: [char; 2] = [' ', '\t'];

/// Parses and canonicalises a request; see [`crate::parse`].
pub(crate) fn parse(req: &HttpRequest) -> Result<SignedRequest, AuthError> {
    let auth_values: Vec<&[u8]> = req
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("authorization"))
        .map(|(_, v)| *v)
        .collect();
    let query_auth = query_has(req.query, "X-Amz-Algorithm");
    let value = match (auth_values.as_slice(), query_auth) {
        ([], false) => return Err(AuthError::MissingAuthentication),
        ([], true) => return Err(AuthError::PresignedNotSupported),
        (_, true) => return Err(AuthError::HeaderAndQueryAuth),
        ([one], false) => *one,
        (many, false) => {
            return Err(AuthError::DuplicateAuthorization { count: many.len() });
        }
    };
    let value = utf8(value, "authorization")?;
    if value.trim_matches(WS).is_empty() {
        // An empty header is no authentication, not a malformed one.
        return Err(AuthError::MissingAuthentication);
    }

    let (date_name, date_value) = match canonical::header_value(req.headers, "x-amz-date") {
        Some(v) => ("x-amz-date", Some(v)),
        None => ("date", canonical::header_value(req.headers, "date")),
    };
    let auth = parse_value(value, date_value.is_some())?;
    let Some(date_value) = date_value else {
        // parse_value reports a missing date header, so this is unreachable; stay total anyway.
        return Err(missing(vec![MissingPart::DateHeader], value));
    };
    let date_text = String::from_utf8(date_value).map_err(|_| AuthError::NonUtf8Header {
        name: date_name.to_owned(),
    })?;
    let parsed = match date_name {
        "x-amz-date" => timestamp::parse_basic(&date_text),
        _ => timestamp::parse_basic(&date_text).or_else(|| timestamp::parse_rfc1123(&date_text)),
    };
    let Some(timestamp_unix) = parsed else {
        return Err(AuthError::BadDateFormat { value: date_text });
    };
    // The string to sign always carries the basic form, even when the Date header is RFC 1123.
    let timestamp = timestamp::format_basic(timestamp_unix);
    if !auth.signed_headers.iter().any(|h| h == date_name) {
        return Err(AuthError::DateNotSigned {
            name: date_name.to_owned(),
        });
    }

    let mut values: Vec<(&str, Vec<u8>)> = Vec::with_capacity(auth.signed_headers.len());
    for name in &auth.signed_headers {
        let Some(v) = canonical::header_value(req.headers, name) else {
            return Err(AuthError::SignedHeaderAbsent { name: name.clone() });
        };
        if std::str::from_utf8(&v).is_err() {
            return Err(AuthError::NonUtf8Header { name: name.clone() });
        }
        values.push((name, v));
    }
    let session_token = match canonical::header_value(req.headers, "x-amz-security-token") {
        Some(v) => Some(String::from_utf8(v).map_err(|_| AuthError::NonUtf8Header {
            name: "x-amz-security-token".to_owned(),
        })?),
        None => None,
    };

    let headers: Vec<(&str, &[u8])> = values.iter().map(|(n, v)| (*n, v.as_slice())).collect();
    let creq = canonical::canonical_request(
        req.method,
        req.path,
        req.query,
        &headers,
        &auth.signed_headers.join(";"),
        // Always the hash of the raw body: an `x-amz-content-sha256` header (signed or not,
        // `UNSIGNED-PAYLOAD` or a digest) never stands in for it.
        &canonical::sha256_hex(req.body),
    );
    let string_to_sign = canonical::string_to_sign(
        &timestamp,
        &auth.scope_date,
        &auth.region,
        &auth.service,
        &creq,
    );
    // Every part was checked to be UTF-8 above; the error arm keeps this total regardless.
    let canonical_request = String::from_utf8(creq).map_err(|_| AuthError::NonUtf8Header {
        name: "authorization".to_owned(),
    })?;
    Ok(SignedRequest {
        auth,
        timestamp,
        timestamp_unix,
        session_token,
        canonical_request,
        string_to_sign,
    })
}

/// Parses an `Authorization` header value on its own (assuming a date header is present): the
/// fuzzing entry point for the header grammar; [`crate::parse`] runs the same code.
pub fn parse_authorization_header(value: &[u8]) -> Result<Authorization, AuthError> {
    parse_value(utf8(value, "authorization")?, true)
}

fn parse_value(value: &str, has_date: bool) -> Result<Authorization, AuthError> {
    let trimmed = value.trim_matches(WS);
    let (algorithm, rest) = trimmed.split_once(WS).unwrap_or((trimmed, ""));
    let mut credential: Option<&str> = None;
    let mut signed_headers: Option<&str> = None;
    let mut signature: Option<&str> = None;
    // AWS splits on commas and spaces alike: a space inside `Credential=` surfaces as a token
    // without `=` ("not a valid key=value pair"), and it reports that before the algorithm.
    for token in rest.split([',', ' ', '\t']).filter(|t| !t.is_empty()) {
        let Some((key, val)) = token.split_once('=') else {
            return Err(AuthError::NotKeyValuePair {
                token: token.to_owned(),
                header: value.to_owned(),
            });
        };
        let slot = match key {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed_headers,
            "Signature" => &mut signature,
            _ => continue,
        };
        if slot.replace(val).is_some() {
            return Err(AuthError::DuplicateComponent {
                name: key.to_owned(),
                header: value.to_owned(),
            });
        }
    }
    if algorithm != ALGORITHM {
        return Err(AuthError::UnsupportedAlgorithm {
            algorithm: algorithm.to_owned(),
        });
    }
    let (credential, signature, signed_headers) = match (
        present(credential),
        present(signature),
        present(signed_headers),
    ) {
        (Some(c), Some(s), Some(h)) if has_date => (c, s, h),
        (c, s, h) => {
            let mut missing_parts = Vec::new();
            if c.is_none() {
                missing_parts.push(MissingPart::Credential);
            }
            if s.is_none() {
                missing_parts.push(MissingPart::Signature);
            }
            if h.is_none() {
                missing_parts.push(MissingPart::SignedHeaders);
            }
            if !has_date {
                missing_parts.push(MissingPart::DateHeader);
            }
            return Err(missing(missing_parts, value));
        }
    };
    let parts: Vec<&str> = credential.split('/').collect();
    let [access_key_id, scope_date, region, service, terminator] = parts.as_slice() else {
        return Err(AuthError::CredentialParts {
            value: credential.to_owned(),
        });
    };
    let names: Vec<&str> = signed_headers.split(';').collect();
    let canonical = names
        .iter()
        .all(|n| !n.is_empty() && !n.bytes().any(|b| b.is_ascii_uppercase()))
        && names.windows(2).all(|w| w[0] < w[1]);
    if !canonical {
        return Err(AuthError::SignedHeadersNotCanonical {
            value: signed_headers.to_owned(),
        });
    }
    if !names.contains(&"host") {
        return Err(AuthError::HostNotSigned);
    }
    Ok(Authorization {
        access_key_id: (*access_key_id).to_owned(),
        scope_date: (*scope_date).to_owned(),
        region: (*region).to_owned(),
        service: (*service).to_owned(),
        terminator: (*terminator).to_owned(),
        signed_headers: names.into_iter().map(str::to_owned).collect(),
        signature: signature.to_owned(),
    })
}

/// An empty value counts as absent.
fn present(v: Option<&str>) -> Option<&str> {
    v.filter(|v| !v.is_empty())
}

fn missing(missing: Vec<MissingPart>, header: &str) -> AuthError {
    AuthError::MissingParts {
        missing,
        header: header.to_owned(),
    }
}

fn utf8<'a>(value: &'a [u8], name: &str) -> Result<&'a str, AuthError> {
    std::str::from_utf8(value).map_err(|_| AuthError::NonUtf8Header {
        name: name.to_owned(),
    })
}

/// Whether the raw query names `param` (compared case-insensitively after form-decoding: failing
/// closed, since any query-auth marker makes the request refused).
fn query_has(query: &str, param: &str) -> bool {
    query.split('&').any(|pair| {
        let name = pair.split_once('=').map_or(pair, |(n, _)| n);
        name.eq_ignore_ascii_case(param) || decoded_eq(name, param)
    })
}

fn decoded_eq(name: &str, param: &str) -> bool {
    name.contains('%') && {
        // Reuse the canonical encoder's view: decode, re-encode, compare with the plain name.
        let canon = canonical::canonical_query(name);
        let canon = canon.strip_suffix('=').unwrap_or(&canon);
        canon.eq_ignore_ascii_case(param)
    }
}
