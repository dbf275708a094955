//! The Atom feed checked by a real feed parser (Python's feedparser, Debian's
//! python3-feedparser): a real Dovecot stops and comes back, a person adds a hostile note, and
//! the feed (whole and per region) is well-formed Atom with one stable entry per event, the
//! note's text intact and never markup.

mod common;

use std::process::Command;

use common::{Daemon, Env, eventually, http};
use mailprobe_testpeers::dovecot::{Dovecot, Options};
use mailprobe_testpeers::util::require_program;
use serde_json::Value;

const GLOBAL: &str = "[global]\ninterval = \"1s\"\ntimeout = \"1s\"\n";
const HOSTILE: &str = "Cause found </content><script>alert(1)</script> & ]]> \"disk\" <b>full</b>";

/// What feedparser makes of `xml`: bozo, the feed's id, title and links, and each entry's id,
/// title, link, category, content and updated, as JSON.
const PARSE: &str = r#"
import json, sys, feedparser
d = feedparser.parse(sys.stdin.buffer.read())
print(json.dumps({
    "bozo": int(d.bozo),
    "bozo_exception": str(d.get("bozo_exception", "")),
    "version": d.version,
    "id": d.feed.get("id"),
    "title": d.feed.get("title"),
    "updated": d.feed.get("updated"),
    "links": [{"rel": l.get("rel"), "href": l.get("href")} for l in d.feed.get("links", [])],
    "entries": [{
        "id": e.get("id"),
        "title": e.get("title"),
        "link": e.get("link"),
        "updated": e.get("updated"),
        "category": e.get("tags", [{}])[0].get("term"),
        "content": e.get("content", [{}])[0].get("value"),
        "content_type": e.get("content", [{}])[0].get("type"),
    } for e in d.entries],
}))
"#;

fn parse(xml: &str) -> Value {
    use std::io::Write;
    let python = require_program("python3", "python3-feedparser");
    let mut child = Command::new(python)
        .args(["-c", PARSE])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(xml.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "feedparser: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

async fn get(d: &Daemon, path: &str) -> (u16, String) {
    http(d.addr, "GET", path).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_tells_openings_notes_and_resolutions_to_a_real_feed_parser() {
    let env = Env::new();
    let mut dc = Dovecot::start(&env.pki, Options::default());
    // us: a Dovecot of its own that keeps running, so us has no incident.
    let us_dc = Dovecot::start(&env.pki, Options::default());
    let text = format!(
        "{GLOBAL}[incidents]\nstate_dir = \"{}\"\ndown_after = 2\nup_after = 2\n{}{}",
        env.dir.path().join("state").display(),
        env.imap_target("imap-eu", dc.ports.imaps, "region = \"eu\"")
            .replace("region = \"test\"\n", ""),
        env.imap_target("imap-us", us_dc.ports.imaps, "region = \"us\"")
            .replace("region = \"test\"\n", ""),
    );
    // Both listeners: the public one serves the feed in the public page's words.
    let private = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let public = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let public_addr = public.local_addr().unwrap();
    let addr = private.local_addr().unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(mailprobe::daemon::run_listeners(
        env.config(&text),
        mailprobe::daemon::Listeners {
            private,
            public: Some(public),
        },
        shutdown.clone(),
    ));
    let d = Daemon {
        addr,
        shutdown,
        task,
    };
    d.wait_probes("imap-eu", "success", 1.0).await;
    dc.stop();
    let eu = eventually(30, "an eu incident", || async {
        let (_, body) = get(&d, "/api/v1/status").await;
        let s: Value = serde_json::from_str(&body).ok()?;
        s["incidents"]
            .as_array()?
            .iter()
            .find(|i| i["summary"]["regions"] == serde_json::json!(["eu"]))?["id"]
            .as_i64()
    })
    .await;
    let cfg = env.config_path();
    let out = Command::new(env!("CARGO_BIN_EXE_mailprobe"))
        .args([
            "incidents",
            "note",
            "-c",
            cfg.to_str().unwrap(),
            &eu.to_string(),
            HOSTILE,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dc.restart();
    eventually(30, "the eu incident resolved", || async {
        let (_, body) = get(&d, "/api/v1/incidents?since=1h").await;
        let list: Value = serde_json::from_str(&body).ok()?;
        list.as_array()?
            .iter()
            .any(|i| i["id"].as_i64() == Some(eu) && i["closed_at"].is_string())
            .then_some(())
    })
    .await;

    let (status, xml) = get(&d, "/feed.atom").await;
    assert_eq!(status, 200, "{xml}");
    let feed = parse(&xml);
    assert_eq!(feed["bozo"], 0, "{}\n{xml}", feed["bozo_exception"]);
    assert_eq!(feed["version"], "atom10");
    assert!(feed["id"].as_str().unwrap().starts_with("urn:uuid:"));
    assert_eq!(feed["title"], "Mail status: incidents");
    let entries = feed["entries"].as_array().unwrap();
    let of_eu: Vec<&Value> = entries
        .iter()
        .filter(|e| {
            e["link"]
                .as_str()
                .unwrap()
                .ends_with(&format!("/incidents/{eu}"))
        })
        .collect();
    // Newest first: resolved, the note, opened.
    let categories: Vec<&str> = of_eu
        .iter()
        .map(|e| e["category"].as_str().unwrap())
        .collect();
    assert_eq!(categories, ["resolved", "note", "opened"], "{feed}");
    assert!(
        of_eu[0]["title"]
            .as_str()
            .unwrap()
            .starts_with(&format!("Incident #{eu} resolved after"))
    );
    assert_eq!(of_eu[1]["title"], format!("Incident #{eu}: update"));
    assert_eq!(
        of_eu[2]["title"],
        format!("Incident #{eu} opened: outage in eu")
    );
    // The note arrives as the text typed, as text: no markup made of it.
    let note = of_eu[1]["content"].as_str().unwrap();
    assert!(note.starts_with(&format!("update: {HOSTILE}\n")), "{note}");
    assert_eq!(of_eu[1]["content_type"], "text/plain");
    assert!(!xml.contains("<script>"), "{xml}");
    let link = of_eu[0]["link"].as_str().unwrap();
    assert_eq!(link, format!("http://{}/incidents/{eu}", d.addr));
    // Entry ids: unique, and the same on the next fetch.
    let ids: std::collections::BTreeSet<&str> =
        entries.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), entries.len());
    let (_, again) = get(&d, "/feed.atom").await;
    let again = parse(&again);
    let again_ids: std::collections::BTreeSet<&str> = again["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert!(ids.is_subset(&again_ids), "stable ids");

    // Per region: eu's feed has eu's incident only, by query or by path; us has its own.
    for path in ["/feed.atom?region=eu", "/regions/eu/feed.atom"] {
        let (status, xml) = get(&d, path).await;
        assert_eq!(status, 200);
        let f = parse(&xml);
        assert_eq!(f["bozo"], 0, "{path}: {}", f["bozo_exception"]);
        assert_eq!(f["title"], "Mail status: incidents in eu");
        assert_ne!(f["id"], feed["id"], "a region's feed is another feed");
        let links: Vec<&str> = f["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["link"].as_str().unwrap())
            .collect();
        assert_eq!(links.len(), 3, "{path}: {links:?}");
        assert!(
            links
                .iter()
                .all(|l| l.ends_with(&format!("/incidents/{eu}"))),
            "{links:?}"
        );
    }
    let (_, xml) = get(&d, "/regions/us/feed.atom").await;
    let us = parse(&xml);
    assert_eq!(us["bozo"], 0);
    assert_eq!(us["title"], "Mail status: incidents in us");
    assert_eq!(
        us["entries"],
        serde_json::json!([]),
        "nothing happened in us"
    );
    let (status, _) = get(&d, "/regions/nowhere/feed.atom").await;
    assert_eq!(status, 404);

    // The public feed: the same events in plain words, a person's note as written, and no
    // target name, host or failure class.
    let (status, xml) = http(public_addr, "GET", "/feed.atom").await;
    assert_eq!(status, 200, "{xml}");
    let public = parse(&xml);
    assert_eq!(public["bozo"], 0, "{}\n{xml}", public["bozo_exception"]);
    let texts: Vec<String> = public["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| format!("{} {}", e["title"], e["summary"]))
        .collect();
    assert!(texts.len() >= 3, "{xml}");
    assert!(
        texts.iter().any(|t| t.contains("Reading mail")),
        "{texts:?}"
    );
    for leak in ["imap-eu", "imap-us", "connect_refused", "connect "] {
        assert!(!xml.contains(leak), "{leak} on the public feed:\n{xml}");
    }
    // The host probed (127.0.0.1 here) is in no entry's text (links name the feed's own host).
    assert!(texts.iter().all(|t| !t.contains("127.0.0.1")), "{texts:?}");
    let (status, _) = http(public_addr, "POST", "/api/v1/incidents/1/notes").await;
    assert_eq!(status, 404, "no notes API on the public listener");
    d.stop().await;
}
