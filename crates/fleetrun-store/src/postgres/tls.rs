//! TLS to PostgreSQL, with libpq's `sslmode` meanings (ARCHITECTURE.md, "PostgreSQL"):
//!
//! | `sslmode`           | TLS                         | the server's certificate                  |
//! |---------------------|-----------------------------|-------------------------------------------|
//! | `disable`           | never                       | —                                         |
//! | `prefer` (default)  | when the server offers it   | not checked (checked as `verify-ca` when `sslrootcert` is given) |
//! | `require`           | always                      | as `prefer`                               |
//! | `verify-ca`         | always                      | signed by `sslrootcert` (default: the system's roots) |
//! | `verify-full`       | always                      | as `verify-ca`, and issued for the host   |
//!
//! tokio-postgres itself parses only `disable`, `prefer` and `require`; the verifying modes and
//! `sslrootcert` are taken out of the URL here and become the rustls configuration.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use fleetrun_core::CoreError;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

/// How the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verify {
    /// Encryption only: any certificate (libpq's `prefer` and `require`).
    Nothing,
    /// The chain up to a trusted root, whatever name it was issued for.
    Chain,
    /// The chain and the host name.
    Full,
}

/// The TLS settings tokio-postgres does not read, taken out of a database URL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct UrlTls {
    /// `sslmode=verify-ca` or `verify-full`.
    pub(crate) verify: Option<Verify>,
    /// `sslrootcert`: a PEM file of trusted roots; `None`, or the word `system`, means the
    /// operating system's roots.
    pub(crate) root_cert: Option<PathBuf>,
}

/// The connector every connection of a store uses.
#[derive(Clone)]
pub(crate) enum Connector {
    Plain,
    Tls(MakeRustlsConnect),
}

/// One connection outside the pool (administration, tests), with the URL's TLS settings; the
/// task drives it until the client is dropped.
pub(crate) async fn connect_one(
    url: &str,
) -> Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>), CoreError> {
    let (url, extra) = split_tls_settings(url)?;
    let failed = |e: tokio_postgres::Error| CoreError::Store(super::describe(&e));
    let config = tokio_postgres::Config::from_str(&url).map_err(failed)?;
    Ok(match extra.connector(config.get_ssl_mode())? {
        Connector::Plain => {
            let (client, connection) = config
                .connect(tokio_postgres::NoTls)
                .await
                .map_err(failed)?;
            (
                client,
                tokio::spawn(async move {
                    let _ = connection.await;
                }),
            )
        }
        Connector::Tls(tls) => {
            let (client, connection) = config.connect(tls).await.map_err(failed)?;
            (
                client,
                tokio::spawn(async move {
                    let _ = connection.await;
                }),
            )
        }
    })
}

/// Takes the settings tokio-postgres cannot parse out of a database URL: returns the URL it can
/// parse (`verify-ca`/`verify-full` become `require`, `sslrootcert` is removed) and those
/// settings. Key=value connection strings pass through unchanged (tokio-postgres reads their
/// `sslmode`; the verifying modes need the URL form).
pub(crate) fn split_tls_settings(url: &str) -> Result<(String, UrlTls), CoreError> {
    let mut extra = UrlTls::default();
    let is_url = url.starts_with("postgres://") || url.starts_with("postgresql://");
    let Some((base, query)) = url.split_once('?').filter(|_| is_url) else {
        return Ok((url.to_string(), extra));
    };
    let mut kept: Vec<String> = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match (key, percent_decode(value).as_str()) {
            ("sslmode", "verify-ca") => extra.verify = Some(Verify::Chain),
            ("sslmode", "verify-full") => extra.verify = Some(Verify::Full),
            ("sslrootcert", path) => extra.root_cert = Some(PathBuf::from(path)),
            _ => kept.push(pair.to_string()),
        }
    }
    if extra.verify.is_some() {
        kept.retain(|p| !p.starts_with("sslmode="));
        kept.push("sslmode=require".into());
    }
    if kept.is_empty() {
        return Ok((base.to_string(), extra));
    }
    Ok((format!("{base}?{}", kept.join("&")), extra))
}

fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                let (h, l) = (hex(h).unwrap_or(0), hex(l).unwrap_or(0));
                out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl UrlTls {
    /// The connector for `mode` (the URL's `sslmode` as tokio-postgres parsed it) and these
    /// settings; reads `sslrootcert` (or the system's roots) when the certificate is checked.
    pub(crate) fn connector(&self, mode: SslMode) -> Result<Connector, CoreError> {
        if mode == SslMode::Disable {
            return Ok(Connector::Plain);
        }
        // libpq: with a root certificate given, prefer and require check the chain too.
        let verify = match (self.verify, &self.root_cert) {
            (Some(v), _) => v,
            (None, Some(_)) => Verify::Chain,
            (None, None) => Verify::Nothing,
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| CoreError::Store(format!("postgres TLS: {e}")))?;
        let config = match verify {
            Verify::Nothing => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate { provider }))
                .with_no_client_auth(),
            Verify::Chain | Verify::Full => {
                let roots = Arc::new(self.roots()?);
                let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider)
                    .build()
                    .map_err(|e| CoreError::Store(format!("postgres TLS roots: {e}")))?;
                if verify == Verify::Full {
                    builder.with_webpki_verifier(webpki).with_no_client_auth()
                } else {
                    builder
                        .dangerous()
                        .with_custom_certificate_verifier(Arc::new(AnyName(webpki)))
                        .with_no_client_auth()
                }
            }
        };
        Ok(Connector::Tls(MakeRustlsConnect::new(config)))
    }

    fn roots(&self) -> Result<RootCertStore, CoreError> {
        let mut roots = RootCertStore::empty();
        let fail = |what: String| CoreError::Store(format!("postgres TLS: {what}"));
        match self.root_cert.as_deref() {
            Some(path) if path.as_os_str() != "system" => {
                let pem = std::fs::read(path)
                    .map_err(|e| fail(format!("reading sslrootcert {}: {e}", path.display())))?;
                for cert in rustls_pemfile_certs(&pem) {
                    roots
                        .add(cert)
                        .map_err(|e| fail(format!("sslrootcert {}: {e}", path.display())))?;
                }
                if roots.is_empty() {
                    return Err(fail(format!(
                        "sslrootcert {} holds no PEM certificate",
                        path.display()
                    )));
                }
            }
            _ => {
                let found = rustls_native_certs::load_native_certs();
                for cert in found.certs {
                    // A system store may hold certificates rustls cannot use; skip them.
                    let _ = roots.add(cert);
                }
                if roots.is_empty() {
                    return Err(fail(
                        "no system root certificates found; name a file with sslrootcert=".into(),
                    ));
                }
            }
        }
        Ok(roots)
    }
}

/// The certificates of a PEM file.
fn rustls_pemfile_certs(pem: &[u8]) -> Vec<CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem)
        .filter_map(Result::ok)
        .collect()
}

/// `prefer`/`require` without a root: the handshake's signatures are checked (the server holds
/// the key of the certificate it sent), the certificate itself is not — encryption against a
/// passive listener, as libpq gives in these modes.
#[derive(Debug)]
struct AnyCertificate {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// `verify-ca`: the chain must lead to a trusted root; the name it was issued for is not checked.
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifying_modes_and_root_certificates_are_taken_out_of_the_url() {
        let (url, tls) = split_tls_settings(
            "postgres://u@db.example:5432/fleetrun?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&application_name=x",
        )
        .expect("parse");
        assert_eq!(
            url,
            "postgres://u@db.example:5432/fleetrun?application_name=x&sslmode=require"
        );
        assert_eq!(tls.verify, Some(Verify::Full));
        assert_eq!(tls.root_cert, Some(PathBuf::from("/etc/ca.pem")));

        let (url, tls) = split_tls_settings("postgres://u@h/db?sslmode=verify-ca").expect("parse");
        assert_eq!(url, "postgres://u@h/db?sslmode=require");
        assert_eq!(tls.verify, Some(Verify::Chain));

        // What tokio-postgres parses itself is left to it.
        for plain in [
            "postgres://u@h/db",
            "postgres://u@h/db?sslmode=disable",
            "postgres://u@h/db?sslmode=require&connect_timeout=3",
            "host=h user=u sslmode=require",
        ] {
            let (url, tls) = split_tls_settings(plain).expect("parse");
            assert_eq!((url.as_str(), tls), (plain, UrlTls::default()));
        }
        let (url, tls) = split_tls_settings("postgres://u@h/db?sslrootcert=ca.pem").expect("p");
        assert_eq!(url, "postgres://u@h/db");
        assert_eq!(tls.root_cert, Some(PathBuf::from("ca.pem")));
    }

    #[test]
    fn disable_is_plain_and_a_missing_root_file_is_an_error() {
        let plain = UrlTls::default()
            .connector(SslMode::Disable)
            .expect("plain");
        assert!(matches!(plain, Connector::Plain));
        let tls = UrlTls::default().connector(SslMode::Prefer).expect("tls");
        assert!(matches!(tls, Connector::Tls(_)));
        let missing = UrlTls {
            verify: Some(Verify::Full),
            root_cert: Some(PathBuf::from("/nonexistent/ca.pem")),
        };
        let Err(CoreError::Store(text)) = missing.connector(SslMode::Require) else {
            panic!("a missing sslrootcert must fail");
        };
        assert!(text.contains("/nonexistent/ca.pem"), "{text}");
    }
}
