//! Protection of the daemon's HTTP endpoints, from a web config file compatible with Prometheus'
//! exporter-toolkit: TLS (`tls_server_config`), bcrypt basic auth (`basic_auth_users`) and
//! extra response headers (`http_server_config.headers`).
//!
//! The same file a Prometheus exporter uses works here, and Prometheus' scrape config needs
//! nothing new (`scheme: https`, `tls_config`, `basic_auth`). Keys of the toolkit that mailprobe
//! does not implement are refused rather than silently ignored.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::http::{HeaderName, HeaderValue};
use base64::Engine;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;

use crate::config::ConfigError;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebConfig {
    tls_server_config: Option<RawTls>,
    http_server_config: Option<RawHttp>,
    basic_auth_users: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert_file: String,
    key_file: String,
    client_auth_type: Option<String>,
    client_ca_file: Option<String>,
    min_version: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    headers: Option<BTreeMap<String, String>>,
    http2: Option<bool>,
}

/// Loaded web settings: what the HTTP server enforces.
pub struct WebConfig {
    /// The file it came from.
    pub path: PathBuf,
    /// TLS for every connection, when configured.
    pub tls: Option<Arc<ServerConfig>>,
    /// User name → bcrypt hash; empty means no authentication.
    users: BTreeMap<String, String>,
    /// Headers added to every response.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// SHA-256 of `user:password` pairs already verified, so a scrape every few seconds does not
    /// pay bcrypt each time. Failures are never cached.
    verified: Mutex<HashSet<[u8; 32]>>,
}

impl std::fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebConfig")
            .field("path", &self.path)
            .field("tls", &self.tls.is_some())
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// The largest web config file read (a few users and headers take a few KiB).
const MAX_WEB_CONFIG_BYTES: u64 = 1024 * 1024;

/// A bcrypt hash checked when the user is unknown, so that unknown and known users take as long.
static DUMMY_HASH: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    bcrypt::hash("mailprobe: no such user", bcrypt::DEFAULT_COST).unwrap_or_default()
});

impl WebConfig {
    /// Reads and checks the web config at `path` (relative file names inside resolve against
    /// its directory).
    pub fn load(path: &Path) -> Result<WebConfig, ConfigError> {
        let text = crate::config::read_config_text(path, "web config", MAX_WEB_CONFIG_BYTES)?;
        let at = |key: &str, message: String| {
            let (line, column) = find_key(&text, key);
            ConfigError::Invalid {
                file: path.to_path_buf(),
                line,
                column,
                key: key.to_string(),
                message,
            }
        };
        let raw: RawWebConfig = yaml_serde::from_str(&text).map_err(|e| {
            let loc = e.location();
            ConfigError::Invalid {
                file: path.to_path_buf(),
                line: loc.as_ref().map_or(1, |l| l.line()),
                column: loc.as_ref().map_or(1, |l| l.column()),
                key: String::new(),
                message: e.to_string(),
            }
        })?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let resolve = |p: &str| {
            let p = Path::new(p);
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                dir.join(p)
            }
        };

        let tls = match raw.tls_server_config {
            None => None,
            Some(t) => Some(Arc::new(
                server_config(&t, &resolve).map_err(|(k, m)| at(k, m))?,
            )),
        };
        let mut users = BTreeMap::new();
        for (user, hash) in raw.basic_auth_users.unwrap_or_default() {
            if user.contains(':') || user.is_empty() {
                return Err(at(
                    &user,
                    "a user name must be non-empty and without ':'".into(),
                ));
            }
            if !is_bcrypt(&hash) {
                return Err(at(
                    &user,
                    "the password must be a bcrypt hash ($2a$, $2b$ or $2y$, 60 characters), \
                     e.g. from `htpasswd -nBC 10 USER`"
                        .into(),
                ));
            }
            users.insert(user, hash);
        }
        let mut headers = Vec::new();
        if let Some(http) = raw.http_server_config {
            if http.http2 == Some(false) {
                return Err(at(
                    "http2",
                    "turning HTTP/2 off is not supported; leave it out".into(),
                ));
            }
            for (name, value) in http.headers.unwrap_or_default() {
                let n = HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| at(&name, format!("{name:?} is not a header name")))?;
                let v = HeaderValue::from_str(&value)
                    .map_err(|_| at(&name, "not a valid header value".into()))?;
                headers.push((n, v));
            }
        }
        Ok(WebConfig {
            path: path.to_path_buf(),
            tls,
            users,
            headers,
            verified: Mutex::new(HashSet::new()),
        })
    }

    /// Whether a request with this `Authorization` header may pass.
    pub fn authorized(&self, authorization: Option<&HeaderValue>) -> bool {
        if self.users.is_empty() {
            return true;
        }
        let Some((user, password)) = authorization
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
            .and_then(|b| {
                base64::engine::general_purpose::STANDARD
                    .decode(b.trim())
                    .ok()
            })
            .and_then(|d| String::from_utf8(d).ok())
            .and_then(|s| {
                s.split_once(':')
                    .map(|(u, p)| (u.to_string(), p.to_string()))
            })
        else {
            return false;
        };
        let digest: [u8; 32] = ring::digest::digest(
            &ring::digest::SHA256,
            format!("{user}:{password}").as_bytes(),
        )
        .as_ref()
        .try_into()
        .unwrap_or([0; 32]);
        if crate::sync::lock(&self.verified).contains(&digest) {
            return true;
        }
        let (hash, known) = match self.users.get(&user) {
            Some(h) => (h.as_str(), true),
            None => (DUMMY_HASH.as_str(), false),
        };
        let ok = bcrypt::verify(&password, hash).unwrap_or(false) && known;
        if ok {
            let mut v = crate::sync::lock(&self.verified);
            if v.len() > 1024 {
                v.clear();
            }
            v.insert(digest);
        }
        ok
    }
}

fn is_bcrypt(h: &str) -> bool {
    h.len() == 60 && ["$2a$", "$2b$", "$2y$"].iter().any(|p| h.starts_with(p))
}

fn server_config(
    t: &RawTls,
    resolve: &dyn Fn(&str) -> PathBuf,
) -> Result<ServerConfig, (&'static str, String)> {
    // Read bounded like every file the config names: a device or a huge file is an error.
    let read = |key: &'static str, path: &Path| {
        crate::config::read_bounded(path, crate::config::MAX_PEM_BYTES)
            .map_err(|e| (key, format!("{}: {e}", path.display())))
    };
    let cert_path = resolve(&t.cert_file);
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(&read("cert_file", &cert_path)?)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ("cert_file", format!("{}: {e}", cert_path.display())))?;
    if certs.is_empty() {
        return Err((
            "cert_file",
            format!("{} holds no certificate", cert_path.display()),
        ));
    }
    let key_path = resolve(&t.key_file);
    let key = PrivateKeyDer::from_pem_slice(&read("key_file", &key_path)?)
        .map_err(|e| ("key_file", format!("{}: {e}", key_path.display())))?;
    let versions: &[&rustls::SupportedProtocolVersion] = match t.min_version.as_deref() {
        None | Some("TLS12") => &[&rustls::version::TLS13, &rustls::version::TLS12],
        Some("TLS13") => &[&rustls::version::TLS13],
        Some(other) => {
            return Err((
                "min_version",
                format!("{other:?} is not supported; use TLS12 or TLS13"),
            ));
        }
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| ("min_version", e.to_string()))?;
    let builder = match t.client_auth_type.as_deref() {
        None | Some("NoClientCert") => builder.with_no_client_auth(),
        Some("RequireAndVerifyClientCert") => {
            let ca = t.client_ca_file.as_deref().ok_or((
                "client_ca_file",
                "RequireAndVerifyClientCert needs client_ca_file".to_string(),
            ))?;
            let ca_path = resolve(ca);
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(&read("client_ca_file", &ca_path)?) {
                let c = c.map_err(|e| ("client_ca_file", e.to_string()))?;
                roots
                    .add(c)
                    .map_err(|e| ("client_ca_file", e.to_string()))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|e| ("client_ca_file", e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        Some(other) => {
            return Err((
                "client_auth_type",
                format!(
                    "{other:?} is not supported; use NoClientCert or RequireAndVerifyClientCert"
                ),
            ));
        }
    };
    let mut cfg = builder
        .with_single_cert(certs, key)
        .map_err(|e| ("key_file", format!("certificate and key do not fit: {e}")))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

/// 1-based line and column of the first `key:` in a YAML text (1:1 when absent).
fn find_key(text: &str, key: &str) -> (usize, usize) {
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.starts_with(&format!("{key}:")) || trimmed.starts_with(&format!("\"{key}\":")) {
            return (i + 1, line.len() - trimmed.len() + 1);
        }
    }
    (1, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let p = dir.join("web.yml");
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn users_are_checked_against_bcrypt_and_cached() {
        let dir = std::env::temp_dir().join(format!("mp-web-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let cfg = WebConfig::load(&write(
            &dir,
            &format!("basic_auth_users:\n  alice: '{hash}'\n"),
        ))
        .unwrap();
        let basic = |u: &str, p: &str| {
            HeaderValue::from_str(&format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            ))
            .unwrap()
        };
        assert!(cfg.authorized(Some(&basic("alice", "s3cret"))));
        assert!(cfg.authorized(Some(&basic("alice", "s3cret"))), "cached");
        assert!(!cfg.authorized(Some(&basic("alice", "wrong"))));
        assert!(!cfg.authorized(Some(&basic("mallory", "s3cret"))));
        assert!(!cfg.authorized(None));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let dir = std::env::temp_dir().join(format!("mp-web2-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = write(&dir, "basic_auth_users:\n  alice: plaintext\n");
        let e = WebConfig::load(&p).unwrap_err().to_string();
        assert!(
            e.contains("web.yml:2:3: alice: the password must be a bcrypt hash"),
            "{e}"
        );
        let p = write(
            &dir,
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  cipher_suites: [x]\n",
        );
        let e = WebConfig::load(&p).unwrap_err().to_string();
        assert!(e.contains("unknown field `cipher_suites`"), "{e}");
        let p = write(
            &dir,
            "tls_server_config:\n  cert_file: missing.pem\n  key_file: b\n",
        );
        let e = WebConfig::load(&p).unwrap_err().to_string();
        assert!(e.contains("web.yml:2:3: cert_file: "), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
