//! The one place where probe errors become failure classes.
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
use crate::probe::smtp::Reply;
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
            FailureClass::DnsNxdomain => "the host name does not exist (NXDOMAIN)",
            FailureClass::DnsFailure => {
                "DNS lookup failed: resolver error or timeout, or no address records"
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
    fn class(class: FailureClass) -> Verdict {
        Verdict {
            class,
            fault: None,
            meaning: None,
        }
    }

    fn meant(class: FailureClass, meaning: &'static str) -> Verdict {
        Verdict {
            class,
            fault: None,
            meaning: Some(meaning),
        }
    }

    fn fault(fault: ProberFault) -> Verdict {
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
        ProbeError::Imap(e) => imap_error(phase, e),
        ProbeError::ImapRefused(r) => imap_refusal(r),
        ProbeError::Smtp(reply) => return smtp_reply(phase, reply),
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

/// An RFC 3463 enhanced status code as `(class, subject, detail)`, when the reply has one whose
/// class agrees with its basic code (RFC 3463 section 2: they must).
fn enhanced(reply: &Reply) -> Option<(u16, u16, u16)> {
    let mut parts = reply.enhanced()?.split('.').map(|p| p.parse::<u16>().ok());
    let code = (parts.next()??, parts.next()??, parts.next()??);
    (code.0 == reply.code / 100).then_some(code)
}

// What codes mean, for the detail. Where a provider uses a code of its own, its published words
// are the source (cited at each use below).
const TLS_VERSION: &str = "the server refuses the TLS version in use (Exchange Online: TLS 1.0 and \
                           1.1 are not supported), so the fix is on the TLS side";
const EXO_AUTH_OFF: &str = "Exchange Online refused by policy: SMTP AUTH is turned off for the \
                            tenant or this mailbox, or security defaults or a Conditional Access \
                            policy block it; the credentials were not checked";
const EXO_BASIC_OFF: &str = "Exchange Online no longer takes Basic authentication for client \
                             submission (use OAuth2); the credentials were not checked";
const EXO_5_7_3: &str = "Exchange: the user name or password is incorrect or, with OAuth2, the \
                         application has no access to this mailbox";
const ACCOUNT_DISABLED: &str = "the account is disabled (RFC 5248 X.7.13)";
const MECH_TOO_WEAK: &str = "the provider's policy refuses this way of signing in (RFC 4954 \
                             5.7.9 mechanism too weak; Gmail: an app password is required)";
const WEB_SIGN_IN: &str = "the provider wants an interactive sign-in in a web browser first \
                           (Gmail 5.7.14)";
const PASSWORD_TRANSITION: &str = "a password transition is needed (RFC 4954 4.7.12): sign in \
                                   once with PLAIN";
const TEMP_AUTH_FAILURE: &str = "temporary authentication failure (RFC 4954 4.7.0): the server \
                                 could not check the credentials now (its authentication backend, \
                                 or a throttle)";
const MECH_UNSUPPORTED: &str = "the server does not support this authentication mechanism (RFC \
                                4954 504 5.5.4)";

/// SMTP replies by phase, basic code and enhanced code (RFC 5321 section 4.2 and 4.3.2,
/// RFC 3463, RFC 4954), read code by code; what no table explains is `unrecognized`.
fn smtp_reply(phase: Phase, reply: &Reply) -> Verdict {
    use FailureClass as C;
    let enhanced = enhanced(reply);
    // Exchange Online's refusal of TLS 1.0/1.1, wherever in the dialogue it comes:
    // "421 4.7.66 TLS 1.0 and 1.1 are not supported. Please upgrade/update your client to
    // support TLS 1.2. Visit https://aka.ms/smtp_auth_tls" and, for an organisation that turned
    // legacy TLS off, "550 5.7.67 TLS 1.0 and 1.1 are not supported by your organization"
    // (Microsoft's Exchange Team blog on deprecating TLS 1.0/1.1 for SMTP AUTH).
    if let Some((4, 7, 66) | (5, 7, 67)) = enhanced {
        return Verdict::meant(C::TlsHandshakeFailed, TLS_VERSION);
    }
    let class = match (phase, reply.code) {
        // RFC 5321 3.8: the service is shutting down or cannot serve now, at any point.
        (_, 421) => C::ServerUnavailable,
        // RFC 5321 3.1: a 554 (or any refusal) instead of 220 means "no SMTP service here".
        (Phase::Greeting, 400..=599) => C::ServerUnavailable,
        // RFC 3207: 454 "TLS not available due to temporary reason", 501 syntax; anything but
        // 220 means no TLS.
        (Phase::Starttls, _) => C::StarttlsUnavailable,
        (Phase::Auth, _) => return auth_reply(reply.code, enhanced),
        (Phase::Ehlo | Phase::EhloTls, 400..=499) => C::ServerUnavailable,
        // RFC 5321 4.5.1: every receiver implements EHLO, so "unrecognized", "not implemented",
        // "bad sequence" or "parameter not implemented" to it break the protocol.
        (Phase::Ehlo | Phase::EhloTls, 500 | 502 | 503 | 504) => C::ProtocolError,
        // The server refuses this client: its EHLO name (501) or its address, by policy.
        (Phase::Ehlo | Phase::EhloTls, 501 | 550 | 554) => C::ServerUnavailable,
        // RFC 4954 / Exchange's 530 5.7.57 "Client not authenticated to send mail".
        (Phase::MailFrom | Phase::Rcpt | Phase::Data, 530) => C::AuthRequired,
        (Phase::MailFrom | Phase::Rcpt | Phase::Data, 400..=499) => C::ServerUnavailable,
        (Phase::MailFrom | Phase::Rcpt | Phase::Data, 500..=599) => C::MessageRejected,
        // A positive reply other than the one the command allows (RFC 5321 4.3.2).
        (_, 200..=399) => C::ProtocolError,
        _ => C::Unrecognized,
    };
    Verdict::class(class)
}

/// SMTP replies to AUTH, by enhanced code first (a 535 can mean a wrong password or a switched
/// off protocol), then by basic code. A refusal by policy is never `auth_rejected`: the
/// credentials were not what was refused.
fn auth_reply(code: u16, enhanced: Option<(u16, u16, u16)>) -> Verdict {
    use FailureClass as C;
    match (code, enhanced) {
        // Microsoft, "Enable or disable SMTP AUTH in Exchange Online", troubleshooting:
        // "5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the
        // Tenant. Visit https://aka.ms/smtp_auth_disabled for more information.", and the same
        // code for "user is locked by your organization's security defaults policy" and "the
        // request did not meet the criteria to be authenticated successfully" (Conditional
        // Access).
        (_, Some((5, 7, 139))) => Verdict::meant(C::AuthPolicy, EXO_AUTH_OFF),
        // Microsoft, "Exchange Online to retire Basic auth for Client Submission (SMTP AUTH)":
        // "550 5.7.30 Basic authentication is not supported for Client Submission." (IANA's
        // X.7.30 is REQUIRETLS, a MAIL FROM matter; at AUTH this is Microsoft's.)
        (_, Some((5, 7, 30))) => Verdict::meant(C::AuthPolicy, EXO_BASIC_OFF),
        // Microsoft, [MS-SMTPNTLM] 2.2.1.4 SMTP_AUTH_Fail_Response: "535 5.7.3" says "the
        // authentication has terminated unsuccessfully because the user name or password is
        // incorrect"; Exchange Online gives the same to an OAuth2 app without mailbox access.
        (_, Some((5, 7, 3))) => Verdict::meant(C::AuthRejected, EXO_5_7_3),
        // RFC 4954 section 6: 535 5.7.8 "Authentication credentials invalid".
        (_, Some((5, 7, 8))) => Verdict::class(C::AuthRejected),
        (_, Some((5, 7, 13))) => Verdict::meant(C::AuthRejected, ACCOUNT_DISABLED),
        // RFC 4954: 534 5.7.9 "Authentication mechanism is too weak"; Gmail: "534 5.7.9
        // Application-specific password required".
        (_, Some((5, 7, 9))) | (534, _) => Verdict::meant(C::AuthPolicy, MECH_TOO_WEAK),
        // Gmail: "534 5.7.14 Please log in with your web browser and then try again."
        (_, Some((5, 7, 14))) => Verdict::meant(C::AuthPolicy, WEB_SIGN_IN),
        // RFC 4954: 432 4.7.12 "A password transition is needed".
        (_, Some((4, 7, 12))) | (432, None) => Verdict::meant(C::AuthPolicy, PASSWORD_TRANSITION),
        // RFC 4954: 454 4.7.0 "Temporary authentication failure" (Gmail: "Cannot authenticate
        // due to temporary system problem").
        (454, Some((4, 7, 0)) | None) => Verdict::meant(C::AuthUnavailable, TEMP_AUTH_FAILURE),
        // RFC 4954: 535 without a more specific code is "credentials invalid".
        (535, _) => Verdict::class(C::AuthRejected),
        // RFC 4954: 530 5.7.0 "Authentication required", 538 5.7.11 "Encryption required".
        (530 | 538, _) => Verdict::class(C::AuthRequired),
        // RFC 4954: 504 5.5.4 "Unrecognized authentication type"; 502 AUTH not implemented.
        (504, _) => Verdict::meant(C::AuthUnavailable, MECH_UNSUPPORTED),
        (502, _) => Verdict::class(C::AuthUnavailable),
        // RFC 4954: 500 5.5.6 line too long, 501 5.5.2 cannot base64-decode, 503 bad sequence:
        // the SASL exchange itself broke.
        (500 | 501 | 503, _) => Verdict::class(C::ProtocolError),
        // Any other transient refusal: not a rejected password (RFC 5321 4.2.1, 4yz).
        (400..=499, _) => Verdict::class(C::ServerUnavailable),
        // A positive reply other than 235 or 334 where it was due.
        (200..=399, _) => Verdict::class(C::ProtocolError),
        _ => Verdict::class(C::Unrecognized),
    }
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
fn io_error(e: &io::Error) -> FailureClass {
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

/// Providers' published wording for a sign-in their policy blocked whatever the password (the
/// IMAP face of SMTP's `5.7.14` and `5.7.9`, which are `auth_policy` too): a setting or a browser
/// sign-in fixes it, not a new password.
const IMAP_POLICY_WORDS: &[&str] = &[
    // Gmail: "* NO [WEBALERT <url>] Web login required." then "NO [ALERT] Please log in via your
    // web browser: https://support.google.com/mail/accounts/answer/78754 (Failure)"
    // (https://github.com/pmengal/MailSystem.NET/issues/17, https://github.com/MailCore/mailcore2/issues/876).
    "please log in via your web browser",
    "web login required",
    // Gmail with 2-Step Verification: "NO [ALERT] Application-specific password required:
    // https://support.google.com/accounts/answer/185833 (Failure)".
    "application-specific password required",
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
    if matches!(command, Command::Login | Command::Authenticate)
        && IMAP_POLICY_WORDS.iter().any(|w| text.contains(w))
    {
        return C::AuthPolicy;
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
                Cmd::Login,
                "L1 NO [ALERT] Application-specific password required: \
                 https://support.google.com/accounts/answer/185833 (Failure)",
                C::AuthPolicy,
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

    fn connect(errno: i32) -> Verdict {
        judge(
            Phase::Connect,
            &ProbeError::Connect {
                addr: "192.0.2.1:993".parse().unwrap(),
                source: io::Error::from_raw_os_error(errno),
            },
        )
    }

    /// Only a real network error is `network_unreachable`; what this host ran out of, or
    /// forbade, is a prober fault; what nobody mapped says so.
    #[test]
    fn connect_errors_by_os_error() {
        use FailureClass as C;
        use ProberFault as F;
        for (errno, fault) in [
            (libc::EMFILE, F::FileDescriptors),
            (libc::ENFILE, F::FileDescriptors),
            (libc::ENOMEM, F::Memory),
            (libc::ENOBUFS, F::Memory),
            (libc::EADDRNOTAVAIL, F::LocalAddress),
            (libc::EAFNOSUPPORT, F::LocalAddress),
            (libc::EPERM, F::LocalFirewall),
            (libc::EACCES, F::LocalFirewall),
        ] {
            let v = connect(errno);
            assert_eq!(
                (v.class, v.fault),
                (C::ProberError, Some(fault)),
                "errno {errno}"
            );
        }
        for (errno, class) in [
            (libc::ENETUNREACH, C::NetworkUnreachable),
            (libc::EHOSTUNREACH, C::NetworkUnreachable),
            (libc::ENETDOWN, C::NetworkUnreachable),
            (libc::EHOSTDOWN, C::NetworkUnreachable),
            (libc::ECONNREFUSED, C::ConnectRefused),
            (libc::ECONNRESET, C::ConnectRefused),
            (libc::ETIMEDOUT, C::ConnectTimeout),
            (libc::EINVAL, C::Unrecognized),
            (libc::EPROTO, C::Unrecognized),
        ] {
            let v = connect(errno);
            assert_eq!((v.class, v.fault), (class, None), "errno {errno}");
        }
    }

    #[test]
    fn io_errors_after_connect() {
        use FailureClass as C;
        let io = |e: io::Error| judge(Phase::Login, &ProbeError::Io(e));
        assert_eq!(
            io(io::Error::from_raw_os_error(libc::ENOBUFS)).fault,
            Some(ProberFault::Memory)
        );
        assert_eq!(
            io(io::Error::from(io::ErrorKind::OutOfMemory)).fault,
            Some(ProberFault::Memory)
        );
        assert_eq!(
            io(io::Error::from(io::ErrorKind::UnexpectedEof)).class,
            C::ConnectionClosed
        );
        assert_eq!(
            io(io::Error::from_raw_os_error(libc::ETIMEDOUT)).class,
            C::Timeout
        );
        assert_eq!(io(io::Error::other("something new")).class, C::Unrecognized);
        let garbage = "Error(Error { input: [72], code: Tag }) during parsing of \"HTTP/1.1\"";
        assert_eq!(io(io::Error::other(garbage)).class, C::ProtocolError);
        let tls = |e: rustls::Error| io(io::Error::new(io::ErrorKind::InvalidData, e));
        assert_eq!(
            tls(rustls::Error::AlertReceived(
                rustls::AlertDescription::InternalError
            ))
            .class,
            C::ConnectionClosed
        );
        assert_eq!(tls(rustls::Error::DecryptError).class, C::ProtocolError);
        let handshake = |e: io::Error| judge(Phase::Tls, &ProbeError::Tls(e));
        assert_eq!(
            handshake(io::Error::other(rustls::Error::FailedToGetRandomBytes)).fault,
            Some(ProberFault::Internal)
        );
        assert_eq!(
            handshake(io::Error::from(io::ErrorKind::UnexpectedEof)).class,
            C::TlsHandshakeFailed
        );
        assert_eq!(
            handshake(io::Error::from_raw_os_error(libc::EMFILE)).fault,
            Some(ProberFault::FileDescriptors)
        );
    }

    /// A reply as a server sends it (CRLF-separated lines, `-` continuations).
    fn reply(wire: &str) -> ProbeError {
        let mut code = 0;
        let lines = wire
            .split("\r\n")
            .filter(|l| !l.is_empty())
            .map(|l| {
                code = l[..3].parse().unwrap();
                l.get(4..).unwrap_or("").to_string()
            })
            .collect();
        ProbeError::Smtp(Reply { code, lines })
    }

    /// The SMTP table, code by code, with the providers' own wording where they use codes of
    /// their own.
    #[test]
    fn smtp_replies_by_phase_and_enhanced_code() {
        use FailureClass as C;
        use Phase as P;
        let cases: &[(Phase, &str, FailureClass)] = &[
            (
                P::Greeting,
                "421 4.3.2 Service shutting down",
                C::ServerUnavailable,
            ),
            (
                P::Greeting,
                "554 5.3.2 No SMTP service here",
                C::ServerUnavailable,
            ),
            (P::Greeting, "250 hello?", C::ProtocolError),
            (
                P::Ehlo,
                "502 5.5.2 Error: command not recognized",
                C::ProtocolError,
            ),
            (P::Ehlo, "554 5.7.1 Access denied", C::ServerUnavailable),
            (P::Ehlo, "501 5.5.2 Invalid EHLO name", C::ServerUnavailable),
            (P::EhloTls, "451 4.3.0 Try later", C::ServerUnavailable),
            (P::Ehlo, "599 5.9.9 what", C::Unrecognized),
            (
                P::Starttls,
                "454 4.7.0 TLS not available",
                C::StarttlsUnavailable,
            ),
            (
                P::Auth,
                "535 5.7.8 Error: authentication failed: bad",
                C::AuthRejected,
            ),
            (P::Auth, "535 Authentication failed", C::AuthRejected),
            (
                P::Auth,
                "535 5.7.3 Authentication unsuccessful",
                C::AuthRejected,
            ),
            (P::Auth, "525 5.7.13 User account disabled", C::AuthRejected),
            (
                P::Auth,
                "535 5.7.139 Authentication unsuccessful, the request did not meet the \
                 criteria to be authenticated successfully. Contact your administrator.",
                C::AuthPolicy,
            ),
            (
                P::Auth,
                "550 5.7.30 Basic authentication is not supported for Client Submission.",
                C::AuthPolicy,
            ),
            (
                P::Auth,
                "534 5.7.9 Authentication mechanism is too weak",
                C::AuthPolicy,
            ),
            (
                P::Auth,
                "534-5.7.14 Please log in with your web browser and then try again.\r\n\
                 534 5.7.14  Learn more at https://support.google.com/mail/answer/78754",
                C::AuthPolicy,
            ),
            (
                P::Auth,
                "432 4.7.12 A password transition is needed",
                C::AuthPolicy,
            ),
            (
                P::Auth,
                "454 4.7.0 Temporary authentication failure",
                C::AuthUnavailable,
            ),
            (
                P::Auth,
                "454 4.7.0 Too many login attempts, please try again later.",
                C::AuthUnavailable,
            ),
            (P::Auth, "451 4.3.0 Local error", C::ServerUnavailable),
            (
                P::Auth,
                "421 4.7.0 Try again later, closing connection.",
                C::ServerUnavailable,
            ),
            (
                P::Auth,
                "504 5.5.4 Unrecognized authentication type",
                C::AuthUnavailable,
            ),
            (
                P::Auth,
                "530 5.7.0 Must issue a STARTTLS command first",
                C::AuthRequired,
            ),
            (P::Auth, "538 5.7.11 Encryption required", C::AuthRequired),
            (
                P::Auth,
                "501 5.5.2 Cannot Base64-decode Client responses",
                C::ProtocolError,
            ),
            (P::Auth, "250 2.0.0 OK", C::ProtocolError),
            (P::Auth, "554 5.7.0 Something else", C::Unrecognized),
            // A basic and an enhanced code that disagree: the enhanced one is not trusted.
            (P::Auth, "535 4.7.139 mixed", C::AuthRejected),
            (
                P::Auth,
                "421 4.7.66 TLS 1.0 and 1.1 are not supported. Please upgrade/update your \
                 client to support TLS 1.2. Visit https://aka.ms/smtp_auth_tls",
                C::TlsHandshakeFailed,
            ),
            (
                P::MailFrom,
                "550 5.7.67 TLS 1.0 and 1.1 are not supported by your organization.",
                C::TlsHandshakeFailed,
            ),
            (
                P::MailFrom,
                "530 5.7.57 Client not authenticated to send mail.",
                C::AuthRequired,
            ),
            (P::Rcpt, "550 5.1.1 User unknown", C::MessageRejected),
            (P::Rcpt, "452 4.2.2 Mailbox full", C::ServerUnavailable),
            (P::Rcpt, "354 go ahead", C::ProtocolError),
            (
                P::Data,
                "554 5.7.1 Message rejected as spam",
                C::MessageRejected,
            ),
            (P::Quit, "500 5.5.1 unknown", C::Unrecognized),
        ];
        for (phase, wire, class) in cases {
            let v = judge(*phase, &reply(wire));
            assert_eq!(v.class, *class, "{} {wire:?}", phase.as_str());
            assert_eq!(v.fault, None);
        }
        // Codes whose words say more than the text carry their meaning into the detail.
        let v = judge(P::Auth, &reply("535 5.7.139 Authentication unsuccessful"));
        assert!(v.meaning.is_some_and(|m| m.contains("not checked")));
        let v = judge(
            P::Auth,
            &reply("535 5.7.8 Authentication credentials invalid"),
        );
        assert_eq!(v.meaning, None);
    }

    #[test]
    fn token_failures_of_the_cache_or_this_host_are_prober_faults() {
        use crate::oauth2::{TokenError, TokenFault};
        let token = |fault| {
            judge(
                Phase::Token,
                &ProbeError::Token(TokenError {
                    url: "https://login.example.test/token".into(),
                    reason: "x".into(),
                    fault,
                }),
            )
        };
        assert_eq!(
            token(TokenFault::Cache).fault,
            Some(ProberFault::TokenCache)
        );
        assert_eq!(
            token(TokenFault::Os(io::Error::from_raw_os_error(libc::EMFILE))).fault,
            Some(ProberFault::FileDescriptors)
        );
        assert_eq!(
            token(TokenFault::Os(io::Error::from_raw_os_error(
                libc::ECONNREFUSED
            )))
            .class,
            FailureClass::AuthTokenFailed
        );
        assert_eq!(
            token(TokenFault::Endpoint).class,
            FailureClass::AuthTokenFailed
        );
    }

    #[test]
    fn panics_and_internal_errors_are_prober_faults_of_their_own() {
        let v = judge(Phase::Login, &ProbeError::Panic("boom".into()));
        assert_eq!(
            (v.class, v.fault),
            (FailureClass::ProberError, Some(ProberFault::Panic))
        );
        let v = judge(Phase::Tls, &ProbeError::Internal("no TLS config".into()));
        assert_eq!(v.fault, Some(ProberFault::Internal));
        // A round trip's leg is judged the same.
        let leg = ProbeError::Leg {
            phase: Phase::Connect,
            error: Box::new(ProbeError::Connect {
                addr: "127.0.0.1:25".parse().unwrap(),
                source: io::Error::from_raw_os_error(libc::EMFILE),
            }),
        };
        assert_eq!(
            judge(Phase::Send, &leg).fault,
            Some(ProberFault::FileDescriptors)
        );
    }

    #[test]
    fn prober_fault_labels_are_unique_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for f in ProberFault::ALL {
            assert!(seen.insert(f.as_str()));
            assert!(
                f.as_str()
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c == '_')
            );
            assert_eq!(
                serde_json::to_string(f).unwrap(),
                format!("\"{}\"", f.as_str())
            );
        }
    }
}
