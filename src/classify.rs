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
    /// The server refused service for now (IMAP BYE or `[UNAVAILABLE]`).
    ServerUnavailable,
    /// The credentials were rejected.
    AuthRejected,
    /// No OAuth2 token: the identity provider's token endpoint failed (not the mail server).
    AuthTokenFailed,
    /// The server wants authentication (or TLS first) before it goes on (SMTP 530/538).
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
                "the server refused service for now (IMAP BYE or [UNAVAILABLE], SMTP 421 or other \
                 4xx, a 554 greeting, HTTP 502/503/504)"
            }
            FailureClass::AuthRejected => {
                "the credentials were rejected (an OAuth2 token too; HTTP 401/403 too)"
            }
            FailureClass::AuthTokenFailed => {
                "no OAuth2 token: the identity provider's token endpoint failed"
            }
            FailureClass::AuthRequired => {
                "the server requires authentication or TLS before going on (SMTP 530, 538)"
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
        // Every address failed: the attempt net::connect found most telling decides.
        ProbeError::ConnectFailed { decisive, .. } => classify(phase, decisive),
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

fn imap_error(phase: Phase, e: &async_imap::error::Error) -> FailureClass {
    use async_imap::error::Error as E;
    match e {
        E::No(text) | E::Bad(text) if text.contains("[UNAVAILABLE]") => {
            FailureClass::ServerUnavailable
        }
        E::No(_) | E::Bad(_) if phase == Phase::Starttls => FailureClass::StarttlsUnavailable,
        E::No(_) if phase == Phase::Login => FailureClass::AuthRejected,
        E::No(_) if phase == Phase::Select => FailureClass::MailboxError,
        E::Io(io) => io_error(io),
        E::ConnectionLost => FailureClass::ConnectionClosed,
        _ => FailureClass::ProtocolError,
    }
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
