//! The Gmail API's answers, judged from Google's JSON error body
//! (`{"error":{"code":403,"message":"...","errors":[{"reason":"..."}],"status":"PERMISSION_DENIED"}}`):
//! the canonical `status` first, a rate-limit `reason` before it, the HTTP status last.
//!
//! Sources: "Resolve errors" of the Gmail API
//! (<https://developers.google.com/workspace/gmail/api/guides/handle-errors>: 401 invalid
//! credentials, 403 `userRateLimitExceeded`/`rateLimitExceeded`/`dailyLimitExceeded` and
//! domain policy, 429 too many requests, 500 `backendError` to retry) and Google's API error
//! model (<https://cloud.google.com/apis/design/errors>: `code`, `message`, `status` as the
//! canonical `google.rpc.Code` name).

use std::fmt;
use std::time::Duration;

use crate::probe::Phase;
use crate::probe::classify::{FailureClass, Verdict};
use crate::probe::error::Answer;

/// A Gmail API answer that ends a probe.
#[derive(Debug, Clone)]
pub struct GmailError {
    /// What was asked ("the INBOX label of probe@example.com").
    pub what: String,
    /// The HTTP status.
    pub status: u16,
    /// `error.status` (`PERMISSION_DENIED`, `RESOURCE_EXHAUSTED`, ...).
    pub canonical: Option<String>,
    /// `error.errors[0].reason` (`userRateLimitExceeded`, `backendError`, ...).
    pub reason: Option<String>,
    /// `error.message`, clipped.
    pub message: Option<String>,
    /// `Retry-After`, when the server asked to wait.
    pub retry_after: Option<Duration>,
}

impl fmt::Display for GmailError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Gmail API HTTP {} for {}", self.status, self.what)?;
        if let Some(c) = &self.canonical {
            write!(f, ": {c}")?;
        }
        if let Some(r) = &self.reason {
            write!(f, " ({r})")?;
        }
        if let Some(m) = self.message.as_deref().filter(|m| !m.is_empty()) {
            write!(f, " \"{m}\"")?;
        }
        if let Some(w) = self.retry_after {
            write!(f, ", Retry-After {}s", w.as_secs())?;
        }
        Ok(())
    }
}

impl Answer for GmailError {
    fn verdict(&self, _: Phase) -> Verdict {
        use FailureClass as C;
        // Gmail answers per-user and daily quotas with 403 and a reason saying so.
        if matches!(
            self.reason.as_deref(),
            Some("rateLimitExceeded" | "userRateLimitExceeded" | "dailyLimitExceeded")
        ) || self.status == 429
        {
            return Verdict::class(C::Throttled);
        }
        match self.canonical.as_deref() {
            Some("UNAUTHENTICATED" | "PERMISSION_DENIED") => {
                return Verdict::meant(
                    C::AuthRejected,
                    "the token was refused: domain-wide delegation not granted for this scope, \
                     or the user is outside the domain",
                );
            }
            Some("NOT_FOUND") => return Verdict::class(C::MailboxError),
            // "Mail service not enabled": the user has no Gmail.
            Some("FAILED_PRECONDITION") => {
                return Verdict::meant(C::MailboxError, "Gmail is not enabled for this user");
            }
            Some("RESOURCE_EXHAUSTED") => return Verdict::class(C::Throttled),
            Some("UNAVAILABLE" | "DEADLINE_EXCEEDED") => {
                return Verdict::class(C::ServerUnavailable);
            }
            _ => {}
        }
        if self.reason.as_deref() == Some("backendError") {
            return Verdict::class(C::ServerUnavailable);
        }
        match self.status {
            401 | 403 => Verdict::class(C::AuthRejected),
            502..=504 => Verdict::class(C::ServerUnavailable),
            _ => Verdict::class(C::Unrecognized),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_status_then_reason_then_http_status() {
        use FailureClass as C;
        let cases = [
            (401, Some("UNAUTHENTICATED"), None, C::AuthRejected),
            (
                403,
                Some("PERMISSION_DENIED"),
                Some("forbidden"),
                C::AuthRejected,
            ),
            (
                403,
                Some("PERMISSION_DENIED"),
                Some("userRateLimitExceeded"),
                C::Throttled,
            ),
            (
                429,
                Some("RESOURCE_EXHAUSTED"),
                Some("rateLimitExceeded"),
                C::Throttled,
            ),
            (404, Some("NOT_FOUND"), Some("notFound"), C::MailboxError),
            (
                400,
                Some("FAILED_PRECONDITION"),
                Some("failedPrecondition"),
                C::MailboxError,
            ),
            (503, Some("UNAVAILABLE"), None, C::ServerUnavailable),
            (
                500,
                Some("INTERNAL"),
                Some("backendError"),
                C::ServerUnavailable,
            ),
            (500, None, None, C::Unrecognized),
            (
                400,
                Some("INVALID_ARGUMENT"),
                Some("invalidArgument"),
                C::Unrecognized,
            ),
        ];
        for (status, canonical, reason, class) in cases {
            let e = GmailError {
                what: "x".into(),
                status,
                canonical: canonical.map(str::to_string),
                reason: reason.map(str::to_string),
                message: None,
                retry_after: None,
            };
            assert_eq!(e.verdict(Phase::Request).class, class, "{e}");
        }
    }
}
