//! The IMAP commands that decide a probe, written and read here rather than by async-imap (the
//! module doc of `imap` says why): command lines with quoted strings or literals, AUTHENTICATE
//! with its challenges, and every response read until the tagged completion, keeping a
//! refusal's code, text and untagged notes as the server sent them.

use std::fmt;

use async_imap::Connection;
use async_imap::imap_proto::{Capability, Response, Status};
use base64::Engine;
use tokio::io::AsyncWriteExt;

use super::super::sasl;
use super::classify;
use super::conn::Conn;
use crate::probe::ProbeError;

/// Untagged lines kept with a refusal (alerts, warnings, a BYE): enough for Gmail's WEBALERT
/// and Exchange's closing BYE, bounded against a server that sends nothing else.
const MAX_NOTES: usize = 4;

/// Continuation requests answered in one AUTHENTICATE before giving up on the server.
const MAX_CHALLENGES: usize = 8;

/// What the server advertises: capability atoms upper-cased, `AUTH=` mechanisms included.
#[derive(Clone, Debug, Default)]
pub(super) struct Caps(Vec<String>);

impl Caps {
    pub(super) fn from_proto(caps: &[Capability<'_>]) -> Caps {
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

    pub(super) fn has(&self, atom: &str) -> bool {
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

pub(super) fn refused(command: Command, reply: Reply) -> ProbeError {
    ProbeError::Refused(Box::new(Refusal::Answer {
        command,
        answer: reply.done,
        notes: reply.notes,
        challenge: None,
    }))
}

/// A piece of a command line.
pub(super) enum Arg<'a> {
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
pub(super) struct Reply {
    /// The tagged completion.
    pub(super) done: StatusLine,
    /// Untagged NO/BAD/BYE lines and alerts that came before it.
    pub(super) notes: Vec<StatusLine>,
    /// An untagged CAPABILITY response, if one came.
    pub(super) caps: Option<Caps>,
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
pub(super) async fn command(
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
pub(super) async fn authenticate(
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
