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

// ---------------------------------------------------------------------------------------------
// Connections the server must bound: a client may not hold a connection (and so a file
// descriptor) by saying nothing, by sending its request head a byte at a time, by stopping
// after the TLS handshake, or by keeping an idle keep-alive connection forever.

use std::time::Duration;

use mailprobe_testpeers::faultclient::{
    self, Hold, hold_until_closed, read_response, slowloris, tls_connect,
};
use tokio::io::AsyncWriteExt;

/// `[global]` lines and one target whose port is closed: a config needs a target, and these
/// tests are about the HTTP server.
fn config_with(env: &Env, global: &str) -> String {
    format!(
        "[global]\n{global}\n{}",
        env.imap_target("t", mailprobe_testpeers::util::free_port(), "")
    )
}

/// Far more than the server's request-head timeout: the tests wait for the server's EOF, not
/// for a clock, and fail only when it never comes.
const CLOSED_WITHIN: Duration = Duration::from_secs(40);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_slowloris_connections_are_closed_by_the_server() {
    let env = Env::new();
    let d = Daemon::start(env.config(&config_with(&env, ""))).await;
    let silent = faultclient::connect(d.addr, Duration::from_secs(5))
        .await
        .unwrap();
    let slow = slowloris(d.addr, Duration::from_secs(5)).await.unwrap();
    let (silent, slow) = tokio::join!(
        hold_until_closed(silent, Hold::Silent, CLOSED_WITHIN),
        hold_until_closed(slow, Hold::Drip(Duration::from_millis(500)), CLOSED_WITHIN),
    );
    silent.expect("a connection that never sends a request");
    slow.expect("a request head sent a byte every 500 ms");
    let (status, _) = http(d.addr, "GET", "/metrics").await;
    assert_eq!(status, 200);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_stall_after_the_tls_handshake_are_closed() {
    let env = Env::new();
    let web = web_config(&env, &[]);
    let probes = config_with(&env, &format!("web_config_file = \"{}\"", web.display()));
    let d = Daemon::start(env.config(&probes)).await;
    let ca = &env.pki.ca;
    let no_handshake = faultclient::connect(d.addr, Duration::from_secs(5))
        .await
        .unwrap();
    let silent = tls_connect(d.addr, ca).await.unwrap();
    let mut slow = tls_connect(d.addr, ca).await.unwrap();
    slow.write_all(faultclient::SLOWLORIS_HEAD).await.unwrap();
    slow.flush().await.unwrap();
    let (no_handshake, silent, slow) = tokio::join!(
        hold_until_closed(no_handshake, Hold::Silent, CLOSED_WITHIN),
        hold_until_closed(silent, Hold::Silent, CLOSED_WITHIN),
        hold_until_closed(slow, Hold::Drip(Duration::from_millis(500)), CLOSED_WITHIN),
    );
    no_handshake.expect("a connection that never starts TLS");
    silent.expect("a TLS connection that sends no request");
    slow.expect("a TLS connection sending its request head a byte every 500 ms");
    let (status, _) = https(d.addr, ca, "GET", "/-/healthy", None).await.unwrap();
    assert_eq!(status, 200);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_outlive_a_scrape_interval_and_are_then_closed() {
    let env = Env::new();
    let d = Daemon::start(env.config(&config_with(&env, ""))).await;
    let mut s = faultclient::connect(d.addr, Duration::from_secs(5))
        .await
        .unwrap();
    let request = format!("GET /-/healthy HTTP/1.1\r\nHost: {}\r\n\r\n", d.addr);
    for _ in 0..2 {
        s.write_all(request.as_bytes()).await.unwrap();
        assert_eq!(
            read_response(&mut s).await.unwrap(),
            (200, "Healthy\n".to_string())
        );
    }
    // Prometheus keeps its scrape connection open between scrapes (15 s is a common
    // interval): a quiet spell longer than the request-head timeout must not cost it.
    tokio::time::sleep(Duration::from_secs(15)).await;
    s.write_all(request.as_bytes()).await.unwrap();
    assert_eq!(
        read_response(&mut s).await.unwrap(),
        (200, "Healthy\n".to_string())
    );
    // Quiet for longer than the idle timeout (75 s), the server closes it.
    hold_until_closed(s, Hold::Silent, Duration::from_secs(120))
        .await
        .expect("an idle keep-alive connection");
    d.stop().await;
}

/// The daemon binary in a process of its own, optionally with a lower open-file limit (as
/// `ulimit -n` sets it), its log in a file; killed when dropped.
struct Process {
    child: std::process::Child,
    addr: std::net::SocketAddr,
    log: std::path::PathBuf,
}

impl Process {
    fn spawn(env: &Env, config: &str, open_files: Option<u32>) -> Process {
        std::fs::write(env.config_path(), env.with_state(config)).unwrap();
        let addr: std::net::SocketAddr =
            ([127, 0, 0, 1], mailprobe_testpeers::util::free_port()).into();
        let log = env.dir.path().join("daemon.log");
        let script = match open_files {
            Some(n) => format!("ulimit -n {n} && exec \"$0\" \"$@\""),
            None => "exec \"$0\" \"$@\"".to_string(),
        };
        let child = std::process::Command::new("sh")
            .args(["-c", &script, env!("CARGO_BIN_EXE_mailprobe"), "run", "-c"])
            .arg(env.config_path())
            .args(["--listen", &addr.to_string()])
            .env_remove("RUST_LOG")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Process { child, addr, log }
    }

    /// Waits until `/-/ready` answers 200 (or anything, when it needs credentials): `(status,
    /// body)`.
    async fn ready(&mut self) -> (u16, String) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(s) = tokio::net::TcpStream::connect(self.addr).await {
                drop(s);
                let (status, body) = http(self.addr, "GET", "/-/ready").await;
                if status != 503 {
                    return (status, body);
                }
            }
            let exited = self.child.try_wait().unwrap();
            assert!(
                exited.is_none() && tokio::time::Instant::now() < deadline,
                "the daemon did not become ready ({exited:?}): {}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sockets the process has open now.
    fn sockets(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .map(|d| {
                d.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                    .filter(|l| l.to_string_lossy().starts_with("socket:"))
                    .count()
            })
            .unwrap_or(0)
    }

    /// Threads of the process now.
    fn threads(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/task", self.child.id()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET path` with `timeout`, or why not.
async fn get_within(
    addr: std::net::SocketAddr,
    path: &str,
    timeout: Duration,
) -> Result<(u16, String), String> {
    tokio::time::timeout(timeout, http(addr, "GET", path))
        .await
        .map_err(|_| format!("GET {path}: no answer within {timeout:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_256_open_files_idle_and_slowloris_floods_starve_neither_metrics_nor_probes() {
    use mailprobe_testpeers::dovecot::{Dovecot, Options};
    let env = Env::new();
    let dc = Dovecot::start(&env.pki, Options::default());
    let config = format!(
        "[global]\ninterval = \"1s\"\ntimeout = \"1s\"\n\n{}",
        env.imap_target("up", dc.ports.imaps, "")
    );
    let mut p = Process::spawn(&env, &config, Some(256));
    assert_eq!(p.ready().await.0, 200);
    let addr = p.addr;
    let count = |m: &str, result: &str| {
        // The only target of region "test": its group's counts are its own.
        common::sample(
            m,
            "mailprobe_probes_total",
            &[("region", "test"), ("protocol", "imap"), ("result", result)],
        )
        .unwrap_or(0.0)
    };
    common::eventually(20, "a first successful probe", || async move {
        let (_, m) = get_within(addr, "/metrics", Duration::from_secs(5))
            .await
            .ok()?;
        (count(&m, "success") >= 1.0).then_some(())
    })
    .await;

    // As in the report: 369 connections that say nothing (more than the 256 descriptors the
    // process may open) and a slowloris flood; every one of them is held open.
    let connect = Duration::from_secs(5);
    let idle = futures::future::join_all((0..369).map(|_| faultclient::connect(addr, connect)));
    let slow = futures::future::join_all((0..400).map(|_| slowloris(addr, connect)));
    let (idle, slow) = tokio::join!(idle, slow);
    let offenders: Vec<_> = idle
        .into_iter()
        .chain(slow)
        .filter_map(Result::ok)
        .collect();
    assert!(offenders.len() > 256, "only {} connected", offenders.len());

    let (status, m) = get_within(addr, "/metrics", Duration::from_secs(20))
        .await
        .expect("/metrics while the flood holds its connections");
    assert_eq!(status, 200);
    let before = count(&m, "success");
    let m = common::eventually(30, "three more successful probes", || async move {
        let (_, m) = get_within(addr, "/metrics", Duration::from_secs(5))
            .await
            .ok()?;
        (count(&m, "success") >= before + 3.0).then_some(m)
    })
    .await;
    assert_eq!(count(&m, "failure"), 0.0, "{}", p.log_text());

    // The server holds no more connections than its share of descriptors...
    let sockets = p.sockets();
    assert!(sockets <= 64 + 16, "the daemon holds {sockets} sockets");

    // ...and cuts every one of them off on its own. They drip a byte a second now: a connection
    // the kernel dropped while the listen queue was full (the client is never told) is then
    // either completed and accepted, or reset.
    let held = futures::future::join_all(offenders.into_iter().map(|s| {
        hold_until_closed(
            s,
            Hold::Drip(Duration::from_secs(1)),
            Duration::from_secs(60),
        )
    }))
    .await;
    let open = held.iter().filter(|r| r.is_err()).count();
    assert_eq!(open, 0, "{open} flood connections still open after 60 s");
    let (status, _) = get_within(addr, "/metrics", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(status, 200);
    let log = p.log_text();
    let accept_failures = log.matches("accept failed").count();
    assert!(
        accept_failures <= 2,
        "{accept_failures} 'accept failed' lines:\n{}",
        &log[..log.len().min(3000)]
    );
    drop(dc);
}
/// A web config with one basic-auth user whose bcrypt hash has `cost`, no TLS.
fn auth_web_config(env: &Env, user: &str, password: &str, cost: u32) -> std::path::PathBuf {
    let path = env.dir.path().join("web-auth.yml");
    std::fs::write(
        &path,
        format!(
            "basic_auth_users:\n  {user}: '{}'\n",
            bcrypt::hash(password, cost).unwrap()
        ),
    )
    .unwrap();
    path
}

/// A keep-alive connection sending `n` requests for `/-/healthy` with these credentials one
/// after the other; the statuses answered.
async fn basic_auth_requests(
    addr: std::net::SocketAddr,
    user: &str,
    password: impl Fn(usize) -> String,
    n: usize,
) -> Vec<u16> {
    use base64::Engine;
    let mut out = Vec::new();
    let Ok(mut s) = faultclient::connect(addr, Duration::from_secs(10)).await else {
        return out;
    };
    for i in 0..n {
        let auth =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{}", password(i)));
        let req = format!(
            "GET /-/healthy HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Basic {auth}\r\n\r\n"
        );
        if s.write_all(req.as_bytes()).await.is_err() {
            break;
        }
        match read_response(&mut s).await {
            Ok((status, _)) => out.push(status),
            Err(_) => break,
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_floods_do_not_grow_threads_and_the_right_password_still_passes() {
    let env = Env::new();
    let web = auth_web_config(&env, "prometheus", "scrape-Secret", 6);
    let mut p = Process::spawn(
        &env,
        &config_with(&env, &format!("web_config_file = \"{}\"", web.display())),
        None,
    );
    let addr = p.addr;
    assert_eq!(p.ready().await.0, 401);
    let right = basic_auth_requests(addr, "prometheus", |_| "scrape-Secret".into(), 2).await;
    assert_eq!(right, [200, 200]);
    let threads_before = p.threads();

    // Watch the thread count while 128 connections send wrong passwords, first all the same
    // one, then each a different one (a guessing attack), and a right one now and then.
    let watching = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let most = {
        let (watching, pid) = (watching.clone(), p.child.id());
        tokio::spawn(async move {
            let mut most = 0;
            while watching.load(std::sync::atomic::Ordering::Relaxed) {
                let n = std::fs::read_dir(format!("/proc/{pid}/task"))
                    .map(|d| d.count())
                    .unwrap_or(0);
                most = most.max(n);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            most
        })
    };
    let same = futures::future::join_all(
        (0..128).map(|_| basic_auth_requests(addr, "prometheus", |_| "wrong".into(), 5)),
    );
    let guesses =
        futures::future::join_all((0..128).map(|c| {
            basic_auth_requests(addr, "prometheus", move |i| format!("guess-{c}-{i}"), 3)
        }));
    let scrapes = basic_auth_requests(addr, "prometheus", |_| "scrape-Secret".into(), 3);
    let (same, guesses, scrapes) = tokio::join!(same, guesses, scrapes);
    watching.store(false, std::sync::atomic::Ordering::Relaxed);
    let most = most.await.unwrap();

    let statuses: Vec<u16> = same.into_iter().chain(guesses).flatten().collect();
    assert!(statuses.len() >= 128 * 5, "{} answers", statuses.len());
    assert!(
        statuses.iter().all(|s| [401, 503].contains(s)),
        "{statuses:?}"
    );
    assert_eq!(scrapes, [200, 200, 200]);
    assert!(
        most <= threads_before + 4,
        "{threads_before} threads before the flood, {most} during it"
    );
    let right = basic_auth_requests(addr, "prometheus", |_| "scrape-Secret".into(), 1).await;
    assert_eq!(right, [200]);
}
