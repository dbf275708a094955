//! The Microsoft Graph mail probe against a local Graph endpoint serving the documented shapes
//! (testpeers/src/graph.rs, over TLS) and the test's token server: success with its phases,
//! each class Graph's answers map to, throttling with `Retry-After` honoured by the daemon, and
//! round trips sending and receiving through Graph, mixed with the real Postfix and Dovecot.
//! Microsoft itself cannot be reached from here.

mod common;

use std::time::Duration;

use common::{Daemon, Env, failure, phases, sample};
use mailprobe::probe::{self, Phase, ProbeContext, ServerTime, StampSource};
use mailprobe_testpeers::graph::{GraphServer, Refusal, Route};
use mailprobe_testpeers::oauth::{Client, TokenServer};

const SECRET: &str = "graph-App-Secret-7";
const MAILBOX: &str = "probe@contoso.test";

struct Tenant {
    env: Env,
    tokens: TokenServer,
    graph: GraphServer,
}

async fn tenant() -> Tenant {
    tenant_ttl(Duration::from_secs(3600)).await
}

/// A tenant whose tokens live `ttl`.
async fn tenant_ttl(ttl: Duration) -> Tenant {
    let env = Env::new();
    let tokens = TokenServer::start(&env.pki.valid, ttl).await;
    tokens.add_client(
        "graph-app",
        Client {
            secret: Some(SECRET.into()),
            assertion_key: None,
            user: MAILBOX.into(),
        },
    );
    let graph = GraphServer::start(&env.pki.valid, tokens.validator()).await;
    graph.add_mailbox(MAILBOX);
    Tenant { env, tokens, graph }
}

impl Tenant {
    /// A Graph target for `mailbox`; `extra` lines go before its `[target.oauth2]`.
    fn target(&self, name: &str, mailbox: &str, extra: &str) -> String {
        let secret = self.env.secret("graph.secret", SECRET);
        format!(
            "[[target]]\nname = \"{name}\"\nregion = \"test\"\nprotocol = \"graph\"\nmailbox = \"{mailbox}\"\n\
             base_url = \"{base}\"\nca_file = \"{ca}\"\n{extra}\n\
             [target.oauth2]\nprovider = \"microsoft\"\ntenant = \"contoso.test\"\ntoken_url = \"{token}\"\n\
             client_id = \"graph-app\"\nclient_secret_file = \"{secret}\"\nca_file = \"{ca}\"\n",
            base = self.graph.base_url(),
            ca = self.env.pki.ca.display(),
            token = self.tokens.token_url,
            secret = secret.display(),
        )
    }
}

#[tokio::test]
async fn the_inbox_is_read_with_a_graph_token_and_every_phase_timed() {
    let t = tenant().await;
    let cfg = t.env.config(&format!(
        "{}{}",
        t.target("graph-inbox", MAILBOX, ""),
        t.target("graph-newest", MAILBOX, "newest_message = true")
    ));
    let spec = match &cfg.targets[0].spec {
        probe::ProbeSpec::Graph(s) => s,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        spec.oauth2.scopes,
        vec!["https://graph.microsoft.com/.default".to_string()],
        "the microsoft preset asks for Graph's application scope"
    );
    let ctx = ProbeContext::new();
    let o = probe::run(&cfg.targets[0], &ctx).await;
    assert!(o.success(), "{o:?}");
    assert_eq!(
        phases(&o),
        vec![
            Phase::Token,
            Phase::Dns,
            Phase::Connect,
            Phase::Tls,
            Phase::Request,
            Phase::Body
        ]
    );
    assert_eq!(o.http.as_ref().map(|h| h.status), Some(200));
    let o = probe::run(&cfg.targets[1], &ctx).await;
    assert!(o.success(), "{o:?}");
    assert_eq!(phases(&o).last(), Some(&Phase::Messages));

    let asked = t.graph.asked();
    assert_eq!(asked.len(), 3, "{asked:?}");
    assert_eq!(
        asked[0].path,
        format!("/v1.0/users/{MAILBOX}/mailFolders/inbox")
    );
    assert_eq!(
        asked[2].path,
        format!("/v1.0/users/{MAILBOX}/mailFolders/inbox/messages")
    );
    assert!(
        asked[2]
            .query
            .contains(&("$top".to_string(), "1".to_string()))
            && asked[2]
                .query
                .contains(&("$select".to_string(), "id,receivedDateTime".to_string())),
        "{:?}",
        asked[2].query
    );
    for a in &asked {
        assert!(
            a.authorization
                .as_deref()
                .is_some_and(|v| v.starts_with("Bearer at-")),
            "{a:?}"
        );
        assert!(
            a.client_request_id
                .as_deref()
                .is_some_and(|c| c.len() == 24)
        );
    }
    // One token for both targets (same credential set), from the cache the second time.
    assert_eq!(
        t.tokens
            .token_requests
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );
}

fn refusal(status: u16, code: &'static str, retry_after: Option<&'static str>) -> Refusal {
    Refusal {
        status,
        code,
        message: "as documented",
        retry_after,
        times: None,
    }
}

#[tokio::test]
async fn each_graph_answer_has_its_class_and_names_the_request_ids() {
    let t = tenant().await;
    let cases: [(&str, Option<Refusal>, (&str, &str)); 8] = [
        (
            "denied@contoso.test",
            Some(refusal(403, "ErrorAccessDenied", None)),
            ("auth_rejected", "request"),
        ),
        (
            "policy@contoso.test",
            Some(refusal(403, "Authorization_RequestDenied", None)),
            ("auth_rejected", "request"),
        ),
        (
            "onprem@contoso.test",
            Some(refusal(404, "MailboxNotEnabledForRESTAPI", None)),
            ("mailbox_error", "request"),
        ),
        // Not added to the server: Graph's 404 ErrorInvalidUser.
        ("nobody@contoso.test", None, ("mailbox_error", "request")),
        (
            "busy@contoso.test",
            Some(refusal(503, "ServiceUnavailable", Some("2"))),
            ("server_unavailable", "request"),
        ),
        (
            "slow@contoso.test",
            Some(refusal(504, "UnknownError", None)),
            ("server_unavailable", "request"),
        ),
        (
            "new@contoso.test",
            Some(refusal(400, "SomeCodeNobodyDocumented", None)),
            ("unrecognized", "request"),
        ),
        (
            "hot@contoso.test",
            Some(refusal(429, "TooManyRequests", Some("7"))),
            ("throttled", "request"),
        ),
    ];
    let mut text = String::new();
    for (mailbox, r, _) in &cases {
        if let Some(r) = r {
            t.graph.refuse(mailbox, r.clone());
        }
        text += &t.target(&mailbox.replace(['@', '.'], "-"), mailbox, "");
    }
    let cfg = t.env.config(&text);
    let ctx = ProbeContext::new();
    for (target, (mailbox, r, want)) in cfg.targets.iter().zip(&cases) {
        let o = probe::run(target, &ctx).await;
        assert_eq!(failure(&o), *want, "{mailbox}: {o:?}");
        let detail = &o.failure.as_ref().unwrap().detail;
        let code = r.as_ref().map_or("ErrorInvalidUser", |r| r.code);
        assert!(detail.contains(code), "{detail}");
        assert!(detail.contains("request-id 6d1b2c3e-"), "{detail}");
        let sent = t
            .graph
            .asked()
            .last()
            .unwrap()
            .client_request_id
            .clone()
            .unwrap();
        assert!(
            detail.contains(&format!("client-request-id {sent}")),
            "{detail}"
        );
        let wait = r.as_ref().and_then(|r| r.retry_after);
        assert_eq!(
            o.retry_after,
            wait.map(|w| Duration::from_secs(w.parse().unwrap())),
            "{mailbox}"
        );
        // The token never shows, however the server words its refusal.
        for token in t.tokens.issued() {
            assert!(!detail.contains(&token), "{detail}");
        }
    }

    // A token Graph does not accept (revoked): 401 InvalidAuthenticationToken.
    t.tokens.revoke_all();
    let o = probe::run(&cfg.targets[0], &ctx).await;
    assert_eq!(failure(&o), ("auth_rejected", "request"), "{o:?}");
    assert!(
        o.failure
            .unwrap()
            .detail
            .contains("InvalidAuthenticationToken")
    );
}

/// A 429 with `Retry-After: 3` in the daemon, probing every second: the next probe of that
/// target comes no sooner than 3 s later; the throttled probe counts in
/// `mailprobe_probes_throttled_total`, not as a failure of the target, and opens no incident.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_waits_the_retry_after_and_does_not_count_throttling_as_down() {
    let t = tenant().await;
    t.graph.refuse(
        MAILBOX,
        Refusal {
            times: Some(1),
            ..refusal(429, "TooManyRequests", Some("3"))
        },
    );
    let cfg = t.env.config(&format!(
        "[global]\ninterval = \"1s\"\ntimeout = \"1s\"\n{}",
        t.target("graph-hot", MAILBOX, "")
    ));
    let d = Daemon::start(cfg).await;
    let m = d.wait_probes("graph-hot", "success", 1.0).await;
    assert_eq!(
        sample(
            &m,
            "mailprobe_probes_throttled_total",
            &[("protocol", "graph")]
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(common::failures_of(&m, "graph-hot"), 0.0, "{m}");
    d.stop().await;
    let asked = t.graph.asked();
    assert!(asked.len() >= 2, "{asked:?}");
    let gap = asked[1].at - asked[0].at;
    assert!(
        gap >= Duration::from_secs(3),
        "the probe after a 429 with Retry-After: 3 came {gap:?} later"
    );
}

/// The body of the first `sendMail`, from [`MAILBOX`].
fn send_mail(t: &Tenant) -> serde_json::Value {
    let sent = t
        .graph
        .asked()
        .into_iter()
        .find(|a| a.method == "POST")
        .expect("a sendMail");
    assert_eq!(sent.path, format!("/v1.0/users/{MAILBOX}/sendMail"));
    serde_json::from_slice(&sent.body).unwrap()
}

/// A round trip sending through Graph's `sendMail` (which the test's Graph relays to the real
/// Postfix, delivering to the real Dovecot) and receiving over IMAP: the same phases, latency
/// and cleanup as with an SMTP leg. A `sendMail` Graph refuses is the send leg's failure, with
/// Graph's class.
#[tokio::test]
async fn a_round_trip_sends_through_graph_and_receives_over_imap() {
    use mailprobe_testpeers::dovecot::{self, Dovecot, Options};
    use mailprobe_testpeers::postfix::Postfix;
    let t = tenant().await;
    let dc = Dovecot::start(&t.env.pki, Options::default());
    let pf = Postfix::start(&t.env.pki, &dc, None);
    t.graph.relay_to(pf.ports.smtp);
    let text = format!(
        "{}{}[[target]]\nname = \"rt-graph\"\nregion = \"test\"\nprotocol = \"roundtrip\"\n\
         smtp_target = \"graph-send\"\nimap_target = \"rt-inbox\"\ndelivery_timeout = \"20s\"\n",
        t.target("graph-send", MAILBOX, ""),
        t.env.imap_target("rt-inbox", dc.ports.imaps, ""),
    );
    let cfg = t.env.config(&text);
    let rt = cfg.targets.iter().find(|x| x.name == "rt-graph").unwrap();
    let o = probe::run(rt, &ProbeContext::new()).await;
    assert!(o.success(), "{o:?}\n{}", pf.log());
    assert_eq!(
        phases(&o),
        [Phase::Receive, Phase::Send, Phase::Delivery, Phase::Cleanup]
    );
    let latency = o.delivery.as_ref().unwrap().latency.expect("a latency");
    eprintln!("Graph sendMail → Postfix → Dovecot, seen over IMAP after {latency:?}");
    let body = send_mail(&t);
    assert_eq!(
        body["message"]["toRecipients"][0]["emailAddress"]["address"],
        dovecot::USER
    );
    assert_eq!(
        body["message"]["internetMessageHeaders"][0]["name"],
        "X-Mailprobe-Token"
    );
    assert_eq!(
        dc.mailbox_len(dovecot::USER),
        0,
        "the probe message was deleted"
    );

    // Throttled sendMail: the send leg's Retry-After reaches the scheduler.
    t.graph.refuse_on(
        MAILBOX,
        Route::SendMail,
        Refusal {
            times: Some(1),
            ..refusal(429, "TooManyRequests", Some("9"))
        },
    );
    let o = probe::run(rt, &ProbeContext::new()).await;
    assert_eq!(failure(&o), ("throttled", "send"), "{o:?}");
    assert_eq!(o.retry_after, Some(Duration::from_secs(9)));

    t.graph
        .refuse(MAILBOX, refusal(403, "ErrorAccessDenied", None));
    let o = probe::run(rt, &ProbeContext::new()).await;
    assert_eq!(failure(&o), ("auth_rejected", "send"), "{o:?}");
    assert!(
        o.failure
            .unwrap()
            .detail
            .contains("sendMail as probe@contoso.test")
    );
}

/// `mailprobe probe` on Graph targets: a row with the token, DNS, connect, TLS, request and
/// body timings and exit 0 for a readable inbox; `FAIL auth_rejected request` and exit 1 for
/// a mailbox Graph refuses; neither the client secret nor a token in anything printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_command_prints_a_graph_row_with_its_phases_and_the_class_of_a_refusal() {
    let t = tenant().await;
    t.graph.add_mailbox("denied@contoso.test");
    t.graph.refuse(
        "denied@contoso.test",
        refusal(403, "ErrorAccessDenied", None),
    );
    t.env.config(&format!(
        "{}{}",
        t.target("graph-inbox", MAILBOX, ""),
        t.target("graph-denied", "denied@contoso.test", "")
    ));
    let shown = common::api_probe_cli(
        t.env.config_path(),
        "graph",
        "graph-inbox",
        ("graph-denied", "auth_rejected", "request"),
    )
    .await;
    assert!(shown.contains("ErrorAccessDenied"), "{shown}");
    assert!(!shown.contains(SECRET), "{shown}");
    for token in t.tokens.issued() {
        assert!(!shown.contains(&token), "{shown}");
    }
}
/// The mailbox a Graph round trip receives in (the Graph server's own, like [`MAILBOX`]).
const RX: &str = "rx@contoso.test";

/// A round trip `rt` sending through `send` and receiving in the Graph target `graph-rx` (for
/// [`RX`]); `extra` lines go into the round trip.
fn graph_rx(t: &Tenant, send: &str, extra: &str) -> String {
    format!(
        "{}{send}[[target]]\nname = \"rt\"\nregion = \"test\"\nprotocol = \"roundtrip\"\n\
         smtp_target = \"rt-send\"\nimap_target = \"graph-rx\"\npoll_interval = \"200ms\"\n{extra}\n",
        t.target("graph-rx", RX, "timeout = \"5s\""),
    )
}

fn rt(cfg: &mailprobe::load::Config) -> std::sync::Arc<probe::Target> {
    cfg.targets.iter().find(|x| x.name == "rt").unwrap().clone()
}

/// A tenant with [`RX`], and a round trip sending from [`MAILBOX`] to it through Graph.
async fn graph_to_graph(extra: &str) -> (Tenant, mailprobe::load::Config) {
    let t = tenant().await;
    t.graph.add_mailbox(RX);
    let cfg = t
        .env
        .config(&graph_rx(&t, &t.target("rt-send", MAILBOX, ""), extra));
    (t, cfg)
}

/// The real Dovecot and Postfix (with `postfix` settings), Postfix relaying contoso.test to the
/// Graph server's SMTP port, and a round trip submitting to Postfix, receiving in [`RX`].
struct ViaPostfix {
    t: Tenant,
    _dovecot: mailprobe_testpeers::dovecot::Dovecot,
    postfix: mailprobe_testpeers::postfix::Postfix,
    cfg: mailprobe::load::Config,
}

async fn postfix_to_graph(postfix: &[(&str, &str)], extra: &str) -> ViaPostfix {
    use mailprobe_testpeers::dovecot::{Dovecot, Options};
    use mailprobe_testpeers::postfix::Postfix;
    let t = tenant().await;
    t.graph.add_mailbox(RX);
    let dovecot = Dovecot::start(&t.env.pki, Options::default());
    let relay = ("contoso.test", t.graph.smtp_port());
    let pf = Postfix::start_relaying(&t.env.pki, &dovecot, relay, postfix);
    let send = t
        .env
        .smtp_target("rt-send", pf.ports.submission, "timeout = \"5s\"");
    let cfg = t.env.config(&graph_rx(&t, &send, extra));
    ViaPostfix {
        t,
        _dovecot: dovecot,
        postfix: pf,
        cfg,
    }
}

/// The requests to list `RX`'s Inbox, as (`$filter`, `$select`).
fn listings(t: &Tenant) -> Vec<(String, String)> {
    let q = |a: &mailprobe_testpeers::api::Asked, k: &str| {
        a.query
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    t.graph
        .asked()
        .iter()
        .filter(|a| a.path == format!("/v1.0/users/{RX}/mailFolders/inbox/messages"))
        .map(|a| (q(a, "$filter"), q(a, "$select")))
        .collect()
}

fn server_time(o: &probe::Outcome) -> std::time::Duration {
    match &o.delivery.as_ref().unwrap().server {
        Some(ServerTime::Stamped { took, source }) => {
            assert_eq!(*source, StampSource::ReceivedDateTime);
            *took
        }
        other => panic!("no server time from receivedDateTime: {other:?}"),
    }
}

/// Sent through the real Postfix (submission, then relayed to the Graph server's MX as to
/// Exchange Online's), received by polling the Graph Inbox: seen, stamped by receivedDateTime,
/// deleted by id.
#[tokio::test]
async fn a_round_trip_sends_through_postfix_and_receives_through_graph() {
    let ViaPostfix {
        t,
        postfix: pf,
        cfg,
        _dovecot: _dc,
    } = postfix_to_graph(&[], "delivery_timeout = \"20s\"").await;
    let o = probe::run(&rt(&cfg), &ProbeContext::new()).await;
    assert!(o.success(), "{o:?}\n{}", pf.log());
    assert_eq!(
        phases(&o),
        [Phase::Receive, Phase::Send, Phase::Delivery, Phase::Cleanup]
    );
    let latency = o.delivery.as_ref().unwrap().latency.expect("a latency");
    let server = server_time(&o);
    assert!(server <= latency, "{server:?} > {latency:?}");
    eprintln!(
        "Postfix → Graph: {}; seen after {latency:?}, receivedDateTime within {server:?}",
        o.phases
            .iter()
            .map(|p| format!("{} {:?}", p.phase.as_str(), p.duration))
            .collect::<Vec<_>>()
            .join(", ")
    );
    // It went through Postfix, relayed to the Graph server's SMTP port.
    let log = pf.log();
    assert!(
        log.contains(&format!(
            "relay=127.0.0.1[127.0.0.1]:{}",
            t.graph.smtp_port()
        )) && log.contains("status=sent"),
        "{log}"
    );
    // Looked for by its token in the subject; deleted; nothing else left.
    let looks = listings(&t);
    assert!(
        looks
            .iter()
            .any(|(f, s)| f.starts_with("contains(subject,'") && s == "id,subject,receivedDateTime"),
        "{looks:?}"
    );
    assert!(t.graph.asked().iter().any(
        |a| a.method == "DELETE" && a.path.starts_with(&format!("/v1.0/users/{RX}/messages/"))
    ),);
    assert!(t.graph.inbox(RX).is_empty(), "{:?}", t.graph.subjects(RX));
}

/// Graph to Graph: `sendMail` to a mailbox of the same tenant, received in its Inbox.
#[tokio::test]
async fn a_round_trip_sends_and_receives_through_graph() {
    let (t, cfg) = graph_to_graph("delivery_timeout = \"10s\"").await;
    let spec = match &rt(&cfg).spec {
        probe::ProbeSpec::Roundtrip(r) => r.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        spec.message.to.to_string(),
        RX,
        "send_to defaults to the Graph mailbox"
    );
    let o = probe::run(&rt(&cfg), &ProbeContext::new()).await;
    assert!(o.success(), "{o:?}");
    server_time(&o);
    let body = send_mail(&t);
    assert_eq!(
        body["message"]["toRecipients"][0]["emailAddress"]["address"],
        RX
    );
    assert!(t.graph.inbox(RX).is_empty(), "{:?}", t.graph.subjects(RX));
}

/// Postfix holds the message (its relay to the Graph server deferred): not delivered, its token
/// remembered; once it arrives, the next run counts it late and deletes it.
#[tokio::test]
async fn a_message_graph_receives_late_is_not_delivered_then_counted_and_deleted() {
    let ViaPostfix {
        t,
        postfix: pf,
        cfg,
        _dovecot: _dc,
    } = postfix_to_graph(&[("defer_transports", "smtp")], "delivery_timeout = \"2s\"").await;
    let ctx = ProbeContext::new();
    let o = probe::run(&rt(&cfg), &ctx).await;
    assert_eq!(failure(&o), ("delivery_timeout", "delivery"), "{o:?}");
    assert_eq!(ctx.pending.len("rt"), 1);
    assert!(listings(&t).len() >= 2, "looked more than once");

    pf.set("defer_transports", "");
    // Flushed again every second: a flush the reloading queue manager took with the old
    // setting would defer the message for minutes.
    let looks = std::cell::Cell::new(0u32);
    common::eventually(30, "the deferred message in the Graph Inbox", || async {
        if looks.replace(looks.get() + 1).is_multiple_of(20) {
            pf.flush();
        }
        (!t.graph.inbox(RX).is_empty()).then_some(())
    })
    .await;

    let o = probe::run(&rt(&cfg), &ctx).await;
    assert!(o.success(), "{o:?}\n{}", pf.log());
    let d = o.delivery.as_ref().unwrap();
    assert_eq!(d.late.len(), 1, "{d:?}");
    assert!(d.late[0] >= std::time::Duration::from_secs(2), "{d:?}");
    assert!(ctx.pending.is_empty("rt"));
    assert!(t.graph.inbox(RX).is_empty(), "{:?}", t.graph.subjects(RX));
}

/// The sweep deletes probe messages older than cleanup_age whose token header matches their
/// subject, and nothing else: not a letter that only looks like one, not a fresh probe of
/// another location.
#[tokio::test]
async fn the_graph_sweep_removes_old_probe_mail_and_never_another_message() {
    use std::time::Duration;
    let (t, cfg) = graph_to_graph("cleanup_age = \"1h\"").await;
    let day = Duration::from_secs(86_400);
    let token = |v| [("X-Mailprobe-Token", v)];
    t.graph
        .plant(RX, "mailprobe probe 0ld0ld", &token("0ld0ld"), 2 * day);
    t.graph.plant(
        RX,
        "[EXTERNAL] mailprobe probe 0ld2",
        &token("0ld2"),
        2 * day,
    );
    t.graph.plant(RX, "mailprobe probe results", &[], 2 * day);
    t.graph
        .plant(RX, "mailprobe probe f0rged", &token("other"), 2 * day);
    t.graph.plant(RX, "a real letter", &token("x"), 2 * day);
    t.graph.plant(
        RX,
        "mailprobe probe fr3sh",
        &token("fr3sh"),
        Duration::from_secs(60),
    );
    let o = probe::run(&rt(&cfg), &ProbeContext::new()).await;
    assert!(o.success(), "{o:?}");
    assert_eq!(o.delivery.as_ref().unwrap().swept, 2);
    let mut left = t.graph.subjects(RX);
    left.sort();
    assert_eq!(
        left,
        [
            "a real letter",
            "mailprobe probe f0rged",
            "mailprobe probe fr3sh",
            "mailprobe probe results"
        ]
    );
    assert!(
        listings(&t)
            .iter()
            .any(|(f, s)| f.starts_with("receivedDateTime lt ")
                && f.ends_with(" and contains(subject,'mailprobe probe ')")
                && s.contains("internetMessageHeaders")),
        "{:?}",
        listings(&t)
    );
}

/// Graph's refusals while receiving keep their classes: a 429 while polling is throttling (its
/// Retry-After handed on), not a mail outage; a 403 on the list is auth_rejected; a mailbox
/// without Exchange Online is a mailbox_error at receive.
#[tokio::test]
async fn graph_refusals_while_receiving_keep_their_classes() {
    let (t, cfg) = graph_to_graph("delivery_timeout = \"10s\"").await;
    let once = |r: Refusal| Refusal {
        times: Some(1),
        ..r
    };
    t.graph.refuse_on(
        RX,
        Route::List,
        once(refusal(429, "TooManyRequests", Some("7"))),
    );
    let o = probe::run(&rt(&cfg), &ProbeContext::new()).await;
    assert_eq!(failure(&o), ("throttled", "delivery"), "{o:?}");
    assert_eq!(o.retry_after, Some(std::time::Duration::from_secs(7)));
    let detail = &o.failure.as_ref().unwrap().detail;
    assert!(
        detail.contains("TooManyRequests") && detail.contains("request-id 6d1b2c3e-"),
        "{detail}"
    );

    t.graph.refuse_on(
        RX,
        Route::List,
        once(refusal(403, "ErrorAccessDenied", None)),
    );
    let o = probe::run(&rt(&cfg), &ProbeContext::new()).await;
    assert_eq!(failure(&o), ("auth_rejected", "delivery"), "{o:?}");

    t.graph.refuse_on(
        RX,
        Route::Inbox,
        once(refusal(404, "MailboxNotEnabledForRESTAPI", None)),
    );
    let sends = || {
        t.graph
            .asked()
            .iter()
            .filter(|a| a.method == "POST")
            .count()
    };
    let before = sends();
    let o = probe::run(&rt(&cfg), &ProbeContext::new()).await;
    assert_eq!(failure(&o), ("mailbox_error", "receive"), "{o:?}");
    assert_eq!(
        sends(),
        before,
        "nothing is sent when the mailbox cannot be opened"
    );
}

/// A message that never arrives, looked for longer than a token lives (2 s here, an hour or so
/// at Microsoft while `delivery_timeout` may be a day): the polls go on with the renewed token,
/// and the outcome is the delivery timeout, not a refused token.
#[tokio::test]
async fn a_wait_longer_than_the_token_lives_goes_on_with_a_renewed_token() {
    let t = tenant_ttl(Duration::from_secs(2)).await;
    t.graph.add_mailbox(RX);
    // Nothing listens there: sendMail accepts, the message never arrives.
    t.graph.relay_to(mailprobe_testpeers::util::free_port());
    let cfg = t.env.config(&graph_rx(
        &t,
        &t.target("rt-send", MAILBOX, ""),
        "send_to = \"lost@elsewhere.test\"\ndelivery_timeout = \"4s\"",
    ));
    let o = probe::run(&rt(&cfg), &ProbeContext::new()).await;
    assert_eq!(failure(&o), ("delivery_timeout", "delivery"), "{o:?}");
    let tokens: std::collections::BTreeSet<String> = t
        .graph
        .asked()
        .iter()
        .filter(|a| a.path.ends_with("/messages"))
        .filter_map(|a| a.authorization.clone())
        .collect();
    assert!(
        tokens.len() >= 2,
        "one token for 4 s of polling: {tokens:?}"
    );
}
