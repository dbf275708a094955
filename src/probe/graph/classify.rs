//! Microsoft Graph's answers, judged code by code: the JSON error body
//! (`{"error":{"code":"...","message":"..."}}`) first, its HTTP status when the code says
//! nothing we know.
//!
//! Sources: "Microsoft Graph error responses and resource types"
//! (<https://learn.microsoft.com/graph/errors>: the status table, the error resource, `code`,
//! `message`, `innerError` with `request-id`, `client-request-id` and `date`), "Microsoft Graph
//! throttling guidance" (<https://learn.microsoft.com/graph/throttling>: 429 with
//! `Retry-After`; 503 and 504 may carry it too), and the Outlook mail API's codes
//! (`ErrorAccessDenied`, `ErrorItemNotFound`, `MailboxNotEnabledForRESTAPI`,
//! `ErrorServerBusy`) as Graph returns them for `/users/{id}/mailFolders`.

use std::fmt;
use std::time::Duration;

use crate::probe::Phase;
use crate::probe::classify::{FailureClass, Verdict};
use crate::probe::error::Answer;

/// A Graph answer that ends a probe: its status, error code and message, and the ids Microsoft
/// support asks for.
#[derive(Debug, Clone)]
pub struct GraphError {
    /// What was asked ("the Inbox of probe@contoso.com").
    pub what: String,
    /// The HTTP status.
    pub status: u16,
    /// `error.code`, if the body had one.
    pub code: Option<String>,
    /// `error.message`, clipped.
    pub message: Option<String>,
    /// The `request-id` header (or `innerError.request-id`).
    pub request_id: Option<String>,
    /// The `client-request-id` header (the id we sent, echoed).
    pub client_request_id: Option<String>,
    /// `Retry-After`, when the server asked to wait.
    pub retry_after: Option<Duration>,
}

impl fmt::Display for GraphError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Graph HTTP {} for {}", self.status, self.what)?;
        if let Some(c) = &self.code {
            write!(f, ": {c}")?;
        }
        if let Some(m) = self.message.as_deref().filter(|m| !m.is_empty()) {
            write!(f, " \"{m}\"")?;
        }
        if let Some(w) = self.retry_after {
            write!(f, ", Retry-After {}s", w.as_secs())?;
        }
        if let Some(r) = &self.request_id {
            write!(f, " (request-id {r}")?;
            match &self.client_request_id {
                Some(c) => write!(f, ", client-request-id {c})")?,
                None => write!(f, ")")?,
            }
        } else if let Some(c) = &self.client_request_id {
            write!(f, " (client-request-id {c})")?;
        }
        Ok(())
    }
}

/// The class of a Graph error code, when Graph documents it.
fn by_code(code: &str) -> Option<Verdict> {
    use FailureClass as C;
    let v = match code {
        // The app lacks the permission, or an application access policy / RBAC for
        // Applications keeps it out of this mailbox.
        "ErrorAccessDenied" | "Authorization_RequestDenied" | "AccessDenied" => Verdict::meant(
            C::AuthRejected,
            "the app may not read this mailbox: its permission or the tenant's application \
             access policy",
        ),
        "InvalidAuthenticationToken" | "Authorization_IdentityNotFound" => {
            Verdict::class(C::AuthRejected)
        }
        "MailboxNotEnabledForRESTAPI" => Verdict::meant(
            C::MailboxError,
            "the user has no Exchange Online mailbox (unlicensed, on-premises, or inactive)",
        ),
        "ResourceNotFound"
        | "ErrorItemNotFound"
        | "Request_ResourceNotFound"
        | "ErrorInvalidUser"
        | "ErrorNonExistentMailbox" => Verdict::class(C::MailboxError),
        "ErrorServerBusy"
        | "ServiceUnavailable"
        | "serviceNotAvailable"
        | "ErrorMailboxMoveInProgress" => Verdict::class(C::ServerUnavailable),
        "TooManyRequests" | "activityLimitReached" | "ApplicationThrottled" => {
            Verdict::class(C::Throttled)
        }
        _ => return None,
    };
    Some(v)
}

impl Answer for GraphError {
    fn verdict(&self, _: Phase) -> Verdict {
        use FailureClass as C;
        // A 429 is throttling whatever code it carries (Graph's own throttling answers have
        // said "UnknownError" with an empty message).
        if self.status == 429 {
            return Verdict::class(C::Throttled);
        }
        if let Some(v) = self.code.as_deref().and_then(by_code) {
            return v;
        }
        match self.status {
            401 | 403 => Verdict::class(C::AuthRejected),
            502..=504 => Verdict::class(C::ServerUnavailable),
            // Any other status, or a code no table knows: said to be unknown, never guessed.
            _ => Verdict::class(C::Unrecognized),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(status: u16, code: Option<&str>) -> GraphError {
        GraphError {
            what: "the Inbox of probe@contoso.test".into(),
            status,
            code: code.map(str::to_string),
            message: Some("words".into()),
            request_id: Some("r-1".into()),
            client_request_id: Some("c-1".into()),
            retry_after: None,
        }
    }

    #[test]
    fn codes_then_statuses() {
        use FailureClass as C;
        let cases = [
            (403, Some("ErrorAccessDenied"), C::AuthRejected),
            (403, Some("Authorization_RequestDenied"), C::AuthRejected),
            (401, Some("InvalidAuthenticationToken"), C::AuthRejected),
            (401, None, C::AuthRejected),
            (404, Some("MailboxNotEnabledForRESTAPI"), C::MailboxError),
            (404, Some("ResourceNotFound"), C::MailboxError),
            (404, Some("ErrorItemNotFound"), C::MailboxError),
            (429, Some("UnknownError"), C::Throttled),
            (429, None, C::Throttled),
            (503, Some("ServiceUnavailable"), C::ServerUnavailable),
            (503, Some("ErrorServerBusy"), C::ServerUnavailable),
            (504, None, C::ServerUnavailable),
            (404, Some("SomethingNew"), C::Unrecognized),
            (500, Some("generalException"), C::Unrecognized),
            (400, None, C::Unrecognized),
        ];
        for (status, code, class) in cases {
            assert_eq!(
                err(status, code).verdict(Phase::Request).class,
                class,
                "{status} {code:?}"
            );
        }
    }

    #[test]
    fn the_detail_names_the_ids_support_asks_for() {
        let mut e = err(429, Some("TooManyRequests"));
        e.retry_after = Some(Duration::from_secs(30));
        assert_eq!(
            e.to_string(),
            "Graph HTTP 429 for the Inbox of probe@contoso.test: TooManyRequests \"words\", \
             Retry-After 30s (request-id r-1, client-request-id c-1)"
        );
    }
}
