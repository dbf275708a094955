//! The phases of a probe: the [`Phase`] label (one line per phase in `phases!`), how long each
//! took ([`PhaseTiming`]), and the [`PhaseRecorder`] a probe records them in as it walks through
//! them (not to be confused with an incident's timeline).

use std::future::Future;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{Delivery, HttpFacts, ProbeError, clean};
use crate::oauth2::TokenFacts;
use crate::tls::TlsFacts;

/// Declares [`Phase`] from one line per phase: variant and label.
macro_rules! phases {
    ($($(#[doc = $doc:literal])* $variant:ident = $label:literal,)*) => {
        /// A step of a probe; the `phase` label. Each is timed on its own.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum Phase {
            $($(#[doc = $doc])* #[serde(rename = $label)] $variant,)*
        }

        impl Phase {
            /// The label value.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Phase::$variant => $label,)*
                }
            }
        }
    };
}

phases! {
    /// Resolving the host name.
    Dns = "dns",
    /// TCP connect.
    Connect = "connect",
    /// TLS handshake (implicit, or after STARTTLS).
    Tls = "tls",
    /// Reading the server greeting.
    Greeting = "greeting",
    /// Asking for STARTTLS and getting the go-ahead.
    Starttls = "starttls",
    /// Authenticating.
    Login = "login",
    /// Opening the mailbox.
    Select = "select",
    /// Saying goodbye (IMAP LOGOUT).
    Logout = "logout",
    /// SMTP EHLO before TLS (or the only one, with implicit TLS or none).
    Ehlo = "ehlo",
    /// SMTP EHLO again after STARTTLS.
    EhloTls = "ehlo_tls",
    /// SMTP AUTH.
    Auth = "auth",
    /// SMTP MAIL FROM.
    MailFrom = "mail_from",
    /// SMTP RCPT TO.
    Rcpt = "rcpt",
    /// SMTP DATA, from the command to the reply after the message.
    Data = "data",
    /// SMTP QUIT.
    Quit = "quit",
    /// Round trip: opening the receiving mailbox (IMAP connect, login, select, IDLE; or Graph's
    /// token and one read of the Inbox).
    Receive = "receive",
    /// Round trip: submitting the probe message (the whole SMTP session).
    Send = "send",
    /// Round trip: from the 250 after the message until it is seen in the mailbox.
    Delivery = "delivery",
    /// Round trip: deleting the probe message, sweeping old ones, logging out.
    Cleanup = "cleanup",
    /// HTTP: sending the request until the response headers arrive (time to first byte).
    Request = "request",
    /// HTTP: reading the response body.
    Body = "body",
    /// JMAP: fetching and checking the session resource.
    Session = "session",
    /// JMAP: the `Mailbox/get` call on the API URL.
    Api = "api",
    /// OAuth2: getting an access token (from the cache, or the token endpoint).
    Token = "token",
    /// POP3 STAT: the maildrop's message count and size.
    Stat = "stat",
    /// Mail APIs (Graph, Gmail): listing the newest message of the Inbox.
    Messages = "messages",
}

/// The phases up to a greeting-first protocol's (IMAP, POP3) greeting and its TLS, by TLS
/// mode: one list, so the two protocols cannot drift apart.
pub fn to_greeting(tls: crate::config::TlsMode) -> Vec<Phase> {
    use crate::config::TlsMode;
    let mut p = vec![Phase::Dns, Phase::Connect];
    match tls {
        TlsMode::Implicit => p.extend([Phase::Tls, Phase::Greeting]),
        TlsMode::Starttls => p.extend([Phase::Greeting, Phase::Starttls, Phase::Tls]),
        TlsMode::None => p.push(Phase::Greeting),
    }
    p
}

/// `phases` with `token` first when the probe signs in with an OAuth2 token.
pub fn with_token(oauth2: bool, mut phases: Vec<Phase>) -> Vec<Phase> {
    if oauth2 {
        phases.insert(0, Phase::Token);
    }
    phases
}

/// How long one phase took.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PhaseTiming {
    /// Which phase.
    pub phase: Phase,
    /// Its duration (up to the failure, for the failing phase).
    pub duration: Duration,
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
pub struct PhaseRecorder {
    pub(super) phases: Vec<PhaseTiming>,
    pub(super) current: Option<(Phase, Instant)>,
    pub(super) tls: Option<TlsFacts>,
    pub(super) banner: Option<String>,
    pub(super) delivery: Option<Delivery>,
    pub(super) http: Option<HttpFacts>,
    pub(super) token: Option<TokenFacts>,
    /// Secrets obtained during the probe (access tokens), redacted like configured ones.
    pub(super) secrets: Vec<secrecy::SecretString>,
    pub(super) slow_basis: Option<Duration>,
    /// The address the last TCP connection went to.
    pub(super) peer: Option<std::net::SocketAddr>,
    /// When the probe's deadline passes, so that connecting can name what did not answer.
    pub(super) deadline: Option<tokio::time::Instant>,
    /// MX targets: the domain's hosts and what each did.
    pub(super) mx: Option<Box<super::mx::MxFacts>>,
    /// How long the server asked us to wait before asking again.
    pub(super) retry_after: Option<Duration>,
}

impl PhaseRecorder {
    /// An empty recorder (each probe, and each leg of a round trip, has its own).
    pub fn new() -> Self {
        PhaseRecorder {
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
            mx: None,
            retry_after: None,
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

    /// Like [`PhaseRecorder::phase`], but timed from `start` (a round trip measures delivery from
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
    pub fn set_token(&mut self, facts: TokenFacts) {
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

    /// Records what an MX probe found of the domain's hosts.
    pub fn set_mx(&mut self, mx: super::mx::MxFacts) {
        self.mx = Some(Box::new(mx));
    }

    /// Records how long the server asked us to wait (`Retry-After`; the longest if it said
    /// so more than once).
    pub fn set_retry_after(&mut self, wait: Duration) {
        self.retry_after = Some(self.retry_after.map_or(wait, |w| w.max(wait)));
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

impl Default for PhaseRecorder {
    fn default() -> Self {
        Self::new()
    }
}
