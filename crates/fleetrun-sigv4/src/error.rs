//! [`AuthError`]: every way a request can fail SigV4 verification, as data.
//!
//! The variants carry what AWS puts into its messages (the offending token, the header value, the
//! preformatted timestamps) but not the sentences themselves: the server spells AWS's codes and
//! message texts in one place (its `error.rs`), this crate only says what went wrong. The `Display`
//! texts below are short developer-facing summaries for logs, not AWS wording.

use thiserror::Error;

/// A part the `Authorization` header (or the request) must carry, reported missing by
/// [`AuthError::MissingParts`]. Listed in the order AWS prints its sentences.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingPart {
    /// `Credential=` absent or empty.
    Credential,
    /// `Signature=` absent or empty.
    Signature,
    /// `SignedHeaders=` absent or empty.
    SignedHeaders,
    /// Neither an `X-Amz-Date` nor a `Date` header.
    DateHeader,
}

/// Why a request did not authenticate. Grouped by the AWS code the server is expected to map them
/// to (see `security-facts.md` §1), but nothing here depends on that mapping.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AuthError {
    // --- presence (MissingAuthenticationTokenException) ---
    /// No `Authorization` header and no `X-Amz-Algorithm` query parameter.
    #[error("no Authorization header and no X-Amz-Algorithm query parameter")]
    MissingAuthentication,
    /// Presigned (query-string) authentication only; this crate verifies header auth only.
    #[error("query-string (presigned) authentication is not supported")]
    PresignedNotSupported,
    /// Both an `Authorization` header and an `X-Amz-Algorithm` query parameter.
    #[error("both an Authorization header and query-string authentication")]
    HeaderAndQueryAuth,

    // --- parse (IncompleteSignatureException) ---
    /// More than one `Authorization` header.
    #[error("{count} Authorization headers")]
    DuplicateAuthorization { count: usize },
    /// A header this crate must read as text is not UTF-8 (the Authorization header, the date
    /// header, the session token, or a signed header: hashing a lossy copy would let bytes be
    /// swapped unseen).
    #[error("header {name} is not valid UTF-8")]
    NonUtf8Header { name: String },
    /// A component after the algorithm has no `=`.
    #[error("{token:?} is not a key=value pair in {header:?}")]
    NotKeyValuePair { token: String, header: String },
    /// The same component (`Credential`, `SignedHeaders`, `Signature`) given twice.
    #[error("{name} given more than once in {header:?}")]
    DuplicateComponent { name: String, header: String },
    /// The algorithm is not `AWS4-HMAC-SHA256`.
    #[error("unsupported algorithm {algorithm:?}")]
    UnsupportedAlgorithm { algorithm: String },
    /// One or more required parts missing; `missing` is in AWS's sentence order.
    #[error("missing {missing:?} in {header:?}")]
    MissingParts {
        missing: Vec<MissingPart>,
        header: String,
    },
    /// `Credential=` is not `keyid/date/region/service/terminator`.
    #[error("credential {value:?} does not have 5 slash-delimited parts")]
    CredentialParts { value: String },
    /// The `X-Amz-Date` (or `Date`) value is not a timestamp we accept.
    #[error("bad date {value:?}")]
    BadDateFormat { value: String },
    /// `SignedHeaders` is not lower-case, `;`-separated, sorted and free of duplicates.
    #[error("SignedHeaders {value:?} is not sorted, lower-case and duplicate-free")]
    SignedHeadersNotCanonical { value: String },
    /// `host` is not among the signed headers.
    #[error("host is not a signed header")]
    HostNotSigned,
    /// The date header used for the timestamp (`x-amz-date` or `date`) is not signed.
    #[error("date header {name} is not signed")]
    DateNotSigned { name: String },
    /// A name in `SignedHeaders` has no header in the request.
    #[error("signed header {name} is absent from the request")]
    SignedHeaderAbsent { name: String },
    /// `Signature=` is not 64 hexadecimal digits (checked by [`crate::verify_signature`], so that
    /// callers verifying an asymmetric signature over the same string to sign can use `parse`).
    #[error("signature {value:?} is not 64 hex digits")]
    MalformedSignature { value: String },

    // --- scope (InvalidSignatureException) ---
    /// The credential scope names another region; carries the client's region.
    #[error("credential scoped to region {region:?}")]
    WrongRegion { region: String },
    /// The credential scope names another service; carries the service expected.
    #[error("credential not scoped to service {expected:?}")]
    WrongService { expected: String },
    /// The scope date is not the first 8 characters of the request timestamp.
    #[error("scope date {scope:?} != {date:?} from {timestamp:?}")]
    ScopeDateMismatch {
        scope: String,
        date: String,
        timestamp: String,
    },
    /// The scope terminator is not `aws4_request`.
    #[error("credential scope terminator {terminator:?}")]
    BadTerminator { terminator: String },

    // --- clock (InvalidSignatureException) --- all timestamps `YYYYMMDDTHHMMSSZ`
    /// The request timestamp is earlier than `now - window`.
    #[error(
        "signature expired: {timestamp} is earlier than {earliest} ({now} - {window_mins} min.)"
    )]
    Expired {
        timestamp: String,
        earliest: String,
        now: String,
        window_mins: i64,
    },
    /// The request timestamp is later than `now + window`.
    #[error("signature not yet current: {timestamp} is later than {latest} ({now} + {window_mins} min.)")]
    NotYetCurrent {
        timestamp: String,
        latest: String,
        now: String,
        window_mins: i64,
    },

    // --- signature (InvalidSignatureException) ---
    /// The HMAC does not match.
    #[error("signature does not match")]
    SignatureMismatch,
}
