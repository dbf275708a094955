//! The incident timeline end to end: a real Dovecot goes away and comes back, the daemon is
//! restarted in the middle, and the story is told by the API, the CLI and the status page in a
//! real headless browser.

mod common;

use common::{Daemon, Env, eventually, http, json_ok, mailprobe_ok, sample};
use mailprobe_testpeers::dovecot::{Dovecot, Options};
use mailprobe_testpeers::util::{free_port, require_program};
use serde_json::Value;

const GLOBAL: &str = "[global]\ninterval = \"1s\"\ntimeout = \"1s\"\n";

fn config(env: &Env, dc: &Dovecot) -> String {
    format!(
        "{GLOBAL}[incidents]\nstate_dir = \"{}\"\ndown_after = 2\nup_after = 2\n{}{}",
        env.dir.path().join("state").display(),
        env.imap_target("imap-eu-1", dc.ports.imaps, "region = \"eu\"\nusers = 500")
            .replace("region = \"test\"\n", ""),
        env.imap_target(
            "imap-eu-2",
            dc.ports.imap,
            "region = \"eu\"\nusers = 1500\ntls = \"starttls\"\nhost = \"localhost\""
        )
        .replace("region = \"test\"\n", "")
        .replace("host = \"127.0.0.1\"\n", ""),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_is_told_survives_a_restart_and_resolves() {
    let env = Env::new();
    let mut dc = Dovecot::start(&env.pki, Options::default());
    let text = config(&env, &dc);
    let d = Daemon::start(env.config(&text)).await;
    d.wait_probes("imap-eu-1", "success", 1.0).await;
    d.wait_probes("imap-eu-2", "success", 1.0).await;

    // Dovecot goes away: both eu targets down, one region-wide incident.
    dc.stop();
    let incident = eventually(30, "an open region incident", || async {
        let s = json_ok(&d, "/api/v1/status").await;
        let inc = s["incidents"].as_array()?.first()?.clone();
        (inc["summary"]["scope"] == "region" && inc["summary"]["down"] == 2).then_some(inc)
    })
    .await;
    let summary = &incident["summary"];
    assert_eq!(summary["regions"], serde_json::json!(["eu"]));
    assert_eq!(summary["users"]["known"], 2000);
    assert_eq!(summary["cause"]["class"], "connect_refused");
    assert_eq!(summary["cause"]["phase"], "connect");
    assert_eq!(incident["status"], "ongoing");
    let id = incident["id"].as_i64().unwrap();
    let m = d.metrics().await;
    assert_eq!(
        sample(
            &m,
            "mailprobe_incidents_open",
            &[("scope", "region"), ("region", "eu")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &m,
            "mailprobe_target_state",
            &[("target", "imap-eu-1"), ("state", "down")]
        ),
        Some(1.0)
    );

    // The daemon restarts while the incident is open: it is still open afterwards.
    d.stop().await;
    let d = Daemon::start(env.config(&text)).await;
    let s = json_ok(&d, "/api/v1/status").await;
    assert_eq!(s["incidents"][0]["id"].as_i64(), Some(id), "{s}");
    assert_eq!(s["incidents"][0]["status"], "ongoing");

    // Dovecot is back: the incident resolves, with its whole story.
    dc.restart();
    let resolved = eventually(30, "the incident resolved", || async {
        let list = json_ok(&d, "/api/v1/incidents?since=1h").await;
        let inc = list
            .as_array()?
            .iter()
            .find(|i| i["id"].as_i64() == Some(id))?
            .clone();
        inc["closed_at"].is_string().then_some(inc)
    })
    .await;
    let timeline = resolved["timeline"].as_array().unwrap();
    let events: Vec<&str> = timeline
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert!(events[0].starts_with("opened"), "{events:?}");
    assert!(events.last().unwrap().starts_with("resolved"), "{events:?}");
    let status = resolved["status"].as_str().unwrap();
    assert!(status.starts_with("resolved after "), "{status}");
    let m = d.metrics().await;
    assert_eq!(
        sample(
            &m,
            "mailprobe_incidents_open",
            &[("scope", "region"), ("region", "eu")]
        ),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &m,
            "mailprobe_target_state",
            &[("target", "imap-eu-1"), ("state", "up")]
        ),
        Some(1.0)
    );
    d.stop().await;

    // The CLI reads the same history, in every format.
    let cfg = env.config_path();
    let cfg = cfg.to_str().unwrap();
    let table = mailprobe_ok(&["incidents", "-c", cfg, "--since", "1h"]);
    let header = table.lines().next().unwrap();
    for col in [
        "TIME",
        "EVENT",
        "SCOPE",
        "AFFECTED USERS",
        "CAUSE",
        "STATUS",
    ] {
        assert!(header.contains(col), "{header}");
    }
    assert!(table.contains("region: eu [imap] (2 targets)"), "{table}");
    assert!(table.contains("connect_refused at connect"), "{table}");
    assert!(table.contains("resolved after "), "{table}");
    let markdown = mailprobe_ok(&[
        "incidents",
        "-c",
        cfg,
        "--since",
        "1h",
        "--format",
        "markdown",
    ]);
    assert!(
        markdown.starts_with("| incident | time | event |"),
        "{markdown}"
    );
    let csv = mailprobe_ok(&["incidents", "-c", cfg, "--since", "1h", "--format", "csv"]);
    assert!(
        csv.starts_with("incident,time,event,scope,affected_users,cause,status\r\n"),
        "{csv}"
    );
    assert!(csv.lines().count() >= 3, "{csv}");
    let json_out: Value =
        serde_json::from_str(&mailprobe_ok(&["incidents", "-c", cfg, "--format", "json"])).unwrap();
    assert_eq!(json_out[0]["id"].as_i64(), Some(id));
    // Nothing secret anywhere.
    for out in [&table, &markdown, &csv] {
        assert!(!out.contains(common::USER) && !out.contains(common::PASSWORD));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_an_ongoing_incident_in_a_real_browser() {
    let chromium = require_program("chromium", "chromium");
    let env = Env::new();
    let closed = free_port();
    let text = format!(
        "{GLOBAL}[incidents]\ndown_after = 1\n{}{}",
        env.imap_target(
            "webmail-gateway",
            closed,
            "region = \"eu-west\"\nusers = 1200"
        )
        .replace("region = \"test\"\n", ""),
        env.imap_target("imap-backup", closed, "region = \"eu-west\"")
            .replace("region = \"test\"\n", ""),
    )
    .replace(
        "[incidents]\n",
        &format!(
            "[incidents]\nstate_dir = \"{}\"\n",
            env.dir.path().join("state").display()
        ),
    );
    let d = Daemon::start(env.config(&text)).await;
    eventually(30, "an open incident", || async {
        let s = json_ok(&d, "/api/v1/status").await;
        (!s["incidents"].as_array()?.is_empty()).then_some(())
    })
    .await;

    let profile = env.dir.path().join("chromium-profile");
    let url = format!("http://{}/", d.addr);
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(["--dump-dom", &url])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dom.contains("Ongoing incidents (1)"), "{dom}");
    assert!(dom.contains("region: eu-west [imap] (2 targets)"), "{dom}");
    assert!(dom.contains("connect_refused at connect"), "{dom}");
    assert!(dom.contains("affected users: at least 1200"), "{dom}");
    assert!(
        dom.contains("<td class=\"down\">0/2 up, 2 down</td>"),
        "{dom}"
    );
    assert!(!dom.contains(common::USER));
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_reload_is_refused_and_a_removed_target_never_reads_as_recovered() {
    let env = Env::new();
    let dc = Dovecot::start(&env.pki, Options::default());
    let closed = free_port();
    let up = env.imap_target("imap-up", dc.ports.imaps, "");
    let gone = env.imap_target("imap-gone", closed, "");
    let state = format!(
        "[incidents]\nstate_dir = \"{}\"\ndown_after = 2\n",
        env.dir.path().join("state").display()
    );
    let d = Daemon::start(env.config(&format!("{GLOBAL}{state}{up}{gone}"))).await;
    let incident = eventually(30, "an incident for imap-gone", || async {
        let s = json_ok(&d, "/api/v1/status").await;
        let inc = s["incidents"].as_array()?.first()?.clone();
        (inc["summary"]["targets"] == serde_json::json!(["imap-gone"])).then_some(inc)
    })
    .await;
    let id = incident["id"].as_i64().unwrap();

    // An empty file, one of blanks, one of comments: refused, the old config keeps probing and
    // the incident stays open.
    for empty in ["", " \n\t\n", "# moving to the new fleet\n"] {
        std::fs::write(env.config_path(), empty).unwrap();
        let (status, body) = http(d.addr, "POST", "/-/reload").await;
        assert_eq!(
            (status, body.trim()),
            (
                500,
                format!(
                    "reload refused, old config still running: {}: no targets: a config without \
                     [[target]] tables would probe nothing",
                    env.config_path().display()
                )
                .as_str()
            ),
            "{empty:?}"
        );
    }
    let m = d.metrics().await;
    assert_eq!(
        sample(&m, "mailprobe_targets", &[("protocol", "imap")]),
        Some(2.0)
    );
    assert_eq!(
        sample(&m, "mailprobe_config_last_reload_successful", &[]),
        Some(0.0)
    );
    let s = json_ok(&d, "/api/v1/status").await;
    assert_eq!(s["incidents"][0]["id"].as_i64(), Some(id), "{s}");

    // imap-gone really leaves the config while down: its incident ends, but as a removal.
    std::fs::write(env.config_path(), format!("{GLOBAL}{state}{up}")).unwrap();
    let (status, body) = http(d.addr, "POST", "/-/reload").await;
    assert_eq!(status, 200, "{body}");
    let ended = eventually(30, "the incident closed", || async {
        let list = json_ok(&d, "/api/v1/incidents?since=1h").await;
        let inc = list
            .as_array()?
            .iter()
            .find(|i| i["id"].as_i64() == Some(id))?
            .clone();
        inc["closed_at"].is_string().then_some(inc)
    })
    .await;
    let last = ended["timeline"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        last["event"],
        "ended: removed from monitoring before recovering: imap-gone (no recovery seen)"
    );
    assert!(
        last["status"]
            .as_str()
            .unwrap()
            .ends_with(": removed from monitoring"),
        "{last}"
    );
    assert_eq!(last["stage"], "removed");
    assert_eq!(
        ended["summary"]["removed"],
        serde_json::json!(["imap-gone"])
    );
    let events: Vec<&str> = ended["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert!(
        events.iter().all(|e| !e.contains("every target is up")),
        "{events:?}"
    );
    d.stop().await;
}

/// The soak's story: Postfix throttled its listener (its SASL backend had died), a full accept
/// queue drops SYNs just as a dead path does, and the host answered IMAP all along. Here a
/// listener whose queue is full and never accepted stands in for it, on the same host as a real
/// Dovecot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_listener_is_not_called_a_dead_host_while_its_host_answers() {
    let env = Env::new();
    let dc = Dovecot::start(&env.pki, Options::default());
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    // Fill the accept queue: connections complete until it is full, then SYNs are dropped.
    let mut held = Vec::new();
    while let Ok(Ok(s)) = tokio::time::timeout(
        std::time::Duration::from_millis(500),
        tokio::net::TcpStream::connect(addr),
    )
    .await
    {
        held.push(s);
        assert!(held.len() < 64, "the accept queue never filled");
    }
    let text = format!(
        "{GLOBAL}[incidents]\nstate_dir = \"{}\"\ndown_after = 2\n{}{}",
        env.dir.path().join("state").display(),
        env.imap_target("imap-same-host", dc.ports.imaps, ""),
        env.mx_target("smtp-throttled", addr.port(), ""),
    );
    let d = Daemon::start(env.config(&text)).await;
    let incident = eventually(30, "an incident for smtp-throttled", || async {
        let s = json_ok(&d, "/api/v1/status").await;
        let inc = s["incidents"].as_array()?.first()?.clone();
        (inc["summary"]["targets"] == serde_json::json!(["smtp-throttled"])).then_some(inc)
    })
    .await;
    assert_eq!(incident["summary"]["cause"]["class"], "connect_timeout");
    assert_eq!(
        incident["summary"]["hint"],
        format!(
            "no TCP answer within 1s, but imap-same-host on the same host answers (port {}): the \
             host and the path to it work, so the listener on port {} is overloaded (a full \
             accept queue drops connections just as a dead path does) or filtered",
            dc.ports.imaps,
            addr.port()
        )
    );
    d.stop().await;
    drop(listener);
}
