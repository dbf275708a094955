//! The public status page in a real headless Chromium, at desktop and phone sizes, served on
//! its own listener: healthy, a partial outage (one of four down), a major outage, degraded
//! performance, and the outage story against a real Dovecot (stopped, back behind a slow path,
//! the delay removed). Screenshots go to target/screenshots/; the public page is checked to
//! name no target, host or user.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{Env, eventually, http};
use mailprobe_testpeers::dovecot::{Dovecot, Options};
use mailprobe_testpeers::proxy::{Mode, Proxy};
use mailprobe_testpeers::util::require_program;
use serde_json::Value;

/// Slow above 900 ms (a loaded test machine takes 400 ms for a TLS login); the slow path delays
/// each connection by 1.3 s.
const GLOBAL: &str = "[global]\ninterval = \"2s\"\ntimeout = \"2s\"\nslow_threshold = \"900ms\"\n";
const SLOW: Mode = Mode::Pass(Duration::from_millis(1300));
const FAST: Mode = Mode::Pass(Duration::ZERO);
const NAMES: [&str; 4] = ["mbx-alpha", "mbx-bravo", "mbx-charlie", "mbx-delta"];

/// A daemon with both listeners on port 0.
struct Daemon {
    private: SocketAddr,
    public: SocketAddr,
    shutdown: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Daemon {
    async fn start(cfg: mailprobe::load::Config) -> Daemon {
        let private = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let public = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (p, q) = (private.local_addr().unwrap(), public.local_addr().unwrap());
        let shutdown = tokio_util::sync::CancellationToken::new();
        let listeners = mailprobe::daemon::Listeners {
            private,
            public: Some(public),
        };
        let task = tokio::spawn(mailprobe::daemon::run_listeners(
            cfg,
            listeners,
            shutdown.clone(),
        ));
        Daemon {
            private: p,
            public: q,
            shutdown,
            task,
        }
    }

    async fn summary(&self) -> Value {
        let (status, body) = http(self.public, "GET", "/api/v1/summary").await;
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    /// Waits until the banner is in `state`; returns the summary.
    async fn wait_state(&self, state: &str) -> Value {
        eventually(40, &format!("the page to say {state}"), || async {
            let s = self.summary().await;
            (s["status"]["state"] == state).then_some(s)
        })
        .await
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
    }
}

fn config(env: &Env, ports: &[u16]) -> String {
    let mut text = format!(
        "{GLOBAL}[incidents]\nstate_dir = \"{}\"\ndown_after = 2\nup_after = 2\n\
         [status]\ntitle = \"Example Mail status\"\ntime_zone = \"Europe/Berlin\"\n\
         [status.regions]\neu-west = \"Europe\"\n\
         [status.services.reading]\ndescription = \"Mail apps and phones fetching mail\"\n",
        env.dir.path().join("state").display()
    );
    for (name, port) in NAMES.iter().zip(ports) {
        text.push_str(
            &env.imap_target(name, *port, "region = \"eu-west\"\nusers = 250")
                .replace("region = \"test\"\n", ""),
        );
    }
    text
}

/// Where screenshots go: target/screenshots/.
fn shots() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs headless Chromium with `args` on `url`; returns stdout.
async fn chromium(env: &Env, args: Vec<String>, url: String) -> String {
    let chromium = require_program("chromium", "chromium");
    let profile = env.dir.path().join("chromium-profile");
    tokio::task::spawn_blocking(move || {
        let out = Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
                "--force-device-scale-factor=1",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(args)
            .arg(url)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    })
    .await
    .unwrap()
}

/// The DOM after scripts ran, at desktop size.
async fn dom(env: &Env, url: String) -> String {
    chromium(
        env,
        vec!["--window-size=1280,900".into(), "--dump-dom".into()],
        url,
    )
    .await
}

/// Screenshots of `url` as `name-desktop.png` and `name-phone.png`; returns their paths.
async fn screenshots(env: &Env, url: &str, name: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for (size, w, h) in [("desktop", 1280, 1400), ("phone", 390, 1600)] {
        let path = shots().join(format!("{name}-{size}.png"));
        let _ = std::fs::remove_file(&path);
        chromium(
            env,
            vec![
                format!("--window-size={w},{h}"),
                format!("--screenshot={}", path.display()),
            ],
            url.to_string(),
        )
        .await;
        let png = std::fs::read(&path).unwrap_or_default();
        assert!(
            png.starts_with(b"\x89PNG") && png.len() > 2000,
            "{} is not a screenshot",
            path.display()
        );
        out.push(path);
    }
    out
}

/// Nothing on the public page names a target, host, user or failure class.
fn assert_public(dom: &str) {
    for secret in NAMES
        .iter()
        .copied()
        .chain([common::USER, common::PASSWORD, "127.0.0.1", "localhost"])
        .chain([
            "connect_refused",
            "connection_closed",
            "protocol_error",
            " at greeting",
            "imap",
        ])
    {
        assert!(
            !dom.contains(secret),
            "the public page shows {secret:?}:\n{dom}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_page_says_operational_partial_major_and_degraded_in_a_real_browser() {
    let env = Env::new();
    let dc = Dovecot::start(&env.pki, Options::default());
    let mut proxies = Vec::new();
    for _ in NAMES {
        proxies.push(Proxy::start(dc.ports.imaps).await);
    }
    let ports: Vec<u16> = proxies.iter().map(Proxy::port).collect();
    let d = Daemon::start(env.config(&config(&env, &ports))).await;
    let url = format!("http://{}/", d.public);

    // Healthy.
    let s = d.wait_state("operational").await;
    assert_eq!(s["status"]["text"], "All services are operational");
    let page = dom(&env, url.clone()).await;
    assert!(page.contains("Example Mail status"), "{page}");
    assert!(page.contains("<h3>Europe</h3>"), "{page}");
    assert!(page.contains("Reading mail"), "{page}");
    assert!(
        page.contains("Mail apps and phones fetching mail"),
        "{page}"
    );
    assert!(
        page.contains("class=\"state operational\">Operational<"),
        "{page}"
    );
    assert_eq!(
        page.matches("<span role=\"listitem\"").count(),
        90,
        "90 days of bars"
    );
    assert_public(&page);
    screenshots(&env, &url, "healthy").await;

    // One of four down: a partial outage, not "down".
    proxies[3].set(Mode::Close);
    let s = d.wait_state("partial_outage").await;
    let text = s["status"]["text"].as_str().unwrap();
    assert!(
        text.starts_with("Partial outage in Europe: some users cannot read mail since "),
        "{text}"
    );
    let page = dom(&env, url.clone()).await;
    assert!(
        page.contains("id=\"banner\">Partial outage in Europe: some users cannot read mail since"),
        "{page}"
    );
    assert!(page.contains("250 users affected"), "{page}");
    assert!(page.contains("Ongoing incidents"), "{page}");
    assert!(!page.to_lowercase().contains(">down<"), "{page}");
    assert_public(&page);
    screenshots(&env, &url, "partial-outage").await;
    // The admin view on the private listener names the failing target, with its probes.
    let (status, admin) = http(d.private, "GET", "/").await;
    assert_eq!(status, 200);
    assert!(admin.contains("Failing targets ("), "{admin}");
    assert!(
        admin.contains(
            "<td data-label=\"target\">mbx-delta</td><td data-label=\"region\">eu-west</td>\
             <td data-label=\"protocol\">imap</td><td data-label=\"state\" class=\"down\">down</td>"
        ),
        "{admin}"
    );
    assert!(admin.contains("last probes"), "{admin}");
    // The public listener serves nothing else.
    for path in [
        "/metrics",
        "/api/v1/status",
        "/api/v1/incidents",
        "/-/healthy",
    ] {
        assert_eq!(http(d.public, "GET", path).await.0, 404, "{path}");
    }
    assert_eq!(http(d.public, "POST", "/-/reload").await.0, 404);

    // Everyone down: a major outage.
    for p in &proxies {
        p.set(Mode::Close);
    }
    let s = d.wait_state("major_outage").await;
    let text = s["status"]["text"].as_str().unwrap();
    assert!(
        text.starts_with("Major outage in Europe: users cannot read mail since "),
        "{text}"
    );
    let page = dom(&env, url.clone()).await;
    assert!(page.contains("1000 users affected"), "{page}");
    assert_public(&page);
    screenshots(&env, &url, "major-outage").await;

    // Back, but slow: degraded performance.
    for p in &proxies {
        p.set(SLOW);
    }
    let s = d.wait_state("degraded").await;
    let text = s["status"]["text"].as_str().unwrap();
    assert!(
        text.starts_with("Degraded performance in Europe: slow for some users to read mail since "),
        "{text}"
    );
    let page = dom(&env, url.clone()).await;
    assert!(page.contains("Degraded performance"), "{page}");
    assert_public(&page);
    screenshots(&env, &url, "degraded").await;
    for p in &proxies {
        p.set(FAST);
    }
    d.wait_state("operational").await;

    // Planned work on the whole region, added from a shell while the daemon runs: the page
    // says "Under maintenance", not an outage, even with a target failing meanwhile.
    let out = Command::new(env!("CARGO_BIN_EXE_mailprobe"))
        .args(["maintenance", "add", "-c"])
        .arg(env.config_path())
        .args(["--region", "eu-west", "--duration", "1h"])
        .args(["--reason", "Mail server upgrade"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The daemon reads windows added from a shell at its next tick (every 5 s).
    eventually(20, "the window in force", || async {
        let (_, body) = http(d.private, "GET", "/api/v1/status").await;
        let v: Value = serde_json::from_str(&body).ok()?;
        let targets = v["targets"].as_array()?;
        (targets.len() == NAMES.len() && targets.iter().all(|t| t["under_maintenance"] == true))
            .then_some(())
    })
    .await;
    proxies[3].set(Mode::Close);
    let s = d.wait_state("maintenance").await;
    let text = s["status"]["text"].as_str().unwrap();
    assert!(
        text.starts_with(
            "Under maintenance in Europe: planned work; users may be unable to read mail"
        ),
        "{text}"
    );
    let page = dom(&env, url.clone()).await;
    assert!(
        page.contains("class=\"state maintenance\">Under maintenance<"),
        "{page}"
    );
    assert!(!page.contains("Partial outage"), "{page}");
    assert!(page.contains("Planned maintenance"), "{page}");
    assert!(
        page.contains("all services in Europe: Mail server upgrade"),
        "{page}"
    );
    assert_public(&page);
    // The covered target fails meanwhile (its failures are counted) and opens no incident.
    eventually(20, "the covered target down", || async {
        let (_, body) = http(d.private, "GET", "/api/v1/status").await;
        let v: Value = serde_json::from_str(&body).ok()?;
        v["targets"]
            .as_array()?
            .iter()
            .any(|t| t["name"] == NAMES[3] && t["state"] == "down")
            .then_some(())
    })
    .await;
    let (_, body) = http(d.private, "GET", "/api/v1/status").await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["incidents"], serde_json::json!([]), "{body}");
    screenshots(&env, &url, "maintenance").await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outage_story_against_a_real_dovecot_reads_on_the_page_and_its_uptime_bar() {
    let env = Env::new();
    let mut dc = Dovecot::start(&env.pki, Options::default());
    let mut proxies = Vec::new();
    for _ in NAMES {
        proxies.push(Proxy::start(dc.ports.imaps).await);
    }
    let ports: Vec<u16> = proxies.iter().map(Proxy::port).collect();
    let d = Daemon::start(env.config(&config(&env, &ports))).await;
    let url = format!("http://{}/", d.public);
    d.wait_state("operational").await;

    // Dovecot goes away: everyone is down.
    dc.stop();
    d.wait_state("major_outage").await;
    // It comes back behind a slow path for half the users; the other half's path is still
    // broken: partly recovered, slow access.
    for p in &proxies[2..] {
        p.set(Mode::Close);
    }
    for p in &proxies[..2] {
        p.set(SLOW);
    }
    dc.restart();
    let s = eventually(40, "partial recovery with slow access", || async {
        let s = d.summary().await;
        let open = s["incidents"]
            .as_array()?
            .iter()
            .find(|i| i["resolved"].is_null())?
            .clone();
        (open["stage"] == "Partly recovered, slow for some").then_some(s)
    })
    .await;
    assert_eq!(s["status"]["state"], "partial_outage", "{s}");
    // The delay is removed and every path works: resolved.
    for p in &proxies {
        p.set(FAST);
    }
    let s = d.wait_state("operational").await;
    let incident = s["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["resolved"].is_string())
        .unwrap_or_else(|| panic!("a resolved incident: {s}"))
        .clone();
    let id = incident["id"].as_i64().unwrap();
    let texts: Vec<&str> = incident["updates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["text"].as_str().unwrap())
        .collect();
    let at = |needle: &str| {
        texts
            .iter()
            .position(|t| t.starts_with(needle))
            .unwrap_or_else(|| panic!("{needle:?} in {texts:?}"))
    };
    let down = at("Users affected cannot read mail.");
    let partial = at("Partly recovered: some users can read mail again, slowly for some");
    let resolved = at("Resolved: everything works normally again.");
    assert!(down < partial && partial < resolved, "{texts:?}");

    // The page tells it: the incident among past ones (no "since"), with its permalink.
    let page = dom(&env, url.clone()).await;
    assert_public(&page);
    let card = page
        .split(&format!("id=\"incident-{id}\""))
        .nth(1)
        .unwrap_or_else(|| panic!("incident {id} on the page:\n{page}"))
        .split("</article>")
        .next()
        .unwrap();
    assert!(card.contains("Resolved after "), "{card}");
    assert!(
        !card.contains("since"),
        "a resolved incident says no 'since': {card}"
    );
    assert!(card.contains("Partly recovered"), "{card}");
    // Today's uptime bar shows the outage and the partial outage.
    let today = page
        .split("data-service=\"reading\"")
        .nth(1)
        .unwrap()
        .split("</div><div class=\"axis\">")
        .next()
        .unwrap()
        .rsplit("<span")
        .next()
        .unwrap()
        .to_string();
    assert!(today.contains("class=\"major_outage\""), "{today}");
    assert!(today.contains("major outage for"), "{today}");
    assert!(today.contains("partial outage for"), "{today}");
    assert!(today.contains(&format!("incident #{id}")), "{today}");
    screenshots(&env, &url, "story-resolved").await;

    // The incident's own page: the whole timeline, duration, services, users, the report.
    let incident_url = format!("http://{}/incidents/{id}", d.public);
    let ipage = dom(&env, incident_url.clone()).await;
    assert_public(&ipage);
    for needle in [
        "Reading mail in Europe",
        "Duration",
        "Affected services",
        "Affected users (at most)</th><td data-label=\"Affected users (at most)\">1000",
        "Users affected cannot read mail.",
        "Partly recovered",
        "Resolved: everything works normally again.",
        "id=\"report\"># Reading mail in Europe",
    ] {
        assert!(ipage.contains(needle), "{needle:?} in\n{ipage}");
    }
    screenshots(&env, &incident_url, "story-incident").await;
    let (status, md) = http(d.public, "GET", &format!("/incidents/{id}.md")).await;
    assert_eq!(status, 200);
    assert!(md.starts_with("# Reading mail in Europe\n"), "{md}");
    assert_eq!(http(d.public, "GET", "/incidents/999").await.0, 404);
    // The private listener's copy adds the CLI's report, with target names for admins.
    let (_, admin) = http(d.private, "GET", &format!("/incidents/{id}")).await;
    assert!(
        admin.contains("id=\"admin-report\">| incident | time | event |"),
        "{admin}"
    );
    d.stop().await;
}

/// The public listener honours a web config of its own, or `[global]`'s when it names none;
/// the private one keeps `[global]`'s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_listener_has_its_own_web_config_or_the_global_one() {
    let env = Env::new();
    let private_web = env.dir.path().join("web.yml");
    std::fs::write(
        &private_web,
        format!(
            "basic_auth_users:\n  admin: '{}'\n",
            bcrypt::hash("admin-secret", 4).unwrap()
        ),
    )
    .unwrap();
    let public_web = env.dir.path().join("public-web.yml");
    std::fs::write(
        &public_web,
        "http_server_config:\n  headers:\n    X-Frame-Options: DENY\n",
    )
    .unwrap();
    let closed = mailprobe_testpeers::util::free_port();
    let target = env.imap_target("mbx-alpha", closed, "");
    let global = format!(
        "[global]\nweb_config_file = \"{}\"\n",
        private_web.display()
    );

    // No web config of its own: the public page is behind [global]'s basic auth too.
    let d = Daemon::start(env.config(&format!("{global}{target}"))).await;
    assert_eq!(http(d.private, "GET", "/").await.0, 401);
    assert_eq!(http(d.public, "GET", "/").await.0, 401);
    d.stop().await;

    // Its own: open, with its headers; the private listener still asks for a password.
    let d = Daemon::start(env.config(&format!(
        "{global}[status]\nweb_config_file = \"{}\"\n{target}",
        public_web.display()
    )))
    .await;
    assert_eq!(http(d.private, "GET", "/status").await.0, 401);
    let (status, body) = http(d.public, "GET", "/").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Mail service status"), "{body}");
    let mut s = tokio::net::TcpStream::connect(d.public).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let head = String::from_utf8_lossy(&raw).to_ascii_lowercase();
    assert!(head.contains("x-frame-options: deny"), "{head}");
    d.stop().await;
}
