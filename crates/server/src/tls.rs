//! HTTPS and WSS: the server's certificate, from PEM files or self-signed and kept in the
//! data dir.
//!
//! The handshakes themselves run in [`crate::http`], each on its connection's own task and
//! bounded in time, so a client that sends garbage, speaks plain HTTP to the TLS port or
//! stalls mid-handshake costs only its own connection (and its place in the caps).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use onstage_proto::Fingerprint;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The self-signed certificate and its key, in the data dir.
pub const SELF_SIGNED_CERT_FILE: &str = "tls_cert.pem";
pub const SELF_SIGNED_KEY_FILE: &str = "tls_key.pem";

/// Where the server's certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsConfig {
    /// PEM files: the certificate chain (leaf first) and its private key (PKCS#8, PKCS#1
    /// or SEC1).
    Files { cert: PathBuf, key: PathBuf },
    /// A certificate made at first start for the machine's host name, `localhost` and its
    /// interface addresses, stored in the data dir and reused afterwards. Clients pin it by
    /// its fingerprint, which invite links carry.
    SelfSigned,
}

/// Why TLS could not be set up. Each names the file concerned.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: {what}", path.display())]
    Pem { path: PathBuf, what: String },
    #[error("the certificate {} and key {} do not make a TLS configuration: {source}", cert.display(), key.display())]
    Unusable {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("cannot make a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// TLS, ready to serve.
#[derive(Clone)]
pub struct ServerTls {
    pub(crate) config: Arc<rustls::ServerConfig>,
    /// The leaf certificate's fingerprint.
    pub fingerprint: Fingerprint,
    /// Whether the certificate is the self-signed one (then invite links pin it).
    pub self_signed: bool,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("fingerprint", &self.fingerprint)
            .field("self_signed", &self.self_signed)
            .finish()
    }
}

/// The SHA-256 fingerprint of a DER certificate.
pub fn fingerprint_of(der: &[u8]) -> Fingerprint {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
    let mut bytes = [0u8; 32];
    bytes.copy_from_slice(digest.as_ref());
    Fingerprint::from_sha256(bytes)
}

/// Loads (or for [`TlsConfig::SelfSigned`] loads or makes) the certificate. Blocking file
/// I/O: call it off the async threads.
pub fn load(tls: &TlsConfig, data_dir: &Path) -> Result<ServerTls, TlsError> {
    match tls {
        TlsConfig::Files { cert, key } => {
            let pair = read_pair(cert, key)?;
            build(pair, cert, key, false)
        }
        TlsConfig::SelfSigned => self_signed(data_dir),
    }
}

type Pair = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

fn read_pem(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

fn read_pair(cert: &Path, key: &Path) -> Result<Pair, TlsError> {
    let pem_error = |path: &Path, what: String| TlsError::Pem {
        path: path.to_owned(),
        what,
    };
    let cert_pem = read_pem(cert)?;
    let certs = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(cert, format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(pem_error(cert, "holds no PEM certificate".into()));
    }
    let key_pem = read_pem(key)?;
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| pem_error(key, format!("holds no PEM private key: {e}")))?;
    Ok((certs, key_der))
}

fn build(pair: Pair, cert: &Path, key: &Path, self_signed: bool) -> Result<ServerTls, TlsError> {
    let (certs, key_der) = pair;
    let fingerprint = fingerprint_of(&certs[0]);
    let unusable = |source| TlsError::Unusable {
        cert: cert.to_owned(),
        key: key.to_owned(),
        source,
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(unusable)?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(unusable)?;
    // HTTP/1.1 only: the signaling WebSocket is an HTTP/1.1 upgrade, and the admin API
    // gains nothing from h2.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(ServerTls {
        config: Arc::new(config),
        fingerprint,
        self_signed,
    })
}

/// The stored self-signed certificate, or a new one.
///
/// A stored certificate is reused as long as it can be read and matches its key, even if
/// the machine's addresses have changed since it was made: invite links pin it by
/// fingerprint, and the SDK's pinned check does not look at names, so keeping it keeps
/// every link already handed out working (a laptop changes networks often). Only a missing
/// or unreadable pair is replaced. Delete the two files to get one for the current names.
fn self_signed(data_dir: &Path) -> Result<ServerTls, TlsError> {
    let cert = data_dir.join(SELF_SIGNED_CERT_FILE);
    let key = data_dir.join(SELF_SIGNED_KEY_FILE);
    match read_pair(&cert, &key).and_then(|pair| build(pair, &cert, &key, true)) {
        Ok(tls) => return Ok(tls),
        Err(TlsError::Read { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(error = %e, "the stored self-signed certificate is unusable; making a new one")
        }
    }
    let names = self_signed_names();
    let mut params = rcgen::CertificateParams::new(names.clone())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Onstage server (self-signed)");
    let key_pair = rcgen::KeyPair::generate()?;
    let made = params.self_signed(&key_pair)?;
    std::fs::create_dir_all(data_dir).map_err(|source| TlsError::Write {
        path: data_dir.to_owned(),
        source,
    })?;
    crate::storage::write_private(&key, &key_pair.serialize_pem()).map_err(|source| {
        TlsError::Write {
            path: key.clone(),
            source,
        }
    })?;
    crate::storage::write_private(&cert, &made.pem()).map_err(|source| TlsError::Write {
        path: cert.clone(),
        source,
    })?;
    let tls = build(read_pair(&cert, &key)?, &cert, &key, true)?;
    tracing::info!(
        ?names,
        fingerprint = %tls.fingerprint,
        path = %cert.display(),
        "made a self-signed certificate"
    );
    Ok(tls)
}

/// `localhost`, the host name (when it is a valid DNS name), loopback and every interface
/// address.
fn self_signed_names() -> Vec<String> {
    let mut names = vec!["localhost".to_owned()];
    if let Some(host) = gethostname::gethostname().to_str() {
        let valid = !host.is_empty()
            && host.len() <= 253
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if valid && !names.iter().any(|n| n.eq_ignore_ascii_case(host)) {
            names.push(host.to_owned());
        }
    }
    let mut ips: Vec<IpAddr> = vec![Ipv4Addr::LOCALHOST.into(), Ipv6Addr::LOCALHOST.into()];
    match if_addrs::get_if_addrs() {
        Ok(interfaces) => ips.extend(interfaces.iter().map(|i| i.ip())),
        Err(e) => tracing::warn!(error = %e, "cannot list the interfaces' addresses"),
    }
    for ip in ips {
        let ip = ip.to_string();
        if !names.contains(&ip) {
            names.push(ip);
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_is_made_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = load(&TlsConfig::SelfSigned, dir.path()).unwrap();
        assert!(first.self_signed);
        let again = load(&TlsConfig::SelfSigned, dir.path()).unwrap();
        assert_eq!(first.fingerprint, again.fingerprint);
        let pem = std::fs::read(dir.path().join(SELF_SIGNED_CERT_FILE)).unwrap();
        let der = CertificateDer::pem_slice_iter(&pem)
            .next()
            .unwrap()
            .unwrap();
        assert_eq!(fingerprint_of(&der), first.fingerprint);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let key = std::fs::metadata(dir.path().join(SELF_SIGNED_KEY_FILE)).unwrap();
            assert_eq!(key.permissions().mode() & 0o777, 0o600);
        }

        // A damaged pair is replaced by a new certificate.
        std::fs::write(dir.path().join(SELF_SIGNED_KEY_FILE), "garbage").unwrap();
        let remade = load(&TlsConfig::SelfSigned, dir.path()).unwrap();
        assert_ne!(remade.fingerprint, first.fingerprint);
    }

    #[test]
    fn self_signed_names_cover_localhost_and_loopback() {
        let names = self_signed_names();
        for name in ["localhost", "127.0.0.1", "::1"] {
            assert!(names.iter().any(|n| n == name), "{names:?}");
        }
    }

    #[test]
    fn bad_files_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let made = load(&TlsConfig::SelfSigned, dir.path()).unwrap();
        drop(made);
        let cert = dir.path().join(SELF_SIGNED_CERT_FILE);
        let key = dir.path().join(SELF_SIGNED_KEY_FILE);
        let missing = dir.path().join("missing.pem");
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not pem at all").unwrap();

        let files = |cert: &Path, key: &Path| TlsConfig::Files {
            cert: cert.to_owned(),
            key: key.to_owned(),
        };
        assert!(load(&files(&cert, &key), dir.path()).is_ok());
        for (cfg, named) in [
            (files(&missing, &key), &missing),
            (files(&cert, &missing), &missing),
            (files(&junk, &key), &junk),
            (files(&cert, &junk), &junk),
            // A certificate file given as the key: no private key in it.
            (files(&cert, &cert), &cert),
        ] {
            let e = load(&cfg, dir.path()).unwrap_err();
            let text = e.to_string();
            assert!(text.contains(&named.display().to_string()), "{text}");
        }
        // A key that is not the certificate's.
        let other = tempfile::tempdir().unwrap();
        load(&TlsConfig::SelfSigned, other.path()).unwrap();
        let other_key = other.path().join(SELF_SIGNED_KEY_FILE);
        let e = load(&files(&cert, &other_key), dir.path()).unwrap_err();
        assert!(matches!(e, TlsError::Unusable { .. }), "{e}");
    }
}
