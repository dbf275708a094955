//! Logs and output of the real binary: a closed or stalled stderr never stops probing, CLI output
//! to a closed pipe ends quietly, and no log level shows a secret.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use common::{Env, PASSWORD, USER, sample};
use mailprobe_testpeers::dovecot::{Dovecot, Options};
use mailprobe_testpeers::util::free_port;

/// A `mailprobe run` child, killed if a test gives up on it.
struct Running {
    child: Child,
    listen: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Starts `mailprobe run` on the env's probes.toml with stderr going to `stderr`.
fn run(env: &Env, stderr: Stdio, vars: &[(&str, &str)]) -> Running {
    let listen = format!("127.0.0.1:{}", free_port());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mailprobe"));
    cmd.args([
        "run",
        "-c",
        env.config_path().to_str().unwrap(),
        "--listen",
        &listen,
    ])
    .env_remove("RUST_LOG")
    .env_remove("JOURNAL_STREAM")
    .env_remove("NOTIFY_SOCKET")
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(stderr);
    for (k, v) in vars {
        cmd.env(k, v);
    }
    Running {
        child: cmd.spawn().expect("start mailprobe run"),
        listen,
    }
}

/// `GET path` over HTTP/1.0 with short timeouts, so that a wedged daemon fails the wait instead
/// of hanging the test: `(status, body)`, or `None` when it did not answer in time.
fn get(listen: &str, path: &str) -> Option<(u16, String)> {
    let addr = listen.parse().ok()?;
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.set_write_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {listen}\r\n\r\n").ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

/// Polls `check` every 100 ms for up to `secs` seconds.
fn wait<T>(secs: u64, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `mailprobe_probes_total{target, result}` now, if the daemon answers.
fn probes(listen: &str, target: &str, result: &str) -> Option<f64> {
    let (status, m) = get(listen, "/metrics")?;
    (status == 200).then_some(())?;
    sample(
        &m,
        "mailprobe_probes_total",
        &[("target", target), ("result", result)],
    )
}

/// Waits until `target` has at least `n` probes counted with `result`.
fn wait_probes(r: &Running, target: &str, result: &str, n: f64) -> f64 {
    wait(30, &format!("{n} {result} probes of {target}"), || {
        probes(&r.listen, target, result).filter(|v| *v >= n)
    })
}

/// Sends SIGTERM and waits up to 20 s for the process to end.
fn terminate(r: &mut Running) -> ExitStatus {
    let pid = r.child.id().to_string();
    Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill -TERM");
    wait(20, "the daemon to exit after SIGTERM", || {
        r.child.try_wait().expect("wait for mailprobe")
    })
}

const FAST: &str = "[global]\ninterval = \"1s\"\ntimeout = \"1s\"\n";

/// `n` targets on a closed port: cheap, every probe fails and logs.
fn refused_targets(n: usize) -> String {
    let port = free_port();
    (0..n)
        .map(|i| {
            format!(
                "[[target]]\nname = \"refused-{i}\"\nprotocol = \"imap\"\nhost = \"127.0.0.1\"\nport = {port}\n\
                 tls = \"none\"\nallow_plaintext = true\nusername = \"u\"\npassword_env = \"HOME\"\n"
            )
        })
        .collect()
}

#[test]
fn probing_goes_on_after_the_stderr_reader_closes() {
    let env = Env::new();
    let dc = Dovecot::start(&env.pki, Options::default());
    env.config(&format!(
        "{FAST}log_level = \"debug\"\n{}",
        env.imap_target("good", dc.ports.imaps, "")
    ));
    // `mailprobe run 2>&1 | head -2`.
    let mut r = run(&env, Stdio::piped(), &[]);
    let mut lines = BufReader::new(r.child.stderr.take().unwrap()).lines();
    for _ in 0..2 {
        lines.next().expect("a log line").expect("readable stderr");
    }
    drop(lines);
    let closed = Instant::now();

    let before = probes(&r.listen, "good", "success").unwrap_or(0.0);
    let after = wait_probes(&r, "good", "success", before + 3.0);
    eprintln!(
        "{} probes completed in {:.1} s after the pipe closed",
        after - before,
        closed.elapsed().as_secs_f64()
    );
    assert_eq!(get(&r.listen, "/-/ready").map(|r| r.0), Some(200));

    let status = terminate(&mut r);
    assert!(status.success(), "{status:?}");
}

#[test]
fn probing_goes_on_while_nobody_reads_stderr() {
    let env = Env::new();
    let dc = Dovecot::start(&env.pki, Options::default());
    env.config(&format!(
        "{FAST}log_level = \"debug\"\n{}{}",
        env.imap_target("good", dc.ports.imaps, ""),
        refused_targets(1000)
    ));
    // stderr is a pipe nobody reads: it fills (64 KiB) and then every write would block.
    let mut r = run(&env, Stdio::piped(), &[]);
    let _unread = r.child.stderr.take().unwrap();

    // Every probe logs a line of more than 100 bytes at debug, so 1,000 probes are well past
    // what the pipe holds; then the daemon's own queue fills and lines are dropped.
    wait(60, "1,000 probes", || {
        let m = get(&r.listen, "/metrics")?.1;
        let total: f64 = m
            .lines()
            .filter(|l| l.starts_with("mailprobe_probes_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        (total >= 1000.0).then_some(())
    });
    let dropped = wait(60, "dropped log lines counted", || {
        let m = get(&r.listen, "/metrics")?.1;
        sample(&m, "mailprobe_log_lines_dropped_total", &[]).filter(|v| *v > 0.0)
    });
    let before = probes(&r.listen, "good", "success").expect("metrics");
    wait_probes(&r, "good", "success", before + 3.0);
    assert_eq!(get(&r.listen, "/-/ready").map(|r| r.0), Some(200));
    eprintln!("{dropped} log lines dropped; probing went on");

    let status = terminate(&mut r);
    assert!(status.success(), "{status:?}");
}

/// Runs the binary with stdout (and, with `close_stderr`, stderr too) a pipe whose reader has
/// already gone: `(exit code, stderr)`.
fn with_closed_stdout(args: &[&str], close_stderr: bool) -> (Option<i32>, String) {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mailprobe"));
    cmd.args(args).env_remove("RUST_LOG").stdout(writer);
    let out = if close_stderr {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        cmd.stderr(writer).status().map(|s| (s, String::new()))
    } else {
        cmd.stderr(Stdio::piped())
            .output()
            .map(|o| (o.status, String::from_utf8_lossy(&o.stderr).into_owned()))
    }
    .expect("run mailprobe");
    (out.0.code(), out.1)
}

#[test]
fn cli_output_to_a_closed_pipe_ends_quietly() {
    let env = Env::new();
    let dc = Dovecot::start(&env.pki, Options::default());
    env.config(&env.imap_target("good", dc.ports.imaps, ""));
    let cfg = env.config_path();
    let cfg = cfg.to_str().unwrap();
    let state = env.dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    // An empty history is enough for `incidents` to print its header.
    drop(mailprobe::incidents::store::Store::open(&state).unwrap());

    for (args, code) in [
        (vec!["check", "-c", cfg], 0),
        (vec!["probe", "-c", cfg], 0),
        (vec!["probe", "--json", "-c", cfg], 0),
        (vec!["incidents", "-c", cfg], 0),
    ] {
        let (status, stderr) = with_closed_stdout(&args, false);
        assert_eq!(status, Some(code), "{args:?}: {stderr}");
        assert!(stderr.is_empty(), "{args:?} wrote to stderr: {stderr}");
    }
    // An error with stderr closed as well is still exit status 1, not a panic's 101.
    let (status, _) = with_closed_stdout(&["check", "-c", "/nonexistent/probes.toml"], true);
    assert_eq!(status, Some(1));

    // The real thing: `mailprobe check | head -1` with a table longer than a pipe holds.
    let many: String = (0..2000)
        .map(|i| env.imap_target(&format!("target-number-{i}"), 993, ""))
        .collect();
    std::fs::write(env.dir.path().join("many.toml"), env.with_state(&many)).unwrap();
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -o pipefail; {} check -c {} | head -1",
            env!("CARGO_BIN_EXE_mailprobe"),
            env.dir.path().join("many.toml").display()
        ))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
    assert!(stderr.is_empty(), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains(": OK: 2000 targets"));
}

/// Every form a secret can take in a log: as is, and inside any base64 word (SASL PLAIN, LOGIN,
/// XOAUTH2 and OAUTHBEARER blobs, HTTP Basic credentials).
fn assert_no_secret(what: &str, log: &str, secrets: &[String]) {
    for s in secrets {
        assert!(!log.contains(s.as_str()), "{what}: {s:?} in the log");
    }
    let b64 = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let words = log.split(|c: char| !(c.is_ascii_alphanumeric() || "+/=".contains(c)));
    for word in words.filter(|w| w.len() >= 8) {
        // An escape before the word (`\nAGFi...`) may have glued a letter to it.
        for skip in 0..4 {
            let Ok(bytes) = b64.decode(&word[skip..]) else {
                continue;
            };
            let text = String::from_utf8_lossy(&bytes);
            for s in secrets {
                assert!(
                    !text.contains(s.as_str()),
                    "{what}: {s:?} base64-encoded in the log: {word}"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_log_level_shows_a_secret() {
    use mailprobe_testpeers::https::{HttpsServer, Options as WebOptions};
    use mailprobe_testpeers::oauth::{Client, TokenServer};
    const CLIENT_SECRET: &str = "app-Secret-42";
    let env = Env::new();
    let idp = TokenServer::start(&env.pki.valid, Duration::from_secs(3600)).await;
    idp.add_client(
        "app",
        Client {
            secret: Some(CLIENT_SECRET.into()),
            assertion_key: None,
            user: USER.into(),
        },
    );
    let dc = Dovecot::start(
        &env.pki,
        Options {
            oauth2_introspection: Some(idp.introspection_url.clone()),
            ..Options::default()
        },
    );
    let pf = mailprobe_testpeers::postfix::Postfix::start(&env.pki, &dc, None);
    let web = HttpsServer::start(WebOptions::new(env.pki.valid.clone())).await;
    let mut oauth_web = WebOptions::new(env.pki.valid.clone());
    oauth_web.bearer_check = Some(idp.validator());
    let oauth_web = HttpsServer::start(oauth_web).await;

    let ca = env.pki.ca.display().to_string();
    let oauth2 = format!(
        "auth = \"oauth2\"\n[target.oauth2]\ntoken_url = \"{}\"\nclient_id = \"app\"\n\
         client_secret_file = \"{}\"\nca_file = \"{ca}\"\n",
        idp.token_url,
        env.secret("app.secret", CLIENT_SECRET).display()
    );
    let https = |name: &str, url: String, extra: String| {
        format!(
            "[[target]]\nname = \"{name}\"\nprotocol = \"https\"\nurl = \"{url}\"\nca_file = \"{ca}\"\n{extra}\n"
        )
    };
    let targets = [
        env.imap_target("imap-login", dc.ports.imaps, "auth_mechanism = \"login\""),
        env.imap_target("imap-plain", dc.ports.imaps, "auth_mechanism = \"plain\""),
        env.imap_target(
            "imap-xoauth2",
            dc.ports.imaps,
            &format!("auth_mechanism = \"xoauth2\"\n{oauth2}"),
        )
        .replace(
            &format!(
                "password_file = \"{}\"\n",
                env.dir.path().join("imap-xoauth2.pass").display()
            ),
            "",
        ),
        env.imap_target(
            "imap-oauthbearer",
            dc.ports.imaps,
            &format!("auth_mechanism = \"oauthbearer\"\n{oauth2}"),
        )
        .replace(
            &format!(
                "password_file = \"{}\"\n",
                env.dir.path().join("imap-oauthbearer.pass").display()
            ),
            "",
        ),
        env.smtp_target(
            "smtp-plain",
            pf.ports.submission,
            "auth_mechanism = \"plain\"",
        ),
        env.smtp_target(
            "smtp-login",
            pf.ports.submission,
            "auth_mechanism = \"login\"",
        ),
        https(
            "web-basic",
            web.url("/secure"),
            format!(
                "auth = \"basic\"\nusername = \"webuser\"\npassword_file = \"{}\"",
                env.secret("web.pass", "web-Secret").display()
            ),
        ),
        https(
            "web-bearer",
            web.url("/.well-known/jmap"),
            format!(
                "check = \"jmap\"\nauth = \"bearer\"\npassword_file = \"{}\"",
                env.secret("jmap.token", "jmap-t0ken").display()
            ),
        ),
        https(
            "web-oauth2",
            oauth_web.url("/.well-known/jmap"),
            format!("check = \"jmap\"\n{oauth2}"),
        ),
    ];
    let names: Vec<String> = targets
        .iter()
        .map(|t| t.split('"').nth(1).unwrap().to_string())
        .collect();
    env.config(&format!(
        "[global]\ninterval = \"2s\"\ntimeout = \"2s\"\nlog_level = \"trace\"\n{}",
        targets.concat()
    ));

    // The daemon with log_level = "trace".
    let log_path = env.dir.path().join("run.log");
    let mut r = run(&env, std::fs::File::create(&log_path).unwrap().into(), &[]);
    for name in &names {
        let listen = r.listen.clone();
        let name = name.clone();
        tokio::task::spawn_blocking(move || {
            wait(30, &format!("a success of {name}"), || {
                probes(&listen, &name, "success").filter(|v| *v >= 1.0)
            })
        })
        .await
        .unwrap();
    }
    let status = tokio::task::spawn_blocking(move || terminate(&mut r))
        .await
        .unwrap();
    assert!(status.success());
    let daemon_log = std::fs::read_to_string(&log_path).unwrap();

    // `mailprobe probe` with RUST_LOG asking every library for its wire traffic.
    let config = env.config_path();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_mailprobe"))
            .args(["probe", "-c", config.to_str().unwrap()])
            .env(
                "RUST_LOG",
                "trace,async_imap=trace,async_imap::imap_stream=trace,lettre=trace,rustls=trace,\
                 tokio_rustls=trace,h2=trace,hyper=trace,hyper_util=trace,reqwest=trace,\
                 hickory_proto=trace,hickory_resolver=trace,log=trace",
            )
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let probe_log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "every probe succeeded, so every secret was sent: {}\n{probe_log}",
        String::from_utf8_lossy(&out.stdout)
    );

    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let mut secrets = vec![
        PASSWORD.to_string(),
        b64(PASSWORD),
        b64(&format!("\0{USER}\0{PASSWORD}")),
        "web-Secret".into(),
        b64("webuser:web-Secret"),
        "jmap-t0ken".into(),
        CLIENT_SECRET.into(),
    ];
    let tokens = idp.issued();
    assert!(!tokens.is_empty());
    for t in tokens {
        secrets.push(b64(&format!("user={USER}\x01auth=Bearer {t}\x01\x01")));
        secrets.push(t);
    }
    assert_no_secret("mailprobe run at trace", &daemon_log, &secrets);
    assert_no_secret("mailprobe probe with RUST_LOG=trace", &probe_log, &secrets);
    // The daemon did log at the levels asked for (successes are at debug).
    assert!(
        daemon_log.contains("probe succeeded"),
        "debug and trace were on: {daemon_log}"
    );
}
