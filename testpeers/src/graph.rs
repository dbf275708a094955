//! A Microsoft Graph mail endpoint for the tests, serving the documented shapes over TLS on
//! 127.0.0.1 (Microsoft cannot be reached from here).
//!
//! Shapes from Microsoft's Graph v1.0 reference:
//! - "Get mailFolder" (<https://learn.microsoft.com/graph/api/mailfolder-get>):
//!   `GET /users/{id | userPrincipalName}/mailFolders/{id}` (well-known name `inbox`), 200 with a
//!   mailFolder (`id`, `displayName`, `parentFolderId`, `childFolderCount`, `unreadItemCount`,
//!   `totalItemCount`, `isHidden`).
//! - "List messages" (<https://learn.microsoft.com/graph/api/user-list-messages>): `GET
//!   .../mailFolders/inbox/messages` with `$top`, `$select`, 200 with `{"value": [message]}`.
//! - "Microsoft Graph error responses and resource types"
//!   (<https://learn.microsoft.com/graph/errors>): `{"error": {"code", "message", "innerError":
//!   {"date", "request-id", "client-request-id"}}}`, the `request-id` and `client-request-id`
//!   response headers.
//! - "Microsoft Graph throttling guidance" (<https://learn.microsoft.com/graph/throttling>):
//!   429 with `Retry-After` in seconds.
//! - "user: sendMail" (<https://learn.microsoft.com/graph/api/user-sendmail>): `POST
//!   /users/{id}/sendMail` with `{"message": {"subject", "body": {"contentType", "content"},
//!   "toRecipients": [{"emailAddress": {"address"}}], "internetMessageHeaders": [{"name",
//!   "value"}]}, "saveToSentItems"}`, 202 Accepted with no body; delivery happens afterwards.
//!   To a mailbox of this server it is delivered into that mailbox; elsewhere it goes over SMTP
//!   to a relay the test names ([`GraphServer::relay_to`]: the real Postfix's MX port), as
//!   Exchange Online would hand it on.
//! - "Delete message" (<https://learn.microsoft.com/graph/api/message-delete>): `DELETE
//!   /users/{id}/messages/{id}`, 204 No Content; an id not there is 404 `ErrorItemNotFound`.
//!
//! Mail arrives in a mailbox's Inbox ([`crate::graphstore`], where listing and its `$filter`
//! are) from `sendMail`, from [`GraphServer::plant`], and over SMTP: the server listens on
//! 127.0.0.1:[`GraphServer::smtp_port`] for its mailboxes' addresses, so the real Postfix can
//! relay a domain to it as to Exchange Online's MX.
//!
//! Tokens are checked with a [`BearerCheck`] (the test's token server's); a bad one gets 401
//! `InvalidAuthenticationToken`. A mailbox not added gets 404 `ErrorInvalidUser`. Tests queue
//! refusals per mailbox with [`GraphServer::refuse`], or for one kind of request with
//! [`GraphServer::refuse_on`].

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;

use crate::api::{ApiServer, Asked, json};
use crate::graphstore::{self, Stored};
use crate::https::BearerCheck;
use crate::pki::ServerCert;
use crate::smtpsink::SmtpSink;

/// A kind of request, to refuse only that ([`GraphServer::refuse_on`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Route {
    /// `GET .../mailFolders/inbox`.
    Inbox,
    /// `GET .../mailFolders/inbox/messages`.
    List,
    /// `DELETE .../messages/{id}`.
    Delete,
    /// `POST .../sendMail`.
    SendMail,
}

/// A refusal Graph documents, to answer instead of the mailbox.
#[derive(Clone, Debug)]
pub struct Refusal {
    /// HTTP status.
    pub status: u16,
    /// `error.code`.
    pub code: &'static str,
    /// `error.message`.
    pub message: &'static str,
    /// `Retry-After`, if sent.
    pub retry_after: Option<&'static str>,
    /// Answer it this many times (then the mailbox is served again); `None`: every time.
    pub times: Option<u32>,
}

#[derive(Default)]
struct State {
    mailboxes: HashMap<String, VecDeque<Refusal>>,
    /// Refusals of one kind of request, per mailbox.
    routes: HashMap<(String, Route), VecDeque<Refusal>>,
    /// Each mailbox's Inbox, by lower-case address.
    inboxes: HashMap<String, Vec<Stored>>,
    /// Messages stored so far (makes ids).
    stored: u64,
    /// The SMTP port on 127.0.0.1 that sent mail is relayed to.
    relay: Option<u16>,
}

impl State {
    /// Stores `message` in `mailbox`'s Inbox, if it is one of ours.
    fn deliver(&mut self, mailbox: &str, mut message: Stored) -> bool {
        self.stored += 1;
        message.id = format!("AAMkAGI2TG93-_{:08}AAA=", self.stored);
        match self.inboxes.get_mut(&mailbox.to_ascii_lowercase()) {
            Some(inbox) => {
                inbox.push(message);
                true
            }
            None => false,
        }
    }
}

/// The next refusal in `queue`, counting it down.
fn take(queue: &mut VecDeque<Refusal>) -> Option<Refusal> {
    let r = queue.front_mut()?;
    let refusal = r.clone();
    match &mut r.times {
        Some(1) => {
            queue.pop_front();
        }
        Some(t) => *t -= 1,
        None => {}
    }
    Some(refusal)
}

/// A running Graph endpoint; stops when dropped.
pub struct GraphServer {
    /// The server (its `base_url` is the target's `base_url`).
    pub server: ApiServer,
    state: Arc<Mutex<State>>,
    smtp: SmtpSink,
}

fn error(asked: &Asked, n: u64, r: &Refusal) -> Response<Full<Bytes>> {
    error_text(asked, n, r, r.message)
}

/// Graph's error answer for `r`, with `message` as its text.
fn error_text(asked: &Asked, n: u64, r: &Refusal, message: &str) -> Response<Full<Bytes>> {
    let request_id = format!("6d1b2c3e-0000-4000-8000-{n:012}");
    let mut resp = json(
        r.status,
        &serde_json::json!({"error": {
            "code": r.code,
            "message": message,
            "innerError": {
                "date": "2026-11-30T09:23:00",
                "request-id": request_id,
                "client-request-id": asked.client_request_id,
            },
        }}),
    );
    let h = resp.headers_mut();
    h.insert("request-id", request_id.parse().expect("header"));
    if let Some(c) = asked
        .client_request_id
        .as_deref()
        .and_then(|c| c.parse().ok())
    {
        h.insert("client-request-id", c);
    }
    if let Some(w) = r.retry_after {
        h.insert("retry-after", w.parse().expect("header"));
    }
    resp
}

fn ok(asked: &Asked, n: u64, v: serde_json::Value) -> Response<Full<Bytes>> {
    let mut resp = json(200, &v);
    let h = resp.headers_mut();
    h.insert(
        "request-id",
        format!("6d1b2c3e-0000-4000-8000-{n:012}")
            .parse()
            .expect("header"),
    );
    if let Some(c) = asked
        .client_request_id
        .as_deref()
        .and_then(|c| c.parse().ok())
    {
        h.insert("client-request-id", c);
    }
    resp
}

fn answer(
    state: &Mutex<State>,
    check: &BearerCheck,
    n: u64,
    asked: &Asked,
) -> Response<Full<Bytes>> {
    let token_ok = asked
        .authorization
        .as_deref()
        .and_then(|a| a.strip_prefix("Bearer "))
        .is_some_and(|t| (check.0)(t));
    if !token_ok {
        return error(
            asked,
            n,
            &Refusal {
                status: 401,
                code: "InvalidAuthenticationToken",
                message: "Access token validation failure. Invalid audience.",
                retry_after: None,
                times: None,
            },
        );
    }
    let segs: Vec<&str> = asked.path.trim_start_matches('/').split('/').collect();
    let (mailbox, rest) = match segs.as_slice() {
        ["v1.0", "users", mailbox, rest @ ..] => (mailbox.to_string(), rest.to_vec()),
        _ => {
            return error(
                asked,
                n,
                &Refusal {
                    status: 400,
                    code: "BadRequest",
                    message: "Invalid version.",
                    retry_after: None,
                    times: None,
                },
            );
        }
    };
    let mut s = state.lock().expect("graph state");
    let Some(queue) = s.mailboxes.get_mut(&mailbox) else {
        return error(
            asked,
            n,
            &Refusal {
                status: 404,
                code: "ErrorInvalidUser",
                message: "The requested user is invalid.",
                retry_after: None,
                times: None,
            },
        );
    };
    if let Some(refusal) = take(queue) {
        return error(asked, n, &refusal);
    }
    let route = match (asked.method.as_str(), rest.as_slice()) {
        ("GET", ["mailFolders", "inbox"]) => Some(Route::Inbox),
        ("GET", ["mailFolders", "inbox", "messages"]) => Some(Route::List),
        ("DELETE", ["messages", _]) => Some(Route::Delete),
        ("POST", ["sendMail"]) => Some(Route::SendMail),
        _ => None,
    };
    if let Some(refusal) = route
        .and_then(|r| s.routes.get_mut(&(mailbox.clone(), r)))
        .and_then(take)
    {
        return error(asked, n, &refusal);
    }
    match (asked.method.as_str(), rest.as_slice()) {
        ("POST", ["sendMail"]) => {
            let local = Outgoing::from_json(&mailbox, &asked.body)
                .filter(|m| s.inboxes.contains_key(&m.to.to_ascii_lowercase()));
            if let Some(mail) = local {
                // One of this server's own mailboxes: delivered here, as Exchange would.
                let stored = graphstore::from_rfc5322(String::new(), &mail.data);
                s.deliver(&mail.to, stored);
                return accepted(asked, n);
            }
            let Some(relay) = s.relay else {
                return error(
                    asked,
                    n,
                    &Refusal {
                        status: 403,
                        code: "ErrorAccessDenied",
                        message: "Access is denied. Check credentials and try again.",
                        retry_after: None,
                        times: None,
                    },
                );
            };
            let Some(mail) = Outgoing::from_json(&mailbox, &asked.body) else {
                return error(
                    asked,
                    n,
                    &Refusal {
                        status: 400,
                        code: "ErrorInvalidRecipients",
                        message: "At least one recipient is not valid.",
                        retry_after: None,
                        times: None,
                    },
                );
            };
            tokio::spawn(async move {
                if let Err(e) = mail.relay(relay).await {
                    eprintln!("graph peer: relaying sendMail failed: {e}");
                }
            });
            accepted(asked, n)
        }
        ("GET", ["mailFolders", "inbox"]) => ok(
            asked,
            n,
            serde_json::json!({
                "@odata.context": format!("https://graph.microsoft.com/v1.0/$metadata#users('{mailbox}')/mailFolders/$entity"),
                "id": "AAMkAGVmMDEzMTM4LTZmYWUtNDdkNC1hMDZiLTU1OGY5OTZhYmY4OAAuAAAAAAAiQ8W967B7TKBjgx9rVEURAQAiIsqMbYjsT5e-T7KzowPTAAAAAAEMAAA=",
                "displayName": "Inbox",
                "parentFolderId": "AAMkAGVmMDEzMTM4LTZmYWUtNDdkNC1hMDZiLTU1OGY5OTZhYmY4OAAuAAAAAAAiQ8W967B7TKBjgx9rVEURAQAiIsqMbYjsT5e-T7KzowPTAAAAAAEIAAA=",
                "childFolderCount": 0,
                "unreadItemCount": 2,
                "totalItemCount": 7,
                "isHidden": false,
            }),
        ),
        ("GET", ["mailFolders", "inbox", "messages"]) => {
            let inbox = s
                .inboxes
                .get(&mailbox.to_ascii_lowercase())
                .map(Vec::as_slice)
                .unwrap_or_default();
            let url = format!(
                "https://graph.microsoft.com{}?{}",
                asked.path,
                form(&asked.query)
            );
            match graphstore::list(inbox, &asked.query, &url) {
                Ok(mut v) => {
                    v["@odata.context"] = format!("https://graph.microsoft.com/v1.0/$metadata#users('{mailbox}')/mailFolders('inbox')/messages").into();
                    ok(asked, n, v)
                }
                Err((status, code, message)) => error_text(
                    asked,
                    n,
                    &Refusal {
                        status,
                        code,
                        message: "",
                        retry_after: None,
                        times: None,
                    },
                    &message,
                ),
            }
        }
        ("DELETE", ["messages", id]) => {
            let inbox = s.inboxes.entry(mailbox.to_ascii_lowercase()).or_default();
            let before = inbox.len();
            inbox.retain(|m| m.id != *id);
            if inbox.len() == before {
                return error(
                    asked,
                    n,
                    &Refusal {
                        status: 404,
                        code: "ErrorItemNotFound",
                        message: "The specified object was not found in the store.",
                        retry_after: None,
                        times: None,
                    },
                );
            }
            let mut resp = ok(asked, n, serde_json::Value::Null);
            *resp.status_mut() = hyper::StatusCode::NO_CONTENT;
            *resp.body_mut() = Full::new(Bytes::new());
            resp.headers_mut().remove("content-type");
            resp
        }
        _ => error(
            asked,
            n,
            &Refusal {
                status: 400,
                code: "BadRequest",
                message: "Resource not found for the segment.",
                retry_after: None,
                times: None,
            },
        ),
    }
}

/// 202 Accepted with no body (`sendMail`).
fn accepted(asked: &Asked, n: u64) -> Response<Full<Bytes>> {
    let mut resp = ok(asked, n, serde_json::Value::Null);
    *resp.status_mut() = hyper::StatusCode::ACCEPTED;
    *resp.body_mut() = Full::new(Bytes::new());
    resp.headers_mut().remove("content-type");
    resp
}

/// Query pairs percent-encoded again.
fn form(query: &[(String, String)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(query)
        .finish()
}

/// A message `sendMail` accepted, to relay.
struct Outgoing {
    from: String,
    to: String,
    data: String,
}

impl Outgoing {
    /// The RFC 5322 message Exchange would make of a `sendMail` body.
    fn from_json(from: &str, body: &[u8]) -> Option<Outgoing> {
        let v: serde_json::Value = serde_json::from_slice(body).ok()?;
        let m = &v["message"];
        let to = m["toRecipients"][0]["emailAddress"]["address"]
            .as_str()?
            .to_string();
        let mut data = format!(
            "From: {from}\r\nTo: {to}\r\nSubject: {}\r\nMessage-ID: <graph.{}@contoso.test>\r\n",
            m["subject"].as_str().unwrap_or(""),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        );
        for h in m["internetMessageHeaders"].as_array().into_iter().flatten() {
            let (name, value) = (h["name"].as_str()?, h["value"].as_str()?);
            // Graph takes only custom headers (X-...).
            if !name.to_ascii_lowercase().starts_with("x-") {
                return None;
            }
            data.push_str(&format!("{name}: {value}\r\n"));
        }
        data.push_str("Content-Type: text/plain; charset=utf-8\r\n\r\n");
        for line in m["body"]["content"].as_str().unwrap_or("").lines() {
            if line.starts_with('.') {
                data.push('.');
            }
            data.push_str(line);
            data.push_str("\r\n");
        }
        Some(Outgoing {
            from: from.to_string(),
            to,
            data,
        })
    }

    /// One SMTP transaction with the relay on 127.0.0.1:`port`.
    async fn relay(self, port: u16) -> std::io::Result<()> {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        let (r, mut w) = tcp.into_split();
        let mut r = BufReader::new(r);
        async fn reply(
            r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
        ) -> std::io::Result<String> {
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).await? == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                if line.as_bytes().get(3) != Some(&b'-') {
                    return Ok(line);
                }
            }
        }
        let expect = |line: String, code: &str| {
            if line.starts_with(code) {
                Ok(())
            } else {
                Err(std::io::Error::other(format!("relay said {line:?}")))
            }
        };
        expect(reply(&mut r).await?, "220")?;
        let steps = [
            ("EHLO graph.contoso.test\r\n".to_string(), "250"),
            (format!("MAIL FROM:<{}>\r\n", self.from), "250"),
            (format!("RCPT TO:<{}>\r\n", self.to), "250"),
            ("DATA\r\n".to_string(), "354"),
            (format!("{}.\r\n", self.data), "250"),
            ("QUIT\r\n".to_string(), "221"),
        ];
        for (cmd, code) in steps {
            w.write_all(cmd.as_bytes()).await?;
            expect(reply(&mut r).await?, code)?;
        }
        Ok(())
    }
}

impl GraphServer {
    /// Relays what `sendMail` accepts to the SMTP server on 127.0.0.1:`port` (without it,
    /// `sendMail` is refused as the app lacking `Mail.Send`).
    pub fn relay_to(&self, port: u16) {
        self.state.lock().expect("graph state").relay = Some(port);
    }

    /// Starts a Graph endpoint presenting `cert`, accepting the tokens `check` accepts, and
    /// its SMTP receiver for its mailboxes.
    pub async fn start(cert: &ServerCert, check: BearerCheck) -> GraphServer {
        let state: Arc<Mutex<State>> = Arc::default();
        let counter = Arc::new(AtomicU64::new(0));
        let s = state.clone();
        let server = ApiServer::start(
            cert,
            Arc::new(move |asked: &Asked| {
                let n = counter.fetch_add(1, Ordering::SeqCst);
                answer(&s, &check, n, asked)
            }),
        )
        .await;
        let (known, store) = (state.clone(), state.clone());
        let smtp = SmtpSink::start(
            "graph.contoso.test",
            Arc::new(move |to: &str| {
                let s = known.lock().expect("graph state");
                s.inboxes.contains_key(&to.to_ascii_lowercase())
            }),
            Arc::new(move |rcpts: &[String], data: &str| {
                let mut s = store.lock().expect("graph state");
                for to in rcpts {
                    let mut message = graphstore::from_rfc5322(String::new(), data);
                    // Exchange's own hop, on top.
                    message.headers.insert(
                        0,
                        (
                            "Received".into(),
                            format!(
                                "from mx.example.test (127.0.0.1) by graph.contoso.test; {}",
                                graphstore::format_datetime(message.received)
                            ),
                        ),
                    );
                    s.deliver(to, message);
                }
            }),
        )
        .await;
        GraphServer {
            server,
            state,
            smtp,
        }
    }

    /// Serves `mailbox` (a user principal name), with an empty Inbox.
    pub fn add_mailbox(&self, mailbox: &str) {
        let mut s = self.state.lock().expect("graph state");
        s.mailboxes.insert(mailbox.into(), VecDeque::new());
        s.inboxes.entry(mailbox.to_ascii_lowercase()).or_default();
    }

    /// The port on 127.0.0.1 where this server takes mail for its mailboxes over SMTP.
    pub fn smtp_port(&self) -> u16 {
        self.smtp.port
    }

    /// Puts a message into `mailbox`'s Inbox, received `age` ago.
    pub fn plant(&self, mailbox: &str, subject: &str, headers: &[(&str, &str)], age: Duration) {
        let message = Stored {
            id: String::new(),
            subject: subject.into(),
            received: graphstore::whole_seconds(SystemTime::now() - age),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: "planted by the test\r\n".into(),
        };
        let stored = self
            .state
            .lock()
            .expect("graph state")
            .deliver(mailbox, message);
        assert!(stored, "{mailbox} is not a mailbox of this server");
    }

    /// The subjects in `mailbox`'s Inbox.
    pub fn subjects(&self, mailbox: &str) -> Vec<String> {
        let s = self.state.lock().expect("graph state");
        s.inboxes
            .get(&mailbox.to_ascii_lowercase())
            .map(|i| i.iter().map(|m| m.subject.clone()).collect())
            .unwrap_or_default()
    }

    /// The messages in `mailbox`'s Inbox.
    pub fn inbox(&self, mailbox: &str) -> Vec<Stored> {
        let s = self.state.lock().expect("graph state");
        s.inboxes
            .get(&mailbox.to_ascii_lowercase())
            .cloned()
            .unwrap_or_default()
    }

    /// Answers requests of kind `route` for `mailbox` with `refusal` (after those queued
    /// before for that route); other requests are served.
    pub fn refuse_on(&self, mailbox: &str, route: Route, refusal: Refusal) {
        self.state
            .lock()
            .expect("graph state")
            .routes
            .entry((mailbox.into(), route))
            .or_default()
            .push_back(refusal);
    }

    /// Answers requests for `mailbox` with `refusal` (after those queued before).
    pub fn refuse(&self, mailbox: &str, refusal: Refusal) {
        self.state
            .lock()
            .expect("graph state")
            .mailboxes
            .entry(mailbox.into())
            .or_default()
            .push_back(refusal);
    }

    /// Serves `mailbox` normally again.
    pub fn clear(&self, mailbox: &str) {
        self.add_mailbox(mailbox);
        let mut s = self.state.lock().expect("graph state");
        s.routes.retain(|(m, _), _| m != mailbox);
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
