//! An IMAP target (`protocol = "imap"`): its keys, their defaults and checks, and the spec the
//! probe runs.
//!
//! Keys besides every target's: `host` (required), `port` (993 with implicit TLS, 143 with
//! STARTTLS or none), `tls` (`"implicit"`), `allow_plaintext`, `ca_file`, `server_name`,
//! `ip_protocol`, `dns_servers`; `username` (required); `auth`: `"password"` (the default, with
//! `password_file` or `password_env`) or `"oauth2"` (with `[target.oauth2]`); `auth_mechanism`:
//! `"login"` (the default) or `"plain"` with a password, `"xoauth2"` or `"oauthbearer"` with a
//! token; `mailbox` (`"INBOX"`).

use futures::future::BoxFuture;
use secrecy::SecretString;
use serde::Deserialize;

use crate::config::credentials::refused_value;
use crate::config::oauth2::RawOAuth2;
use crate::config::{
    AuthMechanism, ConfigError, Credentials, Endpoint, EndpointKeys, IpProtocol, LoginKeys, Ports,
    TargetCx, TlsMode,
};
use crate::probe::phase::with_token;
use crate::probe::registry::{ProbeSpec, Protocol, Target};
use crate::probe::spec::{ProtocolSpec, SpecTable, Targets};
use crate::probe::{Phase, PhaseError, PhaseRecorder, ProbeContext};

/// IMAPS on 993; IMAP with STARTTLS, or without TLS, on 143.
const PORTS: Ports = Ports {
    implicit: 993,
    starttls: 143,
    plain: 143,
};

/// Microsoft's delegated permission for IMAP, asked for with a refresh token.
const DELEGATED_SCOPE: &str = "https://outlook.office.com/IMAP.AccessAsUser.All";

/// What an IMAP probe does.
#[derive(Clone, Debug)]
pub struct ImapSpec {
    /// Where the server is.
    pub endpoint: Endpoint,
    /// Who logs in.
    pub credentials: Credentials,
    /// How to log in; `None`: LOGIN with a password, or the bearer mechanism the server
    /// offers with OAuth2.
    pub auth: Option<AuthMechanism>,
    /// The mailbox to SELECT.
    pub mailbox: String,
}

/// The keys of an IMAP target, as written.
#[derive(Deserialize, Hash)]
#[serde(deny_unknown_fields)]
pub struct ImapTable {
    host: Option<String>,
    port: Option<u16>,
    tls: Option<TlsMode>,
    allow_plaintext: Option<bool>,
    username: Option<String>,
    password_file: Option<String>,
    password_env: Option<String>,
    /// Accepted by the parser only to refuse it with a helpful message.
    #[serde(default, deserialize_with = "refused_value")]
    password: Option<()>,
    ca_file: Option<String>,
    server_name: Option<String>,
    mailbox: Option<String>,
    auth_mechanism: Option<AuthMechanism>,
    auth: Option<String>,
    oauth2: Option<RawOAuth2>,
    dns_servers: Option<Vec<String>>,
    ip_protocol: Option<IpProtocol>,
}

impl SpecTable for ImapTable {
    fn build(self, cx: &mut TargetCx<'_>, _: &Targets) -> Result<ProbeSpec, ConfigError> {
        let endpoint = cx.endpoint(
            EndpointKeys {
                host: self.host.as_deref(),
                port: self.port,
                tls: self.tls,
                allow_plaintext: self.allow_plaintext,
                ca_file: self.ca_file.as_deref(),
                server_name: self.server_name.as_deref(),
                dns_servers: self.dns_servers.as_deref(),
                ip_protocol: self.ip_protocol,
                host_from_url: false,
            },
            TlsMode::Implicit,
            PORTS,
        )?;
        let credentials = cx.credentials(LoginKeys {
            username: self.username.as_deref(),
            password_file: self.password_file.as_deref(),
            password_env: self.password_env.as_deref(),
            auth: self.auth.as_deref(),
            auth_mechanism: self.auth_mechanism,
            oauth2: self.oauth2.as_ref(),
            delegated_scope: DELEGATED_SCOPE,
        })?;
        let mailbox = self.mailbox.unwrap_or_else(|| "INBOX".to_string());
        if mailbox.is_empty() || mailbox.contains(['\r', '\n']) {
            return Err(cx.error("mailbox", "must be a non-empty mailbox name"));
        }
        Ok(ProbeSpec::Imap(ImapSpec {
            endpoint,
            credentials,
            auth: self.auth_mechanism,
            mailbox,
        }))
    }
}

impl ProtocolSpec for ImapSpec {
    fn protocol(&self) -> Protocol {
        Protocol::Imap
    }

    fn endpoint(&self) -> Option<&Endpoint> {
        Some(&self.endpoint)
    }

    fn secrets(&self) -> Vec<&SecretString> {
        self.credentials.secret.static_secrets()
    }

    fn phases(&self) -> Vec<Phase> {
        let mut p = crate::probe::phase::to_greeting(self.endpoint.tls);
        p.extend([Phase::Login, Phase::Select, Phase::Logout]);
        with_token(self.credentials.is_oauth2(), p)
    }

    fn login_phase(&self) -> Option<Phase> {
        Some(Phase::Login)
    }

    fn dialogue<'a>(
        &'a self,
        _: &'a Target,
        ctx: &'a ProbeContext,
        rec: &'a mut PhaseRecorder,
    ) -> BoxFuture<'a, Result<(), PhaseError>> {
        Box::pin(super::probe(self, ctx, rec))
    }
}
