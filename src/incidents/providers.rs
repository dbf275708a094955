//! The provider's side of an outage inside the incident service: each poll of a provider feed
//! merged into what is stored (status changes seen between polls become updates, an issue no
//! longer listed is resolved), and each issue put beside the incidents it matches (by the
//! targets' providers and time, [`crate::provider::matching`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::SystemTime;

use serde::Serialize;

use super::engine::Incident;
use super::store::{Store, StoreError};
use crate::probe::Target;
use crate::provider::matching::{SLACK, matches};
use crate::provider::{Issue, Kind, Update};

/// How far back the status page's links between incidents and provider issues reach (its
/// resolved incidents go back as far).
pub const VIEW_WINDOW: std::time::Duration = std::time::Duration::from_secs(7 * 86_400);

/// One poll's result, as the incident service takes it.
#[derive(Debug)]
pub struct Poll {
    /// The `[[provider]]`.
    pub provider: String,
    /// Its kind.
    pub kind: Kind,
    /// When the poll ended.
    pub at: SystemTime,
    /// What the feed lists (open or recently resolved), or why it could not be read.
    pub result: Result<Vec<Issue>, String>,
}

/// How a provider's feed stands, for the status page.
#[derive(Clone, Debug, Serialize)]
pub struct FeedState {
    /// The `[[provider]]`.
    pub provider: String,
    /// Its kind.
    pub kind: Kind,
    /// Whether the last poll read it.
    pub up: bool,
    /// When it was last read.
    #[serde(serialize_with = "ser_time")]
    pub last_success: Option<SystemTime>,
    /// Why the last poll failed, when it did.
    pub error: Option<String>,
}

fn ser_time<S: serde::Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_some(&super::render::timestamp(*t)),
        None => s.serialize_none(),
    }
}

/// What the status page shows of the providers.
#[derive(Clone, Debug, Default)]
pub struct ProviderView {
    /// Each polled feed.
    pub feeds: Vec<FeedState>,
    /// Issues open, or resolved within the matching slack.
    pub issues: Vec<Issue>,
    /// `(incident, provider, issue id)`: which issue is beside which open incident.
    pub links: Vec<(i64, String, String)>,
}

/// The provider issues the service keeps in memory, and each target's provider.
#[derive(Default)]
pub(super) struct Book {
    /// Open and recently resolved issues by `(provider, id)`.
    issues: BTreeMap<(String, String), Issue>,
    feeds: BTreeMap<String, FeedState>,
    /// Target name → its provider value.
    on: HashMap<String, String>,
}

impl Book {
    /// The book as the store left it.
    pub(super) fn load(store: &Store, now: SystemTime) -> Result<Book, StoreError> {
        let issues = store
            .provider_issues(now - SLACK)?
            .into_iter()
            .map(|i| ((i.provider.clone(), i.id.clone()), i))
            .collect();
        Ok(Book {
            issues,
            ..Book::default()
        })
    }

    /// The configured targets changed.
    pub(super) fn set_targets(&mut self, targets: &[Arc<Target>]) {
        self.on = targets
            .iter()
            .filter_map(|t| Some((t.name.clone(), t.provider.clone()?)))
            .collect();
    }

    /// Whether anything could match an incident now.
    pub(super) fn has_issues(&self) -> bool {
        !self.issues.is_empty()
    }

    /// Merges one poll and saves what changed.
    pub(super) fn poll(&mut self, store: &mut Store, poll: Poll) -> Result<(), StoreError> {
        let listed = match poll.result {
            Err(error) => {
                let last = self.feeds.get(&poll.provider).and_then(|f| f.last_success);
                self.feeds.insert(
                    poll.provider.clone(),
                    FeedState {
                        provider: poll.provider,
                        kind: poll.kind,
                        up: false,
                        last_success: last,
                        error: Some(error),
                    },
                );
                return Ok(());
            }
            Ok(listed) => listed,
        };
        self.feeds.insert(
            poll.provider.clone(),
            FeedState {
                provider: poll.provider.clone(),
                kind: poll.kind,
                up: true,
                last_success: Some(poll.at),
                error: None,
            },
        );
        let mut changed: Vec<(String, String)> = Vec::new();
        let mut seen = Vec::new();
        for mut issue in listed {
            let key = (issue.provider.clone(), issue.id.clone());
            seen.push(key.clone());
            match self.issues.get(&key) {
                Some(old) if *old == merged(old, &issue, poll.at) => continue,
                Some(old) => issue = merged(old, &issue, poll.at),
                None => {
                    // A first post without a status of its own (Graph's) had the status the
                    // issue has when first seen: kept, or the timeline would tell it with
                    // whatever status the issue reached later.
                    let status = issue.status.clone();
                    if let Some(first) = issue.updates.first_mut()
                        && first.status.is_empty()
                    {
                        first.status = status;
                    }
                }
            }
            self.issues.insert(key.clone(), issue);
            changed.push(key);
        }
        // Open before, no longer listed: the provider closed it (Statuspage's unresolved list)
        // or it aged out of the feed.
        for (key, issue) in self.issues.iter_mut() {
            if key.0 == poll.provider && issue.is_open() && !seen.contains(key) {
                issue.resolved_at = Some(poll.at);
                changed.push(key.clone());
            }
        }
        let save: Vec<&Issue> = changed.iter().filter_map(|k| self.issues.get(k)).collect();
        store.save_provider_issues(&save)?;
        let cutoff = poll.at - SLACK;
        self.issues
            .retain(|_, i| i.resolved_at.is_none_or(|r| r >= cutoff));
        Ok(())
    }

    /// Puts each issue beside the incidents (open, or active within the slack) it matches;
    /// returns the new links with the incident each is beside, and whether it is the first
    /// issue of its provider beside that incident (the delay metric counts each incident once
    /// per provider).
    pub(super) fn link(
        &self,
        store: &mut Store,
        incidents: &[Incident],
        now: SystemTime,
    ) -> Result<Vec<(Incident, Issue, bool)>, StoreError> {
        let mut new = Vec::new();
        for inc in incidents {
            let providers = inc
                .ever
                .iter()
                .filter_map(|t| self.on.get(t))
                .map(String::as_str);
            let candidates: Vec<&Issue> = self
                .issues
                .values()
                .filter(|i| matches(i, inc.opened_at, inc.closed_at, providers.clone(), now))
                .collect();
            if candidates.is_empty() {
                continue;
            }
            let mut had: Vec<String> = store
                .linked_issues(inc.id)?
                .into_iter()
                .map(|i| i.provider)
                .collect();
            for issue in candidates {
                if store.link(inc.id, &issue.provider, &issue.id, now)? {
                    let first = !had.contains(&issue.provider);
                    had.push(issue.provider.clone());
                    new.push((inc.clone(), issue.clone(), first));
                }
            }
        }
        Ok(new)
    }

    /// What the status page shows.
    pub(super) fn view(&self, links: Vec<(i64, String, String)>) -> ProviderView {
        ProviderView {
            feeds: self.feeds.values().cloned().collect(),
            issues: self.issues.values().cloned().collect(),
            links,
        }
    }
}

/// `new` as read now, keeping what `old` recorded that the feed does not repeat: a status
/// change between polls becomes an update of its own (Graph's posts carry no status), and
/// earlier status updates stay.
fn merged(old: &Issue, new: &Issue, at: SystemTime) -> Issue {
    let mut out = new.clone();
    let mut updates = old.updates.clone();
    // A post is the same post by its time and text (its status may have been filled in).
    for u in &new.updates {
        if !updates.iter().any(|o| o.at == u.at && o.text == u.text) {
            updates.push(u.clone());
        }
    }
    if old.status != new.status && !new.updates.iter().any(|u| u.status == new.status) {
        // The provider's own time of the change when it says it modified the issue since the
        // last poll (Graph's lastModifiedDateTime); the poll's time otherwise.
        let changed = if new.updated_at > old.updated_at && new.updated_at <= at {
            new.updated_at
        } else {
            at
        };
        updates.push(Update {
            at: changed,
            status: new.status.clone(),
            text: String::new(),
        });
    }
    updates.sort_by_key(|u| u.at);
    out.updates = updates;
    out.first_post_at = old.first_post_at.min(new.first_post_at);
    out
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn issue(status: &str, updated: u64) -> Issue {
        let t = |s| UNIX_EPOCH + Duration::from_secs(s);
        Issue {
            provider: "microsoft".into(),
            kind: Kind::Microsoft,
            id: "EX1".into(),
            title: "Users can't access mailbox".into(),
            service: "Exchange Online".into(),
            classification: "incident".into(),
            status: status.into(),
            started_at: t(0),
            first_post_at: t(0),
            updated_at: t(updated),
            resolved_at: None,
            link: None,
            updates: Vec::new(),
        }
    }

    #[test]
    fn a_status_change_is_dated_by_the_provider_when_it_says_when() {
        let poll = UNIX_EPOCH + Duration::from_secs(100);
        let m = merged(
            &issue("investigating", 10),
            &issue("serviceRestored", 42),
            poll,
        );
        let change = m.updates.iter().find(|u| u.status == "serviceRestored");
        assert_eq!(
            change.map(|u| u.at),
            Some(UNIX_EPOCH + Duration::from_secs(42))
        );
        // No modification time since the last poll (or one in the future): the poll's time.
        let m = merged(
            &issue("investigating", 10),
            &issue("serviceRestored", 10),
            poll,
        );
        assert_eq!(m.updates[0].at, poll);
        let m = merged(
            &issue("investigating", 10),
            &issue("serviceRestored", 500),
            poll,
        );
        assert_eq!(m.updates[0].at, poll);
    }
}
