//! How SMTP replies become failure classes: by phase, basic code and enhanced code (RFC 5321
//! section 4.2 and 4.3.2, RFC 3463, RFC 4954) and the providers' own codes, each cited; every
//! SMTP refusal reaches [`crate::probe::classify::judge`] as an
//! [`Answer`].

use super::{Refusal, Reply};
use crate::probe::Phase;
use crate::probe::classify::{FailureClass, Verdict};
use crate::probe::error::Answer;

impl Answer for Refusal {
    fn verdict(&self, phase: Phase) -> Verdict {
        smtp_reply(phase, &self.0)
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::ProbeError;
    use crate::probe::classify::judge;

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
        ProbeError::Refused(Box::new(Refusal(Reply { code, lines })))
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
}
