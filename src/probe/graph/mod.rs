//! The Microsoft Graph mail probe (`protocol = "graph"`): what Outlook and every integration use
//! to reach Exchange Online mail now that Exchange Web Services is blocked there.
//!
//! Phases: `token` (client credentials from the Microsoft identity platform, scope
//! `https://graph.microsoft.com/.default`), `dns`, `connect`, `tls`, then `request` and `body`
//! of `GET /v1.0/users/{mailbox}/mailFolders/inbox`; with `newest_message`, `messages` for
//! `GET .../mailFolders/inbox/messages?$top=1&$select=id,receivedDateTime`.
//!
//! Each request sends a fresh `client-request-id` (Graph echoes it); a refusal's detail names it
//! with Graph's `request-id`, what Microsoft support asks for. A `Retry-After` on a refusal is
//! handed to the scheduler, which waits at least that long before probing the target again.
//! Answers are judged in [`classify`].
//!
//! A round trip can send with [`send`] (`sendMail`) and receive in [`inbox`] (polling the Inbox).
//!
//! Reference: "Get mailFolder" (<https://learn.microsoft.com/graph/api/mailfolder-get>) and
//! "List messages" (<https://learn.microsoft.com/graph/api/user-list-messages>).

pub mod classify;
pub mod inbox;
pub mod spec;

use http::{HeaderName, HeaderValue, Method};
use url::Url;

use super::api::{Api, ApiResponse, Call};
use super::{Phase, PhaseError, PhaseRecorder, ProbeContext, ProbeError};
pub use classify::GraphError;
pub use spec::GraphSpec;

/// `base/v1.0/users/{mailbox}/` followed by `rest` (each segment percent-encoded).
pub fn user_url(base: &Url, mailbox: &str, rest: &[&str]) -> Url {
    let mut url = base.clone();
    if let Ok(mut segs) = url.path_segments_mut() {
        segs.pop_if_empty().extend(["v1.0", "users", mailbox]);
        segs.extend(rest);
    }
    url
}

/// The headers Graph ties a request to: our `client-request-id`, echoed back.
pub fn request_headers() -> (String, Vec<(HeaderName, HeaderValue)>) {
    let id = crate::hash::unique_token();
    let headers = vec![
        (
            HeaderName::from_static("client-request-id"),
            HeaderValue::from_str(&id).unwrap_or(HeaderValue::from_static("mailprobe")),
        ),
        (
            HeaderName::from_static("return-client-request-id"),
            HeaderValue::from_static("true"),
        ),
    ];
    (id, headers)
}

/// A refusal as a [`GraphError`], its `Retry-After` recorded for the scheduler.
pub fn refusal(
    rec: &mut PhaseRecorder,
    resp: &ApiResponse,
    what: String,
    sent_id: &str,
) -> ProbeError {
    let json = resp.json();
    let error = &json["error"];
    let text = |v: &serde_json::Value| v.as_str().map(|s| super::clean(s, 300));
    let retry_after = resp.retry_after();
    if let Some(wait) = retry_after {
        rec.set_retry_after(wait);
    }
    ProbeError::Refused(Box::new(GraphError {
        what,
        status: resp.status.as_u16(),
        code: text(&error["code"]),
        message: text(&error["message"]),
        request_id: resp
            .header("request-id")
            .map(|s| super::clean(s, 100))
            .or_else(|| text(&error["innerError"]["request-id"])),
        client_request_id: Some(
            resp.header("client-request-id")
                .map(|s| super::clean(s, 100))
                .unwrap_or_else(|| sent_id.to_string()),
        ),
        retry_after,
    }))
}

/// The token, a client of the Graph endpoint, and one read of the mailbox's Inbox (phases
/// `token` ... `body`): the probe's first step, and how a round trip's receiving leg proves it
/// may read the mailbox before sending.
pub async fn open_inbox<'a>(
    spec: &'a GraphSpec,
    ctx: &ProbeContext,
    rec: &mut PhaseRecorder,
) -> Result<(Api<'a>, secrecy::SecretString), PhaseError> {
    let token = super::oauth2_token(rec, ctx, &spec.oauth2).await?;
    let mut api = Api::new(&spec.endpoint, &token, spec.max_body)?;
    let inbox = user_url(&spec.base, &spec.mailbox, &["mailFolders", "inbox"]);
    let (id, headers) = request_headers();
    let resp = api
        .call(
            rec,
            ctx,
            Call {
                method: Method::GET,
                url: &inbox,
                json: None,
                headers,
                request: Phase::Request,
                body: Phase::Body,
            },
        )
        .await?;
    let what = format!("the Inbox of {}", spec.mailbox);
    if !resp.status.is_success() {
        return Err(PhaseError {
            phase: Phase::Request,
            error: refusal(rec, &resp, what, &id),
        });
    }
    let folder = resp.json();
    if !folder["id"].is_string() {
        return Err(PhaseError {
            phase: Phase::Body,
            error: ProbeError::Protocol(format!(
                "{what}: a {} answer without a mailFolder id",
                resp.status.as_u16()
            )),
        });
    }
    Ok((api, token))
}

/// One probe: the mailbox's Inbox (and its newest message).
pub async fn probe(
    spec: &GraphSpec,
    ctx: &ProbeContext,
    rec: &mut PhaseRecorder,
) -> Result<(), PhaseError> {
    let (mut api, _) = open_inbox(spec, ctx, rec).await?;
    if !spec.newest_message {
        return Ok(());
    }
    let mut newest = user_url(
        &spec.base,
        &spec.mailbox,
        &["mailFolders", "inbox", "messages"],
    );
    newest
        .query_pairs_mut()
        .append_pair("$top", "1")
        .append_pair("$select", "id,receivedDateTime");
    let (id, headers) = request_headers();
    let resp = api
        .call(
            rec,
            ctx,
            Call {
                method: Method::GET,
                url: &newest,
                json: None,
                headers,
                request: Phase::Messages,
                body: Phase::Messages,
            },
        )
        .await?;
    let what = format!("the newest message of {}", spec.mailbox);
    if !resp.status.is_success() {
        return Err(PhaseError {
            phase: Phase::Messages,
            error: refusal(rec, &resp, what, &id),
        });
    }
    if !resp.json()["value"].is_array() {
        return Err(PhaseError {
            phase: Phase::Messages,
            error: ProbeError::Protocol(format!("{what}: no message collection (value)")),
        });
    }
    Ok(())
}

/// A round trip's sending leg through Graph: `POST /v1.0/users/{mailbox}/sendMail` with the
/// probe message (its token in the subject and in the `X-Mailprobe-Token` header), accepted
/// when Graph answers 202; returns that moment. Reference: "user: sendMail"
/// (<https://learn.microsoft.com/graph/api/user-sendmail>): 202 Accepted, no body; custom
/// `internetMessageHeaders` must start with `X-`.
pub async fn send(
    spec: &GraphSpec,
    ctx: &ProbeContext,
    rec: &mut PhaseRecorder,
    message: &super::smtp::ProbeMessage,
) -> Result<std::time::Instant, PhaseError> {
    let token = super::oauth2_token(rec, ctx, &spec.oauth2).await?;
    let mut api = Api::new(&spec.endpoint, &token, spec.max_body)?;
    let url = user_url(&spec.base, &spec.mailbox, &["sendMail"]);
    let body = serde_json::json!({
        "message": {
            "subject": message.subject(),
            "body": {"contentType": "Text", "content": super::smtp::ProbeMessage::BODY},
            "toRecipients": [{"emailAddress": {"address": message.to.to_string()}}],
            "internetMessageHeaders": [
                {"name": super::smtp::TOKEN_HEADER, "value": message.token},
            ],
        },
        "saveToSentItems": false,
    });
    let (id, headers) = request_headers();
    let resp = api
        .call(
            rec,
            ctx,
            Call {
                method: Method::POST,
                url: &url,
                json: Some(body),
                headers,
                request: Phase::Request,
                body: Phase::Body,
            },
        )
        .await?;
    if resp.status != http::StatusCode::ACCEPTED {
        let what = format!("sendMail as {}", spec.mailbox);
        return Err(PhaseError {
            phase: Phase::Request,
            error: refusal(rec, &resp, what, &id),
        });
    }
    // Accepted now, like the 250 after DATA (a 202 has no body to wait for).
    Ok(std::time::Instant::now())
}
