//! What can go wrong inside a probe, as typed values; [`crate::probe::classify`] turns them into failure
//! classes, so no probe decides its own label.
//!
//! What all protocols share (DNS, TCP, TLS, I/O, deadlines, tokens) has a variant of its own. A
//! server's refusal in a protocol's own terms (an IMAP `NO [LIMIT]`, an SMTP `535 5.7.8`) is an
//! [`Answer`], kept as the server said it and judged by that protocol's table, in its folder
//! next to the type (`imap/classify.rs`, `smtp/classify.rs`): a new protocol brings its answers
//! without a new variant here.

use std::fmt;
use std::io;
use std::net::SocketAddr;

use super::Phase;
use super::classify::Verdict;

/// A server's answer that ends a probe, in the server's own words (its `Display`), judged code
/// by code by its protocol's own table.
pub trait Answer: fmt::Display + fmt::Debug + Send + Sync + 'static {
    /// What the answer means, given the phase it came in: its class, and what its code means
    /// when that says more than its text. An answer no table explains is `unrecognized`.
    fn verdict(&self, phase: Phase) -> Verdict;
}

/// A probe failure with its cause kept intact for classification and the human detail.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The name does not exist.
    #[error("{host} does not exist (NXDOMAIN)")]
    NxDomain {
        /// The name looked up.
        host: String,
    },
    /// The name exists but has no A/AAAA records.
    #[error("{host} has no address records")]
    NoAddress {
        /// The name looked up.
        host: String,
    },
    /// Any other resolver failure (SERVFAIL, refused, unreachable resolver).
    #[error("DNS lookup of {host} failed: {reason}")]
    Dns {
        /// The name looked up.
        host: String,
        /// The resolver's words.
        reason: String,
        /// The OS error behind it, when the lookup failed on this host's own sockets (out of
        /// file descriptors, say): then it is mailprobe's fault, not the resolver's.
        os_error: Option<i32>,
    },
    /// TCP connect to one address failed.
    #[error("connect to {addr}: {source}")]
    Connect {
        /// The address tried.
        addr: SocketAddr,
        /// The OS error.
        source: io::Error,
    },
    /// No address took the TCP connection: each one tried is named, the most telling decides
    /// the class (see [`crate::probe::net::connect`]).
    #[error("{}", tried.join("; "))]
    ConnectFailed {
        /// The failure that classifies the whole: one attempt's [`ProbeError::Connect`] (its OS
        /// error intact), or [`ProbeError::Timeout`] when that attempt had no answer.
        decisive: Box<ProbeError>,
        /// What each address did, the decisive one first, then the others in the order tried
        /// (bounded, the rest counted).
        tried: Vec<String>,
    },
    /// The TLS handshake failed (the rustls error, if any, is inside).
    #[error("TLS handshake: {0}")]
    Tls(io::Error),
    /// Reading or writing the established connection failed (including a crossed read bound).
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The server closed the connection where a response was due.
    #[error("connection closed by the server")]
    Closed,
    /// The deadline passed.
    #[error("no answer before the deadline")]
    Timeout,
    /// An IMAP command failed (NO, BAD, a parse error, a lost connection).
    #[error("IMAP {}", imap_detail(.0))]
    Imap(async_imap::error::Error),
    /// The server refused in its protocol's own terms (an IMAP `NO`, an SMTP reply other than
    /// the one that lets the dialogue go on), as it said it.
    #[error("{0}")]
    Refused(Box<dyn Answer>),
    /// One of the hosts a probe tries in turn failed (an MX host of a mail domain); the phase
    /// is that host's.
    #[error("{host}: {error}")]
    Host {
        /// The host, as the detail names it (e.g. `mx1.example.com (preference 10)`).
        host: String,
        /// What went wrong there.
        error: Box<ProbeError>,
    },
    /// A round trip's leg failed in one of its own phases.
    #[error("{} {error}", phase.as_str())]
    Leg {
        /// The leg's phase that failed (e.g. `auth` of the send leg).
        phase: crate::probe::Phase,
        /// What went wrong there.
        error: Box<ProbeError>,
    },
    /// The probe message was not seen in the mailbox before the delivery deadline.
    #[error("message accepted but not in the mailbox after {0:?}")]
    NotDelivered(std::time::Duration),
    /// An HTTP response had a status the target does not accept.
    #[error("HTTP {status} from {url}{}", if detail.is_empty() { String::new() } else { format!(": {detail}") })]
    HttpStatus {
        /// The status code.
        status: u16,
        /// The URL that answered.
        url: String,
        /// More words (e.g. "more than 5 redirects").
        detail: String,
    },
    /// The HTTP exchange itself failed (a broken response, a reset).
    #[error("HTTP: {0}")]
    Http(#[source] hyper::Error),
    /// The response body does not contain what the target requires.
    #[error("body does not match: {0}")]
    ContentMismatch(String),
    /// No OAuth2 token could be had from the identity provider.
    #[error("{0}")]
    Token(crate::oauth2::TokenError),
    /// The server rejected the OAuth2 token (after its error challenge was answered).
    #[error("token rejected ({status}): {reply}")]
    TokenRejected {
        /// The decoded error challenge (e.g. `status 401, schemes bearer`).
        status: String,
        /// The server's final answer.
        reply: String,
    },
    /// The server said it cannot serve us now (IMAP BYE greeting).
    #[error("server unavailable: {0}")]
    Unavailable(String),
    /// The server does not advertise a capability the target requires.
    #[error("server does not advertise {0}")]
    NotAdvertised(&'static str),
    /// The server answered something the protocol does not allow here.
    #[error("unexpected response: {0}")]
    Protocol(String),
    /// The probe panicked (a bug in mailprobe); the panic's message.
    #[error("the probe panicked: {0}")]
    Panic(String),
    /// mailprobe reached a state it should never be in (a bug), not anything the server did.
    #[error("mailprobe could not go on: {0}")]
    Internal(String),
}

impl From<async_imap::error::Error> for ProbeError {
    fn from(e: async_imap::error::Error) -> Self {
        match e {
            // Keep I/O errors as I/O so that read bounds and resets are seen the same everywhere.
            async_imap::error::Error::Io(io) => ProbeError::Io(io),
            async_imap::error::Error::ConnectionLost => ProbeError::Closed,
            other => ProbeError::Imap(other),
        }
    }
}

/// async-imap words NO/BAD as `code: Some(..), info: Some("text")`; show what the server said.
fn imap_detail(e: &async_imap::error::Error) -> String {
    use async_imap::error::Error as E;
    let (status, raw) = match e {
        E::No(raw) => ("NO", raw),
        E::Bad(raw) => ("BAD", raw),
        other => return other.to_string(),
    };
    // `code: .., info: ..` from a command's completion; `outcome: Outcome { code: ..,
    // information: .. }` from SELECT-like commands.
    let fields = raw
        .strip_prefix("outcome: Outcome { ")
        .and_then(|r| r.strip_suffix(" }"))
        .map(|r| r.replacen(", information: ", ", info: ", 1))
        .unwrap_or_else(|| raw.clone());
    let Some((code, info)) = fields.split_once(", info: ") else {
        return format!("{status} {raw}");
    };
    let code = code.trim_start_matches("code: ");
    let code = match code.strip_prefix("Some(").and_then(|c| c.strip_suffix(')')) {
        Some(c) => format!("[{}] ", rfc_code(c)),
        None => String::new(),
    };
    let text = info
        .strip_prefix("Some(\"")
        .and_then(|t| t.strip_suffix("\")"))
        .map(|t| t.replace("\\\"", "\"").replace("\\\\", "\\"))
        .unwrap_or_default();
    format!("{status} {code}{text}")
}

/// The RFC's name for an imap-proto response code async-imap printed with Debug (`Alert` is
/// `ALERT`, `ReadOnly` is `READ-ONLY`), so the detail reads as the server sent it.
fn rfc_code(debug: &str) -> String {
    let (name, args) = debug.split_once('(').unwrap_or((debug, ""));
    let rfc = match name {
        "ReadOnly" => "READ-ONLY".to_string(),
        "ReadWrite" => "READ-WRITE".to_string(),
        "Capabilities" => "CAPABILITY".to_string(),
        other => other.to_ascii_uppercase(),
    };
    let args = args.trim_end_matches(')');
    if !args.is_empty() && args.bytes().all(|b| b.is_ascii_digit()) {
        format!("{rfc} {args}")
    } else {
        rfc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imap_no_reads_like_the_server_said_it() {
        let e = ProbeError::Imap(async_imap::error::Error::No(
            "code: None, info: Some(\"[AUTHENTICATIONFAILED] Authentication failed.\")".into(),
        ));
        assert_eq!(
            e.to_string(),
            "IMAP NO [AUTHENTICATIONFAILED] Authentication failed."
        );
        let e = ProbeError::Imap(async_imap::error::Error::Bad(
            "code: Some(Parse), info: Some(\"say \\\"what\\\"\")".into(),
        ));
        assert_eq!(e.to_string(), "IMAP BAD [PARSE] say \"what\"");
        let e = ProbeError::Imap(async_imap::error::Error::No(
            "code: Some(Alert), info: Some(\"Too many simultaneous connections. (Failure)\")"
                .into(),
        ));
        assert_eq!(
            e.to_string(),
            "IMAP NO [ALERT] Too many simultaneous connections. (Failure)"
        );
        let e = ProbeError::Imap(async_imap::error::Error::No(
            "outcome: Outcome { code: None, information: Some(\"Mailbox does not exist\") }".into(),
        ));
        assert_eq!(e.to_string(), "IMAP NO Mailbox does not exist");
    }
}
