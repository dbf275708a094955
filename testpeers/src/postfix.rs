//! A private Postfix: its own config, queue and log directories, listening on 127.0.0.1 only,
//! with SASL through the test Dovecot's auth service and delivery for `example.test` into the
//! Dovecot mailboxes over LMTP.
//!
//! Facts this relies on (Debian 12, Postfix 3.7): `postfix -c DIR check` then `start` works as
//! root with its own queue_directory and data_directory; logs go to `maillog_file` through the
//! `postlog` service; a config file younger than ~1 s makes every postfix command sleep ~2 s
//! (so the files are backdated); `postfix -c DIR abort` stops it at once.

use std::fs;
use std::os::unix::fs::chown;
use std::process::Command;
use std::time::{Duration, SystemTime};

use crate::dovecot::Dovecot;
use crate::pki::TestPki;
use crate::util::{free_port, require_program, require_root, short_tempdir, wait_for_greeting};

/// The domain Postfix delivers to Dovecot.
pub const DOMAIN: &str = "example.test";
/// Postfix's host name (the greeting's first word).
pub const HOSTNAME: &str = "mx.example.test";

/// The ports a Postfix listens on, all on 127.0.0.1.
#[derive(Clone, Copy, Debug)]
pub struct Ports {
    /// Port-25 style: no AUTH, accepts mail for the domain (an MX).
    pub smtp: u16,
    /// Submission with STARTTLS required and AUTH (587 style).
    pub submission: u16,
    /// Submission over implicit TLS with AUTH (465 style).
    pub submissions: u16,
}

/// A running private Postfix; stopped when dropped.
pub struct Postfix {
    dir: crate::tempfile::TempDir,
    /// Its ports.
    pub ports: Ports,
    running: bool,
}

impl Postfix {
    /// Starts Postfix against `dovecot` (for SASL and delivery) presenting `pki.valid`.
    pub fn start(pki: &TestPki, dovecot: &Dovecot, ports: Option<Ports>) -> Postfix {
        Self::start_with(pki, dovecot, ports, &[])
    }

    /// Like [`Postfix::start_with`], relaying mail for `domain` to the SMTP server on
    /// 127.0.0.1:`port` (as to that domain's MX: another mail service, such as the Graph
    /// peer's mailboxes).
    pub fn start_relaying(
        pki: &TestPki,
        dovecot: &Dovecot,
        (domain, port): (&str, u16),
        extra: &[(&str, &str)],
    ) -> Postfix {
        let transport = format!("inline:{{ {domain}=smtp:[127.0.0.1]:{port} }}");
        let mut settings = vec![("relay_domains", domain), ("transport_maps", &transport)];
        settings.extend_from_slice(extra);
        Self::start_with(pki, dovecot, None, &settings)
    }

    /// Like [`Postfix::start`], with `extra` main.cf settings (set before it starts, so no
    /// reload races the first message).
    pub fn start_with(
        pki: &TestPki,
        dovecot: &Dovecot,
        ports: Option<Ports>,
        extra: &[(&str, &str)],
    ) -> Postfix {
        require_program("postfix", "postfix");
        require_root();
        let dir = short_tempdir("mpp-");
        let ports = ports.unwrap_or_else(|| Ports {
            smtp: free_port(),
            submission: free_port(),
            submissions: free_port(),
        });
        let mut p = Postfix {
            dir,
            ports,
            running: false,
        };
        p.write_config(pki, dovecot, extra);
        p.postfix(&["check"]);
        p.launch();
        p
    }

    fn etc(&self) -> std::path::PathBuf {
        self.dir.path().join("etc")
    }

    /// Postfix's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("maillog")).unwrap_or_default()
    }

    fn write_config(&self, pki: &TestPki, dovecot: &Dovecot, extra: &[(&str, &str)]) {
        let d = self.dir.path();
        for sub in ["etc", "queue", "data"] {
            fs::create_dir_all(d.join(sub)).expect("postfix dirs");
        }
        let (uid, gid) = postfix_ids();
        chown(d.join("data"), Some(uid), Some(gid)).expect("chown data_directory");
        let dp = dovecot.ports;
        let main = format!(
            r#"# Written by mailprobe-testpeers; self-contained.
compatibility_level = 3.6
queue_directory = {d}/queue
data_directory = {d}/data
maillog_file = {d}/maillog
maillog_file_prefixes = {d}
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = {HOSTNAME}
mydomain = {DOMAIN}
myorigin = {DOMAIN}
mydestination =
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
local_recipient_maps =
smtputf8_enable = no
biff = no
virtual_mailbox_domains = {DOMAIN}
virtual_mailbox_maps = inline:{{ {users} }}
virtual_transport = lmtp:inet:127.0.0.1:{lmtp}
smtpd_sasl_type = dovecot
smtpd_sasl_path = inet:127.0.0.1:{auth}
smtpd_tls_cert_file = {cert}
smtpd_tls_key_file = {key}
smtpd_tls_security_level = may
smtp_tls_security_level = none
"#,
            d = d.display(),
            users = [crate::dovecot::USER, crate::dovecot::OTHER_USER]
                .map(|u| format!("{u}=ok"))
                .join(", "),
            lmtp = dp.lmtp,
            auth = dp.auth,
            cert = pki.valid.cert.display(),
            key = pki.valid.key.display(),
        );
        let auth_opts = "  -o smtpd_sasl_auth_enable=yes\n  -o smtpd_client_restrictions=permit_sasl_authenticated,reject\n  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject\n";
        let p = self.ports;
        let master = format!(
            r#"127.0.0.1:{smtp} inet n - n - - smtpd
127.0.0.1:{submission} inet n - n - - smtpd
  -o syslog_name=postfix/submission
  -o smtpd_tls_security_level=encrypt
{auth_opts}127.0.0.1:{submissions} inet n - n - - smtpd
  -o syslog_name=postfix/submissions
  -o smtpd_tls_wrappermode=yes
{auth_opts}pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"#,
            smtp = p.smtp,
            submission = p.submission,
            submissions = p.submissions,
        );
        let mut main = main;
        for (key, value) in extra {
            main.push_str(&format!("{key} = {value}\n"));
        }
        self.write_etc("main.cf", &main);
        self.write_etc("master.cf", &master);
    }

    /// Writes a config file backdated by an hour (a fresh mtime makes postfix commands sleep).
    fn write_etc(&self, name: &str, text: &str) {
        let path = self.etc().join(name);
        fs::write(&path, text).expect("write postfix config");
        let f = fs::File::options()
            .write(true)
            .open(&path)
            .expect("open config");
        f.set_modified(SystemTime::now() - Duration::from_secs(3600))
            .expect("backdate config");
    }

    /// Changes one main.cf setting and makes the running Postfix re-read it.
    pub fn set(&self, key: &str, value: &str) {
        let path = self.etc().join("main.cf");
        let main = fs::read_to_string(&path).expect("main.cf");
        let mut lines: Vec<String> = main
            .lines()
            .filter(|l| !l.starts_with(&format!("{key} =")))
            .map(str::to_string)
            .collect();
        lines.push(format!("{key} = {value}"));
        self.write_etc("main.cf", &(lines.join("\n") + "\n"));
        if self.running {
            self.postfix(&["reload"]);
        }
    }

    /// Runs `postfix -c DIR args...`, panicking with the log on failure.
    pub fn postfix(&self, args: &[&str]) {
        let out = Command::new("postfix")
            .arg("-c")
            .arg(self.etc())
            .args(args)
            .output()
            .expect("run postfix");
        assert!(
            out.status.success(),
            "postfix {args:?} failed: {}{}\n--- maillog ---\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
    }

    /// Flushes the queue: deferred mail is tried again now.
    pub fn flush(&self) {
        let out = Command::new("postqueue")
            .arg("-c")
            .arg(self.etc())
            .arg("-f")
            .output()
            .expect("run postqueue");
        assert!(
            out.status.success(),
            "postqueue -f: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn launch(&mut self) {
        self.postfix(&["start"]);
        self.running = true;
        if let Err(e) = wait_for_greeting(self.ports.smtp, "220", Duration::from_secs(15), || true)
        {
            let log = self.log();
            self.stop();
            panic!("postfix did not come up: {e}\n--- maillog ---\n{log}");
        }
    }

    /// Stops it at once; its ports become free again.
    pub fn stop(&mut self) {
        if !self.running {
            return;
        }
        self.running = false;
        let _ = Command::new("postfix")
            .arg("-c")
            .arg(self.etc())
            .arg("abort")
            .output();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::time::Instant::now() < deadline
            && std::net::TcpStream::connect(("127.0.0.1", self.ports.smtp)).is_ok()
        {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Starts it again with the same config and queue.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// The queue directory (for tests that look at deferred mail).
    pub fn queue_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("queue")
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        self.stop();
    }
}

/// uid and gid of the `postfix` user.
fn postfix_ids() -> (u32, u32) {
    let passwd = fs::read_to_string("/etc/passwd").expect("/etc/passwd");
    let line = passwd
        .lines()
        .find(|l| l.starts_with("postfix:"))
        .expect("no postfix user: is the postfix package installed?");
    let f: Vec<&str> = line.split(':').collect();
    (
        f[2].parse().expect("postfix uid"),
        f[3].parse().expect("postfix gid"),
    )
}
