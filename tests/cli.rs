//! The `mailprobe` binary: check, probe (table and JSON), run with signals, and the shipped
//! probes.toml against the demo peers.

mod common;

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{Env, http};
use mailprobe_testpeers::dovecot::{Dovecot, Options};

fn mailprobe(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mailprobe"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run mailprobe")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn check_refuses_an_invalid_config_naming_file_line_and_key() {
    let env = Env::new();
    let path = env.config_path();
    std::fs::write(
        &path,
        "[global]\ninterval = \"30s\"\n\n[[target]]\nname = \"x\"\nprotocol = \"imap\"\nhost = \"h\"\nport = 99999\n",
    )
    .unwrap();
    let out = mailprobe(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}:8:8: target[1] \"x\".port: invalid value: integer `99999`",
            path.display()
        )),
        "{err}"
    );
}

#[test]
fn a_config_error_names_the_target_by_its_name_as_well_as_its_index() {
    let env = Env::new();
    let path = env.config_path();
    let target = |name: &str, extra: &str| {
        format!(
            "[[target]]\nname = \"{name}\"\nregion = \"eu\"\nprotocol = \"https\"\n\
             url = \"https://127.0.0.1/\"\n{extra}"
        )
    };
    let long = format!("mbx-{}", "x".repeat(100));
    std::fs::write(
        &path,
        format!(
            "{}{}{}",
            target("imap-eu", ""),
            target(&long, ""),
            target("imap.us", "tls = \"sometimes\"\n")
        ),
    )
    .unwrap();
    let err = text(&mailprobe(&["check", "--config", path.to_str().unwrap()]).stderr);
    assert!(
        err.contains(&format!(
            "{}:16:1: target[3] \"imap.us\".tls: key `tls` does not apply to protocol \"https\"",
            path.display()
        )),
        "{err}"
    );
    // A long name is shown whole.
    std::fs::write(
        &path,
        target(&long, "interval = \"1h\"\ntimeout = \"2h\"\n"),
    )
    .unwrap();
    let err = text(&mailprobe(&["check", "--config", path.to_str().unwrap()]).stderr);
    assert!(
        err.contains(&format!("target[1] \"{long}\".timeout: ")),
        "{err}"
    );
    // A warning names the target the same way.
    std::fs::write(&path, env.imap_target("imap-eu", 993, "timeout = \"2s\"")).unwrap();
    let out = mailprobe(&["check", "--config", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("target[1] \"imap-eu\".timeout: 2s leaves about 1s for login"),
        "{err}"
    );
}

#[test]
fn check_refuses_a_missing_password_file() {
    let env = Env::new();
    let t = env.imap_target("t", 993, "").replace(
        &env.dir.path().join("t.pass").display().to_string(),
        "/nonexistent/secret",
    );
    std::fs::write(env.config_path(), t).unwrap();
    let out = mailprobe(&["check", "-c", env.config_path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains(":9:1: target[1] \"t\".password_file: cannot read /nonexistent/secret"),
        "{err}"
    );
}

/// `mailprobe check -c <config>` run in `dir`: (exit code, stdout, stderr).
fn check_in(dir: &std::path::Path, config: &str) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mailprobe"))
        .args(["check", "-c", config])
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .env_remove("STATE_DIRECTORY")
        .output()
        .expect("run mailprobe");
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

/// `mailprobe run -c <config>` on a free port, expected to refuse at once: (exit code, stderr),
/// or (None, stderr) when it was still running after 10 s (then it is killed). State goes to
/// `state` unless the config says otherwise.
fn run_refused(config: &str, extra: &[&str], state: &std::path::Path) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mailprobe"))
        .args(["run", "-c", config, "--listen", "127.0.0.1:0"])
        .args(extra)
        .env_remove("RUST_LOG")
        .env("STATE_DIRECTORY", state)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run mailprobe");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (code, err)
}

#[test]
fn check_refuses_files_that_are_not_configs_saying_where_once() {
    let env = Env::new();
    let dir = env.dir.path();
    let refused = |config: &str, stderr: String| {
        assert_eq!(
            check_in(dir, config),
            (Some(1), String::new(), stderr),
            "{config}"
        );
    };
    // A relative path says where it was looked for; the OS error is never printed twice.
    refused(
        "missing.toml",
        format!(
            "error: missing.toml: cannot read config: no such file in {}\n",
            dir.display()
        ),
    );
    let abs = dir.join("missing.toml").display().to_string();
    refused(
        &abs,
        format!("error: {abs}: cannot read config: no such file\n"),
    );
    std::fs::create_dir(dir.join("conf.d")).unwrap();
    refused(
        "conf.d",
        "error: conf.d: cannot read config: is a directory, not a file\n".into(),
    );
    std::fs::write(
        dir.join("latin1.toml"),
        b"[global]\ninterval = \"30s\" # \xe9t\xe9\n",
    )
    .unwrap();
    refused(
        "latin1.toml",
        "error: latin1.toml:2:20: not UTF-8 (byte 0xE9): the file must be UTF-8 text\n".into(),
    );
    // A file that never ends is read up to a bound, not until the memory is gone.
    refused(
        "/dev/zero",
        "error: /dev/zero: cannot read config: larger than 64 MiB\n".into(),
    );
    // The web config and the files it names are read the same way.
    let t = env.imap_target("t", 993, "");
    std::fs::write(
        env.config_path(),
        format!("[global]\nweb_config_file = \"/dev/zero\"\n{t}"),
    )
    .unwrap();
    refused(
        "probes.toml",
        "error: /dev/zero: cannot read web config: larger than 1 MiB\n".into(),
    );
    std::fs::write(
        dir.join("web.yml"),
        "tls_server_config:\n  cert_file: /dev/zero\n  key_file: /dev/zero\n",
    )
    .unwrap();
    std::fs::write(
        env.config_path(),
        format!("[global]\nweb_config_file = \"web.yml\"\n{t}"),
    )
    .unwrap();
    refused(
        "probes.toml",
        "error: ./web.yml:2:3: cert_file: /dev/zero: larger than 4 MiB\n".into(),
    );
}

#[test]
fn check_and_run_refuse_a_config_without_targets() {
    let env = Env::new();
    let path = env.config_path();
    let p = path.to_str().unwrap();
    for content in [
        "",
        " \n\t\n",
        "# targets come later\n\n",
        "[global]\ninterval = \"30s\"\n",
    ] {
        std::fs::write(&path, content).unwrap();
        let expected = format!(
            "error: {p}: no targets: a config without [[target]] tables would probe nothing\n"
        );
        assert_eq!(
            check_in(env.dir.path(), p),
            (Some(1), String::new(), expected.clone()),
            "{content:?}"
        );
        let state = env.dir.path().join("state");
        assert_eq!(run_refused(p, &[], &state), (Some(1), expected));
    }
}

#[test]
fn check_refuses_a_state_dir_that_run_could_not_create() {
    let env = Env::new();
    let file = env.dir.path().join("state");
    std::fs::write(&file, "not a directory").unwrap();
    let t = env.imap_target("t", 993, "");
    for (dir, why) in [
        (file.clone(), "exists and is not a directory".to_string()),
        (
            file.join("sub"),
            format!("{} is not a directory", file.display()),
        ),
    ] {
        std::fs::write(
            env.config_path(),
            format!("[incidents]\nstate_dir = \"{}\"\n{t}", dir.display()),
        )
        .unwrap();
        let p = env.config_path();
        let p = p.to_str().unwrap();
        let expected = format!(
            "error: {p}:2:1: incidents.state_dir: {}: {why}\n",
            dir.display()
        );
        assert_eq!(
            check_in(env.dir.path(), p),
            (Some(1), String::new(), expected.clone())
        );
        let state = env.dir.path().join("unused");
        assert_eq!(run_refused(p, &[], &state), (Some(1), expected));
    }
}

#[test]
fn check_warns_when_a_timeout_leaves_under_5s_for_login() {
    let env = Env::new();
    // IMAPS to an IP address: connect (1 round trip), tls (2), greeting (1) before login.
    let tight = env.imap_target("imap-tight", 993, "timeout = \"4s\"");
    // SMTP submission by name, timeout from [global]: dns, connect, greeting, ehlo, starttls,
    // tls (2), ehlo_tls: 8 round trips before AUTH.
    let smtp = env
        .smtp_target("smtp-named", 587, "host = \"mail.example.test\"")
        .replace("host = \"127.0.0.1\"\n", "");
    // Enough time, or no login at all: no warning.
    let roomy = env.imap_target("imap-roomy", 993, "timeout = \"9s\"");
    let mx = env.mx_target("mx", 25, "timeout = \"2s\"");
    let rt = "[[target]]\nname = \"rt\"\nprotocol = \"roundtrip\"\nsmtp_target = \"smtp-named\"\n\
              imap_target = \"imap-tight\"\n";
    std::fs::write(
        env.config_path(),
        format!("[global]\ntimeout = \"6s\"\n{tight}{smtp}{roomy}{mx}{rt}"),
    )
    .unwrap();
    let p = env.config_path();
    let p = p.to_str().unwrap();
    let (code, stdout, stderr) = check_in(env.dir.path(), p);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("OK: 5 targets"), "{stdout}");
    let cyrus = "Cyrus waits about 3s and Courier about 5s before rejecting a wrong password, so \
                 a rejection would read as a timeout, not auth_rejected";
    assert_eq!(
        stderr,
        format!(
            "warning: {p}:12:1: target[1] \"imap-tight\".timeout: 4s leaves about 3s for login after connect, \
             tls and greeting (4 round trips, 250ms each): {cyrus}; give it at least 6s (round \
             trip \"rt\" logs in with it too)\n\
             warning: {p}:13:1: target[2] \"smtp-named\".timeout: 6s (from [global]) leaves about 4s for auth \
             after dns, connect, greeting, ehlo, starttls, tls and ehlo_tls (8 round trips, 250ms \
             each): {cyrus}; give it at least 7s (round trip \"rt\" logs in with it too)\n"
        )
    );
}

/// The story behind the warning above, against a Dovecot that waits 3 s before rejecting a
/// wrong password (as Cyrus does): a timeout that leaves less reads as a timeout at login.
#[test]
fn a_slow_rejection_is_auth_rejected_only_when_the_timeout_leaves_time_for_it() {
    let env = Env::new();
    let dc = Dovecot::start(
        &env.pki,
        Options {
            auth_failure_delay: Duration::from_secs(3),
            ..Options::default()
        },
    );
    let wrong = env.secret("wrong.pass", "not-the-password");
    let target = |name: &str, timeout: &str| {
        env.imap_target(name, dc.ports.imaps, &format!("timeout = \"{timeout}\""))
            .replace(
                &env.dir
                    .path()
                    .join(format!("{name}.pass"))
                    .display()
                    .to_string(),
                &wrong.display().to_string(),
            )
    };
    std::fs::write(
        env.config_path(),
        format!("{}{}", target("tight", "2s"), target("roomy", "8s")),
    )
    .unwrap();
    let cfg = env.config_path();
    let cfg = cfg.to_str().unwrap();
    let out = mailprobe(&["probe", "-c", cfg, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let got: Vec<(&str, &str, &str)> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["target"].as_str().unwrap(),
                o["class"].as_str().unwrap_or("-"),
                o["phase"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("tight", "timeout", "login"),
            ("roomy", "auth_rejected", "login")
        ]
    );
    // check warns about the one that cannot tell the two apart.
    let (code, _, stderr) = check_in(env.dir.path(), cfg);
    assert_eq!(code, Some(0));
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("target[1] \"tight\".timeout: 2s leaves about 1s for login after connect"),
        "{stderr}"
    );
}

#[test]
fn check_summarises_a_valid_config() {
    let env = Env::new();
    std::fs::write(
        env.config_path(),
        env.imap_target("summary-target", 993, ""),
    )
    .unwrap();
    let out = mailprobe(&["check", "-c", env.config_path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("OK: 1 target;"), "{stdout}");
    assert!(
        stdout.contains("summary-target") && stdout.contains("127.0.0.1:993"),
        "{stdout}"
    );
}

#[test]
fn probe_prints_a_table_and_exits_by_result() {
    let env = Env::new();
    let dc = Dovecot::start(&env.pki, Options::default());
    let closed = mailprobe_testpeers::util::free_port();
    std::fs::write(
        env.config_path(),
        format!(
            "{}{}",
            env.imap_target("up", dc.ports.imaps, ""),
            env.imap_target("refused", closed, "")
        ),
    )
    .unwrap();
    let cfg = env.config_path();
    let cfg = cfg.to_str().unwrap();

    let out = mailprobe(&["probe", "-c", cfg, "up"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    let header = stdout.lines().next().unwrap();
    for col in [
        "TARGET",
        "REGION",
        "PROTOCOL",
        "RESULT",
        "CLASS",
        "PHASE",
        "TOTAL_MS",
        "PHASES_MS",
    ] {
        assert!(header.contains(col), "{header}");
    }
    let row = stdout.lines().find(|l| l.starts_with("up ")).unwrap();
    assert!(row.contains(" ok "), "{row}");
    for p in [
        "dns=",
        "connect=",
        "tls=",
        "greeting=",
        "login=",
        "select=",
        "logout=",
    ] {
        assert!(row.contains(p), "{row}");
    }
    assert!(stdout.contains("TLS 1."), "{stdout}");

    let out = mailprobe(&["probe", "-c", cfg]);
    assert_eq!(out.status.code(), Some(1), "one target fails");
    let stdout = text(&out.stdout);
    let row = stdout.lines().find(|l| l.starts_with("refused ")).unwrap();
    assert!(
        row.contains("FAIL") && row.contains("connect_refused") && row.contains("connect"),
        "{row}"
    );

    let out = mailprobe(&["probe", "-c", cfg, "--json", "up", "refused"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let arr = v.as_array().unwrap();
    assert_eq!(arr.len(), 2);
    assert_eq!(arr[0]["target"], "up");
    assert_eq!(arr[0]["success"], true);
    assert_eq!(arr[0]["phases"][0]["phase"], "dns");
    assert_eq!(arr[1]["class"], "connect_refused");
    assert_eq!(arr[1]["phase"], "connect");

    let out = mailprobe(&["probe", "-c", cfg, "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no target named \"nope\""));
}

#[tokio::test]
async fn run_serves_metrics_and_stops_on_sigterm() {
    let env = Env::new();
    let dc = Dovecot::start(&env.pki, Options::default());
    std::fs::write(
        env.config_path(),
        env.with_state(&format!(
            "[global]\ninterval = \"1s\"\ntimeout = \"1s\"\n{}",
            env.imap_target("up", dc.ports.imaps, "")
        )),
    )
    .unwrap();
    let mut d = common::ChildDaemon::start(&env, Stdio::piped(), &[]);
    let addr = d.addr();
    let metrics = common::eventually(20, "a successful probe via the binary", || async {
        let conn = tokio::net::TcpStream::connect(addr).await.ok()?;
        drop(conn);
        let (status, body) = http(addr, "GET", "/metrics").await;
        (status == 200
            && body.contains(
                "mailprobe_probe_success{protocol=\"imap\",region=\"test\",target=\"up\"} 1",
            ))
        .then_some(body)
    })
    .await;
    assert!(metrics.contains("mailprobe_build_info"));
    let status = tokio::task::spawn_blocking(move || {
        let s = d.terminate();
        let mut err = String::new();
        use std::io::Read;
        d.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        (s, err)
    });
    let (status, stderr) = tokio::time::timeout(Duration::from_secs(10), status)
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains("SIGTERM received") && stderr.contains("stopped"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_line_shard_holds_across_reloads_and_one_owning_nothing_is_refused() {
    use mailprobe::load::Shard;
    let env = Env::new();
    let closed = mailprobe_testpeers::util::free_port();
    let names: Vec<String> = (0..8).map(|i| format!("t{i}")).collect();
    let shard: Shard = "1/2".parse().unwrap();
    let owned = names.iter().filter(|n| shard.owns(n)).count();
    assert!(0 < owned && owned < names.len(), "{owned}");
    let targets: String = names
        .iter()
        .map(|n| env.imap_target(n, closed, ""))
        .collect();
    std::fs::write(env.config_path(), env.with_state(&targets)).unwrap();
    let cfg = env.config_path();
    let cfg = cfg.to_str().unwrap().to_string();
    let port = mailprobe_testpeers::util::free_port();
    let listen = format!("127.0.0.1:{port}");
    let child = Command::new(env!("CARGO_BIN_EXE_mailprobe"))
        .args(["run", "-c", &cfg, "--listen", &listen, "--shard", "1/2"])
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Stopped however the test ends.
    struct Stop(std::process::Child);
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Stop(child);
    let addr = listen.parse().unwrap();
    let imap_targets = || async move {
        let (status, body) = http(addr, "GET", "/metrics").await;
        (status == 200)
            .then(|| common::sample(&body, "mailprobe_targets", &[("protocol", "imap")]))
            .flatten()
    };
    common::eventually(20, "the daemon's metrics", || async {
        tokio::net::TcpStream::connect(addr).await.ok()?;
        imap_targets().await
    })
    .await;
    assert_eq!(imap_targets().await, Some(owned as f64));
    // A reload keeps probing shard 1/2, not every target of the file.
    let (status, body) = http(addr, "POST", "/-/reload").await;
    assert_eq!(
        (status, body.trim()),
        (
            200,
            format!("config reloaded: 0 added, 0 removed, 0 changed, {owned} unchanged").as_str()
        )
    );
    assert_eq!(imap_targets().await, Some(owned as f64));
    Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    let status = tokio::task::spawn_blocking(move || child.0.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "{status}");

    // A shard that owns none of the file's targets is a deployment error, refused at start.
    let lonely = names.iter().find(|n| !shard.owns(n)).unwrap();
    std::fs::write(
        env.config_path(),
        env.with_state(&env.imap_target(lonely, closed, "")),
    )
    .unwrap();
    let state = env.dir.path().join("state");
    assert_eq!(
        run_refused(&cfg, &["--shard", "1/2"], &state),
        (
            Some(1),
            format!(
                "error: {cfg}: --shard 1/2 owns no target (the file has 1), so this instance \
                 would probe nothing: use fewer shards\n"
            )
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_probes_toml_works_against_the_demo_peers() {
    mailprobe::install_crypto_provider();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = mailprobe_testpeers::util::short_tempdir("mpdemo-");
    // The shipped file, unchanged, next to a demo/ directory like the one scripts/demo makes.
    std::fs::copy(root.join("probes.toml"), dir.path().join("probes.toml")).unwrap();
    // Before the demo made demo/, check says which file it misses, as the README tells.
    let before = mailprobe(&[
        "check",
        "-c",
        dir.path().join("probes.toml").to_str().unwrap(),
    ]);
    assert_eq!(before.status.code(), Some(1));
    let err = text(&before.stderr);
    assert!(
        err.contains("target[1] \"demo-imaps\".ca_file: cannot read ")
            && err.contains("/demo/ca.pem: no such file"),
        "{err}"
    );
    let mut peers = mailprobe_testpeers::demo::start(&dir.path().join("demo"));
    peers.start_https().await;
    let cfg = dir.path().join("probes.toml");
    let path = cfg.to_str().unwrap().to_string();
    let out = tokio::task::spawn_blocking(move || {
        let check = mailprobe(&["check", "-c", &path]);
        (check, mailprobe(&["probe", "-c", &path]))
    })
    .await
    .unwrap();
    assert!(out.0.status.success(), "{}", text(&out.0.stderr));
    // The example gives no warning either (its timeouts leave time for a slow rejection).
    assert_eq!(text(&out.0.stderr), "");
    let (stdout, stderr) = (text(&out.1.stdout), text(&out.1.stderr));
    assert!(out.1.status.success(), "{stdout}\n{stderr}");
    // Every protocol is in the shipped example.
    for protocol in ["imap", "pop3", "smtp", "roundtrip", "https"] {
        assert!(
            stdout.contains(&format!(" {protocol} ")),
            "{protocol} missing:\n{stdout}"
        );
    }
}
