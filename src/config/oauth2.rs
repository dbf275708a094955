//! `[target.oauth2]`: one OAuth2 credential set (where tokens come from, how the client proves
//! who it is, which grant and scopes), with the providers' presets as data on
//! [`OAuth2Provider`]. The token cache (the top-level `oauth2` module) fetches with it.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use base64::Engine;
use secrecy::SecretString;
use serde::Deserialize;

use crate::hash::Fnv64;

use super::error::ConfigError;
use super::secrets::{MAX_PEM_BYTES, hash_secret, read_bounded};
use super::target::TargetCx;

/// The `[target.oauth2]` table as written.
#[derive(Clone, Debug, Deserialize, Hash)]
#[serde(deny_unknown_fields)]
pub struct RawOAuth2 {
    provider: Option<OAuth2Provider>,
    tenant: Option<String>,
    token_url: Option<String>,
    client_id: Option<String>,
    client_secret_file: Option<String>,
    client_secret_env: Option<String>,
    client_assertion_key_file: Option<String>,
    client_assertion_cert_file: Option<String>,
    grant: Option<GrantKind>,
    refresh_token_file: Option<String>,
    refresh_token_env: Option<String>,
    scopes: Option<Vec<String>>,
    ca_file: Option<String>,
    allow_plaintext: Option<bool>,
    service_account_key_file: Option<String>,
    subject: Option<String>,
}

/// Where an OAuth2 preset takes its endpoint and scopes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OAuth2Provider {
    /// Microsoft identity platform (Exchange Online).
    Microsoft,
    /// Google (Gmail).
    Google,
}

impl OAuth2Provider {
    /// The token endpoint; Microsoft's names the tenant (`Err` when it is missing).
    fn token_url(self, tenant: Option<&str>) -> Result<String, ()> {
        match self {
            OAuth2Provider::Microsoft => tenant
                .map(|t| format!("https://login.microsoftonline.com/{t}/oauth2/v2.0/token"))
                .ok_or(()),
            OAuth2Provider::Google => Ok("https://oauth2.googleapis.com/token".into()),
        }
    }

    /// Whether it grants mail access to a client's own credentials (Google does not).
    fn has_client_credentials(self) -> bool {
        match self {
            OAuth2Provider::Microsoft => true,
            OAuth2Provider::Google => false,
        }
    }

    /// The scopes asked for when none are configured: Google's mail scope (or the
    /// protocol's own); Microsoft's `.default` of the protocol's resource for an application,
    /// else the protocol's delegated scope with `offline_access`.
    fn scopes(self, grant: GrantKind, defaults: &OAuth2Defaults<'_>) -> Vec<String> {
        match (self, grant) {
            (OAuth2Provider::Google, _) => {
                vec![defaults.google.unwrap_or("https://mail.google.com/").into()]
            }
            (OAuth2Provider::Microsoft, GrantKind::ClientCredentials | GrantKind::JwtBearer) => {
                vec![
                    defaults
                        .application
                        .unwrap_or("https://outlook.office365.com/.default")
                        .into(),
                ]
            }
            (OAuth2Provider::Microsoft, GrantKind::RefreshToken) => {
                vec![defaults.delegated.into(), "offline_access".into()]
            }
        }
    }
}

/// An OAuth2 grant, as written in the config.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantKind {
    /// Client credentials.
    ClientCredentials,
    /// A refresh token.
    RefreshToken,
    /// A signed JWT as the grant itself (RFC 7523 2.1): a Google service account acting for a
    /// user through domain-wide delegation.
    JwtBearer,
}

/// How the client proves who it is to the token endpoint.
#[derive(Clone)]
pub enum ClientAuth {
    /// `client_secret` in the request body.
    Secret(SecretString),
    /// A signed JWT client assertion (RFC 7523), keyed by the certificate's SHA-1 thumbprint.
    Assertion {
        /// The RSA private key.
        key: Arc<ring::rsa::KeyPair>,
        /// base64url SHA-1 of the certificate (the `x5t` header).
        x5t: String,
    },
    /// A public client (no client authentication), possible with a refresh token.
    None,
}

/// Which OAuth2 grant gets the token.
#[derive(Clone)]
pub enum Grant {
    /// Service to service: what Exchange Online application access uses.
    ClientCredentials,
    /// A refresh token provisioned once by the admin (delegated access, e.g. Gmail).
    RefreshToken(SecretString),
    /// An RS256-signed JWT as the grant (RFC 7523 2.1), from a service account's key file.
    JwtBearer(Arc<ServiceAccount>),
}

/// A Google service account, as its JSON key file describes it, and who it acts for.
pub struct ServiceAccount {
    /// The RSA private key (`private_key`, PKCS#8 PEM).
    pub key: ring::rsa::KeyPair,
    /// `private_key_id`: the JWT's `kid`.
    pub key_id: Option<String>,
    /// `client_email`: the JWT's `iss`.
    pub client_email: String,
    /// The user the token is for: the JWT's `sub` (domain-wide delegation).
    pub subject: String,
}

/// The fields of a service account key file mailprobe reads (Google's JSON key format).
#[derive(Deserialize)]
struct KeyFile {
    #[serde(rename = "type")]
    kind: Option<String>,
    private_key_id: Option<String>,
    private_key: Option<String>,
    client_email: Option<String>,
    token_uri: Option<String>,
}

/// One credential set: where tokens come from and how to ask.
#[derive(Clone)]
pub struct OAuth2Spec {
    /// The token endpoint.
    pub token_url: url::Url,
    /// The client (application) id.
    pub client_id: String,
    /// Client authentication.
    pub client_auth: ClientAuth,
    /// The grant.
    pub grant: Grant,
    /// Scopes asked for.
    pub scopes: Vec<String>,
    /// TLS for the token endpoint.
    pub tls: Arc<rustls::ClientConfig>,
    /// Identifies the credential set in the cache (a hash; secrets never in clear).
    pub key: String,
    /// The `credential` label: `client_id@token host` (no secrets).
    pub label: String,
}

impl OAuth2Spec {
    /// The static secrets in it (client secret, refresh token), to be redacted from details.
    pub fn secrets(&self) -> Vec<&SecretString> {
        let mut v = Vec::new();
        if let ClientAuth::Secret(s) = &self.client_auth {
            v.push(s);
        }
        if let Grant::RefreshToken(r) = &self.grant {
            v.push(r);
        }
        v
    }
}

impl std::fmt::Debug for OAuth2Spec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuth2Spec")
            .field("token_url", &self.token_url.as_str())
            .field("client_id", &self.client_id)
            .field("scopes", &self.scopes)
            .field("credential", &self.label)
            .finish_non_exhaustive()
    }
}

/// base64url SHA-1 of a certificate: the `x5t` a client assertion names its key by.
pub fn thumbprint(cert_der: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, cert_der).as_ref())
}

/// What a protocol asks a provider's preset for when the table names no scopes.
#[derive(Clone, Copy, Debug, Default)]
pub struct OAuth2Defaults<'a> {
    /// Microsoft's delegated permission, asked for with a refresh token.
    pub delegated: &'a str,
    /// Microsoft's application scope (`<resource>/.default`); Exchange Online's when `None`.
    pub application: Option<&'a str>,
    /// Google's scope; full mail access (`https://mail.google.com/`) when `None`.
    pub google: Option<&'a str>,
    /// Who a service account's token is for (`sub` of the JWT-bearer grant) when the table
    /// names nobody: the probed mailbox.
    pub subject: Option<&'a str>,
}

impl TargetCx<'_> {
    /// The `[target.oauth2]` table: explicit fields, else the provider's preset; a refresh
    /// token asks Microsoft for `delegated_scope` (the protocol's own permission).
    pub fn oauth2(
        &mut self,
        table: Option<&RawOAuth2>,
        delegated_scope: &str,
    ) -> Result<OAuth2Spec, ConfigError> {
        self.oauth2_with(
            table,
            OAuth2Defaults {
                delegated: delegated_scope,
                ..OAuth2Defaults::default()
            },
        )
    }

    /// [`TargetCx::oauth2`] with a protocol's own defaults (Graph's resource, Gmail's scope,
    /// the mailbox a service account acts for).
    pub fn oauth2_with(
        &mut self,
        table: Option<&RawOAuth2>,
        defaults: OAuth2Defaults<'_>,
    ) -> Result<OAuth2Spec, ConfigError> {
        let o = table.ok_or_else(|| {
            self.error(
                "auth",
                "auth = \"oauth2\" needs an [target.oauth2] table (provider or token_url, \
                 client_id, and a client secret or refresh token)",
            )
        })?;
        let op = self.key("oauth2");
        let loc = self.loc;
        // The secrets of this credential set alone: they key the token cache (targets sharing a
        // credential set share a token) and join the target's fingerprint.
        let mut secrets = Fnv64::default();
        let refresh = self.read_secret(
            &op,
            ("refresh_token_file", o.refresh_token_file.as_deref()),
            ("refresh_token_env", o.refresh_token_env.as_deref()),
        )?;
        if let Some(r) = &refresh {
            hash_secret(r, &mut secrets);
        }
        let kind = o.grant.unwrap_or(if refresh.is_some() {
            GrantKind::RefreshToken
        } else if o.service_account_key_file.is_some() {
            GrantKind::JwtBearer
        } else {
            GrantKind::ClientCredentials
        });
        let mut key_token_uri = None;
        let grant = match (kind, refresh) {
            (GrantKind::JwtBearer, Some(_)) => {
                return Err(loc.error(
                    &op.key("grant"),
                    "a refresh token is given but grant = \"jwt_bearer\"",
                ));
            }
            (GrantKind::JwtBearer, None) => {
                let (account, token_uri) =
                    self.service_account(o, defaults.subject, &mut secrets)?;
                key_token_uri = token_uri;
                Grant::JwtBearer(Arc::new(account))
            }
            (_, _) if o.service_account_key_file.is_some() || o.subject.is_some() => {
                let k = if o.subject.is_some() && o.service_account_key_file.is_none() {
                    "subject"
                } else {
                    "service_account_key_file"
                };
                return Err(loc.error(
                    &op.key(k),
                    "applies only to grant = \"jwt_bearer\" (a service account)",
                ));
            }
            (GrantKind::RefreshToken, Some(r)) => Grant::RefreshToken(r),
            (GrantKind::RefreshToken, None) => {
                return Err(loc.error(
                    &op.key("refresh_token_file"),
                    "missing: grant = \"refresh_token\" needs refresh_token_file or \
                     refresh_token_env",
                ));
            }
            (GrantKind::ClientCredentials, Some(_)) => {
                return Err(loc.error(
                    &op.key("grant"),
                    "a refresh token is given but grant = \"client_credentials\"",
                ));
            }
            (GrantKind::ClientCredentials, None) => Grant::ClientCredentials,
        };
        if o.provider.is_some_and(|p| !p.has_client_credentials())
            && kind == GrantKind::ClientCredentials
        {
            return Err(loc.error(
                &op.key("grant"),
                "Google has no client-credentials grant for mail: use a refresh token \
                 (grant = \"refresh_token\")",
            ));
        }
        let token_url = match (&o.token_url, o.provider) {
            (Some(u), _) => u.clone(),
            (None, _) if key_token_uri.is_some() => key_token_uri.clone().unwrap_or_default(),
            (None, Some(p)) => p.token_url(o.tenant.as_deref()).map_err(|()| {
                loc.error(
                    &op.key("tenant"),
                    "missing: provider = \"microsoft\" needs the tenant (its domain or id)",
                )
            })?,
            (None, None) => {
                return Err(loc.error(
                    &op.key("token_url"),
                    "missing: give token_url, or provider = \"microsoft\" or \"google\"",
                ));
            }
        };
        let token_url = url::Url::parse(&token_url).map_err(|e| {
            loc.error(
                &op.key("token_url"),
                format!("{token_url:?} is not a URL: {e}"),
            )
        })?;
        match token_url.scheme() {
            "https" => {}
            "http" if o.allow_plaintext == Some(true) => {}
            _ => {
                return Err(loc.error(
                    &op.key("token_url"),
                    "must be https:// (http:// sends the client secret in clear; set \
                     allow_plaintext = true in this table if that is really wanted)",
                ));
            }
        }
        let host = token_url.host_str().unwrap_or_default().to_string();
        let client_id = o
            .client_id
            .clone()
            .filter(|c| !c.is_empty())
            .or_else(|| match &grant {
                // A service account is named by its email (the JWT's issuer).
                Grant::JwtBearer(a) => Some(a.client_email.clone()),
                _ => None,
            })
            .ok_or_else(|| {
                loc.error(&op.key("client_id"), "missing: the application (client) id")
            })?;
        let secret = self.read_secret(
            &op,
            ("client_secret_file", o.client_secret_file.as_deref()),
            ("client_secret_env", o.client_secret_env.as_deref()),
        )?;
        if let Some(s) = &secret {
            hash_secret(s, &mut secrets);
        }
        if matches!(grant, Grant::JwtBearer(_))
            && (secret.is_some() || o.client_assertion_key_file.is_some())
        {
            return Err(loc.error(
                &op.key("service_account_key_file"),
                "a service account signs with its own key: no client secret or client assertion \
                 key besides it",
            ));
        }
        let client_auth = match (
            secret,
            &o.client_assertion_key_file,
            &o.client_assertion_cert_file,
        ) {
            (Some(_), Some(_), _) => {
                return Err(loc.error(
                    &op.key("client_assertion_key_file"),
                    "give either a client secret or a client assertion key, not both",
                ));
            }
            (Some(s), None, _) => ClientAuth::Secret(s),
            (None, Some(key_file), Some(cert_file)) => {
                let key_key = op.key("client_assertion_key_file");
                let key_path = self.secret_path(&key_key, key_file)?;
                let key = read_bounded(&key_path, MAX_PEM_BYTES)
                    .map_err(|e| format!("cannot read {}: {e}", key_path.display()))
                    .and_then(|pem| {
                        pem.hash(&mut secrets);
                        use rustls::pki_types::pem::PemObject;
                        let der = rustls::pki_types::PrivatePkcs8KeyDer::from_pem_slice(&pem)
                            .map_err(|e| {
                                format!("{}: not a PKCS#8 PEM key: {e}", key_path.display())
                            })?;
                        ring::rsa::KeyPair::from_pkcs8(der.secret_pkcs8_der()).map_err(|e| {
                            format!(
                                "{}: not an RSA key ring can sign with: {e}",
                                key_path.display()
                            )
                        })
                    })
                    .map_err(|m| loc.error(&key_key, m))?;
                let cert_path = self.resolve_path(cert_file);
                let cert = read_bounded(&cert_path, MAX_PEM_BYTES)
                    .map_err(|e| format!("cannot read {}: {e}", cert_path.display()))
                    .and_then(|pem| {
                        use rustls::pki_types::pem::PemObject;
                        rustls::pki_types::CertificateDer::from_pem_slice(&pem).map_err(|e| {
                            format!("{}: not a PEM certificate: {e}", cert_path.display())
                        })
                    })
                    .map_err(|m| loc.error(&op.key("client_assertion_cert_file"), m))?;
                ClientAuth::Assertion {
                    key: Arc::new(key),
                    x5t: thumbprint(&cert),
                }
            }
            (None, Some(_), None) => {
                return Err(loc.error(
                    &op.key("client_assertion_cert_file"),
                    "missing: the certificate registered for the key (its thumbprint names the key)",
                ));
            }
            (None, None, _) if matches!(grant, Grant::RefreshToken(_)) => ClientAuth::None,
            // The signed JWT is the grant and proves who the client is.
            (None, None, _) if matches!(grant, Grant::JwtBearer(_)) => ClientAuth::None,
            (None, None, _) => {
                return Err(loc.error(
                    &op.key("client_secret_file"),
                    "missing: the client credentials grant needs client_secret_file, \
                     client_secret_env, or client_assertion_key_file with its certificate",
                ));
            }
        };
        let scopes = match (&o.scopes, o.provider) {
            (Some(s), _) => s.clone(),
            (None, Some(p)) => p.scopes(kind, &defaults),
            // A service account key is Google's format: its scopes by default.
            (None, None) if kind == GrantKind::JwtBearer => {
                OAuth2Provider::Google.scopes(kind, &defaults)
            }
            (None, None) => Vec::new(),
        };
        if kind == GrantKind::JwtBearer && scopes.iter().all(|s| s.is_empty()) {
            return Err(loc.error(
                &op.key("scopes"),
                "a service account's grant names the scopes it asks for: give at least one",
            ));
        }
        let verifier = match &o.ca_file {
            Some(f) => self.ca_verifier(&op.key("ca_file"), f)?,
            None => self.system_verifier(&op.key("token_url"))?,
        };
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| loc.error(&op, format!("TLS setup: {e}")))?
        .with_webpki_verifier(verifier)
        .with_no_client_auth();
        // The cache key: everything that makes a different token, secrets by hash only.
        let mut key = Fnv64::default();
        o.hash(&mut key);
        token_url.as_str().hash(&mut key);
        scopes.hash(&mut key);
        if let Grant::JwtBearer(a) = &grant {
            a.subject.hash(&mut key);
        }
        secrets.finish().hash(&mut key);
        secrets.finish().hash(&mut self.fp);
        let label = format!("{client_id}@{host}");
        Ok(OAuth2Spec {
            token_url,
            client_id,
            client_auth,
            grant,
            scopes,
            tls: Arc::new(tls),
            key: format!("{:016x}", key.finish()),
            label,
        })
    }
}

impl TargetCx<'_> {
    /// The service account of `service_account_key_file` (a secret file, never echoed) acting
    /// for `subject` (or `default_subject`), and the key file's `token_uri`; the key's bytes
    /// join `secrets`.
    fn service_account(
        &mut self,
        o: &RawOAuth2,
        default_subject: Option<&str>,
        secrets: &mut Fnv64,
    ) -> Result<(ServiceAccount, Option<String>), ConfigError> {
        let op = self.key("oauth2");
        let loc = self.loc;
        let key_key = op.key("service_account_key_file");
        let file = o.service_account_key_file.as_deref().ok_or_else(|| {
            loc.error(
                &key_key,
                "missing: grant = \"jwt_bearer\" needs the service account's JSON key file",
            )
        })?;
        let path = self.secret_path(&key_key, file)?;
        let bytes = read_bounded(&path, MAX_PEM_BYTES)
            .map_err(|e| loc.error(&key_key, format!("cannot read {}: {e}", path.display())))?;
        bytes.hash(secrets);
        // serde_json's errors name a line and column, never the text around them.
        let k: KeyFile = serde_json::from_slice(&bytes).map_err(|e| {
            loc.error(
                &key_key,
                format!("{}: not a service account JSON key: {e}", path.display()),
            )
        })?;
        if k.kind.as_deref().is_some_and(|t| t != "service_account") {
            return Err(loc.error(
                &key_key,
                format!(
                    "{}: not a service account key (type is not \"service_account\")",
                    path.display()
                ),
            ));
        }
        let missing = |field: &str| {
            loc.error(
                &key_key,
                format!("{}: the key file has no {field}", path.display()),
            )
        };
        let pem = k.private_key.ok_or_else(|| missing("private_key"))?;
        let client_email = k
            .client_email
            .filter(|e| !e.is_empty())
            .ok_or_else(|| missing("client_email"))?;
        use rustls::pki_types::pem::PemObject;
        let key = rustls::pki_types::PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes())
            .map_err(|e| {
                format!(
                    "{}: private_key is not a PKCS#8 PEM key: {e}",
                    path.display()
                )
            })
            .and_then(|der| {
                ring::rsa::KeyPair::from_pkcs8(der.secret_pkcs8_der()).map_err(|e| {
                    format!(
                        "{}: private_key is not an RSA key ring can sign with: {e}",
                        path.display()
                    )
                })
            })
            .map_err(|m| loc.error(&key_key, m))?;
        let subject = o
            .subject
            .as_deref()
            .or(default_subject)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                loc.error(
                    &op.key("subject"),
                    "missing: the user the service account acts for (domain-wide delegation)",
                )
            })?
            .to_string();
        Ok((
            ServiceAccount {
                key,
                key_id: k.private_key_id,
                client_email,
                subject,
            },
            k.token_uri,
        ))
    }
}
