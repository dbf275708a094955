//! mailprobe: a synthetic mailbox availability prober.
//!
//! It logs in to real mailboxes from one or more vantage points, measures every phase of each
//! attempt, classifies every failure and exports the results to Prometheus.
//!
//! # Layout
//! Leaves, then each layer using only those before it (no two modules import each other):
//! - [`hash`]: stable hashes (sharding, fingerprints) and unique tokens.
//! - [`sync`]: the one policy for a lock a panic poisoned (take it over and go on).
//! - [`throttle`]: one log line per period for a condition that can recur thousands of times.
//! - [`table`]: the aligned text tables `check`, `probe` and `incidents` print.
//! - [`tls`]: client TLS, the roots cache and certificate facts (probes and OAuth2 alike).
//! - [`config`]: what every protocol's spec shares: errors that name file, line and key,
//!   secrets and bounded reads, timing and labels, endpoints and TLS trust, credentials, OAuth2
//!   credential sets. It knows no protocol by name.
//! - [`oauth2`]: OAuth2 tokens (client credentials, refresh tokens), cached per credential set.
//! - [`probe`]: the probe interface ([`probe::Outcome`], [`probe::Phase`]); one folder per
//!   protocol holding the dialogue, its config keys (`spec.rs`) and the classes of its answers;
//!   [`probe::registry`], the one list of protocols; the shared network, bounded-read and SASL
//!   helpers; [`probe::classify`], where every error becomes a failure class.
//! - [`provider`]: the provider's own status feeds (Microsoft 365 service health, Google
//!   Workspace, Statuspage), polled on their own; a feed down is not a mail outage.
//! - [`load`]: reads `probes.toml`, `[global]`, `[incidents]` and `[metrics]`, and hands each
//!   `[[target]]` to its protocol's spec through the registry.
//! - [`liveness`]: whether targets are really being probed (`/-/ready`, the systemd watchdog).
//! - [`incidents`]: target health with hysteresis, incidents by scope, their timeline, SQLite;
//!   what each tick concluded goes to an observer the daemon provides.
//! - [`logging`]: log lines that fit journald and can neither stop probing nor show a secret.
//! - [`metrics`]: the one place where outcomes become long-lived Prometheus series.
//! - [`scheduler`]: when each target runs; no overlap, global concurrency, reload diffs. The
//!   probe call ([`scheduler::Prober`]) and what takes outcomes and events
//!   ([`scheduler::Observer`]) are injected.
//! - [`webconfig`]: TLS and basic auth for the HTTP endpoints (exporter-toolkit web config).
//! - [`status`]: the status page and its JSON API.
//! - [`server`]: the HTTP endpoints (`/metrics`, `/-/healthy`, `/-/ready`, `/-/reload`).
//! - [`locations`]: a status instance that probes nothing: every location's results read from
//!   Prometheus, combined by vote (a blind vantage point left out) and fed to the incidents.
//! - [`report`]: human and JSON renderings of outcomes for `mailprobe probe`.
//! - [`daemon`]: wires the above together (scheduler events and incident state to the metrics);
//!   [`daemon::run`] takes the bound listener and the shutdown signal so that tests bind port 0
//!   and never sleep for readiness.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod config;
pub mod daemon;
pub mod feed;
pub mod hash;
pub mod incidents;
pub mod liveness;
pub mod load;
pub mod locations;
pub mod logging;
pub mod metrics;
pub mod oauth2;
pub mod probe;
pub mod provider;
pub mod report;
pub mod scheduler;
pub mod server;
pub mod status;
pub mod sync;
pub mod table;
pub mod throttle;
pub mod tls;
pub mod webconfig;

/// Installs the process-wide rustls crypto provider (ring); call once before any TLS is used.
///
/// Every TLS user in the process (our probes, hyper, reqwest) then shares one provider, so no
/// second crypto library is linked in or chosen at random.
pub fn install_crypto_provider() {
    // Err only means a provider was already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
