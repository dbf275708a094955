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
            "{}:8:8: target[1].port: invalid value: integer `99999`",
            path.display()
        )),
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
        err.contains(":9:1: target[1].password_file: cannot read /nonexistent/secret"),
        "{err}"
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
    let port = mailprobe_testpeers::util::free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_mailprobe"))
        .args([
            "run",
            "-c",
            env.config_path().to_str().unwrap(),
            "--listen",
            &listen,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let addr = listen.parse().unwrap();
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
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = tokio::task::spawn_blocking(move || {
        let s = child.wait().unwrap();
        let mut err = String::new();
        use std::io::Read;
        child
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
async fn the_shipped_probes_toml_works_against_the_demo_peers() {
    mailprobe::install_crypto_provider();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = mailprobe_testpeers::util::short_tempdir("mpdemo-");
    // The shipped file, unchanged, next to a demo/ directory like the one scripts/demo makes.
    std::fs::copy(root.join("probes.toml"), dir.path().join("probes.toml")).unwrap();
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
    let (stdout, stderr) = (text(&out.1.stdout), text(&out.1.stderr));
    assert!(out.1.status.success(), "{stdout}\n{stderr}");
    // Every protocol is in the shipped example.
    for protocol in ["imap", "smtp", "roundtrip", "https"] {
        assert!(
            stdout.contains(&format!(" {protocol} ")),
            "{protocol} missing:\n{stdout}"
        );
    }
}
