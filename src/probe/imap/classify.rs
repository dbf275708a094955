//! How IMAP answers become failure classes: response codes (RFC 5530, RFC 3501 and the
//! extensions', a few providers' own) and providers' published wording, by the command refused;
//! every IMAP refusal reaches [`crate::probe::classify::judge`] as an
//! [`Answer`].

use super::{Command, Refusal};
use crate::probe::Phase;
use crate::probe::classify::{FailureClass, Verdict, io_error};
use crate::probe::error::Answer;

impl Answer for Refusal {
    fn verdict(&self, _: Phase) -> Verdict {
        refusal(self).into()
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
pub fn code(name: &str) -> ImapCode {
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
pub(crate) fn refusal(r: &Refusal) -> FailureClass {
    use FailureClass as C;
    use ImapCode as K;
    let (command, answer) = match r {
        Refusal::LoginDisabled { tls: false } => return C::AuthRequired,
        Refusal::LoginDisabled { tls: true } => return C::AuthUnavailable,
        Refusal::Answer {
            command, answer, ..
        } => (*command, answer),
    };
    match answer.code_name().map_or(K::Informational, |c| code(&c)) {
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
pub(crate) fn library_error(phase: Phase, e: &async_imap::error::Error) -> FailureClass {
    use async_imap::error::Error as E;
    match e {
        E::No(text) | E::Bad(text) if text_busy(text) => FailureClass::ServerUnavailable,
        E::No(_) | E::Bad(_) if phase == Phase::Starttls => FailureClass::StarttlsUnavailable,
        E::No(_) if phase == Phase::Login => FailureClass::AuthRejected,
        E::No(_) if phase == Phase::Select => FailureClass::MailboxError,
        E::Io(io) => io_error(io),
        E::ConnectionLost => FailureClass::ConnectionClosed,
        _ => FailureClass::ProtocolError,
    }
}

/// Whether async-imap's text of a NO or BAD names a busy code or a provider's limit wording.
fn text_busy(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    let busy_code = text.split('[').skip(1).any(|c| {
        let name: String = c
            .chars()
            .take_while(|ch| ch.is_ascii_alphanumeric() || *ch == '-')
            .collect();
        code(&name.to_ascii_uppercase()) == ImapCode::Busy
    });
    busy_code || IMAP_BUSY_WORDS.iter().any(|w| lower.contains(w))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::ProbeError;
    use crate::probe::classify::classify;

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
        use super::super::{Command as Cmd, Refusal, StatusLine};
        use FailureClass as C;
        let class = |command, line: &str| {
            classify(
                Phase::Login,
                &ProbeError::Refused(Box::new(Refusal::Answer {
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
        let disabled = |tls| ProbeError::Refused(Box::new(Refusal::LoginDisabled { tls }));
        assert_eq!(classify(Phase::Login, &disabled(false)), C::AuthRequired);
        assert_eq!(classify(Phase::Login, &disabled(true)), C::AuthUnavailable);
    }

    #[test]
    fn every_rfc5530_code_is_a_decision() {
        for name in [
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
            assert_ne!(code(name), ImapCode::Unknown, "{name}");
        }
        assert_eq!(code("X-FROBNICATED"), ImapCode::Unknown);
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
}
