//! The receiving side of a round trip behind one seam: an IMAP mailbox or a Graph Inbox, each
//! opened, waited in, cleaned up and closed the same way, so [`super::probe`] reads the same
//! for both.

use std::time::{Duration, Instant, SystemTime};

use super::spec::{Receiver, RoundtripSpec};
use super::{Cleaned, MAX_SWEEP, Mailbox, Stamps, late_delay};
use crate::probe::graph::inbox::{Arrived, GraphInbox};
use crate::probe::{PhaseError, PhaseRecorder, ProbeContext, ProbeError};

/// The mailbox a round trip waits in.
pub(super) enum Inbox<'a> {
    /// Over IMAP (IDLE when offered). Both boxed: their sessions are large.
    Imap(Box<Mailbox>),
    /// Through Microsoft Graph, polled.
    Graph(Box<GraphLeg<'a>>),
}

/// A Graph Inbox and what was found in it.
pub(super) struct GraphLeg<'a> {
    inbox: GraphInbox<'a>,
    /// Our message (and any copy of it), once seen.
    found: Vec<Arrived>,
}

impl<'a> Inbox<'a> {
    /// Opens the receiving mailbox (phase `receive`; the leg's own phases in `t`).
    pub(super) async fn open(
        spec: &'a RoundtripSpec,
        ctx: &'a ProbeContext,
        t: &mut PhaseRecorder,
    ) -> Result<Inbox<'a>, PhaseError> {
        match &spec.imap {
            Receiver::Imap(imap) => Ok(Inbox::Imap(Box::new(Mailbox::open(imap, ctx, t).await?))),
            Receiver::Graph(graph) => {
                let inbox = GraphInbox::open(graph, ctx, t, spec.imap_timeout).await?;
                Ok(Inbox::Graph(Box::new(GraphLeg {
                    inbox,
                    found: Vec::new(),
                })))
            }
        }
    }

    /// Waits until the message with `token` is in the mailbox (when it was seen), or
    /// `deadline` passes (`None`).
    pub(super) async fn wait_for(
        &mut self,
        token: &str,
        deadline: Instant,
        poll: Duration,
    ) -> Result<Option<Instant>, ProbeError> {
        match self {
            Inbox::Imap(m) => m.wait_for(token, deadline, poll).await,
            Inbox::Graph(g) => g.wait_for(token, deadline, poll).await,
        }
    }

    /// Reads our message's stamps, deletes it, late ones and old ones; closes.
    pub(super) async fn cleanup(
        &mut self,
        pending: &[(String, SystemTime)],
        delivery_timeout: Duration,
        cleanup_age: Duration,
    ) -> Result<Cleaned, ProbeError> {
        match self {
            Inbox::Imap(m) => m.cleanup(pending, delivery_timeout, cleanup_age).await,
            Inbox::Graph(g) => g.cleanup(pending, delivery_timeout, cleanup_age).await,
        }
    }

    /// Closes the mailbox (IMAP LOGOUT; Graph has no session to end).
    pub(super) async fn close(&mut self) -> Result<(), ProbeError> {
        match self {
            Inbox::Imap(m) => m.close().await,
            Inbox::Graph(_) => Ok(()),
        }
    }

    /// Hands what the calls after opening learnt to the round trip's recorder: a token to
    /// redact, a `Retry-After` for the scheduler.
    pub(super) fn hand_over(&mut self, rec: &mut PhaseRecorder) {
        match self {
            Inbox::Imap(_) => {}
            Inbox::Graph(g) => {
                rec.secrets.append(&mut g.inbox.calls.secrets);
                if let Some(wait) = g.inbox.calls.retry_after.take() {
                    rec.set_retry_after(wait);
                }
            }
        }
    }
}

impl GraphLeg<'_> {
    /// Looks every `poll` (Graph does not notify a poller); seen when a look answers with it.
    async fn wait_for(
        &mut self,
        token: &str,
        deadline: Instant,
        poll: Duration,
    ) -> Result<Option<Instant>, ProbeError> {
        loop {
            let found = self.inbox.find(token).await?;
            if !found.is_empty() {
                self.found = found;
                return Ok(Some(Instant::now()));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(poll.min(deadline - now)).await;
        }
    }

    /// Like the IMAP cleanup: stamps of ours, late mail counted, old probe mail swept, each
    /// deleted by id.
    async fn cleanup(
        &mut self,
        pending: &[(String, SystemTime)],
        delivery_timeout: Duration,
        cleanup_age: Duration,
    ) -> Result<Cleaned, ProbeError> {
        let mut delete: Vec<String> = self.found.iter().map(|a| a.id.clone()).collect();
        let mut cleaned = Cleaned {
            found: self.found.first().map(|a| Stamps::Graph {
                received: a.received,
            }),
            late: Vec::new(),
            late_tokens: Vec::new(),
            swept: 0,
        };
        let now = SystemTime::now();
        for (token, accepted) in pending {
            let copies = self.inbox.find(token).await?;
            let Some(first) = copies.first() else {
                continue;
            };
            let stamps = Stamps::Graph {
                received: first.received,
            };
            cleaned
                .late
                .push(late_delay(Some(&stamps), *accepted, now, delivery_timeout));
            cleaned.late_tokens.push(token.clone());
            delete.extend(copies.into_iter().map(|a| a.id));
        }
        if let Some(before) = now.checked_sub(cleanup_age) {
            for old in self.inbox.older_than(before).await? {
                if cleaned.swept as usize >= MAX_SWEEP {
                    break;
                }
                if !delete.contains(&old.id) {
                    delete.push(old.id);
                    cleaned.swept += 1;
                }
            }
        }
        for id in &delete {
            self.inbox.delete(id).await?;
        }
        Ok(cleaned)
    }
}
