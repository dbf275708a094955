//! The round-trip probe over the real Postfix → LMTP → Dovecot path.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Daemon, Env, failure, phases, probe_first, sample};
use mailprobe::probe::{self, Outcome, Phase, ProbeContext, ServerTime, StampSource};
use mailprobe_testpeers::dovecot::{self, Dovecot, Options};
use mailprobe_testpeers::postfix::Postfix;
use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader,
};
use tokio::net::{TcpListener, TcpStream};

struct Stack {
    dovecot: Dovecot,
    postfix: Postfix,
}

fn stack(env: &Env, opts: Options) -> Stack {
    let dovecot = Dovecot::start(&env.pki, opts);
    let postfix = Postfix::start(&env.pki, &dovecot, None);
    Stack { dovecot, postfix }
}

/// An SMTP leg, an IMAP leg and the round trip over them.
fn roundtrip_config(env: &Env, s: &Stack, extra: &str) -> String {
    let imap = env.imap_target("rt-inbox", s.dovecot.ports.imaps, "timeout = \"3s\"");
    roundtrip_config_with(env, s, &imap, extra)
}

/// The same round trip, receiving through the IMAP target `imap` (named `rt-inbox`).
fn roundtrip_config_with(env: &Env, s: &Stack, imap: &str, extra: &str) -> String {
    format!(
        "{}{imap}[[target]]\nname = \"rt\"\nregion = \"test\"\nprotocol = \"roundtrip\"\n\
         smtp_target = \"rt-send\"\nimap_target = \"rt-inbox\"\n{extra}\n",
        env.smtp_target("rt-send", s.postfix.ports.submission, "timeout = \"3s\""),
    )
}

/// The round trip receiving through `proxy` (plain IMAP to Dovecot, as it offers from localhost).
fn roundtrip_via(env: &Env, s: &Stack, proxy: &SilentIdle, extra: &str) -> String {
    let imap = common::without_ca(env.imap_target(
        "rt-inbox",
        proxy.port,
        "timeout = \"3s\"\ntls = \"none\"\nallow_plaintext = true",
    ));
    roundtrip_config_with(env, s, &imap, extra)
}

fn rt_target(cfg: &mailprobe::load::Config) -> std::sync::Arc<mailprobe::probe::Target> {
    cfg.targets.iter().find(|t| t.name == "rt").unwrap().clone()
}

#[tokio::test]
async fn a_round_trip_is_delivered_quickly_and_leaves_no_mail_behind() {
    let env = Env::new();
    let s = stack(&env, Options::default());
    let cfg = env.config(&roundtrip_config(&env, &s, "delivery_timeout = \"20s\""));
    let o = probe::run(&rt_target(&cfg), &ProbeContext::new()).await;
    assert!(o.success(), "{o:?}\n{}", s.postfix.log());
    assert_eq!(
        phases(&o),
        [Phase::Receive, Phase::Send, Phase::Delivery, Phase::Cleanup]
    );
    let d = o.delivery.as_ref().unwrap();
    let latency = d.latency.expect("a delivery latency");
    // Postfix → LMTP → Dovecot on one machine: well under a second.
    assert!(latency < Duration::from_secs(1), "{latency:?}");
    let server = server_time(&o, StampSource::InternalDate);
    eprintln!("plain Dovecot: seen {latency:?}, INTERNALDATE within {server:?}");
    assert!(!o.slow);
    assert!(d.late.is_empty() && d.swept == 0, "{d:?}");
    assert!(
        !s.dovecot
            .mailbox_contains(dovecot::USER, "X-Mailprobe-Token"),
        "the probe message was deleted"
    );
    assert_eq!(s.dovecot.mailbox_len(dovecot::USER), 0);
}

#[tokio::test]
async fn the_sweep_removes_old_probe_mail_and_never_touches_other_mail() {
    let env = Env::new();
    let s = stack(&env, Options::default());
    let day = Duration::from_secs(86_400);
    s.dovecot.plant(
        dovecot::USER,
        "From: a@example.test\nSubject: mailprobe probe 0ld\nX-Mailprobe-Token: 0ld\n\nold probe\n",
        2 * day,
    );
    s.dovecot.plant(
        dovecot::USER,
        "From: a@example.test\nSubject: a real letter\n\nkeep me, X-Mailprobe-Token is only mentioned\n",
        2 * day,
    );
    s.dovecot.plant(
        dovecot::USER,
        "From: a@example.test\nSubject: mailprobe probe fresh\nX-Mailprobe-Token: fr3sh\n\nanother instance's\n",
        Duration::from_secs(60),
    );
    let cfg = env.config(&roundtrip_config(&env, &s, "cleanup_age = \"1h\""));
    let o = probe::run(&rt_target(&cfg), &ProbeContext::new()).await;
    assert!(o.success(), "{o:?}");
    assert_eq!(o.delivery.as_ref().unwrap().swept, 1);
    assert!(!s.dovecot.mailbox_contains(dovecot::USER, "old probe"));
    assert!(s.dovecot.mailbox_contains(dovecot::USER, "keep me"));
    // Younger than cleanup_age and not ours: left alone (another location may be waiting).
    assert!(
        s.dovecot
            .mailbox_contains(dovecot::USER, "another instance's")
    );
    assert_eq!(s.dovecot.mailbox_len(dovecot::USER), 2);
}

#[tokio::test]
async fn stopped_delivery_is_delivery_timeout_and_late_mail_is_counted_and_removed() {
    let env = Env::new();
    let s = stack(&env, Options::default());
    let cfg = env.config(&roundtrip_config(&env, &s, "delivery_timeout = \"2s\""));
    let rt = rt_target(&cfg);
    let ctx = ProbeContext::new();

    // Submission still answers, but nothing is delivered.
    s.postfix.set("defer_transports", "lmtp");
    let o = probe::run(&rt, &ctx).await;
    assert_eq!(failure(&o), ("delivery_timeout", "delivery"), "{o:?}");
    assert_eq!(ctx.pending.len("rt"), 1);
    assert!(o.phase(Phase::Delivery).unwrap() >= Duration::from_secs(2));

    // Delivery resumes: the deferred message lands in the mailbox.
    s.postfix.set("defer_transports", "");
    s.postfix.flush();
    common::eventually(30, "the deferred message delivered", || async {
        s.dovecot
            .mailbox_contains(dovecot::USER, "X-Mailprobe-Token")
            .then_some(())
    })
    .await;

    // The next run succeeds, counts the late one and removes both.
    let o = probe::run(&rt, &ctx).await;
    assert!(o.success(), "{o:?}\n{}", s.postfix.log());
    let d = o.delivery.as_ref().unwrap();
    assert_eq!(d.late.len(), 1, "{d:?}");
    assert!(d.late[0] >= Duration::from_secs(2), "{d:?}");
    assert!(ctx.pending.is_empty("rt"));
    assert!(
        !s.dovecot
            .mailbox_contains(dovecot::USER, "X-Mailprobe-Token")
    );
}

#[tokio::test]
async fn a_failing_smtp_leg_gives_its_class_at_send() {
    let env = Env::new();
    let s = stack(&env, Options::default());
    let text = roundtrip_config(&env, &s, "").replace(
        &env.dir.path().join("rt-send.pass").display().to_string(),
        &env.secret("bad.pass", "wrong").display().to_string(),
    );
    let cfg = env.config(&text);
    let o = probe::run(&rt_target(&cfg), &ProbeContext::new()).await;
    assert_eq!(failure(&o), ("auth_rejected", "send"), "{o:?}");
    let detail = &o.failure.as_ref().unwrap().detail;
    assert!(detail.starts_with("auth SMTP 535 5.7.8"), "{detail}");
    assert!(o.phase(Phase::Delivery).is_none());
}

#[tokio::test]
async fn a_failing_imap_leg_gives_its_class_at_receive() {
    let env = Env::new();
    let s = stack(&env, Options::default());
    let text = roundtrip_config(&env, &s, "").replace(
        &env.dir.path().join("rt-inbox.pass").display().to_string(),
        &env.secret("bad.pass", "wrong").display().to_string(),
    );
    let o = probe::run(&rt_target(&env.config(&text)), &ProbeContext::new()).await;
    assert_eq!(failure(&o), ("auth_rejected", "receive"), "{o:?}");
    assert!(
        o.phase(Phase::Send).is_none(),
        "nothing is sent when the mailbox cannot be watched"
    );
}

#[tokio::test]
async fn without_idle_or_uidplus_it_polls_and_expunges() {
    let env = Env::new();
    let s = stack(
        &env,
        Options {
            imap_capability: Some("IMAP4rev1 LITERAL+ SASL-IR LOGIN-REFERRALS ID ENABLE".into()),
            ..Options::default()
        },
    );
    let cfg = env.config(&roundtrip_config(&env, &s, "poll_interval = \"200ms\""));
    let o = probe::run(&rt_target(&cfg), &ProbeContext::new()).await;
    assert!(o.success(), "{o:?}\n{}", s.dovecot.log());
    assert!(o.delivery.unwrap().latency.unwrap() < Duration::from_secs(2));
    assert_eq!(s.dovecot.mailbox_len(dovecot::USER), 0);
}

#[tokio::test]
async fn two_round_trips_sharing_a_mailbox_only_delete_their_own() {
    let env = Env::new();
    let s = stack(&env, Options::default());
    let text = format!(
        "{}[[target]]\nname = \"rt2\"\nprotocol = \"roundtrip\"\nsmtp_target = \"rt-send\"\n\
         imap_target = \"rt-inbox\"\n",
        roundtrip_config(&env, &s, "")
    );
    let cfg = env.config(&text);
    let outcomes = common::probe_all(&cfg).await;
    for o in outcomes.iter().filter(|o| o.target.name.starts_with("rt")) {
        if o.target.name == "rt" || o.target.name == "rt2" {
            assert!(o.success(), "{o:?}");
            assert_eq!(o.delivery.as_ref().unwrap().swept, 0);
        }
    }
    assert_eq!(s.dovecot.mailbox_len(dovecot::USER), 0);
}

#[tokio::test]
async fn a_slow_delivery_is_success_marked_slow() {
    let env = Env::new();
    let s = stack(&env, Options::default());
    // Any delivery is slower than 1 ms.
    let cfg = env.config(&roundtrip_config(&env, &s, "slow_threshold = \"1ms\""));
    let o = probe::run(&rt_target(&cfg), &ProbeContext::new()).await;
    assert!(o.success() && o.slow, "{o:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trips_run_in_the_daemon_and_export_delivery_latency() {
    let env = Env::new();
    let s = stack(&env, Options::default());
    let text = roundtrip_config(&env, &s, "interval = \"15s\"\ndelivery_timeout = \"4s\"");
    let d = Daemon::start(env.config(&text)).await;
    let m = d.wait_probes("rt", "success", 1.0).await;
    let rt = [("target", "rt"), ("protocol", "roundtrip")];
    assert_eq!(sample(&m, "mailprobe_probe_success", &rt), Some(1.0), "{m}");
    assert_eq!(
        sample(
            &m,
            "mailprobe_region_roundtrip_delivery_seconds_count",
            &[("region", "test"), ("protocol", "roundtrip")]
        ),
        Some(1.0)
    );
    let last = sample(&m, "mailprobe_roundtrip_last_delivery_seconds", &rt).unwrap();
    assert!(last > 0.0 && last < 1.0, "{last}");
    let server = sample(&m, "mailprobe_roundtrip_last_server_delivery_seconds", &rt).unwrap();
    assert!((0.0..=last).contains(&server), "{server} {last}");
    assert_eq!(sample(&m, "mailprobe_roundtrip_late_total", &rt), Some(0.0));
    assert_eq!(
        sample(&m, "mailprobe_roundtrip_swept_total", &rt),
        Some(0.0)
    );
    assert!(
        sample(
            &m,
            "mailprobe_region_phase_duration_seconds_sum",
            &[
                ("region", "test"),
                ("protocol", "roundtrip"),
                ("phase", "delivery")
            ]
        )
        .unwrap()
            > 0.0
    );
    d.stop().await;
}

#[tokio::test]
async fn mailprobe_probe_runs_a_round_trip_once() {
    let env = Env::new();
    let s = stack(&env, Options::default());
    let cfg = env.config(&roundtrip_config(&env, &s, ""));
    let o = probe_first(&cfg).await;
    assert!(o.success(), "the SMTP leg target itself works: {o:?}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mailprobe"))
        .args(["probe", "-c", env.config_path().to_str().unwrap(), "rt"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("receive=") && stdout.contains("delivery="),
        "{stdout}"
    );
    assert!(stdout.contains("delivered in "), "{stdout}");
    assert!(
        stdout.contains(" (seen), INTERNALDATE says within "),
        "{stdout}"
    );
}

/// A store whose INTERNALDATE is not the arrival (here rewritten to 1996, as for a copied
/// message keeping its original date): the server's time comes from the topmost Received field
/// (Dovecot's LMTP writes it), not from a date outside acceptance..sight.
#[tokio::test]
async fn an_internaldate_that_is_not_the_arrival_gives_way_to_the_received_date() {
    let env = Env::new();
    let s = stack(&env, Options::default());
    let proxy = SilentIdle::start(
        s.dovecot.ports.imap,
        Tweaks {
            internaldate: Some("17-Jul-1996 02:44:25 -0700"),
            ..Tweaks::default()
        },
    )
    .await;
    let cfg = env.config(&roundtrip_via(&env, &s, &proxy, "poll_interval = \"1s\""));
    let o = probe::run(&rt_target(&cfg), &ProbeContext::new()).await;
    assert!(o.success(), "{o:?}");
    let latency = o.delivery.as_ref().unwrap().latency.unwrap();
    let server = server_time(&o, StampSource::Received);
    assert!(
        proxy
            .seen()
            .iter()
            .any(|(_, w)| *w == Seen::InternalDate("17-Jul-1996 02:44:25 -0700".into())),
        "the probe was given the rewritten INTERNALDATE"
    );
    eprintln!("INTERNALDATE 1996: seen {latency:?}, Received within {server:?}");
    assert_eq!(s.dovecot.mailbox_len(dovecot::USER), 0);
}

/// The server's own delivery time of `o`, from `source`, checked against the seen time.
fn server_time(o: &Outcome, source: StampSource) -> Duration {
    let d = o.delivery.as_ref().expect("a round trip");
    let seen = d.latency.expect("seen in time");
    match &d.server {
        Some(ServerTime::Stamped { took, source: s }) => {
            assert_eq!(*s, source, "{d:?}");
            assert!(
                *took <= seen,
                "the server was done before it was seen: {d:?}"
            );
            *took
        }
        other => panic!("no server time from {source:?}: {other:?}"),
    }
}

/// Courier (and Cyrus without idled) send nothing during IDLE when mail arrives. The probe must
/// still find the message within its poll interval (leaving IDLE with DONE, searching, entering
/// IDLE again), not only at some fixed re-check or at the deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_silent_in_idle_is_looked_at_again_every_poll_interval() {
    let env = Env::new();
    let s = stack(&env, Options::default());
    let proxy = SilentIdle::start(s.dovecot.ports.imap, Tweaks::default()).await;
    let poll = Duration::from_secs(1);
    let cfg = env.config(&roundtrip_via(
        &env,
        &s,
        &proxy,
        "poll_interval = \"1s\"\ndelivery_timeout = \"30s\"",
    ));
    // Postfix holds the message until the probe has been waiting through a few re-checks.
    s.postfix.set("defer_transports", "lmtp");
    let rt = rt_target(&cfg);
    let run = tokio::spawn(async move { probe::run(&rt, &ProbeContext::new()).await });
    // Three IDLEs are two re-checks: 2 s at a 1 s poll interval (the old fixed re-check took 20 s).
    common::eventually(8, "the probe to leave and re-enter IDLE twice", || async {
        (proxy.count(&Seen::Idle) >= 3).then_some(())
    })
    .await;
    tokio::task::block_in_place(|| {
        s.postfix.set("defer_transports", "");
        s.postfix.flush();
    });
    let o = run.await.unwrap();
    assert!(o.success(), "{o:?}\n{}", s.postfix.log());

    let seen = proxy.seen();
    let idles = proxy.count(&Seen::Idle);
    assert!(idles >= 3, "{seen:?}");
    assert_idle_lasts_one_poll(&proxy, poll);
    let latency = o.delivery.as_ref().unwrap().latency.unwrap();
    let server = server_time(&o, StampSource::InternalDate);
    assert!(
        seen.iter().any(|(_, w)| matches!(w, Seen::InternalDate(_))),
        "the server's INTERNALDATE was read: {seen:?}"
    );
    eprintln!(
        "silent IDLE: seen {latency:?}, INTERNALDATE within {server:?}; IDLE entered {idles} times; swallowed {:?}",
        seen.iter()
            .filter_map(|(_, w)| match w {
                Seen::Swallowed(t) => Some(t.as_str()),
                _ => None,
            })
            .collect::<Vec<_>>()
    );
    assert_eq!(s.dovecot.mailbox_len(dovecot::USER), 0);
}

/// Keepalives in IDLE (`* OK Still here`, as servers send to keep NAT state) are not news: they
/// must not restart the wait for the next look, or a chatty silent server is looked at only at
/// the deadline.
#[tokio::test]
async fn keepalives_in_idle_do_not_put_off_the_next_look() {
    let env = Env::new();
    let s = stack(&env, Options::default());
    let proxy = SilentIdle::start(
        s.dovecot.ports.imap,
        Tweaks {
            chatter: Some(Duration::from_millis(300)),
            ..Tweaks::default()
        },
    )
    .await;
    let cfg = env.config(&roundtrip_via(
        &env,
        &s,
        &proxy,
        "poll_interval = \"1s\"\ndelivery_timeout = \"30s\"",
    ));
    let o = probe::run(&rt_target(&cfg), &ProbeContext::new()).await;
    assert!(o.success(), "{o:?}");
    assert!(proxy.count(&Seen::Chatter) >= 2, "{:?}", proxy.seen());
    assert_idle_lasts_one_poll(&proxy, Duration::from_secs(1));
    server_time(&o, StampSource::InternalDate);
}

/// Every IDLE the proxy saw ended (DONE) at the poll interval: not before it (no busy loop), and
/// not at some later re-check of the probe's own or the deadline (under 4 x poll: slack for a
/// loaded machine, none for the old fixed 10 s).
fn assert_idle_lasts_one_poll(proxy: &SilentIdle, poll: Duration) {
    let spans = proxy.idle_spans();
    assert!(!spans.is_empty(), "{:?}", proxy.seen());
    for lasted in spans {
        assert!(
            lasted >= poll && lasted < 4 * poll,
            "IDLE lasted {lasted:?}: {:?}",
            proxy.seen()
        );
    }
}

/// What the [`SilentIdle`] proxy saw, and when.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Seen {
    /// The client sent IDLE.
    Idle,
    /// The client sent DONE.
    Done,
    /// The client sent another command (its first word, upper case: `UID SEARCH` reads `UID`).
    Command(String),
    /// An untagged response hidden from the client while it was in IDLE.
    Swallowed(String),
    /// A keepalive the proxy sent the client while it was in IDLE.
    Chatter,
    /// An INTERNALDATE passed to the client (after any rewrite).
    InternalDate(String),
}

/// How the [`SilentIdle`] proxy misbehaves beyond its silence.
#[derive(Clone, Copy, Default)]
struct Tweaks {
    /// Replace every INTERNALDATE with this (a store whose stamp is not the arrival).
    internaldate: Option<&'static str>,
    /// While the client is in IDLE, send it `* OK Still here` this often (as servers do to keep
    /// NAT state alive).
    chatter: Option<Duration>,
}

/// A proxy in front of Dovecot's plain IMAP port that behaves like Courier (or Cyrus without
/// idled): while the client is in IDLE (from its IDLE command to the tagged completion) the
/// untagged EXISTS and RECENT the server sends are swallowed, so the client hears nothing when
/// mail arrives. Everything else passes unchanged, literals included, except what [`Tweaks`] asks.
struct SilentIdle {
    port: u16,
    seen: Arc<Mutex<Vec<(Instant, Seen)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SilentIdle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Longest line or literal the proxy passes on (a bound like any peer's).
const PROXY_MAX: u64 = 1024 * 1024;

/// One proxied connection's IDLE state.
#[derive(Default)]
struct IdleState {
    /// `"<tag> "` of the client's IDLE until its tagged completion.
    tag: Option<String>,
    /// The server has answered the IDLE with its continuation (`+`).
    confirmed: bool,
}

/// What both directions of a proxied connection share.
struct Shared {
    idle: Mutex<IdleState>,
    log: Arc<Mutex<Vec<(Instant, Seen)>>>,
    /// The client's side; held across a line and its literal so nothing lands inside them.
    client: tokio::sync::Mutex<tokio::net::tcp::OwnedWriteHalf>,
}

impl Shared {
    fn note(&self, what: Seen) {
        self.log.lock().unwrap().push((Instant::now(), what));
    }
}

impl SilentIdle {
    async fn start(upstream: u16, tweaks: Tweaks) -> SilentIdle {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen: Arc<Mutex<Vec<(Instant, Seen)>>> = Arc::default();
        let log = seen.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let log = log.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                        return;
                    };
                    // Line by line writes must not wait on delayed ACKs (40 ms each).
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    let shared = Arc::new(Shared {
                        idle: Mutex::default(),
                        log,
                        client: tokio::sync::Mutex::new(cw),
                    });
                    let up = client_to_server(BufReader::new(cr), sw, &shared);
                    let down = server_to_client(BufReader::new(sr), &shared, tweaks.internaldate);
                    let chatter = chatter(&shared, tweaks.chatter);
                    // Either side closing ends the connection.
                    tokio::select! { _ = up => {}, _ = down => {}, _ = chatter => {} }
                });
            }
        });
        SilentIdle { port, seen, task }
    }

    fn seen(&self) -> Vec<(Instant, Seen)> {
        self.seen.lock().unwrap().clone()
    }

    fn count(&self, what: &Seen) -> usize {
        self.seen().iter().filter(|(_, s)| s == what).count()
    }

    /// How long each IDLE lasted, from the client's IDLE to its DONE.
    fn idle_spans(&self) -> Vec<Duration> {
        let mut since = None;
        let mut spans = Vec::new();
        for (at, what) in self.seen() {
            match what {
                Seen::Idle => since = Some(at),
                Seen::Done => {
                    spans.push(at.duration_since(since.take().expect("IDLE before DONE")))
                }
                _ => {}
            }
        }
        spans
    }
}

/// Reads one line (up to LF) of at most [`PROXY_MAX`] bytes; `None` at EOF or error.
async fn read_line(r: &mut (impl AsyncBufRead + Unpin)) -> Option<Vec<u8>> {
    let mut line = Vec::new();
    match r.take(PROXY_MAX).read_until(b'\n', &mut line).await {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line),
    }
}

/// The size of the literal announced at the end of `line` (`{n}` or `{n+}` before CRLF).
fn literal_len(line: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(line)
        .ok()?
        .trim_end_matches(['\r', '\n']);
    let open = text.rfind('{')?;
    let inner = text[open + 1..].strip_suffix('}')?;
    inner.trim_end_matches('+').parse().ok()
}

/// Copies a literal of `n` bytes verbatim.
async fn pass_literal(
    r: &mut (impl AsyncBufRead + Unpin),
    w: &mut (impl AsyncWrite + Unpin),
    n: u64,
) -> Option<()> {
    if n > PROXY_MAX {
        return None;
    }
    let copied = tokio::io::copy(&mut r.take(n), w).await.ok()?;
    (copied == n).then_some(())
}

async fn client_to_server(
    mut r: impl AsyncBufRead + Unpin,
    mut w: impl AsyncWrite + Unpin,
    shared: &Shared,
) {
    // After a literal the next line continues the same command.
    let mut continued = false;
    while let Some(line) = read_line(&mut r).await {
        let text = String::from_utf8_lossy(&line).trim_end().to_string();
        if !continued {
            let mut words = text.split(' ');
            let tag = words.next().unwrap_or("");
            match words.next().map(str::to_ascii_uppercase) {
                _ if text.eq_ignore_ascii_case("DONE") => shared.note(Seen::Done),
                Some(cmd) if cmd == "IDLE" => {
                    *shared.idle.lock().unwrap() = IdleState {
                        tag: Some(format!("{tag} ")),
                        confirmed: false,
                    };
                    shared.note(Seen::Idle);
                }
                Some(cmd) => shared.note(Seen::Command(cmd)),
                None => {}
            }
        }
        if w.write_all(&line).await.is_err() {
            return;
        }
        let literal = literal_len(&line);
        continued = literal.is_some();
        if let Some(n) = literal
            && pass_literal(&mut r, &mut w, n).await.is_none()
        {
            return;
        }
    }
}

async fn server_to_client(
    mut r: impl AsyncBufRead + Unpin,
    shared: &Shared,
    internaldate: Option<&'static str>,
) {
    while let Some(mut line) = read_line(&mut r).await {
        let text = String::from_utf8_lossy(&line).trim_end().to_string();
        {
            let mut idle = shared.idle.lock().unwrap();
            if let Some(tag) = idle.tag.clone() {
                let upper = text.to_ascii_uppercase();
                if text.starts_with(&tag) {
                    *idle = IdleState::default();
                } else if text.starts_with('+') {
                    idle.confirmed = true;
                } else if upper.starts_with("* ")
                    && (upper.ends_with(" EXISTS") || upper.ends_with(" RECENT"))
                {
                    drop(idle);
                    shared.note(Seen::Swallowed(text));
                    continue;
                }
            }
        }
        // FETCH lines are ASCII up to the date, so offsets in `text` are offsets in `line`.
        if let Some(at) = text.find("INTERNALDATE \"") {
            let start = at + "INTERNALDATE \"".len();
            if let Some(len) = text[start..].find('"') {
                let date = internaldate
                    .unwrap_or(&text[start..start + len])
                    .to_string();
                if internaldate.is_some() {
                    let mut rewritten = line[..start].to_vec();
                    rewritten.extend_from_slice(date.as_bytes());
                    rewritten.extend_from_slice(&line[start + len..]);
                    line = rewritten;
                }
                shared.note(Seen::InternalDate(date));
            }
        }
        let mut w = shared.client.lock().await;
        if w.write_all(&line).await.is_err() {
            return;
        }
        if let Some(n) = literal_len(&line)
            && pass_literal(&mut r, &mut *w, n).await.is_none()
        {
            return;
        }
    }
}

/// Sends the client `* OK Still here` every `every` while it is in IDLE; never ends without.
async fn chatter(shared: &Shared, every: Option<Duration>) {
    let Some(every) = every else {
        return std::future::pending().await;
    };
    loop {
        tokio::time::sleep(every).await;
        let mut w = shared.client.lock().await;
        if shared.idle.lock().unwrap().confirmed {
            if w.write_all(b"* OK Still here\r\n").await.is_err() {
                return;
            }
            shared.note(Seen::Chatter);
        }
    }
}
