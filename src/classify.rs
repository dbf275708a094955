//! The one place where probe errors become failure classes.
//!
//! A class is a bounded label value that says *why* a probe failed in terms an on-call mail admin
//! acts on (a DNS problem, a refused connection, an expired certificate, rejected credentials).
//! The set is closed and small; the README lists it with the same descriptions as
//! [`FailureClass::description`].

use std::io;

use serde::{Deserialize, Serialize};

use crate::probe::bounded::LimitExceeded;
use crate::probe::tls::rustls_error;
use crate::probe::{Phase, ProbeError};

/// Why a probe failed; the `class` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureClass {
    /// The host name does not exist.
    DnsNxdomain,
    /// The resolver failed, timed out, or the name has no addresses.
    DnsFailure,
    /// The server actively refused the TCP connection.
    ConnectRefused,
    /// The TCP connection was not established before the deadline.
    ConnectTimeout,
    /// No route to the server's network or host.
    NetworkUnreachable,
    /// The server closed or reset the connection in the middle of the dialogue.
    ConnectionClosed,
    /// The TLS handshake failed for a reason other than the certificate.
    TlsHandshakeFailed,
    /// The certificate is not trusted, not yet valid, or for another name.
    TlsCertInvalid,
    /// The certificate has expired.
    TlsCertExpired,
    /// STARTTLS was required but not offered or refused.
    StarttlsUnavailable,
    /// The connection was accepted but no greeting arrived before the deadline.
    GreetingTimeout,
    /// The server sent something the protocol does not allow (garbage, endless lines).
    ProtocolError,
    /// The server refused service for now (IMAP BYE, `[UNAVAILABLE]`, `[LIMIT]`, throttling).
    ServerUnavailable,
    /// The credentials were rejected.
    AuthRejected,
    /// No OAuth2 token: the identity provider's token endpoint failed (not the mail server).
    AuthTokenFailed,
    /// The server wants authentication (or TLS first) before it goes on (SMTP 530/538, IMAP
    /// LOGINDISABLED).
    AuthRequired,
    /// The server offers no way to authenticate (SMTP AUTH not advertised).
    AuthUnavailable,
    /// The server refused the test message, its sender or its recipient (SMTP 5xx).
    MessageRejected,
    /// Login worked but the mailbox could not be opened.
    MailboxError,
    /// A later phase did not finish before the deadline.
    Timeout,
    /// Round trip: the message was accepted but not seen in the mailbox by the deadline.
    DeliveryTimeout,
    /// HTTP: a status the target does not accept (other than 401/403 and 502/503/504).
    HttpStatus,
    /// HTTP: the body does not contain what the target requires.
    ContentMismatch,
}

impl FailureClass {
    /// Every class, in documentation order.
    pub const ALL: &'static [FailureClass] = &[
        FailureClass::DnsNxdomain,
        FailureClass::DnsFailure,
        FailureClass::ConnectRefused,
        FailureClass::ConnectTimeout,
        FailureClass::NetworkUnreachable,
        FailureClass::ConnectionClosed,
        FailureClass::TlsHandshakeFailed,
        FailureClass::TlsCertInvalid,
        FailureClass::TlsCertExpired,
        FailureClass::StarttlsUnavailable,
        FailureClass::GreetingTimeout,
        FailureClass::ProtocolError,
        FailureClass::ServerUnavailable,
        FailureClass::AuthRejected,
        FailureClass::AuthTokenFailed,
        FailureClass::AuthRequired,
        FailureClass::AuthUnavailable,
        FailureClass::MessageRejected,
        FailureClass::MailboxError,
        FailureClass::Timeout,
        FailureClass::DeliveryTimeout,
        FailureClass::HttpStatus,
        FailureClass::ContentMismatch,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::DnsNxdomain => "dns_nxdomain",
            FailureClass::DnsFailure => "dns_failure",
            FailureClass::ConnectRefused => "connect_refused",
            FailureClass::ConnectTimeout => "connect_timeout",
            FailureClass::NetworkUnreachable => "network_unreachable",
            FailureClass::ConnectionClosed => "connection_closed",
            FailureClass::TlsHandshakeFailed => "tls_handshake_failed",
            FailureClass::TlsCertInvalid => "tls_cert_invalid",
            FailureClass::TlsCertExpired => "tls_cert_expired",
            FailureClass::StarttlsUnavailable => "starttls_unavailable",
            FailureClass::GreetingTimeout => "greeting_timeout",
            FailureClass::ProtocolError => "protocol_error",
            FailureClass::ServerUnavailable => "server_unavailable",
            FailureClass::AuthRejected => "auth_rejected",
            FailureClass::AuthTokenFailed => "auth_token_failed",
            FailureClass::AuthRequired => "auth_required",
            FailureClass::AuthUnavailable => "auth_unavailable",
            FailureClass::MessageRejected => "message_rejected",
            FailureClass::MailboxError => "mailbox_error",
            FailureClass::Timeout => "timeout",
            FailureClass::DeliveryTimeout => "delivery_timeout",
            FailureClass::HttpStatus => "http_status",
            FailureClass::ContentMismatch => "content_mismatch",
        }
    }

    /// What the class means, in the words the README uses.
    pub fn description(self) -> &'static str {
        match self {
            FailureClass::DnsNxdomain => "the host name does not exist (NXDOMAIN)",
            FailureClass::DnsFailure => {
                "DNS lookup failed: resolver error or timeout, or no address records"
            }
            FailureClass::ConnectRefused => "the server refused the TCP connection",
            FailureClass::ConnectTimeout => "no TCP connection before the deadline",
            FailureClass::NetworkUnreachable => "no route to the server",
            FailureClass::ConnectionClosed => {
                "the server closed or reset the connection mid-dialogue"
            }
            FailureClass::TlsHandshakeFailed => {
                "TLS handshake failed (protocol or cipher mismatch, alert, reset)"
            }
            FailureClass::TlsCertInvalid => {
                "certificate not trusted, not yet valid, or issued for another name"
            }
            FailureClass::TlsCertExpired => "the certificate has expired",
            FailureClass::StarttlsUnavailable => "STARTTLS required but not offered or refused",
            FailureClass::GreetingTimeout => "connected, but no greeting before the deadline",
            FailureClass::ProtocolError => {
                "the server's answer broke the protocol (garbage, oversized line)"
            }
            FailureClass::ServerUnavailable => {
                "the server refused service for now (IMAP BYE, [UNAVAILABLE], [LIMIT], [INUSE], \
                 a connection limit or throttling; SMTP 421 or other 4xx, a 554 greeting, HTTP \
                 502/503/504)"
            }
            FailureClass::AuthRejected => {
                "the credentials were rejected (an OAuth2 token too; HTTP 401/403 too)"
            }
            FailureClass::AuthTokenFailed => {
                "no OAuth2 token: the identity provider's token endpoint failed"
            }
            FailureClass::AuthRequired => {
                "the server requires authentication or TLS before going on (SMTP 530, 538; IMAP \
                 LOGINDISABLED or [PRIVACYREQUIRED] without TLS)"
            }
            FailureClass::AuthUnavailable => {
                "the server offers no way to authenticate (SMTP AUTH not advertised; often its \
                 SASL backend is down)"
            }
            FailureClass::MessageRejected => {
                "the test message, its sender or recipient was refused (SMTP 5xx)"
            }
            FailureClass::MailboxError => "logged in, but the mailbox could not be opened",
            FailureClass::Timeout => "a later phase did not finish before the deadline",
            FailureClass::DeliveryTimeout => {
                "round trip: the message was accepted but not in the mailbox by the deadline"
            }
            FailureClass::HttpStatus => {
                "HTTP status not accepted (other than 401/403 and 502/503/504; includes redirect loops)"
            }
            FailureClass::ContentMismatch => "the HTTP body lacks the expected text",
        }
    }
}

impl std::fmt::Display for FailureClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The class of `error`, raised in `phase`.
pub fn classify(phase: Phase, error: &ProbeError) -> FailureClass {
    use FailureClass as C;
    match error {
        ProbeError::NxDomain { .. } => C::DnsNxdomain,
        ProbeError::NoAddress { .. } | ProbeError::Dns { .. } => C::DnsFailure,
        ProbeError::Connect { source, .. } => connect_error(source),
        ProbeError::Tls(e) => tls_error(e),
        ProbeError::Io(e) => io_error(e),
        ProbeError::Closed => C::ConnectionClosed,
        ProbeError::Timeout => match phase {
            Phase::Dns => C::DnsFailure,
            Phase::Connect => C::ConnectTimeout,
            Phase::Greeting => C::GreetingTimeout,
            _ => C::Timeout,
        },
        ProbeError::Unavailable(_) => C::ServerUnavailable,
        ProbeError::NotAdvertised(_) if phase == Phase::Starttls => C::StarttlsUnavailable,
        ProbeError::NotAdvertised(_) if phase == Phase::Auth => C::AuthUnavailable,
        ProbeError::NotAdvertised(_) | ProbeError::Protocol(_) => C::ProtocolError,
        ProbeError::Imap(e) => imap_error(phase, e),
        ProbeError::ImapRefused(r) => imap_refusal(r),
        ProbeError::Smtp(reply) => smtp_reply(phase, reply.code),
        // A round trip's leg is judged by the phase of the leg that failed.
        ProbeError::Leg { phase, error } => classify(*phase, error),
        ProbeError::NotDelivered(_) => C::DeliveryTimeout,
        ProbeError::HttpStatus { status, .. } => match status {
            502..=504 => C::ServerUnavailable,
            401 | 403 => C::AuthRejected,
            _ => C::HttpStatus,
        },
        ProbeError::Http(e) => hyper_error(e),
        ProbeError::ContentMismatch(_) => C::ContentMismatch,
        ProbeError::Token(_) => C::AuthTokenFailed,
        ProbeError::TokenRejected { .. } => C::AuthRejected,
    }
}

/// SMTP reply codes by phase: transient refusals, authentication, the message itself.
fn smtp_reply(phase: Phase, code: u16) -> FailureClass {
    use FailureClass as C;
    match (phase, code) {
        (_, 421) => C::ServerUnavailable,
        (Phase::Starttls, _) => C::StarttlsUnavailable,
        (Phase::Greeting, 400..=599) => C::ServerUnavailable,
        (_, 530 | 538) => C::AuthRequired,
        (_, 400..=499) => C::ServerUnavailable,
        (Phase::Auth, 500..=599) => C::AuthRejected,
        (Phase::MailFrom | Phase::Rcpt | Phase::Data, 500..=599) => C::MessageRejected,
        _ => C::ProtocolError,
    }
}

/// hyper's errors: a connection that ended early is closed, a broken message a protocol error.
fn hyper_error(e: &hyper::Error) -> FailureClass {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<io::Error>() {
            return io_error(io);
        }
        source = err.source();
    }
    if e.is_incomplete_message() || e.is_closed() || e.is_canceled() {
        FailureClass::ConnectionClosed
    } else if e.is_timeout() {
        FailureClass::Timeout
    } else {
        FailureClass::ProtocolError
    }
}

fn connect_error(e: &io::Error) -> FailureClass {
    match e.kind() {
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset => {
            FailureClass::ConnectRefused
        }
        io::ErrorKind::TimedOut => FailureClass::ConnectTimeout,
        _ => FailureClass::NetworkUnreachable,
    }
}

fn tls_error(e: &io::Error) -> FailureClass {
    use rustls::CertificateError as CE;
    match rustls_error(e) {
        Some(rustls::Error::InvalidCertificate(CE::Expired | CE::ExpiredContext { .. })) => {
            FailureClass::TlsCertExpired
        }
        Some(rustls::Error::InvalidCertificate(_)) => FailureClass::TlsCertInvalid,
        _ => FailureClass::TlsHandshakeFailed,
    }
}

fn io_error(e: &io::Error) -> FailureClass {
    if LimitExceeded::from_io(e).is_some() {
        return FailureClass::ProtocolError;
    }
    match e.kind() {
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::UnexpectedEof
        | io::ErrorKind::BrokenPipe
        | io::ErrorKind::NotConnected => FailureClass::ConnectionClosed,
        io::ErrorKind::TimedOut => FailureClass::Timeout,
        _ => FailureClass::ProtocolError,
    }
}

/// What an IMAP response code says about a refused command: one row per code mailprobe knows
/// (RFC 5530, RFC 3501 and the extensions' codes, a few providers' own), everything else
/// [`ImapCode::Unknown`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImapCode {
    /// The credentials, or the account behind them, were refused.
    Credentials,
    /// The server wants TLS before it takes a password.
    TlsRequired,
    /// The server (or the account's share of it) is busy, limited or broken for now.
    Busy,
    /// The access rules do not let this user do it.
    Permission,
    /// Something about the mailbox itself.
    Mailbox,
    /// The server says the command was malformed.
    ClientBug,
    /// Data or a message for the user; says nothing about why a command failed.
    Informational,
    /// A code mailprobe does not know; the detail says so.
    Unknown,
}

/// The meaning of response code `name` (upper case, without its arguments).
pub fn imap_code(name: &str) -> ImapCode {
    use ImapCode as K;
    match name {
        // RFC 5530 section 3. EXPIRED: the password (or account) is no longer valid;
        // CONTACTADMIN: the account needs an administrator; both are the account's, not the
        // server's.
        "AUTHENTICATIONFAILED" | "AUTHORIZATIONFAILED" | "EXPIRED" | "CONTACTADMIN" => {
            K::Credentials
        }
        "PRIVACYREQUIRED" => K::TlsRequired,
        // A backend down, a hard limit (Dovecot's mail_max_userip_connections), a mailbox
        // locked by another session, the server's own bug: retry later, page nobody about the
        // password. OVERQUOTA cannot be about storage at LOGIN or SELECT, which store nothing:
        // Gmail sends it for its command and bandwidth limits ("[OVERQUOTA] Account exceeded
        // command or bandwidth limits.", https://github.com/ljmerza/ha-email-sensor/issues/16).
        "UNAVAILABLE" | "LIMIT" | "INUSE" | "SERVERBUG" | "OVERQUOTA" => K::Busy,
        "NOPERM" => K::Permission,
        "NONEXISTENT" | "ALREADYEXISTS" | "CORRUPTION" | "EXPUNGEISSUED" | "CANNOT" => K::Mailbox,
        "CLIENTBUG" => K::ClientBug,
        // RFC 3501 section 7.1.
        "TRYCREATE" => K::Mailbox,
        "PARSE" | "BADCHARSET" => K::ClientBug,
        "ALERT" | "CAPABILITY" | "PERMANENTFLAGS" | "READ-ONLY" | "READ-WRITE" | "UIDNEXT"
        | "UIDVALIDITY" | "UNSEEN" => K::Informational,
        // RFC 4315, 4551/7162, 4978, 5162, 5464, 6154, 9051: data, not reasons.
        "APPENDUID" | "COPYUID" | "UIDNOTSTICKY" | "HIGHESTMODSEQ" | "NOMODSEQ" | "MODIFIED"
        | "CLOSED" | "COMPRESSIONACTIVE" | "METADATA" | "USEATTR" | "NOTSAVED" | "HASCHILDREN" => {
            K::Informational
        }
        // Gmail's link to unlock a blocked sign-in (https://github.com/jstedfast/MailKit/issues/1214).
        "WEBALERT" => K::Informational,
        // Gmail marks throttled answers [THROTTLED] (https://github.com/jakartaee/mail-api/issues/96);
        // WildDuck answers a temporary failure [TEMPFAIL] (https://github.com/zone-eu/wildduck/issues/707).
        "THROTTLED" | "TEMPFAIL" => K::Busy,
        _ => K::Unknown,
    }
}

/// Providers' published wording for a connection limit or throttling, sent with no code (or
/// only `[ALERT]`) that says so; matched case-insensitively in the refusal's text.
const IMAP_BUSY_WORDS: &[&str] = &[
    // Gmail: "NO [ALERT] Too many simultaneous connections. (Failure)", Gmail Help answer 97150;
    // https://github.com/jstedfast/MailKit/issues/377, https://github.com/zone-eu/wildduck/issues/35.
    "too many simultaneous connections",
    // Gmail: "[OVERQUOTA] Account exceeded command or bandwidth limits." (see OVERQUOTA above).
    "exceeded command or bandwidth limits",
    // Gmail appends "[THROTTLED]" to the text (https://github.com/jstedfast/MailKit/issues/1396).
    "[throttled]",
    // Exchange Online: "NO|BAD Request is throttled. Suggested Backoff Time: 299961 milliseconds"
    // (imapsync's FAQ.Office365 in https://github.com/imapsync/imapsync/issues/272;
    // https://github.com/ikvk/imap_tools/issues/135, https://github.com/simonrob/email-oauth2-proxy/issues/191).
    "request is throttled",
    // Dovecot's own text for its per user+IP limit (it sends [LIMIT] with it; a proxy in front
    // may pass the text on without the code).
    "maximum number of connections from user",
];

/// The class of an IMAP refusal: by its response code where the code says why, else by the
/// provider's wording for a limit, else by what the command's NO or BAD means (RFC 3501).
pub(crate) fn imap_refusal(r: &crate::probe::imap::Refusal) -> FailureClass {
    use crate::probe::imap::{Command, Refusal};
    use FailureClass as C;
    use ImapCode as K;
    let (command, answer) = match r {
        Refusal::LoginDisabled { tls: false } => return C::AuthRequired,
        Refusal::LoginDisabled { tls: true } => return C::AuthUnavailable,
        Refusal::Answer {
            command, answer, ..
        } => (*command, answer),
    };
    match answer
        .code_name()
        .map_or(K::Informational, |c| imap_code(&c))
    {
        K::Busy => return C::ServerUnavailable,
        K::TlsRequired => return C::AuthRequired,
        K::Credentials => return C::AuthRejected,
        K::Permission if command == Command::Select => return C::MailboxError,
        K::Permission if matches!(command, Command::Login | Command::Authenticate) => {
            return C::AuthRejected;
        }
        K::Mailbox => return C::MailboxError,
        K::ClientBug => return C::ProtocolError,
        // RFC 3501 7.1: a client ignores codes it does not know; the NO or BAD still means
        // what it means for the command (the detail says the code is unknown).
        K::Permission | K::Informational | K::Unknown => {}
    }
    let text = answer.text.to_ascii_lowercase();
    if IMAP_BUSY_WORDS.iter().any(|w| text.contains(w)) {
        return C::ServerUnavailable;
    }
    match (command, answer.status.as_str()) {
        // The server said goodbye instead of answering.
        (_, "BYE") => C::ServerUnavailable,
        (Command::Starttls, _) => C::StarttlsUnavailable,
        // RFC 3501 6.2.2 and 6.2.3: NO is "credentials rejected".
        (Command::Login | Command::Authenticate, "NO") => C::AuthRejected,
        // Signed in, but the mailbox cannot be opened: NO (RFC 3501 6.3.1), or BAD as Exchange
        // Online answers when the signed-in identity has no access to the mailbox ("BAD User is
        // authenticated but not connected.": https://github.com/jstedfast/MailKit/issues/1135,
        // https://github.com/Webklex/php-imap/issues/450).
        (Command::Select, _) => C::MailboxError,
        _ => C::ProtocolError,
    }
}

/// Commands async-imap drives (the round trip's FETCH, SEARCH, IDLE...): its errors carry the
/// server's answer only as text.
fn imap_error(phase: Phase, e: &async_imap::error::Error) -> FailureClass {
    use async_imap::error::Error as E;
    match e {
        E::No(text) | E::Bad(text) if imap_text_busy(text) => FailureClass::ServerUnavailable,
        E::No(_) | E::Bad(_) if phase == Phase::Starttls => FailureClass::StarttlsUnavailable,
        E::No(_) if phase == Phase::Login => FailureClass::AuthRejected,
        E::No(_) if phase == Phase::Select => FailureClass::MailboxError,
        E::Io(io) => io_error(io),
        E::ConnectionLost => FailureClass::ConnectionClosed,
        _ => FailureClass::ProtocolError,
    }
}

/// Whether async-imap's text of a NO or BAD names a busy code or a provider's limit wording.
fn imap_text_busy(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    let busy_code = text.split('[').skip(1).any(|c| {
        let name: String = c
            .chars()
            .take_while(|ch| ch.is_ascii_alphanumeric() || *ch == '-')
            .collect();
        imap_code(&name.to_ascii_uppercase()) == ImapCode::Busy
    });
    busy_code || IMAP_BUSY_WORDS.iter().any(|w| lower.contains(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_unique_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for c in FailureClass::ALL {
            assert!(seen.insert(c.as_str()));
            assert!(
                c.as_str()
                    .chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch == '_')
            );
            let json = serde_json::to_string(c).unwrap();
            assert_eq!(json, format!("\"{}\"", c.as_str()));
        }
    }

    #[test]
    fn timeouts_depend_on_phase() {
        assert_eq!(
            classify(Phase::Connect, &ProbeError::Timeout),
            FailureClass::ConnectTimeout
        );
        assert_eq!(
            classify(Phase::Greeting, &ProbeError::Timeout),
            FailureClass::GreetingTimeout
        );
        assert_eq!(
            classify(Phase::Select, &ProbeError::Timeout),
            FailureClass::Timeout
        );
    }

    #[test]
    fn imap_no_depends_on_phase_and_code() {
        let no = |s: &str| ProbeError::Imap(async_imap::error::Error::No(s.into()));
        assert_eq!(
            classify(
                Phase::Login,
                &no("[AUTHENTICATIONFAILED] Authentication failed.")
            ),
            FailureClass::AuthRejected
        );
        assert_eq!(
            classify(Phase::Login, &no("[UNAVAILABLE] Try again later")),
            FailureClass::ServerUnavailable
        );
        assert_eq!(
            classify(Phase::Select, &no("Mailbox doesn't exist")),
            FailureClass::MailboxError
        );
        assert_eq!(
            classify(Phase::Starttls, &no("nope")),
            FailureClass::StarttlsUnavailable
        );
    }

    #[test]
    fn imap_refusals_are_classed_by_code_then_wording_then_command() {
        use crate::probe::imap::{Command as Cmd, Refusal, StatusLine};
        use FailureClass as C;
        let class = |command, line: &str| {
            classify(
                Phase::Login,
                &ProbeError::ImapRefused(Box::new(Refusal::Answer {
                    command,
                    answer: StatusLine::parse(line.as_bytes()),
                    notes: Vec::new(),
                    challenge: None,
                })),
            )
        };
        for (command, line, expected) in [
            (
                Cmd::Login,
                "L1 NO [AUTHENTICATIONFAILED] x",
                C::AuthRejected,
            ),
            (Cmd::Authenticate, "L1 NO [EXPIRED] x", C::AuthRejected),
            (Cmd::Login, "L1 NO [LIMIT] x", C::ServerUnavailable),
            (Cmd::Login, "L1 NO [limit] x", C::ServerUnavailable),
            (Cmd::Select, "S1 NO [INUSE] x", C::ServerUnavailable),
            (Cmd::Select, "S1 NO [SERVERBUG] x", C::ServerUnavailable),
            (Cmd::Select, "S1 NO [NONEXISTENT] x", C::MailboxError),
            (Cmd::Select, "S1 NO [NOPERM] x", C::MailboxError),
            (Cmd::Login, "L1 NO [NOPERM] x", C::AuthRejected),
            (Cmd::Login, "L1 NO [PRIVACYREQUIRED] x", C::AuthRequired),
            (Cmd::Login, "L1 BAD [CLIENTBUG] x", C::ProtocolError),
            // Unknown codes are ignored (RFC 3501 7.1): a NO to LOGIN is still a rejection.
            (Cmd::Login, "L1 NO [X-UNKNOWN 1] x", C::AuthRejected),
            (
                Cmd::Login,
                "L1 NO [ALERT] Invalid credentials (Failure)",
                C::AuthRejected,
            ),
            (Cmd::Login, "L1 BAD nonsense", C::ProtocolError),
            (
                Cmd::Login,
                "L1 NO [ALERT] Too many simultaneous connections. (Failure)",
                C::ServerUnavailable,
            ),
            (
                Cmd::Select,
                "S1 BAD Request is throttled. Suggested Backoff Time: 299961 milliseconds",
                C::ServerUnavailable,
            ),
            (
                Cmd::Select,
                "S1 OK Success [THROTTLED]",
                C::ServerUnavailable,
            ),
            (
                Cmd::Select,
                "S1 BAD User is authenticated but not connected.",
                C::MailboxError,
            ),
            (
                Cmd::Login,
                "* BYE Connection closed. 14",
                C::ServerUnavailable,
            ),
            (Cmd::Starttls, "T1 NO nope", C::StarttlsUnavailable),
            (
                Cmd::Starttls,
                "T1 NO [UNAVAILABLE] later",
                C::ServerUnavailable,
            ),
            (Cmd::Capability, "C1 BAD what", C::ProtocolError),
        ] {
            assert_eq!(class(command, line), expected, "{command:?} {line}");
        }
        let disabled = |tls| ProbeError::ImapRefused(Box::new(Refusal::LoginDisabled { tls }));
        assert_eq!(classify(Phase::Login, &disabled(false)), C::AuthRequired);
        assert_eq!(classify(Phase::Login, &disabled(true)), C::AuthUnavailable);
    }

    #[test]
    fn every_rfc5530_code_is_a_decision() {
        for code in [
            "UNAVAILABLE",
            "AUTHENTICATIONFAILED",
            "AUTHORIZATIONFAILED",
            "EXPIRED",
            "PRIVACYREQUIRED",
            "CONTACTADMIN",
            "NOPERM",
            "INUSE",
            "EXPUNGEISSUED",
            "CORRUPTION",
            "SERVERBUG",
            "CLIENTBUG",
            "CANNOT",
            "LIMIT",
            "OVERQUOTA",
            "ALREADYEXISTS",
            "NONEXISTENT",
        ] {
            assert_ne!(imap_code(code), ImapCode::Unknown, "{code}");
        }
        assert_eq!(imap_code("X-FROBNICATED"), ImapCode::Unknown);
    }

    #[test]
    fn async_imap_refusals_with_busy_codes_or_words_are_server_unavailable() {
        let no = |s: &str| ProbeError::Imap(async_imap::error::Error::No(s.into()));
        for text in [
            "code: None, info: Some(\"[LIMIT] Maximum number of connections\")",
            "outcome: Outcome { code: Some(Alert), information: Some(\"Too many simultaneous connections. (Failure)\") }",
        ] {
            assert_eq!(
                classify(Phase::Cleanup, &no(text)),
                FailureClass::ServerUnavailable,
                "{text}"
            );
        }
    }

    #[test]
    fn limits_are_protocol_errors_and_resets_are_closed() {
        let limit = io::Error::new(io::ErrorKind::InvalidData, LimitExceeded::Line(10));
        assert_eq!(
            classify(Phase::Greeting, &ProbeError::Io(limit)),
            FailureClass::ProtocolError
        );
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert_eq!(
            classify(Phase::Login, &ProbeError::Io(reset)),
            FailureClass::ConnectionClosed
        );
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(
            classify(
                Phase::Connect,
                &ProbeError::Connect {
                    addr: "127.0.0.1:1".parse().unwrap(),
                    source: refused
                }
            ),
            FailureClass::ConnectRefused
        );
    }
}
