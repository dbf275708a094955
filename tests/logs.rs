//! Logs and output of the real binary: a closed or stalled stderr never stops probing, CLI output
//! to a closed pipe ends quietly, no log level shows a secret, and the lines fit journald and
//! on-call (syslog priority prefixes, valid logfmt, JSON numbers, a state change logged once).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use common::{ChildDaemon, Env, PASSWORD, USER, sample};
use mailprobe_testpeers::dovecot::{Dovecot, Options};
use mailprobe_testpeers::util::free_port;

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

/// Probes of `target` with `result` now, if the daemon answers: its failures, or the
/// successes of its region and protocol (it is alone in them in these tests).
fn probes(listen: &str, target: &str, result: &str) -> Option<f64> {
    let (status, m) = get(listen, "/metrics")?;
    (status == 200).then_some(())?;
    if result == "failure" {
        sample(&m, "mailprobe_probe_success", &[("target", target)])?;
        Some(common::failures_of(&m, target))
    } else {
        common::group_successes(&m, target)
    }
}

/// Whether `target` has succeeded at least once, if the daemon answers.
fn succeeded(listen: &str, target: &str) -> Option<()> {
    let (status, m) = get(listen, "/metrics")?;
    (status == 200).then_some(())?;
    sample(
        &m,
        "mailprobe_probe_last_success_timestamp_seconds",
        &[("target", target)],
    )
    .map(|_| ())
}

/// Waits until `target` has at least `n` probes counted with `result`.
fn wait_probes(r: &ChildDaemon, target: &str, result: &str, n: f64) -> f64 {
    wait(30, &format!("{n} {result} probes of {target}"), || {
        probes(&r.listen, target, result).filter(|v| *v >= n)
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
    let mut r = ChildDaemon::start(&env, Stdio::piped(), &[]);
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

    let status = r.terminate();
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
    let mut r = ChildDaemon::start(&env, Stdio::piped(), &[]);
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

    let status = r.terminate();
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
    let mut r = ChildDaemon::start(&env, std::fs::File::create(&log_path).unwrap().into(), &[]);
    for name in &names {
        let listen = r.listen.clone();
        let name = name.clone();
        tokio::task::spawn_blocking(move || {
            wait(30, &format!("a success of {name}"), || {
                succeeded(&listen, &name)
            })
        })
        .await
        .unwrap();
    }
    let status = tokio::task::spawn_blocking(move || r.terminate())
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

/// Parses one logfmt line strictly: `key=value` pairs separated by one space; a value is bare
/// (no space, quote, `=` or control character) or double-quoted with `\"`, `\\`, `\n`, `\r`,
/// `\t` escapes.
fn logfmt(line: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' {
                break;
            }
            if !(c.is_ascii_alphanumeric() || "_.-".contains(c)) {
                return Err(format!("bad key character {c:?} in {line}"));
            }
            key.push(c);
            chars.next();
        }
        if key.is_empty() || chars.next() != Some('=') {
            return Err(format!("expected key= in {line}"));
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err(format!("unterminated quote in {line}")),
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some('"') => value.push('"'),
                        Some('\\') => value.push('\\'),
                        Some('n') => value.push('\n'),
                        Some('r') => value.push('\r'),
                        Some('t') => value.push('\t'),
                        other => return Err(format!("bad escape {other:?} in {line}")),
                    },
                    Some(c) if c.is_control() => return Err(format!("raw control in {line}")),
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ' ' {
                    break;
                }
                if c == '"' || c == '=' || c.is_control() {
                    return Err(format!("{c:?} in a bare value in {line}"));
                }
                value.push(c);
                chars.next();
            }
            if value.is_empty() {
                return Err(format!("empty bare value for {key} in {line}"));
            }
        }
        pairs.push((key, value));
        match chars.next() {
            None => return Ok(pairs),
            Some(' ') if chars.peek().is_some_and(|c| *c != ' ') => {}
            Some(c) => return Err(format!("unexpected {c:?} after a value in {line}")),
        }
    }
}

fn field<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Runs the daemon with `config` until `until` says enough happened, then stops it with SIGTERM
/// and returns its whole stderr.
fn daemon_log(env: &Env, vars: &[(&str, &str)], until: impl FnOnce(&mut ChildDaemon)) -> String {
    let path = env.dir.path().join("daemon.log");
    let file = std::fs::File::create(&path).unwrap();
    let (dev, ino) = {
        use std::os::unix::fs::MetadataExt;
        let m = file.metadata().unwrap();
        (m.dev(), m.ino())
    };
    let journal = format!("{dev}:{ino}");
    let vars: Vec<(&str, &str)> = vars
        .iter()
        .map(|(k, v)| (*k, if *v == "STDERR" { journal.as_str() } else { v }))
        .collect();
    let mut r = ChildDaemon::start(env, file.into(), &vars);
    until(&mut r);
    let status = r.terminate();
    assert!(status.success(), "{status:?}");
    std::fs::read_to_string(&path).unwrap()
}

/// A config with an invalid key, for a refused reload (an ERROR line).
fn refuse_a_reload(env: &Env, r: &ChildDaemon, good: &str) {
    std::fs::write(
        env.config_path(),
        env.with_state(&format!("{good}bogus = 1\n")),
    )
    .unwrap();
    let pid = r.child.id().to_string();
    Command::new("kill").args(["-HUP", &pid]).status().unwrap();
}

#[test]
fn text_lines_are_logfmt_with_clean_values() {
    let env = Env::new();
    let dc = Dovecot::start(&env.pki, Options::default());
    let text = format!(
        "{FAST}log_level = \"debug\"\n{}{}",
        env.imap_target("good", dc.ports.imaps, ""),
        refused_targets(1)
    );
    env.config(&text);
    let log = daemon_log(&env, &[], |r| {
        wait_probes(r, "good", "success", 2.0);
        wait_probes(r, "refused-0", "failure", 2.0);
        refuse_a_reload(&env, r, &text);
        wait(10, "the refused reload", || {
            let m = get(&r.listen, "/metrics")?.1;
            sample(&m, "mailprobe_config_last_reload_successful", &[]).filter(|v| *v == 0.0)
        });
    });
    let lines: Vec<Vec<(String, String)>> = log
        .lines()
        .map(|l| logfmt(l).unwrap_or_else(|e| panic!("{e}\n{log}")))
        .collect();
    for l in &lines {
        for key in ["ts", "level", "msg"] {
            assert!(field(l, key).is_some(), "{key} missing: {l:?}");
        }
    }
    let started = lines
        .iter()
        .find(|l| field(l, "msg") == Some("mailprobe started"))
        .expect("a start line");
    assert!(
        field(started, "listen").is_some_and(|v| v.starts_with("127.0.0.1:")),
        "{started:?}"
    );
    assert_eq!(field(started, "targets"), Some("2"));
    let failed = lines
        .iter()
        .find(|l| field(l, "msg") == Some("probe failed"))
        .expect("a failure line");
    assert_eq!(field(failed, "target"), Some("refused-0"));
    assert_eq!(field(failed, "class"), Some("connect_refused"));
    assert!(field(failed, "detail").is_some_and(|d| d.contains(' ')));
    assert!(
        field(failed, "total_ms").is_some_and(|v| v.parse::<f64>().is_ok()),
        "{failed:?}"
    );
    let refused = lines
        .iter()
        .find(|l| field(l, "level") == Some("error"))
        .expect("the refused reload");
    assert!(
        field(refused, "error").is_some_and(|e| e.contains("target[2] \"refused-0\".bogus")),
        "{refused:?}"
    );
}

#[test]
fn json_lines_carry_numbers_as_numbers() {
    let env = Env::new();
    env.config(&format!(
        "{FAST}log_format = \"json\"\nlog_level = \"debug\"\n{}",
        refused_targets(1)
    ));
    let log = daemon_log(&env, &[], |r| {
        wait_probes(r, "refused-0", "failure", 2.0);
    });
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let started = lines
        .iter()
        .find(|l| l["message"] == "mailprobe started")
        .expect("a start line");
    assert!(started["targets"].is_u64(), "{started}");
    assert!(
        started["listen"]
            .as_str()
            .is_some_and(|v| v.starts_with("127.0.0.1:")),
        "{started}"
    );
    let failed = lines
        .iter()
        .find(|l| l["message"] == "probe failed")
        .expect("a failure line");
    assert!(failed["total_ms"].is_f64(), "{failed}");
    let again = lines
        .iter()
        .filter(|l| l["message"] == "probe failed")
        .nth(1)
        .expect("a repeated failure at debug");
    assert_eq!(again["level"], "DEBUG", "{again}");
}

#[test]
fn under_journald_each_line_carries_its_syslog_priority() {
    let env = Env::new();
    let dc = Dovecot::start(&env.pki, Options::default());
    let text = format!(
        "{FAST}log_level = \"debug\"\n{}{}",
        env.imap_target("good", dc.ports.imaps, ""),
        refused_targets(1)
    );
    env.config(&text);
    let log = daemon_log(&env, &[("JOURNAL_STREAM", "STDERR")], |r| {
        wait_probes(r, "good", "success", 2.0);
        wait_probes(r, "refused-0", "failure", 2.0);
        refuse_a_reload(&env, r, &text);
        wait(10, "the refused reload", || {
            let m = get(&r.listen, "/metrics")?.1;
            sample(&m, "mailprobe_config_last_reload_successful", &[]).filter(|v| *v == 0.0)
        });
    });
    let mut seen = std::collections::BTreeSet::new();
    for line in log.lines() {
        let (prefix, rest) = line
            .split_at_checked(3)
            .unwrap_or_else(|| panic!("short line {line:?}"));
        let pairs = logfmt(rest).unwrap_or_else(|e| panic!("{e}"));
        let want = match field(&pairs, "level") {
            Some("error") => "<3>",
            Some("warn") => "<4>",
            Some("info") => "<6>",
            Some("debug") | Some("trace") => "<7>",
            other => panic!("level {other:?} in {line}"),
        };
        assert_eq!(prefix, want, "{line}");
        // journald stamps the time itself.
        assert!(field(&pairs, "ts").is_none(), "{line}");
        seen.insert(prefix.to_string());
    }
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        ["<3>", "<4>", "<6>", "<7>"],
        "{log}"
    );

    // JOURNAL_STREAM inherited by a process whose stderr goes elsewhere: no prefixes.
    env.config(&text);
    let log = daemon_log(&env, &[("JOURNAL_STREAM", "1:1")], |r| {
        wait_probes(r, "refused-0", "failure", 1.0);
    });
    assert!(log.lines().all(|l| l.starts_with("ts=")), "{log}");
}

#[test]
fn a_state_change_is_logged_once_and_repeats_go_to_debug() {
    let env = Env::new();
    let mut dc = Dovecot::start(&env.pki, Options::default());
    env.config(&format!(
        "{FAST}{}{}",
        env.imap_target("flap", dc.ports.imaps, ""),
        refused_targets(1)
    ));
    let log = daemon_log(&env, &[], |r| {
        let ok = wait_probes(r, "flap", "success", 1.0);
        dc.stop();
        wait_probes(r, "flap", "failure", 5.0);
        dc.restart();
        wait_probes(r, "flap", "success", ok + 2.0);
    });
    let lines: Vec<Vec<(String, String)>> = log
        .lines()
        .map(|l| logfmt(l).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    let of = |target: &str| -> Vec<(String, String)> {
        lines
            .iter()
            .filter(|l| field(l, "target") == Some(target))
            .map(|l| {
                (
                    field(l, "level").unwrap().to_string(),
                    field(l, "msg").unwrap().to_string(),
                )
            })
            .collect()
    };
    let pair = |l: &str, m: &str| (l.to_string(), m.to_string());
    // Up, down (5+ identical failures), back: two lines.
    assert_eq!(
        of("flap"),
        [
            pair("warn", "probe failed"),
            pair("info", "probe succeeded again")
        ],
        "{log}"
    );
    // Down all along (10+ failures): one line.
    assert_eq!(of("refused-0"), [pair("warn", "probe failed")], "{log}");
    let back = lines
        .iter()
        .find(|l| field(l, "msg") == Some("probe succeeded again"))
        .unwrap();
    assert!(
        field(back, "failures")
            .and_then(|v| v.parse::<u32>().ok())
            .is_some_and(|n| n >= 5),
        "{back:?}"
    );
    // Incidents opening or changing are warnings; a resolved one is not.
    let incidents: Vec<_> = lines
        .iter()
        .filter(|l| field(l, "msg") == Some("incident"))
        .collect();
    assert!(!incidents.is_empty(), "{log}");
    for l in incidents {
        let resolved = field(l, "event").is_some_and(|e| e.starts_with("resolved"));
        let want = if resolved { "info" } else { "warn" };
        assert_eq!(field(l, "level"), Some(want), "{l:?}");
    }
}

#[test]
fn a_fleet_overrunning_its_intervals_logs_one_line_per_period_not_one_per_skip() {
    let env = Env::new();
    // A server that accepts (the kernel's backlog) and never greets: every probe takes its
    // whole 1 s timeout, and with one probe in flight at a time ten 1 s targets skip nine
    // planned starts in ten, every second.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let targets: String = (0..10)
        .map(|i| {
            format!(
                "[[target]]\nname = \"silent-{i}\"\nprotocol = \"imap\"\nhost = \"127.0.0.1\"\n\
                 port = {port}\ntls = \"none\"\nallow_plaintext = true\nusername = \"u\"\n\
                 password_env = \"HOME\"\n"
            )
        })
        .collect();
    env.config(&format!("{FAST}concurrency = 1\n{targets}"));
    let started = Instant::now();
    let log = daemon_log(&env, &[], |r| {
        wait(30, "30 skipped starts", || {
            let (status, m) = get(&r.listen, "/metrics")?;
            (status == 200).then_some(())?;
            let skipped: f64 = m
                .lines()
                .filter(|l| l.starts_with("mailprobe_probes_skipped_total{"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum();
            (skipped >= 30.0).then_some(())
        });
    });
    let elapsed = started.elapsed().as_secs();
    let overran = log
        .lines()
        .filter(|l| l.contains("probe overran its interval"))
        .count() as u64;
    // One line at the first skip, then at most one per 10 s.
    assert!(
        (1..=1 + elapsed / 10).contains(&overran),
        "{overran} overrun lines in {elapsed} s:\n{log}"
    );
    drop(silent);
}
