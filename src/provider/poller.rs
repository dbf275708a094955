//! The task that polls every `[[provider]]` on its own interval, one provider after another
//! never overlapping with itself, and hands each result to a [`FeedSink`] (the daemon passes
//! it on to the metrics, the log and the incident service). A poll is bounded in time (the
//! provider's `timeout`, token included) and in size (`max_body` per answer).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio_util::sync::CancellationToken;

use super::feed::{self, FeedError};
use super::{Issue, Kind, ProviderSpec, google, microsoft, statuspage};
use crate::oauth2::TokenCache;

/// Who hears each poll's result.
pub trait FeedSink: Send + Sync {
    /// One poll of `spec` ended: the issues it lists now (open, or recently resolved), or why
    /// the feed could not be read; `took` is how long it took.
    fn polled(&self, spec: &ProviderSpec, result: Result<Vec<Issue>, FeedError>, took: Duration);
}

/// Starts one task per provider; they stop when `stop` is cancelled.
pub fn spawn(
    specs: &[Arc<ProviderSpec>],
    tokens: Arc<TokenCache>,
    sink: Arc<dyn FeedSink>,
    stop: CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    specs
        .iter()
        .map(|spec| {
            let (spec, tokens, sink, stop) =
                (spec.clone(), tokens.clone(), sink.clone(), stop.clone());
            tokio::spawn(async move {
                let client = feed::client(&spec.tls, spec.timeout);
                let mut next = tokio::time::Instant::now();
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep_until(next) => {}
                    }
                    next += spec.interval;
                    let started = Instant::now();
                    let result = match &client {
                        Ok(c) => {
                            tokio::select! {
                                _ = stop.cancelled() => return,
                                r = tokio::time::timeout(spec.timeout, poll(&spec, c, &tokens)) => {
                                    r.unwrap_or(Err(FeedError::Timeout(spec.timeout)))
                                }
                            }
                        }
                        Err(e) => Err(FeedError::Transport(e.to_string())),
                    };
                    sink.polled(&spec, result, started.elapsed());
                    // A poll that overran its interval is not followed by a burst.
                    let now = tokio::time::Instant::now();
                    if next < now {
                        next = now;
                    }
                }
            })
        })
        .collect()
}

/// One poll of `spec`'s feed.
pub async fn poll(
    spec: &ProviderSpec,
    client: &reqwest::Client,
    tokens: &TokenCache,
) -> Result<Vec<Issue>, FeedError> {
    let url = |path: &str| {
        spec.url
            .join(path)
            .map_err(|e| FeedError::Transport(format!("bad feed URL: {e}")))
    };
    let get = |u, bearer| feed::get_json(client, u, bearer, spec.max_body, spec.timeout);
    let now = SystemTime::now();
    match spec.kind {
        Kind::Statuspage => {
            let incidents = get(url(statuspage::INCIDENTS)?, None).await?;
            let components = get(url(statuspage::COMPONENTS)?, None).await?;
            statuspage::parse(spec, &incidents, &components, now).map_err(FeedError::Garbage)
        }
        Kind::Google => {
            let feed = get(url(google::INCIDENTS)?, None).await?;
            google::parse(spec, &feed, now).map_err(FeedError::Garbage)
        }
        Kind::Microsoft => {
            let Some(oauth2) = &spec.oauth2 else {
                return Err(FeedError::Token("no [provider.oauth2] table".into()));
            };
            let (token, _facts) = tokens.token(oauth2).await;
            let token = token.map_err(|e| FeedError::Token(e.to_string()))?;
            let mut out = Vec::new();
            let mut next = Some(url(microsoft::ISSUES)?);
            let mut pages = 0;
            while let Some(u) = next.take() {
                let page = get(u, Some(&token)).await?;
                out.extend(microsoft::parse(spec, &page, now).map_err(FeedError::Garbage)?);
                pages += 1;
                if pages < microsoft::MAX_PAGES {
                    next = microsoft::next_link(spec, &page);
                }
            }
            Ok(out)
        }
    }
}
