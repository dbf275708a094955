//! The programs under test as child processes: the mailprobe daemon (with the time from spawn
//! to its sd-notify READY=1) and prometheus-blackbox-exporter.

use std::net::SocketAddr;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use mailprobe_testpeers::util::free_port;

/// A running child; stopped with SIGTERM (then SIGKILL) when dropped.
pub struct Proc {
    child: Child,
    /// Its process id.
    pub pid: u32,
    /// Where its HTTP server listens.
    pub addr: SocketAddr,
    /// Its stderr log file.
    pub log: PathBuf,
}

impl Proc {
    /// Its log so far (for error messages).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, and SIGKILL if it has not exited within 15 s.
    pub fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A started daemon and how long it took to say READY.
pub struct Daemon {
    /// The process.
    pub proc: Proc,
    /// From just before spawn to READY=1 arriving on our notify socket.
    pub ready_after: Duration,
}

/// Starts `mailprobe run` on `config` with a NOTIFY_SOCKET we listen on, and waits for READY=1.
pub fn spawn_daemon(
    bin: &Path,
    config: &Path,
    dir: &Path,
    tag: &str,
    extra: &[&str],
) -> anyhow::Result<Daemon> {
    spawn_daemon_limited(bin, config, dir, tag, extra, None)
}

/// [`spawn_daemon`] with the soft and hard open-file limit set to `open_files` first (as
/// `ulimit -n` does; the process is the shell's, which execs mailprobe).
pub fn spawn_daemon_limited(
    bin: &Path,
    config: &Path,
    dir: &Path,
    tag: &str,
    extra: &[&str],
    open_files: Option<u64>,
) -> anyhow::Result<Daemon> {
    let sock_path = dir.join(format!("notify-{tag}.sock"));
    let _ = std::fs::remove_file(&sock_path);
    let sock = UnixDatagram::bind(&sock_path).context("cannot bind the notify socket")?;
    sock.set_read_timeout(Some(Duration::from_millis(200)))?;
    let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let log = dir.join(format!("mailprobe-{tag}.log"));
    // Each instance keeps its incident history in the scratch directory, never the system's.
    let state = dir.join(format!("state-{tag}"));
    std::fs::create_dir_all(&state)?;
    let start = Instant::now();
    let mut cmd = match open_files {
        None => Command::new(bin),
        Some(n) => {
            let mut c = Command::new("sh");
            c.arg("-c")
                .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                .arg(bin);
            c
        }
    };
    let child = cmd
        .arg("run")
        .arg("--config")
        .arg(config)
        .arg("--listen")
        .arg(addr.to_string())
        .args(extra)
        .env("NOTIFY_SOCKET", &sock_path)
        .env("STATE_DIRECTORY", &state)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    let pid = child.id();
    let mut proc = Proc {
        child,
        pid,
        addr,
        log,
    };
    let mut buf = [0u8; 4096];
    loop {
        match sock.recv(&mut buf) {
            Ok(n) => {
                let msg = String::from_utf8_lossy(&buf[..n]);
                if msg.lines().any(|l| l == "READY=1") {
                    let ready_after = start.elapsed();
                    let _ = std::fs::remove_file(&sock_path);
                    return Ok(Daemon { proc, ready_after });
                }
            }
            Err(_) => {
                if let Ok(Some(status)) = proc.child.try_wait() {
                    bail!("mailprobe exited ({status}): {}", proc.log_text());
                }
                if start.elapsed() > Duration::from_secs(60) {
                    proc.stop();
                    bail!("mailprobe did not say READY within 60 s");
                }
            }
        }
    }
}

/// Starts blackbox_exporter on `config` and waits until it answers `/-/healthy`.
pub fn spawn_blackbox(bin: &Path, config: &Path, dir: &Path) -> anyhow::Result<Proc> {
    let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let log = dir.join("blackbox.log");
    let child = Command::new(bin)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--web.listen-address={addr}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    let pid = child.id();
    let mut proc = Proc {
        child,
        pid,
        addr,
        log,
    };
    let start = Instant::now();
    loop {
        if let Ok(mut s) = std::net::TcpStream::connect(addr) {
            use std::io::{Read, Write};
            let _ = s.write_all(b"GET /-/healthy HTTP/1.0\r\n\r\n");
            let mut r = String::new();
            let _ = s.read_to_string(&mut r);
            if r.starts_with("HTTP/1.0 200") || r.starts_with("HTTP/1.1 200") {
                return Ok(proc);
            }
        }
        if let Ok(Some(status)) = proc.child.try_wait() {
            bail!("blackbox_exporter exited ({status}): {}", proc.log_text());
        }
        if start.elapsed() > Duration::from_secs(20) {
            proc.stop();
            bail!("blackbox_exporter did not come up: {}", proc.log_text());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
