//! The likely cause of an incident, in the words an admin would use in the outage report: what
//! the evidence shows (the failing targets' classes and phases), narrowed only where other
//! targets' results allow it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::{Cause, Engine, Reach, Scope, Stage, few};
use crate::incidents::state::{Health, TargetState};
use crate::probe::Phase;
use crate::probe::classify::FailureClass;

impl Engine {
    /// The likely cause, in the words an admin would use in the outage report: what the
    /// evidence shows, narrowed only where other targets' results allow it (a dropped SYN looks
    /// the same from a dead host, a dead path and a full accept queue).
    pub(super) fn hint(
        &self,
        members: &[&TargetState],
        cause: Option<Cause>,
        scope: Scope,
        stage: Stage,
    ) -> String {
        use FailureClass as C;
        let Some(c) = cause else {
            return if stage == Stage::Degraded {
                "slow access: overload, a struggling backend, or a slow path".into()
            } else {
                "unknown".into()
            };
        };
        let wide = scope != Scope::Target;
        // The members down for the dominant cause: what the hint speaks about.
        let failing: Vec<&TargetState> = members
            .iter()
            .filter(|s| s.health == Health::Down && s.last_failure == Some((c.class, c.phase)))
            .copied()
            .collect();
        let hosts: BTreeSet<&str> = failing
            .iter()
            .map(|s| {
                self.reach
                    .get(&s.name)
                    .and_then(|r| r.host.as_deref())
                    .unwrap_or(s.name.as_str())
            })
            .collect();
        let s = match c.class {
            C::ConnectTimeout => return self.connect_timeout_hint(&failing, wide),
            C::NetworkUnreachable if wide => {
                "no route to the hosts across the region: a network or datacenter problem"
            }
            C::NetworkUnreachable => {
                "no route to the host: the host or the network path to it is down (an ICMP \
                 unreachable, or no local route)"
            }
            C::ConnectRefused if wide => {
                "mail service not running across the region (crash, maintenance)"
            }
            C::ConnectRefused => "mail service not running or port closed",
            C::ConnectionClosed => {
                "connections closed mid-dialogue: the server (crash, overload, connection \
                 limits) or something on the path (proxy, firewall)"
            }
            C::DnsNxdomain => {
                "DNS: the name does not exist (mistyped, an expired domain, or a broken zone)"
            }
            C::DnsFailure => "DNS resolution failing",
            C::NullMx => {
                "the mail domain publishes a null MX (RFC 7505): its DNS says it accepts no mail \
                 (a zone change, or a parked domain)"
            }
            C::TlsCertExpired if hosts.len() > 1 => {
                return format!(
                    "certificates of {} hosts expired at once: the prober's clock, or a shared \
                     certificate not renewed",
                    hosts.len()
                );
            }
            C::TlsCertExpired => {
                "certificate expired: not renewed (or the prober's clock is wrong)"
            }
            C::TlsCertInvalid => {
                "certificate not trusted or not for this name: a wrong certificate deployed, an \
                 intercepting proxy, or changed trust settings"
            }
            C::TlsHandshakeFailed => {
                "TLS handshake failing: the server's TLS configuration (versions, ciphers) or \
                 something on the path"
            }
            C::StarttlsUnavailable => "STARTTLS disabled or stripped on the path",
            C::GreetingTimeout => "server overloaded or hung",
            C::Timeout => match c.phase {
                Phase::Login | Phase::Auth => {
                    "no answer to the login before the deadline: a slow or hung authentication \
                     backend, or a server that delays rejecting a password longer than the \
                     timeout allows (see Timeouts in the README)"
                }
                _ => "server overloaded or hung (or a slow backend)",
            },
            C::ProtocolError => "server answering garbage (misrouted port, broken proxy, bug)",
            C::ServerUnavailable => {
                "the server says it cannot serve now (overload, maintenance, connection or rate \
                 limits)"
            }
            C::AuthRejected if wide || failing.len() > 1 => {
                "credentials rejected on several targets: a shared authentication backend \
                 (directory, SASL) failing, or a shared password changed"
            }
            C::AuthRejected => "probe credentials rejected (password changed or account locked?)",
            C::AuthTokenFailed => {
                "no OAuth2 token: the identity provider failing or refusing the client's \
                 credentials (an expired secret?), not the mail servers"
            }
            C::AuthRequired => "server demands authentication or TLS first (configuration change)",
            C::AuthUnavailable => {
                "the server cannot check credentials now, or offers no way to (AUTH not \
                 advertised, a temporary authentication failure): often its SASL backend is \
                 down, or its configuration changed"
            }
            C::AuthPolicy => {
                "sign-in refused by the provider's policy before the credentials counted (SMTP \
                 AUTH or Basic auth switched off, security defaults, an app password required)"
            }
            C::MessageRejected => "mail refused by policy (recipient, quota, blocklist)",
            C::MailboxError => {
                "the mailbox could not be opened: storage (filesystem, quota, index), or it no \
                 longer exists"
            }
            C::DeliveryTimeout => "mail accepted but not delivered: queue or delivery backend",
            C::HttpStatus => "web frontend returning errors",
            C::ContentMismatch => "web frontend serving the wrong page (maintenance or error page)",
            C::Unrecognized => "an answer mailprobe does not recognise (see the probe's detail)",
            // Never reaches the timeline (the incident service drops throttled probes).
            C::Throttled => "the mail API rate-limits the probe (it asks too often), not an outage",
            // Never reaches the timeline (the incident service drops prober faults).
            C::ProberError => "mailprobe could not probe (its own fault, not the target's)",
        };
        s.into()
    }

    /// No TCP answer: a dead host, a dead path and a listener whose accept queue is full (it
    /// drops SYNs) look the same from here. Other targets on the same host that answer rule out
    /// the host and the path; every probed port of a host silent points at them.
    fn connect_timeout_hint(&self, failing: &[&TargetState], wide: bool) -> String {
        let names: BTreeSet<&str> = failing.iter().map(|s| s.name.as_str()).collect();
        let reach: Vec<&Reach> = failing
            .iter()
            .filter_map(|s| self.reach.get(&s.name))
            .collect();
        let timeouts: BTreeSet<Duration> = reach.iter().map(|r| r.timeout).collect();
        let within = match (timeouts.first(), timeouts.last()) {
            (Some(a), Some(b)) if a == b => {
                format!("within {}", humantime::format_duration(*a))
            }
            (Some(a), Some(b)) => format!(
                "within {} to {}",
                humantime::format_duration(*a),
                humantime::format_duration(*b)
            ),
            _ => "before the deadline".to_string(),
        };
        // Silent ports by host, and the targets on those hosts whose last probe succeeded.
        let mut silent: BTreeMap<&str, BTreeSet<u16>> = BTreeMap::new();
        for r in &reach {
            if let Some(h) = r.host.as_deref() {
                silent.entry(h).or_default().insert(r.port);
            }
        }
        let mut answering: BTreeMap<&str, Vec<(&str, u16)>> = BTreeMap::new();
        let mut probed: BTreeMap<&str, usize> = BTreeMap::new();
        for (name, r) in &self.reach {
            let Some(h) = r.host.as_deref().filter(|h| silent.contains_key(h)) else {
                continue;
            };
            *probed.entry(h).or_default() += 1;
            let answers = self.targets.get(name).is_some_and(|s| s.successes > 0);
            if answers && !names.contains(name.as_str()) {
                answering
                    .entry(h)
                    .or_default()
                    .push((name.as_str(), r.port));
            }
        }
        let ports = |p: &mut dyn Iterator<Item = u16>| {
            p.map(|p| p.to_string()).collect::<Vec<_>>().join(", ")
        };
        match silent.len() {
            0 if wide => format!(
                "no TCP answer {within} across the region: a network or datacenter problem, or \
                 the hosts or their listeners"
            ),
            0 => format!("no TCP answer {within}: the host, the path, or an overloaded listener"),
            1 => {
                let (host, mine) = silent.iter().next().expect("one host");
                if let Some(peers) = answering.get(host) {
                    let (listeners, are) = if mine.len() == 1 {
                        ("listener on port", "is")
                    } else {
                        ("listeners on ports", "are")
                    };
                    format!(
                        "no TCP answer {within}, but {} on the same host {} (port{} {}): the host \
                         and the path to it work, so the {listeners} {} {are} overloaded (a \
                         full accept queue drops connections just as a dead path does) or \
                         filtered",
                        few(peers.iter().map(|(n, _)| *n)),
                        if peers.len() == 1 {
                            "answers"
                        } else {
                            "answer"
                        },
                        if peers.len() == 1 { "" } else { "s" },
                        ports(&mut peers.iter().map(|(_, p)| *p)),
                        ports(&mut mine.iter().copied()),
                    )
                } else if mine.len() > 1 && probed.get(host) == Some(&reach.len()) {
                    format!(
                        "no TCP answer {within} from {host} on any probed port ({}): the host, \
                         the path to it, or every listener overloaded",
                        ports(&mut mine.iter().copied())
                    )
                } else {
                    format!("no TCP answer {within}: the host, the path, or an overloaded listener")
                }
            }
            n => {
                let base = format!(
                    "no TCP answer {within} from {n} hosts: a network or datacenter problem they \
                     share, or each host, path or listener"
                );
                let peers = few(answering.values().flatten().map(|(name, _)| *name));
                match answering.len() {
                    0 => base,
                    k if k == n => format!(
                        "no TCP answer {within} from {n} hosts, but other targets on each of them \
                         answer ({peers}): the hosts and paths work, so their listeners are \
                         overloaded or filtered"
                    ),
                    k => format!(
                        "{base}; on {k} of them other targets answer ({peers}): there the \
                         listener rather than the host or the path"
                    ),
                }
            }
        }
    }
}
