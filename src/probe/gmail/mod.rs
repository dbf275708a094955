//! The Gmail API probe (`protocol = "gmail"`): the INBOX label of a Google Workspace mailbox.
//!
//! Phases: `token` (a service account's JWT-bearer grant with `sub` = the mailbox, through
//! domain-wide delegation), `dns`, `connect`, `tls`, then `request` and `body` of
//! `GET /gmail/v1/users/{mailbox}/labels/INBOX`. A `Retry-After` on a refusal is handed to the
//! scheduler. Answers are judged in [`classify`].
//!
//! Reference: "Method: users.labels.get"
//! (<https://developers.google.com/workspace/gmail/api/reference/rest/v1/users.labels/get>) and
//! the `Label` resource (`id`, `name`, `type`, `messagesTotal`, `messagesUnread`, `threadsTotal`,
//! `threadsUnread`).

pub mod classify;
pub mod spec;

use http::Method;

use super::api::{Api, ApiResponse, Call};
use super::{Phase, PhaseError, PhaseRecorder, ProbeContext, ProbeError};
pub use classify::GmailError;
pub use spec::GmailSpec;

/// A refusal as a [`GmailError`], its `Retry-After` recorded for the scheduler.
fn refusal(rec: &mut PhaseRecorder, resp: &ApiResponse, what: String) -> ProbeError {
    let json = resp.json();
    let error = &json["error"];
    let text = |v: &serde_json::Value| v.as_str().map(|s| super::clean(s, 300));
    let retry_after = resp.retry_after();
    if let Some(wait) = retry_after {
        rec.set_retry_after(wait);
    }
    ProbeError::Refused(Box::new(GmailError {
        what,
        status: resp.status.as_u16(),
        canonical: text(&error["status"]),
        reason: text(&error["errors"][0]["reason"]),
        message: text(&error["message"]),
        retry_after,
    }))
}

/// One probe: the mailbox's INBOX label.
pub async fn probe(
    spec: &GmailSpec,
    ctx: &ProbeContext,
    rec: &mut PhaseRecorder,
) -> Result<(), PhaseError> {
    let token = super::oauth2_token(rec, ctx, &spec.oauth2).await?;
    let mut api = Api::new(&spec.endpoint, &token, spec.max_body)?;
    let mut url = spec.base.clone();
    if let Ok(mut segs) = url.path_segments_mut() {
        segs.pop_if_empty()
            .extend(["gmail", "v1", "users", &spec.mailbox, "labels", "INBOX"]);
    }
    let resp = api
        .call(
            rec,
            ctx,
            Call {
                method: Method::GET,
                url: &url,
                json: None,
                headers: Vec::new(),
                request: Phase::Request,
                body: Phase::Body,
            },
        )
        .await?;
    let what = format!("the INBOX label of {}", spec.mailbox);
    if !resp.status.is_success() {
        return Err(PhaseError {
            phase: Phase::Request,
            error: refusal(rec, &resp, what),
        });
    }
    if resp.json()["id"] != "INBOX" {
        return Err(PhaseError {
            phase: Phase::Body,
            error: ProbeError::Protocol(format!(
                "{what}: a {} answer that is not the INBOX label",
                resp.status.as_u16()
            )),
        });
    }
    Ok(())
}
