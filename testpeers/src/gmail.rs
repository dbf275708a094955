//! A Gmail API endpoint for the tests, serving the documented shapes over TLS on 127.0.0.1
//! (Google cannot be reached from here).
//!
//! Shapes from Google's Gmail API v1 reference:
//! - "Method: users.labels.get"
//!   (<https://developers.google.com/workspace/gmail/api/reference/rest/v1/users.labels/get>):
//!   `GET /gmail/v1/users/{userId}/labels/{id}`, 200 with a `Label` (`id`, `name`,
//!   `messageListVisibility`, `labelListVisibility`, `type`, `messagesTotal`, `messagesUnread`,
//!   `threadsTotal`, `threadsUnread`).
//! - "Resolve errors" (<https://developers.google.com/workspace/gmail/api/guides/handle-errors>)
//!   and Google's error model (<https://cloud.google.com/apis/design/errors>):
//!   `{"error": {"code", "message", "errors": [{"message", "domain", "reason"}], "status"}}`.
//!
//! A token is accepted only for the user it was issued for (the service account's `sub`):
//! another user's mailbox is 403 `PERMISSION_DENIED`, as delegation denied. A bad token is 401
//! `UNAUTHENTICATED`. A user not added gets 400 `FAILED_PRECONDITION` "Mail service not
//! enabled", what Gmail says of a user without Gmail. Tests queue refusals per mailbox with
//! [`GmailServer::refuse`].

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;

use crate::api::{ApiServer, Asked, json};
use crate::pki::ServerCert;

/// Who a valid token belongs to (the token server's `token_user`).
pub type TokenUser = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// A refusal Google documents.
#[derive(Clone, Debug)]
pub struct Refusal {
    /// HTTP status (and `error.code`).
    pub status: u16,
    /// `error.status`, the canonical code.
    pub canonical: &'static str,
    /// `error.errors[0].reason`.
    pub reason: &'static str,
    /// `error.message`.
    pub message: &'static str,
    /// `Retry-After`, if sent.
    pub retry_after: Option<&'static str>,
    /// Answer it this many times; `None`: every time.
    pub times: Option<u32>,
}

/// A running Gmail endpoint; stops when dropped.
pub struct GmailServer {
    /// The server.
    pub server: ApiServer,
    state: Arc<Mutex<HashMap<String, VecDeque<Refusal>>>>,
}

fn error(r: &Refusal) -> Response<Full<Bytes>> {
    let mut resp = json(
        r.status,
        &serde_json::json!({"error": {
            "code": r.status,
            "message": r.message,
            "errors": [{"message": r.message, "domain": "global", "reason": r.reason}],
            "status": r.canonical,
        }}),
    );
    if let Some(w) = r.retry_after {
        resp.headers_mut()
            .insert("retry-after", w.parse().expect("header"));
    }
    resp
}

fn refusal(
    status: u16,
    canonical: &'static str,
    reason: &'static str,
    message: &'static str,
) -> Refusal {
    Refusal {
        status,
        canonical,
        reason,
        message,
        retry_after: None,
        times: None,
    }
}

fn answer(
    state: &Mutex<HashMap<String, VecDeque<Refusal>>>,
    user_of: &TokenUser,
    asked: &Asked,
) -> Response<Full<Bytes>> {
    let Some(user) = asked
        .authorization
        .as_deref()
        .and_then(|a| a.strip_prefix("Bearer "))
        .and_then(|t| user_of(t))
    else {
        return error(&refusal(
            401,
            "UNAUTHENTICATED",
            "authError",
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
        ));
    };
    let segs: Vec<&str> = asked.path.trim_start_matches('/').split('/').collect();
    let ["gmail", "v1", "users", mailbox, "labels", label] = segs.as_slice() else {
        return error(&refusal(
            404,
            "NOT_FOUND",
            "notFound",
            "Requested entity was not found.",
        ));
    };
    if *mailbox != user && *mailbox != "me" {
        return error(&refusal(
            403,
            "PERMISSION_DENIED",
            "forbidden",
            "Delegation denied for the token's user",
        ));
    }
    let mut s = state.lock().expect("gmail state");
    let Some(queue) = s.get_mut(*mailbox) else {
        return error(&refusal(
            400,
            "FAILED_PRECONDITION",
            "failedPrecondition",
            "Mail service not enabled",
        ));
    };
    if let Some(r) = queue.front_mut() {
        let out = r.clone();
        match &mut r.times {
            Some(1) => {
                queue.pop_front();
            }
            Some(t) => *t -= 1,
            None => {}
        }
        return error(&out);
    }
    if *label != "INBOX" {
        return error(&refusal(
            404,
            "NOT_FOUND",
            "notFound",
            "Requested entity was not found.",
        ));
    }
    json(
        200,
        &serde_json::json!({
            "id": "INBOX",
            "name": "INBOX",
            "messageListVisibility": "hide",
            "labelListVisibility": "labelShow",
            "type": "system",
            "messagesTotal": 7,
            "messagesUnread": 2,
            "threadsTotal": 5,
            "threadsUnread": 2,
        }),
    )
}

impl GmailServer {
    /// Starts a Gmail endpoint presenting `cert`; `user_of` says whose a token is.
    pub async fn start(cert: &ServerCert, user_of: TokenUser) -> GmailServer {
        let state: Arc<Mutex<HashMap<String, VecDeque<Refusal>>>> = Arc::default();
        let s = state.clone();
        let server = ApiServer::start(
            cert,
            Arc::new(move |asked: &Asked| answer(&s, &user_of, asked)),
        )
        .await;
        GmailServer { server, state }
    }

    /// Serves `mailbox`.
    pub fn add_mailbox(&self, mailbox: &str) {
        self.state
            .lock()
            .expect("gmail state")
            .insert(mailbox.into(), VecDeque::new());
    }

    /// Answers requests for `mailbox` with `refusal` (after those queued before).
    pub fn refuse(&self, mailbox: &str, refusal: Refusal) {
        self.state
            .lock()
            .expect("gmail state")
            .entry(mailbox.into())
            .or_default()
            .push_back(refusal);
    }

    /// The base URL a target names.
    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    /// Requests answered so far.
    pub fn asked(&self) -> Vec<Asked> {
        self.server.asked()
    }
}
