//! A round-trip target (`protocol = "roundtrip"`): its keys, their defaults and checks, and the
//! spec the probe runs.
//!
//! Keys besides every target's: `smtp_target` and `imap_target` (required: the names of an
//! SMTP and an IMAP target, whose servers, credentials and timeouts it uses; either may name a
//! Graph target instead, which then sends with `sendMail` or receives by polling its Inbox),
//! `send_to` (the IMAP target's username when an address, a Graph target's mailbox),
//! `mail_from` (the SMTP target's sender or username, a Graph target's mailbox),
//! `delivery_timeout` (`"120s"`), `poll_interval` (`"2s"`), `cleanup_age` (`"1h"`). Its
//! deadline is its legs' timeouts plus `delivery_timeout`, so it takes no `timeout`; its
//! `slow_threshold` (`"30s"`) goes by the delivery time.

use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use secrecy::SecretString;
use serde::Deserialize;

use crate::config::common::MAX_INTERVAL;
use crate::config::{ConfigError, Endpoint, TargetCx};
use crate::probe::graph::spec::GraphSpec;
use crate::probe::imap::spec::ImapSpec;
use crate::probe::registry::{ProbeSpec, Protocol, Target};
use crate::probe::smtp::spec::{SendSpec, SmtpSpec, address};
use crate::probe::spec::{OwnDeadline, ProtocolSpec, SpecTable, Targets};
use crate::probe::{Phase, PhaseError, PhaseRecorder, ProbeContext};

const DEFAULT_DELIVERY_TIMEOUT: Duration = Duration::from_secs(120);
const DEFAULT_DELIVERY_SLOW: Duration = Duration::from_secs(30);
const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(2);
const MIN_POLL_INTERVAL: Duration = Duration::from_millis(100);
const MAX_POLL_INTERVAL: Duration = Duration::from_secs(3600);
const DEFAULT_CLEANUP_AGE: Duration = Duration::from_secs(3600);
const MAX_CLEANUP_AGE: Duration = Duration::from_secs(365 * 86_400);

/// What a round-trip probe does: send through one SMTP (or Graph) target, wait in one IMAP (or
/// Graph) mailbox.
#[derive(Clone, Debug)]
pub struct RoundtripSpec {
    /// Name of the SMTP target whose server and credentials send the message.
    pub smtp_target: String,
    /// That target's settings.
    pub smtp: Sender,
    /// Deadline of the send leg (the SMTP target's timeout).
    pub smtp_timeout: Duration,
    /// Name of the IMAP (or Graph) target whose mailbox receives it.
    pub imap_target: String,
    /// That target's settings.
    pub imap: Receiver,
    /// Deadline of each receiving step: opening the mailbox, and cleaning up (that target's
    /// timeout).
    pub imap_timeout: Duration,
    /// Sender and recipient of the probe message.
    pub message: SendSpec,
    /// How long after acceptance the message must be seen.
    pub delivery_timeout: Duration,
    /// How often to look without a notification (in IDLE too: some servers never send one).
    pub poll_interval: Duration,
    /// Probe messages older than this are removed by the sweep.
    pub cleanup_age: Duration,
}

/// How a round trip sends its message.
#[derive(Clone, Debug)]
pub enum Sender {
    /// An SMTP session (submission or an MX).
    Smtp(SmtpSpec),
    /// Microsoft Graph's `sendMail` as the Graph target's mailbox.
    Graph(Box<GraphSpec>),
}

impl Sender {
    fn secrets(&self) -> Vec<&SecretString> {
        match self {
            Sender::Smtp(s) => s.secrets(),
            Sender::Graph(g) => g.oauth2.secrets(),
        }
    }
}

/// How a round trip receives its message.
#[derive(Clone, Debug)]
pub enum Receiver {
    /// An IMAP mailbox (IDLE when offered).
    Imap(ImapSpec),
    /// The Inbox of the Graph target's mailbox, polled through Microsoft Graph.
    Graph(Box<GraphSpec>),
}

impl Receiver {
    fn secrets(&self) -> Vec<&SecretString> {
        match self {
            Receiver::Imap(i) => i.secrets(),
            Receiver::Graph(g) => g.oauth2.secrets(),
        }
    }
}

impl RoundtripSpec {
    /// The longest one run can take: open the mailbox, send, wait, clean up.
    pub fn deadline(&self) -> Duration {
        self.imap_timeout + self.smtp_timeout + self.delivery_timeout + self.imap_timeout
    }
}

/// The keys of a round-trip target, as written.
#[derive(Deserialize, Hash)]
#[serde(deny_unknown_fields)]
pub struct RoundtripTable {
    smtp_target: Option<String>,
    imap_target: Option<String>,
    send_to: Option<String>,
    mail_from: Option<String>,
    #[serde(default, with = "humantime_serde")]
    delivery_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    poll_interval: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    cleanup_age: Option<Duration>,
}

impl RoundtripTable {
    /// The leg named by `key`, a target of protocol `want` or Graph.
    fn leg(
        &self,
        cx: &TargetCx<'_>,
        targets: &Targets,
        key: &str,
        want: Protocol,
    ) -> Result<Arc<Target>, ConfigError> {
        let name = match key {
            "smtp_target" => self.smtp_target.as_ref(),
            _ => self.imap_target.as_ref(),
        }
        .ok_or_else(|| {
            cx.error(
                key,
                format!("missing: the name of the {} target to use", want.as_str()),
            )
        })?;
        let target = targets
            .get(name)
            .ok_or_else(|| cx.error(key, format!("no {} target named {name:?}", want.as_str())))?;
        Ok(target.clone())
    }
}

/// The error for a leg naming a target of another protocol than `want` or Graph.
fn wrong_leg(cx: &TargetCx<'_>, key: &str, target: &Target, want: Protocol) -> ConfigError {
    cx.error(
        key,
        format!(
            "target {:?} is {}, not {} or graph",
            target.name,
            target.protocol().as_str(),
            want.as_str()
        ),
    )
}

impl SpecTable for RoundtripTable {
    const NAMES_TARGETS: bool = true;

    fn build(self, cx: &mut TargetCx<'_>, targets: &Targets) -> Result<ProbeSpec, ConfigError> {
        if cx.given("timeout") {
            return Err(cx.error(
                "timeout",
                "a round trip's deadline is its legs' timeouts plus delivery_timeout; set \
                 delivery_timeout here and timeout on the SMTP and IMAP targets",
            ));
        }
        let smtp_target = self.leg(cx, targets, "smtp_target", Protocol::Smtp)?;
        let imap_target = self.leg(cx, targets, "imap_target", Protocol::Imap)?;
        // Either leg may be Microsoft Graph: sendMail, or polling the Inbox.
        let sender = match &smtp_target.spec {
            ProbeSpec::Smtp(smtp) => Sender::Smtp(smtp.clone()),
            ProbeSpec::Graph(graph) => Sender::Graph(graph.clone()),
            _ => return Err(wrong_leg(cx, "smtp_target", &smtp_target, Protocol::Smtp)),
        };
        let receiver = match &imap_target.spec {
            ProbeSpec::Imap(imap) => Receiver::Imap(imap.clone()),
            ProbeSpec::Graph(graph) => Receiver::Graph(graph.clone()),
            _ => return Err(wrong_leg(cx, "imap_target", &imap_target, Protocol::Imap)),
        };
        // The legs' own settings define this target too.
        smtp_target.fingerprint.hash(&mut cx.fp);
        imap_target.fingerprint.hash(&mut cx.fp);

        let to = match (&self.send_to, &receiver) {
            (Some(to), _) => address(cx, "send_to", to)?,
            (None, Receiver::Graph(g)) => address(cx, "send_to", &g.mailbox)?,
            (None, Receiver::Imap(imap)) if imap.credentials.username.contains('@') => {
                address(cx, "send_to", &imap.credentials.username)?
            }
            (None, Receiver::Imap(_)) => {
                return Err(cx.error(
                    "send_to",
                    "missing: the address of the IMAP target's mailbox (defaults to its \
                     username when that is an address)",
                ));
            }
        };
        let from = match (&self.mail_from, &sender) {
            (Some(f), _) => address(cx, "mail_from", f)?,
            (None, Sender::Graph(g)) => address(cx, "mail_from", &g.mailbox)?,
            (None, Sender::Smtp(smtp)) if smtp.send.is_some() => {
                smtp.send.as_ref().map(|s| s.from.clone()).expect("checked")
            }
            (None, Sender::Smtp(smtp))
                if smtp
                    .credentials
                    .as_ref()
                    .is_some_and(|c| c.username.contains('@')) =>
            {
                let user = &smtp.credentials.as_ref().expect("checked").username;
                address(cx, "mail_from", user)?
            }
            _ => {
                return Err(cx.error(
                    "mail_from",
                    "missing: the sender (defaults to the SMTP target's mail_from or username)",
                ));
            }
        };
        let delivery_timeout = self.delivery_timeout.unwrap_or(DEFAULT_DELIVERY_TIMEOUT);
        let poll_interval = self.poll_interval.unwrap_or(DEFAULT_POLL_INTERVAL);
        let cleanup_age = self.cleanup_age.unwrap_or(DEFAULT_CLEANUP_AGE);
        if delivery_timeout.is_zero() {
            return Err(cx.error("delivery_timeout", "must be greater than zero"));
        }
        if delivery_timeout > MAX_INTERVAL {
            return Err(cx.error("delivery_timeout", "must be at most 24h"));
        }
        if poll_interval < MIN_POLL_INTERVAL {
            return Err(cx.error("poll_interval", "must be at least 100ms"));
        }
        if poll_interval > MAX_POLL_INTERVAL {
            return Err(cx.error("poll_interval", "must be at most 1h"));
        }
        if cleanup_age > MAX_CLEANUP_AGE {
            return Err(cx.error("cleanup_age", "must be at most 365d"));
        }
        if cleanup_age <= delivery_timeout {
            return Err(cx.error(
                "cleanup_age",
                format!(
                    "must exceed delivery_timeout ({}): younger probe mail may still be \
                     on its way",
                    humantime::format_duration(delivery_timeout)
                ),
            ));
        }
        Ok(ProbeSpec::Roundtrip(Box::new(RoundtripSpec {
            smtp_target: smtp_target.name.clone(),
            smtp: sender,
            smtp_timeout: smtp_target.timeout,
            imap_target: imap_target.name.clone(),
            imap: receiver,
            imap_timeout: imap_target.timeout,
            message: SendSpec { from, to },
            delivery_timeout,
            poll_interval,
            cleanup_age,
        })))
    }
}

impl ProtocolSpec for RoundtripSpec {
    fn protocol(&self) -> Protocol {
        Protocol::Roundtrip
    }

    fn endpoint(&self) -> Option<&Endpoint> {
        None
    }

    fn secrets(&self) -> Vec<&SecretString> {
        let mut v = self.smtp.secrets();
        v.extend(self.imap.secrets());
        v
    }

    fn phases(&self) -> Vec<Phase> {
        vec![Phase::Receive, Phase::Send, Phase::Delivery, Phase::Cleanup]
    }

    fn login_phase(&self) -> Option<Phase> {
        // It signs in through its legs, whose own warnings name it.
        None
    }

    fn legs(&self) -> Vec<&str> {
        vec![&self.smtp_target, &self.imap_target]
    }

    fn own_deadline(&self) -> Option<OwnDeadline> {
        let deadline = self.deadline();
        let d = humantime::format_duration;
        Some(OwnDeadline {
            deadline,
            slow_default: DEFAULT_DELIVERY_SLOW,
            explain: format!(
                "one whole round trip: {} to open the mailbox + {} to send + {} \
                 delivery_timeout + {} to clean up = {}",
                d(self.imap_timeout),
                d(self.smtp_timeout),
                d(self.delivery_timeout),
                d(self.imap_timeout),
                d(deadline),
            ),
        })
    }

    fn dialogue<'a>(
        &'a self,
        target: &'a Target,
        ctx: &'a ProbeContext,
        rec: &'a mut PhaseRecorder,
    ) -> BoxFuture<'a, Result<(), PhaseError>> {
        Box::pin(super::probe(&target.name, self, ctx, rec))
    }
}
