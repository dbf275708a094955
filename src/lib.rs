//! mailprobe: a synthetic mailbox availability prober.
//!
//! It logs in to real mailboxes from one or more vantage points, measures every phase of each
//! attempt, classifies every failure and exports the results to Prometheus.
//!
//! # Layout
//! - [`config`]: the `probes.toml` model, defaults and validation (errors name file, line, key).
//! - [`probe`]: the probe interface ([`probe::Outcome`], [`probe::Phase`]) and one file per
//!   protocol, plus the shared network, TLS and bounded-read helpers.
//! - [`probe::classify`]: the one place where probe errors become failure classes, next to the
//!   errors it reads.
//! - [`tls`]: client TLS, the roots cache and certificate facts (probes and OAuth2 alike).
//! - [`hash`]: stable hashes (sharding, fingerprints) and unique tokens.
//! - [`sync`]: the one policy for a lock a panic poisoned (take it over and go on).
//! - [`oauth2`]: OAuth2 tokens (client credentials, refresh tokens), cached per credential set.
//! - [`scheduler`]: when each target runs; no overlap, global concurrency, reload diffs. The
//!   probe call ([`scheduler::Prober`]) and what takes outcomes and events
//!   ([`scheduler::Observer`]) are injected.
//! - [`metrics`]: the one place where outcomes become long-lived Prometheus series.
//! - [`incidents`]: target health with hysteresis, incidents by scope, their timeline, SQLite.
//! - [`liveness`]: whether targets are really being probed (`/-/ready`, the systemd watchdog).
//! - [`logging`]: log lines that fit journald and can neither stop probing nor show a secret.
//! - [`server`]: the HTTP endpoints (`/metrics`, `/-/healthy`, `/-/ready`, `/-/reload`).
//! - [`webconfig`]: TLS and basic auth for them (exporter-toolkit web config).
//! - [`status`]: the status page and its JSON API.
//! - [`daemon`]: wires the above together; [`daemon::run`] takes the bound listener and the
//!   shutdown signal so that tests bind port 0 and never sleep for readiness.
//! - [`report`]: human and JSON renderings of outcomes for `mailprobe probe`.
//! - [`table`]: the aligned text tables `check`, `probe` and `incidents` print.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod config;
pub mod daemon;
pub mod hash;
pub mod incidents;
pub mod liveness;
pub mod logging;
pub mod metrics;
pub mod oauth2;
pub mod probe;
pub mod report;
pub mod scheduler;
pub mod server;
pub mod status;
pub mod sync;
pub mod table;
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
