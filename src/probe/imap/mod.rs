//! The IMAP probe: connect, TLS (implicit or STARTTLS), greeting, LOGIN or AUTHENTICATE, SELECT,
//! LOGOUT, each timed as its own phase.
//!
//! async-imap frames and parses what the server sends over a stream we connect and time
//! ourselves (so DNS, connect and TLS are phases of their own), wrapped in
//! [`Bounded`](super::bounded::Bounded) so no
//! server line or session can grow without limit. The commands that decide a probe's verdict
//! (CAPABILITY, STARTTLS, LOGIN, AUTHENTICATE, SELECT) are written and read here rather than by
//! async-imap, for three reasons: a refusal must reach the detail and [`classify`] as the
//! server sent it (`[ALERT]`, not async-imap's `[Alert]`; the untagged `* NO [WEBALERT <url>]`
//! line async-imap drops); LOGIN must not be sent where the server advertises LOGINDISABLED
//! (RFC 3501 6.2.3); and a password that a quoted string cannot carry (8-bit, CR, LF) goes as a
//! literal, which async-imap cannot send. After our own successful login the connection is
//! handed to async-imap as a [`Session`] (see [`Conn`]) for LOGOUT and the round trip's IDLE.

pub mod classify;
mod command;
mod conn;
pub mod spec;

use async_imap::imap_proto::{Response, Status};
use async_imap::{Client, Connection, Session};
use secrecy::{ExposeSecret, SecretString};

use super::bounded::Limits;
use super::net::Stream;
use super::sasl::{self, Bearer};
use super::{Phase, PhaseError, PhaseRecorder, ProbeContext, ProbeError};
use crate::config::{AuthMechanism, Secret, TlsMode};
pub use spec::ImapSpec;

use command::{Arg, Caps, authenticate, command, refused};
pub use command::{Command, Refusal, StatusLine};
pub use conn::Conn;

/// Bounds for an IMAP probe session: Dovecot's longest line here (CAPABILITY) is under 1 KiB.
pub const LIMITS: Limits = Limits {
    max_line: 64 * 1024,
    max_total: 1024 * 1024,
};

/// Runs one IMAP probe against `spec`, recording phases in `rec`.
pub async fn probe(
    spec: &ImapSpec,
    ctx: &ProbeContext,
    rec: &mut PhaseRecorder,
) -> Result<(), PhaseError> {
    let mut session = open_mailbox(spec, ctx, rec, LIMITS).await?;
    rec.phase(Phase::Logout, session.logout()).await?;
    Ok(())
}

/// Opens the mailbox: connects, logs in and selects it, every phase up to `select`.
pub async fn open_mailbox(
    spec: &ImapSpec,
    ctx: &ProbeContext,
    rec: &mut PhaseRecorder,
    limits: Limits,
) -> Result<Session<Conn>, PhaseError> {
    let ep = &spec.endpoint;
    let token = match &spec.credentials.secret {
        Secret::OAuth2(o) => Some(super::oauth2_token(rec, ctx, o).await?),
        Secret::Password(_) => None,
    };
    let tcp = super::resolve_and_connect(rec, ctx, ep).await?;
    let (client, caps, tls) = match ep.tls {
        TlsMode::Implicit => {
            let tls = super::tls_handshake(rec, ep, tcp, &[]).await?;
            let mut client = Client::new(Conn::new(tls, limits));
            let caps = greet(rec, &mut client).await?.caps;
            (client, caps, true)
        }
        TlsMode::None => {
            let mut client = Client::new(Conn::new(Stream::Plain(tcp), limits));
            let caps = greet(rec, &mut client).await?.caps;
            (client, caps, false)
        }
        TlsMode::Starttls => {
            let mut client = Client::new(Conn::new(Stream::Plain(tcp), limits));
            let greeting = greet(rec, &mut client).await?;
            let offered = greeting.caps.as_ref().map(|c| c.has("STARTTLS"));
            if offered == Some(false) && ep.allow_plaintext {
                // Opportunistic: the admin accepted plaintext when STARTTLS is not offered.
                (client, greeting.caps, false)
            } else {
                rec.phase(Phase::Starttls, starttls(&mut client, offered))
                    .await?;
                // Anything the server sent after its OK is dropped with the old buffer, as
                // RFC 3207-style injection defences require; what it advertised before TLS is
                // forgotten (RFC 3501 6.2.1).
                let Some(tcp) = client.into_inner().into_stream().into_plain() else {
                    return Err(PhaseError {
                        phase: Phase::Starttls,
                        error: ProbeError::Internal("connection is already TLS".into()),
                    });
                };
                let tls = super::tls_handshake(rec, ep, tcp, &[]).await?;
                (Client::new(Conn::new(tls, limits)), None, true)
            }
        }
    };
    let login = login(client, spec, token.as_ref(), caps, tls);
    let mut session = rec.phase(Phase::Login, login).await?;
    rec.phase(Phase::Select, select(&mut session, &spec.mailbox))
        .await?;
    Ok(session)
}

/// What the greeting told us.
struct Greeting {
    text: String,
    /// When the greeting carried a CAPABILITY code.
    caps: Option<Caps>,
}

async fn greet(rec: &mut PhaseRecorder, client: &mut Client<Conn>) -> Result<Greeting, PhaseError> {
    let greeting = rec.phase(Phase::Greeting, read_greeting(client)).await?;
    rec.set_banner(&greeting.text);
    Ok(greeting)
}

async fn read_greeting(client: &mut Client<Conn>) -> Result<Greeting, ProbeError> {
    let response = client.read_response().await?.ok_or(ProbeError::Closed)?;
    match response.parsed() {
        Response::Data {
            status: Status::Ok | Status::PreAuth,
            outcome,
        } => Ok(Greeting {
            text: outcome.information.as_deref().unwrap_or("").to_string(),
            caps: match &outcome.code {
                Some(async_imap::imap_proto::ResponseCode::Capabilities(caps)) => {
                    Some(Caps::from_proto(caps))
                }
                _ => None,
            },
        }),
        Response::Data {
            status: Status::Bye,
            ..
        } => {
            let bye = StatusLine::parse(response.borrow_owner());
            Err(ProbeError::Unavailable(format!("greeting was {bye}")))
        }
        other => Err(ProbeError::Protocol(format!(
            "greeting was not an untagged OK: {other:?}"
        ))),
    }
}

async fn starttls(client: &mut Client<Conn>, offered: Option<bool>) -> Result<(), ProbeError> {
    if offered == Some(false) {
        return Err(ProbeError::NotAdvertised("STARTTLS"));
    }
    let reply = command(client, "T1", &[Arg::Text("STARTTLS")], false).await?;
    if reply.done.status != "OK" {
        return Err(refused(Command::Starttls, reply));
    }
    Ok(())
}

async fn login(
    mut client: Client<Conn>,
    spec: &ImapSpec,
    token: Option<&SecretString>,
    mut caps: Option<Caps>,
    tls: bool,
) -> Result<Session<Conn>, ProbeError> {
    let creds = &spec.credentials;
    let user = creds.username.as_str();
    let (command_kind, reply) = match (&creds.secret, token) {
        (Secret::OAuth2(_), Some(token)) => {
            let configured = match spec.auth {
                Some(AuthMechanism::Oauthbearer) => Some(Bearer::OAuthBearer),
                Some(AuthMechanism::Xoauth2) => Some(Bearer::XOAuth2),
                _ => None,
            };
            let mech = Bearer::choose(configured, |m| {
                caps.as_ref().is_some_and(|c| c.has(&format!("AUTH={m}")))
            });
            let ep = &spec.endpoint;
            let mut initial = Some(mech.initial(user, token.expose_secret(), &ep.host, ep.port));
            let mut challenge = None;
            let reply = authenticate(&mut client, mech.name(), |server| {
                Some(match initial.take() {
                    Some(initial) => initial,
                    // The token was refused: the server's error challenge is answered as the
                    // mechanism requires, and its status kept for the detail.
                    None => {
                        challenge = Some(sasl::decode_error(server));
                        mech.error_reply().to_vec()
                    }
                })
            })
            .await?;
            if reply.done.status != "OK" {
                return Err(ProbeError::Refused(Box::new(Refusal::Answer {
                    command: Command::Authenticate,
                    answer: reply.done,
                    notes: reply.notes,
                    challenge,
                })));
            }
            (Command::Authenticate, reply)
        }
        (Secret::OAuth2(_), None) => {
            return Err(ProbeError::Internal(
                "no OAuth2 token to log in with".into(),
            ));
        }
        (Secret::Password(password), _) => match spec.auth.unwrap_or_default() {
            AuthMechanism::Plain => {
                // SASL PLAIN (RFC 4616): `\0user\0password`, UTF-8 as it is.
                let mut message = Some(
                    [
                        b"\0",
                        user.as_bytes(),
                        b"\0",
                        password.expose_secret().as_bytes(),
                    ]
                    .concat(),
                );
                let reply = authenticate(&mut client, "PLAIN", |_| message.take()).await?;
                (Command::Authenticate, reply)
            }
            AuthMechanism::Login | AuthMechanism::Xoauth2 | AuthMechanism::Oauthbearer => {
                // Without TLS, RFC 3501 6.2.3 forbids LOGIN where the server advertises
                // LOGINDISABLED: ask what it advertises if the greeting did not say.
                if caps.is_none() && !tls {
                    caps = Some(capability(&mut client).await?);
                }
                if caps.as_ref().is_some_and(|c| c.has("LOGINDISABLED")) {
                    return Err(ProbeError::Refused(Box::new(Refusal::LoginDisabled {
                        tls,
                    })));
                }
                let literal_plus = caps.as_ref().is_some_and(|c| c.has("LITERAL+"));
                let args = [
                    Arg::Text("LOGIN "),
                    Arg::String(user.as_bytes()),
                    Arg::Text(" "),
                    Arg::String(password.expose_secret().as_bytes()),
                ];
                let reply = command(&mut client, "L1", &args, literal_plus).await?;
                (Command::Login, reply)
            }
        },
    };
    if reply.done.status != "OK" {
        return Err(refused(command_kind, reply));
    }
    // Logged in: async-imap takes the session over (see `Conn`).
    client.get_mut().hand_over();
    client.login("-", "-").await.map_err(|(e, _)| {
        ProbeError::Internal(format!("handing the session to async-imap failed: {e}"))
    })
}

async fn select(session: &mut Session<Conn>, mailbox: &str) -> Result<(), ProbeError> {
    let args = [Arg::Text("SELECT "), Arg::String(mailbox.as_bytes())];
    let reply = command(session, "S1", &args, false).await?;
    if reply.done.status != "OK" {
        return Err(refused(Command::Select, reply));
    }
    Ok(())
}

async fn capability(conn: &mut Connection<Conn>) -> Result<Caps, ProbeError> {
    let mut reply = command(conn, "C1", &[Arg::Text("CAPABILITY")], false).await?;
    if reply.done.status != "OK" {
        return Err(refused(Command::Capability, reply));
    }
    reply.caps.take().ok_or_else(|| {
        ProbeError::Protocol("CAPABILITY completed without a CAPABILITY response".into())
    })
}
