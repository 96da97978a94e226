//! How the SDK (and the `onstage` command's HTTP) trusts a server over TLS.
//!
//! One rustls configuration, on the aws-lc provider, serves the signaling WebSocket and any
//! HTTP client ([`client_config`]; the CLI hands it to reqwest):
//! - without a pinned fingerprint, the certificate must chain to a root the operating
//!   system trusts (rustls-platform-verifier: the system's verifier on macOS and Windows,
//!   the system's root certificates with webpki elsewhere) and name the host;
//! - with one ([`crate::JoinOptions::fingerprint`], the `fp=` of an invite link), the
//!   server must present exactly that certificate: the SHA-256 of its DER equals the pin.
//!   Names, issuer and validity dates are not looked at — a self-signed certificate has no
//!   authority to vouch for them, and the pin already says which certificate is meant —
//!   but the handshake signatures are checked, so only the holder of its key passes.
//!
//! A refused certificate surfaces as [`CertificateError`] ([`crate::ClientError::Certificate`],
//! code `untrusted_server`), never as a generic connection loss, and is not retried.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use onstage_proto::Fingerprint;

/// Why the server's certificate was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    /// The server presented another certificate than the pinned one: a different server,
    /// a server whose certificate was remade, or someone in between.
    #[error("the server's certificate does not match the invite: expected {expected}, got {got}")]
    Mismatch {
        expected: Fingerprint,
        got: Fingerprint,
    },
    /// No trusted authority vouches for the certificate (or it is expired, or for another
    /// name). A self-signed server is reached with its fingerprint (its invite link).
    #[error("the server's certificate is not trusted ({0}); a self-signed server needs its fingerprint (join with its invite link)")]
    Untrusted(String),
}

/// The SHA-256 fingerprint of a DER certificate.
pub fn fingerprint_of(der: &[u8]) -> Fingerprint {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
    let mut bytes = [0u8; 32];
    bytes.copy_from_slice(digest.as_ref());
    Fingerprint::from_sha256(bytes)
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The client TLS configuration: pinned to `pin` when given, else the system's trust.
pub fn client_config(pin: Option<Fingerprint>) -> Result<rustls::ClientConfig, CertificateError> {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| CertificateError::Untrusted(format!("TLS set-up: {e}")))?;
    let verifier: Arc<dyn ServerCertVerifier> = match pin {
        Some(expected) => Arc::new(PinnedVerifier::new(expected, &provider)),
        None => Arc::new(
            rustls_platform_verifier::Verifier::new(provider)
                .map_err(|e| CertificateError::Untrusted(format!("no system roots: {e}")))?,
        ),
    };
    Ok(builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// Accepts exactly one certificate, by fingerprint; still verifies the handshake's
/// signatures against that certificate's key.
#[derive(Debug)]
pub struct PinnedVerifier {
    expected: Fingerprint,
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl PinnedVerifier {
    pub fn new(expected: Fingerprint, provider: &CryptoProvider) -> Self {
        Self {
            expected,
            algorithms: provider.signature_verification_algorithms,
        }
    }
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got = fingerprint_of(end_entity);
        if got == self.expected {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Other(rustls::OtherError(Arc::new(
                    CertificateError::Mismatch {
                        expected: self.expected,
                        got,
                    },
                ))),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The certificate problem behind an error from any layer (tungstenite, reqwest, hyper,
/// io), if there is one: walks the error's sources, looking inside `io::Error`s too.
pub fn certificate_problem(error: &(dyn std::error::Error + 'static)) -> Option<CertificateError> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(mine) = e.downcast_ref::<CertificateError>() {
            return Some(mine.clone());
        }
        if let Some(rustls::Error::InvalidCertificate(cert)) = e.downcast_ref::<rustls::Error>() {
            return Some(match cert {
                rustls::CertificateError::Other(other) => other
                    .0
                    .downcast_ref::<CertificateError>()
                    .cloned()
                    .unwrap_or_else(|| CertificateError::Untrusted(cert.to_string())),
                other => CertificateError::Untrusted(other.to_string()),
            });
        }
        // `io::Error::source` skips the error it wraps; look at that one itself.
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            current = Some(inner as &(dyn std::error::Error + 'static));
            continue;
        }
        current = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::PrivateKeyDer;
    use rustls::server::{ClientHello, ResolvesServerCert};
    use rustls::sign::CertifiedKey;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    struct Cert {
        der: CertificateDer<'static>,
        key: PrivateKeyDer<'static>,
    }

    fn cert() -> Cert {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        Cert {
            der: made.cert.der().clone(),
            key: PrivateKeyDer::Pkcs8(made.signing_key.serialize_der().into()),
        }
    }

    /// Presents `cert` and signs with `key`, whether or not they belong together (rustls'
    /// own `with_single_cert` would refuse a mismatched pair).
    #[derive(Debug)]
    struct Presents(Arc<CertifiedKey>);

    impl ResolvesServerCert for Presents {
        fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
            Some(self.0.clone())
        }
    }

    /// A one-connection TLS server that presents `cert`, signs with `key` and says "ok".
    async fn serve_once(cert: &Cert, key: &Cert) -> u16 {
        let provider = provider();
        let signing = provider
            .key_provider
            .load_private_key(key.key.clone_key())
            .unwrap();
        let certified = CertifiedKey::new(vec![cert.der.clone()], signing);
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Presents(Arc::new(certified))));
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            if let Ok(mut tls) = acceptor.accept(tcp).await {
                let _ = tls.write_all(b"ok").await;
                let _ = tls.shutdown().await;
            }
        });
        port
    }

    async fn connect(port: u16, config: rustls::ClientConfig) -> Result<String, std::io::Error> {
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
        let name = ServerName::try_from("localhost").unwrap();
        let mut tls = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            connector.connect(name, tcp),
        )
        .await
        .expect("handshake in time")?;
        let mut text = String::new();
        tls.read_to_string(&mut text).await?;
        Ok(text)
    }

    #[tokio::test]
    async fn the_pin_accepts_its_certificate_and_refuses_another() {
        let good = cert();
        let other = cert();
        let pin = fingerprint_of(&good.der);
        let pinned = || client_config(Some(pin)).unwrap();

        let port = serve_once(&good, &good).await;
        assert_eq!(connect(port, pinned()).await.unwrap(), "ok");

        let port = serve_once(&other, &other).await;
        let error = connect(port, pinned()).await.unwrap_err();
        let problem = certificate_problem(&error);
        assert_eq!(
            problem,
            Some(CertificateError::Mismatch {
                expected: pin,
                got: fingerprint_of(&other.der),
            })
        );
        let text = problem.unwrap().to_string();
        assert!(text.contains(&pin.to_string()), "{text}");
        assert!(
            text.contains(&fingerprint_of(&other.der).to_string()),
            "{text}"
        );
    }

    #[tokio::test]
    async fn the_pinned_certificate_without_its_key_fails_the_handshake() {
        // A server that shows the pinned certificate (it is public) but does not hold its
        // key cannot sign the handshake: the fingerprint alone is not enough.
        let good = cert();
        let other = cert();
        let port = serve_once(&good, &other).await;
        let config = client_config(Some(fingerprint_of(&good.der))).unwrap();
        let error = connect(port, config).await.unwrap_err();
        assert!(
            matches!(
                error
                    .get_ref()
                    .and_then(|e| e.downcast_ref::<rustls::Error>()),
                Some(rustls::Error::InvalidCertificate(
                    rustls::CertificateError::BadSignature
                ))
            ),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn without_a_pin_a_self_signed_certificate_is_untrusted() {
        let good = cert();
        let port = serve_once(&good, &good).await;
        match client_config(None) {
            Ok(config) => {
                let error = connect(port, config).await.unwrap_err();
                assert!(
                    matches!(
                        certificate_problem(&error),
                        Some(CertificateError::Untrusted(_))
                    ),
                    "{error}"
                );
            }
            // A machine without system roots cannot build the unpinned configuration at
            // all; that is reported as untrusted too.
            Err(e) => assert!(matches!(e, CertificateError::Untrusted(_))),
        }
    }

    #[test]
    fn other_errors_are_no_certificate_problem() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(certificate_problem(&io), None);
    }
}
