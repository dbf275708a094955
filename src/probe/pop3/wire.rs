//! POP3 on the wire: status lines (`+OK`, `-ERR` with an RFC 2449 response code), CAPA's
//! multi-line answer, and a bounded, buffered connection that reads them.

use std::fmt;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::super::bounded::{Bounded, Limits};
use super::super::net::Stream;
use crate::probe::ProbeError;

/// The most lines of one multi-line answer (CAPA): Dovecot's has ten, the RFC's registry about
/// fifteen tags.
pub const MAX_CAPA_LINES: usize = 64;

/// Characters of a line that broke the protocol kept in the detail.
const SHOWN: usize = 120;

/// A POP3 status line as the server sent it: `+OK` or `-ERR`, the RFC 2449 response code
/// between brackets, and the text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusLine {
    /// `+OK` (true) or `-ERR` (false).
    pub ok: bool,
    /// The response code as sent, without its brackets (`SYS/TEMP`, `IN-USE`).
    pub code: Option<String>,
    /// The text after the code.
    pub text: String,
}

impl StatusLine {
    /// Reads `+OK [text]` or `-ERR [[code] ]text` (without CRLF); anything else is not a POP3
    /// status line (RFC 1939 section 3: the indicators are upper case, then a space or the end).
    pub fn parse(line: &str) -> Option<StatusLine> {
        let (ok, rest) = if let Some(rest) = line.strip_prefix("+OK") {
            (true, rest)
        } else if let Some(rest) = line.strip_prefix("-ERR") {
            (false, rest)
        } else {
            return None;
        };
        let rest = match rest.strip_prefix(' ') {
            Some(r) => r,
            None if rest.is_empty() => rest,
            None => return None,
        };
        // RFC 2449 section 8: the code is the first thing after the indicator, in brackets.
        let (code, text) = match rest.strip_prefix('[').and_then(|r| r.split_once(']')) {
            Some((code, text)) if !code.is_empty() && !code.contains(' ') => (
                Some(code.to_string()),
                text.strip_prefix(' ').unwrap_or(text),
            ),
            _ => (None, rest),
        };
        Some(StatusLine {
            ok,
            code,
            text: text.to_string(),
        })
    }

    /// The response code, upper-cased (codes are case-insensitive, RFC 2449 section 8).
    pub fn code_upper(&self) -> Option<String> {
        self.code.as_deref().map(str::to_ascii_uppercase)
    }
}

impl fmt::Display for StatusLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.ok { "+OK" } else { "-ERR" })?;
        if let Some(code) = &self.code {
            write!(f, " [{code}]")?;
        }
        if !self.text.is_empty() {
            write!(f, " {}", self.text)?;
        }
        Ok(())
    }
}

/// What CAPA said (RFC 2449): its tags upper-cased with their arguments, or that the server has
/// no CAPA (an RFC 1939-only server answers it `-ERR`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Caps {
    /// Whether the server answered CAPA at all.
    pub known: bool,
    /// Each line's words, the tag upper-cased (`SASL PLAIN LOGIN` is `["SASL", "PLAIN", "LOGIN"]`).
    lines: Vec<Vec<String>>,
}

impl Caps {
    /// The capabilities of CAPA's answer lines.
    pub fn from_lines(lines: &[String]) -> Caps {
        Caps {
            known: true,
            lines: lines
                .iter()
                .map(|l| {
                    l.split_whitespace()
                        .map(str::to_ascii_uppercase)
                        .collect::<Vec<_>>()
                })
                .filter(|w| !w.is_empty())
                .collect(),
        }
    }

    /// A server without CAPA: nothing is known.
    pub fn unknown() -> Caps {
        Caps::default()
    }

    /// Whether tag `tag` is listed: `None` when the server has no CAPA.
    pub fn has(&self, tag: &str) -> Option<bool> {
        self.known.then(|| self.lines.iter().any(|w| w[0] == tag))
    }

    /// Whether SASL mechanism `mech` is listed on the `SASL` line: `None` without CAPA.
    pub fn sasl(&self, mech: &str) -> Option<bool> {
        self.known.then(|| {
            self.lines
                .iter()
                .any(|w| w[0] == "SASL" && w[1..].iter().any(|m| m == mech))
        })
    }
}

/// A line for a detail: at most [`SHOWN`] characters, quoted.
pub fn shown(line: &str) -> String {
    let clipped: String = line.chars().take(SHOWN).collect();
    if line.chars().count() > SHOWN {
        format!("{clipped:?}…")
    } else {
        format!("{clipped:?}")
    }
}

/// A bounded, buffered POP3 connection.
pub struct Conn {
    io: BufReader<Bounded<Stream>>,
}

impl Conn {
    /// Wraps `stream` with fresh bounds.
    pub fn new(stream: Stream, limits: Limits) -> Conn {
        Conn {
            io: BufReader::new(Bounded::new(stream, limits)),
        }
    }

    /// The stream for an STLS upgrade. Anything the server sent after its `+OK` is dropped with
    /// the buffer (RFC 2595 section 4: no plaintext may be taken into the TLS session).
    pub fn into_stream(self) -> Stream {
        self.io.into_inner().into_inner()
    }

    /// One line without its CRLF; the end of the connection where a line was due is
    /// [`ProbeError::Closed`].
    pub async fn line(&mut self) -> Result<String, ProbeError> {
        let mut buf = Vec::with_capacity(128);
        let n = self.io.read_until(b'\n', &mut buf).await?;
        if n == 0 || !buf.ends_with(b"\n") {
            return Err(ProbeError::Closed);
        }
        let text = String::from_utf8_lossy(&buf);
        Ok(text.trim_end_matches(['\r', '\n']).to_string())
    }

    /// One status line; anything else breaks the protocol.
    pub async fn status(&mut self) -> Result<StatusLine, ProbeError> {
        let line = self.line().await?;
        StatusLine::parse(&line).ok_or_else(|| {
            ProbeError::Protocol(format!("not a POP3 +OK or -ERR line: {}", shown(&line)))
        })
    }

    /// The lines of a multi-line answer after its `+OK`, dot-unstuffed, up to the `.` line
    /// (RFC 1939 section 3), at most [`MAX_CAPA_LINES`].
    pub async fn multiline(&mut self) -> Result<Vec<String>, ProbeError> {
        let mut lines = Vec::new();
        loop {
            let line = self.line().await?;
            if line == "." {
                return Ok(lines);
            }
            if lines.len() >= MAX_CAPA_LINES {
                return Err(ProbeError::Protocol(format!(
                    "multi-line answer longer than {MAX_CAPA_LINES} lines"
                )));
            }
            lines.push(line.strip_prefix('.').map_or(line.clone(), str::to_string));
        }
    }

    /// Sends `line` and its CRLF.
    pub async fn send(&mut self, line: &str) -> Result<(), ProbeError> {
        let w = self.io.get_mut();
        w.write_all(format!("{line}\r\n").as_bytes()).await?;
        w.flush().await?;
        Ok(())
    }

    /// Sends `line`, reads the status line that answers it.
    pub async fn command(&mut self, line: &str) -> Result<StatusLine, ProbeError> {
        self.send(line).await?;
        self.status().await
    }
}
