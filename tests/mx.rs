//! The MX probe against a real dnsmasq serving MX records (and a null MX, and none) that point
//! at a real Postfix and at addresses where nothing listens, on 127.0.0.1 only.

mod common;

use std::net::IpAddr;

use common::{Daemon, Env, eventually, failure, phases, probe_all, sample};
use mailprobe::probe::Outcome;
use mailprobe::probe::Phase::*;
use mailprobe::probe::mx::{MxFacts, MxKind};
use mailprobe::tls::CertCheck;
use mailprobe_testpeers::dns::{DOMAIN, Dnsmasq, Zone};
use mailprobe_testpeers::dovecot::{Dovecot, Options};
use mailprobe_testpeers::postfix::Postfix;

const GLOBAL: &str = "[global]\ntimeout = \"5s\"\n";

/// `name` under the test DNS server's domain.
fn fq(name: &str) -> String {
    format!("{name}.{DOMAIN}")
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The names the tests use: `mx1`/`mx2` are the Postfix's address, `dead` is 127.0.0.2 (on
/// loopback, where nothing listens: refused), `ghost` does not exist.
fn zone() -> Zone {
    Zone::default()
        .host(&fq("mx1"), ip("127.0.0.1"))
        .host(&fq("mx2"), ip("127.0.0.1"))
        .host(&fq("dead"), ip("127.0.0.2"))
        // all up, in preference order unlike the order written
        .mx(&fq("up"), &fq("mx2"), 20)
        .mx(&fq("up"), &fq("mx1"), 10)
        // the preferred host dead, the backup up
        .mx(&fq("onedead"), &fq("dead"), 10)
        .mx(&fq("onedead"), &fq("mx1"), 20)
        // every host dead: one refuses, one does not exist
        .mx(&fq("alldead"), &fq("dead"), 10)
        .mx(&fq("alldead"), &fq("ghost"), 20)
        // no MX record: the domain's own address is its MX
        .host(&fq("nomx"), ip("127.0.0.1"))
        .null_mx(&fq("null"))
}

struct Stack {
    _dovecot: Dovecot,
    postfix: Postfix,
    dns: Dnsmasq,
}

fn stack(env: &Env) -> Stack {
    let dovecot = Dovecot::start(&env.pki, Options::default());
    let postfix = Postfix::start(&env.pki, &dovecot, None);
    let dns = Dnsmasq::serve(&zone());
    Stack {
        _dovecot: dovecot,
        postfix,
        dns,
    }
}

/// An MX target for `domain` (under the test domain) asking `dns`, on the Postfix's port.
fn target(env: &Env, s: &Stack, name: &str, domain: &str, extra: &str) -> String {
    format!(
        "[[target]]\nname = \"{name}\"\nregion = \"test\"\nprotocol = \"mx\"\ndomain = \"{}\"\n\
         port = {}\ndns_servers = [\"{}\"]\nca_file = \"{}\"\nehlo_name = \"probe.example.test\"\n{extra}\n",
        fq(domain),
        s.postfix.ports.smtp,
        s.dns.addr,
        env.pki.ca.display(),
    )
}

fn mx(o: &Outcome) -> &MxFacts {
    o.mx.as_deref()
        .unwrap_or_else(|| panic!("no MX facts: {o:?}"))
}

/// One host's result: `(name, preference, None | Some((class, phase)))`.
type HostResult = (String, u16, Option<(&'static str, &'static str)>);

/// Each host's result, in the order probed.
fn hosts(o: &Outcome) -> Vec<HostResult> {
    mx(o)
        .hosts
        .iter()
        .map(|h| {
            (
                h.name.clone(),
                h.preference,
                h.failure
                    .as_ref()
                    .map(|f| (f.class.as_str(), f.phase.as_str())),
            )
        })
        .collect()
}

fn by_name<'a>(outcomes: &'a [Outcome], name: &str) -> &'a Outcome {
    outcomes
        .iter()
        .find(|o| o.target.name == name)
        .unwrap_or_else(|| panic!("no outcome for {name}"))
}

#[tokio::test]
async fn every_mx_host_up_is_probed_in_preference_order_with_starttls() {
    let env = Env::new();
    let s = stack(&env);
    let cfg = env.config(&format!("{GLOBAL}{}", target(&env, &s, "up", "up", "")));
    let o = &probe_all(&cfg).await[0];
    assert!(o.success(), "{o:?}\n{}", s.dns.log());
    assert_eq!(
        hosts(o),
        [(fq("mx1"), 10, None), (fq("mx2"), 20, None)],
        "{}",
        s.dns.log()
    );
    let facts = mx(o);
    assert_eq!(
        (facts.kind, facts.found, facts.deciding),
        (MxKind::Published, 2, Some(0))
    );
    // The MX lookup, then the deciding host's session, STARTTLS included.
    assert_eq!(
        phases(o),
        [
            Dns, Dns, Connect, Greeting, Ehlo, Starttls, Tls, EhloTls, Quit
        ]
    );
    assert_eq!(o.banner.as_deref(), Some("mx.example.test ESMTP Postfix"));
    for h in &facts.hosts {
        let tls = h.tls.as_ref().expect("STARTTLS offered by Postfix");
        assert!(tls.version.is_some(), "{h:?}");
        // Trusted (the test CA), in date, but for localhost: reported, not failed.
        assert_eq!(tls.cert_check, Some(CertCheck::NameMismatch), "{h:?}");
        assert_eq!(
            tls.cert.as_ref().map(|c| c.not_after),
            Some(env.pki.valid.not_after)
        );
    }
}

#[tokio::test]
async fn a_dead_preferred_mx_fails_preferred_and_passes_any() {
    let env = Env::new();
    let s = stack(&env);
    let cfg = env.config(&format!(
        "{GLOBAL}{}{}",
        target(&env, &s, "preferred", "onedead", ""),
        target(&env, &s, "any", "onedead", "require = \"any\"")
    ));
    let out = probe_all(&cfg).await;
    let want = [
        (fq("dead"), 10, Some(("connect_refused", "connect"))),
        (fq("mx1"), 20, None),
    ];

    let o = by_name(&out, "preferred");
    assert_eq!(failure(o), ("connect_refused", "connect"));
    assert_eq!(hosts(o), want);
    let detail = &o.failure.as_ref().unwrap().detail;
    assert!(
        detail.starts_with(&format!("{} (preference 10)", fq("dead")))
            && detail.contains(&format!("while {} (preference 20) accepts", fq("mx1"))),
        "{detail}"
    );
    assert_eq!(mx(o).deciding, Some(0));

    let o = by_name(&out, "any");
    assert!(o.success(), "{o:?}");
    assert_eq!(hosts(o), want);
    assert_eq!(mx(o).deciding, Some(1));
}

#[tokio::test]
async fn no_mx_falls_back_to_the_address_and_dns_answers_are_classed_apart() {
    let env = Env::new();
    let s = stack(&env);
    let closed = mailprobe_testpeers::util::free_port();
    let cfg = env.config(&format!(
        "{GLOBAL}{}{}{}{}{}",
        target(&env, &s, "alldead", "alldead", "require = \"any\""),
        target(&env, &s, "nomx", "nomx", ""),
        target(&env, &s, "nxdomain", "missing", ""),
        target(&env, &s, "null", "null", ""),
        target(&env, &s, "servfail", "up", "")
            .replace(&s.dns.addr.to_string(), &format!("127.0.0.1:{closed}")),
    ));
    let out = probe_all(&cfg).await;
    let log = s.dns.log();

    // Every host dead: the preferred one's failure is the domain's; each says its own.
    let o = by_name(&out, "alldead");
    assert_eq!(failure(o), ("connect_refused", "connect"), "{log}");
    assert_eq!(
        hosts(o),
        [
            (fq("dead"), 10, Some(("connect_refused", "connect"))),
            (fq("ghost"), 20, Some(("dns_nxdomain", "dns"))),
        ]
    );
    let detail = &o.failure.as_ref().unwrap().detail;
    assert!(
        detail.starts_with("none of the 2 MX hosts accepted"),
        "{detail}"
    );

    // RFC 5321 5.1: no MX record, the domain's own address as an implicit MX of preference 0.
    let o = by_name(&out, "nomx");
    assert!(o.success(), "{o:?}\n{log}");
    assert_eq!(mx(o).kind, MxKind::Implicit);
    assert_eq!(hosts(o), [(fq("nomx"), 0, None)]);

    // The domain does not exist: its own fault, not DNS's.
    let o = by_name(&out, "nxdomain");
    assert_eq!(failure(o), ("dns_nxdomain", "dns"), "{o:?}\n{log}");
    assert_eq!(mx(o).kind, MxKind::Unknown);
    assert!(mx(o).hosts.is_empty());

    // RFC 7505: the domain says it takes no mail; said so, not called a DNS failure.
    let o = by_name(&out, "null");
    assert_eq!(failure(o), ("null_mx", "dns"), "{o:?}\n{log}");
    assert_eq!((mx(o).kind, mx(o).found), (MxKind::Null, 0));
    assert!(
        o.failure.as_ref().unwrap().detail.contains("null MX"),
        "{o:?}"
    );

    // No name server answering: a DNS failure.
    let o = by_name(&out, "servfail");
    assert_eq!(failure(o), ("dns_failure", "dns"), "{o:?}");
}

#[tokio::test]
async fn an_expired_mx_certificate_is_reported_not_failed() {
    let env = Env::new();
    let dovecot = Dovecot::start(&env.pki, Options::default());
    // The same Postfix, presenting the expired certificate.
    let mut pki = env.pki.clone();
    pki.valid = env.pki.expired.clone();
    let postfix = Postfix::start(&pki, &dovecot, None);
    let s = Stack {
        _dovecot: dovecot,
        postfix,
        dns: Dnsmasq::serve(&zone()),
    };
    let cfg = env.config(&format!("{GLOBAL}{}", target(&env, &s, "up", "up", "")));
    let o = &probe_all(&cfg).await[0];
    assert!(o.success(), "{o:?}");
    for h in &mx(o).hosts {
        let tls = h.tls.as_ref().expect("STARTTLS offered");
        assert!(tls.version.is_some(), "{h:?}");
        assert_eq!(tls.cert_check, Some(CertCheck::Expired), "{h:?}");
        assert_eq!(
            tls.cert.as_ref().map(|c| c.not_after),
            Some(env.pki.expired.not_after)
        );
    }
}

/// The daemon's series: the domain's result in the target's usual series, each host in its own
/// bounded `mx` series.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_exports_the_domain_and_each_host() {
    let env = Env::new();
    let s = stack(&env);
    let cfg = env.config(&format!(
        "[global]\ninterval = \"1s\"\ntimeout = \"800ms\"\n{}{}",
        target(&env, &s, "onedead", "onedead", ""),
        target(&env, &s, "capped", "alldead", "max_hosts = 1"),
    ));
    let d = Daemon::start(cfg).await;
    let m = eventually(20, "both MX targets probed", || async {
        let m = d.metrics().await;
        (sample(&m, "mailprobe_mx_hosts", &[("target", "onedead")]).is_some()
            && sample(&m, "mailprobe_mx_hosts", &[("target", "capped")]).is_some())
        .then_some(m)
    })
    .await;
    d.stop().await;
    let host = |name: &str, t: &str, h: &str| {
        sample(
            &m,
            name,
            &[("target", t), ("mx", &fq(h)), ("protocol", "mx")],
        )
    };
    assert_eq!(
        sample(&m, "mailprobe_probe_success", &[("target", "onedead")]),
        Some(0.0),
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            "mailprobe_probe_failure_info",
            &[
                ("target", "onedead"),
                ("class", "connect_refused"),
                ("phase", "connect")
            ]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&m, "mailprobe_mx_hosts", &[("target", "onedead")]),
        Some(2.0)
    );
    assert_eq!(
        host("mailprobe_mx_host_success", "onedead", "dead"),
        Some(0.0)
    );
    assert_eq!(
        host("mailprobe_mx_host_success", "onedead", "mx1"),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &m,
            "mailprobe_mx_host_tls_info",
            &[
                ("target", "onedead"),
                ("mx", &fq("mx1")),
                ("cert", "name_mismatch")
            ]
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        host(
            "mailprobe_mx_host_tls_cert_expiry_timestamp_seconds",
            "onedead",
            "mx1"
        ),
        Some(env.pki.valid.not_after as f64)
    );
    // A dead host never reached TLS: no TLS series.
    assert_eq!(host("mailprobe_mx_host_tls_info", "onedead", "dead"), None);
    // max_hosts bounds the series: two hosts found, one probed.
    assert_eq!(
        sample(&m, "mailprobe_mx_hosts", &[("target", "capped")]),
        Some(2.0)
    );
    assert_eq!(
        host("mailprobe_mx_host_success", "capped", "dead"),
        Some(0.0)
    );
    assert_eq!(
        host("mailprobe_mx_host_success", "capped", "ghost"),
        None,
        "{m}"
    );
}

/// `mailprobe probe` prints the domain's row and one row per MX host under it; it exits 1
/// when the preferred host is dead and 0 for a domain whose hosts all take mail.
#[tokio::test]
async fn probe_command_shows_a_row_per_mx_host() {
    let env = Env::new();
    let s = stack(&env);
    env.config(&format!(
        "{GLOBAL}{}{}",
        target(&env, &s, "dom", "onedead", ""),
        target(&env, &s, "dom-up", "up", "")
    ));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mailprobe"))
        .args(["probe", "-c"])
        .arg(env.config_path())
        .arg("dom")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("$ mailprobe probe -c probes.toml dom\n{text}");
    let row = |start: &str| {
        text.lines()
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no row starting {start:?}:\n{text}"))
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    assert_eq!(
        row("dom ")[..6],
        ["dom", "test", "mx", "FAIL", "connect_refused", "connect"]
    );
    let dead = format!("└ {} (10)", fq("dead"));
    let up = format!("└ {} (20)", fq("mx1"));
    assert_eq!(
        row(&dead)[3..8],
        ["mx", "host", "FAIL", "connect_refused", "connect"],
        "{text}"
    );
    assert_eq!(row(&up)[3..6], ["mx", "host", "ok"], "{text}");
    assert!(
        text.contains(&format!(
            "dom └ {} (20): connected to 127.0.0.1:",
            fq("mx1")
        )) && text.contains("certificate check: name_mismatch (reported, not failed)"),
        "{text}"
    );

    // Every host up: exit 0, each host's SMTP phases timed.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mailprobe"))
        .args(["probe", "-c"])
        .arg(env.config_path())
        .arg("dom-up")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    println!("$ mailprobe probe -c probes.toml dom-up\n{text}");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let row = |start: &str| {
        text.lines()
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no row starting {start:?}:\n{text}"))
    };
    assert_eq!(
        row("dom-up ").split_whitespace().collect::<Vec<_>>()[..4],
        ["dom-up", "test", "mx", "ok"]
    );
    for host in [
        format!("└ {} (10)", fq("mx1")),
        format!("└ {} (20)", fq("mx2")),
    ] {
        let r = row(&host);
        assert_eq!(
            r.split_whitespace().collect::<Vec<_>>()[3..6],
            ["mx", "host", "ok"],
            "{r}"
        );
        for phase in [
            "dns", "connect", "greeting", "ehlo", "starttls", "tls", "quit",
        ] {
            common::phase_ms(r, phase);
        }
    }
}
