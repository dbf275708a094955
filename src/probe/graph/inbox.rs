//! A round trip's receiving leg through Microsoft Graph: the Inbox of the Graph target's mailbox,
//! read with the shared API client (bounded answers, timed calls) and judged by [`super::refusal`].
//!
//! - Open: `GET /v1.0/users/{mailbox}/mailFolders/inbox` proves the app may read the mailbox
//!   before anything is sent ("Get mailFolder",
//!   <https://learn.microsoft.com/graph/api/mailfolder-get>).
//! - Look: `GET .../mailFolders/inbox/messages?$filter=contains(subject,'{token}')
//!   &$select=id,subject,receivedDateTime&$top=10` ("List messages",
//!   <https://learn.microsoft.com/graph/api/user-list-messages>). `$filter` on messages takes
//!   `subject` (`eq`, `startswith`, `contains`) and `receivedDateTime` (`ge`, `lt`, ...); it
//!   cannot reach `internetMessageHeaders`, which are returned only when `$select`ed
//!   ("message resource type", <https://learn.microsoft.com/graph/api/resources/message>).
//!   `contains`, not `eq`: a tenant's transport rule may prefix the subject (`[EXTERNAL]`); the
//!   token is then matched exactly on the subject returned. `$search` is not used: it goes
//!   through the search index, which lags behind delivery, so it would add its own delay to
//!   the latency measured. No `$orderby`, which Exchange refuses with some filters
//!   (`InefficientFilter`). Query values are percent-encoded (RFC 3986, as "Use query
//!   parameters", <https://learn.microsoft.com/graph/query-parameters>, asks) and OData string
//!   literals have their quotes doubled (OData ABNF `SQUOTE-in-string`).
//! - Sweep: messages with `receivedDateTime lt {cutoff}` and `mailprobe probe ` in the subject,
//!   with their `internetMessageHeaders`: only those whose `X-Mailprobe-Token` header carries the
//!   token in their subject are ours and deleted. One page (`$top`) per run; `@odata.nextLink`
//!   is not followed (the next run takes the next page), so every run stays bounded.
//! - Delete: `DELETE /v1.0/users/{mailbox}/messages/{id}`, 204 ("Delete message",
//!   <https://learn.microsoft.com/graph/api/message-delete>): available in every national
//!   cloud, it moves the message to Deleted Items. `permanentDelete` would skip Deleted Items
//!   but exists only in the global service
//!   (<https://learn.microsoft.com/graph/api/message-permanentdelete>).

use std::time::{Duration, SystemTime};

use http::Method;
use url::Url;

use super::{GraphSpec, refusal, request_headers, user_url};
use crate::probe::api::{Api, Call};
use crate::probe::smtp::TOKEN_HEADER;
use crate::probe::{Phase, PhaseError, PhaseRecorder, ProbeContext, ProbeError};

/// What every probe message's subject starts with (after any prefix a server adds).
pub const SUBJECT_PREFIX: &str = "mailprobe probe ";
/// Most messages asked for when looking for one token (one is expected; more are copies).
const FIND_TOP: u32 = 10;
/// Most old probe messages asked for by one sweep: their headers make each answer large, and
/// the body read is bounded by the target's `max_body`.
pub const SWEEP_TOP: u32 = 50;

/// A message of ours in the Inbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Arrived {
    /// Graph's message id (what DELETE takes).
    pub id: String,
    /// `receivedDateTime`: when Exchange received it (whole seconds).
    pub received: Option<SystemTime>,
}

/// The receiving mailbox, opened.
pub struct GraphInbox<'a> {
    spec: &'a GraphSpec,
    ctx: &'a ProbeContext,
    api: Api<'a>,
    /// Records the calls after opening: a reconnect's phases, the last HTTP status, and a
    /// `Retry-After` the round trip hands to the scheduler.
    pub calls: PhaseRecorder,
    /// The most one call may take (the Graph target's timeout).
    limit: Duration,
}

impl<'a> GraphInbox<'a> {
    /// Gets the token and reads the Inbox once (phases `token` ... `body` in `rec`).
    pub async fn open(
        spec: &'a GraphSpec,
        ctx: &'a ProbeContext,
        rec: &mut PhaseRecorder,
        limit: Duration,
    ) -> Result<GraphInbox<'a>, PhaseError> {
        let (api, token) = super::open_inbox(spec, ctx, rec).await?;
        let mut calls = PhaseRecorder::new();
        calls.add_secret(token);
        Ok(GraphInbox {
            spec,
            ctx,
            api,
            calls,
            limit,
        })
    }

    /// One call within `limit`; a refusal or failure is the call's own phase inside the leg.
    /// With `gone_ok`, a 404 `ErrorItemNotFound` is `Ok(None)`: the item is not there (any
    /// more).
    async fn call(
        &mut self,
        method: Method,
        url: &Url,
        what: String,
        gone_ok: bool,
    ) -> Result<Option<serde_json::Value>, ProbeError> {
        self.renew_token().await?;
        let (id, headers) = request_headers();
        let call = Call {
            method,
            url,
            json: None,
            headers,
            request: Phase::Request,
            body: Phase::Body,
        };
        let leg = |phase, error| ProbeError::Leg {
            phase,
            error: Box::new(error),
        };
        let resp =
            match tokio::time::timeout(self.limit, self.api.call(&mut self.calls, self.ctx, call))
                .await
            {
                Ok(Ok(resp)) => resp,
                Ok(Err(e)) => return Err(leg(e.phase, e.error)),
                Err(_) => return Err(leg(self.calls.interrupted(), ProbeError::Timeout)),
            };
        if gone_ok
            && resp.status == http::StatusCode::NOT_FOUND
            && resp.json()["error"]["code"] == "ErrorItemNotFound"
        {
            return Ok(None);
        }
        if !resp.status.is_success() {
            return Err(leg(
                Phase::Request,
                refusal(&mut self.calls, &resp, what, &id),
            ));
        }
        Ok(Some(resp.json()))
    }

    /// The token from the cache, which renews it before it expires: a wait as long as
    /// `delivery_timeout` allows (up to a day) outlives the token the leg opened with.
    async fn renew_token(&mut self) -> Result<(), ProbeError> {
        use secrecy::ExposeSecret;
        let leg = |error| ProbeError::Leg {
            phase: Phase::Token,
            error: Box::new(error),
        };
        let (token, _) = self.ctx.tokens.token(&self.spec.oauth2).await;
        let token = token.map_err(|e| leg(ProbeError::Token(e)))?;
        let known = self
            .calls
            .secrets
            .iter()
            .any(|s| s.expose_secret() == token.expose_secret());
        if !known {
            self.api.set_token(&token).map_err(leg)?;
            self.calls.add_secret(token);
        }
        Ok(())
    }

    /// The Inbox's messages matching `filter`, with `select`, at most `top`.
    async fn list(
        &mut self,
        filter: &str,
        select: &str,
        top: u32,
        what: String,
    ) -> Result<Vec<serde_json::Value>, ProbeError> {
        let mut url = user_url(
            &self.spec.base,
            &self.spec.mailbox,
            &["mailFolders", "inbox", "messages"],
        );
        url.query_pairs_mut()
            .append_pair("$filter", filter)
            .append_pair("$select", select)
            .append_pair("$top", &top.to_string());
        let json = self
            .call(Method::GET, &url, what.clone(), false)
            .await?
            .unwrap_or_default();
        match json["value"].as_array() {
            Some(v) => Ok(v.clone()),
            None => Err(ProbeError::Leg {
                phase: Phase::Body,
                error: Box::new(ProbeError::Protocol(format!(
                    "{what}: no message collection (value)"
                ))),
            }),
        }
    }

    /// The messages carrying `token` in their subject (normally none or one).
    pub async fn find(&mut self, token: &str) -> Result<Vec<Arrived>, ProbeError> {
        let filter = format!("contains(subject,{})", odata_string(token));
        let what = format!("the probe message in the Inbox of {}", self.spec.mailbox);
        let values = self
            .list(&filter, "id,subject,receivedDateTime", FIND_TOP, what)
            .await?;
        Ok(values
            .iter()
            .filter(|m| m["subject"].as_str().and_then(subject_token) == Some(token))
            .filter_map(arrived)
            .collect())
    }

    /// Probe messages of ours (subject token = `X-Mailprobe-Token` header) received before
    /// `before`, at most [`SWEEP_TOP`].
    pub async fn older_than(&mut self, before: SystemTime) -> Result<Vec<Arrived>, ProbeError> {
        let cutoff = chrono::DateTime::<chrono::Utc>::from(before)
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        let filter = format!(
            "receivedDateTime lt {cutoff} and contains(subject,{})",
            odata_string(SUBJECT_PREFIX)
        );
        let what = format!("old probe messages in the Inbox of {}", self.spec.mailbox);
        let values = self
            .list(
                &filter,
                "id,subject,receivedDateTime,internetMessageHeaders",
                SWEEP_TOP,
                what,
            )
            .await?;
        Ok(values
            .iter()
            .filter(|m| is_ours(m))
            .filter_map(arrived)
            // An unknown date is never a reason to delete.
            .filter(|a| a.received.is_some_and(|r| r < before))
            .collect())
    }

    /// Deletes the message `id` (to Deleted Items); one already gone (another location swept
    /// it) is no failure.
    pub async fn delete(&mut self, id: &str) -> Result<(), ProbeError> {
        let url = {
            let mut u = user_url(&self.spec.base, &self.spec.mailbox, &["messages"]);
            if let Ok(mut segs) = u.path_segments_mut() {
                segs.push(id);
            }
            u
        };
        let what = format!("deleting a probe message of {}", self.spec.mailbox);
        self.call(Method::DELETE, &url, what, true).await.map(drop)
    }
}

/// `s` as an OData string literal: in single quotes, each quote doubled.
pub fn odata_string(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The token of a probe message's subject: what follows [`SUBJECT_PREFIX`] (wherever a server's
/// prefix put it), one word with nothing after it.
pub fn subject_token(subject: &str) -> Option<&str> {
    let (_, rest) = subject.split_once(SUBJECT_PREFIX)?;
    let rest = rest.trim_end();
    (!rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric())).then_some(rest)
}

/// Whether a listed message is one of ours: its `X-Mailprobe-Token` header names the token in
/// its subject.
fn is_ours(m: &serde_json::Value) -> bool {
    let Some(token) = m["subject"].as_str().and_then(subject_token) else {
        return false;
    };
    m["internetMessageHeaders"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|h| {
            h["name"]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(TOKEN_HEADER))
                && h["value"].as_str().map(str::trim) == Some(token)
        })
}

/// A listed message's id and `receivedDateTime`.
fn arrived(m: &serde_json::Value) -> Option<Arrived> {
    let id = m["id"].as_str().filter(|id| !id.is_empty())?.to_string();
    let received = m["receivedDateTime"]
        .as_str()
        .and_then(|d| chrono::DateTime::parse_from_rfc3339(d).ok())
        .and_then(|d| u64::try_from(d.timestamp()).ok())
        .filter(|&s| s > 0)
        .map(|s| std::time::UNIX_EPOCH + Duration::from_secs(s));
    Some(Arrived { id, received })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odata_literals_double_their_quotes() {
        assert_eq!(odata_string("abc"), "'abc'");
        assert_eq!(odata_string("O'Neil"), "'O''Neil'");
        assert_eq!(odata_string("''"), "''''''");
    }

    #[test]
    fn the_token_is_matched_exactly_on_the_subject() {
        let t = "0123456789abcdef01234567";
        assert_eq!(subject_token(&format!("mailprobe probe {t}")), Some(t));
        assert_eq!(
            subject_token(&format!("[EXTERNAL] mailprobe probe {t}")),
            Some(t)
        );
        assert_eq!(
            subject_token(&format!("RE: mailprobe probe {t} and more")),
            None
        );
        assert_eq!(subject_token("mailprobe probe "), None);
        assert_eq!(subject_token("a real letter"), None);
    }

    #[test]
    fn only_messages_whose_header_carries_the_subject_token_are_ours() {
        let m = |subject: &str, header: Option<&str>| {
            serde_json::json!({
                "id": "AAMk1",
                "subject": subject,
                "receivedDateTime": "2026-11-30T09:20:11Z",
                "internetMessageHeaders": header.map(|v| vec![serde_json::json!({"name": "x-mailprobe-token", "value": v})]).unwrap_or_default(),
            })
        };
        assert!(is_ours(&m("mailprobe probe abc123", Some("abc123"))));
        assert!(!is_ours(&m("mailprobe probe abc123", None)));
        assert!(!is_ours(&m("mailprobe probe abc123", Some("other"))));
        let a = arrived(&m("mailprobe probe abc123", Some("abc123"))).unwrap();
        assert_eq!(
            a.received,
            Some(std::time::UNIX_EPOCH + Duration::from_secs(1_796_030_411))
        );
    }
}
