//! Resolving and connecting: `dns_servers` against a real dnsmasq the test controls.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;

use common::{Env, failure, probe_all};
use mailprobe::probe::net::{self, NetSettings, Resolvers};
use mailprobe_testpeers::dns::Dnsmasq;
use mailprobe_testpeers::dovecot::{Dovecot, Options};

const V4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// The error text of loading `text` as probes.toml.
fn config_error(text: &str) -> String {
    mailprobe::config::parse(Path::new("probes.toml"), text)
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
    };
    let resolver = Resolvers::new().get(&settings);
    let mut got = net::resolve(&resolver, "big.mailprobe.test", 25)
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
        assert_eq!(net::parse_dns_server(entry).unwrap().to_string(), want);
    }
    let text = format!(
        "[global]\ndns_servers = [\"127.0.0.1:5353\", \"[::1]\"]\n\n{}",
        mx("mx.example.net", "")
    );
    let cfg = mailprobe::config::parse(Path::new("probes.toml"), &text).expect("valid");
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
        e.contains("probes.toml:7:") && e.contains("target[1].dns_servers: is empty"),
        "{e}"
    );
    let e = config_error(&mx(
        "mx.example.net",
        "dns_servers = [\"::1\", \"[::1]:53\"]\n",
    ));
    assert!(
        e.contains("target[1].dns_servers[2]: [::1]:53 is listed twice"),
        "{e}"
    );
    let e = config_error(&mx("mx.example.net", "dns_servers = [\"127.0.0.1:0\"]\n"));
    assert!(e.contains("the port must be 1-65535"), "{e}");
    let e = config_error(&mx("192.0.2.25", "dns_servers = [\"127.0.0.1\"]\n"));
    assert!(
        e.contains("target[1].dns_servers: has no effect: the host is an IP address"),
        "{e}"
    );
    let long = "x".repeat(10_000);
    let e = config_error(&mx(
        "mx.example.net",
        &format!("dns_servers = [\"{long}\"]\n"),
    ));
    assert!(e.len() < 400, "long values are cut: {e}");
}
