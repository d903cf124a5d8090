//! TLS for the server's listener: which mode a listen address gets ([`decide`]), loading an
//! operator's PEM certificate and key, generating (once) and reusing the self-signed certificate in
//! `<data-dir>/tls/`, the SHA-256 fingerprint agents pin, and the [`TlsAcceptor`] handed to
//! `Server::serve_tls`. rustls runs with the ring provider, named explicitly, so no other provider
//! compiled into a test build can be picked up by accident.
//!
//! ```text
//! <data-dir>/tls/            0700
//! <data-dir>/tls/cert.pem    the generated certificate (also the CA bundle clients trust)
//! <data-dir>/tls/key.pem     its private key, 0600
//! ```

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
pub use tokio_rustls::TlsAcceptor;

/// The folder of the data dir that holds the generated certificate and key.
pub const TLS_DIR: &str = "tls";
const CERT_FILE: &str = "cert.pem";
const KEY_FILE: &str = "key.pem";
/// How long a generated certificate is valid. Agents pin it or trust it as its own CA, so there is
/// no chain to renew; ten years keeps clients that check validity periods content.
const GENERATED_VALIDITY_DAYS: i64 = 3650;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {detail}")]
    Pem { path: PathBuf, detail: String },
    #[error("the certificate {cert} and key {key} cannot be used together")]
    Rejected {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("generating a self-signed certificate for {names:?}")]
    Generate {
        names: Vec<String>,
        #[source]
        source: rcgen::Error,
    },
    #[error("writing {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What the listener speaks, decided from the address and the operator's flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain HTTP: a loopback address without a certificate, or `--insecure-http`.
    Plain,
    /// The operator's certificate chain and key (PEM files).
    Provided { cert: PathBuf, key: PathBuf },
    /// A self-signed certificate in `<data-dir>/tls/`, generated on first start, reused after.
    SelfSigned,
}

/// The mode for `listen`: the operator's certificate when given; otherwise plain HTTP on loopback
/// (only this machine can connect) or with `insecure_http`, and a self-signed certificate on
/// every other address, so nothing crosses a network in the clear unless asked for by name.
/// (`--tls-cert` with `--insecure-http` is refused by the flag parser.)
pub fn decide(
    listen: SocketAddr,
    cert_and_key: Option<(PathBuf, PathBuf)>,
    insecure_http: bool,
) -> TlsMode {
    match cert_and_key {
        Some((cert, key)) => TlsMode::Provided { cert, key },
        None if insecure_http || is_loopback(listen.ip()) => TlsMode::Plain,
        None => TlsMode::SelfSigned,
    }
}

/// True for 127.0.0.0/8, ::1 and their IPv4-mapped forms; false for the unspecified address.
pub fn is_loopback(ip: IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

/// A ready TLS setup: the acceptor and what the banner and log say about it.
#[derive(Clone)]
pub struct ServerTls {
    pub acceptor: TlsAcceptor,
    /// SHA-256 of the leaf certificate's DER, `AB:CD:…` (what `--server-fingerprint` takes).
    pub fingerprint: String,
    /// The leaf certificate's file (for a generated one: the CA bundle clients trust).
    pub cert_path: PathBuf,
    /// True when this start generated the certificate (false: loaded, provided or reused).
    pub generated_now: bool,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("fingerprint", &self.fingerprint)
            .field("cert_path", &self.cert_path)
            .field("generated_now", &self.generated_now)
            .finish()
    }
}

/// Builds the TLS setup for `mode` (`None` for [`TlsMode::Plain`]). `listen` names the
/// certificate's addresses when one is generated.
pub fn configure(
    mode: &TlsMode,
    data_dir: &Path,
    listen: SocketAddr,
) -> Result<Option<ServerTls>, TlsError> {
    match mode {
        TlsMode::Plain => Ok(None),
        TlsMode::Provided { cert, key } => load(cert, key, false).map(Some),
        TlsMode::SelfSigned => self_signed(data_dir, &certificate_names(listen)).map(Some),
    }
}

/// Loads a PEM certificate chain (leaf first) and its PEM private key (PKCS#8, PKCS#1 or SEC1).
pub fn load(cert: &Path, key: &Path, generated_now: bool) -> Result<ServerTls, TlsError> {
    let chain = read_chain(cert)?;
    let private =
        PrivateKeyDer::from_pem_file(key).map_err(|e| pem_error(key, e, "private key"))?;
    let fingerprint = fingerprint(&chain[0]);
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .and_then(|b| b.with_no_client_auth().with_single_cert(chain, private))
    .map_err(|source| TlsError::Rejected {
        cert: cert.to_owned(),
        key: key.to_owned(),
        source,
    })?;
    // The API and the agent endpoints speak HTTP/1.1 only.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(ServerTls {
        acceptor: TlsAcceptor::from(Arc::new(config)),
        fingerprint,
        cert_path: cert.to_owned(),
        generated_now,
    })
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(path, e, "certificate"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e, "certificate"))?;
    if chain.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_owned(),
            detail: "no PEM certificate (-----BEGIN CERTIFICATE-----) found".into(),
        });
    }
    Ok(chain)
}

fn pem_error(path: &Path, e: rustls::pki_types::pem::Error, what: &str) -> TlsError {
    use rustls::pki_types::pem::Error as E;
    match e {
        E::Io(source) => TlsError::Read {
            path: path.to_owned(),
            source,
        },
        E::NoItemsFound => TlsError::Pem {
            path: path.to_owned(),
            detail: format!("no PEM {what} found"),
        },
        other => TlsError::Pem {
            path: path.to_owned(),
            detail: format!("not a usable PEM {what}: {other:?}"),
        },
    }
}

/// The SHA-256 of a certificate's DER as colon-separated upper-case hex pairs (as
/// `openssl x509 -noout -fingerprint -sha256` prints it).
pub fn fingerprint(der: &[u8]) -> String {
    let digest = Sha256::digest(der);
    let pairs: Vec<String> = digest.iter().map(|b| format!("{b:02X}")).collect();
    pairs.join(":")
}

/// The names a generated certificate carries: the listen IP (every interface address when
/// listening on all of them), `localhost`, 127.0.0.1, ::1 and the host name.
pub fn certificate_names(listen: SocketAddr) -> Vec<String> {
    let mut ips: Vec<IpAddr> = Vec::new();
    if listen.ip().is_unspecified() {
        ips.extend(interface_addresses(listen.is_ipv6()));
    } else {
        ips.push(listen.ip().to_canonical());
    }
    ips.push(IpAddr::V4(Ipv4Addr::LOCALHOST));
    ips.push(IpAddr::V6(Ipv6Addr::LOCALHOST));
    let mut names: Vec<String> = Vec::new();
    let mut push = |n: String| {
        if !names.contains(&n) {
            names.push(n);
        }
    };
    push("localhost".into());
    if let Some(host) = hostname() {
        push(host);
    }
    for ip in ips {
        push(ip.to_string());
    }
    names
}

/// Addresses of this machine's interfaces (IPv4 always, IPv6 too when `v6`), unicast and not
/// link-local: a certificate for `0.0.0.0` must name whatever address a second machine dials.
fn interface_addresses(v6: bool) -> Vec<IpAddr> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for a in addrs {
        let Some(addr) = a.address else { continue };
        let ip = if let Some(v4) = addr.as_sockaddr_in() {
            IpAddr::V4(v4.ip())
        } else if let Some(v6_addr) = addr.as_sockaddr_in6().filter(|_| v6) {
            let ip = v6_addr.ip();
            // fe80::/10: reachable only with a zone id, never usable in a URL's host name.
            if ip.segments()[0] & 0xffc0 == 0xfe80 {
                continue;
            }
            IpAddr::V6(ip)
        } else {
            continue;
        };
        if !ip.is_unspecified() && !out.contains(&ip) {
            out.push(ip);
        }
    }
    out
}

/// The host name, when it is also a valid DNS name (a certificate cannot name anything else).
fn hostname() -> Option<String> {
    let name = nix::unistd::gethostname().ok()?.into_string().ok()?;
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    valid.then_some(name)
}

/// Loads `<data-dir>/tls/cert.pem` + `key.pem`, or, when either is missing, generates a
/// self-signed certificate for `names` and writes them (dir 0700, key 0600). An existing pair is
/// reused as is (its fingerprint stays what agents pinned); an unusable one is an error, never
/// silently replaced — delete the folder to get a new certificate.
pub fn self_signed(data_dir: &Path, names: &[String]) -> Result<ServerTls, TlsError> {
    let dir = data_dir.join(TLS_DIR);
    let cert = dir.join(CERT_FILE);
    let key = dir.join(KEY_FILE);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|source| TlsError::Write {
            path: dir.clone(),
            source,
        })?;
    // Also when the folder already existed: the key must stay private whatever the umask was.
    let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
    if cert.exists() && key.exists() {
        let _ = std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600));
        return load(&cert, &key, false);
    }
    let generated = generate(names)?;
    // Key first: a pair is only taken as present when both exist, and the cert is written last.
    write_private(&key, generated.key_pem.as_bytes())?;
    write_private(&cert, generated.cert_pem.as_bytes())?;
    let _ = std::fs::set_permissions(&cert, std::fs::Permissions::from_mode(0o644));
    load(&cert, &key, true)
}

struct Generated {
    cert_pem: String,
    key_pem: String,
}

/// A self-signed leaf (not a CA: rustls refuses a CA certificate as the server's own) with an
/// ECDSA P-256 key, the given names as subject alternative names, valid from a day ago.
fn generate(names: &[String]) -> Result<Generated, TlsError> {
    let fail = |source| TlsError::Generate {
        names: names.to_vec(),
        source,
    };
    let mut params = rcgen::CertificateParams::new(names.to_vec()).map_err(fail)?;
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::OrganizationName, "fleetrun");
    dn.push(
        rcgen::DnType::CommonName,
        format!(
            "fleetrun server {}",
            names.get(1).map_or("", String::as_str)
        ),
    );
    params.distinguished_name = dn;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(GENERATED_VALIDITY_DAYS);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let key_pair = rcgen::KeyPair::generate().map_err(fail)?;
    let cert = params.self_signed(&key_pair).map_err(fail)?;
    Ok(Generated {
        cert_pem: cert.pem(),
        key_pem: key_pair.serialize_pem(),
    })
}

/// Writes `bytes` to `path` through a temporary file created 0600, fsynced, then renamed.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    let tmp = path.with_extension("pem.tmp");
    let err = |source| TlsError::Write {
        path: path.to_owned(),
        source,
    };
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_stays_plain_and_other_addresses_get_tls() {
        let at = |s: &str| s.parse::<SocketAddr>().expect("test value");
        assert_eq!(decide(at("127.0.0.1:1"), None, false), TlsMode::Plain);
        assert_eq!(decide(at("127.0.0.2:1"), None, false), TlsMode::Plain);
        assert_eq!(decide(at("[::1]:1"), None, false), TlsMode::Plain);
        assert_eq!(
            decide(at("[::ffff:127.0.0.1]:1"), None, false),
            TlsMode::Plain
        );
        assert_eq!(decide(at("0.0.0.0:1"), None, false), TlsMode::SelfSigned);
        assert_eq!(decide(at("[::]:1"), None, false), TlsMode::SelfSigned);
        assert_eq!(
            decide(at("192.168.1.5:1"), None, false),
            TlsMode::SelfSigned
        );
        assert_eq!(decide(at("0.0.0.0:1"), None, true), TlsMode::Plain);
        let pair = Some((PathBuf::from("c"), PathBuf::from("k")));
        assert_eq!(
            decide(at("127.0.0.1:1"), pair.clone(), false),
            TlsMode::Provided {
                cert: "c".into(),
                key: "k".into()
            }
        );
    }

    #[test]
    fn names_cover_the_listen_ip_localhost_and_loopback() {
        let names = certificate_names("192.0.2.7:8089".parse().expect("test value"));
        for n in ["192.0.2.7", "localhost", "127.0.0.1", "::1"] {
            assert!(names.contains(&n.to_string()), "{n} missing from {names:?}");
        }
        let all = certificate_names("0.0.0.0:8089".parse().expect("test value"));
        assert!(!all.contains(&"0.0.0.0".to_string()), "{all:?}");
        assert!(all.contains(&"127.0.0.1".to_string()), "{all:?}");
    }

    #[test]
    fn generated_certificate_is_private_reused_and_fingerprinted() {
        let dir = tempfile::tempdir().expect("test value");
        let names = certificate_names("192.0.2.7:8089".parse().expect("test value"));
        let first = self_signed(dir.path(), &names).expect("test value");
        assert!(first.generated_now);
        let mode = |p: &Path| {
            std::fs::metadata(p)
                .expect("test value")
                .permissions()
                .mode()
                & 0o777
        };
        let tls = dir.path().join(TLS_DIR);
        assert_eq!(mode(&tls), 0o700);
        assert_eq!(mode(&tls.join(KEY_FILE)), 0o600);
        let again = self_signed(dir.path(), &names).expect("test value");
        assert!(!again.generated_now);
        assert_eq!(first.fingerprint, again.fingerprint);
        let der = CertificateDer::from_pem_file(tls.join(CERT_FILE)).expect("test value");
        assert_eq!(fingerprint(&der), first.fingerprint);
        assert_eq!(first.fingerprint.len(), 32 * 3 - 1);
    }

    #[test]
    fn a_key_that_does_not_match_the_certificate_is_refused() {
        let a = tempfile::tempdir().expect("test value");
        let b = tempfile::tempdir().expect("test value");
        let names = vec!["localhost".to_string()];
        self_signed(a.path(), &names).expect("test value");
        self_signed(b.path(), &names).expect("test value");
        let err = load(
            &a.path().join(TLS_DIR).join(CERT_FILE),
            &b.path().join(TLS_DIR).join(KEY_FILE),
            false,
        )
        .expect_err("must fail");
        assert!(matches!(err, TlsError::Rejected { .. }), "{err:?}");
        let missing = load(
            Path::new("/nonexistent/c.pem"),
            Path::new("/nonexistent/k.pem"),
            false,
        );
        assert!(matches!(missing, Err(TlsError::Read { .. })), "{missing:?}");
    }
}
