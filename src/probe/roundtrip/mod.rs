//! The round-trip probe: send a message through an SMTP target (or Microsoft Graph's
//! `sendMail`) and watch it arrive in an IMAP mailbox (or a Graph mailbox's Inbox), measuring
//! delivery from the 250 after the message (Graph's 202) to the moment it is seen.
//!
//! One run, the receiving side behind one seam ([`inbox::Inbox`]) whatever its protocol:
//! 1. `receive`: open the mailbox (the IMAP target's connect, login, select, and IDLE when the
//!    server offers it; Graph's token and one read of the Inbox) *before* sending, so no
//!    arrival can be missed and the login is not counted as delivery time.
//! 2. `send`: the SMTP target's whole session with a probe message carrying a unique token (or
//!    Graph's `sendMail`).
//! 3. `delivery`: wait for the token until `delivery_timeout` after acceptance: in IDLE, looking
//!    on each EXISTS and, without one, every `poll_interval` (leave IDLE, search, re-enter), since
//!    some servers never notify; without IDLE, and through Graph, looking every `poll_interval`.
//! 4. `cleanup`: delete our message, count and delete probe messages of this target that arrived
//!    after their deadline (late mail), sweep probe messages older than `cleanup_age`, log out.
//!
//! Only messages carrying the [`TOKEN_HEADER`] are ever touched: over IMAP deletion is by UID
//! (UID EXPUNGE where UIDPLUS is offered), through Graph by message id, of messages whose
//! subject token and header agree ([`crate::probe::graph::inbox`]); other mail in the mailbox
//! is never affected.

mod inbox;
pub mod spec;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_imap::Session;
use async_imap::extensions::idle::{Handle, IdleResponse};
use async_imap::imap_proto::{MailboxDatum, Response};
use futures::TryStreamExt;

use super::bounded::Limits;
use super::imap::{self, Conn};
use super::smtp::{self, ProbeMessage, TOKEN_HEADER};
use super::{
    Delivery, Phase, PhaseError, PhaseRecorder, ProbeContext, ProbeError, ServerTime, StampSource,
};
use inbox::Inbox;
pub use spec::RoundtripSpec;
use spec::Sender;

/// Bounds for the receiving session: it lives through a whole delivery wait and a sweep, so it
/// may read more than a login does, but never without limit.
pub const LIMITS: Limits = Limits {
    max_line: 64 * 1024,
    max_total: 16 * 1024 * 1024,
};
/// Resolution of the server's stamps: INTERNALDATE and RFC 5322 dates carry whole seconds.
const STAMP_RESOLUTION: Duration = Duration::from_secs(1);
/// How far outside acceptance..sight a stamp may fall and still be believed: clocks NTP keeps
/// together differ by far less, a store that stamps something else (a copy's original date) by
/// far more.
const STAMP_SLACK: Duration = Duration::from_secs(2);
/// Most header bytes read for the topmost `Received:` field (RFC 5322 lines stay under 1000).
const RECEIVED_MAX: usize = 4096;
/// Most missed messages remembered per target.
const MAX_PENDING: usize = 64;
/// Most probe messages looked at by one sweep.
const MAX_SWEEP: usize = 500;

/// Probe messages that missed their deadline, per target: `(token, accepted at)`.
#[derive(Debug, Default)]
pub struct Pending {
    by_target: Mutex<HashMap<String, VecDeque<(String, SystemTime)>>>,
}

impl Pending {
    fn add(&self, target: &str, token: &str, accepted: SystemTime) {
        let mut map = crate::sync::lock(&self.by_target);
        let q = map.entry(target.to_string()).or_default();
        if q.len() >= MAX_PENDING {
            q.pop_front();
        }
        q.push_back((token.to_string(), accepted));
    }

    fn snapshot(&self, target: &str) -> Vec<(String, SystemTime)> {
        let map = crate::sync::lock(&self.by_target);
        map.get(target)
            .map(|q| q.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Forgets `tokens` (found) and anything accepted before `forget_before` (the sweep has it).
    fn forget(&self, target: &str, tokens: &[String], forget_before: SystemTime) {
        let mut map = crate::sync::lock(&self.by_target);
        if let Some(q) = map.get_mut(target) {
            q.retain(|(t, at)| !tokens.contains(t) && *at >= forget_before);
        }
    }

    /// How many messages of `target` are still outstanding.
    pub fn len(&self, target: &str) -> usize {
        let map = crate::sync::lock(&self.by_target);
        map.get(target).map_or(0, VecDeque::len)
    }

    /// Whether `target` has no outstanding message.
    pub fn is_empty(&self, target: &str) -> bool {
        self.len(target) == 0
    }
}

/// Runs one round trip for the target `name`.
pub async fn probe(
    name: &str,
    spec: &RoundtripSpec,
    ctx: &ProbeContext,
    rec: &mut PhaseRecorder,
) -> Result<(), PhaseError> {
    let token = crate::hash::unique_token();
    let message = ProbeMessage::new(&spec.message, &token).map_err(|error| PhaseError {
        phase: Phase::Send,
        error,
    })?;

    let mut mailbox = leg(
        rec,
        Phase::Receive,
        spec.imap_timeout,
        async |t: &mut PhaseRecorder| Inbox::open(spec, ctx, t).await,
    )
    .await?;

    let sent = leg(
        rec,
        Phase::Send,
        spec.smtp_timeout,
        async |t: &mut PhaseRecorder| match &spec.smtp {
            Sender::Smtp(s) => smtp::session(s, ctx, t, Some(&message))
                .await
                .map(|a| a.map(|a| a.at)),
            Sender::Graph(g) => super::graph::send(g, ctx, t, &message).await.map(Some),
        },
    )
    .await;
    let accepted = match sent {
        Ok(Some(at)) => at,
        Ok(None) => unreachable!("a session with a message returns its acceptance"),
        Err(e) => {
            // Leave the mailbox tidy (bounded), but report the send failure.
            let _ = tokio::time::timeout(spec.imap_timeout, mailbox.close()).await;
            mailbox.hand_over(rec);
            return Err(e);
        }
    };
    let accepted_wall = SystemTime::now() - accepted.elapsed();

    let waited = rec
        .phase_from(
            Phase::Delivery,
            accepted,
            mailbox.wait_for(&token, accepted + spec.delivery_timeout, spec.poll_interval),
        )
        .await;
    let mut delivery = Delivery::default();
    let mut failure = match waited {
        Ok(Some(seen)) => {
            let latency = seen.saturating_duration_since(accepted);
            delivery.latency = Some(latency);
            rec.set_slow_basis(latency);
            None
        }
        Ok(None) => {
            ctx.pending.add(name, &token, accepted_wall);
            Some(PhaseError {
                phase: Phase::Delivery,
                error: ProbeError::NotDelivered(spec.delivery_timeout),
            })
        }
        Err(e) => Some(e),
    };

    let pending = ctx.pending.snapshot(name);
    let cleaned = rec
        .phase(Phase::Cleanup, async {
            match tokio::time::timeout(
                spec.imap_timeout,
                mailbox.cleanup(&pending, spec.delivery_timeout, spec.cleanup_age),
            )
            .await
            {
                Ok(r) => r,
                Err(_) => Err(ProbeError::Timeout),
            }
        })
        .await;
    match cleaned {
        Ok(c) => {
            ctx.pending.forget(
                name,
                &c.late_tokens,
                SystemTime::now() - 2 * spec.cleanup_age,
            );
            delivery.late = c.late;
            delivery.swept = c.swept;
            if let (Some(latency), Some(stamps)) = (delivery.latency, c.found) {
                delivery.server = Some(stamps.server_time(accepted_wall, latency));
            }
        }
        Err(e) => {
            failure.get_or_insert(e);
        }
    }
    mailbox.hand_over(rec);
    rec.set_delivery(delivery);
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Runs one leg (a whole IMAP or SMTP exchange) as the single phase `outer` of the round trip,
/// within `limit`; a failure keeps the leg's own phase for classification.
async fn leg<T>(
    rec: &mut PhaseRecorder,
    outer: Phase,
    limit: Duration,
    run: impl AsyncFnOnce(&mut PhaseRecorder) -> Result<T, PhaseError>,
) -> Result<T, PhaseError> {
    let mut inner = PhaseRecorder::new();
    let deadline = tokio::time::Instant::now() + limit;
    // Connecting names the addresses still silent when the leg's own deadline comes.
    inner.deadline = Some(deadline);
    let result = rec
        .phase(outer, async {
            let result = tokio::time::timeout_at(deadline, run(&mut inner)).await;
            match result {
                Ok(r) => r.map_err(|e| ProbeError::Leg {
                    phase: e.phase,
                    error: Box::new(e.error),
                }),
                Err(_) => Err(ProbeError::Leg {
                    phase: inner.interrupted(),
                    error: Box::new(ProbeError::Timeout),
                }),
            }
        })
        .await;
    // A token a leg obtained stays a secret of the whole round trip, and a server's
    // Retry-After goes to the scheduler.
    rec.secrets.append(&mut inner.secrets);
    if let Some(wait) = inner.retry_after {
        rec.set_retry_after(wait);
    }
    result
}

/// What the cleanup found and removed.
struct Cleaned {
    /// The server's stamps of the message seen in time.
    found: Option<Stamps>,
    late: Vec<Duration>,
    late_tokens: Vec<String>,
    swept: u32,
}

/// The receiving session: plain, or inside IDLE.
enum State {
    Ready(Session<Conn>),
    Idling(Handle<Conn>),
    /// Transient, while switching; also what is left after an error mid-switch.
    Gone,
}

struct Mailbox {
    state: State,
    uidplus: bool,
    /// The UID of our message, once seen.
    found: Option<u32>,
}

impl Mailbox {
    /// Logs in, selects, and starts IDLE when offered.
    async fn open(
        spec: &imap::spec::ImapSpec,
        ctx: &ProbeContext,
        t: &mut PhaseRecorder,
    ) -> Result<Mailbox, PhaseError> {
        let mut session = imap::open_mailbox(spec, ctx, t, LIMITS).await?;
        let caps = t.phase(Phase::Select, session.capabilities()).await?;
        let uidplus = caps.has_str("UIDPLUS");
        let mut mailbox = Mailbox {
            state: State::Ready(session),
            uidplus,
            found: None,
        };
        if caps.has_str("IDLE") {
            t.phase(Phase::Select, mailbox.start_idle()).await?;
        }
        Ok(mailbox)
    }

    async fn start_idle(&mut self) -> Result<(), ProbeError> {
        let State::Ready(session) = std::mem::replace(&mut self.state, State::Gone) else {
            return Err(ProbeError::Internal("IDLE requested twice".into()));
        };
        let mut handle = session.idle();
        handle.init().await?;
        self.state = State::Idling(handle);
        Ok(())
    }

    /// The plain session, leaving IDLE if needed.
    async fn session(&mut self) -> Result<&mut Session<Conn>, ProbeError> {
        if let State::Idling(_) = self.state
            && let State::Idling(handle) = std::mem::replace(&mut self.state, State::Gone)
        {
            self.state = State::Ready(handle.done().await?);
        }
        match &mut self.state {
            State::Ready(s) => Ok(s),
            _ => Err(ProbeError::Closed),
        }
    }

    async fn search(&mut self, token: &str) -> Result<Vec<u32>, ProbeError> {
        let s = self.session().await?;
        let uids = s
            .uid_search(format!("HEADER {TOKEN_HEADER} \"{token}\""))
            .await?;
        let mut uids: Vec<u32> = uids.into_iter().collect();
        uids.sort_unstable();
        Ok(uids)
    }

    /// Waits until a message with `token` is in the mailbox, or `deadline` passes (`None`).
    ///
    /// In IDLE it looks on an EXISTS, and every `poll` without one: leaves IDLE (DONE), searches,
    /// and enters IDLE again. Courier, and Cyrus without idled, send nothing during IDLE when
    /// mail arrives, so against them `poll` is what bounds the time to notice a delivery.
    async fn wait_for(
        &mut self,
        token: &str,
        deadline: Instant,
        poll: Duration,
    ) -> Result<Option<Instant>, ProbeError> {
        let mut next_look = Instant::now() + poll;
        loop {
            let now = Instant::now();
            if let State::Idling(handle) = &mut self.state {
                // Counted from the last look, so untagged chatter (keepalives, flag updates)
                // cannot postpone it.
                let budget = deadline.min(next_look).saturating_duration_since(now);
                let (wait, _stop) = handle.wait_with_timeout(budget);
                // async-imap restarts its timeout on each untagged OK (a keepalive such as
                // `* OK Still here`): bound the whole wait here.
                let event = match tokio::time::timeout(budget, wait).await {
                    Ok(event) => event?,
                    Err(_) => IdleResponse::Timeout,
                };
                let notified = match event {
                    IdleResponse::NewData(data) => {
                        if !matches!(
                            data.parsed(),
                            Response::MailboxData(MailboxDatum::Exists(_))
                        ) && Instant::now() < next_look.min(deadline)
                        {
                            continue;
                        }
                        Some(Instant::now())
                    }
                    IdleResponse::Timeout | IdleResponse::ManualInterrupt => None,
                };
                if let Some(&uid) = self.search(token).await?.first() {
                    // Notified: the server had it then. Found by looking: seen when the
                    // search answered.
                    self.found = Some(uid);
                    return Ok(Some(notified.unwrap_or_else(Instant::now)));
                }
                if Instant::now() >= deadline {
                    return Ok(None);
                }
                next_look = Instant::now() + poll;
                self.start_idle().await?;
            } else {
                if let Some(&uid) = self.search(token).await?.first() {
                    self.found = Some(uid);
                    return Ok(Some(Instant::now()));
                }
                let now = Instant::now();
                if now >= deadline {
                    return Ok(None);
                }
                tokio::time::sleep(poll.min(deadline - now)).await;
            }
        }
    }

    /// Reads the server's stamps of our message, deletes it, late ones and old ones; logs out.
    ///
    /// A late message's delay is its arrival as the server stamped it (whole seconds) minus its
    /// acceptance, but never less than `delivery_timeout`: it was searched for and absent then.
    async fn cleanup(
        &mut self,
        pending: &[(String, SystemTime)],
        delivery_timeout: Duration,
        cleanup_age: Duration,
    ) -> Result<Cleaned, ProbeError> {
        let found = self.found;
        let mut delete: BTreeSet<u32> = found.into_iter().collect();
        let mut cleaned = Cleaned {
            found: None,
            late: Vec::new(),
            late_tokens: Vec::new(),
            swept: 0,
        };
        let mut late = Vec::new();
        for (token, accepted) in pending {
            let uids = self.search(token).await?;
            let Some(&first) = uids.first() else { continue };
            late.push((token, *accepted, first));
            delete.extend(uids);
        }
        let wanted: Vec<u32> = found.into_iter().chain(late.iter().map(|l| l.2)).collect();
        let stamps = if wanted.is_empty() {
            HashMap::new()
        } else {
            self.stamps(&wanted).await?
        };
        cleaned.found = found.map(|uid| stamps.get(&uid).copied().unwrap_or_default());
        let now = SystemTime::now();
        for (token, accepted, first) in late {
            let delay = late_delay(stamps.get(&first), accepted, now, delivery_timeout);
            cleaned.late.push(delay);
            cleaned.late_tokens.push(token.clone());
        }

        let all = self.search("").await?;
        let candidates: Vec<u32> = all
            .into_iter()
            .filter(|u| !delete.contains(u))
            .take(MAX_SWEEP)
            .collect();
        if !candidates.is_empty() {
            let now = SystemTime::now();
            for (uid, arrived) in self.arrival_times(&candidates).await? {
                if now.duration_since(arrived).unwrap_or(Duration::ZERO) > cleanup_age {
                    delete.insert(uid);
                    cleaned.swept += 1;
                }
            }
        }

        if !delete.is_empty() {
            let set = uid_set(&delete);
            let uidplus = self.uidplus;
            let s = self.session().await?;
            s.uid_store(&set, "+FLAGS.SILENT (\\Deleted)")
                .await?
                .try_collect::<Vec<_>>()
                .await?;
            if uidplus {
                s.uid_expunge(&set).await?.try_collect::<Vec<_>>().await?;
            } else {
                s.expunge().await?.try_collect::<Vec<_>>().await?;
            }
        }
        self.close().await?;
        Ok(cleaned)
    }

    /// INTERNALDATE (when the server received it) of each of `uids`.
    async fn arrival_times(
        &mut self,
        uids: &[u32],
    ) -> Result<HashMap<u32, SystemTime>, ProbeError> {
        let set = uid_set(uids.iter());
        let s = self.session().await?;
        let fetches: Vec<_> = s
            .uid_fetch(&set, "(UID INTERNALDATE)")
            .await?
            .try_collect()
            .await?;
        Ok(fetches
            .iter()
            .filter_map(|f| {
                // A message expunged by another session meanwhile can come back dated 1970:
                // an unknown date, never a reason to delete.
                Some((f.uid?, unix(f.internal_date()?.timestamp())?))
            })
            .collect())
    }

    /// The server's stamps of each of `uids`: INTERNALDATE and the topmost `Received:` date
    /// (from at most [`RECEIVED_MAX`] bytes of those fields; PEEK, so nothing is marked seen).
    async fn stamps(&mut self, uids: &[u32]) -> Result<HashMap<u32, Stamps>, ProbeError> {
        let set = uid_set(uids.iter());
        let s = self.session().await?;
        let items =
            format!("(UID INTERNALDATE BODY.PEEK[HEADER.FIELDS (RECEIVED)]<0.{RECEIVED_MAX}>)");
        let fetches: Vec<_> = s.uid_fetch(&set, items).await?.try_collect().await?;
        Ok(fetches
            .iter()
            .filter_map(|f| {
                let stamps = Stamps::Imap {
                    internal: f.internal_date().and_then(|d| unix(d.timestamp())),
                    received: f.header().and_then(topmost_received),
                };
                Some((f.uid?, stamps))
            })
            .collect())
    }

    /// Logs out (leaving IDLE first).
    async fn close(&mut self) -> Result<(), ProbeError> {
        let s = self.session().await?;
        s.logout().await?;
        self.state = State::Gone;
        Ok(())
    }
}

/// When the server says a message arrived, by each stamp it gave (whole seconds).
///
/// Through Graph there is one: `receivedDateTime`, Exchange's own record of the arrival.
///
/// INTERNALDATE comes first: it is the mailbox store's own record of when the message landed
/// (RFC 3501 2.3.3: for delivered mail, the time of final delivery), the end of the path a round
/// trip measures; it is fetched without reading the message. The topmost `Received:` field is
/// the last hop that wrote one, which may be an MTA before queues and filters (Postfix before a
/// content filter, Courier's esmtpd before maildrop) and is there only if that hop adds one: the
/// fallback for a store whose INTERNALDATE is missing or is not the arrival (a copy keeping its
/// original date).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stamps {
    /// An IMAP store's: INTERNALDATE, and the topmost `Received:` date.
    Imap {
        internal: Option<SystemTime>,
        received: Option<SystemTime>,
    },
    /// Graph's `receivedDateTime`.
    Graph { received: Option<SystemTime> },
}

impl Default for Stamps {
    fn default() -> Self {
        Stamps::Imap {
            internal: None,
            received: None,
        }
    }
}

impl Stamps {
    /// The first stamp (INTERNALDATE, then Received) whose second lies within `lo..=hi` give or
    /// take [`STAMP_SLACK`]; otherwise why none does.
    fn within(&self, lo: SystemTime, hi: SystemTime) -> Result<(SystemTime, StampSource), String> {
        let mut why = Vec::new();
        let stamps = match *self {
            Stamps::Imap { internal, received } => vec![
                (internal, StampSource::InternalDate),
                (received, StampSource::Received),
            ],
            Stamps::Graph { received } => vec![(received, StampSource::ReceivedDateTime)],
        };
        for (stamp, source) in stamps {
            let name = source.as_str();
            let Some(at) = stamp else {
                why.push(match source {
                    StampSource::InternalDate => "no INTERNALDATE".to_string(),
                    StampSource::Received => "no Received date".to_string(),
                    StampSource::ReceivedDateTime => "no receivedDateTime".to_string(),
                });
                continue;
            };
            if let Ok(early) = lo.duration_since(at + STAMP_RESOLUTION)
                && early > STAMP_SLACK
            {
                why.push(format!("{name} {} s before acceptance", early.as_secs()));
            } else if let Ok(late) = at.duration_since(hi)
                && late > STAMP_SLACK
            {
                why.push(format!(
                    "{name} {} s after the message was seen",
                    late.as_secs()
                ));
            } else {
                return Ok((at, source));
            }
        }
        Err(why.join(", "))
    }

    /// The server's delivery time of a message accepted at `accepted` and seen `seen` later:
    /// to the end of the stamped second (the latest the stamp allows), within `0..=seen`.
    fn server_time(&self, accepted: SystemTime, seen: Duration) -> ServerTime {
        match self.within(accepted, accepted + seen) {
            Ok((at, source)) => {
                let end = at + STAMP_RESOLUTION;
                let took = end.duration_since(accepted).unwrap_or(Duration::ZERO);
                ServerTime::Stamped {
                    took: took.min(seen),
                    source,
                }
            }
            Err(why) => ServerTime::Unknown(why),
        }
    }
}

/// A late message's delay: its arrival as the server stamped it (whole seconds; `now` without a
/// believable stamp) minus its acceptance, but never less than `delivery_timeout`: it was
/// looked for and absent then.
fn late_delay(
    stamps: Option<&Stamps>,
    accepted: SystemTime,
    now: SystemTime,
    delivery_timeout: Duration,
) -> Duration {
    let arrived = stamps
        .and_then(|s| s.within(accepted, now).ok())
        .map_or(now, |(at, _)| at);
    let delay = arrived.duration_since(accepted).unwrap_or(Duration::ZERO);
    delay.max(delivery_timeout)
}

/// The date of the first `Received:` field in `header` (the fields as FETCHed, possibly cut
/// at [`RECEIVED_MAX`] bytes): the text after its last `;` (RFC 5322 3.6.7).
fn topmost_received(header: &[u8]) -> Option<SystemTime> {
    let text = String::from_utf8_lossy(header);
    let mut lines = text.split('\n').map(|l| l.trim_end_matches('\r'));
    let first = lines.find(|l| {
        l.get(..9)
            .is_some_and(|n| n.eq_ignore_ascii_case("received:"))
    })?;
    let mut field = first[9..].to_string();
    let mut ended = header.len() < RECEIVED_MAX;
    for line in lines {
        if line.starts_with([' ', '\t']) {
            field.push_str(line);
        } else {
            ended = true;
            break;
        }
    }
    // A field cut by the byte limit may have lost the end of its date.
    if !ended {
        return None;
    }
    let (_, date) = field.rsplit_once(';')?;
    let date = chrono::DateTime::parse_from_rfc2822(date.trim()).ok()?;
    unix(date.timestamp())
}

/// A Unix time in seconds as a `SystemTime`; `None` for 1970 or before (no real date).
fn unix(secs: i64) -> Option<SystemTime> {
    let secs = u64::try_from(secs).ok().filter(|&s| s > 0)?;
    Some(UNIX_EPOCH + Duration::from_secs(secs))
}

fn uid_set<'a>(uids: impl IntoIterator<Item = &'a u32>) -> String {
    uids.into_iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests;
