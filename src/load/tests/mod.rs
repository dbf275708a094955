//! The loader's errors, warnings and defaults, on the exact text an admin reads.

use std::path::Path;
use std::time::Duration;

use super::*;
use crate::config::{Secret, TlsMode};
use crate::probe::ProbeSpec;

mod oauth2;
use oauth2::oauth2_target;

fn err(text: &str) -> String {
    parse(Path::new("probes.toml"), text)
        .unwrap_err()
        .to_string()
}

#[test]
fn unknown_key_names_line_and_key() {
    let e = err("[global]\ninterval = \"30s\"\nbogus = 1\n");
    assert_eq!(
        e,
        "probes.toml:3:1: global.bogus: unknown key; expected one of `listen`, \
         `interval`, `timeout`, `slow_threshold`, `concurrency`, `log_format`, `log_level`, \
         `web_config_file`, `shard`, `dns_servers`, `ip_protocol`, `source`"
    );
}

#[test]
fn bad_enum_value_in_second_target() {
    let e = err(concat!(
        "[[target]]\nname = \"a\"\nprotocol = \"imap\"\nhost = \"h\"\nusername = \"u\"\npassword_env = \"HOME\"\n",
        "[[target]]\nname = \"b\"\nprotocol = \"imap\"\ntls = \"sometimes\"\n"
    ));
    assert!(
        e.starts_with("probes.toml:10:7: target[2] \"b\".tls: unknown variant `sometimes`"),
        "{e}"
    );
}

#[test]
fn missing_name_points_at_the_table() {
    let e = err("[[target]]\nprotocol = \"imap\"\n");
    assert_eq!(e, "probes.toml:1:1: target[1].name: missing field `name`");
}

#[test]
fn literal_password_refused() {
    let e = err(
        "[[target]]\nname = \"a\"\nprotocol = \"imap\"\nhost = \"h\"\nusername = \"u\"\npassword = \"hunter2\"\n",
    );
    assert!(
        e.starts_with("probes.toml:6:1: target[1] \"a\".password: passwords are never read"),
        "{e}"
    );
    assert!(!e.contains("hunter2"));
}

#[test]
fn plaintext_needs_consent() {
    let e = err(
        "[[target]]\nname = \"a\"\nprotocol = \"imap\"\nhost = \"h\"\ntls = \"none\"\nusername = \"u\"\npassword_env = \"HOME\"\n",
    );
    assert!(
        e.starts_with("probes.toml:5:1: target[1] \"a\".tls: tls = \"none\" sends"),
        "{e}"
    );
}

#[test]
fn duplicate_names_refused() {
    let t = "[[target]]\nname = \"a\"\nprotocol = \"imap\"\nhost = \"h\"\nusername = \"u\"\npassword_env = \"HOME\"\n";
    let e = err(&format!("{t}{t}"));
    assert!(
        e.starts_with("probes.toml:8:1: target[2] \"a\".name: duplicate target name \"a\""),
        "{e}"
    );
}

#[test]
fn timeout_longer_than_interval_refused() {
    let e = err("[global]\ninterval = \"5s\"\ntimeout = \"10s\"\n");
    assert!(
        e.starts_with("probes.toml:3:1: global.timeout: timeout (10s) must not exceed"),
        "{e}"
    );
}

#[test]
fn syntax_error_has_position() {
    let e = err("[[target]\n");
    assert!(e.starts_with("probes.toml:1:10: "), "{e}");
}

#[test]
fn defaults_for_imap() {
    let c = parse(
        Path::new("/nonexistent/probes.toml"),
        "[[target]]\nname = \"a\"\nprotocol = \"imap\"\nhost = \"127.0.0.1\"\nusername = \"u\"\npassword_env = \"HOME\"\n",
    )
    .unwrap();
    let t = &c.targets[0];
    assert_eq!(t.region, "default");
    assert_eq!(t.interval, DEFAULT_INTERVAL);
    let ProbeSpec::Imap(s) = &t.spec else {
        panic!("an imap spec")
    };
    assert_eq!(s.endpoint.port, 993);
    assert_eq!(s.endpoint.tls, TlsMode::Implicit);
    assert_eq!(s.mailbox, "INBOX");
    assert_eq!(c.global.listen.to_string(), DEFAULT_LISTEN);
}

const LEGS: &str = "[[target]]\nname = \"send\"\nprotocol = \"smtp\"\nhost = \"h\"\nusername = \"u@example.test\"\npassword_env = \"HOME\"\n\
    [[target]]\nname = \"inbox\"\nprotocol = \"imap\"\nhost = \"h\"\nusername = \"u@example.test\"\npassword_env = \"HOME\"\n";

#[test]
fn roundtrip_refers_to_legs_anywhere_in_the_file() {
    let rt = "[[target]]\nname = \"rt\"\nprotocol = \"roundtrip\"\nsmtp_target = \"send\"\nimap_target = \"inbox\"\n";
    // Before its legs, and with no interval: one that covers 10s + 10s + 120s + 10s.
    let c = parse(Path::new("p.toml"), &format!("{rt}{LEGS}")).unwrap();
    assert_eq!(c.targets[0].name, "rt");
    assert_eq!(c.targets[0].interval, Duration::from_secs(180));
    assert_eq!(c.targets[0].timeout, Duration::from_secs(150));
    let ProbeSpec::Roundtrip(r) = &c.targets[0].spec else {
        panic!("a roundtrip spec")
    };
    assert_eq!(r.message.to.to_string(), "u@example.test");
    assert_eq!(r.message.from.to_string(), "u@example.test");
}

#[test]
fn roundtrip_errors_name_the_key() {
    let rt = |extra: &str| {
        format!(
            "{LEGS}[[target]]\nname = \"rt\"\nprotocol = \"roundtrip\"\nsmtp_target = \"send\"\nimap_target = \"inbox\"\n{extra}"
        )
    };
    let e = err(&rt("").replace("smtp_target = \"send\"", "smtp_target = \"nope\""));
    assert!(
        e.contains("target[3] \"rt\".smtp_target: no smtp target named \"nope\""),
        "{e}"
    );
    let e = err(&rt("").replace("imap_target = \"inbox\"", "imap_target = \"send\""));
    assert!(
        e.contains("target[3] \"rt\".imap_target: target \"send\" is smtp, not imap or graph"),
        "{e}"
    );
    // Either leg may be Graph, but nothing else: an HTTPS target cannot receive mail.
    let e = err(&format!(
        "{}[[target]]\nname = \"web\"\nprotocol = \"https\"\nurl = \"https://h/\"\n",
        rt("").replace("imap_target = \"inbox\"", "imap_target = \"web\"")
    ));
    assert_eq!(
        e,
        "probes.toml:17:1: target[3] \"rt\".imap_target: target \"web\" is https, not imap or graph"
    );
    let e = err(&rt("timeout = \"5s\"\n"));
    assert!(
        e.contains("target[3] \"rt\".timeout: a round trip's deadline is"),
        "{e}"
    );
    let e = err(&rt("interval = \"1m\"\n"));
    assert!(
        e.contains("target[3] \"rt\".interval: the interval (1m) must cover one whole round trip"),
        "{e}"
    );
    let e = err(&rt("delivery_timeout = \"2h\"\ninterval = \"3h\"\n"));
    assert!(
        e.contains("target[3] \"rt\".cleanup_age: must exceed delivery_timeout"),
        "{e}"
    );
    let e = err(&rt("host = \"h\"\n"));
    assert!(
        e.contains("target[3] \"rt\".host: key `host` does not apply to protocol \"roundtrip\""),
        "{e}"
    );
}

#[test]
fn shards_split_targets_without_overlap() {
    let shards: Vec<Shard> = (0..4).map(|i| format!("{i}/4").parse().unwrap()).collect();
    let mut counts = [0usize; 4];
    for n in 0..4000 {
        let name = format!("target-{n}");
        let owners: Vec<usize> = (0..4).filter(|&i| shards[i].owns(&name)).collect();
        assert_eq!(owners.len(), 1, "exactly one shard owns {name}");
        counts[owners[0]] += 1;
    }
    assert!(
        counts.iter().all(|&c| (800..1200).contains(&c)),
        "{counts:?}"
    );
    assert!("4/4".parse::<Shard>().is_err());
    assert!("1-4".parse::<Shard>().is_err());
    let e = err("[global]\nshard = \"5/3\"\n");
    assert!(
        e.starts_with("probes.toml:2:1: global.shard: shard \"5/3\""),
        "{e}"
    );
}

/// One valid IMAP target, six lines long.
const IMAP: &str = "[[target]]\nname = \"a\"\nprotocol = \"imap\"\nhost = \"h\"\nusername = \"u\"\npassword_env = \"HOME\"\n";

#[test]
fn a_config_without_targets_is_refused() {
    for text in [
        "",
        " \n\t\n\n",
        "# nothing yet\n\n   # really nothing\n",
        "[global]\ninterval = \"30s\"\n[incidents]\nstate_dir = \"/tmp\"\n",
    ] {
        assert_eq!(
            err(text),
            "probes.toml: no targets: a config without [[target]] tables would probe nothing",
            "{text:?}"
        );
    }
}

#[test]
fn a_shard_that_owns_no_target_is_refused() {
    // "a" hashes to shard 0 of 2 (checked here, so the test cannot pass by accident).
    assert!(Shard { index: 0, count: 2 }.owns("a"));
    assert!(
        parse(
            Path::new("p.toml"),
            &format!("[global]\nshard = \"0/2\"\n{IMAP}")
        )
        .is_ok()
    );
    assert_eq!(
        err(&format!("[global]\nshard = \"1/2\"\n{IMAP}")),
        "probes.toml:2:1: global.shard: shard 1/2 owns no target (the file has 1), so this \
         instance would probe nothing: use fewer shards"
    );
}

#[test]
fn numbers_beyond_any_fleet_are_refused() {
    let e = |extra: &str| err(&format!("{IMAP}{extra}\n"));
    assert_eq!(
        e("users = 9223372036854775808"),
        "probes.toml:7:1: target[1] \"a\".users: must be at most 10000000000"
    );
    assert_eq!(
        e("interval = \"1000000000y\""),
        "probes.toml:7:1: target[1] \"a\".interval: must be at most 24h"
    );
    assert_eq!(
        e("slow_threshold = \"1000000000y\""),
        "probes.toml:7:1: target[1] \"a\".slow_threshold: must be at most 24h"
    );
    assert_eq!(
        err(&format!("[global]\ninterval = \"1000000000y\"\n{IMAP}")),
        "probes.toml:2:1: global.interval: must be at most 24h"
    );
    assert_eq!(
        err(&format!("[incidents]\nretention = \"1000000000y\"\n{IMAP}")),
        "probes.toml:2:1: incidents.retention: must be at most 100y"
    );
    let rt = |extra: &str| {
        err(&format!(
            "{LEGS}[[target]]\nname = \"rt\"\nprotocol = \"roundtrip\"\nsmtp_target = \"send\"\nimap_target = \"inbox\"\n{extra}\n"
        ))
    };
    assert_eq!(
        rt("delivery_timeout = \"1000000000y\""),
        "probes.toml:18:1: target[3] \"rt\".delivery_timeout: must be at most 24h"
    );
    assert_eq!(
        rt("poll_interval = \"1000000000y\""),
        "probes.toml:18:1: target[3] \"rt\".poll_interval: must be at most 1h"
    );
    assert_eq!(
        rt("cleanup_age = \"1000000000y\""),
        "probes.toml:18:1: target[3] \"rt\".cleanup_age: must be at most 365d"
    );
}

#[test]
fn long_values_are_cut_in_errors() {
    let long = "b".repeat(5_000_000);
    let cut = format!("{}…", "b".repeat(40));
    assert_eq!(
        err(&format!(
            "[[target]]\nname = \"{long}\"\nprotocol = \"imap\"\n"
        )),
        format!(
            "probes.toml:2:1: target[1].name: \"{cut}\" (5000000 bytes) must be 1-128 \
             characters of letters, digits, '-', '_', '.', ':' and start with a letter or digit"
        )
    );
    // Whoever words the error (here toml/serde), and in keys too.
    let long = "b".repeat(100_000);
    assert_eq!(
        err(&format!("{IMAP}port = \"{long}\"\n")),
        format!(
            "probes.toml:7:8: target[1] \"a\".port: invalid type: string \"{cut}\" (100000 \
             bytes), expected u16"
        )
    );
    let e = err(&format!("{IMAP}{long} = 1\n"));
    assert!(
        e.starts_with(&format!(
            "probes.toml:7:1: target[1] \"a\".{cut}: unknown key"
        )),
        "{e}"
    );
    assert!(e.len() < 300, "{e}");
}

#[test]
fn a_missing_key_points_at_its_table() {
    assert_eq!(
        err(
            "[global]\ninterval = \"1m\"\n\n[[target]]\nname = \"a\"\nprotocol = \"imap\"\nhost = \"h\"\nusername = \"u\"\n"
        ),
        "probes.toml:4:1: target[1] \"a\".password_file: missing: give password_file (a file or \
         systemd credential) or password_env"
    );
}

#[test]
fn unknown_keys_get_the_closest_known_key() {
    assert_eq!(
        err(&format!("{IMAP}mailbx = \"Probe\"\n")),
        "probes.toml:7:1: target[1] \"a\".mailbx: unknown key; did you mean `mailbox`?"
    );
    assert_eq!(
        err(&format!("{IMAP}Timeout = \"5s\"\n")),
        "probes.toml:7:1: target[1] \"a\".Timeout: unknown key; did you mean `timeout`?"
    );
    assert_eq!(
        err(&format!("[globl]\ninterval = \"1m\"\n{IMAP}")),
        "probes.toml:1:2: globl: unknown key; did you mean `global`?"
    );
    assert_eq!(
        err(&format!("{IMAP}bogus = 1\n")),
        "probes.toml:7:1: target[1] \"a\".bogus: unknown key; no key of this table is close to it \
         (see the configuration reference in the README)"
    );
}

#[test]
fn files_named_in_the_config_are_read_bounded() {
    let e = |extra: &str| err(&format!("{IMAP}{extra}\n"));
    assert_eq!(
        e("ca_file = \"/dev/zero\""),
        "probes.toml:7:1: target[1] \"a\".ca_file: cannot read /dev/zero: larger than 4 MiB"
    );
    assert_eq!(
        err(&IMAP.replace("password_env = \"HOME\"", "password_file = \"/dev/zero\"")),
        "probes.toml:6:1: target[1] \"a\".password_file: cannot read /dev/zero: larger than 64 KiB"
    );
    assert_eq!(
        err(
            "[[target]]\nname = \"w\"\nprotocol = \"https\"\nurl = \"https://h/\"\nmethod = \"POST\"\nbody_file = \"/dev/zero\"\n"
        ),
        "probes.toml:6:1: target[1] \"w\".body_file: cannot read /dev/zero: larger than 16 MiB"
    );
    assert_eq!(
        err(&oauth2_target(
            "imap",
            "",
            "token_url = \"https://i/t\"\nclient_id = \"c\"\nclient_assertion_key_file = \"/dev/zero\"\nclient_assertion_cert_file = \"/dev/zero\"\n"
        )),
        "probes.toml:11:1: target[1] \"o\".oauth2.client_assertion_key_file: cannot read /dev/zero: \
         larger than 4 MiB"
    );
}

#[test]
fn fingerprint_tracks_changes() {
    let a = "[[target]]\nname = \"a\"\nprotocol = \"imap\"\nhost = \"h\"\nusername = \"u\"\npassword_env = \"HOME\"\n";
    let b = a.replace("host = \"h\"", "host = \"h2\"");
    let fa = parse(Path::new("p.toml"), a).unwrap().targets[0].fingerprint;
    let fa2 = parse(Path::new("p.toml"), a).unwrap().targets[0].fingerprint;
    let fb = parse(Path::new("p.toml"), &b).unwrap().targets[0].fingerprint;
    assert_eq!(fa, fa2);
    assert_ne!(fa, fb);
}

#[test]
fn fingerprint_tracks_what_the_target_takes_from_global() {
    // A reload that changes only [global]'s interval, timeout or slow threshold changes every
    // target that inherits them: the scheduler must not keep the old ones as unchanged.
    let target = "[[target]]\nname = \"a\"\nprotocol = \"imap\"\nhost = \"h\"\nusername = \"u\"\npassword_env = \"HOME\"\n";
    let fp = |global: &str| {
        let c = parse(
            Path::new("p.toml"),
            &format!("[global]\n{global}\n{target}"),
        )
        .unwrap();
        (c.targets[0].interval, c.targets[0].fingerprint)
    };
    let base = fp("interval = \"60s\"");
    for other in [
        "interval = \"120s\"",
        "interval = \"60s\"\ntimeout = \"5s\"",
        "interval = \"60s\"\nslow_threshold = \"3s\"",
    ] {
        assert_ne!(fp(other).1, base.1, "{other}");
    }
    assert_eq!(fp("interval = \"60s\"  # same"), base);
}

#[test]
fn keys_of_another_protocol_do_not_apply() {
    let https = "[[target]]\nname = \"w\"\nprotocol = \"https\"\nurl = \"https://h/\"\n";
    assert_eq!(
        err(&format!("{IMAP}url = \"https://h/\"\n")),
        "probes.toml:7:1: target[1] \"a\".url: key `url` does not apply to protocol \"imap\""
    );
    assert_eq!(
        err(&format!("{https}host = \"h\"\n")),
        "probes.toml:5:1: target[1] \"w\".host: key `host` does not apply to protocol \"https\""
    );
    assert_eq!(
        err(&format!(
            "{LEGS}[[target]]\nname = \"rt\"\nprotocol = \"roundtrip\"\nsmtp_target = \"send\"\n\
             imap_target = \"inbox\"\n[target.oauth2]\nclient_id = \"c\"\n"
        )),
        "probes.toml:18:9: target[3] \"rt\".oauth2: key `oauth2` does not apply to protocol \"roundtrip\""
    );
}

#[test]
fn a_misspelt_key_is_matched_against_its_own_protocols_keys() {
    let smtp = "[[target]]\nname = \"s\"\nprotocol = \"smtp\"\nhost = \"h\"\n";
    assert_eq!(
        err(&format!("{smtp}mail_frm = \"a@b.example\"\n")),
        "probes.toml:5:1: target[1] \"s\".mail_frm: unknown key; did you mean `mail_from`?"
    );
    // An IMAP target has no `mail_from` to suggest.
    assert_eq!(
        err(&format!("{IMAP}mail_frm = \"a@b.example\"\n")),
        "probes.toml:7:1: target[1] \"a\".mail_frm: unknown key; no key of this table is close to it \
         (see the configuration reference in the README)"
    );
}

/// Each protocol takes exactly these keys besides every target's (the README's tables): the
/// per-protocol structs must neither lose a key nor gain one by accident.
#[test]
fn each_protocol_takes_exactly_its_keys() {
    use crate::probe::registry::spec_kind;
    let endpoint = [
        "host",
        "port",
        "tls",
        "allow_plaintext",
        "ca_file",
        "server_name",
        "dns_servers",
        "ip_protocol",
    ];
    let login = [
        "username",
        "password_file",
        "password_env",
        "password",
        "auth",
        "auth_mechanism",
        "oauth2",
    ];
    let cases: [(Protocol, Vec<&str>); Protocol::ALL.len()] = [
        (
            Protocol::Imap,
            [&endpoint[..], &login, &["mailbox"]].concat(),
        ),
        (
            Protocol::Smtp,
            [
                &endpoint[..],
                &login,
                &["ehlo_name", "mail_from", "send_to"],
            ]
            .concat(),
        ),
        (
            Protocol::Https,
            vec![
                "url",
                "method",
                "body",
                "body_file",
                "headers",
                "expect_status",
                "body_contains",
                "body_regex",
                "max_body",
                "max_redirects",
                "auth",
                "username",
                "password_file",
                "password_env",
                "password",
                "allow_plaintext",
                "ca_file",
                "server_name",
                "check",
                "oauth2",
                "dns_servers",
                "ip_protocol",
            ],
        ),
        (Protocol::Pop3, [&endpoint[..], &login].concat()),
        (
            Protocol::Roundtrip,
            vec![
                "smtp_target",
                "imap_target",
                "send_to",
                "mail_from",
                "delivery_timeout",
                "poll_interval",
                "cleanup_age",
            ],
        ),
        (
            Protocol::Mx,
            vec![
                "domain",
                "port",
                "max_hosts",
                "require",
                "ehlo_name",
                "ca_file",
                "dns_servers",
                "ip_protocol",
            ],
        ),
        (
            Protocol::Graph,
            vec![
                "mailbox",
                "base_url",
                "newest_message",
                "max_body",
                "ca_file",
                "server_name",
                "dns_servers",
                "ip_protocol",
                "oauth2",
            ],
        ),
        (
            Protocol::Gmail,
            vec![
                "mailbox",
                "base_url",
                "max_body",
                "ca_file",
                "server_name",
                "dns_servers",
                "ip_protocol",
                "oauth2",
            ],
        ),
    ];
    assert_eq!(cases.len(), Protocol::ALL.len(), "every protocol is listed");
    for (protocol, want) in cases {
        let mut got = spec_kind(protocol).keys().to_vec();
        let mut want = want;
        got.sort_unstable();
        want.sort_unstable();
        assert_eq!(got, want, "{protocol:?}");
    }
    let mut common = crate::probe::spec::field_names::<RawTarget>().to_vec();
    common.sort_unstable();
    assert_eq!(
        common,
        [
            "interval",
            "name",
            "protocol",
            "provider",
            "region",
            "slow_threshold",
            "timeout",
            "users"
        ]
    );
}

/// The keys are checked where they stand: a domain, not an address or an IP; a bounded
/// `max_hosts`; a known `require`.
#[test]
fn mx_target_keys_are_checked() {
    let load = |extra: &str| {
        let text = format!("[[target]]\nname = \"m\"\nprotocol = \"mx\"\n{extra}\n");
        super::parse(std::path::Path::new("/nonexistent/probes.toml"), &text)
            .map(|cfg| cfg.targets[0].clone())
            .map_err(|e| e.to_string())
    };
    let t = load("domain = \"Example.COM.\"").expect("a domain");
    let crate::probe::ProbeSpec::Mx(spec) = &t.spec else {
        panic!("{t:?}");
    };
    assert_eq!(spec.domain, "Example.COM");
    assert_eq!(spec.endpoint.port, 25);
    // The README's default.
    assert_eq!(spec.max_hosts, 5);
    assert_eq!(spec.require, crate::probe::mx::Require::Preferred);
    for (extra, key, says) in [
        ("", "domain", "missing"),
        ("domain = \"192.0.2.1\"", "domain", "not a mail domain"),
        ("domain = \"localhost\"", "domain", "not a mail domain"),
        ("domain = \"a@example.com\"", "domain", ""),
        (
            "domain = \"example.com\"\nmax_hosts = 0",
            "max_hosts",
            "must be 1-10",
        ),
        (
            "domain = \"example.com\"\nmax_hosts = 11",
            "max_hosts",
            "must be 1-10",
        ),
        ("domain = \"example.com\"\nrequire = \"all\"", "require", ""),
        (
            "domain = \"example.com\"\nhost = \"mx.example.com\"",
            "host",
            "does not apply",
        ),
    ] {
        let e = load(extra).expect_err(extra);
        assert!(
            e.contains(&format!(".{key}")) && e.contains(says),
            "{extra:?}: {e}"
        );
    }
}

#[test]
fn a_reload_keeps_one_copy_of_each_unchanged_target() {
    let smtp = "[[target]]\nname = \"b\"\nprotocol = \"smtp\"\nhost = \"h\"\n";
    let a = format!("{IMAP}{smtp}");
    let old = parse(Path::new("p.toml"), &a).unwrap();
    let mut same = parse(Path::new("p.toml"), &a).unwrap();
    same.share_unchanged(&old);
    for (n, o) in same.targets.iter().zip(&old.targets) {
        assert!(Arc::ptr_eq(n, o), "{} is a second copy", n.name);
    }
    let moved = format!("{IMAP}{}", smtp.replace("\"h\"", "\"h2\""));
    let mut moved = parse(Path::new("p.toml"), &moved).unwrap();
    moved.share_unchanged(&old);
    let changed: Vec<&str> = moved
        .targets
        .iter()
        .zip(&old.targets)
        .filter(|(n, o)| !Arc::ptr_eq(n, o))
        .map(|(n, _)| n.name.as_str())
        .collect();
    assert_eq!(changed, ["b"]);
}
