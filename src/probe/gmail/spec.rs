//! A Gmail API target (`protocol = "gmail"`): its keys, their defaults and checks, and the
//! spec the probe runs.
//!
//! Keys besides every target's: `mailbox` (required: the user whose INBOX label is read),
//! `base_url` (`"https://gmail.googleapis.com"`), `max_body` (1 MiB), `ca_file`, `server_name`,
//! `ip_protocol`, `dns_servers`, and `[target.oauth2]` (required: a service account key with
//! domain-wide delegation, `sub` the mailbox, scope `gmail.labels`; or a refresh token).

use std::sync::Arc;

use futures::future::BoxFuture;
use secrecy::SecretString;
use serde::Deserialize;

use crate::config::oauth2::{OAuth2Defaults, OAuth2Spec, RawOAuth2};
use crate::config::{ConfigError, Endpoint, IpProtocol, TargetCx};
use crate::probe::api::keys::{ApiKeys, api_keys};
use crate::probe::registry::{ProbeSpec, Protocol, Target};
use crate::probe::spec::{ProtocolSpec, SpecTable, Targets};
use crate::probe::{Phase, PhaseError, PhaseRecorder, ProbeContext};

/// The Gmail API's endpoint.
pub const DEFAULT_BASE: &str = "https://gmail.googleapis.com";
/// The narrowest scope `users.labels.get` accepts: labels, never messages.
pub const GMAIL_SCOPE: &str = "https://www.googleapis.com/auth/gmail.labels";

/// What a Gmail probe does.
#[derive(Clone, Debug)]
pub struct GmailSpec {
    /// The API's base URL.
    pub base: url::Url,
    /// Host, port and TLS of the base URL.
    pub endpoint: Endpoint,
    /// The mailbox (the user's address).
    pub mailbox: String,
    /// The most body bytes read per answer.
    pub max_body: usize,
    /// Where the token comes from.
    pub oauth2: Arc<OAuth2Spec>,
}

/// The keys of a Gmail target, as written.
#[derive(Deserialize, Hash)]
#[serde(deny_unknown_fields)]
pub struct GmailTable {
    mailbox: Option<String>,
    base_url: Option<String>,
    max_body: Option<u64>,
    ca_file: Option<String>,
    server_name: Option<String>,
    dns_servers: Option<Vec<String>>,
    ip_protocol: Option<IpProtocol>,
    oauth2: Option<RawOAuth2>,
}

impl SpecTable for GmailTable {
    fn build(self, cx: &mut TargetCx<'_>, _: &Targets) -> Result<ProbeSpec, ConfigError> {
        let api = api_keys(
            cx,
            ApiKeys {
                base_url: self.base_url.as_deref(),
                default_base: DEFAULT_BASE,
                mailbox: self.mailbox.as_deref(),
                max_body: self.max_body,
                ca_file: self.ca_file.as_deref(),
                server_name: self.server_name.as_deref(),
                dns_servers: self.dns_servers.as_deref(),
                ip_protocol: self.ip_protocol,
            },
        )?;
        if self.oauth2.is_none() {
            return Err(cx.error(
                "oauth2",
                "missing: the Gmail API needs a token; add [target.oauth2] with provider = \
                 \"google\" and service_account_key_file",
            ));
        }
        let oauth2 = cx.oauth2_with(
            self.oauth2.as_ref(),
            OAuth2Defaults {
                delegated: GMAIL_SCOPE,
                google: Some(GMAIL_SCOPE),
                subject: Some(&api.mailbox),
                ..OAuth2Defaults::default()
            },
        )?;
        Ok(ProbeSpec::Gmail(Box::new(GmailSpec {
            base: api.base,
            endpoint: api.endpoint,
            mailbox: api.mailbox,
            max_body: api.max_body,
            oauth2: Arc::new(oauth2),
        })))
    }
}

impl ProtocolSpec for GmailSpec {
    fn protocol(&self) -> Protocol {
        Protocol::Gmail
    }

    fn endpoint(&self) -> Option<&Endpoint> {
        Some(&self.endpoint)
    }

    fn secrets(&self) -> Vec<&SecretString> {
        self.oauth2.secrets()
    }

    fn phases(&self) -> Vec<Phase> {
        vec![
            Phase::Token,
            Phase::Dns,
            Phase::Connect,
            Phase::Tls,
            Phase::Request,
            Phase::Body,
        ]
    }

    fn login_phase(&self) -> Option<Phase> {
        None
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
