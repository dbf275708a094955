//! Notes by people end to end: a real Dovecot stops, an incident opens, and updates added with
//! `mailprobe incidents note` and with the notes API appear in its timeline on every surface,
//! escaped where they are HTML; the API takes only authenticated (or same-host) writes of a
//! bounded size.

mod common;

use std::process::Command;

use base64::Engine as _;
use common::{Daemon, Env, eventually, http};
use mailprobe_testpeers::dovecot::{Dovecot, Options};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const GLOBAL: &str = "[global]\ninterval = \"1s\"\ntimeout = \"1s\"\n";
const HOSTILE: &str = "Found it: </td><script>alert(1)</script> & \"disk\" full ]]> <![CDATA[x";

/// POSTs `body` to `path` with `content_type` and optional basic credentials: `(status, body)`.
async fn post(
    addr: std::net::SocketAddr,
    path: &str,
    content_type: &str,
    body: &[u8],
    auth: Option<(&str, &str)>,
) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = auth.map_or(String::new(), |(u, p)| {
        format!(
            "Authorization: Basic {}\r\n",
            base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
        )
    });
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\n{auth}\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    // A server refusing an oversized body may close before reading it all.
    let _ = s.write_all(body).await;
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf).await;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, body.to_string())
}

fn note_json(text: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "text": text })).unwrap()
}

async fn json(d: &Daemon, path: &str) -> Value {
    let (status, body) = http(d.addr, "GET", path).await;
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

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

fn config(env: &Env, dc: &Dovecot, web: &str) -> String {
    format!(
        "{GLOBAL}{web}[incidents]\nstate_dir = \"{}\"\ndown_after = 2\nup_after = 2\n{}",
        env.dir.path().join("state").display(),
        env.imap_target("imap-eu", dc.ports.imaps, "region = \"eu\"")
            .replace("region = \"test\"\n", ""),
    )
}

/// Waits for the incident Dovecot's stop opens; returns its id.
async fn incident(d: &Daemon) -> i64 {
    eventually(30, "an open incident", || async {
        let s = json(d, "/api/v1/status").await;
        s["incidents"].as_array()?.first()?["id"].as_i64()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notes_from_the_cli_and_the_api_are_in_every_view_of_the_timeline() {
    let env = Env::new();
    let mut dc = Dovecot::start(&env.pki, Options::default());
    let d = Daemon::start(env.config(&config(&env, &dc, ""))).await;
    d.wait_probes("imap-eu", "success", 1.0).await;
    dc.stop();
    let id = incident(&d).await;
    let cfg = env.config_path();
    let cfg = cfg.to_str().unwrap();

    let (ok, out, err) = mailprobe(&[
        "incidents",
        "note",
        "-c",
        cfg,
        &id.to_string(),
        "Dovecot crashed on the upgrade; rolling back",
    ]);
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!("note added to incident #{id}")),
        "{out}"
    );
    let (ok, _, err) = mailprobe(&["incidents", "note", "-c", cfg, "999", "x"]);
    assert!(!ok && err.contains("no incident #999"), "{err}");
    let (ok, _, err) = mailprobe(&["incidents", "note", "-c", cfg, &id.to_string(), "  "]);
    assert!(!ok && err.contains("the note is empty"), "{err}");

    // The API, from this host without a web config: taken.
    let path = format!("/api/v1/incidents/{id}/notes");
    let (status, body) = post(d.addr, &path, "application/json", &note_json(HOSTILE), None).await;
    assert_eq!(status, 201, "{body}");
    let created: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (created["kind"].as_str(), created["text"].as_str()),
        (Some("note"), Some(HOSTILE))
    );
    // Refusals: wrong type (a form a browser could post from anywhere), bad JSON, no text,
    // an unknown incident, a body beyond the bound.
    let refusals = [
        (
            post(d.addr, &path, "text/plain", &note_json("x"), None).await,
            415,
        ),
        (
            post(d.addr, &path, "application/json", b"{\"text\": 5}", None).await,
            400,
        ),
        (
            post(d.addr, &path, "application/json", &note_json("\u{7}"), None).await,
            400,
        ),
        (
            post(
                d.addr,
                "/api/v1/incidents/999/notes",
                "application/json",
                &note_json("x"),
                None,
            )
            .await,
            404,
        ),
        (
            post(
                d.addr,
                &path,
                "application/json",
                &note_json(&"x".repeat(64 * 1024)),
                None,
            )
            .await,
            413,
        ),
    ];
    for ((status, body), want) in refusals {
        assert_eq!(status, want, "{body}");
    }

    // Every surface: the incidents API, the status JSON, the page (escaped), the CLI.
    let list = json(&d, "/api/v1/incidents?since=1h").await;
    let timeline = list[0]["timeline"].as_array().unwrap();
    let notes: Vec<&str> = timeline
        .iter()
        .filter(|e| e["kind"] == "note")
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        notes,
        ["Dovecot crashed on the upgrade; rolling back", HOSTILE]
    );
    assert_eq!(
        list[0]["status"], "ongoing",
        "a note keeps the incident's state"
    );
    assert_eq!(list[0]["summary"]["down"], 1);
    let s = json(&d, "/api/v1/status").await;
    assert!(
        s["incidents"][0]["timeline"]
            .to_string()
            .contains("rolling back")
    );
    let (_, page) = http(d.addr, "GET", "/").await;
    assert!(
        page.contains("update: Dovecot crashed on the upgrade; rolling back"),
        "{page}"
    );
    assert!(
        !page.contains("<script>alert(1)"),
        "note text is escaped on the page"
    );
    assert!(
        page.contains("&lt;/td&gt;&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;disk&quot;")
    );
    let (ok, md, err) = mailprobe(&[
        "incidents",
        "-c",
        cfg,
        "--since",
        "1h",
        "--format",
        "markdown",
    ]);
    assert!(ok, "{err}");
    assert!(
        md.contains("| update: Dovecot crashed on the upgrade; rolling back |"),
        "{md}"
    );
    let (_, table, _) = mailprobe(&["incidents", "-c", cfg, "--since", "1h"]);
    assert!(table.contains("update: Found it:"), "{table}");
    dc.restart();
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_basic_auth_the_notes_api_wants_the_credentials() {
    let env = Env::new();
    let web = env.dir.path().join("web.yml");
    std::fs::write(
        &web,
        format!(
            "basic_auth_users:\n  ops: '{}'\n",
            bcrypt::hash("ops-Secret", 4).unwrap()
        ),
    )
    .unwrap();
    let mut dc = Dovecot::start(&env.pki, Options::default());
    let text = config(
        &env,
        &dc,
        &format!("web_config_file = \"{}\"\n", web.display()),
    );
    let d = Daemon::start(env.config(&text)).await;
    dc.stop();
    // The status API wants the credentials too; read the incident from the CLI instead.
    let cfg = env.config_path();
    let cfg = cfg.to_str().unwrap().to_string();
    let id = eventually(30, "an open incident", || async {
        let (ok, out, _) = mailprobe(&["incidents", "-c", &cfg, "--format", "json"]);
        let list: Value = serde_json::from_str(&out).ok()?;
        ok.then_some(())?;
        list.as_array()?.first()?["id"].as_i64()
    })
    .await;
    let path = format!("/api/v1/incidents/{id}/notes");
    let body = note_json("restarting the backend");
    let (status, _) = post(d.addr, &path, "application/json", &body, None).await;
    assert_eq!(status, 401);
    let wrong = Some(("ops", "guess"));
    let (status, _) = post(d.addr, &path, "application/json", &body, wrong).await;
    assert_eq!(status, 401);
    let right = Some(("ops", "ops-Secret"));
    let (status, out) = post(d.addr, &path, "application/json", &body, right).await;
    assert_eq!(status, 201, "{out}");
    let (_, out, _) = mailprobe(&["incidents", "-c", &cfg, "--format", "json"]);
    assert!(out.contains("restarting the backend"), "{out}");
    dc.restart();
    d.stop().await;
}
