//! The probe interface: a probe takes a target and a deadline and returns an owned [`Outcome`]
//! with ordered phase timings, a failure class and the phase it happened in.
//!
//! Each protocol is a folder of its own ([`imap`], [`smtp`], [`https`], [`roundtrip`]): the
//! dialogue in its `mod.rs`, its config keys, defaults and checks in its `spec.rs`, the classes
//! of its servers' answers beside them. The [`registry`] lists the protocols once; [`spec`] says
//! what each provides; [`phase`] holds the phase labels and the recorder that times them. The
//! shared pieces are [`net`] (DNS, TCP), `crate::tls` (handshake, certificate facts),
//! [`bounded`] (read limits), [`sasl`] (bearer mechanisms), [`redact`] (secrets out of details),
//! [`error`] (what goes wrong) and [`classify`] (where every error becomes a failure class).
//! Probes never touch metrics: they return outcomes, and the daemon's consumers turn those into
//! series.

pub mod api;
pub mod bounded;
pub mod classify;
pub mod error;
pub mod gmail;
pub mod graph;
pub mod https;
pub mod imap;
pub mod mx;
pub mod net;
pub mod phase;
pub mod pop3;
pub mod redact;
pub mod registry;
pub mod roundtrip;
pub mod sasl;
pub mod smtp;
pub mod spec;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::FutureExt;
use futures::future::BoxFuture;
use serde::Serialize;

use crate::config::Endpoint;
use crate::tls::TlsFacts;
use classify::{FailureClass, ProberFault};
pub use error::ProbeError;
pub use phase::{Phase, PhaseError, PhaseRecorder, PhaseTiming};
pub use registry::{ProbeSpec, Protocol, Target};

/// The phases a target's probe goes through when all is well, in order; series for all of them
/// exist from the start so a dashboard never has holes for phases a failing probe never reached.
pub fn expected_phases(spec: &ProbeSpec) -> Vec<Phase> {
    spec.get().phases()
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
    /// Microsoft Graph's `receivedDateTime`: when Exchange received the message.
    ReceivedDateTime,
}

impl StampSource {
    /// As the protocol names it.
    pub fn as_str(self) -> &'static str {
        match self {
            StampSource::InternalDate => "INTERNALDATE",
            StampSource::Received => "Received",
            StampSource::ReceivedDateTime => "receivedDateTime",
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
    /// MX targets: the domain's MX hosts and what each did.
    pub mx: Option<Box<mx::MxFacts>>,
    /// How long the server asked us to wait before asking again (`Retry-After`): the
    /// scheduler holds the target's next probe back at least this long.
    pub retry_after: Option<Duration>,
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

/// The protocol dialogue of one probe, recording its phases: [`dialogue`] for
/// every probe mailprobe runs; tests put in their own to reach what no server can (a panic).
pub type Dialogue = for<'a> fn(
    &'a Arc<Target>,
    &'a ProbeContext,
    &'a mut PhaseRecorder,
) -> BoxFuture<'a, Result<(), PhaseError>>;

/// The dialogue of the target's protocol.
pub fn dialogue<'a>(
    target: &'a Arc<Target>,
    ctx: &'a ProbeContext,
    recorder: &'a mut PhaseRecorder,
) -> BoxFuture<'a, Result<(), PhaseError>> {
    Box::pin(async move { target.spec.get().dialogue(target, ctx, recorder).await })
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
    // tokio's clock for both the deadline and the total, as `timeout_at` reads it: on a paused
    // clock (the scheduler's tests) a std start would put the deadline off by the real time
    // since the pause.
    let start = tokio::time::Instant::now();
    let deadline = start + target.timeout;
    let mut recorder = PhaseRecorder::new();
    recorder.deadline = Some(deadline);
    // Unwind safety: on a panic the dialogue's state is dropped; only the recorder outlives it,
    // and it is only read to name the phase that was running.
    let dispatch = std::panic::AssertUnwindSafe(dialogue(target, ctx, &mut recorder));
    let finished = tokio::time::timeout_at(deadline, dispatch.catch_unwind()).await;
    let result = match finished {
        Ok(Ok(r)) => r,
        Ok(Err(panic)) => Err(PhaseError {
            phase: recorder.interrupted(),
            error: ProbeError::Panic(panic_message(panic.as_ref())),
        }),
        Err(_) => Err(PhaseError {
            phase: recorder.interrupted(),
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
                            .chain(recorder.secrets.iter()),
                    ),
                    DETAIL_MAX,
                ),
                e.phase,
                target,
                recorder.peer,
            ),
        }
    });
    let slow_basis = recorder.slow_basis.unwrap_or(total);
    Outcome {
        slow: failure.is_none() && slow_basis > target.slow_threshold,
        target: target.clone(),
        started_at,
        total,
        phases: recorder.phases,
        failure,
        tls: recorder.tls,
        banner: recorder.banner,
        delivery: recorder.delivery,
        http: recorder.http,
        token: recorder.token,
        peer: recorder.peer,
        mx: recorder.mx,
        retry_after: recorder.retry_after,
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

/// The `dns` and `connect` phases for `ep`, shared by every protocol over TCP: resolves the
/// host and connects (no TLS, no protocol yet).
pub async fn resolve_and_connect(
    rec: &mut PhaseRecorder,
    ctx: &ProbeContext,
    ep: &Endpoint,
) -> Result<tokio::net::TcpStream, PhaseError> {
    let resolver = ctx.resolvers.get(&ep.net);
    let addrs = rec
        .phase(
            Phase::Dns,
            net::resolve(&resolver, &ep.host, ep.port, ep.net.ip_protocol),
        )
        .await?;
    let deadline = rec.deadline;
    let (tcp, peer) = rec
        .phase(Phase::Connect, net::connect(&addrs, deadline))
        .await?;
    rec.peer = Some(peer);
    Ok(tcp)
}

/// The `token` phase: an OAuth2 access token for `spec`, from the cache or its endpoint.
pub async fn oauth2_token(
    rec: &mut PhaseRecorder,
    ctx: &ProbeContext,
    spec: &crate::config::oauth2::OAuth2Spec,
) -> Result<secrecy::SecretString, PhaseError> {
    let (result, facts) = rec
        .phase(Phase::Token, async {
            Ok::<_, ProbeError>(ctx.tokens.token(spec).await)
        })
        .await?;
    rec.set_token(facts);
    let token = result.map_err(|e| PhaseError {
        phase: Phase::Token,
        error: ProbeError::Token(e),
    })?;
    rec.add_secret(token.clone());
    Ok(token)
}

/// The `tls` phase over `tcp`: the handshake of implicit TLS, or the one after STARTTLS,
/// recording what it established even when it fails.
pub async fn tls_handshake(
    rec: &mut PhaseRecorder,
    ep: &Endpoint,
    tcp: tokio::net::TcpStream,
    alpn: &[&[u8]],
) -> Result<net::Stream, PhaseError> {
    let Some(client) = ep.tls_client.as_ref() else {
        return Err(PhaseError {
            phase: Phase::Tls,
            error: ProbeError::Internal("TLS requested on a target configured without TLS".into()),
        });
    };
    let (result, facts) = rec
        .phase(Phase::Tls, async {
            Ok::<_, ProbeError>(client.handshake(tcp, alpn).await)
        })
        .await?;
    rec.set_tls(facts);
    result
        .map(|tls| net::Stream::Tls(Box::new(tls)))
        .map_err(|e| PhaseError {
            phase: Phase::Tls,
            error: ProbeError::Tls(e),
        })
}
