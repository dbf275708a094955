//! How POP3 answers become failure classes: the extended response codes (RFC 2449 section 8,
//! RFC 3206) first, then what a code-less `-ERR` means for the command it answered (RFC 1939);
//! every POP3 refusal reaches [`crate::probe::classify::judge`] as an [`Answer`].

use super::{Command, Refusal};
use crate::probe::Phase;
use crate::probe::classify::{FailureClass, Verdict};
use crate::probe::error::Answer;

impl Answer for Refusal {
    fn verdict(&self, _: Phase) -> Verdict {
        refusal(self)
    }
}

/// What a POP3 response code says about a refused command: one row per code mailprobe knows,
/// everything else [`Pop3Code::Unknown`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pop3Code {
    /// `AUTH` (RFC 3206 section 5): the credentials were refused.
    Credentials,
    /// `IN-USE` (RFC 2449 section 8.1.1): the maildrop is locked by another session.
    InUse,
    /// `LOGIN-DELAY` (RFC 2449 section 8.1.2): the user logged in too recently.
    LoginDelay,
    /// `SYS/TEMP` (RFC 3206 section 4): a system problem likely to pass.
    SysTemp,
    /// `SYS/PERM` (RFC 3206 section 4): a system problem that needs intervention.
    SysPerm,
    /// `SYS` with no level mailprobe knows: a system problem, not the credentials.
    Sys,
    /// A code mailprobe does not know; the detail says so.
    Unknown,
}

/// The meaning of response code `code` (upper case). Codes are hierarchical: a level below
/// one mailprobe knows is ignored, as RFC 2449 section 8 tells clients to.
pub fn code(code: &str) -> Pop3Code {
    use Pop3Code as K;
    let mut levels = code.split('/');
    match (levels.next().unwrap_or_default(), levels.next()) {
        ("AUTH", _) => K::Credentials,
        ("IN-USE", _) => K::InUse,
        ("LOGIN-DELAY", _) => K::LoginDelay,
        ("SYS", Some("TEMP")) => K::SysTemp,
        ("SYS", Some("PERM")) => K::SysPerm,
        ("SYS", _) => K::Sys,
        _ => K::Unknown,
    }
}

const IN_USE: &str = "the maildrop is locked by another POP3 session (a mail client, or a probe \
                      still running): RFC 2449 IN-USE";
const LOGIN_DELAY: &str = "the server lets this user log in only so often (RFC 2449 LOGIN-DELAY, \
                           its CAPA says how often): probing more often is refused";
const SYS_PERM: &str = "a system problem that will not pass without the server's administrators \
                        (RFC 3206 SYS/PERM: e.g. a corrupted mailbox, a configuration error); \
                        the credentials were not the problem";

/// The verdict on a POP3 refusal: by its response code where the code says why, else by what a
/// `-ERR` to the command means.
pub(crate) fn refusal(r: &Refusal) -> Verdict {
    use FailureClass as C;
    use Pop3Code as K;
    let (command, answer) = match r {
        Refusal::NotOffered { tls: false, .. } => return C::AuthRequired.into(),
        Refusal::NotOffered { tls: true, .. } => return C::AuthUnavailable.into(),
        Refusal::Answer {
            command, answer, ..
        } => (*command, answer),
    };
    let login = matches!(command, Command::User | Command::Pass | Command::Auth);
    match answer.code_upper().map(|c| code(&c)) {
        Some(K::Credentials) if login => return C::AuthRejected.into(),
        Some(K::InUse) => return Verdict::meant(C::ServerUnavailable, IN_USE),
        Some(K::LoginDelay) => return Verdict::meant(C::ServerUnavailable, LOGIN_DELAY),
        Some(K::SysTemp | K::Sys) => return C::ServerUnavailable.into(),
        Some(K::SysPerm) => return Verdict::meant(C::ServerUnavailable, SYS_PERM),
        // An AUTH code where no credentials were sent, or a code mailprobe does not know: the
        // `-ERR` means what it means for the command (the detail names an unknown code).
        Some(K::Credentials | K::Unknown) | None => {}
    }
    let class = match command {
        // A server that will not serve this connection says so in its greeting.
        Command::Greeting => C::ServerUnavailable,
        // RFC 2595 section 4: -ERR to STLS means no TLS here.
        Command::Stls => C::StarttlsUnavailable,
        // RFC 1939 section 7, RFC 5034 section 4: -ERR to USER, PASS or AUTH is a refused
        // login, the credentials the reason the protocol has for it.
        Command::User | Command::Pass | Command::Auth => C::AuthRejected,
        // Signed in, then refused without a code: nothing in RFC 1939 says why, so mailprobe
        // does not guess.
        Command::Stat | Command::Quit => C::Unrecognized,
    };
    class.into()
}

#[cfg(test)]
mod tests {
    use super::super::StatusLine;
    use super::*;
    use crate::probe::ProbeError;
    use crate::probe::classify::judge;

    fn answer(command: Command, line: &str) -> ProbeError {
        ProbeError::Refused(Box::new(Refusal::Answer {
            command,
            answer: StatusLine::parse(line).expect("a status line"),
            challenge: None,
        }))
    }

    /// The POP3 table, code by code and command by command.
    #[test]
    fn pop3_answers_by_code_then_command() {
        use Command as Cmd;
        use FailureClass as C;
        for (command, line, class) in [
            (
                Cmd::Pass,
                "-ERR [AUTH] Authentication failed.",
                C::AuthRejected,
            ),
            (Cmd::Auth, "-ERR [auth] Bad token", C::AuthRejected),
            (Cmd::Pass, "-ERR invalid password", C::AuthRejected),
            (
                Cmd::User,
                "-ERR no mailbox for frated here",
                C::AuthRejected,
            ),
            (Cmd::Auth, "-ERR", C::AuthRejected),
            (
                Cmd::Pass,
                "-ERR [SYS/TEMP] Temporary failure",
                C::ServerUnavailable,
            ),
            (
                Cmd::Pass,
                "-ERR [SYS/PERM] Mailbox corrupt",
                C::ServerUnavailable,
            ),
            (Cmd::Pass, "-ERR [SYS/FUTURE] what", C::ServerUnavailable),
            (Cmd::Pass, "-ERR [SYS/TEMP/DISK] full", C::ServerUnavailable),
            (
                Cmd::Pass,
                "-ERR [IN-USE] Mailbox locked",
                C::ServerUnavailable,
            ),
            (
                Cmd::Auth,
                "-ERR [LOGIN-DELAY] wait 15 minutes",
                C::ServerUnavailable,
            ),
            (Cmd::Pass, "-ERR [AUTH/FUTURE] nope", C::AuthRejected),
            // Unknown codes are ignored: a -ERR to PASS is still a refused login.
            (Cmd::Pass, "-ERR [X-FROB] nope", C::AuthRejected),
            (
                Cmd::Greeting,
                "-ERR too many connections",
                C::ServerUnavailable,
            ),
            (
                Cmd::Greeting,
                "-ERR [SYS/TEMP] try later",
                C::ServerUnavailable,
            ),
            (Cmd::Stls, "-ERR TLS not available", C::StarttlsUnavailable),
            (Cmd::Stls, "-ERR [SYS/TEMP] later", C::ServerUnavailable),
            (Cmd::Stat, "-ERR [SYS/TEMP] later", C::ServerUnavailable),
            (Cmd::Stat, "-ERR [IN-USE] locked", C::ServerUnavailable),
            // Never a guess: a code-less -ERR after login, or [AUTH] where nothing was signed.
            (Cmd::Stat, "-ERR something", C::Unrecognized),
            (Cmd::Stat, "-ERR [AUTH] odd", C::Unrecognized),
            (Cmd::Stat, "-ERR [X-FROB] odd", C::Unrecognized),
            (
                Cmd::Quit,
                "-ERR some deleted messages not removed",
                C::Unrecognized,
            ),
        ] {
            let v = judge(Phase::Login, &answer(command, line));
            assert_eq!(v.class, class, "{command:?} {line}");
            assert_eq!(v.fault, None);
        }
        let v = judge(Phase::Login, &answer(Cmd::Pass, "-ERR [SYS/PERM] x"));
        assert!(v.meaning.is_some_and(|m| m.contains("SYS/PERM")));
        let not = |tls| ProbeError::Refused(Box::new(Refusal::NotOffered { what: "USER", tls }));
        assert_eq!(judge(Phase::Login, &not(false)).class, C::AuthRequired);
        assert_eq!(judge(Phase::Login, &not(true)).class, C::AuthUnavailable);
    }

    #[test]
    fn every_rfc_code_is_a_decision() {
        for name in ["AUTH", "IN-USE", "LOGIN-DELAY", "SYS/TEMP", "SYS/PERM"] {
            assert_ne!(code(name), Pop3Code::Unknown, "{name}");
        }
        assert_eq!(code("X-FROB"), Pop3Code::Unknown);
        assert_eq!(code("UTF8"), Pop3Code::Unknown);
    }

    #[test]
    fn the_detail_names_an_unknown_code_and_a_refused_token() {
        let e = answer(Command::Pass, "-ERR [X-FROB] nope");
        assert_eq!(
            e.to_string(),
            "POP3 PASS: -ERR [X-FROB] nope (response code X-FROB is unknown to mailprobe)"
        );
        let e = ProbeError::Refused(Box::new(Refusal::Answer {
            command: Command::Auth,
            answer: StatusLine::parse("-ERR [AUTH] Authentication failed.").unwrap(),
            challenge: Some("status 401".into()),
        }));
        assert_eq!(
            e.to_string(),
            "token rejected (status 401): POP3 AUTH: -ERR [AUTH] Authentication failed."
        );
    }
}
