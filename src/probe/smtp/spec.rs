//! An SMTP target (`protocol = "smtp"`): its keys, their defaults and checks, and the spec the
//! probe runs.
//!
//! Keys besides every target's: `host` (required), `port` (465 with implicit TLS, 587 with
//! STARTTLS, 25 without TLS), `tls` (`"starttls"`), `allow_plaintext`, `ca_file`,
//! `server_name`, `ip_protocol`, `dns_servers`; `username` (leave it out to probe without AUTH,
//! an MX); with a username, `auth`: `"password"` (the default, with `password_file` or
//! `password_env`) or `"oauth2"` (with `[target.oauth2]`), and `auth_mechanism`: `"plain"` or
//! `"login"` with a password (PLAIN when offered, else LOGIN), `"xoauth2"` or `"oauthbearer"`
//! with a token; `ehlo_name` (this machine's host name); `send_to` and `mail_from` for a test
//! message.

use futures::future::BoxFuture;
use secrecy::SecretString;
use serde::Deserialize;

use crate::config::common::check_host;
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

/// SMTPS on 465, submission with STARTTLS on 587, SMTP without TLS on 25.
const PORTS: Ports = Ports {
    implicit: 465,
    starttls: 587,
    plain: 25,
};

/// Microsoft's delegated permission for SMTP submission, asked for with a refresh token.
const DELEGATED_SCOPE: &str = "https://outlook.office.com/SMTP.Send";

/// A test message an SMTP probe submits after authenticating.
#[derive(Clone, Debug)]
pub struct SendSpec {
    /// Envelope sender and `From:`.
    pub from: lettre::Address,
    /// Envelope recipient and `To:`.
    pub to: lettre::Address,
}

/// What an SMTP probe does.
#[derive(Clone, Debug)]
pub struct SmtpSpec {
    /// Where the server is.
    pub endpoint: Endpoint,
    /// Who authenticates; `None` probes without AUTH (an MX on port 25).
    pub credentials: Option<Credentials>,
    /// SASL mechanism; `None` picks PLAIN when advertised, else LOGIN.
    pub auth: Option<AuthMechanism>,
    /// The name sent in EHLO.
    pub ehlo_name: String,
    /// The test message to submit, if any.
    pub send: Option<SendSpec>,
}

/// The keys of an SMTP target, as written.
#[derive(Deserialize, Hash)]
#[serde(deny_unknown_fields)]
pub struct SmtpTable {
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
    auth_mechanism: Option<AuthMechanism>,
    ehlo_name: Option<String>,
    mail_from: Option<String>,
    send_to: Option<String>,
    auth: Option<String>,
    oauth2: Option<RawOAuth2>,
    dns_servers: Option<Vec<String>>,
    ip_protocol: Option<IpProtocol>,
}

/// `value` at `key` as an email address.
pub(crate) fn address(
    cx: &TargetCx<'_>,
    key: &str,
    value: &str,
) -> Result<lettre::Address, ConfigError> {
    value
        .parse::<lettre::Address>()
        .map_err(|e| cx.error(key, format!("{value:?} is not an email address: {e}")))
}

impl SpecTable for SmtpTable {
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
            TlsMode::Starttls,
            PORTS,
        )?;
        let credentials = if self.username.is_some() {
            Some(cx.credentials(LoginKeys {
                username: self.username.as_deref(),
                password_file: self.password_file.as_deref(),
                password_env: self.password_env.as_deref(),
                auth: self.auth.as_deref(),
                auth_mechanism: self.auth_mechanism,
                oauth2: self.oauth2.as_ref(),
                delegated_scope: DELEGATED_SCOPE,
            })?)
        } else {
            cx.refuse_given(
                &[
                    "password_file",
                    "password_env",
                    "auth_mechanism",
                    "auth",
                    "oauth2",
                ],
                "has no effect without username (a target without username probes without \
                 AUTH)",
            )?;
            None
        };
        let ehlo_name = match &self.ehlo_name {
            Some(n) => {
                check_host(n).map_err(|m| cx.error("ehlo_name", m))?;
                n.clone()
            }
            None => default_ehlo_name(),
        };
        let send = match &self.send_to {
            None => {
                if self.mail_from.is_some() {
                    return Err(cx.error("mail_from", "has no effect without send_to"));
                }
                None
            }
            Some(to) => {
                let to = address(cx, "send_to", to)?;
                let from = match (&self.mail_from, &self.username) {
                    (Some(f), _) => address(cx, "mail_from", f)?,
                    (None, Some(u)) if u.contains('@') => address(cx, "username", u)?,
                    _ => {
                        return Err(cx.error(
                            "mail_from",
                            "missing: the sender of the test message (defaults to username \
                             when that is an address)",
                        ));
                    }
                };
                Some(SendSpec { from, to })
            }
        };
        Ok(ProbeSpec::Smtp(SmtpSpec {
            endpoint,
            credentials,
            auth: self.auth_mechanism,
            ehlo_name,
            send,
        }))
    }
}

/// The EHLO name when none is configured: this machine's host name if it is a usable one
/// (gethostname works under the systemd unit's `ProcSubset=pid`, /proc/sys does not).
pub(crate) fn default_ehlo_name() -> String {
    hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| check_host(h).is_ok())
        .unwrap_or_else(|| "localhost".to_string())
}

impl ProtocolSpec for SmtpSpec {
    fn protocol(&self) -> Protocol {
        Protocol::Smtp
    }

    fn endpoint(&self) -> Option<&Endpoint> {
        Some(&self.endpoint)
    }

    fn secrets(&self) -> Vec<&SecretString> {
        self.credentials
            .iter()
            .flat_map(|c| c.secret.static_secrets())
            .collect()
    }

    fn phases(&self) -> Vec<Phase> {
        let mut p = vec![Phase::Dns, Phase::Connect];
        match self.endpoint.tls {
            TlsMode::Implicit => p.extend([Phase::Tls, Phase::Greeting, Phase::Ehlo]),
            TlsMode::Starttls => p.extend([
                Phase::Greeting,
                Phase::Ehlo,
                Phase::Starttls,
                Phase::Tls,
                Phase::EhloTls,
            ]),
            TlsMode::None => p.extend([Phase::Greeting, Phase::Ehlo]),
        }
        if self.credentials.is_some() {
            p.push(Phase::Auth);
        }
        if self.send.is_some() {
            p.extend([Phase::MailFrom, Phase::Rcpt, Phase::Data]);
        }
        p.push(Phase::Quit);
        let oauth2 = self
            .credentials
            .as_ref()
            .is_some_and(Credentials::is_oauth2);
        with_token(oauth2, p)
    }

    fn login_phase(&self) -> Option<Phase> {
        self.credentials.is_some().then_some(Phase::Auth)
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
