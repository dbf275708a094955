//! A Microsoft Graph mail target (`protocol = "graph"`): its keys, their defaults and checks,
//! and the spec the probe runs.
//!
//! Keys besides every target's: `mailbox` (required: the user principal name or id whose
//! Inbox is read), `base_url` (`"https://graph.microsoft.com"`; a national cloud's, or a test
//! server's), `newest_message` (`false`: also list the newest message's id), `max_body` (1 MiB),
//! `ca_file`, `server_name`, `ip_protocol`, `dns_servers`, and `[target.oauth2]` (required:
//! the `microsoft` preset asks for `https://graph.microsoft.com/.default` with client
//! credentials).

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

/// Graph's global endpoint (national clouds have their own: graph.microsoft.us,
/// dod-graph.microsoft.us, microsoftgraph.chinacloudapi.cn).
pub const DEFAULT_BASE: &str = "https://graph.microsoft.com";
/// The application scope of Graph: every application permission granted to the app.
pub const GRAPH_SCOPE: &str = "https://graph.microsoft.com/.default";
/// Graph's delegated permission to read mail, asked for with a refresh token.
const DELEGATED_SCOPE: &str = "https://graph.microsoft.com/Mail.Read";

/// What a Graph probe does.
#[derive(Clone, Debug)]
pub struct GraphSpec {
    /// The API's base URL (`https://graph.microsoft.com`).
    pub base: url::Url,
    /// Host, port and TLS of the base URL.
    pub endpoint: Endpoint,
    /// The mailbox (user principal name or object id).
    pub mailbox: String,
    /// Also list the newest message of the Inbox.
    pub newest_message: bool,
    /// The most body bytes read per answer.
    pub max_body: usize,
    /// Where the token comes from.
    pub oauth2: Arc<OAuth2Spec>,
}

/// The keys of a Graph target, as written.
#[derive(Deserialize, Hash)]
#[serde(deny_unknown_fields)]
pub struct GraphTable {
    mailbox: Option<String>,
    base_url: Option<String>,
    newest_message: Option<bool>,
    max_body: Option<u64>,
    ca_file: Option<String>,
    server_name: Option<String>,
    dns_servers: Option<Vec<String>>,
    ip_protocol: Option<IpProtocol>,
    oauth2: Option<RawOAuth2>,
}

impl SpecTable for GraphTable {
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
                "missing: Graph needs a token; add [target.oauth2] with provider = \"microsoft\", \
                 tenant, client_id and a client secret or certificate",
            ));
        }
        let oauth2 = cx.oauth2_with(
            self.oauth2.as_ref(),
            OAuth2Defaults {
                delegated: DELEGATED_SCOPE,
                application: Some(GRAPH_SCOPE),
                ..OAuth2Defaults::default()
            },
        )?;
        Ok(ProbeSpec::Graph(Box::new(GraphSpec {
            base: api.base,
            endpoint: api.endpoint,
            mailbox: api.mailbox,
            newest_message: self.newest_message.unwrap_or(false),
            max_body: api.max_body,
            oauth2: Arc::new(oauth2),
        })))
    }
}

impl ProtocolSpec for GraphSpec {
    fn protocol(&self) -> Protocol {
        Protocol::Graph
    }

    fn endpoint(&self) -> Option<&Endpoint> {
        Some(&self.endpoint)
    }

    fn secrets(&self) -> Vec<&SecretString> {
        self.oauth2.secrets()
    }

    fn phases(&self) -> Vec<Phase> {
        let mut p = vec![
            Phase::Token,
            Phase::Dns,
            Phase::Connect,
            Phase::Tls,
            Phase::Request,
            Phase::Body,
        ];
        if self.newest_message {
            p.push(Phase::Messages);
        }
        p
    }

    fn login_phase(&self) -> Option<Phase> {
        // The token goes with the request, which has no login delay of its own to allow for.
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
