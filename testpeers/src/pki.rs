//! A test certificate authority and the server certificates the tests need.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use time::{Duration, OffsetDateTime};

/// One server certificate and its key, as PEM files.
#[derive(Clone, Debug)]
pub struct ServerCert {
    /// Certificate chain (leaf only).
    pub cert: PathBuf,
    /// Private key.
    pub key: PathBuf,
    /// notAfter as Unix seconds.
    pub not_after: i64,
}

impl ServerCert {
    /// A rustls server config presenting this certificate.
    pub fn server_config(&self, alpn: &[&[u8]]) -> Arc<ServerConfig> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&self.cert)
            .expect("cert file")
            .collect::<Result<_, _>>()
            .expect("cert pem");
        let key = PrivateKeyDer::from_pem_file(&self.key).expect("key pem");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("server cert");
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(cfg)
    }
}

/// An RSA key and self-signed certificate an application registers for signed client
/// assertions (made with the `openssl` command: ring cannot generate RSA keys).
#[derive(Clone, Debug)]
pub struct AppCredential {
    /// PKCS#8 PEM private key.
    pub key: PathBuf,
    /// PEM certificate.
    pub cert: PathBuf,
    /// The RSA public key (PKCS#1 DER), for the token server to verify signatures.
    pub public_key: Vec<u8>,
}

impl AppCredential {
    /// Generates one into `dir`.
    pub fn generate(dir: &Path) -> AppCredential {
        let openssl = crate::util::require_program("openssl", "openssl");
        std::fs::create_dir_all(dir).expect("app credential dir");
        let key = dir.join("app.key");
        let cert = dir.join("app.pem");
        let run = |args: &[&str]| {
            let out = std::process::Command::new(&openssl)
                .args(args)
                .output()
                .expect("run openssl");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let (k, c) = (key.to_str().expect("path"), cert.to_str().expect("path"));
        run(&[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            k,
        ]);
        run(&[
            "req",
            "-x509",
            "-key",
            k,
            "-subj",
            "/CN=mailprobe test app",
            "-days",
            "2",
            "-out",
            c,
        ]);
        let der = PrivateKeyDer::from_pem_file(&key).expect("key pem");
        let pair = ring::rsa::KeyPair::from_pkcs8(der.secret_der()).expect("rsa key");
        use ring::signature::KeyPair as _;
        AppCredential {
            public_key: pair.public_key().as_ref().to_vec(),
            key,
            cert,
        }
    }
}

/// A CA plus certificates for `localhost`/127.0.0.1 (valid), for another name, and expired.
#[derive(Clone, Debug)]
pub struct TestPki {
    /// The CA certificate a client trusts (`ca_file`).
    pub ca: PathBuf,
    /// Valid for `localhost` and 127.0.0.1, for a year.
    pub valid: ServerCert,
    /// Valid, but only for `mail.other.test`.
    pub wrong_name: ServerCert,
    /// For `localhost`, expired yesterday.
    pub expired: ServerCert,
}

impl TestPki {
    /// Generates the CA and certificates into `dir`.
    pub fn generate(dir: &Path) -> TestPki {
        std::fs::create_dir_all(dir).expect("pki dir");
        let now = OffsetDateTime::now_utc();
        let ca_key = KeyPair::generate().expect("ca key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "mailprobe test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        ca_params.not_before = now - Duration::days(30);
        ca_params.not_after = now + Duration::days(3650);
        let ca_cert = ca_params.self_signed(&ca_key).expect("ca cert");
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, ca_cert.pem()).expect("write ca");
        let issuer = Issuer::new(ca_params, ca_key);

        let leaf = |name: &str, sans: &[&str], from: OffsetDateTime, to: OffsetDateTime| {
            let key = KeyPair::generate().expect("leaf key");
            let mut p =
                CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                    .expect("leaf params");
            p.distinguished_name.push(DnType::CommonName, sans[0]);
            p.is_ca = IsCa::ExplicitNoCa;
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            p.not_before = from;
            p.not_after = to;
            let cert = p.signed_by(&key, &issuer).expect("sign leaf");
            let cert_path = dir.join(format!("{name}.pem"));
            let key_path = dir.join(format!("{name}.key"));
            std::fs::write(&cert_path, cert.pem()).expect("write leaf");
            std::fs::write(&key_path, key.serialize_pem()).expect("write key");
            ServerCert {
                cert: cert_path,
                key: key_path,
                not_after: to.unix_timestamp(),
            }
        };
        // Whole seconds, so the test can compare notAfter exactly.
        let now = now.replace_nanosecond(0).expect("whole second");
        TestPki {
            valid: leaf(
                "valid",
                &["localhost", "127.0.0.1"],
                now - Duration::days(1),
                now + Duration::days(365),
            ),
            wrong_name: leaf(
                "wrong-name",
                &["mail.other.test"],
                now - Duration::days(1),
                now + Duration::days(365),
            ),
            expired: leaf(
                "expired",
                &["localhost", "127.0.0.1"],
                now - Duration::days(30),
                now - Duration::days(1),
            ),
            ca,
        }
    }
}
