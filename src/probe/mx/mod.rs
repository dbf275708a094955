//! The MX probe: can the world deliver to a mail domain?
//!
//! It looks up the domain's MX records (the `dns` phase) and orders them as a sender would
//! (RFC 5321 section 5.1): by preference, lowest first. A domain without MX records has its own
//! address records as an implicit MX of preference 0; a single MX whose exchange is the root
//! (`.`) is a null MX (RFC 7505), the domain's own word that it accepts no mail, reported as
//! the class `null_mx` and never as a DNS failure. The first `max_hosts` hosts are then probed
//! at once, each with the SMTP probe's own session (`smtp::session`) as a sending MTA would
//! open it: its address lookup, connect, greeting, EHLO, STARTTLS when offered (opportunistic,
//! RFC 3207 and RFC 7435) with a second EHLO, QUIT. A certificate that does not verify does not
//! fail the host: MX certificates are often for another name, and senders deliver anyway; what
//! the check found is recorded ([`CertCheck`](crate::tls::CertCheck)) beside its expiry.
//!
//! Hosts of equal preference are probed in name order, not shuffled as a sender spreads its
//! load: every host is probed anyway, and a stable order keeps the `mx` label set and the
//! `max_hosts` cut the same from one run to the next.
//!
//! The domain's own result is decided by `require`: `preferred` succeeds when a host of the best
//! preference accepts (equal preferences are alternatives a sender tries at once), `any` when
//! any host does. The outcome's phases are the MX lookup's and the deciding host's (its failure
//! is the domain's); every host's own result is in [`MxFacts`].

pub mod spec;

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::RData;

use super::classify::{FailureClass, Verdict};
use super::error::Answer;
use super::net::{Resolver, dns_error};
use super::smtp::spec::SmtpSpec;
use super::{
    DETAIL_MAX, Failure, Phase, PhaseError, PhaseRecorder, PhaseTiming, ProbeContext, ProbeError,
    clean,
};
use crate::config::{Endpoint, TlsMode};
use crate::tls::{CertPolicy, TlsFacts};
pub use spec::{MxSpec, Require};

/// What the domain's MX lookup said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MxKind {
    /// MX records, probed in preference order.
    Published,
    /// No MX record: the domain's own addresses as an implicit MX (RFC 5321 section 5.1).
    Implicit,
    /// A null MX (RFC 7505): the domain accepts no mail.
    Null,
    /// The lookup failed (the outcome's failure says how): nothing is known of the hosts.
    Unknown,
}

impl MxKind {
    /// As `--json` says it.
    pub fn as_str(self) -> &'static str {
        match self {
            MxKind::Published => "published",
            MxKind::Implicit => "implicit",
            MxKind::Null => "null",
            MxKind::Unknown => "unknown",
        }
    }
}

/// What an MX probe found: the domain's MX hosts and what each did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MxFacts {
    /// The mail domain.
    pub domain: String,
    /// What the lookup said.
    pub kind: MxKind,
    /// MX hosts the domain has (1 for an implicit MX, 0 for a null MX), probed or not.
    pub found: usize,
    /// The hosts probed (at most `max_hosts`, best preference first), each with its result.
    pub hosts: Vec<MxHost>,
    /// The host whose result is the domain's, if any was probed.
    pub deciding: Option<usize>,
}

/// One MX host and how its session went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MxHost {
    /// Its name (no trailing dot): the `mx` label.
    pub name: String,
    /// Its MX preference (0 for an implicit MX).
    pub preference: u16,
    /// Its session, from its address lookup to QUIT.
    pub total: Duration,
    /// Its phases, in order.
    pub phases: Vec<PhaseTiming>,
    /// `None` when it accepted the session.
    pub failure: Option<Failure>,
    /// What STARTTLS established, and what the certificate check found; `None` when STARTTLS
    /// was not offered (or not reached).
    pub tls: Option<TlsFacts>,
    /// Its greeting.
    pub banner: Option<String>,
    /// The address its connection went to.
    pub peer: Option<SocketAddr>,
}

/// One MX record, as a sender orders them.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct MxRecord {
    /// Lower is tried first.
    pub preference: u16,
    /// The exchange's name, without the trailing dot.
    pub name: String,
}

/// The domain's null MX (RFC 7505), said as DNS said it; judged `null_mx`.
#[derive(Debug)]
pub struct NullMx {
    /// The mail domain.
    pub domain: String,
}

impl fmt::Display for NullMx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} publishes a null MX (\"0 .\", RFC 7505): the domain accepts no mail",
            self.domain
        )
    }
}

impl Answer for NullMx {
    fn verdict(&self, _: Phase) -> Verdict {
        Verdict::class(FailureClass::NullMx)
    }
}

/// What the MX lookup found, before any host is probed.
#[derive(Debug, PartialEq, Eq)]
pub enum Found {
    /// MX records, in the order they are tried.
    Published(Vec<MxRecord>),
    /// No MX record: the domain itself is the MX.
    Implicit,
    /// A null MX.
    Null,
}

/// Orders MX records as a sender tries them: by preference, then (where a sender would
/// shuffle) by name, so probes and series stay stable. Repeated names keep their best
/// preference; the root (`""`) among other records is dropped, and alone is a null MX.
pub fn order(mut records: Vec<MxRecord>) -> Found {
    if records.len() == 1 && records[0].name.is_empty() {
        return Found::Null;
    }
    // RFC 7505 section 3: a null MX must be the only MX; beside others, "." is no host to try.
    records.retain(|r| !r.name.is_empty());
    if records.is_empty() {
        return Found::Null;
    }
    records.sort();
    let mut seen = std::collections::HashSet::new();
    records.retain(|r| seen.insert(r.name.to_ascii_lowercase()));
    Found::Published(records)
}

/// Looks up `domain`'s MX records (as a fully qualified name: no search domains).
pub async fn lookup(resolver: &Resolver, domain: &str) -> Result<Found, ProbeError> {
    let fqdn = format!("{domain}.");
    match resolver.mx_lookup(fqdn.as_str()).await {
        Ok(answer) => {
            let records: Vec<MxRecord> = answer
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::MX(mx) => Some(MxRecord {
                        preference: mx.preference,
                        name: mx.exchange.to_utf8().trim_end_matches('.').to_string(),
                    }),
                    _ => None,
                })
                .collect();
            if records.is_empty() {
                // An answer without MX records (a CNAME chain ending nowhere): none published.
                return Ok(Found::Implicit);
            }
            Ok(order(records))
        }
        // NOERROR without MX records: the domain exists and has none.
        Err(NetError::Dns(DnsError::NoRecordsFound(nr)))
            if nr.response_code == ResponseCode::NoError =>
        {
            Ok(Found::Implicit)
        }
        Err(e) => Err(dns_error(domain, e)),
    }
}

/// Runs one MX probe of `spec`, recording the lookup and the deciding host's phases in `rec`.
pub async fn probe(
    spec: &MxSpec,
    ctx: &ProbeContext,
    rec: &mut PhaseRecorder,
) -> Result<(), PhaseError> {
    let resolver = ctx.resolvers.get(&spec.endpoint.net);
    let started = Instant::now();
    let found = rec.phase(Phase::Dns, lookup(&resolver, &spec.domain)).await;
    let lookup_took = started.elapsed();
    let mut facts = MxFacts {
        domain: spec.domain.clone(),
        kind: MxKind::Unknown,
        found: 0,
        hosts: Vec::new(),
        deciding: None,
    };
    let records = match found {
        Err(e) => {
            rec.set_mx(facts);
            return Err(e);
        }
        Ok(Found::Null) => {
            facts.kind = MxKind::Null;
            rec.set_mx(facts);
            return Err(PhaseError {
                phase: Phase::Dns,
                error: ProbeError::Refused(Box::new(NullMx {
                    domain: spec.domain.clone(),
                })),
            });
        }
        Ok(Found::Implicit) => {
            facts.kind = MxKind::Implicit;
            vec![MxRecord {
                preference: 0,
                name: spec.domain.clone(),
            }]
        }
        Ok(Found::Published(records)) => {
            facts.kind = MxKind::Published;
            records
        }
    };
    facts.found = records.len();
    let probed = &records[..records.len().min(spec.max_hosts)];
    let deadline = host_deadline(rec.deadline);
    let sessions =
        futures::future::join_all(probed.iter().map(|r| probe_host(spec, ctx, r, deadline))).await;
    let (hosts, mut errors): (Vec<MxHost>, Vec<Option<PhaseError>>) = sessions.into_iter().unzip();
    let decision = decide(&hosts, spec.require);
    let i = decision.host();
    let host = &hosts[i];
    rec.phases.extend(host.phases.iter().copied());
    rec.tls.clone_from(&host.tls);
    rec.banner.clone_from(&host.banner);
    rec.peer = host.peer;
    rec.set_slow_basis(lookup_took + host.total);
    let context = context(&facts, &hosts, &decision);
    facts.hosts = hosts;
    facts.deciding = Some(i);
    rec.set_mx(facts);
    match (decision, errors[i].take()) {
        (Decision::Accepted(_), _) => Ok(()),
        (_, Some(e)) => Err(PhaseError {
            phase: e.phase,
            error: ProbeError::Host {
                host: context,
                error: Box::new(e.error),
            },
        }),
        (_, None) => Err(PhaseError {
            phase: Phase::Dns,
            error: ProbeError::Internal("an MX host failed without an error".into()),
        }),
    }
}

/// When the hosts' sessions must end: a little before the probe's deadline, so that each host
/// reports its own timeout rather than the whole probe being cut off without its results.
fn host_deadline(deadline: Option<tokio::time::Instant>) -> Option<tokio::time::Instant> {
    let d = deadline?;
    let left = d.saturating_duration_since(tokio::time::Instant::now());
    Some(d - (left / 10).min(Duration::from_millis(100)))
}

/// One host's SMTP session, as a sending MTA opens it, with its own recorder and deadline.
async fn probe_host(
    spec: &MxSpec,
    ctx: &ProbeContext,
    record: &MxRecord,
    deadline: Option<tokio::time::Instant>,
) -> (MxHost, Option<PhaseError>) {
    let mut sub = PhaseRecorder::new();
    sub.deadline = deadline;
    let start = Instant::now();
    let result = match host_spec(spec, &record.name) {
        Err(error) => Err(PhaseError {
            phase: Phase::Dns,
            error,
        }),
        Ok(smtp) => {
            let session = super::smtp::session(&smtp, ctx, &mut sub, None);
            match deadline {
                None => session.await.map(|_| ()),
                Some(d) => match tokio::time::timeout_at(d, session).await {
                    Ok(r) => r.map(|_| ()),
                    Err(_) => Err(PhaseError {
                        phase: sub.interrupted(),
                        error: ProbeError::Timeout,
                    }),
                },
            }
        }
    };
    let failure = result.as_ref().err().map(|e| {
        let verdict = super::classify::judge(e.phase, &e.error);
        let text = match verdict.meaning {
            Some(meaning) => format!("{} — {meaning}", e.error),
            None => e.error.to_string(),
        };
        Failure {
            class: verdict.class,
            fault: verdict.fault,
            phase: e.phase,
            detail: clean(&text, DETAIL_MAX),
        }
    });
    let host = MxHost {
        name: record.name.clone(),
        preference: record.preference,
        total: start.elapsed(),
        phases: sub.phases,
        failure,
        tls: sub.tls,
        banner: sub.banner,
        peer: sub.peer,
    };
    (host, result.err())
}

/// The SMTP spec of one MX host: the target's port, roots and resolver, STARTTLS when offered,
/// the certificate checked for the host's name and reported, not enforced.
fn host_spec(spec: &MxSpec, name: &str) -> Result<SmtpSpec, ProbeError> {
    let ep = &spec.endpoint;
    let tls_client = match &ep.tls_client {
        Some(c) => c
            .for_name(name)
            .map_err(|e| ProbeError::Protocol(format!("MX host {name:?}: {e}")))?
            .with_policy(CertPolicy::Report),
        None => {
            return Err(ProbeError::Internal(
                "an MX target without a TLS client".into(),
            ));
        }
    };
    Ok(SmtpSpec {
        endpoint: Endpoint {
            // Fully qualified: the resolver's search domains are not tried.
            host: format!("{name}."),
            port: ep.port,
            tls: TlsMode::Starttls,
            allow_plaintext: true,
            tls_client: Some(Arc::new(tls_client)),
            net: ep.net.clone(),
        },
        credentials: None,
        auth: None,
        ehlo_name: spec.ehlo_name.clone(),
        send: None,
    })
}

/// Whose result is the domain's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// This host accepted: the domain does.
    Accepted(usize),
    /// No host that counts accepted; this one's failure is the domain's.
    Failed(usize),
    /// No host that counts accepted, and this one could not be probed because of mailprobe
    /// itself: nothing is known, the domain is not failed.
    Fault(usize),
}

impl Decision {
    /// The deciding host.
    pub fn host(self) -> usize {
        match self {
            Decision::Accepted(i) | Decision::Failed(i) | Decision::Fault(i) => i,
        }
    }
}

/// The domain's result from its hosts' (ordered, at least one): under `preferred` the hosts of
/// the best preference count, under `any` all do. The first of them that accepted decides;
/// failing that, one mailprobe could not probe (so the domain is not called down on no
/// evidence); failing that, the first of them.
pub fn decide(hosts: &[MxHost], require: Require) -> Decision {
    let best = hosts.first().map_or(0, |h| h.preference);
    let counts: Vec<usize> = (0..hosts.len())
        .filter(|&i| require == Require::Any || hosts[i].preference == best)
        .collect();
    if let Some(&i) = counts.iter().find(|&&i| hosts[i].failure.is_none()) {
        return Decision::Accepted(i);
    }
    let fault = |i: &&usize| {
        hosts[**i]
            .failure
            .as_ref()
            .is_some_and(|f| f.class == FailureClass::ProberError)
    };
    if let Some(&i) = counts.iter().find(fault) {
        return Decision::Fault(i);
    }
    Decision::Failed(counts.first().copied().unwrap_or(0))
}

/// How the domain's failure names its deciding host.
fn context(facts: &MxFacts, hosts: &[MxHost], decision: &Decision) -> String {
    let host = &hosts[decision.host()];
    let name = match facts.kind {
        MxKind::Implicit => format!("{} (no MX record: the domain as implicit MX)", host.name),
        _ => format!("{} (preference {})", host.name, host.preference),
    };
    let failed = hosts.iter().filter(|h| h.failure.is_some()).count();
    if hosts.len() > 1 && failed == hosts.len() {
        return format!("none of the {} MX hosts accepted; {name}", hosts.len());
    }
    match hosts.iter().find(|h| h.failure.is_none()) {
        // Under `preferred`: a backup accepts, the preferred host does not.
        Some(backup) if !matches!(decision, Decision::Accepted(_)) => format!(
            "{name}, while {} (preference {}) accepts",
            backup.name, backup.preference
        ),
        _ => name,
    }
}

#[cfg(test)]
mod tests;
