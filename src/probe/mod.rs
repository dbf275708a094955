//! The probe interface: a probe takes a target and a deadline and returns an owned [`Outcome`]
//! with ordered phase timings, a failure class and the phase it happened in.
//!
//! One protocol per file ([`imap`]), dispatched by `match` on [`ProbeSpec`]; the shared pieces
//! are [`net`] (DNS, TCP), [`crate::tls`] (handshake, certificate facts) and [`bounded`] (read limits).
//! Probes never touch metrics: [`crate::metrics`] turns outcomes into series.

pub mod bounded;
pub mod classify;
pub mod error;
pub mod https;
pub mod imap;
pub mod net;
pub mod redact;
pub mod roundtrip;
pub mod sasl;
pub mod smtp;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::FutureExt;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::config::{ProbeSpec, Target, TlsMode};
use crate::tls::TlsFacts;
use classify::{FailureClass, ProberFault};
pub use error::ProbeError;

/// The protocols mailprobe speaks; the `protocol` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// IMAP4rev1 mailbox access.
    Imap,
    /// SMTP submission (or an MX).
    Smtp,
    /// Send over SMTP, see it arrive over IMAP.
    Roundtrip,
    /// Webmail and mail APIs over HTTPS (pages, Autodiscover/EWS, JMAP).
    Https,
}

impl Protocol {
    /// Every protocol, for pre-created series and summaries.
    pub const ALL: &'static [Protocol] = &[
        Protocol::Imap,
        Protocol::Smtp,
        Protocol::Roundtrip,
        Protocol::Https,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Imap => "imap",
            Protocol::Smtp => "smtp",
            Protocol::Roundtrip => "roundtrip",
            Protocol::Https => "https",
        }
    }
}

/// A step of a probe; the `phase` label. Each is timed on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Resolving the host name.
    Dns,
    /// TCP connect.
    Connect,
    /// TLS handshake (implicit, or after STARTTLS).
    Tls,
    /// Reading the server greeting.
    Greeting,
    /// Asking for STARTTLS and getting the go-ahead.
    Starttls,
    /// Authenticating.
    Login,
    /// Opening the mailbox.
    Select,
    /// Saying goodbye (IMAP LOGOUT).
    Logout,
    /// SMTP EHLO before TLS (or the only one, with implicit TLS or none).
    Ehlo,
    /// SMTP EHLO again after STARTTLS.
    EhloTls,
    /// SMTP AUTH.
    Auth,
    /// SMTP MAIL FROM.
    MailFrom,
    /// SMTP RCPT TO.
    Rcpt,
    /// SMTP DATA, from the command to the reply after the message.
    Data,
    /// SMTP QUIT.
    Quit,
    /// Round trip: opening the receiving mailbox (IMAP connect, login, select, IDLE).
    Receive,
    /// Round trip: submitting the probe message (the whole SMTP session).
    Send,
    /// Round trip: from the 250 after the message until it is seen in the mailbox.
    Delivery,
    /// Round trip: deleting the probe message, sweeping old ones, logging out.
    Cleanup,
    /// HTTP: sending the request until the response headers arrive (time to first byte).
    Request,
    /// HTTP: reading the response body.
    Body,
    /// JMAP: fetching and checking the session resource.
    Session,
    /// JMAP: the `Mailbox/get` call on the API URL.
    Api,
    /// OAuth2: getting an access token (from the cache, or the token endpoint).
    Token,
}

impl Phase {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Dns => "dns",
            Phase::Connect => "connect",
            Phase::Tls => "tls",
            Phase::Greeting => "greeting",
            Phase::Starttls => "starttls",
            Phase::Login => "login",
            Phase::Select => "select",
            Phase::Logout => "logout",
            Phase::Ehlo => "ehlo",
            Phase::EhloTls => "ehlo_tls",
            Phase::Auth => "auth",
            Phase::MailFrom => "mail_from",
            Phase::Rcpt => "rcpt",
            Phase::Data => "data",
            Phase::Quit => "quit",
            Phase::Receive => "receive",
            Phase::Send => "send",
            Phase::Delivery => "delivery",
            Phase::Cleanup => "cleanup",
            Phase::Request => "request",
            Phase::Body => "body",
            Phase::Session => "session",
            Phase::Api => "api",
            Phase::Token => "token",
        }
    }
}

/// The phases a target's probe goes through when all is well, in order; series for all of them
/// exist from the start so a dashboard never has holes for phases a failing probe never reached.
pub fn expected_phases(spec: &ProbeSpec) -> Vec<Phase> {
    let mut phases = protocol_phases(spec);
    let oauth2 = match spec {
        ProbeSpec::Imap(s) => matches!(s.credentials.secret, crate::config::Secret::OAuth2(_)),
        ProbeSpec::Smtp(s) => s
            .credentials
            .as_ref()
            .is_some_and(|c| matches!(c.secret, crate::config::Secret::OAuth2(_))),
        ProbeSpec::Https(s) => matches!(s.auth, Some(crate::config::HttpAuth::OAuth2(_))),
        ProbeSpec::Roundtrip(_) => false,
    };
    if oauth2 {
        phases.insert(0, Phase::Token);
    }
    phases
}

fn protocol_phases(spec: &ProbeSpec) -> Vec<Phase> {
    match spec {
        ProbeSpec::Imap(s) => {
            let mut p = vec![Phase::Dns, Phase::Connect];
            match s.endpoint.tls {
                TlsMode::Implicit => p.extend([Phase::Tls, Phase::Greeting]),
                TlsMode::Starttls => p.extend([Phase::Greeting, Phase::Starttls, Phase::Tls]),
                TlsMode::None => p.push(Phase::Greeting),
            }
            p.extend([Phase::Login, Phase::Select, Phase::Logout]);
            p
        }
        ProbeSpec::Smtp(s) => {
            let mut p = vec![Phase::Dns, Phase::Connect];
            match s.endpoint.tls {
                TlsMode::Implicit => p.extend([Phase::Tls, Phase::Greeting, Phase::Ehlo]),
                TlsMode::Starttls => p.extend([
                    Phase::Greeting,
                    Phase::Ehlo,
                    Phase::Starttls,
                    Phase::Tls,
                    Phase::EhloTls,
                ]),
                TlsMode::None => p.extend([Phase::Greeting, Phase::Ehlo]),
            }
            if s.credentials.is_some() {
                p.push(Phase::Auth);
            }
            if s.send.is_some() {
                p.extend([Phase::MailFrom, Phase::Rcpt, Phase::Data]);
            }
            p.push(Phase::Quit);
            p
        }
        ProbeSpec::Roundtrip(_) => {
            vec![Phase::Receive, Phase::Send, Phase::Delivery, Phase::Cleanup]
        }
        ProbeSpec::Https(s) => {
            let mut p = vec![Phase::Dns, Phase::Connect];
            if s.endpoint.tls != TlsMode::None {
                p.push(Phase::Tls);
            }
            match s.check {
                crate::config::HttpCheck::Page => p.extend([Phase::Request, Phase::Body]),
                crate::config::HttpCheck::Jmap => p.extend([Phase::Session, Phase::Api]),
            }
            p
        }
    }
}

/// How long one phase took.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PhaseTiming {
    /// Which phase.
    pub phase: Phase,
    /// Its duration (up to the failure, for the failing phase).
    pub duration: Duration,
}

/// Why a probe failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The bounded class (a metric label).
    pub class: FailureClass,
    /// Why mailprobe itself could not run the probe; set exactly when `class` is
    /// [`FailureClass::ProberError`], which is no failure of the target.
    pub fault: Option<ProberFault>,
    /// The phase it failed in.
    pub phase: Phase,
    /// A short human explanation; never holds secrets.
    pub detail: String,
}

/// What a round trip learnt about delivery.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Delivery {
    /// From acceptance (the 250 after DATA) to seen in the mailbox, if seen before the deadline.
    pub latency: Option<Duration>,
    /// Earlier probe messages of this target that arrived after their deadline, with how long
    /// they took (from acceptance to the mailbox's arrival time); they have been deleted.
    pub late: Vec<Duration>,
    /// Probe messages older than `cleanup_age` removed by the sweep.
    pub swept: u32,
    /// The server's own time for the message seen in time, so a slow mail system can be told
    /// from a late look (`None` when none was seen, or the cleanup could not read its stamps).
    pub server: Option<ServerTime>,
}

/// The server's own account of a delivery, next to `latency` (when the probe saw it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerTime {
    /// From acceptance to the end of the second the server stamped: the latest the stamp
    /// allows, and never more than the seen latency.
    Stamped {
        /// Acceptance to the stamp.
        took: Duration,
        /// Which stamp.
        source: StampSource,
    },
    /// No stamp fits between acceptance and sight (said why): the server's clock differs from
    /// ours, or what it stamped is not the arrival.
    Unknown(String),
}

/// Which of the server's stamps gave its delivery time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StampSource {
    /// The message's INTERNALDATE: when the mailbox store received it (RFC 3501 2.3.3).
    InternalDate,
    /// The date of the topmost `Received:` field: the last hop that wrote one.
    Received,
}

impl StampSource {
    /// As the protocol names it.
    pub fn as_str(self) -> &'static str {
        match self {
            StampSource::InternalDate => "INTERNALDATE",
            StampSource::Received => "Received",
        }
    }
}

/// What an HTTPS probe's last response was.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HttpFacts {
    /// Status code of the last response.
    pub status: u16,
    /// HTTP version of the last response ("HTTP/1.1", "HTTP/2").
    pub version: String,
    /// The URL that answered last (after redirects).
    pub url: String,
    /// Redirects followed.
    pub redirects: u32,
}

/// The result of one probe run: owned, so it can be logged, exported and printed independently.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// What was probed.
    pub target: Arc<Target>,
    /// Wall-clock start.
    pub started_at: SystemTime,
    /// Start to end.
    pub total: Duration,
    /// Phases in the order they ran.
    pub phases: Vec<PhaseTiming>,
    /// `None` on success.
    pub failure: Option<Failure>,
    /// A success that took longer than the target's slow threshold.
    pub slow: bool,
    /// TLS facts, when TLS was attempted.
    pub tls: Option<TlsFacts>,
    /// The server's greeting text (first line, clipped), for humans.
    pub banner: Option<String>,
    /// Round trips only: what happened to the mail.
    pub delivery: Option<Delivery>,
    /// HTTPS only: the last response.
    pub http: Option<HttpFacts>,
    /// OAuth2 targets: what getting the token did.
    pub token: Option<crate::oauth2::TokenFacts>,
    /// The address the (last) TCP connection went to; its family is the `family` label.
    pub peer: Option<std::net::SocketAddr>,
}

impl Outcome {
    /// Whether the probe succeeded.
    pub fn success(&self) -> bool {
        self.failure.is_none()
    }

    /// Duration of `phase` in this run, if it ran.
    pub fn phase(&self, phase: Phase) -> Option<Duration> {
        self.phases
            .iter()
            .find(|p| p.phase == phase)
            .map(|p| p.duration)
    }
}

/// A probe error with the phase it happened in.
#[derive(Debug)]
pub struct PhaseError {
    /// The phase.
    pub phase: Phase,
    /// What went wrong.
    pub error: ProbeError,
}

/// Records phases as a probe walks through them.
#[derive(Debug)]
pub struct Timeline {
    phases: Vec<PhaseTiming>,
    current: Option<(Phase, Instant)>,
    tls: Option<TlsFacts>,
    banner: Option<String>,
    delivery: Option<Delivery>,
    http: Option<HttpFacts>,
    token: Option<crate::oauth2::TokenFacts>,
    /// Secrets obtained during the probe (access tokens), redacted like configured ones.
    secrets: Vec<secrecy::SecretString>,
    slow_basis: Option<Duration>,
    /// The address the last TCP connection went to.
    peer: Option<std::net::SocketAddr>,
    /// When the probe's deadline passes, so that connecting can name what did not answer.
    deadline: Option<tokio::time::Instant>,
}

impl Timeline {
    /// An empty timeline (each probe, and each leg of a round trip, has its own).
    pub fn new() -> Self {
        Timeline {
            phases: Vec::with_capacity(8),
            current: None,
            tls: None,
            banner: None,
            delivery: None,
            http: None,
            token: None,
            secrets: Vec::new(),
            slow_basis: None,
            peer: None,
            deadline: None,
        }
    }

    /// Runs `fut` as `phase`, timing it; its error is tagged with the phase.
    pub async fn phase<T, E, F>(&mut self, phase: Phase, fut: F) -> Result<T, PhaseError>
    where
        F: Future<Output = Result<T, E>>,
        E: Into<ProbeError>,
    {
        self.phase_from(phase, Instant::now(), fut).await
    }

    /// Like [`Timeline::phase`], but timed from `start` (a round trip measures delivery from
    /// the moment the message was accepted).
    pub async fn phase_from<T, E, F>(
        &mut self,
        phase: Phase,
        start: Instant,
        fut: F,
    ) -> Result<T, PhaseError>
    where
        F: Future<Output = Result<T, E>>,
        E: Into<ProbeError>,
    {
        self.current = Some((phase, start));
        let result = fut.await;
        self.current = None;
        self.phases.push(PhaseTiming {
            phase,
            duration: start.elapsed(),
        });
        result.map_err(|e| PhaseError {
            phase,
            error: e.into(),
        })
    }

    /// Records what a TLS handshake established.
    pub fn set_tls(&mut self, facts: TlsFacts) {
        self.tls = Some(facts);
    }

    /// Records the server greeting (first 200 characters, control characters removed).
    pub fn set_banner(&mut self, text: &str) {
        self.banner = Some(clean(text, 200));
    }

    /// Records what getting an OAuth2 token did.
    pub fn set_token(&mut self, facts: crate::oauth2::TokenFacts) {
        self.token = Some(facts);
    }

    /// A secret obtained during the probe, never to appear in its detail.
    pub fn add_secret(&mut self, secret: secrecy::SecretString) {
        self.secrets.push(secret);
    }

    /// Records the last HTTP response.
    pub fn set_http(&mut self, http: HttpFacts) {
        self.http = Some(http);
    }

    /// Records what a round trip learnt about delivery.
    pub fn set_delivery(&mut self, delivery: Delivery) {
        self.delivery = Some(delivery);
    }

    /// The duration the slow threshold is compared with, when not the whole probe (a round
    /// trip compares its delivery latency).
    pub fn set_slow_basis(&mut self, d: Duration) {
        self.slow_basis = Some(d);
    }

    /// Closes the phase that was running when a deadline passed, and names it.
    pub fn interrupted(&mut self) -> Phase {
        match self.current.take() {
            Some((phase, start)) => {
                self.phases.push(PhaseTiming {
                    phase,
                    duration: start.elapsed(),
                });
                phase
            }
            None => self.phases.last().map_or(Phase::Dns, |p| p.phase),
        }
    }
}

impl Default for Timeline {
    fn default() -> Self {
        Self::new()
    }
}

/// What all probes share: the resolver, OAuth2 tokens, and what round trips remember between
/// runs.
#[derive(Clone)]
pub struct ProbeContext {
    /// Uncached resolvers: the system's, and one per `dns_servers` setting.
    pub resolvers: Arc<net::Resolvers>,
    /// OAuth2 tokens by credential set.
    pub tokens: Arc<crate::oauth2::TokenCache>,
    /// Probe messages that missed their deadline, per round-trip target, so that their late
    /// arrival is recognised and counted.
    pub pending: Arc<roundtrip::Pending>,
}

impl ProbeContext {
    /// A context; a target's resolver is built from its DNS settings when first needed.
    pub fn new() -> Self {
        ProbeContext {
            resolvers: Arc::new(net::Resolvers::new()),
            tokens: Arc::default(),
            pending: Arc::default(),
        }
    }
}

impl Default for ProbeContext {
    fn default() -> Self {
        Self::new()
    }
}

/// The protocol dialogue of one probe, recording its phases in the timeline: [`dialogue`] for
/// every probe mailprobe runs; tests put in their own to reach what no server can (a panic).
pub type Dialogue = for<'a> fn(
    &'a Arc<Target>,
    &'a ProbeContext,
    &'a mut Timeline,
) -> BoxFuture<'a, Result<(), PhaseError>>;

/// The dialogue of the target's protocol.
pub fn dialogue<'a>(
    target: &'a Arc<Target>,
    ctx: &'a ProbeContext,
    timeline: &'a mut Timeline,
) -> BoxFuture<'a, Result<(), PhaseError>> {
    Box::pin(async move {
        match &target.spec {
            ProbeSpec::Imap(spec) => imap::probe(spec, ctx, timeline).await,
            ProbeSpec::Smtp(spec) => smtp::probe(spec, ctx, timeline).await,
            ProbeSpec::Https(spec) => https::probe(spec, ctx, timeline).await,
            ProbeSpec::Roundtrip(spec) => roundtrip::probe(&target.name, spec, ctx, timeline).await,
        }
    })
}

/// Runs one probe of `target`; never panics on server input and never outlives the deadline.
pub async fn run(target: &Arc<Target>, ctx: &ProbeContext) -> Outcome {
    run_with(target, ctx, dialogue).await
}

/// Runs `dialogue` as a probe of `target`: timed and bounded by the target's deadline. A panic
/// inside it (a bug) becomes a prober fault of the phase it happened in, never the caller's
/// panic: the target's task, or `mailprobe probe`, carries on, and the target is not reported
/// failing. (Needs unwinding panics, the release profile's default.)
pub async fn run_with(target: &Arc<Target>, ctx: &ProbeContext, dialogue: Dialogue) -> Outcome {
    let started_at = SystemTime::now();
    let start = Instant::now();
    let deadline = tokio::time::Instant::from_std(start + target.timeout);
    let mut timeline = Timeline::new();
    timeline.deadline = Some(deadline);
    // Unwind safety: on a panic the dialogue's state is dropped; only the timeline outlives it,
    // and it is only read to name the phase that was running.
    let dispatch = std::panic::AssertUnwindSafe(dialogue(target, ctx, &mut timeline));
    let finished = tokio::time::timeout_at(deadline, dispatch.catch_unwind()).await;
    let result = match finished {
        Ok(Ok(r)) => r,
        Ok(Err(panic)) => Err(PhaseError {
            phase: timeline.interrupted(),
            error: ProbeError::Panic(panic_message(panic.as_ref())),
        }),
        Err(_) => Err(PhaseError {
            phase: timeline.interrupted(),
            error: ProbeError::Timeout,
        }),
    };
    let total = start.elapsed();
    let failure = result.err().map(|e| {
        let verdict = classify::judge(e.phase, &e.error);
        let text = match verdict.meaning {
            Some(meaning) => format!("{} — {meaning}", e.error),
            None => e.error.to_string(),
        };
        Failure {
            class: verdict.class,
            fault: verdict.fault,
            phase: e.phase,
            // Redacted whole, then cut: an echo across the cut must not leave its start behind.
            detail: via(
                clean(
                    &redact::redact(
                        &text,
                        target
                            .spec
                            .secrets()
                            .into_iter()
                            .chain(timeline.secrets.iter()),
                    ),
                    DETAIL_MAX,
                ),
                e.phase,
                target,
                timeline.peer,
            ),
        }
    });
    let slow_basis = timeline.slow_basis.unwrap_or(total);
    Outcome {
        slow: failure.is_none() && slow_basis > target.slow_threshold,
        target: target.clone(),
        started_at,
        total,
        phases: timeline.phases,
        failure,
        tls: timeline.tls,
        banner: timeline.banner,
        delivery: timeline.delivery,
        http: timeline.http,
        token: timeline.token,
        peer: timeline.peer,
    }
}

/// A failure after connecting to a host name says which of its addresses answered (an IP
/// address host is named by the config already).
fn via(
    detail: String,
    phase: Phase,
    target: &Target,
    peer: Option<std::net::SocketAddr>,
) -> String {
    let named = target
        .spec
        .endpoint()
        .is_some_and(|ep| ep.host.parse::<std::net::IpAddr>().is_err());
    match peer {
        Some(addr) if named && !matches!(phase, Phase::Dns | Phase::Connect) => {
            format!("{detail} (via {addr}, {})", net::IpFamily::of(&addr).name())
        }
        _ => detail,
    }
}

/// What a panic said (`panic!` carries a `&str` or a `String`).
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into())
}

/// The most characters a failure's detail keeps: room for a server's refusal with its alert
/// lines and links (Gmail's `[WEBALERT <url>]`) or a multi-line SMTP reply with its meaning,
/// still one bounded log line.
pub const DETAIL_MAX: usize = 1000;

/// One line, printable, at most `max` characters.
fn clean(s: &str, max: usize) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect();
    if s.chars().count() > max {
        out.push('…');
    }
    out
}

/// The `dns` and `connect` phases for `ep`, shared by every protocol over TCP.
pub async fn open(
    tl: &mut Timeline,
    ctx: &ProbeContext,
    ep: &crate::config::Endpoint,
) -> Result<tokio::net::TcpStream, PhaseError> {
    let resolver = ctx.resolvers.get(&ep.net);
    let addrs = tl
        .phase(
            Phase::Dns,
            net::resolve(&resolver, &ep.host, ep.port, ep.net.ip_protocol),
        )
        .await?;
    let deadline = tl.deadline;
    let (tcp, peer) = tl
        .phase(Phase::Connect, net::connect(&addrs, deadline))
        .await?;
    tl.peer = Some(peer);
    Ok(tcp)
}

/// The `token` phase: an OAuth2 access token for `spec`, from the cache or its endpoint.
pub async fn oauth2_token(
    tl: &mut Timeline,
    ctx: &ProbeContext,
    spec: &crate::oauth2::OAuth2Spec,
) -> Result<secrecy::SecretString, PhaseError> {
    let (result, facts) = tl
        .phase(Phase::Token, async {
            Ok::<_, ProbeError>(ctx.tokens.token(spec).await)
        })
        .await?;
    tl.set_token(facts);
    let token = result.map_err(|e| PhaseError {
        phase: Phase::Token,
        error: ProbeError::Token(e),
    })?;
    tl.add_secret(token.clone());
    Ok(token)
}

/// The `tls` phase over `tcp`, recording what the handshake established even when it fails.
pub async fn start_tls(
    tl: &mut Timeline,
    ep: &crate::config::Endpoint,
    tcp: tokio::net::TcpStream,
    alpn: &[&[u8]],
) -> Result<net::Stream, PhaseError> {
    let Some(client) = ep.tls_client.as_ref() else {
        return Err(PhaseError {
            phase: Phase::Tls,
            error: ProbeError::Internal("TLS requested on a target configured without TLS".into()),
        });
    };
    let (result, facts) = tl
        .phase(Phase::Tls, async {
            Ok::<_, ProbeError>(client.handshake(tcp, alpn).await)
        })
        .await?;
    tl.set_tls(facts);
    result
        .map(|tls| net::Stream::Tls(Box::new(tls)))
        .map_err(|e| PhaseError {
            phase: Phase::Tls,
            error: ProbeError::Tls(e),
        })
}
