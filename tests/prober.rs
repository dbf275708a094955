//! A prober fault is not a target failure: when mailprobe itself cannot run a probe (no file
//! descriptor left here), the target is not reported failing, no incident opens, and the fault
//! shows on its own (class prober_error, an ERROR line when it starts, `mailprobe_prober_errors_total`).

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use common::{ChildDaemon, Env, eventually, http, sample};
use mailprobe_testpeers::fault::{Action, FaultServer, Script};
use mailprobe_testpeers::util::require_program;

/// An MX that accepts the probe's whole session, every time.
fn healthy_mx() -> Script {
    Script::new(Action::send("220 mx.example.test ESMTP\r\n"), |line| {
        let upper = line.to_ascii_uppercase();
        if upper.starts_with("EHLO") {
            Action::send("250-mx.example.test\r\n250 PIPELINING\r\n")
        } else if upper == "QUIT" {
            Action::SendAndClose(b"221 2.0.0 bye\r\n".to_vec())
        } else {
            Action::send("502 5.5.2 not here\r\n")
        }
    })
}

/// The daemon binary, its stderr collected line by line as it comes.
struct RunningDaemon {
    daemon: ChildDaemon,
    addr: std::net::SocketAddr,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl RunningDaemon {
    fn start(env: &Env, text: &str) -> RunningDaemon {
        std::fs::write(env.config_path(), env.with_state(text)).unwrap();
        let mut daemon = ChildDaemon::start(env, Stdio::piped(), &[]);
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let lines = stderr.clone();
        let pipe = daemon.child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
        RunningDaemon {
            addr: daemon.addr(),
            daemon,
            stderr,
        }
    }

    fn lines(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    async fn metrics(&self) -> Option<String> {
        tokio::net::TcpStream::connect(self.addr).await.ok()?;
        let (status, body) = http(self.addr, "GET", "/metrics").await;
        (status == 200).then_some(body)
    }

    /// Sets the soft RLIMIT_NOFILE of the running daemon (prlimit(1), as root can).
    fn limit_files(&self, soft: &str) {
        let prlimit = require_program("prlimit", "util-linux");
        let out = Command::new(prlimit)
            .args([
                "--pid",
                &self.daemon.child.id().to_string(),
                &format!("--nofile={soft}:"),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn soft_file_limit(&self) -> String {
        let limits =
            std::fs::read_to_string(format!("/proc/{}/limits", self.daemon.child.id())).unwrap();
        let line = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .unwrap()
            .to_string();
        line.split_whitespace().nth(3).unwrap().to_string()
    }
}

/// The reproduction without its HTTP half: the daemon runs out of file descriptors
/// (its RLIMIT_NOFILE lowered below what it has open, so every socket() fails with EMFILE).
/// Before, each probe failed `network_unreachable at connect: Too many open files`, the target
/// went down and an incident opened. Now each is a prober fault: logged at ERROR, counted in
/// `mailprobe_prober_errors_total{reason="file_descriptors"}`, and the target's own series and
/// health stay as they were.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_file_descriptors_is_a_prober_fault_not_a_target_failure() {
    let env = Env::new();
    let mx = FaultServer::start(healthy_mx()).await;
    let target = common::without_ca(env.mx_target(
        "mx",
        mx.port(),
        "tls = \"none\"\nallow_plaintext = true",
    ));
    let d = RunningDaemon::start(
        &env,
        &format!(
            "[global]\ninterval = \"1s\"\ntimeout = \"1s\"\nlog_level = \"debug\"\n[incidents]\nstate_dir = \"{}\"\n\
             down_after = 2\nup_after = 2\n{target}",
            env.dir.path().join("state").display()
        ),
    );
    let success = |m: &str| {
        sample(
            m,
            "mailprobe_probes_total",
            &[("protocol", "smtp"), ("result", "success")],
        )
    };
    eventually(20, "two successful probes", || async {
        let m = d.metrics().await?;
        (success(&m)? >= 2.0).then_some(())
    })
    .await;

    // Descriptors 0, 1 and 2 are open, so with a soft limit of 3 every new one fails (EMFILE).
    let soft = d.soft_file_limit();
    d.limit_files("3");
    let emfile = |d: &RunningDaemon| {
        d.lines()
            .into_iter()
            .filter(|l| l.contains("Too many open files") && l.contains("connect"))
            .collect::<Vec<_>>()
    };
    // Eight probes (eight seconds): more than `down_after`, and the incident engine has ticked
    // (every 5 s) since the target would have gone down.
    let failed = eventually(30, "eight probes failing with EMFILE", || async {
        let lines = emfile(&d);
        (lines.len() >= 8).then_some(lines)
    })
    .await;
    d.limit_files(&soft);

    // The first is an ERROR line; its repeats, the same fault, are at debug (a target's state
    // change is logged once, so 10,000 of them do not flood journald).
    assert!(
        failed[0].contains("level=error"),
        "a prober fault is logged at ERROR: {}",
        failed[0]
    );
    for line in &failed {
        assert!(line.contains("prober_error"), "{line}");
        assert!(!line.contains("network_unreachable"), "{line}");
        assert!(!line.contains("level=warn"), "{line}");
    }
    let m = eventually(20, "/metrics answering again", || d.metrics()).await;
    let faults = sample(
        &m,
        "mailprobe_prober_errors_total",
        &[("protocol", "smtp"), ("reason", "file_descriptors")],
    );
    assert!(faults.is_some_and(|n| n >= 8.0), "{m}");
    assert_eq!(
        sample(
            &m,
            "mailprobe_probes_total",
            &[("protocol", "smtp"), ("result", "failure")]
        ),
        Some(0.0),
        "a prober fault is no failed probe of the target:\n{m}"
    );
    assert!(
        !m.contains("mailprobe_probe_failures_total{"),
        "no failure class counted for the target:\n{m}"
    );
    assert!(!m.contains("mailprobe_probe_failure_info{"), "{m}");
    assert_eq!(
        sample(
            &m,
            "mailprobe_probe_consecutive_failures",
            &[("target", "mx")]
        ),
        Some(0.0),
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            "mailprobe_target_state",
            &[("target", "mx"), ("state", "up")]
        ),
        Some(1.0),
        "{m}"
    );
    for scope in ["target", "region", "global"] {
        assert_eq!(
            sample(
                &m,
                "mailprobe_incidents_open",
                &[("scope", scope), ("region", "test")]
            ),
            Some(0.0),
            "{m}"
        );
    }
    let (status, history) = http(d.addr, "GET", "/api/v1/incidents?since=1h").await;
    assert_eq!(
        (status, history.trim()),
        (200, "[]"),
        "no incident was ever opened"
    );
    assert!(
        !d.lines().iter().any(|l| l.contains("opened")),
        "{:#?}",
        d.lines()
    );
    // And probing goes on once descriptors are free again.
    let before = success(&m).unwrap();
    eventually(20, "successful probes again", || async {
        let m = d.metrics().await?;
        (success(&m)? > before).then_some(())
    })
    .await;
}

/// The same for an OAuth2 target whose token must be fetched on every probe (the token lives
/// one second, probes come every two): out of descriptors, the fetch from the identity provider
/// cannot even connect. That is no failure of the identity provider (before: auth_token_failed,
/// a failed token fetch counted against it) and no failure of the target.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_fetch_without_descriptors_blames_neither_the_provider_nor_the_target() {
    use mailprobe_testpeers::dovecot::{Dovecot, Options};
    use mailprobe_testpeers::oauth::{Client, TokenServer};
    let env = Env::new();
    let tokens = TokenServer::start(&env.pki.valid, std::time::Duration::from_secs(1)).await;
    tokens.add_client(
        "app",
        Client {
            secret: Some("app-Secret-42".into()),
            assertion_key: None,
            user: common::USER.into(),
        },
    );
    let dovecot = Dovecot::start(
        &env.pki,
        Options {
            oauth2_introspection: Some(tokens.introspection_url.clone()),
            ..Options::default()
        },
    );
    let secret = env.secret("app.secret", "app-Secret-42");
    let d = RunningDaemon::start(
        &env,
        &format!(
            "[global]\ninterval = \"2s\"\ntimeout = \"2s\"\nlog_level = \"debug\"\n[incidents]\nstate_dir = \"{state}\"\n\
             down_after = 2\nup_after = 2\n\
             [[target]]\nname = \"imap-oauth\"\nregion = \"test\"\nprotocol = \"imap\"\n\
             host = \"127.0.0.1\"\nport = {port}\nca_file = \"{ca}\"\nusername = \"{user}\"\n\
             auth = \"oauth2\"\n[target.oauth2]\ntoken_url = \"{url}\"\nclient_id = \"app\"\n\
             client_secret_file = \"{secret}\"\nscopes = [\"mail\"]\nca_file = \"{ca}\"\n",
            state = env.dir.path().join("state").display(),
            port = dovecot.ports.imaps,
            ca = env.pki.ca.display(),
            user = common::USER,
            url = tokens.token_url,
            secret = secret.display(),
        ),
    );
    let metric = |m: &str, name: &str, labels: &[(&str, &str)]| sample(m, name, labels);
    let fetches = |m: &str, result: &str| {
        metric(
            m,
            "mailprobe_oauth2_token_fetches_total",
            &[("credential", "app@localhost"), ("result", result)],
        )
    };
    let m = eventually(30, "two successful probes", || async {
        let m = d.metrics().await?;
        let ok = metric(
            &m,
            "mailprobe_probes_total",
            &[
                ("protocol", "imap"),
                ("region", "test"),
                ("result", "success"),
            ],
        )?;
        (ok >= 2.0).then_some(m)
    })
    .await;
    assert!(
        fetches(&m, "success").is_some_and(|n| n >= 2.0),
        "a token fetch per probe: {m}"
    );

    let soft = d.soft_file_limit();
    d.limit_files("3");
    let failed = eventually(30, "three token fetches failing with EMFILE", || async {
        let lines: Vec<String> = d
            .lines()
            .into_iter()
            .filter(|l| l.contains("Too many open files") && l.contains("token"))
            .collect();
        (lines.len() >= 3).then_some(lines)
    })
    .await;
    d.limit_files(&soft);

    for line in &failed {
        assert!(line.contains("prober_error"), "{line}");
        assert!(!line.contains("auth_token_failed"), "{line}");
    }
    let m = eventually(20, "/metrics answering again", || d.metrics()).await;
    assert!(
        metric(
            &m,
            "mailprobe_prober_errors_total",
            &[("protocol", "imap"), ("reason", "file_descriptors")]
        )
        .is_some_and(|n| n >= 3.0),
        "{m}"
    );
    assert_eq!(
        fetches(&m, "failure"),
        None,
        "the provider did not fail:\n{m}"
    );
    assert_eq!(
        metric(
            &m,
            "mailprobe_probes_total",
            &[
                ("protocol", "imap"),
                ("region", "test"),
                ("result", "failure")
            ]
        ),
        Some(0.0),
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "mailprobe_target_state",
            &[("target", "imap-oauth"), ("state", "up")]
        ),
        Some(1.0),
        "{m}"
    );
}
