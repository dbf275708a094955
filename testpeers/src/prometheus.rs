//! A private Prometheus and Alertmanager, for testing the shipped alert rules end to end.
//!
//! Facts this relies on (Debian 12: Prometheus 2.42, Alertmanager 0.25): both start as root with
//! their own config, data directory and `--web.listen-address`, and are ready when `/-/ready`
//! answers 200 (about a second). Prometheus waits about 5 s before its first scrape. Alertmanager
//! also listens for cluster gossip on 0.0.0.0:9094 unless `--cluster.listen-address=` is empty.
//! With 1 s probe, scrape and evaluation intervals and a 1 s `group_wait`, a server stopped to
//! the webhook call for "down 3 probes in a row" took about 5 s, and its restart to the
//! resolved call about 2 s.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{free_port, require_program, short_tempdir};

/// A running private Prometheus on 127.0.0.1; killed when dropped.
pub struct Prometheus {
    server: Server,
}

impl Prometheus {
    /// Starts Prometheus with `config` (the text of a prometheus.yml; paths in it must be
    /// absolute) and waits until it is ready.
    pub fn start(config: &str) -> Prometheus {
        let bin = require_program("prometheus", "prometheus");
        let server = Server::start("prometheus", &bin, "prometheus.yml", config, |dir, port| {
            vec![
                format!("--config.file={}", dir.join("prometheus.yml").display()),
                format!("--storage.tsdb.path={}", dir.join("data").display()),
                format!("--web.listen-address=127.0.0.1:{port}"),
                format!("--web.external-url=http://127.0.0.1:{port}/"),
            ]
        });
        Prometheus { server }
    }

    /// Where its HTTP API listens.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// Its log so far, for assertion messages.
    pub fn log(&self) -> String {
        self.server.log()
    }
}

/// A running private Alertmanager on 127.0.0.1 (no cluster listener); killed when dropped.
pub struct Alertmanager {
    server: Server,
}

impl Alertmanager {
    /// Starts Alertmanager with `config` (the text of an alertmanager.yml) and waits until it is
    /// ready.
    pub fn start(config: &str) -> Alertmanager {
        let bin = require_program("prometheus-alertmanager", "prometheus-alertmanager");
        let server = Server::start(
            "alertmanager",
            &bin,
            "alertmanager.yml",
            config,
            |dir, port| {
                vec![
                    format!("--config.file={}", dir.join("alertmanager.yml").display()),
                    format!("--storage.path={}", dir.join("data").display()),
                    format!("--web.listen-address=127.0.0.1:{port}"),
                    format!("--web.external-url=http://127.0.0.1:{port}/"),
                    // Empty: no gossip listener on 0.0.0.0:9094.
                    "--cluster.listen-address=".to_string(),
                ]
            },
        );
        Alertmanager { server }
    }

    /// Where its HTTP API listens (Prometheus sends alerts here).
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// Its log so far, for assertion messages.
    pub fn log(&self) -> String {
        self.server.log()
    }
}

/// What Prometheus and Alertmanager have in common: a private dir, a port, a child process.
struct Server {
    name: &'static str,
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl Server {
    fn start(
        name: &'static str,
        bin: &Path,
        config_name: &str,
        config: &str,
        args: impl FnOnce(&Path, u16) -> Vec<String>,
    ) -> Server {
        let dir = short_tempdir("mpm-");
        let port = free_port();
        fs::write(dir.path().join(config_name), config).expect("write config");
        let args = args(dir.path(), port);
        let child = Command::new(bin)
            .args(&args)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(dir.path().join("stderr.log")).expect("stderr.log"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let mut server = Server {
            name,
            dir,
            port,
            child: Some(child),
        };
        if let Err(e) = server.wait_ready(Duration::from_secs(30)) {
            let log = server.log();
            server.stop();
            panic!("{name} did not become ready: {e}\n--- {name} log ---\n{log}");
        }
        server
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("stderr.log")
    }

    /// Polls `/-/ready` until it answers 200; gives up early when the process has exited.
    fn wait_ready(&mut self, within: Duration) -> Result<(), String> {
        let deadline = Instant::now() + within;
        let mut last = String::new();
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(format!("{} exited: {status}", self.name));
            }
            match get(self.addr(), "/-/ready") {
                Ok((200, _)) => return Ok(()),
                Ok((status, body)) => last = format!("HTTP {status}: {body}"),
                Err(e) => last = e.to_string(),
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("no 200 from /-/ready on {}: {last}", self.addr()))
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A plain HTTP/1.1 GET (no chunked bodies: `/-/ready` answers with a Content-Length).
fn get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((status, body.trim().to_string()))
}
