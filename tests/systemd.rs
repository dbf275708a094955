//! Running under systemd: the unit verifies, and the daemon speaks the notify protocol (READY
//! after config and listener, WATCHDOG while alive, RELOADING/READY around a reload, STOPPING).

mod common;

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Env;
use mailprobe_testpeers::util::require_program;

#[test]
fn the_unit_passes_systemd_analyze_verify() {
    let analyze = require_program("systemd-analyze", "systemd");
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/systemd/mailprobe.service"
    ))
    .unwrap();
    assert!(unit.contains("Type=notify") && unit.contains("WatchdogSec="));
    let env = Env::new();
    // verify checks that ExecStart exists: point it at the binary under test.
    let path = env.dir.path().join("mailprobe.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/mailprobe", env!("CARGO_BIN_EXE_mailprobe")),
    )
    .unwrap();
    let out = Command::new(analyze)
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        !stderr.contains("mailprobe.service"),
        "systemd-analyze has remarks on the unit:\n{stderr}"
    );
}

fn next_message(sock: &UnixDatagram, within: Duration) -> String {
    sock.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).expect("a notify message in time");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Reads messages until one contains `want`.
fn wait_for(sock: &UnixDatagram, want: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let msg = next_message(sock, deadline.saturating_duration_since(Instant::now()));
        if msg.lines().any(|l| l == want) {
            return msg;
        }
    }
}

#[test]
fn the_daemon_speaks_the_notify_protocol() {
    let env = Env::new();
    std::fs::write(
        env.config_path(),
        env.with_state(
            "[global]\ninterval = \"1s\"\ntimeout = \"1s\"\n\
             [[target]]\nname = \"nothing-listens\"\nprotocol = \"imap\"\nhost = \"127.0.0.1\"\n\
             port = 1\ntls = \"none\"\nallow_plaintext = true\nusername = \"u\"\npassword_env = \"HOME\"\n",
        ),
    )
    .unwrap();
    let sock_path = env.dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    let mut d = common::ChildDaemon::start(
        &env,
        Stdio::null(),
        &[
            ("NOTIFY_SOCKET", sock_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "400000"),
        ],
    );
    let listen = d.listen.clone();

    let ready = wait_for(&sock, "READY=1");
    assert!(ready.contains("STATUS=probing 1 target,"), "{ready}");
    // READY comes after the listener is bound: the port answers now.
    assert!(std::net::TcpStream::connect(&listen).is_ok());
    wait_for(&sock, "WATCHDOG=1");
    wait_for(&sock, "WATCHDOG=1");

    let pid = d.child.id().to_string();
    Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    let reloading = wait_for(&sock, "RELOADING=1");
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
    wait_for(&sock, "READY=1");

    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    wait_for(&sock, "STOPPING=1");
    let status = d.child.wait().unwrap();
    assert!(status.success());
}
