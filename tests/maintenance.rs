//! Maintenance windows end to end: a real Dovecot stopped during a window added with `mailprobe
//! maintenance add` (while the daemon runs: no restart, no reload) opens no incident though its
//! probes fail and are exported; ending the window with the server still stopped opens one.

mod common;

use std::process::Command;

use common::{Daemon, Env, eventually, http, sample};
use mailprobe_testpeers::dovecot::{Dovecot, Options};
use serde_json::Value;

const GLOBAL: &str = "[global]\ninterval = \"1s\"\ntimeout = \"1s\"\n";

async fn json(d: &Daemon, path: &str) -> Value {
    let (status, body) = http(d.addr, "GET", path).await;
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

/// Runs the mailprobe binary; `(exit success, stdout, stderr)`.
fn mailprobe(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mailprobe"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn ok(args: &[&str]) -> String {
    let (success, out, err) = mailprobe(args);
    assert!(success, "mailprobe {args:?}: {err}");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_stopped_during_a_window_opens_no_incident_and_after_it_does() {
    let env = Env::new();
    let mut dc = Dovecot::start(&env.pki, Options::default());
    let text = format!(
        "{GLOBAL}[incidents]\nstate_dir = \"{}\"\ndown_after = 2\nup_after = 2\n{}{}",
        env.dir.path().join("state").display(),
        env.imap_target("imap-eu", dc.ports.imaps, "region = \"eu\"")
            .replace("region = \"test\"\n", ""),
        env.imap_target("imap-us", dc.ports.imaps, "region = \"us\"")
            .replace("region = \"test\"\n", ""),
    );
    let d = Daemon::start(env.config(&text)).await;
    d.wait_probes("imap-eu", "success", 1.0).await;
    let config = env.config_path();
    let config = config.to_str().unwrap();

    // A name the config does not have is refused, and nothing is stored.
    let (success, _, err) = mailprobe(&[
        "maintenance",
        "add",
        "-c",
        config,
        "--target",
        "imap-nowhere",
        "--duration",
        "1h",
        "--reason",
        "x",
    ]);
    assert!(
        !success && err.contains("no target named \"imap-nowhere\""),
        "{err}"
    );

    // Planned work on the eu target, added while the daemon runs.
    let added = ok(&[
        "maintenance",
        "add",
        "-c",
        config,
        "--target",
        "imap-eu",
        "--duration",
        "1h",
        "--reason",
        "Dovecot upgrade <2.4>",
    ]);
    let id: i64 = added
        .strip_prefix("maintenance window #")
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{added}"));
    let listed = ok(&["maintenance", "list", "-c", config]);
    assert!(
        listed.contains("in force") && listed.contains("Dovecot upgrade <2.4>"),
        "{listed}"
    );
    eventually(20, "the window picked up without a restart", || async {
        let m = d.metrics().await;
        sample(&m, "mailprobe_maintenance", &[("target", "imap-eu")]).filter(|v| *v == 1.0)
    })
    .await;
    let m = d.metrics().await;
    assert_eq!(
        sample(&m, "mailprobe_maintenance", &[("target", "imap-us")]),
        None
    );

    // Dovecot stops for the work on imap-eu. Only imap-eu is covered: imap-us opens an
    // incident, imap-eu (failing just the same, and exported as down) does not join it.
    dc.stop();
    eventually(30, "both targets down", || async {
        let m = d.metrics().await;
        let down = |t| {
            sample(
                &m,
                "mailprobe_target_state",
                &[("target", t), ("state", "down")],
            )
        };
        (down("imap-eu") == Some(1.0) && down("imap-us") == Some(1.0)).then_some(())
    })
    .await;
    let s = eventually(20, "the us incident", || async {
        let s = json(&d, "/api/v1/status").await;
        (s["incidents"].as_array()?.len() == 1).then_some(s)
    })
    .await;
    let inc = &s["incidents"][0];
    assert_eq!(
        inc["summary"]["targets"],
        serde_json::json!(["imap-us"]),
        "{s}"
    );
    let target = |name: &str| {
        s["targets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(target("imap-eu")["under_maintenance"], true);
    assert_eq!(target("imap-eu")["state"], "down");
    assert_eq!(target("imap-us")["under_maintenance"], false);
    assert_eq!(
        s["maintenance"]["windows"][0]["reason"],
        "Dovecot upgrade <2.4>"
    );
    assert_eq!(s["maintenance"]["windows"][0]["active"], true);
    let (_, page) = http(d.addr, "GET", "/").await;
    assert!(page.contains("Under maintenance"), "{page}");
    assert!(
        page.contains("Dovecot upgrade &lt;2.4&gt;"),
        "escaped on the page"
    );
    let m = d.metrics().await;
    assert_eq!(
        sample(
            &m,
            "mailprobe_incidents_open",
            &[("scope", "region"), ("region", "eu")]
        ),
        Some(0.0)
    );

    // The window ends with the server still stopped: now it is an incident.
    let ended = ok(&["maintenance", "end", "-c", config, &id.to_string()]);
    assert!(ended.contains("ended"), "{ended}");
    eventually(
        20,
        "imap-eu in an incident once its window ended",
        || async {
            let s = json(&d, "/api/v1/status").await;
            let ins = s["incidents"].as_array()?;
            ins.iter()
                .any(|i| {
                    i["summary"]["targets"]
                        .as_array()
                        .is_some_and(|t| t.iter().any(|n| n == "imap-eu"))
                })
                .then_some(())
        },
    )
    .await;
    eventually(20, "the maintenance series gone", || async {
        let m = d.metrics().await;
        sample(&m, "mailprobe_maintenance", &[("target", "imap-eu")])
            .is_none()
            .then_some(())
    })
    .await;
    let (success, _, err) = mailprobe(&["maintenance", "end", "-c", config, &id.to_string()]);
    assert!(!success && err.contains("no current or upcoming"), "{err}");
    dc.restart();
    d.stop().await;
}

/// Every rollup row of the last two days (a test running over UTC midnight has two), summed
/// into one: `(observed, maintenance, partial + major, share down)` in ms.
fn rollup(state: &std::path::Path) -> (i64, i64, i64, f64) {
    let today = mailprobe::incidents::uptime::day_of(std::time::SystemTime::now());
    let rows = mailprobe::incidents::store::Store::open_read_only(state)
        .unwrap()
        .uptime(today - 1)
        .unwrap();
    rows.iter().fold((0, 0, 0, 0.0), |(o, m, d, s), r| {
        (
            o + r.observed_ms,
            m + r.maintenance_ms,
            d + r.partial_ms + r.major_ms,
            s + r.down_share_ms,
        )
    })
}

/// The time a real Dovecot is stopped under a maintenance window goes to the day's rollup as
/// maintenance, not downtime: the uptime bar says "under maintenance", the uptime percentage
/// does not drop, and it stays so across a restart of the daemon.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_stopped_under_a_window_is_maintenance_in_the_uptime_rollup_across_restarts() {
    let env = Env::new();
    let mut dc = Dovecot::start(&env.pki, Options::default());
    let state = env.dir.path().join("state");
    let text = format!(
        "{GLOBAL}[incidents]\nstate_dir = \"{}\"\ndown_after = 2\nup_after = 2\n{}",
        state.display(),
        env.imap_target("imap-eu", dc.ports.imaps, "region = \"eu\"")
            .replace("region = \"test\"\n", ""),
    );
    let d = Daemon::start(env.config(&text)).await;
    d.wait_probes("imap-eu", "success", 1.0).await;
    // Some time up first, for the uptime percentage to be a share of.
    eventually(30, "time up in the rollup", || async {
        (rollup(&state).0 > 0).then_some(())
    })
    .await;
    let config = env.config_path();
    let config = config.to_str().unwrap();
    ok(&[
        "maintenance",
        "add",
        "-c",
        config,
        "--target",
        "imap-eu",
        "--duration",
        "1h",
        "--reason",
        "Dovecot upgrade",
    ]);
    eventually(20, "the window in force", || async {
        let m = d.metrics().await;
        sample(&m, "mailprobe_maintenance", &[("target", "imap-eu")]).filter(|v| *v == 1.0)
    })
    .await;
    dc.stop();
    eventually(30, "imap-eu down", || async {
        let m = d.metrics().await;
        sample(
            &m,
            "mailprobe_target_state",
            &[("target", "imap-eu"), ("state", "down")],
        )
        .filter(|v| *v == 1.0)
    })
    .await;
    // Two ticks of the incident service (5 s each) with the server down and the window on.
    let (_, before, _, _) = rollup(&state);
    let grown = |from: i64| {
        let state = state.clone();
        async move {
            eventually(30, "maintenance time in the rollup", || async {
                let r = rollup(&state);
                (r.1 >= from + 10_000).then_some(r)
            })
            .await
        }
    };
    let (observed, maintenance, down, share) = grown(before).await;
    assert!(maintenance <= observed, "{maintenance} of {observed}");
    assert_eq!((down, share), (0, 0.0), "no downtime under the window");
    let summary = json(&d, "/api/v1/summary").await;
    assert_eq!(
        summary["components"][0]["uptime_90d"], 100.0,
        "maintenance takes no uptime away: {summary}"
    );
    let (_, page) = http(d.addr, "GET", "/status").await;
    let today = page
        .split("</div><div class=\"axis\">")
        .next()
        .unwrap()
        .rsplit("<span")
        .next()
        .unwrap()
        .to_string();
    assert!(today.contains("class=\"maintenance\""), "{today}");
    assert!(today.contains("under maintenance for"), "{today}");
    assert!(!today.contains("outage"), "{today}");

    // A restart: the window comes from the database, the target is still down, and its time
    // still goes to maintenance.
    d.stop().await;
    let (_, before, _, _) = rollup(&state);
    let d = Daemon::start(env.config(&text)).await;
    let (_, maintenance, down, share) = grown(before).await;
    assert!(maintenance >= before + 10_000);
    assert_eq!((down, share), (0, 0.0), "no downtime after the restart");
    let m = d.metrics().await;
    assert_eq!(
        sample(
            &m,
            "mailprobe_target_state",
            &[("target", "imap-eu"), ("state", "down")]
        ),
        Some(1.0)
    );
    dc.restart();
    d.stop().await;
}
