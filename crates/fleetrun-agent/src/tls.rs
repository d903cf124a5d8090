//! Whom the agent trusts when it talks to an `https://` server: the rustls client configuration
//! handed to reqwest. Trust comes from, in this order: `--ca-cert FILE` (PEM certificates; the
//! server's name is checked against them as usual), `--server-fingerprint SHA256` (the server's
//! leaf certificate is pinned by the SHA-256 of its DER; names and dates are not checked, the
//! handshake signatures are), else the system's CA store. Both flags together: the chain must
//! verify against the CA *and* the leaf must match the pin. A certificate from an unknown issuer
//! (typically the server's self-signed one, reached without either flag) fails with an error
//! that names both flags and the certificate's fingerprint.
//!
//! The system store is read through `rustls-native-certs` rather than compiled in (webpki-roots):
//! it follows the machine's own trust decisions (an internal CA installed by the operator,
//! `SSL_CERT_FILE`), keeps ~250 KB of certificates out of the binary and is read only when needed.
//! The crypto provider is ring, named explicitly.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::AgentError;

/// A SHA-256 certificate fingerprint: 32 bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// Parses 64 hex digits, upper or lower case, with or without `:` between the pairs
    /// (`openssl x509 -fingerprint -sha256` output and the server's banner both fit).
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let hex: Vec<u8> = text.bytes().filter(|b| *b != b':').collect();
        if hex.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, pair) in hex.chunks(2).enumerate() {
            let digit = |b: u8| (b as char).to_digit(16);
            out[i] = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
        }
        Some(Self(out))
    }

    /// The SHA-256 of a certificate's DER.
    pub fn of(der: &[u8]) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, der);
        let mut out = [0u8; 32];
        out.copy_from_slice(digest.as_ref());
        Self(out)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The client configuration for a server at `scheme` (`http` or `https`). Trust settings with a
/// plain-HTTP URL are refused: the operator asked for a verified server and would silently get none.
pub(crate) fn client_config(
    scheme: &str,
    ca_cert: Option<&Path>,
    fingerprint: Option<&str>,
) -> Result<ClientConfig, AgentError> {
    if scheme != "https" && (ca_cert.is_some() || fingerprint.is_some()) {
        return Err(AgentError::Config(
            "--ca-cert and --server-fingerprint need an https:// server URL".into(),
        ));
    }
    let pin = fingerprint
        .map(|text| {
            Fingerprint::parse(text).ok_or_else(|| {
                AgentError::Config(format!(
                    "server fingerprint {text:?}: expected the SHA-256 as 64 hex digits (colons optional)"
                ))
            })
        })
        .transpose()?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| AgentError::Config(format!("TLS: {e}")))?;
    if scheme != "https" {
        // Plain HTTP: the configuration is never used for a handshake.
        return Ok(builder
            .with_root_certificates(RootCertStore::empty())
            .with_no_client_auth());
    }
    let webpki = |roots: RootCertStore| {
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| AgentError::Config(format!("TLS: {e}")))
    };
    let verifier: Arc<dyn ServerCertVerifier> = match pin {
        Some(pin) => Arc::new(PinnedServer {
            pin,
            chain: ca_cert.map(ca_roots).transpose()?.map(webpki).transpose()?,
            algorithms: provider.signature_verification_algorithms,
        }),
        None => {
            let roots = match ca_cert {
                Some(path) => ca_roots(path)?,
                None => system_roots()?,
            };
            Arc::new(HintOnUnknownIssuer {
                chain: webpki(roots)?,
                from_file: ca_cert.is_some(),
            })
        }
    };
    let config = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(config)
}

/// Every certificate in the PEM file `path`.
fn ca_roots(path: &Path) -> Result<RootCertStore, AgentError> {
    let bad =
        |detail: String| AgentError::Config(format!("CA certificate {}: {detail}", path.display()));
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(pem_detail(e)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(pem_detail(e)))?;
    if certs.is_empty() {
        return Err(bad(
            "no PEM certificate (-----BEGIN CERTIFICATE-----) found".into(),
        ));
    }
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| bad(format!("not a usable certificate: {e}")))?;
    }
    Ok(roots)
}

fn pem_detail(e: rustls::pki_types::pem::Error) -> String {
    match e {
        rustls::pki_types::pem::Error::Io(io) => io.to_string(),
        other => format!("{other:?}"),
    }
}

/// The system's CA certificates; unreadable ones are skipped (as the system's own TLS does).
fn system_roots() -> Result<RootCertStore, AgentError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err(AgentError::Config(
            "no CA certificates found on this system to verify the https:// server; \
             pass --ca-cert FILE or --server-fingerprint SHA256"
                .into(),
        ));
    }
    Ok(roots)
}

/// The usual chain verification; only an unknown issuer (typically the server's self-signed
/// certificate) gets an error that says what to pass instead.
#[derive(Debug)]
struct HintOnUnknownIssuer {
    chain: Arc<WebPkiServerVerifier>,
    /// True when the roots came from `--ca-cert`, false for the system's store.
    from_file: bool,
}

/// The error [`HintOnUnknownIssuer`] gives.
struct UntrustedIssuer {
    presented: Fingerprint,
    from_file: bool,
}

impl fmt::Display for UntrustedIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let trusted = if self.from_file {
            "the --ca-cert file"
        } else {
            "this machine's CA store"
        };
        write!(
            f,
            "the server's certificate (SHA-256 fingerprint {}) is not issued by a CA in {trusted}; \
             pass --ca-cert with the server's <data-dir>/tls/cert.pem, or --server-fingerprint \
             with the fingerprint its banner prints (after checking it is this one)",
            self.presented
        )
    }
}

impl fmt::Debug for UntrustedIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for UntrustedIssuer {}

impl ServerCertVerifier for HintOnUnknownIssuer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.chain
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            .map_err(|e| match e {
                rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer) => {
                    rustls::Error::InvalidCertificate(rustls::CertificateError::Other(
                        rustls::OtherError(Arc::new(UntrustedIssuer {
                            presented: Fingerprint::of(end_entity.as_ref()),
                            from_file: self.from_file,
                        })),
                    ))
                }
                other => other,
            })
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.chain.supported_verify_schemes()
    }
}

/// Accepts the server's certificate when the SHA-256 of its leaf is the pinned one (and, with a CA
/// given too, its chain verifies). The handshake signatures are verified as always, so only the
/// holder of the pinned certificate's key can complete a handshake.
#[derive(Debug)]
struct PinnedServer {
    pin: Fingerprint,
    chain: Option<Arc<WebPkiServerVerifier>>,
    algorithms: WebPkiSupportedAlgorithms,
}

/// Why a pinned server's certificate was refused (shown in the agent's connection error).
struct PinMismatch {
    presented: Fingerprint,
    pinned: Fingerprint,
}

impl fmt::Display for PinMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the server's certificate has SHA-256 fingerprint {}, not the pinned {} (--server-fingerprint)",
            self.presented, self.pinned
        )
    }
}

// rustls prints the cause of an `InvalidCertificate` with `{:?}`: make that the readable text.
impl fmt::Debug for PinMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for PinMismatch {}

impl ServerCertVerifier for PinnedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(chain) = &self.chain {
            chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)?;
        }
        let presented = Fingerprint::of(end_entity.as_ref());
        if presented != self.pin {
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Other(rustls::OtherError(Arc::new(PinMismatch {
                    presented,
                    pinned: self.pin,
                }))),
            ));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_parse_with_or_without_colons_in_any_case() {
        let hex = "ab".repeat(32);
        let colons = vec!["AB"; 32].join(":");
        let a = Fingerprint::parse(&hex).expect("test value");
        assert_eq!(Fingerprint::parse(&colons), Some(a));
        assert_eq!(Fingerprint::parse(&format!(" {colons}\n")), Some(a));
        assert_eq!(a.to_string(), colons);
        assert_eq!(Fingerprint::parse(&"ab".repeat(31)), None);
        assert_eq!(Fingerprint::parse(&"zz".repeat(32)), None);
        // SHA-256("") — the well-known empty digest.
        assert_eq!(
            Fingerprint::of(b""),
            Fingerprint::parse("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
                .expect("test value")
        );
    }

    #[test]
    fn trust_flags_need_https_and_a_valid_pin() {
        let pin = "ab".repeat(32);
        assert!(matches!(
            client_config("http", None, Some(&pin)),
            Err(AgentError::Config(_))
        ));
        assert!(matches!(
            client_config("https", None, Some("nope")),
            Err(AgentError::Config(_))
        ));
        assert!(client_config("https", None, Some(&pin)).is_ok());
        assert!(client_config("http", None, None).is_ok());
        let missing = client_config("https", Some(Path::new("/nonexistent/ca.pem")), None);
        assert!(matches!(missing, Err(AgentError::Config(m)) if m.contains("/nonexistent/ca.pem")));
    }
}
