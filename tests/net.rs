//! Resolving and connecting: dual-stack hosts (RFC 8305), `ip_protocol` and `dns_servers`,
//! against a real dnsmasq and Dovecot, with an IPv6 address that silently drops SYNs.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

use common::{Env, failure, probe_all, probe_first};
use mailprobe::config::{IpProtocol, NetSettings};
use mailprobe::probe::Phase;
use mailprobe::probe::net::{self, Resolvers};
use mailprobe_testpeers::blackhole::SynDrop;
use mailprobe_testpeers::dns::Dnsmasq;
use mailprobe_testpeers::dovecot::{Dovecot, Options};

const DUAL: &str = "dual.mailprobe.test";
const V4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const V6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

/// Dovecot on 127.0.0.1, the same port on ::1 dropping every SYN, and a resolver that gives
/// `dual.mailprobe.test` both addresses: a dual-stack host whose IPv6 path is dead.
struct DualStack {
    env: Env,
    dc: Dovecot,
    dns: Dnsmasq,
    _dead: SynDrop,
}

impl DualStack {
    fn start() -> DualStack {
        let env = Env::new();
        let dc = Dovecot::start(&env.pki, Options::default());
        let dead = SynDrop::bind(SocketAddr::new(V6, dc.ports.imaps))
            .unwrap_or_else(|e| panic!("cannot make [::1]:{} drop SYNs: {e}", dc.ports.imaps));
        let dns = Dnsmasq::start(&[(DUAL, V6), (DUAL, V4)]);
        DualStack {
            env,
            dc,
            dns,
            _dead: dead,
        }
    }

    /// An IMAPS target for `dual.mailprobe.test` with a 4 s deadline, asking our dnsmasq;
    /// `extra` lines appended.
    fn target(&self, name: &str, extra: &str) -> String {
        self.env
            .imap_target(
                name,
                self.dc.ports.imaps,
                &format!(
                    "server_name = \"localhost\"\ntimeout = \"4s\"\ndns_servers = [\"{}\"]\n{extra}",
                    self.dns.addr
                ),
            )
            .replace("host = \"127.0.0.1\"", &format!("host = \"{DUAL}\""))
    }

    fn v4(&self) -> SocketAddr {
        SocketAddr::new(V4, self.dc.ports.imaps)
    }
}

/// Defect 12: connecting tried the addresses one after another with no budget of its own, so
/// the dropped IPv6 address (tried first) took the whole deadline: `connect_timeout` after 4 s.
#[tokio::test]
async fn a_dual_stack_host_whose_ipv6_is_dropped_is_reached_over_ipv4() {
    let ds = DualStack::start();
    let cfg = ds.env.config(&ds.target("dual", ""));
    let o = probe_first(&cfg).await;
    assert!(o.success(), "{o:?}\n{}\n{}", ds.dns.log(), ds.dc.log());
    assert_eq!(o.peer, Some(ds.v4()), "{o:?}");
    let log = ds.dns.log();
    assert!(
        log.contains("query[AAAA] dual.mailprobe.test")
            && log.contains("query[A] dual.mailprobe.test"),
        "both families are asked for: {log}"
    );
    eprintln!("connect phase: {:?}", o.phase(Phase::Connect));

    // The family is reported: in `mailprobe probe` output, as JSON, and as the metric.
    let table = mailprobe::report::table(std::slice::from_ref(&o));
    assert!(
        table.contains(&format!("connected to {} (IPv4)", ds.v4())),
        "{table}"
    );
    let json = mailprobe::report::json(&o);
    assert_eq!(json["peer"]["family"], "ipv4", "{json}");
    assert_eq!(json["peer"]["address"], ds.v4().to_string(), "{json}");
    let metrics = mailprobe::metrics::Metrics::new();
    metrics.register_target(&cfg.targets[0]);
    metrics.observe(&o);
    let text = metrics.render();
    let line = "mailprobe_probe_connection_info{family=\"ipv4\",protocol=\"imap\",region=\"test\",target=\"dual\"";
    assert!(
        text.lines()
            .any(|l| l.starts_with(line) && l.ends_with("} 1")),
        "{text}"
    );
    assert_eq!(text.matches("mailprobe_probe_connection_info{").count(), 1);
}

#[tokio::test]
async fn ip6_probes_only_ipv6_so_its_outage_is_seen() {
    let ds = DualStack::start();
    let cfg = ds.env.config(&ds.target("v6only", "ip_protocol = \"ip6\""));
    let o = probe_first(&cfg).await;
    assert_eq!(failure(&o), ("connect_timeout", "connect"), "{o:?}");
    let detail = &o.failure.as_ref().unwrap().detail;
    let want = format!("connect to [::1]:{}: no answer within ", ds.dc.ports.imaps);
    assert!(detail.starts_with(&want), "{detail}");
    assert!(
        !detail.contains("127.0.0.1"),
        "IPv4 is never tried: {detail}"
    );
    assert_eq!(o.peer, None);
    let log = ds.dns.log();
    assert!(!log.contains("query[A] "), "no A query: {log}");
}

#[tokio::test]
async fn ip4_probes_only_ipv4() {
    let ds = DualStack::start();
    let cfg = ds.env.config(&ds.target("v4only", "ip_protocol = \"ip4\""));
    let o = probe_first(&cfg).await;
    assert!(o.success(), "{o:?}\n{}", ds.dns.log());
    assert_eq!(o.peer, Some(ds.v4()));
    let log = ds.dns.log();
    assert!(!log.contains("query[AAAA]"), "no AAAA query: {log}");
}

#[tokio::test]
async fn a_global_ip_protocol_is_every_target_s_default() {
    let ds = DualStack::start();
    let text = format!(
        "[global]\nip_protocol = \"ip6\"\n\n{}{}",
        ds.target("v6", ""),
        ds.target("any", "ip_protocol = \"any\"")
    );
    let cfg = ds.env.config(&text);
    let o = probe_all(&cfg).await;
    assert_eq!(failure(&o[0]), ("connect_timeout", "connect"), "{:?}", o[0]);
    assert!(o[1].success(), "{:?}", o[1]);
}

#[tokio::test]
async fn a_failure_after_connecting_to_a_name_says_which_address_answered() {
    let ds = DualStack::start();
    let cfg = ds
        .env
        .config(&ds.target("nobox", "mailbox = \"Does-Not-Exist\""));
    let o = probe_first(&cfg).await;
    assert_eq!(failure(&o), ("mailbox_error", "select"), "{o:?}");
    let detail = &o.failure.as_ref().unwrap().detail;
    assert!(
        detail.ends_with(&format!(" (via {}, IPv4)", ds.v4())),
        "{detail}"
    );
}

#[tokio::test]
async fn every_address_refusing_is_connect_refused_with_each_named() {
    let env = Env::new();
    let port = mailprobe_testpeers::util::free_port();
    let dns = Dnsmasq::start(&[(DUAL, V6), (DUAL, V4)]);
    let cfg = env.config(
        &env.imap_target("closed", port, &format!("dns_servers = [\"{}\"]", dns.addr))
            .replace("host = \"127.0.0.1\"", &format!("host = \"{DUAL}\"")),
    );
    let o = probe_first(&cfg).await;
    assert_eq!(failure(&o), ("connect_refused", "connect"), "{o:?}");
    let detail = &o.failure.as_ref().unwrap().detail;
    for addr in [format!("[::1]:{port}"), format!("127.0.0.1:{port}")] {
        assert!(detail.contains(&format!("connect to {addr}: ")), "{detail}");
    }
}

/// The error text of loading `text` as probes.toml.
fn config_error(text: &str) -> String {
    mailprobe::load::parse(Path::new("probes.toml"), text)
        .err()
        .unwrap_or_else(|| panic!("accepted:\n{text}"))
        .to_string()
}

/// An MX target for `host` (no credentials, plain), with `extra` lines.
fn mx(host: &str, extra: &str) -> String {
    format!(
        "[[target]]\nname = \"mx\"\nprotocol = \"smtp\"\nhost = \"{host}\"\ntls = \"none\"\n\
         allow_plaintext = true\n{extra}"
    )
}

#[tokio::test]
async fn dns_servers_replace_the_system_resolver_and_a_target_may_override_them() {
    let env = Env::new();
    let dc = Dovecot::start(&env.pki, Options::default());
    let dns = Dnsmasq::start(&[("v4.mailprobe.test", V4)]);
    // Nothing answers DNS here: every target that keeps the global setting fails at dns.
    let dead = SocketAddr::from(([127, 0, 0, 1], mailprobe_testpeers::util::free_port()));
    let text = format!(
        "[global]\ndns_servers = [\"{dead}\"]\n\n{}{}{}",
        env.imap_target(
            "own",
            dc.ports.imaps,
            &format!(
                "server_name = \"localhost\"\ndns_servers = [\"{}\"]",
                dns.addr
            )
        ),
        env.imap_target(
            "global",
            dc.ports.imaps,
            "server_name = \"localhost\"\ntimeout = \"2s\""
        ),
        env.imap_target(
            "nxdomain",
            dc.ports.imaps,
            &format!(
                "server_name = \"localhost\"\ndns_servers = [\"{}\"]",
                dns.addr
            )
        ),
    )
    .replacen("host = \"127.0.0.1\"", "host = \"v4.mailprobe.test\"", 2)
    .replacen("host = \"127.0.0.1\"", "host = \"nope.mailprobe.test\"", 1);
    let cfg = env.config(&text);
    let o = probe_all(&cfg).await;
    assert!(o[0].success(), "{:?}\n{}", o[0], dns.log());
    assert_eq!(failure(&o[1]), ("dns_failure", "dns"), "{:?}", o[1]);
    assert_eq!(failure(&o[2]), ("dns_nxdomain", "dns"), "{:?}", o[2]);
    let log = dns.log();
    assert!(log.contains("query[A] v4.mailprobe.test"), "{log}");
}

#[tokio::test]
async fn an_answer_too_big_for_udp_is_asked_again_over_tcp() {
    // 120 A records do not fit in a 512-byte UDP answer: dnsmasq truncates it.
    let addrs: Vec<IpAddr> = (1..=120)
        .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 1, i)))
        .collect();
    let records: Vec<(&str, IpAddr)> = addrs.iter().map(|a| ("big.mailprobe.test", *a)).collect();
    let dns = Dnsmasq::start(&records);
    let settings = NetSettings {
        dns_servers: Some(vec![dns.addr].into()),
        ..NetSettings::default()
    };
    let resolver = Resolvers::new().get(&settings);
    let mut got = net::resolve(&resolver, "big.mailprobe.test", 25, IpProtocol::Any)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", dns.log()));
    got.sort();
    let want: Vec<SocketAddr> = addrs.iter().map(|a| SocketAddr::new(*a, 25)).collect();
    assert_eq!(got, want);
}

#[test]
fn dns_servers_take_addresses_with_or_without_a_port() {
    for (entry, want) in [
        ("192.0.2.53", "192.0.2.53:53"),
        ("192.0.2.53:5353", "192.0.2.53:5353"),
        ("::1", "[::1]:53"),
        ("[::1]", "[::1]:53"),
        ("[::1]:5353", "[::1]:5353"),
    ] {
        assert_eq!(
            mailprobe::config::endpoint::parse_dns_server(entry)
                .unwrap()
                .to_string(),
            want
        );
    }
    let text = format!(
        "[global]\ndns_servers = [\"127.0.0.1:5353\", \"[::1]\"]\n\n{}",
        mx("mx.example.net", "")
    );
    let cfg = mailprobe::load::parse(Path::new("probes.toml"), &text).expect("valid");
    let servers = cfg.targets[0]
        .spec
        .endpoint()
        .unwrap()
        .net
        .dns_servers
        .clone();
    assert_eq!(
        servers.as_deref(),
        Some(
            &[
                "127.0.0.1:5353".parse().unwrap(),
                "[::1]:53".parse().unwrap()
            ][..]
        )
    );
}

#[test]
fn bad_dns_servers_are_refused_with_file_line_and_key() {
    let e = config_error(&format!(
        "[global]\ndns_servers = [\"127.0.0.1:5353\", \"ns1.example.net\"]\n\n{}",
        mx("mx.example.net", "")
    ));
    assert!(
        e.starts_with("probes.toml:2:")
            && e.contains(
                "global.dns_servers[2]: \"ns1.example.net\" is not a name server address"
            ),
        "{e}"
    );
    let e = config_error(&mx("mx.example.net", "dns_servers = []\n"));
    assert!(
        e.contains("probes.toml:7:") && e.contains("target[1] \"mx\".dns_servers: is empty"),
        "{e}"
    );
    let e = config_error(&mx(
        "mx.example.net",
        "dns_servers = [\"::1\", \"[::1]:53\"]\n",
    ));
    assert!(
        e.contains("target[1] \"mx\".dns_servers[2]: [::1]:53 is listed twice"),
        "{e}"
    );
    let e = config_error(&mx("mx.example.net", "dns_servers = [\"127.0.0.1:0\"]\n"));
    assert!(e.contains("the port must be 1-65535"), "{e}");
    let e = config_error(&mx("192.0.2.25", "dns_servers = [\"127.0.0.1\"]\n"));
    assert!(
        e.contains("target[1] \"mx\".dns_servers: has no effect: the host is an IP address"),
        "{e}"
    );
    let long = "x".repeat(10_000);
    let e = config_error(&mx(
        "mx.example.net",
        &format!("dns_servers = [\"{long}\"]\n"),
    ));
    assert!(e.len() < 400, "long values are cut: {e}");
}

#[test]
fn ip_protocol_is_checked_against_ip_address_hosts() {
    let e = config_error(&mx("192.0.2.25", "ip_protocol = \"ip6\"\n"));
    assert!(
        e.starts_with(
            "probes.toml:7:1: target[1] \"mx\".ip_protocol: the host 192.0.2.25 is an IPv4 address"
        ),
        "{e}"
    );
    let e = config_error(&format!(
        "[global]\nip_protocol = \"ip4\"\n\n{}",
        mx("2001:db8::25", "")
    ));
    assert!(
        e.contains("target[1] \"mx\".host: the host 2001:db8::25 is an IPv6 address, which ip_protocol = \"ip4\" (from [global])"),
        "{e}"
    );
    let e = config_error(&mx("mx.example.net", "ip_protocol = \"ipv6\"\n"));
    assert!(
        e.contains("target[1] \"mx\".ip_protocol") && e.contains("ip6"),
        "{e}"
    );
    let e = config_error(
        "[[target]]\nname = \"rt\"\nprotocol = \"roundtrip\"\nip_protocol = \"ip4\"\n",
    );
    assert!(
        e.contains("key `ip_protocol` does not apply to protocol \"roundtrip\""),
        "{e}"
    );
    let ok = mailprobe::load::parse(
        Path::new("probes.toml"),
        &format!(
            "[global]\nip_protocol = \"ip6\"\n\n{}",
            mx("mx.example.net", "")
        ),
    )
    .expect("valid");
    let net = &ok.targets[0].spec.endpoint().unwrap().net;
    assert_eq!(net.ip_protocol, IpProtocol::Ip6);
}
