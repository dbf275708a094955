//! The SMTP probe: connect, TLS (implicit or STARTTLS), greeting, EHLO, EHLO again after TLS,
//! AUTH, optionally a test message (MAIL FROM, RCPT TO, DATA), QUIT, each timed as its own phase.
//!
//! The dialogue is driven by our own code rather than lettre's transport: lettre's `starttls()`
//! does STARTTLS, the handshake and the second EHLO in one call, so they could not be timed
//! apart, and its connection cannot run over our timed TLS stream. Replies are parsed strictly
//! (one code per reply, multi-line continuation, at most [`MAX_REPLY_LINES`] lines) and every read
//! is bounded by [`Bounded`]. lettre builds the test message.

pub mod classify;
pub mod spec;

use std::fmt;
use std::time::Instant;

use base64::Engine;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, Message};
use secrecy::ExposeSecret;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::bounded::{Bounded, Limits};
use super::net::Stream;
use super::sasl::{self, Bearer};
use super::{Phase, PhaseError, PhaseRecorder, ProbeContext, ProbeError};
use crate::config::{AuthMechanism, Credentials, Secret, TlsMode};
pub use spec::{SendSpec, SmtpSpec};

/// Bounds for an SMTP session. RFC 5321 caps reply lines at 512 octets; we allow more, but not
/// without limit.
pub const LIMITS: Limits = Limits {
    max_line: 8 * 1024,
    max_total: 1024 * 1024,
};
/// The most lines one reply may have (Postfix's EHLO reply has about ten).
pub const MAX_REPLY_LINES: usize = 256;
/// The header that carries a probe message's token, so probe mail can be found and cleaned.
pub const TOKEN_HEADER: &str = "X-Mailprobe-Token";
/// The most characters of a reply's text shown (in a detail): all its lines when they fit,
/// otherwise the start and the end, where providers put help links and session ids.
pub const MAX_REPLY_TEXT: usize = 640;

/// One SMTP reply: a code and its text lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit code.
    pub code: u16,
    /// Text of each line, without the code and separator.
    pub lines: Vec<String>,
}

impl Reply {
    /// The enhanced status code (RFC 3463, e.g. `5.7.8`) the reply starts with, if any.
    pub fn enhanced(&self) -> Option<&str> {
        let word = self.lines.first()?.split_whitespace().next()?;
        let parts: Vec<&str> = word.split('.').collect();
        let ok = parts.len() == 3
            && matches!(parts[0], "2" | "4" | "5")
            && parts[1..]
                .iter()
                .all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()));
        ok.then_some(word)
    }

    /// The first line's text.
    pub fn first_line(&self) -> &str {
        self.lines.first().map_or("", String::as_str)
    }

    /// Every line's text joined with spaces, the enhanced code said once (each line of a
    /// multi-line reply repeats it, RFC 2034 section 3), at most [`MAX_REPLY_TEXT`] characters.
    pub fn text(&self) -> String {
        let enhanced = self.enhanced();
        let mut text = String::with_capacity(self.lines.iter().map(String::len).sum::<usize>());
        for (i, line) in self.lines.iter().enumerate() {
            let line = match enhanced {
                Some(code) if i > 0 => line.strip_prefix(code).unwrap_or(line),
                _ => line,
            }
            .trim();
            if line.is_empty() {
                continue;
            }
            if !text.is_empty() {
                text.push(' ');
            }
            text.push_str(line);
        }
        head_and_tail(&text, MAX_REPLY_TEXT)
    }
}

/// `text` if it has at most `max` characters, otherwise its first two thirds and last third of
/// that, joined by an ellipsis.
fn head_and_tail(text: &str, max: usize) -> String {
    let n = text.chars().count();
    if n <= max {
        return text.to_string();
    }
    let head: String = text.chars().take(max * 2 / 3).collect();
    let tail: String = text.chars().skip(n - max / 3).collect();
    format!("{head} … {tail}")
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.text())
    }
}

/// A reply other than the one that lets the dialogue go on: the server refused, as it said it
/// (judged in [`classify`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal(pub Reply);

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SMTP {}", self.0)
    }
}

/// The error for a refusing `reply`.
fn refused(reply: Reply) -> ProbeError {
    ProbeError::Refused(Box::new(Refusal(reply)))
}

/// Parses one reply line: `(code, is_last, text)`.
fn parse_line(line: &str) -> Result<(u16, bool, &str), ProbeError> {
    let bad = || ProbeError::Protocol(format!("not an SMTP reply line: {line:?}"));
    let bytes = line.as_bytes();
    if bytes.len() < 3
        || !(b'2'..=b'5').contains(&bytes[0])
        || !bytes[1].is_ascii_digit()
        || !bytes[2].is_ascii_digit()
    {
        return Err(bad());
    }
    let code: u16 = line[..3].parse().map_err(|_| bad())?;
    match bytes.get(3) {
        None => Ok((code, true, "")),
        Some(b' ') => Ok((code, true, &line[4..])),
        Some(b'-') => Ok((code, false, &line[4..])),
        Some(_) => Err(bad()),
    }
}

/// What EHLO said the server supports.
#[derive(Debug, Default)]
struct Capabilities {
    starttls: bool,
    /// SASL mechanisms from the AUTH line, upper case.
    auth: Vec<String>,
}

impl Capabilities {
    fn from_reply(r: &Reply) -> Capabilities {
        let mut caps = Capabilities::default();
        for line in r.lines.iter().skip(1) {
            let mut words = line.split_whitespace();
            let Some(keyword) = words.next() else {
                continue;
            };
            let keyword = keyword.to_ascii_uppercase();
            if keyword == "STARTTLS" {
                caps.starttls = true;
            } else if keyword == "AUTH" || keyword.starts_with("AUTH=") {
                let first = keyword.strip_prefix("AUTH=").filter(|m| !m.is_empty());
                caps.auth.extend(first.map(str::to_string));
                caps.auth.extend(words.map(|w| w.to_ascii_uppercase()));
            }
        }
        caps
    }

    fn offers(&self, mechanism: &str) -> bool {
        self.auth.iter().any(|m| m == mechanism)
    }
}

/// A bounded, buffered SMTP connection.
struct Conn {
    io: BufReader<Bounded<Stream>>,
}

impl Conn {
    fn new(stream: Stream) -> Conn {
        Conn {
            io: BufReader::new(Bounded::new(stream, LIMITS)),
        }
    }

    /// The stream for a STARTTLS upgrade. Anything the server sent after its 220 is dropped with
    /// the buffer, as the STARTTLS injection defences require.
    fn into_stream(self) -> Stream {
        self.io.into_inner().into_inner()
    }

    async fn read_reply(&mut self) -> Result<Reply, ProbeError> {
        let mut code = None;
        let mut lines = Vec::new();
        let mut buf = Vec::with_capacity(128);
        loop {
            buf.clear();
            let n = self.io.read_until(b'\n', &mut buf).await?;
            if n == 0 || !buf.ends_with(b"\n") {
                return Err(ProbeError::Closed);
            }
            let text = String::from_utf8_lossy(&buf);
            let text = text.trim_end_matches(['\r', '\n']);
            let (c, last, rest) = parse_line(text)?;
            if code.is_some_and(|prev| prev != c) {
                return Err(ProbeError::Protocol(format!(
                    "reply changes its code mid-way: {text:?}"
                )));
            }
            code = Some(c);
            lines.push(rest.to_string());
            if last {
                return Ok(Reply { code: c, lines });
            }
            if lines.len() >= MAX_REPLY_LINES {
                return Err(ProbeError::Protocol(format!(
                    "reply longer than {MAX_REPLY_LINES} lines"
                )));
            }
        }
    }

    async fn send_raw(&mut self, data: &[u8]) -> Result<(), ProbeError> {
        let w = self.io.get_mut();
        w.write_all(data).await?;
        w.flush().await?;
        Ok(())
    }

    async fn command(&mut self, line: &str) -> Result<Reply, ProbeError> {
        let mut data = Vec::with_capacity(line.len() + 2);
        data.extend_from_slice(line.as_bytes());
        data.extend_from_slice(b"\r\n");
        self.send_raw(&data).await?;
        self.read_reply().await
    }
}

/// `reply` if its code is acceptable, otherwise the reply as the error.
fn expect(reply: Reply, ok: impl Fn(u16) -> bool) -> Result<Reply, ProbeError> {
    if ok(reply.code) {
        Ok(reply)
    } else {
        Err(refused(reply))
    }
}

/// A test message ready to submit.
#[derive(Clone, Debug)]
pub struct ProbeMessage {
    /// Unique token in the subject and the [`TOKEN_HEADER`].
    pub token: String,
    /// Envelope sender.
    pub from: lettre::Address,
    /// Envelope recipient.
    pub to: lettre::Address,
    /// The message, CRLF line ends, dot-stuffed, ending with the `.` line.
    data: Vec<u8>,
}

impl ProbeMessage {
    /// The subject the message carries (a Graph `sendMail` sets it itself).
    pub fn subject(&self) -> String {
        format!("mailprobe probe {}", self.token)
    }

    /// The text the message carries.
    pub const BODY: &'static str = "This message was sent by mailprobe to check that mail is \
        accepted and delivered.\r\nIt is deleted automatically; it is safe to delete.\r\n";

    /// Builds the message: marked as automatic (`Auto-Submitted`), with a unique `Message-ID`
    /// and the token in the subject and a header of its own, so it can be filtered and cleaned.
    pub fn new(send: &SendSpec, token: &str) -> Result<ProbeMessage, ProbeError> {
        let msg = Message::builder()
            .from(Mailbox::new(Some("mailprobe".into()), send.from.clone()))
            .to(Mailbox::new(None, send.to.clone()))
            .subject(format!("mailprobe probe {token}"))
            .message_id(Some(format!("<mailprobe.{token}@{}>", send.from.domain())))
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("Auto-Submitted"),
                "auto-generated".into(),
            ))
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str(TOKEN_HEADER),
                token.into(),
            ))
            .header(ContentType::TEXT_PLAIN)
            .body(Self::BODY.to_string())
            .map_err(|e| ProbeError::Internal(format!("cannot build the test message: {e}")))?;
        Ok(ProbeMessage {
            token: token.to_string(),
            from: send.from.clone(),
            to: send.to.clone(),
            data: dot_stuff(&msg.formatted()),
        })
    }
}

/// CRLF line ends, a `.` doubled at the start of any line, and the final `.` line.
fn dot_stuff(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + 16);
    let mut at_line_start = true;
    let mut prev = 0u8;
    for &b in raw {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_line_start = b == b'\n';
        prev = b;
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// The moment a message was accepted: the 250 after its data.
#[derive(Clone, Debug)]
pub struct Accepted {
    /// When the 250 arrived.
    pub at: Instant,
    /// The reply (Postfix names the queue id in it).
    pub reply: Reply,
}

/// Runs one SMTP probe against `spec`, recording phases in `rec`.
pub async fn probe(
    spec: &SmtpSpec,
    ctx: &ProbeContext,
    rec: &mut PhaseRecorder,
) -> Result<(), PhaseError> {
    let message = match &spec.send {
        Some(send) => Some(
            ProbeMessage::new(send, &crate::hash::unique_token()).map_err(|error| PhaseError {
                phase: Phase::MailFrom,
                error,
            })?,
        ),
        None => None,
    };
    session(spec, ctx, rec, message.as_ref()).await.map(|_| ())
}

/// One whole SMTP session; submits `message` when given and returns when it was accepted.
pub async fn session(
    spec: &SmtpSpec,
    ctx: &ProbeContext,
    rec: &mut PhaseRecorder,
    message: Option<&ProbeMessage>,
) -> Result<Option<Accepted>, PhaseError> {
    let ep = &spec.endpoint;
    let token = match spec.credentials.as_ref().map(|c| &c.secret) {
        Some(Secret::OAuth2(o)) => Some(super::oauth2_token(rec, ctx, o).await?),
        _ => None,
    };
    let tcp = super::resolve_and_connect(rec, ctx, ep).await?;
    let mut conn = match ep.tls {
        TlsMode::Implicit => Conn::new(super::tls_handshake(rec, ep, tcp, &[]).await?),
        TlsMode::Starttls | TlsMode::None => Conn::new(Stream::Plain(tcp)),
    };
    let greeting = rec
        .phase(Phase::Greeting, async {
            expect(conn.read_reply().await?, |c| c == 220)
        })
        .await?;
    rec.set_banner(greeting.first_line());
    let ehlo = format!("EHLO {}", spec.ehlo_name);
    let mut caps = rec
        .phase(Phase::Ehlo, async {
            let r = expect(conn.command(&ehlo).await?, |c| c == 250)?;
            Ok::<_, ProbeError>(Capabilities::from_reply(&r))
        })
        .await?;

    // Opportunistic (allow_plaintext) targets carry on in clear when STARTTLS is not offered.
    let upgrade = ep.tls == TlsMode::Starttls && (caps.starttls || !ep.allow_plaintext);
    if upgrade {
        rec.phase(Phase::Starttls, async {
            if !caps.starttls {
                return Err(ProbeError::NotAdvertised("STARTTLS"));
            }
            expect(conn.command("STARTTLS").await?, |c| c == 220).map(|_| ())
        })
        .await?;
        let Some(tcp) = conn.into_stream().into_plain() else {
            return Err(PhaseError {
                phase: Phase::Starttls,
                error: ProbeError::Internal("STARTTLS on a connection that is already TLS".into()),
            });
        };
        conn = Conn::new(super::tls_handshake(rec, ep, tcp, &[]).await?);
        caps = rec
            .phase(Phase::EhloTls, async {
                let r = expect(conn.command(&ehlo).await?, |c| c == 250)?;
                Ok::<_, ProbeError>(Capabilities::from_reply(&r))
            })
            .await?;
    }

    if let Some(creds) = &spec.credentials {
        let auth = authenticate(&mut conn, creds, spec, token.as_ref(), &caps);
        rec.phase(Phase::Auth, auth).await?;
    }

    let accepted = match message {
        Some(m) => Some(submit(&mut conn, rec, m).await?),
        None => None,
    };

    rec.phase(Phase::Quit, async {
        expect(conn.command("QUIT").await?, |c| c == 221).map(|_| ())
    })
    .await?;
    Ok(accepted)
}

async fn authenticate(
    conn: &mut Conn,
    creds: &Credentials,
    spec: &SmtpSpec,
    token: Option<&secrecy::SecretString>,
    caps: &Capabilities,
) -> Result<(), ProbeError> {
    let configured = spec.auth;
    if caps.auth.is_empty() {
        return Err(ProbeError::NotAdvertised("AUTH"));
    }
    let password = match (&creds.secret, token) {
        (Secret::Password(p), _) => p,
        (Secret::OAuth2(_), Some(token)) => {
            let configured = match configured {
                Some(AuthMechanism::Oauthbearer) => Some(Bearer::OAuthBearer),
                Some(AuthMechanism::Xoauth2) => Some(Bearer::XOAuth2),
                _ => None,
            };
            let mech = Bearer::choose(configured, |m| caps.offers(m));
            let ep = &spec.endpoint;
            let initial = mech.initial(&creds.username, token.expose_secret(), &ep.host, ep.port);
            let reply = conn
                .command(&format!("AUTH {} {}", mech.name(), sasl::b64(&initial)))
                .await?;
            return match reply.code {
                235 => Ok(()),
                334 => {
                    // The error challenge: answer it, then the final failure follows.
                    let challenge = base64::engine::general_purpose::STANDARD
                        .decode(reply.first_line().trim())
                        .unwrap_or_default();
                    let status = sasl::decode_error(&challenge);
                    let last = conn.command(&sasl::b64(mech.error_reply())).await?;
                    Err(ProbeError::TokenRejected {
                        status,
                        reply: last.to_string(),
                    })
                }
                _ => Err(refused(reply)),
            };
        }
        (Secret::OAuth2(_), None) => {
            return Err(ProbeError::Internal(
                "no OAuth2 token to authenticate with".into(),
            ));
        }
    };
    let mechanism = configured.unwrap_or(if caps.offers("PLAIN") || !caps.offers("LOGIN") {
        AuthMechanism::Plain
    } else {
        AuthMechanism::Login
    });
    let b64 = |data: &[u8]| base64::engine::general_purpose::STANDARD.encode(data);
    let password = password.expose_secret();
    match mechanism {
        AuthMechanism::Plain | AuthMechanism::Xoauth2 | AuthMechanism::Oauthbearer => {
            let blob = b64(format!("\0{}\0{password}", creds.username).as_bytes());
            expect(conn.command(&format!("AUTH PLAIN {blob}")).await?, |c| {
                c == 235
            })?;
        }
        AuthMechanism::Login => {
            expect(conn.command("AUTH LOGIN").await?, |c| c == 334)?;
            expect(conn.command(&b64(creds.username.as_bytes())).await?, |c| {
                c == 334
            })?;
            expect(conn.command(&b64(password.as_bytes())).await?, |c| c == 235)?;
        }
    }
    Ok(())
}

async fn submit(
    conn: &mut Conn,
    rec: &mut PhaseRecorder,
    m: &ProbeMessage,
) -> Result<Accepted, PhaseError> {
    let from = format!("MAIL FROM:<{}>", m.from);
    rec.phase(Phase::MailFrom, async {
        expect(conn.command(&from).await?, |c| c == 250).map(|_| ())
    })
    .await?;
    let to = format!("RCPT TO:<{}>", m.to);
    rec.phase(Phase::Rcpt, async {
        expect(conn.command(&to).await?, |c| c == 250 || c == 251).map(|_| ())
    })
    .await?;
    rec.phase(Phase::Data, async {
        expect(conn.command("DATA").await?, |c| c == 354)?;
        conn.send_raw(&m.data).await?;
        let reply = expect(conn.read_reply().await?, |c| c == 250)?;
        Ok::<_, ProbeError>(Accepted {
            at: Instant::now(),
            reply,
        })
    })
    .await
}

#[cfg(test)]
mod tests;
