//! Small helpers shared by the peers.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A port on 127.0.0.1 that was free a moment ago (bind to port 0, read it, release it), and
/// that this process has never handed out before: a peer stopped and started again on its ports
/// (a Dovecot outage in a test) must not find one of them taken by a peer of a test running
/// alongside, which the kernel would happily give the same number once it is released.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let mut given = GIVEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("cannot bind 127.0.0.1:0");
        if given.insert(port) {
            return port;
        }
    }
}

/// Panics with instructions when a program the peers need is missing.
pub fn require_program(name: &str, package: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/bin"] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    panic!(
        "{name} is not installed: the tests use a real {package}. Run the README's test command \
         (scripts/test), which installs it, or `apt-get install {package}`."
    );
}

/// Panics unless running as root (Dovecot and Postfix drop privileges to their own users).
pub fn require_root() {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        })
        .unwrap_or_default();
    assert_eq!(
        uid, "0",
        "the real-peer tests start Dovecot and Postfix, which need root; run them as root (CI does)"
    );
}

/// A fresh directory under /tmp with a short path (Unix socket paths must stay short) that
/// other users can traverse.
pub fn short_tempdir(prefix: &str) -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in("/tmp")
        .expect("cannot create a temp dir in /tmp");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("cannot chmod temp dir");
    dir
}

/// Waits until a line starting with `prefix` can be read from `port` (a server is ready when it
/// greets, not when it accepts); gives up early once `alive` says the server process is gone.
pub fn wait_for_greeting(
    port: u16,
    prefix: &str,
    within: Duration,
    mut alive: impl FnMut() -> bool,
) -> Result<String, String> {
    let deadline = Instant::now() + within;
    let mut last = String::new();
    while Instant::now() < deadline {
        if !alive() {
            return Err(format!("the server exited before greeting on port {port}"));
        }
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => {
                s.set_read_timeout(Some(Duration::from_secs(2))).ok();
                let mut line = String::new();
                match BufReader::new(s).read_line(&mut line) {
                    Ok(_) if line.starts_with(prefix) => return Ok(line),
                    Ok(_) => last = format!("greeting {line:?}"),
                    Err(e) => last = e.to_string(),
                }
            }
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!("no {prefix:?} greeting on port {port}: {last}"))
}
