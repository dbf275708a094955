//! Where probe errors become failure classes: every error goes through [`judge`].
//!
//! What all protocols share is decided here: DNS, TCP connects, TLS, reads and writes, HTTP,
//! deadlines, OAuth2 tokens, mailprobe's own faults. A server's answer in a protocol's own
//! terms is an [`Answer`](crate::probe::error::Answer) judged by that protocol's table, next to
//! its error type in the protocol's folder (`imap/classify.rs`: response codes and providers'
//! wording; `smtp/classify.rs`: basic and enhanced reply codes).
//!
//! A class is a bounded label value that says *why* a probe failed in terms an on-call mail admin
//! acts on (a DNS problem, a refused connection, an expired certificate, rejected credentials).
//! The set is closed and small; the README lists it with the same descriptions as
//! [`FailureClass::description`].
//!
//! Two rules hold throughout. A probe that could not run because of mailprobe itself (no file
//! descriptors, no memory, no local port, a panic, a broken token cache) is
//! [`FailureClass::ProberError`] with a [`ProberFault`] saying why: the target is not down.
//! And an answer or error mailprobe has no mapping for is [`FailureClass::Unrecognized`], never
//! guessed into a class that sends someone to the wrong place; the detail says what it was.

use std::io;

use serde::{Deserialize, Serialize};

use crate::probe::bounded::LimitExceeded;
use crate::probe::{Phase, ProbeError};
use crate::tls::rustls_error;

/// Why a probe failed; the `class` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureClass {
    /// The host name does not exist.
    DnsNxdomain,
    /// The resolver failed, timed out, or the name has no addresses.
    DnsFailure,
    /// The mail domain publishes a null MX (RFC 7505): it says it accepts no mail.
    NullMx,
    /// The server actively refused the TCP connection.
    ConnectRefused,
    /// The TCP connection was not established before the deadline.
    ConnectTimeout,
    /// No route to the server's network or host.
    NetworkUnreachable,
    /// The server closed or reset the connection in the middle of the dialogue.
    ConnectionClosed,
    /// The TLS handshake failed for a reason other than the certificate, or the server refused
    /// the TLS version in use.
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
    /// A mail API rate-limits the probe itself (HTTP 429): the prober asks too often, the
    /// service is not down; the next probe waits at least the `Retry-After` it gave.
    Throttled,
    /// The credentials were rejected.
    AuthRejected,
    /// No OAuth2 token: the identity provider's token endpoint failed (not the mail server).
    AuthTokenFailed,
    /// The server wants authentication (or TLS first) before it goes on (SMTP 530/538, IMAP
    /// LOGINDISABLED).
    AuthRequired,
    /// The server cannot authenticate now, or offers no way to (SMTP AUTH not advertised).
    AuthUnavailable,
    /// The provider's policy refused the sign-in, whatever the credentials (Exchange Online's
    /// SMTP AUTH switched off): an admin setting to change, not a password to fix.
    AuthPolicy,
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
    /// An answer or error mailprobe has no mapping for: said to be unknown rather than guessed.
    Unrecognized,
    /// mailprobe itself could not run the probe: not a target failure (see [`ProberFault`]).
    ProberError,
}

impl FailureClass {
    /// Every class, in documentation order.
    pub const ALL: &'static [FailureClass] = &[
        FailureClass::DnsNxdomain,
        FailureClass::DnsFailure,
        FailureClass::NullMx,
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
        FailureClass::Throttled,
        FailureClass::AuthRejected,
        FailureClass::AuthTokenFailed,
        FailureClass::AuthRequired,
        FailureClass::AuthUnavailable,
        FailureClass::AuthPolicy,
        FailureClass::MessageRejected,
        FailureClass::MailboxError,
        FailureClass::Timeout,
        FailureClass::DeliveryTimeout,
        FailureClass::HttpStatus,
        FailureClass::ContentMismatch,
        FailureClass::Unrecognized,
        FailureClass::ProberError,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::DnsNxdomain => "dns_nxdomain",
            FailureClass::DnsFailure => "dns_failure",
            FailureClass::NullMx => "null_mx",
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
            FailureClass::Throttled => "throttled",
            FailureClass::AuthRejected => "auth_rejected",
            FailureClass::AuthTokenFailed => "auth_token_failed",
            FailureClass::AuthRequired => "auth_required",
            FailureClass::AuthUnavailable => "auth_unavailable",
            FailureClass::AuthPolicy => "auth_policy",
            FailureClass::MessageRejected => "message_rejected",
            FailureClass::MailboxError => "mailbox_error",
            FailureClass::Timeout => "timeout",
            FailureClass::DeliveryTimeout => "delivery_timeout",
            FailureClass::HttpStatus => "http_status",
            FailureClass::ContentMismatch => "content_mismatch",
            FailureClass::Unrecognized => "unrecognized",
            FailureClass::ProberError => "prober_error",
        }
    }

    /// What the class means, in the words the README uses.
    pub fn description(self) -> &'static str {
        match self {
            FailureClass::DnsNxdomain => {
                "the host name (or an MX target's mail domain) does not exist (NXDOMAIN)"
            }
            FailureClass::DnsFailure => {
                "DNS lookup failed: resolver error or timeout, or no address records"
            }
            FailureClass::NullMx => {
                "MX target: the mail domain publishes a null MX (RFC 7505), saying it accepts no \
                 mail"
            }
            FailureClass::ConnectRefused => "the server refused the TCP connection",
            FailureClass::ConnectTimeout => "no TCP connection before the deadline",
            FailureClass::NetworkUnreachable => {
                "no route to the server (network or host unreachable, network down)"
            }
            FailureClass::ConnectionClosed => {
                "the server closed or reset the connection mid-dialogue"
            }
            FailureClass::TlsHandshakeFailed => {
                "TLS handshake failed (protocol or cipher mismatch, alert, reset), or the server \
                 refused the TLS version in use (Exchange Online 421 4.7.66)"
            }
            FailureClass::TlsCertInvalid => {
                "certificate not trusted, not yet valid, or issued for another name"
            }
            FailureClass::TlsCertExpired => "the certificate has expired",
            FailureClass::StarttlsUnavailable => "STARTTLS required but not offered or refused",
            FailureClass::GreetingTimeout => "connected, but no greeting before the deadline",
            FailureClass::ProtocolError => {
                "the server's answer broke the protocol (garbage, oversized line, a reply its \
                 command does not allow)"
            }
            FailureClass::ServerUnavailable => {
                "the server refused service for now (IMAP BYE, [UNAVAILABLE], [LIMIT], [INUSE], \
                 a connection limit or throttling; SMTP 421 or other 4xx, a 554 greeting or a \
                 refused EHLO, HTTP 502/503/504)"
            }
            FailureClass::Throttled => {
                "a mail API (Graph, Gmail) rate-limits the probe itself (HTTP 429, \
                 RESOURCE_EXHAUSTED): the prober asks too often, the service is not down; not \
                 counted against the target, the next probe waits at least its Retry-After"
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
                "the server cannot check credentials now or offers no way to (SMTP AUTH not \
                 advertised, often its SASL backend is down; 454 4.7.0 temporary authentication \
                 failure; 504 mechanism not supported)"
            }
            FailureClass::AuthPolicy => {
                "the provider's policy refused the sign-in before the credentials counted (Exchange \
                 Online 5.7.139: SMTP AUTH off for the tenant or mailbox, security defaults, \
                 Conditional Access; 5.7.30 Basic auth retired; 534 5.7.9 mechanism too weak or an \
                 app password required)"
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
            FailureClass::Unrecognized => {
                "an answer or error mailprobe has no mapping for; the detail says exactly what was \
                 received"
            }
            FailureClass::ProberError => {
                "mailprobe itself could not run the probe (no file descriptors, memory or local \
                 port, a local firewall, a panic, an internal fault): not a target failure, see \
                 mailprobe_prober_errors_total"
            }
        }
    }
}

impl std::fmt::Display for FailureClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why mailprobe could not run a probe itself; the `reason` label of
/// `mailprobe_prober_errors_total`, a small closed set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProberFault {
    /// Out of file descriptors (EMFILE for the process, ENFILE for the system).
    FileDescriptors,
    /// Out of memory or socket buffers (ENOMEM, ENOBUFS).
    Memory,
    /// No local address or port to connect from (EADDRNOTAVAIL), or no such address family on
    /// this host (EAFNOSUPPORT).
    LocalAddress,
    /// A firewall or policy on this host forbade the connection (EPERM, EACCES at connect).
    LocalFirewall,
    /// The probe panicked: a bug in mailprobe.
    Panic,
    /// The OAuth2 token cache failed on its own (no HTTP client, no signature), not the identity
    /// provider.
    TokenCache,
    /// mailprobe misused a library or reached a state it should never be in: a bug.
    Internal,
}

impl ProberFault {
    /// Every reason, for pre-created series.
    pub const ALL: &'static [ProberFault] = &[
        ProberFault::FileDescriptors,
        ProberFault::Memory,
        ProberFault::LocalAddress,
        ProberFault::LocalFirewall,
        ProberFault::Panic,
        ProberFault::TokenCache,
        ProberFault::Internal,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ProberFault::FileDescriptors => "file_descriptors",
            ProberFault::Memory => "memory",
            ProberFault::LocalAddress => "local_address",
            ProberFault::LocalFirewall => "local_firewall",
            ProberFault::Panic => "panic",
            ProberFault::TokenCache => "token_cache",
            ProberFault::Internal => "internal",
        }
    }
}

/// What classification concluded about one failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The class.
    pub class: FailureClass,
    /// Set exactly when the class is [`FailureClass::ProberError`]: why mailprobe could not run.
    pub fault: Option<ProberFault>,
    /// What the server's code means, when it says more than its text (e.g. Exchange's
    /// `5.7.139`), for the detail.
    pub meaning: Option<&'static str>,
}

impl Verdict {
    pub(crate) fn class(class: FailureClass) -> Verdict {
        Verdict {
            class,
            fault: None,
            meaning: None,
        }
    }

    pub(crate) fn meant(class: FailureClass, meaning: &'static str) -> Verdict {
        Verdict {
            class,
            fault: None,
            meaning: Some(meaning),
        }
    }

    pub(crate) fn fault(fault: ProberFault) -> Verdict {
        Verdict {
            class: FailureClass::ProberError,
            fault: Some(fault),
            meaning: None,
        }
    }
}

impl From<FailureClass> for Verdict {
    fn from(class: FailureClass) -> Verdict {
        Verdict::class(class)
    }
}

/// The class of `error`, raised in `phase`.
pub fn classify(phase: Phase, error: &ProbeError) -> FailureClass {
    judge(phase, error).class
}

/// The class of `error`, raised in `phase`, with the prober fault and the code's meaning.
pub fn judge(phase: Phase, error: &ProbeError) -> Verdict {
    use FailureClass as C;
    let class = match error {
        ProbeError::NxDomain { .. } => C::DnsNxdomain,
        // A lookup that failed on this host's own sockets (no descriptors) is mailprobe's fault.
        ProbeError::Dns {
            os_error: Some(raw),
            ..
        } if local_fault(&io::Error::from_raw_os_error(*raw)).is_some() => {
            return connect_error(&io::Error::from_raw_os_error(*raw));
        }
        ProbeError::NoAddress { .. } | ProbeError::Dns { .. } => C::DnsFailure,
        ProbeError::Connect { source, .. } => return connect_error(source),
        // Every address failed: the attempt net::connect found most telling decides.
        ProbeError::ConnectFailed { decisive, .. } => return judge(phase, decisive),
        ProbeError::Tls(e) => return tls_error(e),
        ProbeError::Io(e) => return io_verdict(e),
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
        ProbeError::Imap(e) => crate::probe::imap::classify::library_error(phase, e),
        // The protocol's own table, in its folder.
        ProbeError::Refused(answer) => return answer.verdict(phase),
        // One host of several (an MX) is judged as that host's own failure.
        ProbeError::Host { error, .. } => return judge(phase, error),
        // A round trip's leg is judged by the phase of the leg that failed.
        ProbeError::Leg { phase, error } => return judge(*phase, error),
        ProbeError::NotDelivered(_) => C::DeliveryTimeout,
        ProbeError::HttpStatus { status, .. } => match status {
            502..=504 => C::ServerUnavailable,
            401 | 403 => C::AuthRejected,
            _ => C::HttpStatus,
        },
        ProbeError::Http(e) => return hyper_error(e),
        ProbeError::ContentMismatch(_) => C::ContentMismatch,
        ProbeError::Token(e) => return token_error(e),
        ProbeError::TokenRejected { .. } => C::AuthRejected,
        ProbeError::Panic(_) => return Verdict::fault(ProberFault::Panic),
        ProbeError::Internal(_) => return Verdict::fault(ProberFault::Internal),
    };
    Verdict::class(class)
}

/// hyper's errors: a connection that ended early is closed, a broken message a protocol error,
/// our own misuse of hyper a prober fault.
fn hyper_error(e: &hyper::Error) -> Verdict {
    use FailureClass as C;
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<io::Error>() {
            return io_verdict(io);
        }
        if let Some(h2) = err.downcast_ref::<h2::Error>() {
            if let Some(io) = h2.get_io() {
                return io_verdict(io);
            }
            // RST_STREAM or GOAWAY from the server ends the exchange; one h2 raised itself says
            // the server's frames broke HTTP/2.
            if h2.is_remote() {
                return Verdict::class(C::ConnectionClosed);
            }
            if h2.is_library() {
                return Verdict::class(C::ProtocolError);
            }
        }
        source = err.source();
    }
    let class = if e.is_parse() || e.is_parse_status() || e.is_parse_too_large() {
        C::ProtocolError
    } else if e.is_incomplete_message()
        || e.is_closed()
        || e.is_canceled()
        || e.is_body_write_aborted()
    {
        C::ConnectionClosed
    } else if e.is_timeout() {
        C::Timeout
    } else if e.is_user() {
        return Verdict::fault(ProberFault::Internal);
    } else {
        C::Unrecognized
    };
    Verdict::class(class)
}

/// A local resource the OS refused, whatever the call: mailprobe's own trouble, never the
/// target's. The raw OS error decides (std has no `ErrorKind` for EMFILE or ENOBUFS).
fn local_fault(e: &io::Error) -> Option<ProberFault> {
    match e.raw_os_error() {
        Some(libc::EMFILE | libc::ENFILE) => Some(ProberFault::FileDescriptors),
        Some(libc::ENOMEM | libc::ENOBUFS) => Some(ProberFault::Memory),
        Some(libc::EADDRNOTAVAIL | libc::EAFNOSUPPORT) => Some(ProberFault::LocalAddress),
        Some(_) => None,
        None if e.kind() == io::ErrorKind::OutOfMemory => Some(ProberFault::Memory),
        None => None,
    }
}

/// A failed TCP connect: only a real network error is `network_unreachable`.
fn connect_error(e: &io::Error) -> Verdict {
    use FailureClass as C;
    if let Some(fault) = local_fault(e) {
        return Verdict::fault(fault);
    }
    let class = match (e.raw_os_error(), e.kind()) {
        // connect(2): EPERM/EACCES is a local firewall rule (or a broadcast address).
        (_, io::ErrorKind::PermissionDenied) => return Verdict::fault(ProberFault::LocalFirewall),
        (_, io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset) => C::ConnectRefused,
        (_, io::ErrorKind::TimedOut) => C::ConnectTimeout,
        (
            _,
            io::ErrorKind::NetworkUnreachable
            | io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkDown,
        ) => C::NetworkUnreachable,
        (Some(libc::EHOSTDOWN), _) => C::NetworkUnreachable,
        _ => C::Unrecognized,
    };
    Verdict::class(class)
}

fn tls_error(e: &io::Error) -> Verdict {
    use FailureClass as C;
    use rustls::CertificateError as CE;
    if let Some(fault) = local_fault(e) {
        return Verdict::fault(fault);
    }
    let class = match rustls_error(e) {
        Some(rustls::Error::InvalidCertificate(CE::Expired | CE::ExpiredContext { .. })) => {
            C::TlsCertExpired
        }
        Some(rustls::Error::InvalidCertificate(_)) => C::TlsCertInvalid,
        // No clock or no randomness on this host: nothing the server did.
        Some(rustls::Error::FailedToGetCurrentTime | rustls::Error::FailedToGetRandomBytes) => {
            return Verdict::fault(ProberFault::Internal);
        }
        // rustls names what went wrong (an alert, no common version or cipher, a bad message).
        Some(_) => C::TlsHandshakeFailed,
        None => match e.kind() {
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => C::TlsHandshakeFailed,
            io::ErrorKind::TimedOut => C::Timeout,
            _ => C::Unrecognized,
        },
    };
    Verdict::class(class)
}

/// Reading or writing an established connection.
fn io_verdict(e: &io::Error) -> Verdict {
    use FailureClass as C;
    if LimitExceeded::from_io(e).is_some() {
        return Verdict::class(C::ProtocolError);
    }
    if let Some(fault) = local_fault(e) {
        return Verdict::fault(fault);
    }
    let class = match rustls_error(e) {
        // The server ended the TLS session with an alert.
        Some(rustls::Error::AlertReceived(_)) => C::ConnectionClosed,
        // A TLS record that does not decrypt or parse: the server broke TLS.
        Some(_) => C::ProtocolError,
        None => match e.kind() {
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::UnexpectedEof
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::NotConnected => C::ConnectionClosed,
            io::ErrorKind::TimedOut => C::Timeout,
            io::ErrorKind::InvalidData => C::ProtocolError,
            // What the server sent does not parse: async-imap's codec (0.12, imap_stream.rs)
            // reports it as an `Other` error worded "<nom error> during parsing of <input>".
            io::ErrorKind::Other if e.to_string().contains(" during parsing of ") => {
                C::ProtocolError
            }
            _ => C::Unrecognized,
        },
    };
    Verdict::class(class)
}

/// The class of an I/O error (for the IMAP mapping, which sees only classes).
pub(crate) fn io_error(e: &io::Error) -> FailureClass {
    io_verdict(e).class
}

/// No OAuth2 token: the identity provider's failure, unless the cache or this host failed.
fn token_error(e: &crate::oauth2::TokenError) -> Verdict {
    use crate::oauth2::TokenFault;
    match &e.fault {
        TokenFault::Cache => Verdict::fault(ProberFault::TokenCache),
        TokenFault::Os(io) => match local_fault(io) {
            Some(fault) => Verdict::fault(fault),
            None => Verdict::class(FailureClass::AuthTokenFailed),
        },
        TokenFault::Endpoint => Verdict::class(FailureClass::AuthTokenFailed),
    }
}

#[cfg(test)]
mod tests;
