//! Real peers for mailprobe's tests, demo and benchmark, all on loopback (127.0.0.1, and ::1 where a
//! test needs IPv6).
//!
//! - [`pki`]: a test CA and server certificates (valid, for another name, expired).
//! - [`dovecot`]: a private Dovecot (IMAP, POP3, LMTP, auth) with a self-contained config.
//! - [`postfix`]: a private Postfix (MX, submission, submissions) delivering to that Dovecot.
//! - [`fault`]: small scripted servers that misbehave on purpose (silence, garbage, endless
//!   lines, refusals), optionally behind TLS.
//! - [`dns`]: a private dnsmasq answering only for the names a test gives it.
//! - [`blackhole`]: an address on loopback that silently drops SYNs (a full accept queue).
//! - [`faultclient`]: HTTP clients that misbehave on purpose (silence, slowloris, stalls after
//!   the TLS handshake).
//! - [`https`]: an HTTPS server playing webmail, Autodiscover, JMAP and HTTP faults.
//! - [`api`], [`graph`], [`gmail`]: Microsoft Graph mail and Gmail API endpoints (documented
//!   shapes, refusals, throttling) on the skeleton mail API peers share.
//! - [`graphstore`]: the Graph peer's mailboxes and the `$filter` it parses as strictly as Graph.
//! - [`smtpsink`]: a small SMTP receiver handing accepted mail to a peer (the Graph peer's
//!   mailboxes, reached through the real Postfix).
//! - [`oauth`]: an OAuth2 token server (client credentials, refresh tokens, introspection).
//! - [`providers`]: provider status feeds (Graph service health, Google's dashboard feed, a
//!   Statuspage) in their documented shapes, and their failures.
//! - [`prometheus`]: a private Prometheus and Alertmanager, to test the shipped alert rules end to
//!   end.
//! - [`proxy`]: a TCP proxy a test switches between passing, delaying and closing.
//! - [`util`]: free ports, temporary directories, checks that the needed programs exist.
#![forbid(unsafe_code)]

pub mod api;
pub mod blackhole;
pub mod demo;
pub mod dns;
pub mod dovecot;
pub mod fault;
pub mod faultclient;
pub mod gmail;
pub mod graph;
pub mod graphstore;
pub mod https;
pub mod oauth;
pub mod pki;
pub mod postfix;
pub mod prometheus;
pub mod providers;
pub mod proxy;
pub mod smtpsink;
pub mod util;

/// Re-exported so test crates name the same `TempDir` type.
pub use tempfile;
