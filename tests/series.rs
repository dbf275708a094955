//! What one target costs on `/metrics`: the series a live daemon exports per target, counted for
//! every protocol against real peers (Dovecot, Postfix, the HTTPS server), healthy and failing,
//! and held to the budget the README's metrics reference promises. At 10,000 targets and three
//! locations every series per target is 30,000 series in someone's Prometheus.

mod common;

use std::collections::BTreeMap;

use common::{Daemon, Env, eventually};
use mailprobe::probe::Protocol;
use mailprobe_testpeers::dovecot::{Dovecot, Options};
use mailprobe_testpeers::https::HttpsServer;
use mailprobe_testpeers::postfix::Postfix;

const GLOBAL: &str = "[global]\ninterval = \"2s\"\ntimeout = \"2s\"\nslow_threshold = \"5s\"\n";

/// The most series one target of `protocol` may export by default (`process_*`, build and
/// global series aside), whether it succeeds or fails with one class at one phase. Each further
/// `(class, phase)` a target fails with later adds one counter.
fn budget(protocol: Protocol) -> usize {
    match protocol {
        Protocol::Imap | Protocol::Smtp | Protocol::Pop3 => 13,
        // One more than IMAP and SMTP: the status code of the last response.
        Protocol::Https => 14,
        // Like HTTPS: the status code of the last response.
        Protocol::Graph | Protocol::Gmail => 14,
        Protocol::Roundtrip => 16,
        // SMTP's, the count of MX hosts, and per host probed (two here, bounded by max_hosts):
        // success, TLS info and certificate expiry.
        Protocol::Mx => 13 + 1 + 3 * 2,
    }
}

/// Every sample line of `text` that belongs to target `name`, by series (name and labels).
fn series_of<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    let label = format!("target=\"{name}\"");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' ').map(|(series, _)| series))
        .filter(|series| {
            series.split_once('{').is_some_and(|(_, labels)| {
                labels
                    .trim_end_matches('}')
                    .split(',')
                    .any(|kv| kv == label)
            })
        })
        .collect()
}

/// The targets of the fleet below, one healthy and one failing per protocol.
fn fixtures(protocol: Protocol) -> [&'static str; 2] {
    match protocol {
        Protocol::Imap => ["imap-up", "imap-down"],
        Protocol::Smtp => ["smtp-up", "smtp-down"],
        Protocol::Https => ["https-up", "https-down"],
        Protocol::Roundtrip => ["rt-up", "rt-down"],
        Protocol::Pop3 => ["pop3-up", "pop3-down"],
        Protocol::Mx => ["mx-up", "mx-down"],
        Protocol::Graph => ["graph-up", "graph-down"],
        Protocol::Gmail => ["gmail-up", "gmail-down"],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_protocol_stays_within_its_series_budget_up_and_down() {
    let env = Env::new();
    let dc = Dovecot::start(&env.pki, Options::default());
    let pf = Postfix::start(&env.pki, &dc, None);
    let web = HttpsServer::start(mailprobe_testpeers::https::Options::new(
        env.pki.valid.clone(),
    ))
    .await;
    let closed = mailprobe_testpeers::util::free_port();
    // The MX targets' domain: a preferred host on the Postfix, a backup where nothing listens.
    let domain = format!("s.{}", mailprobe_testpeers::dns::DOMAIN);
    let (mx1, dead) = (format!("mx1.{domain}"), format!("dead.{domain}"));
    let dns = mailprobe_testpeers::dns::Dnsmasq::serve(
        &mailprobe_testpeers::dns::Zone::default()
            .host(&mx1, [127, 0, 0, 1].into())
            .host(&dead, [127, 0, 0, 2].into())
            .mx(&domain, &mx1, 10)
            .mx(&domain, &dead, 20),
    );
    let mx_up_port = format!("port = {}\n", pf.ports.smtp);
    let tokens = mailprobe_testpeers::oauth::TokenServer::start(
        &env.pki.valid,
        std::time::Duration::from_secs(3600),
    )
    .await;
    tokens.add_client(
        "series-app",
        mailprobe_testpeers::oauth::Client {
            secret: Some("series-secret".into()),
            assertion_key: None,
            user: "probe@contoso.test".into(),
        },
    );
    let graph =
        mailprobe_testpeers::graph::GraphServer::start(&env.pki.valid, tokens.validator()).await;
    graph.add_mailbox("probe@contoso.test");
    let account = mailprobe_testpeers::pki::AppCredential::generate(&env.dir.path().join("sa"));
    tokens.add_service_account("sa@series.test", account.public_key.clone());
    let sa_key = env.dir.path().join("sa.json");
    std::fs::write(
        &sa_key,
        serde_json::json!({
            "type": "service_account",
            "private_key": std::fs::read_to_string(&account.key).unwrap(),
            "client_email": "sa@series.test",
            "token_uri": tokens.token_url,
        })
        .to_string(),
    )
    .unwrap();
    let tokens = std::sync::Arc::new(tokens);
    let t = tokens.clone();
    let gmail = mailprobe_testpeers::gmail::GmailServer::start(
        &env.pki.valid,
        std::sync::Arc::new(move |token: &str| t.token_user(token)),
    )
    .await;
    gmail.add_mailbox("probe@example.test");
    let gmail_target = |name: &str, base: &str| {
        format!(
            "[[target]]\nname = \"{name}\"\nregion = \"test\"\nprotocol = \"gmail\"\nmailbox = \"probe@example.test\"\n\
             base_url = \"{base}\"\nca_file = \"{ca}\"\n[target.oauth2]\nservice_account_key_file = \"{key}\"\n\
             ca_file = \"{ca}\"\n",
            ca = env.pki.ca.display(),
            key = sa_key.display(),
        )
    };
    let graph_target = |name: &str, base: &str| {
        format!(
            "[[target]]\nname = \"{name}\"\nregion = \"test\"\nprotocol = \"graph\"\nmailbox = \"probe@contoso.test\"\n\
             base_url = \"{base}\"\nca_file = \"{ca}\"\n[target.oauth2]\ntoken_url = \"{token}\"\n\
             client_id = \"series-app\"\nclient_secret_file = \"{secret}\"\nca_file = \"{ca}\"\n",
            ca = env.pki.ca.display(),
            token = tokens.token_url,
            secret = env.secret("series-app.secret", "series-secret").display(),
        )
    };
    let mut text = GLOBAL.to_string();
    for p in Protocol::ALL {
        let [up, down] = fixtures(*p);
        text += &match p {
            Protocol::Imap => {
                env.imap_target(up, dc.ports.imaps, "") + &env.imap_target(down, closed, "")
            }
            Protocol::Smtp => {
                env.smtp_target(up, pf.ports.submission, "") + &env.smtp_target(down, closed, "")
            }
            Protocol::Https => format!(
                "[[target]]\nname = \"{up}\"\nregion = \"test\"\nprotocol = \"https\"\nurl = \"{}\"\nca_file = \"{ca}\"\n\
                 [[target]]\nname = \"{down}\"\nregion = \"test\"\nprotocol = \"https\"\nurl = \"https://127.0.0.1:{closed}/\"\nca_file = \"{ca}\"\n",
                web.url("/owa/"),
                ca = env.pki.ca.display(),
            ),
            // The failing round trip cannot send: its SMTP leg is the closed port.
            Protocol::Roundtrip => format!(
                "[[target]]\nname = \"{up}\"\nregion = \"test\"\nprotocol = \"roundtrip\"\nsmtp_target = \"smtp-up\"\n\
                 imap_target = \"imap-up\"\ndelivery_timeout = \"4s\"\ninterval = \"12s\"\n\
                 [[target]]\nname = \"{down}\"\nregion = \"test\"\nprotocol = \"roundtrip\"\nsmtp_target = \"smtp-down\"\n\
                 imap_target = \"imap-up\"\ndelivery_timeout = \"4s\"\ninterval = \"12s\"\n"
            ),
            Protocol::Pop3 => {
                env.pop3_target(up, dc.ports.pop3s, "") + &env.pop3_target(down, closed, "")
            }
            Protocol::Mx => [
                (up, mx_up_port.clone()),
                (down, format!("port = {closed}\n")),
            ]
            .iter()
            .map(|(name, port)| {
                format!(
                    "[[target]]\nname = \"{name}\"\nregion = \"test\"\nprotocol = \"mx\"\n\
                         domain = \"{domain}\"\n{port}dns_servers = [\"{}\"]\nca_file = \"{}\"\n",
                    dns.addr,
                    env.pki.ca.display(),
                )
            })
            .collect(),
            Protocol::Graph => {
                graph_target(up, &graph.base_url())
                    + &graph_target(down, &format!("https://localhost:{closed}"))
            }
            Protocol::Gmail => {
                gmail_target(up, &gmail.base_url())
                    + &gmail_target(down, &format!("https://localhost:{closed}"))
            }
        };
    }
    let d = Daemon::start(env.config(&text)).await;

    // Up (and down from the start): each target has run, its success gauge says how, and its
    // health has been exported.
    let up = wait_for(&d, &[1.0, 0.0]).await;
    // Then the targets that were up fail, each with one class: the most series a target has,
    // since what it learnt while up (last success, certificate, connection) stays.
    for p in Protocol::ALL {
        let [t, _] = fixtures(*p);
        match p {
            Protocol::Imap | Protocol::Smtp | Protocol::Pop3 => {
                env.secret(&format!("{t}.pass"), "not-the-password");
            }
            Protocol::Https => text = text.replace(&web.url("/owa/"), &web.url("/missing")),
            // Its legs fail, so it does.
            Protocol::Roundtrip => {}
            // Its preferred host's port closes.
            Protocol::Mx => text = text.replace(&mx_up_port, &format!("port = {closed}\n")),
            // Gmail refuses the token for the mailbox: 403 PERMISSION_DENIED.
            Protocol::Gmail => gmail.refuse(
                "probe@example.test",
                mailprobe_testpeers::gmail::Refusal {
                    status: 403,
                    canonical: "PERMISSION_DENIED",
                    reason: "forbidden",
                    message: "Delegation denied",
                    retry_after: None,
                    times: None,
                },
            ),
            // Graph stops serving the mailbox: 403 ErrorAccessDenied.
            Protocol::Graph => graph.refuse(
                "probe@contoso.test",
                mailprobe_testpeers::graph::Refusal {
                    status: 403,
                    code: "ErrorAccessDenied",
                    message: "Access is denied. Check credentials and try again.",
                    retry_after: None,
                    times: None,
                },
            ),
        }
    }
    std::fs::write(env.config_path(), env.with_state(&text)).unwrap();
    let (status, body) = common::http(d.addr, "POST", "/-/reload").await;
    assert_eq!(status, 200, "{body}");
    let down = wait_for(&d, &[0.0, 0.0]).await;
    d.stop().await;

    let mut counts = BTreeMap::new();
    let mut over = Vec::new();
    for (when, m) in [("up", &up), ("down", &down)] {
        for p in Protocol::ALL {
            for t in fixtures(*p) {
                let series = series_of(m, t);
                counts.insert(format!("{t} {when}"), series.len());
                if series.len() > budget(*p) {
                    over.push(format!(
                        "{t} ({}, {when}) exports {} series, over its budget of {}:\n{}",
                        p.as_str(),
                        series.len(),
                        budget(*p),
                        series.join("\n")
                    ));
                }
            }
        }
    }
    eprintln!("series per target: {counts:?}");
    assert!(over.is_empty(), "{}", over.join("\n\n"));
    // The up-then-down targets really failed with a class, and kept what they learnt.
    for p in Protocol::ALL {
        let [t, _] = fixtures(*p);
        assert!(
            common::sample(&down, "mailprobe_probe_failure_info", &[("target", t)]).is_some()
                && common::sample(
                    &down,
                    "mailprobe_probe_last_success_timestamp_seconds",
                    &[("target", t)]
                )
                .is_some(),
            "{t}: {:?}",
            series_of(&down, t)
        );
    }
}

/// The exposition once the first and second target of every protocol have a success gauge of
/// `want[0]` and `want[1]`, and a health.
async fn wait_for(d: &Daemon, want: &[f64; 2]) -> String {
    eventually(
        90,
        &format!("every target probed with success {want:?}"),
        || async {
            let m = d.metrics().await;
            Protocol::ALL
                .iter()
                .flat_map(|p| fixtures(*p).into_iter().zip(*want))
                .all(|(t, want)| {
                    common::sample(&m, "mailprobe_probe_success", &[("target", t)]) == Some(want)
                        && common::sample(&m, "mailprobe_target_state", &[("target", t)]).is_some()
                })
                .then_some(m)
        },
    )
    .await
}
