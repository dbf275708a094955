//! The IMAP probe: connect, TLS (implicit or STARTTLS), greeting, LOGIN or AUTHENTICATE PLAIN,
//! SELECT, LOGOUT, each timed as its own phase.
//!
//! async-imap speaks the protocol over a stream we connect and time ourselves (so DNS, connect
//! and TLS are phases of their own), wrapped in [`Bounded`] so no server line or session can grow
//! without limit.

use async_imap::imap_proto::{Capability, Response, ResponseCode, Status};
use async_imap::{Authenticator, Client, Session};
use secrecy::{ExposeSecret, SecretString};

use super::bounded::{Bounded, Limits};
use super::net::Stream;
use super::sasl::{self, Bearer};
use super::{Phase, PhaseError, ProbeContext, ProbeError, Timeline};
use crate::config::{AuthMechanism, ImapSpec, Secret, TlsMode};

/// Bounds for an IMAP probe session: Dovecot's longest line here (CAPABILITY) is under 1 KiB.
pub const LIMITS: Limits = Limits {
    max_line: 64 * 1024,
    max_total: 1024 * 1024,
};

/// The stream an IMAP session runs over.
pub type Conn = Bounded<Stream>;

/// What the greeting told us.
struct Greeting {
    text: String,
    /// `Some(offered)` when the greeting carried a CAPABILITY code.
    starttls: Option<bool>,
    /// SASL mechanisms (`AUTH=...`, upper case) when the greeting carried a CAPABILITY code.
    auth: Option<Vec<String>>,
}

/// Runs one IMAP probe against `spec`, recording phases in `tl`.
pub async fn probe(
    spec: &ImapSpec,
    ctx: &ProbeContext,
    tl: &mut Timeline,
) -> Result<(), PhaseError> {
    let mut session = open(spec, ctx, tl, LIMITS).await?;
    tl.phase(Phase::Logout, session.logout()).await?;
    Ok(())
}

/// Connects, logs in and selects the mailbox: every phase up to `select`.
pub async fn open(
    spec: &ImapSpec,
    ctx: &ProbeContext,
    tl: &mut Timeline,
    limits: Limits,
) -> Result<Session<Conn>, PhaseError> {
    let ep = &spec.endpoint;
    let token = match &spec.credentials.secret {
        Secret::OAuth2(o) => Some(super::oauth2_token(tl, ctx, o).await?),
        Secret::Password(_) => None,
    };
    let tcp = super::open(tl, ctx, ep).await?;
    let mut offered = None;
    let client = match ep.tls {
        TlsMode::Implicit => {
            let tls = super::start_tls(tl, ep, tcp, &[]).await?;
            let mut client = Client::new(Bounded::new(tls, limits));
            offered = greet(tl, &mut client).await?.auth;
            client
        }
        TlsMode::None => {
            let mut client = Client::new(Bounded::new(Stream::Plain(tcp), limits));
            offered = greet(tl, &mut client).await?.auth;
            client
        }
        TlsMode::Starttls => {
            let mut client = Client::new(Bounded::new(Stream::Plain(tcp), limits));
            let greeting = greet(tl, &mut client).await?;
            if greeting.starttls == Some(false) && ep.allow_plaintext {
                // Opportunistic: the admin accepted plaintext when STARTTLS is not offered.
                offered = greeting.auth;
                client
            } else {
                tl.phase(Phase::Starttls, starttls(&mut client, greeting.starttls))
                    .await?;
                // Anything the server sent after its OK is dropped with the old buffer, as
                // RFC 3207-style injection defences require.
                let Some(tcp) = client.into_inner().into_inner().into_plain() else {
                    return Err(PhaseError {
                        phase: Phase::Starttls,
                        error: ProbeError::Protocol("connection is already TLS".into()),
                    });
                };
                let tls = super::start_tls(tl, ep, tcp, &[]).await?;
                Client::new(Bounded::new(tls, limits))
            }
        }
    };
    let login = login(client, spec, token.as_ref(), offered.as_deref());
    let mut session = tl.phase(Phase::Login, login).await?;
    tl.phase(Phase::Select, async {
        session.select(&spec.mailbox).await.map(|_| ())
    })
    .await?;
    Ok(session)
}

async fn greet(tl: &mut Timeline, client: &mut Client<Conn>) -> Result<Greeting, PhaseError> {
    let greeting = tl.phase(Phase::Greeting, read_greeting(client)).await?;
    tl.set_banner(&greeting.text);
    Ok(greeting)
}

async fn read_greeting(client: &mut Client<Conn>) -> Result<Greeting, ProbeError> {
    let response = client.read_response().await?.ok_or(ProbeError::Closed)?;
    match response.parsed() {
        Response::Data {
            status: Status::Ok | Status::PreAuth,
            outcome,
        } => {
            let (starttls, auth) = match &outcome.code {
                Some(ResponseCode::Capabilities(caps)) => (
                    Some(caps.iter().any(
                        |c| matches!(c, Capability::Atom(a) if a.eq_ignore_ascii_case("STARTTLS")),
                    )),
                    Some(
                        caps.iter()
                            .filter_map(|c| match c {
                                Capability::Auth(m) => Some(m.to_ascii_uppercase()),
                                _ => None,
                            })
                            .collect(),
                    ),
                ),
                _ => (None, None),
            };
            Ok(Greeting {
                text: outcome.information.as_deref().unwrap_or("").to_string(),
                starttls,
                auth,
            })
        }
        Response::Data {
            status: Status::Bye,
            outcome,
        } => Err(ProbeError::Unavailable(format!(
            "greeting was BYE: {}",
            outcome.information.as_deref().unwrap_or("")
        ))),
        other => Err(ProbeError::Protocol(format!(
            "greeting was not an untagged OK: {other:?}"
        ))),
    }
}

async fn starttls(client: &mut Client<Conn>, offered: Option<bool>) -> Result<(), ProbeError> {
    if offered == Some(false) {
        return Err(ProbeError::NotAdvertised("STARTTLS"));
    }
    client.run_command_and_check_ok("STARTTLS", None).await?;
    Ok(())
}

async fn login(
    client: Client<Conn>,
    spec: &ImapSpec,
    token: Option<&SecretString>,
    offered: Option<&[String]>,
) -> Result<Session<Conn>, ProbeError> {
    let creds = &spec.credentials;
    let password = match (&creds.secret, token) {
        (Secret::Password(p), _) => p,
        (Secret::OAuth2(_), Some(token)) => {
            let configured = match spec.auth {
                Some(AuthMechanism::Oauthbearer) => Some(Bearer::OAuthBearer),
                Some(AuthMechanism::Xoauth2) => Some(Bearer::XOAuth2),
                _ => None,
            };
            let mech = Bearer::choose(configured, |m| {
                offered.is_some_and(|o| o.iter().any(|x| x == m))
            });
            let ep = &spec.endpoint;
            let mut auth = BearerAuth {
                mech,
                initial: Some(mech.initial(
                    &creds.username,
                    token.expose_secret(),
                    &ep.host,
                    ep.port,
                )),
                rejected: None,
            };
            return match client.authenticate(mech.name(), &mut auth).await {
                Ok(session) => Ok(session),
                Err((e, _client)) => Err(match auth.rejected {
                    Some(status) => ProbeError::TokenRejected {
                        status,
                        reply: ProbeError::from(e).to_string(),
                    },
                    None => e.into(),
                }),
            };
        }
        (Secret::OAuth2(_), None) => {
            return Err(ProbeError::Protocol(
                "no OAuth2 token to log in with".into(),
            ));
        }
    };
    let result = match spec.auth.unwrap_or_default() {
        AuthMechanism::Plain => {
            let plain = PlainAuth {
                user: &creds.username,
                password: password.expose_secret(),
            };
            client.authenticate("PLAIN", plain).await
        }
        AuthMechanism::Login | AuthMechanism::Xoauth2 | AuthMechanism::Oauthbearer => {
            client
                .login(&creds.username, password.expose_secret())
                .await
        }
    };
    result.map_err(|(e, _client)| e.into())
}

/// XOAUTH2 or OAUTHBEARER: the initial response, then (if the token is refused) the answer to
/// the server's error challenge, whose decoded status is kept for the detail.
struct BearerAuth {
    mech: Bearer,
    initial: Option<Vec<u8>>,
    rejected: Option<String>,
}

impl Authenticator for &mut BearerAuth {
    type Response = Vec<u8>;
    fn process(&mut self, challenge: &[u8]) -> Vec<u8> {
        match self.initial.take() {
            Some(initial) => initial,
            None => {
                self.rejected = Some(sasl::decode_error(challenge));
                self.mech.error_reply().to_vec()
            }
        }
    }
}

/// SASL PLAIN (RFC 4616): `\0user\0password`, sent in answer to the empty challenge.
struct PlainAuth<'a> {
    user: &'a str,
    password: &'a str,
}

impl Authenticator for PlainAuth<'_> {
    type Response = Vec<u8>;
    fn process(&mut self, _challenge: &[u8]) -> Vec<u8> {
        let mut r = Vec::with_capacity(self.user.len() + self.password.len() + 2);
        r.push(0);
        r.extend_from_slice(self.user.as_bytes());
        r.push(0);
        r.extend_from_slice(self.password.as_bytes());
        r
    }
}
