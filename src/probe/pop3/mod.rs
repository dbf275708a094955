//! The POP3 probe (RFC 1939): connect, TLS (implicit, RFC 8314, or STLS, RFC 2595), greeting
//! and CAPA (RFC 2449), login (USER/PASS, or AUTH with SASL, RFC 5034), STAT, QUIT, each timed
//! as its own phase.
//!
//! CAPA has no phase of its own: the first CAPA is part of `greeting` (the server is ready and
//! says what it offers, as an IMAP greeting's CAPABILITY code does), and the one RFC 2595
//! section 4 requires after STLS is part of `login`, which is what it serves (the mechanisms
//! offered over TLS). So a POP3 target has the phases the issue names and no more series.
//!
//! Every line is read through [`Bounded`](super::bounded::Bounded) (RFC 2449 section 4 caps a
//! response line at 512 octets; [`LIMITS`] allows four times that) within the probe's deadline;
//! a multi-line answer has at most [`wire::MAX_CAPA_LINES`] lines. Answers are parsed strictly:
//! a line that is neither `+OK` nor `-ERR` where a status is due breaks the protocol, and so
//! does a STAT answer that is not `+OK count size`.

pub mod classify;
pub mod spec;
mod wire;

use std::fmt;

use base64::Engine;
use secrecy::{ExposeSecret, SecretString};

use super::bounded::Limits;
use super::net::Stream;
use super::sasl::{self, Bearer};
use super::{Phase, PhaseError, PhaseRecorder, ProbeContext, ProbeError};
use crate::config::{AuthMechanism, Secret, TlsMode};
pub use spec::Pop3Spec;
pub use wire::{Caps, StatusLine};
use wire::{Conn, shown};

/// Bounds for a POP3 session: four times RFC 2449's 512-octet response line, and 256 KiB in
/// all (a probe reads a greeting, CAPA twice and a few status lines).
pub const LIMITS: Limits = Limits {
    max_line: 2048,
    max_total: 256 * 1024,
};

/// RFC 5034 section 4: an AUTH command with its initial response is at most 255 octets; past
/// that the response waits for the server's empty challenge.
const MAX_AUTH_LINE: usize = 255;

/// Challenges answered in one AUTH before giving up on the server.
const MAX_CHALLENGES: usize = 8;

/// The POP3 commands whose answers decide a probe; the class depends on which was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// The greeting (no command: the server's first line).
    Greeting,
    /// `STLS` (RFC 2595).
    Stls,
    /// `USER`.
    User,
    /// `PASS`.
    Pass,
    /// `AUTH` with a SASL mechanism (RFC 5034).
    Auth,
    /// `STAT`.
    Stat,
    /// `QUIT`.
    Quit,
}

impl Command {
    /// As the protocol names it.
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Greeting => "greeting",
            Command::Stls => "STLS",
            Command::User => "USER",
            Command::Pass => "PASS",
            Command::Auth => "AUTH",
            Command::Stat => "STAT",
            Command::Quit => "QUIT",
        }
    }
}

/// How a POP3 server refused to let a probe through, kept as the server put it (judged in
/// [`classify`]).
#[derive(Debug)]
pub enum Refusal {
    /// A command (or the greeting) was answered `-ERR`.
    Answer {
        /// What was refused.
        command: Command,
        /// The `-ERR` line.
        answer: StatusLine,
        /// XOAUTH2 and OAUTHBEARER: the server's error challenge, decoded.
        challenge: Option<String>,
    },
    /// CAPA says the server does not take the password this way (no `USER` tag, or no
    /// `SASL PLAIN` when PLAIN is configured), so it was not sent.
    NotOffered {
        /// What is missing (`USER`, `SASL PLAIN`).
        what: &'static str,
        /// Whether the connection was TLS.
        tls: bool,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Answer {
                command,
                answer,
                challenge,
            } => {
                let rejected = classify::refusal(self).class
                    == crate::probe::classify::FailureClass::AuthRejected;
                if let Some(challenge) = challenge.as_ref().filter(|_| rejected) {
                    write!(f, "token rejected ({challenge}): ")?;
                }
                write!(f, "POP3 {}: {answer}", command.as_str())?;
                if let Some(code) = answer.code_upper()
                    && classify::code(&code) == classify::Pop3Code::Unknown
                {
                    write!(f, " (response code {code} is unknown to mailprobe)")?;
                }
                if let Some(challenge) = challenge.as_ref().filter(|_| !rejected) {
                    write!(f, " (after an error challenge: {challenge})")?;
                }
                Ok(())
            }
            Refusal::NotOffered { what, tls } => write!(
                f,
                "server's CAPA does not list {what}{}: it takes no password this way; the \
                 password was not sent",
                if *tls { "" } else { " before TLS" }
            ),
        }
    }
}

fn refused(command: Command, answer: StatusLine) -> ProbeError {
    ProbeError::Refused(Box::new(Refusal::Answer {
        command,
        answer,
        challenge: None,
    }))
}

/// `Ok` for `+OK`, the refusal of `command` for `-ERR`.
fn expect_ok(command: Command, answer: StatusLine) -> Result<StatusLine, ProbeError> {
    if answer.ok {
        Ok(answer)
    } else {
        Err(refused(command, answer))
    }
}

/// Runs one POP3 probe against `spec`, recording phases in `rec`.
pub async fn probe(
    spec: &Pop3Spec,
    ctx: &ProbeContext,
    rec: &mut PhaseRecorder,
) -> Result<(), PhaseError> {
    let ep = &spec.endpoint;
    let token = match &spec.credentials.secret {
        Secret::OAuth2(o) => Some(super::oauth2_token(rec, ctx, o).await?),
        Secret::Password(_) => None,
    };
    let tcp = super::resolve_and_connect(rec, ctx, ep).await?;
    let (mut conn, caps, tls) = match ep.tls {
        TlsMode::Implicit => {
            let mut conn = Conn::new(super::tls_handshake(rec, ep, tcp, &[]).await?, LIMITS);
            let caps = greet(rec, &mut conn).await?;
            (conn, Some(caps), true)
        }
        TlsMode::None => {
            let mut conn = Conn::new(Stream::Plain(tcp), LIMITS);
            let caps = greet(rec, &mut conn).await?;
            (conn, Some(caps), false)
        }
        TlsMode::Starttls => {
            let mut conn = Conn::new(Stream::Plain(tcp), LIMITS);
            let caps = greet(rec, &mut conn).await?;
            let offered = caps.has("STLS");
            if offered == Some(false) && ep.allow_plaintext {
                // Opportunistic: the admin accepted plaintext when STLS is not offered.
                (conn, Some(caps), false)
            } else {
                rec.phase(Phase::Starttls, stls(&mut conn, offered)).await?;
                let Some(tcp) = conn.into_stream().into_plain() else {
                    return Err(PhaseError {
                        phase: Phase::Starttls,
                        error: ProbeError::Internal("connection is already TLS".into()),
                    });
                };
                let conn = Conn::new(super::tls_handshake(rec, ep, tcp, &[]).await?, LIMITS);
                // RFC 2595 section 4: what was advertised before TLS is forgotten; `login`
                // asks again.
                (conn, None, true)
            }
        }
    };
    let login = login(&mut conn, spec, token.as_ref(), caps, tls);
    rec.phase(Phase::Login, login).await?;
    rec.phase(Phase::Stat, stat(&mut conn)).await?;
    rec.phase(Phase::Quit, async {
        expect_ok(Command::Quit, conn.command("QUIT").await?).map(|_| ())
    })
    .await?;
    Ok(())
}

/// The `greeting` phase: the server's `+OK` and what CAPA says it offers.
async fn greet(rec: &mut PhaseRecorder, conn: &mut Conn) -> Result<Caps, PhaseError> {
    let (greeting, caps) = rec
        .phase(Phase::Greeting, async {
            let greeting = expect_ok(Command::Greeting, conn.status().await?)?;
            let caps = capa(conn).await?;
            Ok::<_, ProbeError>((greeting, caps))
        })
        .await?;
    rec.set_banner(&greeting.text);
    Ok(caps)
}

/// CAPA (RFC 2449): a server without it answers `-ERR`, and then nothing is known.
async fn capa(conn: &mut Conn) -> Result<Caps, ProbeError> {
    if conn.command("CAPA").await?.ok {
        Ok(Caps::from_lines(&conn.multiline().await?))
    } else {
        Ok(Caps::unknown())
    }
}

/// STLS, unless CAPA said the server has no STLS (then nothing is sent).
async fn stls(conn: &mut Conn, offered: Option<bool>) -> Result<(), ProbeError> {
    if offered == Some(false) {
        return Err(ProbeError::NotAdvertised("STLS"));
    }
    expect_ok(Command::Stls, conn.command("STLS").await?).map(|_| ())
}

/// How the password goes to the server.
enum PasswordWay {
    /// `USER` then `PASS` (RFC 1939 section 7).
    UserPass,
    /// `AUTH PLAIN` (RFC 5034, RFC 4616).
    Plain,
}

async fn login(
    conn: &mut Conn,
    spec: &Pop3Spec,
    token: Option<&SecretString>,
    caps: Option<Caps>,
    tls: bool,
) -> Result<(), ProbeError> {
    let caps = match caps {
        Some(caps) => caps,
        None => capa(conn).await?,
    };
    let creds = &spec.credentials;
    let user = creds.username.as_str();
    match (&creds.secret, token) {
        (Secret::OAuth2(_), Some(token)) => {
            let configured = match spec.auth {
                Some(AuthMechanism::Oauthbearer) => Some(Bearer::OAuthBearer),
                Some(AuthMechanism::Xoauth2) => Some(Bearer::XOAuth2),
                _ => None,
            };
            let mech = Bearer::choose(configured, |m| caps.sasl(m) == Some(true));
            let ep = &spec.endpoint;
            let initial = mech.initial(user, token.expose_secret(), &ep.host, ep.port);
            let mut challenge = None;
            let answer = authenticate(conn, mech.name(), &initial, |server| {
                // The token was refused: the error challenge is answered as the mechanism
                // requires (XOAUTH2: an empty line) and kept for the detail.
                challenge = Some(sasl::decode_error(server));
                Some(mech.error_reply().to_vec())
            })
            .await?;
            if !answer.ok {
                return Err(ProbeError::Refused(Box::new(Refusal::Answer {
                    command: Command::Auth,
                    answer,
                    challenge,
                })));
            }
            Ok(())
        }
        (Secret::OAuth2(_), None) => Err(ProbeError::Internal(
            "no OAuth2 token to log in with".into(),
        )),
        (Secret::Password(password), _) => {
            let way = match spec.auth {
                Some(AuthMechanism::Plain) => PasswordWay::Plain,
                Some(AuthMechanism::Login) => PasswordWay::UserPass,
                // SASL PLAIN where CAPA offers it (one round trip, and RFC 5034 error codes),
                // else RFC 1939's USER and PASS.
                _ if caps.sasl("PLAIN") == Some(true) => PasswordWay::Plain,
                _ => PasswordWay::UserPass,
            };
            let password = password.expose_secret();
            match way {
                PasswordWay::Plain => {
                    if caps.sasl("PLAIN") == Some(false) {
                        return Err(not_offered("SASL PLAIN", tls));
                    }
                    let message = [b"\0", user.as_bytes(), b"\0", password.as_bytes()].concat();
                    let answer = authenticate(conn, "PLAIN", &message, |_| None).await?;
                    expect_ok(Command::Auth, answer).map(|_| ())
                }
                PasswordWay::UserPass => {
                    // RFC 2449 section 6.4: a server listing capabilities without USER does
                    // not take USER and PASS (Dovecot leaves it out where it refuses a
                    // password in clear).
                    if caps.has("USER") == Some(false) {
                        return Err(not_offered("USER", tls));
                    }
                    // Both are single lines (the config refuses a user name or secret with a
                    // line break), so neither can end its command early.
                    expect_ok(Command::User, conn.command(&format!("USER {user}")).await?)?;
                    expect_ok(
                        Command::Pass,
                        conn.command(&format!("PASS {password}")).await?,
                    )
                    .map(|_| ())
                }
            }
        }
    }
}

fn not_offered(what: &'static str, tls: bool) -> ProbeError {
    ProbeError::Refused(Box::new(Refusal::NotOffered { what, tls }))
}

/// `AUTH mechanism` with `initial` as its initial response where the line allows it (RFC 5034
/// section 4), else sent on the server's first (empty) challenge; every further challenge gets
/// what `respond` makes of it (decoded), or a cancel (`*`) when it has nothing to say. Returns
/// the final `+OK` or `-ERR`.
async fn authenticate(
    conn: &mut Conn,
    mechanism: &str,
    initial: &[u8],
    mut respond: impl FnMut(&[u8]) -> Option<Vec<u8>>,
) -> Result<StatusLine, ProbeError> {
    // RFC 5034 section 4: an empty initial response is sent as "=".
    let encoded = match sasl::b64(initial) {
        e if e.is_empty() => "=".to_string(),
        e => e,
    };
    let with_initial = format!("AUTH {mechanism} {encoded}");
    let mut pending = if with_initial.len() + 2 <= MAX_AUTH_LINE {
        conn.send(&with_initial).await?;
        None
    } else {
        conn.send(&format!("AUTH {mechanism}")).await?;
        Some(encoded)
    };
    for _ in 0..MAX_CHALLENGES {
        let line = conn.line().await?;
        if let Some(status) = StatusLine::parse(&line) {
            return Ok(status);
        }
        // RFC 5034 section 4: a challenge is "+" and a space, then base64 (possibly empty).
        let Some(text) = line
            .strip_prefix('+')
            .filter(|t| t.is_empty() || t.starts_with(' '))
        else {
            return Err(ProbeError::Protocol(format!(
                "AUTH {mechanism}: neither a challenge nor +OK or -ERR: {}",
                shown(&line)
            )));
        };
        let answer = match pending.take() {
            Some(encoded) => encoded,
            None => {
                let challenge = base64::engine::general_purpose::STANDARD
                    .decode(text.trim())
                    .unwrap_or_else(|_| text.trim().as_bytes().to_vec());
                match respond(&challenge) {
                    Some(raw) => sasl::b64(&raw),
                    None => "*".to_string(),
                }
            }
        };
        conn.send(&answer).await?;
    }
    Err(ProbeError::Protocol(format!(
        "AUTH {mechanism}: more than {MAX_CHALLENGES} challenges"
    )))
}

/// STAT, parsed strictly: `+OK count size` (RFC 1939 section 5; text may follow the size).
async fn stat(conn: &mut Conn) -> Result<(u64, u64), ProbeError> {
    let answer = expect_ok(Command::Stat, conn.command("STAT").await?)?;
    parse_stat(&answer.text).ok_or_else(|| {
        ProbeError::Protocol(format!(
            "STAT answer is not \"+OK count size\": {}",
            shown(&answer.to_string())
        ))
    })
}

/// `count size[ text]` after STAT's `+OK`.
fn parse_stat(text: &str) -> Option<(u64, u64)> {
    let mut words = text.splitn(3, ' ');
    let number = |w: Option<&str>| {
        w.filter(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_digit()))?
            .parse()
            .ok()
    };
    Some((number(words.next())?, number(words.next())?))
}

#[cfg(test)]
mod tests;
