//! A private Dovecot with a self-contained config: nothing from /etc, nothing system-wide.
//!
//! Facts this relies on (Debian 12, Dovecot 2.3): `dovecot -c CONF -F` starts in ~20 ms;
//! readiness is the `* OK` greeting; a wrong password costs ~0.5 s even with
//! `auth_failure_delay = 0` and the anvil penalty listener disabled; killing the master with
//! SIGKILL makes its children exit; mail must belong to a non-root uid.

use std::fs;
use std::os::unix::fs::chown;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::pki::{ServerCert, TestPki};
use crate::util::{free_port, require_program, short_tempdir, wait_for_greeting};

/// The uid/gid mail is stored as (nobody/nogroup).
pub const MAIL_UID: u32 = 65534;

/// The mailbox every test logs in to.
pub const USER: &str = "probe@example.test";
/// Its password.
pub const PASSWORD: &str = "pr0be-Secret";
/// A second mailbox, for tests that need a different one.
pub const OTHER_USER: &str = "other@example.test";

/// How to start Dovecot.
#[derive(Clone, Debug)]
pub struct Options {
    /// Fixed ports (imap, imaps, lmtp, auth) instead of free ones (the demo uses fixed ports).
    pub ports: Option<Ports>,
    /// `service_count = 0` for imap-login, so one login process serves many connections
    /// (benchmarks would otherwise measure Dovecot's fork rate).
    pub reuse_login_processes: bool,
    /// Which certificate Dovecot presents.
    pub cert: Option<ServerCert>,
    /// Offer STARTTLS on the plain port.
    pub starttls: bool,
    /// Extra users beyond [`USER`] and [`OTHER_USER`].
    pub extra_users: Vec<(String, String)>,
    /// Replaces the advertised IMAP capabilities (e.g. to leave out IDLE and UIDPLUS).
    pub imap_capability: Option<String>,
    /// Accept OAuth2 bearer tokens (XOAUTH2, OAUTHBEARER), checked at this introspection URL.
    pub oauth2_introspection: Option<String>,
    /// `mail_max_userip_connections` for IMAP: past it a login is refused with `NO [LIMIT]`.
    pub max_userip_connections: Option<u32>,
    /// How long a wrong password waits for its rejection (`auth_failure_delay`): 0 here for
    /// speed; Dovecot's default is 2 s, Cyrus waits about 3 s, Courier about 5 s.
    pub auth_failure_delay: std::time::Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            ports: None,
            reuse_login_processes: false,
            cert: None,
            starttls: true,
            extra_users: Vec::new(),
            imap_capability: None,
            oauth2_introspection: None,
            max_userip_connections: None,
            auth_failure_delay: std::time::Duration::ZERO,
        }
    }
}

/// The ports a Dovecot listens on, all on 127.0.0.1.
#[derive(Clone, Copy, Debug)]
pub struct Ports {
    /// IMAP with STARTTLS.
    pub imap: u16,
    /// IMAPS (implicit TLS).
    pub imaps: u16,
    /// LMTP, for Postfix delivery.
    pub lmtp: u16,
    /// The auth service, for Postfix SASL.
    pub auth: u16,
    /// POP3 with STLS.
    pub pop3: u16,
    /// POP3S (implicit TLS).
    pub pop3s: u16,
}

impl Ports {
    fn free() -> Ports {
        Ports {
            imap: free_port(),
            imaps: free_port(),
            lmtp: free_port(),
            auth: free_port(),
            pop3: free_port(),
            pop3s: free_port(),
        }
    }
}

/// A running private Dovecot; stopped (SIGKILL) when dropped.
pub struct Dovecot {
    dir: tempfile::TempDir,
    /// Its ports.
    pub ports: Ports,
    /// The CA its certificate chains to.
    pub ca: PathBuf,
    child: Option<Child>,
}

impl Dovecot {
    /// Starts Dovecot presenting `pki.valid` (or `opts.cert`), and waits for its greeting.
    pub fn start(pki: &TestPki, opts: Options) -> Dovecot {
        let bin = require_program("dovecot", "dovecot-imapd");
        crate::util::require_root();
        let _ = bin;
        // Dovecot refuses to start with pop3 in `protocols` and no pop3 binary.
        if !Path::new("/usr/lib/dovecot/pop3-login").exists() {
            panic!(
                "dovecot-pop3d is not installed: the tests use a real Dovecot POP3. Run the \
                 README's test command (scripts/test), which installs it, or `apt-get install \
                 dovecot-pop3d`."
            );
        }
        let dir = short_tempdir("mpd-");
        let ports = opts.ports.unwrap_or_else(Ports::free);
        let mut d = Dovecot {
            dir,
            ports,
            ca: pki.ca.clone(),
            child: None,
        };
        d.write_config(pki, &opts);
        d.launch();
        d
    }

    /// The directory holding config, logs and mail.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The Maildir of `user`.
    pub fn maildir(&self, user: &str) -> PathBuf {
        self.dir().join("mail").join(user).join("Maildir")
    }

    /// Whether the Maildir of `user` holds a message containing `needle`.
    pub fn mailbox_contains(&self, user: &str, needle: &str) -> bool {
        maildir_files(&self.maildir(user))
            .iter()
            .any(|p| fs::read_to_string(p).is_ok_and(|t| t.contains(needle)))
    }

    /// How many messages the Maildir of `user` holds.
    pub fn mailbox_len(&self, user: &str) -> usize {
        maildir_files(&self.maildir(user)).len()
    }

    /// Drops `message` into the Maildir of `user` as if delivered `age` ago (Dovecot takes a
    /// Maildir file's mtime as its arrival time).
    pub fn plant(&self, user: &str, message: &str, age: Duration) {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let home = self.dir().join("mail").join(user);
        let maildir = self.maildir(user);
        for dir in [
            home.clone(),
            maildir.clone(),
            maildir.join("new"),
            maildir.join("cur"),
            maildir.join("tmp"),
        ] {
            fs::create_dir_all(&dir).expect("create maildir");
            chown(&dir, Some(MAIL_UID), Some(MAIL_UID)).expect("chown maildir");
        }
        let when = std::time::SystemTime::now() - age;
        let secs = when
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs();
        let name = format!(
            "{secs}.M{}P{}.planted",
            N.fetch_add(1, Ordering::SeqCst),
            std::process::id()
        );
        let path = maildir.join("new").join(name);
        fs::write(&path, message.replace('\n', "\r\n")).expect("plant message");
        chown(&path, Some(MAIL_UID), Some(MAIL_UID)).expect("chown message");
        fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_modified(when))
            .expect("backdate message");
    }

    /// Dovecot's log (and early stderr) so far, for assertion messages.
    pub fn log(&self) -> String {
        let mut log = fs::read_to_string(self.dir().join("stderr.log")).unwrap_or_default();
        log.push_str(&fs::read_to_string(self.dir().join("dovecot.log")).unwrap_or_default());
        log
    }

    /// The master process id (the benchmark charges the master and its children's CPU).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether it is running.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    fn write_config(&self, pki: &TestPki, opts: &Options) {
        let dir = self.dir();
        let cert = opts.cert.clone().unwrap_or_else(|| pki.valid.clone());
        let mail = dir.join("mail");
        fs::create_dir_all(&mail).expect("mail dir");
        chown(&mail, Some(MAIL_UID), Some(MAIL_UID)).expect("chown mail dir");
        let mut users = vec![
            (USER.to_string(), PASSWORD.to_string()),
            (OTHER_USER.to_string(), "other-Secret".to_string()),
        ];
        users.extend(opts.extra_users.iter().cloned());
        let passwd: String = users
            .iter()
            .map(|(u, p)| {
                format!(
                    "{u}:{{PLAIN}}{p}:{MAIL_UID}:{MAIL_UID}::{}::\n",
                    mail.join(u).display()
                )
            })
            .collect();
        fs::write(dir.join("passwd"), passwd).expect("passwd");
        let p = self.ports;
        let d = dir.display();
        let login_reuse = if opts.reuse_login_processes {
            "  service_count = 0\n  process_min_avail = 2\n"
        } else {
            ""
        };
        // With ssl = yes Dovecot offers STARTTLS on the plain port; ssl = no offers none and
        // then the implicit port cannot work either, so a no-STARTTLS Dovecot has only IMAP.
        let ssl = if opts.starttls { "yes" } else { "no" };
        let imaps = if opts.starttls {
            format!(
                "  inet_listener imaps {{\n    address = 127.0.0.1\n    port = {}\n    ssl = yes\n  }}\n",
                p.imaps
            )
        } else {
            String::new()
        };
        let pop3s = if opts.starttls {
            format!(
                "  inet_listener pop3s {{\n    address = 127.0.0.1\n    port = {}\n    ssl = yes\n  }}\n",
                p.pop3s
            )
        } else {
            String::new()
        };
        let capability = opts
            .imap_capability
            .as_ref()
            .map(|c| format!("imap_capability = {c}\n"))
            .unwrap_or_default();
        let (mechanisms, oauth2_passdb, password_mechanisms) = match &opts.oauth2_introspection {
            None => ("plain login", String::new(), ""),
            Some(url) => {
                fs::write(
                    dir.join("dovecot-oauth2.conf.ext"),
                    format!(
                        "introspection_mode = post\nintrospection_url = {url}\n\
                         force_introspection = yes\nusername_attribute = username\n\
                         active_attribute = active\nactive_value = true\n"
                    ),
                )
                .expect("oauth2 conf");
                (
                    "plain login xoauth2 oauthbearer",
                    format!(
                        "passdb {{\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n  args = {}/dovecot-oauth2.conf.ext\n}}\n",
                        dir.display()
                    ),
                    "  mechanisms = plain login\n",
                )
            }
        };
        let userip = opts
            .max_userip_connections
            .map(|n| format!("protocol imap {{\n  mail_max_userip_connections = {n}\n}}\n"))
            .unwrap_or_default();
        let conf = format!(
            r#"# Written by mailprobe-testpeers; self-contained, includes nothing from /etc.
{capability}
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
protocols = imap pop3 lmtp
listen = 127.0.0.1
ssl = {ssl}
ssl_cert = <{cert}
ssl_key = <{key}
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = no
auth_mechanisms = {mechanisms}
auth_failure_delay = {failure_delay}ms
auth_verbose = yes
mail_location = maildir:~/Maildir
first_valid_uid = {MAIL_UID}
{oauth2_passdb}passdb {{
  driver = passwd-file
{password_mechanisms}  args = scheme=PLAIN {d}/passwd
}}
userdb {{
  driver = passwd-file
  args = {d}/passwd
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap}
  }}
{imaps}{login_reuse}}}
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {pop3}
  }}
{pop3s}}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {lmtp}
  }}
}}
service auth {{
  inet_listener {{
    address = 127.0.0.1
    port = {auth}
  }}
}}
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
{userip}"#,
            cert = cert.cert.display(),
            key = cert.key.display(),
            imap = p.imap,
            pop3 = p.pop3,
            lmtp = p.lmtp,
            auth = p.auth,
            failure_delay = opts.auth_failure_delay.as_millis(),
        );
        fs::write(dir.join("dovecot.conf"), conf).expect("dovecot.conf");
    }

    fn launch(&mut self) {
        let dir = self.dir().to_path_buf();
        // A stale base_dir from a killed instance makes Dovecot refuse to start.
        let _ = fs::remove_dir_all(dir.join("run"));
        let child = Command::new("dovecot")
            .arg("-c")
            .arg(dir.join("dovecot.conf"))
            .arg("-F")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            // Errors before log_path is open (a bad config) go to stderr.
            .stderr(fs::File::create(dir.join("stderr.log")).expect("stderr.log"))
            .spawn()
            .expect("cannot start dovecot");
        self.child = Some(child);
        let child = self.child.as_mut().expect("just set");
        let alive = || matches!(child.try_wait(), Ok(None));
        if let Err(e) = wait_for_greeting(self.ports.imap, "* OK", Duration::from_secs(15), alive) {
            let log = self.log();
            self.stop();
            panic!("dovecot did not come up: {e}\n--- dovecot.log ---\n{log}");
        }
    }

    /// Stops it (SIGKILL; children follow the master). The ports become free again.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            // Children notice the master's death and exit; wait until the port is released.
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while std::time::Instant::now() < deadline
                && std::net::TcpStream::connect(("127.0.0.1", self.ports.imap)).is_ok()
            {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    /// Starts it again on the same ports with the same config and mail.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The message files of a Maildir (new and cur).
fn maildir_files(maildir: &Path) -> Vec<PathBuf> {
    ["new", "cur"]
        .iter()
        .flat_map(|sub| {
            fs::read_dir(maildir.join(sub))
                .into_iter()
                .flatten()
                .flatten()
        })
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect()
}
