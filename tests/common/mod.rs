//! Helpers shared by the integration tests: a temp dir with a test PKI, configs written as real
//! TOML files and loaded through the real loader, and one-shot probes.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use mailprobe::load::{self, Config};
use mailprobe::probe::{self, Outcome, Phase, ProbeContext};
use mailprobe_testpeers::pki::TestPki;
use mailprobe_testpeers::util::short_tempdir;

pub use mailprobe_testpeers::dovecot::{PASSWORD, USER};

/// A scratch directory with a test CA and certificates.
pub struct Env {
    pub dir: mailprobe_testpeers::tempfile::TempDir,
    pub pki: TestPki,
}

impl Env {
    pub fn new() -> Env {
        mailprobe::install_crypto_provider();
        let dir = short_tempdir("mpt-");
        let pki = TestPki::generate(&dir.path().join("pki"));
        Env { dir, pki }
    }

    /// Writes a secret file and returns its path.
    pub fn secret(&self, name: &str, value: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, format!("{value}\n")).unwrap();
        p
    }

    /// The path configs are written to.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("probes.toml")
    }

    /// `text` with an `[incidents]` table keeping history in this env's directory (unless it
    /// has one), so tests never share a state directory.
    pub fn with_state(&self, text: &str) -> String {
        if text.contains("[incidents]") {
            return text.to_string();
        }
        format!(
            "{text}\n[incidents]\nstate_dir = \"{}\"\n",
            self.dir.path().join("state").display()
        )
    }

    /// Writes `text` (with a private state directory) as probes.toml and loads it with the real
    /// loader.
    pub fn config(&self, text: &str) -> Config {
        let text = &self.with_state(text);
        std::fs::write(self.config_path(), text).unwrap();
        load::load(&self.config_path()).unwrap_or_else(|e| panic!("config error: {e}\n{text}"))
    }

    /// A `[[target]]` for an IMAP server on 127.0.0.1:`port` trusting the test CA, logging in
    /// as the test user; `extra` lines are appended (they may override nothing already set).
    pub fn imap_target(&self, name: &str, port: u16, extra: &str) -> String {
        let pass = self.secret(&format!("{name}.pass"), PASSWORD);
        format!(
            "[[target]]\nname = \"{name}\"\nregion = \"test\"\nprotocol = \"imap\"\nhost = \"127.0.0.1\"\n\
             port = {port}\nca_file = \"{ca}\"\nusername = \"{USER}\"\npassword_file = \"{pass}\"\n{extra}\n",
            ca = self.pki.ca.display(),
            pass = pass.display(),
        )
    }

    /// A `[[target]]` for a POP3 server on 127.0.0.1:`port` trusting the test CA, logging in
    /// as the test user; `extra` lines are appended.
    pub fn pop3_target(&self, name: &str, port: u16, extra: &str) -> String {
        self.imap_target(name, port, extra)
            .replace("protocol = \"imap\"", "protocol = \"pop3\"")
    }

    /// A `[[target]]` for an SMTP server on 127.0.0.1:`port` trusting the test CA, authenticating
    /// as the test user; `extra` lines are appended.
    pub fn smtp_target(&self, name: &str, port: u16, extra: &str) -> String {
        let pass = self.secret(&format!("{name}.pass"), PASSWORD);
        format!(
            "[[target]]\nname = \"{name}\"\nregion = \"test\"\nprotocol = \"smtp\"\nhost = \"127.0.0.1\"\n\
             port = {port}\nca_file = \"{ca}\"\nehlo_name = \"probe.example.test\"\nusername = \"{USER}\"\n\
             password_file = \"{pass}\"\n{extra}\n",
            ca = self.pki.ca.display(),
            pass = pass.display(),
        )
    }

    /// A `[[target]]` for an SMTP server without AUTH (an MX); `extra` lines are appended.
    pub fn mx_target(&self, name: &str, port: u16, extra: &str) -> String {
        format!(
            "[[target]]\nname = \"{name}\"\nregion = \"test\"\nprotocol = \"smtp\"\nhost = \"127.0.0.1\"\n\
             port = {port}\nca_file = \"{ca}\"\nehlo_name = \"probe.example.test\"\n{extra}\n",
            ca = self.pki.ca.display(),
        )
    }
}

/// `target` without its `ca_file` line (for `tls = "none"` targets, where it is refused).
pub fn without_ca(target: String) -> String {
    target
        .lines()
        .filter(|l| !l.starts_with("ca_file = "))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Probes the first target of `cfg` once.
pub async fn probe_first(cfg: &Config) -> Outcome {
    let ctx = ProbeContext::new();
    probe::run(&cfg.targets[0], &ctx).await
}

/// Probes every target of `cfg` once, concurrently.
pub async fn probe_all(cfg: &Config) -> Vec<Outcome> {
    let ctx = Arc::new(ProbeContext::new());
    let mut handles = Vec::new();
    for t in &cfg.targets {
        let (t, ctx) = (t.clone(), ctx.clone());
        handles.push(tokio::spawn(async move { probe::run(&t, &ctx).await }));
    }
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

/// The phases an outcome went through, in order.
pub fn phases(o: &Outcome) -> Vec<Phase> {
    o.phases.iter().map(|p| p.phase).collect()
}

/// `(class, phase)` of a failed outcome, as label strings, with the detail for messages.
pub fn failure(o: &Outcome) -> (&'static str, &'static str) {
    let f = o
        .failure
        .as_ref()
        .unwrap_or_else(|| panic!("expected a failure, got success: {o:?}"));
    (f.class.as_str(), f.phase.as_str())
}

/// A minimal HTTP/1.1 request (the daemon's endpoints are plain text): `(status, body)`.
pub async fn http(addr: std::net::SocketAddr, method: &str, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to daemon");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let (status, _, body) = parse_response(&buf);
    (status, body)
}

/// `(status, head, body)` of a whole HTTP/1.1 response, the body de-chunked when it was chunked.
fn parse_response(buf: &[u8]) -> (u16, String, String) {
    let text = String::from_utf8_lossy(buf);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, head.to_string(), body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// The value of the sample `name{labels...}` in a text exposition, if present.
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        let (lbls, value) = if let Some(r) = rest.strip_prefix('{') {
            let (l, v) = r.split_once('}')?;
            (l, v)
        } else if rest.starts_with(' ') {
            ("", rest)
        } else {
            return None;
        };
        let all = labels
            .iter()
            .all(|(k, v)| lbls.split(',').any(|kv| kv == format!("{k}=\"{v}\"")));
        if all { value.trim().parse().ok() } else { None }
    })
}

/// Successful probes of the region and protocol `target` belongs to (where probe counts are
/// kept): the target's own, in tests where it is alone in its region and protocol.
pub fn group_successes(text: &str, target: &str) -> Option<f64> {
    let label = format!("target=\"{target}\"");
    let line = text
        .lines()
        .filter(|l| l.starts_with("mailprobe_probe_success{"))
        .find(|l| l.split(['{', '}', ',']).any(|kv| kv == label))?;
    let value = |key: &str| {
        line.split(['{', '}', ','])
            .find_map(|kv| kv.strip_prefix(&format!("{key}=\""))?.strip_suffix('"'))
    };
    sample(
        text,
        "mailprobe_probes_total",
        &[
            ("region", value("region")?),
            ("protocol", value("protocol")?),
            ("result", "success"),
        ],
    )
}

/// Failed probes of `target` so far, over every class and phase.
pub fn failures_of(text: &str, target: &str) -> f64 {
    let label = format!("target=\"{target}\"");
    text.lines()
        .filter(|l| l.starts_with("mailprobe_probe_failures_total{"))
        .filter(|l| l.split(['{', '}', ',']).any(|kv| kv == label))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// Polls `check` every 50 ms until it returns `Some`, for up to `secs` seconds.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A daemon running on 127.0.0.1:0 in this process.
pub struct Daemon {
    pub addr: std::net::SocketAddr,
    pub shutdown: tokio_util::sync::CancellationToken,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Daemon {
    pub async fn start(cfg: Config) -> Daemon {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = tokio_util::sync::CancellationToken::new();
        let task = tokio::spawn(mailprobe::daemon::run(cfg, listener, shutdown.clone()));
        Daemon {
            addr,
            shutdown,
            task,
        }
    }

    pub async fn metrics(&self) -> String {
        let (status, body) = http(self.addr, "GET", "/metrics").await;
        assert_eq!(status, 200);
        body
    }

    /// Waits until `target` has had `n` probes with `result` ("success" or "failure"): for
    /// failures, its `mailprobe_probe_failures_total` (all classes) reaches `n`; for successes
    /// (counted per region and protocol only), `n` successful probes are seen while waiting,
    /// its last one included. Returns the exposition that showed it.
    pub async fn wait_probes(&self, target: &str, result: &str, n: f64) -> String {
        let seen = std::cell::Cell::new((None::<f64>, 0.0));
        eventually(20, &format!("{n} {result} probes of {target}"), || async {
            let m = self.metrics().await;
            let count = if result == "failure" {
                failures_of(&m, target)
            } else {
                let last = sample(
                    &m,
                    "mailprobe_probe_last_run_timestamp_seconds",
                    &[("target", target)],
                )?;
                let ok = sample(&m, "mailprobe_probe_success", &[("target", target)])? == 1.0;
                let (prev, mut count) = seen.get();
                if prev != Some(last) && ok {
                    count += 1.0;
                }
                seen.set((Some(last), count));
                count
            };
            (count >= n).then_some(m)
        })
        .await
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
    }
}

/// An HTTP/1.1 request over TLS trusting `ca`, optionally with Basic credentials:
/// `(status, body)`, or the error text when TLS or the connection fails.
pub async fn https(
    addr: std::net::SocketAddr,
    ca: &std::path::Path,
    method: &str,
    path: &str,
    basic: Option<(&str, &str)>,
) -> Result<(u16, String), String> {
    https_full(addr, ca, method, path, basic)
        .await
        .map(|(status, _, body)| (status, body))
}

/// Like [`https`], with the response head (status line and headers) too.
pub async fn https_full(
    addr: std::net::SocketAddr,
    ca: &std::path::Path,
    method: &str,
    path: &str,
    basic: Option<(&str, &str)>,
) -> Result<(u16, String, String), String> {
    use base64::Engine;
    use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let mut tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())?;
    let auth = basic
        .map(|(u, p)| {
            format!(
                "Authorization: Basic {}\r\n",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )
        })
        .unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\nContent-Length: 0\r\n\r\n"
    );
    tls.write_all(req.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    // A close_notify-less close is fine here: we only need what arrived.
    let _ = tls.read_to_end(&mut buf).await;
    Ok(parse_response(&buf))
}

/// Runs `mailprobe probe -c <config> [targets]` off the runtime (the test's servers answer on
/// it meanwhile): `(exit code, stdout, stderr)`.
pub async fn probe_cli(
    config: std::path::PathBuf,
    targets: &[&str],
) -> (Option<i32>, String, String) {
    let targets: Vec<String> = targets.iter().map(|t| t.to_string()).collect();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_mailprobe"))
            .arg("probe")
            .arg("-c")
            .arg(config)
            .args(targets)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    (
        out.status.code(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// The time a `mailprobe probe` table row gives `phase` (its `PHASES_MS` column), in ms;
/// panics when the row has none.
pub fn phase_ms(row: &str, phase: &str) -> f64 {
    let ms = row
        .split_whitespace()
        .find_map(|p| p.strip_prefix(&format!("{phase}=")))
        .unwrap_or_else(|| panic!("no {phase} timing in {row}"));
    ms.parse::<f64>()
        .ok()
        .filter(|v| *v >= 0.0)
        .unwrap_or_else(|| panic!("{phase}={ms} in {row}"))
}

/// A `mailprobe run` child process on the env's probes.toml, listening on a free port of
/// 127.0.0.1: for the tests that need the real binary (its stderr, signals, limits). Killed,
/// if still running, when dropped, so a test that gives up leaves no daemon behind.
pub struct ChildDaemon {
    pub child: std::process::Child,
    /// `127.0.0.1:port`, as given to `--listen`.
    pub listen: String,
}

impl ChildDaemon {
    /// Starts it with stderr going to `stderr`, stdin and stdout null, the variables that
    /// change how it logs or notifies (`RUST_LOG`, `JOURNAL_STREAM`, `NOTIFY_SOCKET`) cleared,
    /// then `vars` set.
    pub fn start(env: &Env, stderr: std::process::Stdio, vars: &[(&str, &str)]) -> ChildDaemon {
        let listen = format!("127.0.0.1:{}", mailprobe_testpeers::util::free_port());
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_mailprobe"));
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
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(stderr);
        for (k, v) in vars {
            cmd.env(k, v);
        }
        ChildDaemon {
            child: cmd.spawn().expect("start mailprobe run"),
            listen,
        }
    }

    /// The address it listens on.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.listen.parse().unwrap()
    }

    /// Sends SIGTERM and waits up to 20 s for the process to end.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill -TERM");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for mailprobe") {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for the daemon to exit after SIGTERM"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

impl Drop for ChildDaemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `mailprobe probe` on an HTTPS API target (Graph, Gmail) that reads fine and one refused:
/// the table's header, the good row's phases token to body and exit 0 for it alone, then exit 1
/// for all with the refused row's `FAIL class phase`. Prints both tables (`--nocapture` shows
/// what an admin reads) and returns everything printed, for the secrets checks.
pub async fn api_probe_cli(
    config: std::path::PathBuf,
    protocol: &str,
    good: &str,
    refused: (&str, &str, &str),
) -> String {
    let (code, out, err) = probe_cli(config.clone(), &[good]).await;
    println!("$ mailprobe probe -c probes.toml {good}\n{out}");
    assert_eq!(code, Some(0), "{out}{err}");
    let header = out.lines().next().unwrap();
    assert!(
        header.starts_with("TARGET") && header.contains("PHASES_MS"),
        "{out}"
    );
    let row = out
        .lines()
        .find(|l| l.starts_with(&format!("{good} ")))
        .unwrap_or_else(|| panic!("{out}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols[..4], [good, "test", protocol, "ok"], "{row}");
    for phase in ["token", "dns", "connect", "tls", "request", "body"] {
        phase_ms(row, phase);
    }
    let mut shown = format!("{out}{err}");

    let (name, class, phase) = refused;
    let (code, out, err) = probe_cli(config, &[]).await;
    println!("$ mailprobe probe -c probes.toml\n{out}");
    assert_eq!(code, Some(1), "one target fails: {out}{err}");
    let row = out
        .lines()
        .find(|l| l.starts_with(&format!("{name} ")))
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(
        row.split_whitespace().collect::<Vec<_>>()[3..6],
        ["FAIL", class, phase],
        "{row}"
    );
    shown.push_str(&out);
    shown.push_str(&err);
    shown
}

/// A daemon's JSON answer at `path`, which must be a 200.
pub async fn json_ok(d: &Daemon, path: &str) -> serde_json::Value {
    let (status, body) = http(d.addr, "GET", path).await;
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

/// `mailprobe ARGS`, which must succeed: its stdout (its stderr in the failure).
pub fn mailprobe_ok(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mailprobe"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
