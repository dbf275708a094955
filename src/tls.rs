//! Shared TLS for every protocol: one timed handshake, certificate facts even when verification
//! fails, and no session resumption (each probe measures a full handshake, like a first visit).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// The one crypto provider (ring) that all our TLS uses.
static PROVIDER: LazyLock<Arc<CryptoProvider>> =
    LazyLock::new(|| Arc::new(rustls::crypto::ring::default_provider()));

/// What the server's end-entity certificate says, recorded before it is verified.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct CertFacts {
    /// notAfter as Unix seconds.
    pub not_after: i64,
    /// Subject distinguished name.
    pub subject: String,
    /// Issuer distinguished name.
    pub issuer: String,
}

/// What a TLS handshake established (or got as far as).
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct TlsFacts {
    /// Negotiated version, e.g. "TLS 1.3"; `None` when the handshake failed.
    pub version: Option<String>,
    /// Negotiated cipher suite.
    pub cipher: Option<String>,
    /// ALPN protocol agreed, if any.
    pub alpn: Option<String>,
    /// The peer certificate, if the server sent one.
    pub cert: Option<CertFacts>,
    /// What verifying the certificate found, when the client only reports it
    /// ([`CertPolicy::Report`]); `None` when a failed check fails the handshake.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_check: Option<CertCheck>,
}

/// What a client does with a certificate that does not verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CertPolicy {
    /// The handshake fails (every target a user connects to: a mail client would refuse).
    Enforce,
    /// The handshake goes on and the finding is recorded: what a sending MTA does with
    /// opportunistic STARTTLS (RFC 7435, RFC 3207 section 4.1), whose MX certificates are often
    /// for another name.
    Report,
}

/// What verifying a certificate found under [`CertPolicy::Report`]; the `cert` label of the MX
/// series, a closed set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CertCheck {
    /// Trusted, in its validity period, and for the name connected to.
    Valid,
    /// Trusted and in its validity period, but for another name.
    NameMismatch,
    /// Past its notAfter.
    Expired,
    /// Before its notBefore.
    NotYetValid,
    /// Not issued by a trusted CA (self-signed, or an unknown issuer).
    Untrusted,
    /// Otherwise unusable (bad encoding or signature, revoked, wrong usage).
    Invalid,
}

impl CertCheck {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            CertCheck::Valid => "valid",
            CertCheck::NameMismatch => "name_mismatch",
            CertCheck::Expired => "expired",
            CertCheck::NotYetValid => "not_yet_valid",
            CertCheck::Untrusted => "untrusted",
            CertCheck::Invalid => "invalid",
        }
    }

    /// The finding of a verifier's verdict.
    fn of(result: &Result<ServerCertVerified, rustls::Error>) -> CertCheck {
        use rustls::CertificateError as CE;
        match result {
            Ok(_) => CertCheck::Valid,
            Err(rustls::Error::InvalidCertificate(e)) => match e {
                CE::Expired | CE::ExpiredContext { .. } => CertCheck::Expired,
                CE::NotValidYet | CE::NotValidYetContext { .. } => CertCheck::NotYetValid,
                CE::NotValidForName | CE::NotValidForNameContext { .. } => CertCheck::NameMismatch,
                CE::UnknownIssuer => CertCheck::Untrusted,
                _ => CertCheck::Invalid,
            },
            Err(_) => CertCheck::Invalid,
        }
    }
}

/// Verifiers built once per config load and shared by every target with the same roots.
#[derive(Default)]
pub struct RootsCache {
    system: Option<Arc<WebPkiServerVerifier>>,
    files: HashMap<PathBuf, Arc<WebPkiServerVerifier>>,
}

impl RootsCache {
    /// A verifier over the system's CA certificates.
    pub fn system(&mut self) -> Result<Arc<WebPkiServerVerifier>, String> {
        if let Some(v) = &self.system {
            return Ok(v.clone());
        }
        let loaded = rustls_native_certs::load_native_certs();
        let mut roots = RootCertStore::empty();
        let (added, _) = roots.add_parsable_certificates(loaded.certs);
        if added == 0 {
            return Err(
                "no system CA certificates found (install ca-certificates, or set ca_file)".into(),
            );
        }
        let v = build_verifier(roots)?;
        self.system = Some(v.clone());
        Ok(v)
    }

    /// A verifier that trusts only the PEM certificates in `bytes` (read from `path`).
    pub fn from_pem(
        &mut self,
        path: &Path,
        bytes: &[u8],
    ) -> Result<Arc<WebPkiServerVerifier>, String> {
        if let Some(v) = self.files.get(path) {
            return Ok(v.clone());
        }
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(bytes) {
            let cert =
                cert.map_err(|e| format!("{}: not a PEM certificate: {e}", path.display()))?;
            roots
                .add(cert)
                .map_err(|e| format!("{}: unusable CA certificate: {e}", path.display()))?;
        }
        if roots.is_empty() {
            return Err(format!("{} holds no PEM certificate", path.display()));
        }
        let v = build_verifier(roots)?;
        self.files.insert(path.to_path_buf(), v.clone());
        Ok(v)
    }
}

fn build_verifier(roots: RootCertStore) -> Result<Arc<WebPkiServerVerifier>, String> {
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), PROVIDER.clone())
        .build()
        .map_err(|e| format!("cannot build certificate verifier: {e}"))
}

/// A target's TLS client: which roots to trust and which name the certificate must carry.
#[derive(Debug)]
pub struct TlsClient {
    verifier: Arc<WebPkiServerVerifier>,
    server_name: ServerName<'static>,
    policy: CertPolicy,
}

impl TlsClient {
    /// A client verifying against `verifier` for `server_name` (a DNS name or IP literal).
    pub fn new(verifier: Arc<WebPkiServerVerifier>, server_name: &str) -> Result<Self, String> {
        let server_name = ServerName::try_from(server_name.to_string())
            .map_err(|_| format!("{server_name:?} is not a valid TLS server name"))?;
        Ok(TlsClient {
            verifier,
            server_name,
            policy: CertPolicy::Enforce,
        })
    }

    /// The same trust for another name (a redirect to another host, an MX host).
    pub fn for_name(&self, server_name: &str) -> Result<TlsClient, String> {
        let mut client = TlsClient::new(self.verifier.clone(), server_name)?;
        client.policy = self.policy;
        Ok(client)
    }

    /// This client with `policy` for certificates that do not verify.
    pub fn with_policy(mut self, policy: CertPolicy) -> TlsClient {
        self.policy = policy;
        self
    }

    /// Runs a full handshake over `stream`, offering `alpn`.
    ///
    /// Returns the facts gathered even when the handshake fails (the certificate of a server whose
    /// certificate has expired is exactly what an admin wants to see).
    pub async fn handshake<S>(
        &self,
        stream: S,
        alpn: &[&[u8]],
    ) -> (std::io::Result<TlsStream<S>>, TlsFacts)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let seen = Arc::new(Mutex::new(None));
        let check = Arc::new(Mutex::new(None));
        let verifier = Arc::new(RecordingVerifier {
            inner: self.verifier.clone(),
            seen: seen.clone(),
            policy: self.policy,
            check: check.clone(),
        });
        let config = ClientConfig::builder_with_provider(PROVIDER.clone())
            .with_safe_default_protocol_versions()
            .map(|b| {
                let mut c = b
                    .dangerous()
                    .with_custom_certificate_verifier(verifier)
                    .with_no_client_auth();
                c.resumption = rustls::client::Resumption::disabled();
                c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
                c
            });
        let config = match config {
            Ok(c) => c,
            Err(e) => return (Err(std::io::Error::other(e)), TlsFacts::default()),
        };
        let connector = TlsConnector::from(Arc::new(config));
        let result = connector.connect(self.server_name.clone(), stream).await;
        let cert = crate::sync::lock(&seen).take();
        let mut facts = TlsFacts {
            cert,
            cert_check: crate::sync::lock(&check).take(),
            ..TlsFacts::default()
        };
        if let Ok(tls) = &result {
            let (_, conn) = tls.get_ref();
            facts.version = conn.protocol_version().map(version_name);
            facts.cipher = conn
                .negotiated_cipher_suite()
                .map(|s| format!("{:?}", s.suite()));
            facts.alpn = conn
                .alpn_protocol()
                .map(|p| String::from_utf8_lossy(p).into_owned());
        }
        (result, facts)
    }
}

fn version_name(v: rustls::ProtocolVersion) -> String {
    match v {
        rustls::ProtocolVersion::TLSv1_3 => "TLS 1.3".into(),
        rustls::ProtocolVersion::TLSv1_2 => "TLS 1.2".into(),
        other => format!("{other:?}"),
    }
}

/// Wraps the WebPKI verifier to record the end-entity certificate before judging it.
#[derive(Debug)]
struct RecordingVerifier {
    inner: Arc<WebPkiServerVerifier>,
    seen: Arc<Mutex<Option<CertFacts>>>,
    policy: CertPolicy,
    /// What verification found, under [`CertPolicy::Report`].
    check: Arc<Mutex<Option<CertCheck>>>,
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(facts) = cert_facts(end_entity) {
            *crate::sync::lock(&self.seen) = Some(facts);
        }
        let verdict = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        match self.policy {
            CertPolicy::Enforce => verdict,
            CertPolicy::Report => {
                *crate::sync::lock(&self.check) = Some(CertCheck::of(&verdict));
                // The handshake signatures are still checked against this certificate's key.
                Ok(ServerCertVerified::assertion())
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

fn cert_facts(der: &CertificateDer<'_>) -> Option<CertFacts> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let clip = |s: String| s.chars().take(200).collect::<String>();
    Some(CertFacts {
        not_after: cert.validity().not_after.timestamp(),
        subject: clip(cert.subject().to_string()),
        issuer: clip(cert.issuer().to_string()),
    })
}

/// The rustls error inside an I/O error from a handshake, if that is what failed.
pub fn rustls_error(e: &std::io::Error) -> Option<&rustls::Error> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = e.get_ref().map(|r| r as _);
    while let Some(err) = source {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        source = err.source();
    }
    None
}
