//! The HTTP endpoints behind an exporter-toolkit web config: TLS and bcrypt basic auth on every
//! endpoint, replaced on reload without a restart.

mod common;

use common::{Daemon, Env, http, https, https_full};

fn web_config(env: &Env, users: &[(&str, &str)]) -> std::path::PathBuf {
    let mut text = format!(
        "tls_server_config:\n  cert_file: {}\n  key_file: {}\nhttp_server_config:\n  headers:\n    X-Frame-Options: deny\n",
        env.pki.valid.cert.display(),
        env.pki.valid.key.display()
    );
    if !users.is_empty() {
        text.push_str("basic_auth_users:\n");
        for (u, p) in users {
            text.push_str(&format!("  {u}: '{}'\n", bcrypt::hash(p, 4).unwrap()));
        }
    }
    let path = env.dir.path().join("web.yml");
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_need_tls_and_the_right_password_and_reload_swaps_users() {
    let env = Env::new();
    let web = web_config(&env, &[("prometheus", "scrape-Secret")]);
    // A config needs a target; this one's port is closed.
    let probes = format!(
        "[global]\nweb_config_file = \"{}\"\n{}",
        web.display(),
        env.imap_target("t", mailprobe_testpeers::util::free_port(), "")
    );
    let d = Daemon::start(env.config(&probes)).await;
    let ca = env.pki.ca.clone();

    // Plain HTTP gets nothing useful from a TLS listener.
    let (status, _) = http(d.addr, "GET", "/metrics").await;
    assert_ne!(status, 200);

    let (status, _) = https(d.addr, &ca, "GET", "/metrics", None).await.unwrap();
    assert_eq!(status, 401);
    let (status, _) = https(
        d.addr,
        &ca,
        "GET",
        "/-/healthy",
        Some(("prometheus", "wrong")),
    )
    .await
    .unwrap();
    assert_eq!(status, 401);
    let (status, _) = https(
        d.addr,
        &ca,
        "GET",
        "/metrics",
        Some(("nobody", "scrape-Secret")),
    )
    .await
    .unwrap();
    assert_eq!(status, 401);
    let (status, body) = https(
        d.addr,
        &ca,
        "GET",
        "/metrics",
        Some(("prometheus", "scrape-Secret")),
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("mailprobe_build_info"));

    // A new user list applies on reload, to new connections, without a restart.
    web_config(&env, &[("grafana", "dash-Secret")]);
    let (status, body) = https(
        d.addr,
        &ca,
        "POST",
        "/-/reload",
        Some(("prometheus", "scrape-Secret")),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let (status, _) = https(
        d.addr,
        &ca,
        "GET",
        "/metrics",
        Some(("prometheus", "scrape-Secret")),
    )
    .await
    .unwrap();
    assert_eq!(status, 401);
    let (status, _) = https(
        d.addr,
        &ca,
        "GET",
        "/metrics",
        Some(("grafana", "dash-Secret")),
    )
    .await
    .unwrap();
    assert_eq!(status, 200);

    // A broken web config is refused like any config error, and the old one stays.
    std::fs::write(&web, "basic_auth_users:\n  grafana: not-a-hash\n").unwrap();
    let (status, body) = https(
        d.addr,
        &ca,
        "POST",
        "/-/reload",
        Some(("grafana", "dash-Secret")),
    )
    .await
    .unwrap();
    assert_eq!(status, 500);
    assert!(
        body.contains("web.yml:2:3: grafana: the password must be a bcrypt hash"),
        "{body}"
    );
    let (status, _) = https(
        d.addr,
        &ca,
        "GET",
        "/metrics",
        Some(("grafana", "dash-Secret")),
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    d.stop().await;
}

#[tokio::test]
async fn response_headers_from_the_web_config_are_added() {
    let env = Env::new();
    let web = web_config(&env, &[]);
    // A config needs a target; this one's port is closed.
    let probes = format!(
        "[global]\nweb_config_file = \"{}\"\n{}",
        web.display(),
        env.imap_target("t", mailprobe_testpeers::util::free_port(), "")
    );
    let d = Daemon::start(env.config(&probes)).await;
    // No users: TLS only, no authentication.
    let (status, head, _) = https_full(d.addr, &env.pki.ca, "GET", "/-/healthy", None)
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert!(
        head.to_ascii_lowercase().contains("x-frame-options: deny"),
        "{head}"
    );
    d.stop().await;
}
