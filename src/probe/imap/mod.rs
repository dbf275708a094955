//! The IMAP probe: connect, TLS (implicit or STARTTLS), greeting, LOGIN or AUTHENTICATE, SELECT,
//! LOGOUT, each timed as its own phase.
//!
//! async-imap frames and parses what the server sends over a stream we connect and time
//! ourselves (so DNS, connect and TLS are phases of their own), wrapped in [`Bounded`] so no
//! server line or session can grow without limit. The commands that decide a probe's verdict
//! (CAPABILITY, STARTTLS, LOGIN, AUTHENTICATE, SELECT) are written and read here rather than by
//! async-imap, for three reasons: a refusal must reach the detail and [`classify`] as the
//! server sent it (`[ALERT]`, not async-imap's `[Alert]`; the untagged `* NO [WEBALERT <url>]`
//! line async-imap drops); LOGIN must not be sent where the server advertises LOGINDISABLED
//! (RFC 3501 6.2.3); and a password that a quoted string cannot carry (8-bit, CR, LF) goes as a
//! literal, which async-imap cannot send. After our own successful login the connection is
//! handed to async-imap as a [`Session`] (see [`Conn`]) for LOGOUT and the round trip's IDLE.

pub mod classify;
pub mod spec;

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use async_imap::imap_proto::{Capability, Response, Status};
use async_imap::{Client, Connection, Session};
use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::bounded::{Bounded, Limits};
use super::net::Stream;
use super::sasl::{self, Bearer};
use super::{Phase, PhaseError, PhaseRecorder, ProbeContext, ProbeError};
use crate::config::{AuthMechanism, Secret, TlsMode};
pub use spec::ImapSpec;

/// Bounds for an IMAP probe session: Dovecot's longest line here (CAPABILITY) is under 1 KiB.
pub const LIMITS: Limits = Limits {
    max_line: 64 * 1024,
    max_total: 1024 * 1024,
};

/// Untagged lines kept with a refusal (alerts, warnings, a BYE): enough for Gmail's WEBALERT
/// and Exchange's closing BYE, bounded against a server that sends nothing else.
const MAX_NOTES: usize = 4;

/// Continuation requests answered in one AUTHENTICATE before giving up on the server.
const MAX_CHALLENGES: usize = 8;

/// The stream an IMAP session runs over: bounded, and able to hand over a session logged in here
/// to async-imap.
///
/// async-imap makes a [`Session`] only out of its own `login` or `authenticate`. After our own
/// LOGIN or AUTHENTICATE succeeded, `Conn::hand_over` arms a one-shot switch: async-imap's
/// `login` command line is swallowed instead of sent, and the completion it waits for is served
/// locally, so async-imap takes the already authenticated connection. Nothing of this reaches
/// the server.
#[derive(Debug)]
pub struct Conn {
    inner: Bounded<Stream>,
    handover: Handover,
}

#[derive(Debug)]
enum Handover {
    /// Everything goes to and from the server.
    Off,
    /// Swallowing async-imap's command line (up to its CRLF).
    Swallow(Vec<u8>),
    /// Serving the completion async-imap waits for.
    Complete(Vec<u8>),
}

impl Conn {
    fn new(stream: Stream, limits: Limits) -> Conn {
        Conn {
            inner: Bounded::new(stream, limits),
            handover: Handover::Off,
        }
    }

    /// The connection itself (the bounds' counters are dropped; e.g. for a STARTTLS upgrade).
    fn into_stream(self) -> Stream {
        self.inner.into_inner()
    }

    fn hand_over(&mut self) {
        self.handover = Handover::Swallow(Vec::new());
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Handover::Complete(line) = &mut this.handover {
            let n = line.len().min(buf.remaining());
            buf.put_slice(&line[..n]);
            line.drain(..n);
            if line.is_empty() {
                this.handover = Handover::Off;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Handover::Swallow(line) = &mut this.handover {
            line.extend_from_slice(data);
            if line.len() > 256 {
                return Poll::Ready(Err(io::Error::other("session handover: command too long")));
            }
            if line.ends_with(b"\r\n") {
                let tag = line.split(|&b| b == b' ').next().unwrap_or_default();
                let mut done = tag.to_vec();
                done.extend_from_slice(b" OK handed over\r\n");
                this.handover = Handover::Complete(done);
            }
            return Poll::Ready(Ok(data.len()));
        }
        Pin::new(&mut this.inner).poll_write(cx, data)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.handover {
            Handover::Off => Pin::new(&mut this.inner).poll_flush(cx),
            _ => Poll::Ready(Ok(())),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// What the server advertises: capability atoms upper-cased, `AUTH=` mechanisms included.
#[derive(Clone, Debug, Default)]
struct Caps(Vec<String>);

impl Caps {
    fn from_proto(caps: &[Capability<'_>]) -> Caps {
        Caps(
            caps.iter()
                .map(|c| match c {
                    Capability::Imap4rev1 => "IMAP4REV1".to_string(),
                    Capability::Auth(m) => format!("AUTH={}", m.to_ascii_uppercase()),
                    Capability::Atom(a) => a.to_ascii_uppercase(),
                })
                .collect(),
        )
    }

    fn has(&self, atom: &str) -> bool {
        self.0.iter().any(|c| c == atom)
    }
}

/// An IMAP status response as the server sent it: `OK`, `NO`, `BAD`, `BYE` or `PREAUTH`, the
/// response code between the brackets, and the text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusLine {
    /// The status word, upper-cased.
    pub status: String,
    /// The response code as sent, without its brackets (`LIMIT`, `WEBALERT https://...`).
    pub code: Option<String>,
    /// The human-readable text after the code.
    pub text: String,
}

impl StatusLine {
    /// Reads `tag-or-* STATUS [ [code] ] text` from the start of `raw` (up to its CRLF).
    pub fn parse(raw: &[u8]) -> StatusLine {
        let end = raw
            .windows(2)
            .position(|w| w == b"\r\n")
            .unwrap_or(raw.len());
        let line = String::from_utf8_lossy(&raw[..end]);
        let mut words = line.splitn(3, ' ');
        let _tag = words.next();
        let status = words.next().unwrap_or_default().to_ascii_uppercase();
        let rest = words.next().unwrap_or_default();
        let (code, text) = match rest.strip_prefix('[').and_then(|r| r.split_once(']')) {
            Some((code, text)) => (
                Some(code.to_string()),
                text.strip_prefix(' ').unwrap_or(text),
            ),
            None => (None, rest),
        };
        StatusLine {
            status,
            code,
            text: text.to_string(),
        }
    }

    /// The response code's name, upper-cased (`WEBALERT` of `WEBALERT https://...`).
    pub fn code_name(&self) -> Option<String> {
        self.code
            .as_deref()
            .map(|c| c.split(' ').next().unwrap_or_default().to_ascii_uppercase())
    }
}

impl fmt::Display for StatusLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.status)?;
        if let Some(code) = &self.code {
            write!(f, " [{code}]")?;
        }
        if !self.text.is_empty() {
            write!(f, " {}", self.text)?;
        }
        Ok(())
    }
}

/// The IMAP commands whose refusal decides a probe; the class depends on which was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// `CAPABILITY`, asked before LOGIN when the greeting did not say.
    Capability,
    /// `STARTTLS`.
    Starttls,
    /// `LOGIN`.
    Login,
    /// `AUTHENTICATE` with a SASL mechanism.
    Authenticate,
    /// `SELECT` of the probed mailbox.
    Select,
}

/// How an IMAP server refused to let a probe through, kept as the server put it.
#[derive(Debug)]
pub enum Refusal {
    /// A command was completed with NO or BAD, or the server said BYE and hung up.
    Answer {
        /// The command refused.
        command: Command,
        /// The tagged completion (or the BYE).
        answer: StatusLine,
        /// Untagged NO, BAD and BYE lines and alerts that came with it, at most `MAX_NOTES`.
        notes: Vec<StatusLine>,
        /// XOAUTH2 and OAUTHBEARER: the server's error challenge, decoded.
        challenge: Option<String>,
    },
    /// The server advertises LOGINDISABLED (RFC 3501 6.2.3), so LOGIN was not sent.
    LoginDisabled {
        /// Whether the connection was already TLS.
        tls: bool,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Answer {
                answer,
                notes,
                challenge,
                ..
            } => {
                // A refused token is said so; an error challenge before another refusal (Gmail
                // sends one before its connection limit) is only mentioned.
                let rejected =
                    classify::refusal(self) == crate::probe::classify::FailureClass::AuthRejected;
                if let Some(challenge) = challenge.as_ref().filter(|_| rejected) {
                    write!(f, "token rejected ({challenge}): ")?;
                }
                write!(f, "IMAP {answer}")?;
                if let Some(name) = answer.code_name()
                    && classify::code(&name) == classify::ImapCode::Unknown
                {
                    write!(f, " (response code {name} is unknown to mailprobe)")?;
                }
                if let Some(challenge) = challenge.as_ref().filter(|_| !rejected) {
                    write!(f, " (after an error challenge: {challenge})")?;
                }
                for note in notes {
                    write!(f, "; * {note}")?;
                }
                Ok(())
            }
            Refusal::LoginDisabled { tls: false } => f.write_str(
                "server advertises LOGINDISABLED: it takes no LOGIN without TLS; the password \
                 was not sent",
            ),
            Refusal::LoginDisabled { tls: true } => f.write_str(
                "server advertises LOGINDISABLED: it takes no LOGIN; the password was not sent",
            ),
        }
    }
}

fn refused(command: Command, reply: Reply) -> ProbeError {
    ProbeError::Refused(Box::new(Refusal::Answer {
        command,
        answer: reply.done,
        notes: reply.notes,
        challenge: None,
    }))
}

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

/// A piece of a command line.
enum Arg<'a> {
    /// Sent as it is.
    Text(&'a str),
    /// An `astring` value: a quoted string when it can be one, else a literal.
    String(&'a [u8]),
}

/// Whether a quoted string can carry `value`: 7-bit, no NUL, CR or LF (RFC 3501 `QUOTED-CHAR`).
fn quotable(value: &[u8]) -> bool {
    value
        .iter()
        .all(|&b| (1..=0x7f).contains(&b) && b != b'\r' && b != b'\n')
}

/// What a command got back.
struct Reply {
    /// The tagged completion.
    done: StatusLine,
    /// Untagged NO/BAD/BYE lines and alerts that came before it.
    notes: Vec<StatusLine>,
    /// An untagged CAPABILITY response, if one came.
    caps: Option<Caps>,
}

/// Where reading a command's responses stopped.
enum Step {
    /// The server asks for more (a literal's bytes, a SASL response): its text, if any.
    Continue(Option<String>),
    /// The tagged completion.
    Done(StatusLine),
}

/// Sends `args` under `tag` and reads until the tagged completion, sending a literal's bytes
/// when the server asks for them (or at once with LITERAL+, RFC 7888).
async fn command(
    conn: &mut Connection<Conn>,
    tag: &str,
    args: &[Arg<'_>],
    literal_plus: bool,
) -> Result<Reply, ProbeError> {
    let mut reply = Reply {
        done: StatusLine::parse(b""),
        notes: Vec::new(),
        caps: None,
    };
    let mut line = format!("{tag} ").into_bytes();
    for arg in args {
        match arg {
            Arg::Text(t) => line.extend_from_slice(t.as_bytes()),
            Arg::String(v) if quotable(v) => {
                line.push(b'"');
                for &b in *v {
                    if b == b'"' || b == b'\\' {
                        line.push(b'\\');
                    }
                    line.push(b);
                }
                line.push(b'"');
            }
            Arg::String(v) => {
                let plus = if literal_plus { "+" } else { "" };
                line.extend_from_slice(format!("{{{}{plus}}}\r\n", v.len()).as_bytes());
                if !literal_plus {
                    send(conn, &line).await?;
                    line.clear();
                    match next_step(conn, tag, &mut reply).await? {
                        Step::Continue(_) => {}
                        // Refused before the literal was sent (its bytes never go out).
                        Step::Done(done) => {
                            reply.done = done;
                            return Ok(reply);
                        }
                    }
                }
                line.extend_from_slice(v);
            }
        }
    }
    line.extend_from_slice(b"\r\n");
    send(conn, &line).await?;
    match next_step(conn, tag, &mut reply).await? {
        Step::Done(done) => {
            reply.done = done;
            Ok(reply)
        }
        Step::Continue(_) => Err(ProbeError::Protocol(
            "server asked for more of a complete command".into(),
        )),
    }
}

/// `AUTHENTICATE mechanism`, answering each challenge with what `respond` makes of it (decoded),
/// or cancelling (`*`) when it has nothing more to say.
async fn authenticate(
    conn: &mut Connection<Conn>,
    mechanism: &str,
    mut respond: impl FnMut(&[u8]) -> Option<Vec<u8>>,
) -> Result<Reply, ProbeError> {
    let tag = "L1";
    let mut reply = Reply {
        done: StatusLine::parse(b""),
        notes: Vec::new(),
        caps: None,
    };
    send(
        conn,
        format!("{tag} AUTHENTICATE {mechanism}\r\n").as_bytes(),
    )
    .await?;
    for _ in 0..MAX_CHALLENGES {
        match next_step(conn, tag, &mut reply).await? {
            Step::Done(done) => {
                reply.done = done;
                return Ok(reply);
            }
            Step::Continue(text) => {
                let text = text.unwrap_or_default();
                let challenge = base64::engine::general_purpose::STANDARD
                    .decode(text.trim())
                    .unwrap_or_else(|_| text.into_bytes());
                let answer = match respond(&challenge) {
                    Some(raw) => format!("{}\r\n", sasl::b64(&raw)),
                    None => "*\r\n".to_string(),
                };
                send(conn, answer.as_bytes()).await?;
            }
        }
    }
    Err(ProbeError::Protocol(format!(
        "AUTHENTICATE {mechanism}: more than {MAX_CHALLENGES} challenges"
    )))
}

async fn send(conn: &mut Connection<Conn>, bytes: &[u8]) -> Result<(), ProbeError> {
    let stream = conn.get_mut();
    stream.write_all(bytes).await?;
    stream.flush().await?;
    Ok(())
}

/// Reads responses until `tag`'s completion or a continuation request, keeping the untagged
/// lines worth showing in `reply`. A BYE followed by the end of the connection is the answer.
async fn next_step(
    conn: &mut Connection<Conn>,
    tag: &str,
    reply: &mut Reply,
) -> Result<Step, ProbeError> {
    let mut bye = None;
    loop {
        let Some(response) = conn.read_response().await? else {
            return match bye {
                Some(bye) => Ok(Step::Done(bye)),
                None => Err(ProbeError::Closed),
            };
        };
        let note = match response.parsed() {
            Response::Done { tag: t, .. } if t.0 == tag => {
                return Ok(Step::Done(StatusLine::parse(response.borrow_owner())));
            }
            Response::Continue(outcome) => {
                return Ok(Step::Continue(
                    outcome.information.as_deref().map(str::to_string),
                ));
            }
            Response::Capabilities(caps) => {
                reply.caps = Some(Caps::from_proto(caps));
                None
            }
            Response::Data { status, .. } => {
                let line = StatusLine::parse(response.borrow_owner());
                match status {
                    Status::Bye => {
                        bye = Some(line.clone());
                        Some(line)
                    }
                    Status::No | Status::Bad => Some(line),
                    // Alerts are for the user to see (RFC 3501 7.1); other codes are data.
                    _ if matches!(line.code_name().as_deref(), Some("ALERT" | "WEBALERT")) => {
                        Some(line)
                    }
                    _ => None,
                }
            }
            _ => None,
        };
        if let Some(note) = note
            && reply.notes.len() < MAX_NOTES
        {
            reply.notes.push(note);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_keep_the_code_as_sent() {
        let l =
            StatusLine::parse(b"A1 NO [ALERT] Too many simultaneous connections. (Failure)\r\n");
        assert_eq!(l.status, "NO");
        assert_eq!(l.code.as_deref(), Some("ALERT"));
        assert_eq!(l.text, "Too many simultaneous connections. (Failure)");
        assert_eq!(
            l.to_string(),
            "NO [ALERT] Too many simultaneous connections. (Failure)"
        );
        let l = StatusLine::parse(
            b"* NO [WEBALERT https://a.example/x?y=1] Web login required.\r\n\0\0",
        );
        assert_eq!(l.code_name().as_deref(), Some("WEBALERT"));
        assert_eq!(l.code.as_deref(), Some("WEBALERT https://a.example/x?y=1"));
        let l = StatusLine::parse(b"L1 no\r\n");
        assert_eq!(
            (l.status.as_str(), l.code, l.text.as_str()),
            ("NO", None, "")
        );
        let l = StatusLine::parse(b"L1 NO [UNAVAILABLE\r\n");
        assert_eq!((l.code, l.text.as_str()), (None, "[UNAVAILABLE"));
    }

    #[test]
    fn only_7bit_values_without_line_breaks_are_quoted() {
        assert!(quotable(br#"Pw"Quo\te"#));
        assert!(!quotable("pässwort".as_bytes()));
        assert!(!quotable(b"a\r\nb"));
        assert!(!quotable(b"a\0b"));
    }
}
