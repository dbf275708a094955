//! `probes.toml`: the serde model, defaults, and validation whose every error names the file, the
//! line and the key.
//!
//! Loading is two-step, like rathole's: serde parses a raw model that rejects unknown keys, then
//! [`load`] validates it into a [`Config`] of ready-to-probe [`Target`]s (secrets read, TLS roots
//! loaded). Both steps report errors through one [`Locator`] that maps a key path or a byte span
//! back to `file:line:column`.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;
use toml::de::{DeTable, DeValue};

use crate::hash::{Fnv64, stable_hash};
use crate::probe::Protocol;
use crate::tls::{RootsCache, TlsClient};

/// Where the daemon listens when `[global] listen` is not set.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9783";
const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_SLOW: Duration = Duration::from_secs(2);
const DEFAULT_CONCURRENCY: usize = 64;
const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// The longest interval, slow threshold or delivery timeout: a target probed less than daily is
/// not monitored, and larger values overflowed timers.
const MAX_INTERVAL: Duration = Duration::from_secs(86_400);
const MAX_POLL_INTERVAL: Duration = Duration::from_secs(3600);
const MAX_CLEANUP_AGE: Duration = Duration::from_secs(365 * 86_400);
/// 100 years of 365.25 days (humantime's `100y`).
const MAX_RETENTION: Duration = Duration::from_secs(100 * 31_557_600);
/// More users than any fleet has; sums over 100,000 targets still fit SQLite's INTEGER.
const MAX_USERS: u64 = 10_000_000_000;
const MAX_REDIRECTS: u32 = 100;
/// The largest config file read: 100,000 targets take about 30 MiB. A device such as
/// `/dev/zero` ends in this error, not in the out-of-memory killer.
pub const MAX_CONFIG_BYTES: u64 = 64 * 1024 * 1024;
const MAX_SECRET_BYTES: u64 = 64 * 1024;
/// CA bundles, certificates and keys (the system bundle is about 200 KiB).
pub const MAX_PEM_BYTES: u64 = 4 * 1024 * 1024;
const MAX_BODY_FILE_BYTES: u64 = 16 * 1024 * 1024;
const DEFAULT_DELIVERY_TIMEOUT: Duration = Duration::from_secs(120);
const DEFAULT_DELIVERY_SLOW: Duration = Duration::from_secs(30);
const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(2);
const DEFAULT_CLEANUP_AGE: Duration = Duration::from_secs(3600);
const DEFAULT_MAX_BODY: u64 = 1024 * 1024;
const MAX_MAX_BODY: u64 = 64 * 1024 * 1024;
const DEFAULT_MAX_REDIRECTS: u32 = 5;
const MAX_DNS_SERVERS: usize = 8;
/// Where incident history lives when neither `state_dir` nor systemd's `STATE_DIRECTORY` says.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/mailprobe";
const DEFAULT_RETENTION: Duration = Duration::from_secs(90 * 86_400);

/// A config that could not be loaded; the daemon refuses it (and keeps the old one on reload).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file itself could not be read. The reason is part of the message, not a `source`:
    /// `{:#}` chains would print the OS error twice.
    #[error("{}: cannot read {what}: {reason}", path.display())]
    Read {
        /// The config file.
        path: PathBuf,
        /// Which file it is, in words ("config", "web config").
        what: &'static str,
        /// Why it could not be read.
        reason: FileError,
    },
    /// The file is valid but gives this instance nothing to probe.
    #[error("{}: {message}", file.display())]
    NothingToProbe {
        /// The config file.
        file: PathBuf,
        /// Why, in words.
        message: String,
    },
    /// The file was read but something in it is wrong. Long values quoted in the message (a
    /// 5 MB string) are cut when displayed.
    #[error("{}:{line}:{column}: {}{sep}{}", file.display(), cut_key(key), cut_values(message), sep = if key.is_empty() { "" } else { ": " })]
    Invalid {
        /// The config file.
        file: PathBuf,
        /// 1-based line of the offending key.
        line: usize,
        /// 1-based column of the offending key.
        column: usize,
        /// Dotted key path, e.g. `target[2] "imap-eu".tls` (1-based `[[target]]` index, and the
        /// target's name when it has a valid one); empty for syntax errors.
        key: String,
        /// What is wrong, in words.
        message: String,
    },
}

/// A valid config that will probably mislead: `mailprobe check` prints it (exit code still 0),
/// the daemon logs it at start and on reload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigWarning {
    /// The config file.
    pub file: PathBuf,
    /// 1-based line of the key (or of its table when the value is inherited).
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// Dotted key path, e.g. `target[2] "imap-eu".timeout`.
    pub key: String,
    /// What may go wrong, and what to do.
    pub message: String,
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.key,
            self.message
        )
    }
}

/// Why a file could not be read, in the words an admin needs (the OS error once).
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// Nothing at that path; `in` names the working directory for a relative path.
    #[error("no such file{}", match dir { Some(d) => format!(" in {}", d.display()), None => String::new() })]
    NotFound {
        /// The directory a relative path was looked up in.
        dir: Option<PathBuf>,
    },
    /// A directory where a file was expected.
    #[error("is a directory, not a file")]
    Directory,
    /// More bytes than such a file may hold (`/dev/zero`, a log file named by mistake).
    #[error("larger than {}", bytes(*limit))]
    TooLarge {
        /// The most that is read.
        limit: u64,
    },
    /// Any other I/O error, as the OS words it.
    #[error("{0}")]
    Io(std::io::Error),
}

/// `limit` in KiB or MiB, for messages.
fn bytes(limit: u64) -> String {
    if limit >= 1024 * 1024 {
        format!("{} MiB", limit / (1024 * 1024))
    } else {
        format!("{} KiB", limit / 1024)
    }
}

/// Reads at most `limit` bytes of the file at `path`; more is an error, never an allocation
/// without end.
pub fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, FileError> {
    use std::io::Read;
    let classify = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::NotFound => FileError::NotFound {
            dir: path
                .is_relative()
                .then(|| std::env::current_dir().ok())
                .flatten(),
        },
        std::io::ErrorKind::IsADirectory => FileError::Directory,
        _ => FileError::Io(e),
    };
    let file = std::fs::File::open(path).map_err(classify)?;
    if file.metadata().is_ok_and(|m| m.is_dir()) {
        return Err(FileError::Directory);
    }
    let mut data = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut data)
        .map_err(classify)?;
    if data.len() as u64 > limit {
        return Err(FileError::TooLarge { limit });
    }
    Ok(data)
}

/// The text of a config file (`what`: "config", "web config"): at most `limit` bytes of UTF-8,
/// every failure naming the file (and for bad UTF-8, the line and column).
pub fn read_config_text(
    path: &Path,
    what: &'static str,
    limit: u64,
) -> Result<String, ConfigError> {
    let data = read_bounded(path, limit).map_err(|reason| ConfigError::Read {
        path: path.to_path_buf(),
        what,
        reason,
    })?;
    match String::from_utf8(data) {
        Ok(text) => Ok(text),
        Err(e) => {
            let good = e.utf8_error().valid_up_to();
            let bytes = e.as_bytes();
            let prefix = std::str::from_utf8(&bytes[..good]).unwrap_or_default();
            let (line, column) = line_col(prefix, good);
            Err(ConfigError::Invalid {
                file: path.to_path_buf(),
                line,
                column,
                key: String::new(),
                message: format!(
                    "not UTF-8 (byte 0x{:02X}): the file must be UTF-8 text",
                    bytes[good]
                ),
            })
        }
    }
}

/// Longest quoted value shown whole in an error; longer ones show their start and length.
const SHOWN_VALUE_CHARS: usize = 64;
const CUT_VALUE_CHARS: usize = 40;

/// `message` with every quoted (`"..."`) or backquoted value longer than 64 characters cut to
/// its first 40, followed by its length: a 5 MB value must not come back whole in an error.
fn cut_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len().min(1024));
    let mut rest = message;
    while let Some(open) = rest.find(['"', '`']) {
        let quote = rest.as_bytes()[open] as char;
        out.push_str(&rest[..=open]);
        let body = &rest[open + 1..];
        // The closing quote; `"` strings are Debug-escaped, so skip `\x` pairs.
        let mut end = None;
        let mut escaped = false;
        for (i, c) in body.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' if quote == '"' => escaped = true,
                c if c == quote => {
                    end = Some(i);
                    break;
                }
                _ => {}
            }
        }
        let Some(end) = end else {
            rest = body;
            break;
        };
        let value = &body[..end];
        if value.chars().count() > SHOWN_VALUE_CHARS {
            out.extend(value.chars().take(CUT_VALUE_CHARS));
            out.push('…');
            out.push(quote);
            out.push_str(&format!(" ({} bytes)", value.len()));
        } else {
            out.push_str(value);
            out.push(quote);
        }
        rest = &body[end + 1..];
    }
    out.push_str(rest);
    out
}

/// A key path with every segment longer than 64 characters cut to its first 40; a target's
/// name in it (a valid label: at most 128 characters, no quotes) is shown whole.
fn cut_key(key: &str) -> String {
    // `target[N] "name"` as `key_text` writes it, and nothing else.
    let named = key.find(" \"").filter(|open| {
        key[..*open]
            .strip_prefix("target[")
            .and_then(|n| n.strip_suffix(']'))
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
    });
    let end = named.and_then(|open| Some(open + 2 + key[open + 2..].find('"')? + 1));
    let (name, key) = key.split_at(end.unwrap_or(0));
    let cut = key
        .split('.')
        .map(|seg| {
            if seg.chars().count() > SHOWN_VALUE_CHARS {
                seg.chars().take(CUT_VALUE_CHARS).chain(['…']).collect()
            } else {
                seg.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(".");
    format!("{name}{cut}")
}

/// How the daemon writes its log lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (journald adds its own timestamps).
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// How TLS is used on a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// TLS from the first byte (IMAPS 993, SMTPS 465, HTTPS).
    Implicit,
    /// Plaintext greeting, then STARTTLS.
    Starttls,
    /// No TLS at all; only with `allow_plaintext = true`.
    None,
}

impl TlsMode {
    /// The config spelling, for summaries.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsMode::Implicit => "implicit",
            TlsMode::Starttls => "starttls",
            TlsMode::None => "none",
        }
    }
}

/// How a probe authenticates (`auth_mechanism`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMechanism {
    /// IMAP: the `LOGIN` command; SMTP: SASL `AUTH LOGIN`.
    #[default]
    Login,
    /// SASL PLAIN: IMAP `AUTHENTICATE PLAIN`, SMTP `AUTH PLAIN`.
    Plain,
    /// SASL XOAUTH2 with an OAuth2 token.
    Xoauth2,
    /// SASL OAUTHBEARER (RFC 7628) with an OAuth2 token.
    Oauthbearer,
}

impl AuthMechanism {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMechanism::Login => "login",
            AuthMechanism::Plain => "plain",
            AuthMechanism::Xoauth2 => "xoauth2",
            AuthMechanism::Oauthbearer => "oauthbearer",
        }
    }

    /// Whether it sends an OAuth2 token (rather than a password).
    pub fn is_oauth2(self) -> bool {
        matches!(self, AuthMechanism::Xoauth2 | AuthMechanism::Oauthbearer)
    }
}

/// Where an OAuth2 preset takes its endpoint and scopes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OAuth2Provider {
    /// Microsoft identity platform (Exchange Online).
    Microsoft,
    /// Google (Gmail).
    Google,
}

/// An OAuth2 grant, as written in the config.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantKind {
    /// Client credentials.
    ClientCredentials,
    /// A refresh token.
    RefreshToken,
}

/// Daemon-wide settings from `[global]`.
#[derive(Clone, Debug)]
pub struct Global {
    /// Address of the HTTP server (`/metrics`, health, reload).
    pub listen: SocketAddr,
    /// Default time between two probes of a target.
    pub interval: Duration,
    /// Default deadline of one probe.
    pub timeout: Duration,
    /// Default duration above which a successful probe counts as slow (degraded).
    pub slow_threshold: Duration,
    /// Most probes in flight at once, across all targets.
    pub concurrency: usize,
    /// Log line format.
    pub log_format: LogFormat,
    /// Default log filter (`RUST_LOG` wins when set).
    pub log_level: String,
    /// TLS and basic auth for the HTTP endpoints (exporter-toolkit web config), if configured.
    pub web: Option<Arc<crate::webconfig::WebConfig>>,
    /// The part of the targets this instance probes, when several split a large fleet.
    pub shard: Option<Shard>,
    /// Targets' default address families and name servers (`ip_protocol`, `dns_servers`).
    pub net: crate::probe::net::NetSettings,
}

/// Shard `index` of `count`: the targets whose name hashes to `index` modulo `count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// Which part, from 0.
    pub index: u32,
    /// How many parts.
    pub count: u32,
}

impl Shard {
    /// Whether the target named `name` belongs to this shard (stable across restarts, hosts
    /// and versions: FNV-1a of the name).
    pub fn owns(&self, name: &str) -> bool {
        stable_hash(name) % u64::from(self.count) == u64::from(self.index)
    }
}

impl std::str::FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> Result<Shard, String> {
        let bad = || format!("{s:?} is not a shard like \"0/4\" (index/count, index from 0)");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count): (u32, u32) = (
            i.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        if count == 0 || index >= count {
            return Err(format!(
                "shard {s:?}: the index must be below the count (0/{count} to {}/{count})",
                count.saturating_sub(1)
            ));
        }
        Ok(Shard { index, count })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// What proves who the probe is.
#[derive(Clone)]
pub enum Secret {
    /// A password read from a file or the environment; its `Debug` prints `[REDACTED]`.
    Password(SecretString),
    /// An OAuth2 bearer token from this credential set.
    OAuth2(Arc<crate::oauth2::OAuth2Spec>),
}

impl Secret {
    /// The static secrets in it, to be redacted from any detail.
    pub fn static_secrets(&self) -> Vec<&SecretString> {
        match self {
            Secret::Password(p) => vec![p],
            Secret::OAuth2(o) => o.secrets(),
        }
    }
}

/// A username and its secret.
#[derive(Clone)]
pub struct Credentials {
    /// Login name; never used as a metric label or logged.
    pub username: String,
    /// The password or token source.
    pub secret: Secret,
}

impl Credentials {
    /// The password, when this is password authentication.
    pub fn password(&self) -> Option<&SecretString> {
        match &self.secret {
            Secret::Password(p) => Some(p),
            Secret::OAuth2(_) => None,
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &"[REDACTED]")
            .field("password", &"[REDACTED]")
            .finish()
    }
}

/// Where and how to connect: shared by every protocol that speaks over TCP.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// DNS name or IP literal.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// TLS mode.
    pub tls: TlsMode,
    /// With `tls = "starttls"`: carry on in plaintext when STARTTLS is not offered.
    pub allow_plaintext: bool,
    /// The TLS client (roots, verification name); `None` when `tls = "none"`.
    pub tls_client: Option<Arc<TlsClient>>,
    /// The address families and name servers for `host`.
    pub net: crate::probe::net::NetSettings,
}

/// What an IMAP probe does.
#[derive(Clone, Debug)]
pub struct ImapSpec {
    /// Where the server is.
    pub endpoint: Endpoint,
    /// Who logs in.
    pub credentials: Credentials,
    /// How to log in; `None`: LOGIN with a password, or the bearer mechanism the server
    /// offers with OAuth2.
    pub auth: Option<AuthMechanism>,
    /// The mailbox to SELECT.
    pub mailbox: String,
}

/// A test message an SMTP probe submits after authenticating.
#[derive(Clone, Debug)]
pub struct SendSpec {
    /// Envelope sender and `From:`.
    pub from: lettre::Address,
    /// Envelope recipient and `To:`.
    pub to: lettre::Address,
}

/// What an SMTP probe does.
#[derive(Clone, Debug)]
pub struct SmtpSpec {
    /// Where the server is.
    pub endpoint: Endpoint,
    /// Who authenticates; `None` probes without AUTH (an MX on port 25).
    pub credentials: Option<Credentials>,
    /// SASL mechanism; `None` picks PLAIN when advertised, else LOGIN.
    pub auth: Option<AuthMechanism>,
    /// The name sent in EHLO.
    pub ehlo_name: String,
    /// The test message to submit, if any.
    pub send: Option<SendSpec>,
}

/// The request method of an HTTPS probe.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    /// GET (the default).
    #[default]
    Get,
    /// HEAD.
    Head,
    /// POST, with `body` or `body_file` (Autodiscover, EWS).
    Post,
}

impl HttpMethod {
    /// The method as sent.
    pub fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Head => "HEAD",
            HttpMethod::Post => "POST",
        }
    }
}

/// What an HTTPS probe checks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HttpCheck {
    /// One request (following redirects): status, optionally body.
    #[default]
    Page,
    /// A JMAP server: the session resource names the mail capability, and `Mailbox/get` on the
    /// API URL returns an Inbox.
    Jmap,
}

/// How an HTTPS probe authenticates.
#[derive(Clone, Debug)]
pub enum HttpAuth {
    /// `Authorization: Basic` with username and password.
    Basic(Credentials),
    /// `Authorization: Bearer` with a token read like a password.
    Bearer(SecretString),
    /// `Authorization: Bearer` with a token from an OAuth2 credential set.
    OAuth2(Arc<crate::oauth2::OAuth2Spec>),
}

/// What must be in the response body.
#[derive(Clone, Debug)]
pub enum BodyMatch {
    /// This text, anywhere in the (bounded) body.
    Contains(String),
    /// A match of this regular expression.
    Regex(regex::Regex),
}

/// What an HTTPS probe does.
#[derive(Clone, Debug)]
pub struct HttpsSpec {
    /// The URL requested first.
    pub url: url::Url,
    /// Host, port and TLS derived from the URL (TLS unless `http://` with `allow_plaintext`).
    pub endpoint: Endpoint,
    /// Request method.
    pub method: HttpMethod,
    /// Request body (POST).
    pub body: Option<bytes::Bytes>,
    /// Extra request headers.
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// Accepted final status codes; empty means any 2xx.
    pub expect_status: Vec<u16>,
    /// What the body must contain.
    pub body_match: Option<BodyMatch>,
    /// The most body bytes read; more is a protocol error.
    pub max_body: usize,
    /// Redirects followed before giving up; 0 means none.
    pub max_redirects: u32,
    /// Authentication, if any.
    pub auth: Option<HttpAuth>,
    /// Page or JMAP.
    pub check: HttpCheck,
}

/// What a round-trip probe does: send through one SMTP target, wait in one IMAP mailbox.
#[derive(Clone, Debug)]
pub struct RoundtripSpec {
    /// Name of the SMTP target whose server and credentials send the message.
    pub smtp_target: String,
    /// That target's settings.
    pub smtp: SmtpSpec,
    /// Deadline of the send leg (the SMTP target's timeout).
    pub smtp_timeout: Duration,
    /// Name of the IMAP target whose mailbox receives it.
    pub imap_target: String,
    /// That target's settings.
    pub imap: ImapSpec,
    /// Deadline of each IMAP step: opening the mailbox, and cleaning up (the IMAP target's timeout).
    pub imap_timeout: Duration,
    /// Sender and recipient of the probe message.
    pub message: SendSpec,
    /// How long after acceptance the message must be seen.
    pub delivery_timeout: Duration,
    /// How often to look without a notification (in IDLE too: some servers never send one).
    pub poll_interval: Duration,
    /// Probe messages older than this are removed by the sweep.
    pub cleanup_age: Duration,
}

impl RoundtripSpec {
    /// The longest one run can take: open the mailbox, send, wait, clean up.
    pub fn deadline(&self) -> Duration {
        self.imap_timeout + self.smtp_timeout + self.delivery_timeout + self.imap_timeout
    }
}

/// The protocol-specific part of a target; a closed set matched exhaustively.
#[derive(Clone, Debug)]
pub enum ProbeSpec {
    /// `protocol = "imap"`.
    Imap(ImapSpec),
    /// `protocol = "smtp"`.
    Smtp(SmtpSpec),
    /// `protocol = "roundtrip"`.
    Roundtrip(Box<RoundtripSpec>),
    /// `protocol = "https"`.
    Https(Box<HttpsSpec>),
}

impl ProbeSpec {
    /// The protocol label of this spec.
    pub fn protocol(&self) -> Protocol {
        match self {
            ProbeSpec::Imap(_) => Protocol::Imap,
            ProbeSpec::Smtp(_) => Protocol::Smtp,
            ProbeSpec::Roundtrip(_) => Protocol::Roundtrip,
            ProbeSpec::Https(_) => Protocol::Https,
        }
    }

    /// The endpoint this spec connects to, for summaries.
    pub fn endpoint(&self) -> Option<&Endpoint> {
        match self {
            ProbeSpec::Imap(s) => Some(&s.endpoint),
            ProbeSpec::Smtp(s) => Some(&s.endpoint),
            ProbeSpec::Roundtrip(_) => None,
            ProbeSpec::Https(s) => Some(&s.endpoint),
        }
    }

    /// Secrets that must never be echoed back in details, however a server words its errors.
    pub fn secrets(&self) -> Vec<&SecretString> {
        match self {
            ProbeSpec::Imap(s) => s.credentials.secret.static_secrets(),
            ProbeSpec::Smtp(s) => s
                .credentials
                .iter()
                .flat_map(|c| c.secret.static_secrets())
                .collect(),
            ProbeSpec::Https(s) => match &s.auth {
                Some(HttpAuth::Basic(c)) => c.secret.static_secrets(),
                Some(HttpAuth::Bearer(t)) => vec![t],
                Some(HttpAuth::OAuth2(o)) => o.secrets(),
                None => vec![],
            },
            ProbeSpec::Roundtrip(r) => {
                let mut v: Vec<_> = r
                    .smtp
                    .credentials
                    .iter()
                    .flat_map(|c| c.secret.static_secrets())
                    .collect();
                v.extend(r.imap.credentials.secret.static_secrets());
                v
            }
        }
    }
}

/// One thing to probe, fully resolved and validated.
#[derive(Clone, Debug)]
pub struct Target {
    /// Unique name; the `target` label.
    pub name: String,
    /// The `region` label (e.g. the datacenter or market the mailbox lives in).
    pub region: String,
    /// Time between two probes.
    pub interval: Duration,
    /// Deadline of one probe.
    pub timeout: Duration,
    /// A success slower than this is degraded.
    pub slow_threshold: Duration,
    /// How many users this target stands for, when known (for incident reports).
    pub users: Option<u64>,
    /// What to do.
    pub spec: ProbeSpec,
    /// Hash of everything that defines this target (secrets hashed, never stored in clear);
    /// equal fingerprints mean a reload left the target unchanged.
    pub fingerprint: u64,
}

impl Target {
    /// The protocol label.
    pub fn protocol(&self) -> Protocol {
        self.spec.protocol()
    }
}

/// Where and how the incident timeline is kept, from `[incidents]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IncidentSettings {
    /// The directory holding the SQLite database.
    pub state_dir: PathBuf,
    /// Hysteresis: results in a row before a target's health changes.
    pub policy: crate::incidents::Policy,
    /// Closed incidents older than this are deleted.
    pub retention: Duration,
}

/// A loaded, validated config.
#[derive(Clone, Debug)]
pub struct Config {
    /// The file it came from (reloads read it again).
    pub path: PathBuf,
    /// `[global]`.
    pub global: Global,
    /// `[incidents]`.
    pub incidents: IncidentSettings,
    /// `[metrics]`: the optional per-target series.
    pub metrics: crate::metrics::Options,
    /// `[[target]]`s in file order.
    pub targets: Vec<Arc<Target>>,
    /// The shard given on the command line (`run --shard`), which outranks `[global] shard`
    /// at start and at every reload.
    pub shard_override: Option<Shard>,
    /// What `check` warns about (valid, but probably not what was meant).
    pub warnings: Vec<ConfigWarning>,
}

/// Reads, parses and validates the config file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = read_config_text(path, "config", MAX_CONFIG_BYTES)?;
    parse(path, &text)
}

/// Only the `[incidents]` settings of the config at `path`, without reading any target's
/// secrets: `mailprobe incidents` runs in an admin's shell, where systemd credentials are absent.
pub fn load_incident_settings(path: &Path) -> Result<IncidentSettings, ConfigError> {
    let text = read_config_text(path, "config", MAX_CONFIG_BYTES)?;
    let doc = DeTable::parse(&text).map_err(|e| Locator::syntax(path, &text, &e))?;
    let loc = Locator {
        file: path,
        text: &text,
        doc: doc.get_ref(),
    };
    let raw: RawConfig = toml::from_str(&text).map_err(|e| loc.serde_error(&e))?;
    Validator::new(&loc).incidents(raw.incidents)
}

/// Parses and validates config `text` as if read from `path` (relative paths resolve against
/// its directory).
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let doc = DeTable::parse(text).map_err(|e| Locator::syntax(path, text, &e))?;
    let loc = Locator {
        file: path,
        text,
        doc: doc.get_ref(),
    };
    // From the document already parsed: cloning it costs less than parsing the text again.
    let raw = RawConfig::deserialize(toml::de::Deserializer::from(doc.clone()))
        .map_err(|e| loc.serde_error(&e))?;
    Validator::new(&loc).config(raw)
}

// ---------------------------------------------------------------------------------------------
// Raw serde model: exactly what may appear in the file.

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    global: RawGlobal,
    #[serde(default)]
    incidents: RawIncidents,
    #[serde(default)]
    metrics: crate::metrics::Options,
    #[serde(default)]
    target: Vec<RawTarget>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawGlobal {
    listen: Option<String>,
    #[serde(default, with = "humantime_serde")]
    interval: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    slow_threshold: Option<Duration>,
    concurrency: Option<usize>,
    log_format: Option<LogFormat>,
    log_level: Option<String>,
    web_config_file: Option<String>,
    shard: Option<String>,
    dns_servers: Option<Vec<String>>,
    ip_protocol: Option<crate::probe::net::IpProtocol>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawIncidents {
    state_dir: Option<String>,
    down_after: Option<u32>,
    up_after: Option<u32>,
    #[serde(default, with = "humantime_serde")]
    retention: Option<Duration>,
}

#[derive(Clone, Deserialize, Hash)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    name: String,
    region: Option<String>,
    protocol: Protocol,
    host: Option<String>,
    port: Option<u16>,
    tls: Option<TlsMode>,
    allow_plaintext: Option<bool>,
    username: Option<String>,
    password_file: Option<String>,
    password_env: Option<String>,
    /// Accepted by the parser only to refuse it with a helpful message.
    #[serde(default, deserialize_with = "ignore_value")]
    password: Option<()>,
    ca_file: Option<String>,
    server_name: Option<String>,
    #[serde(default, with = "humantime_serde")]
    interval: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    slow_threshold: Option<Duration>,
    users: Option<u64>,
    mailbox: Option<String>,
    auth_mechanism: Option<AuthMechanism>,
    ehlo_name: Option<String>,
    mail_from: Option<String>,
    send_to: Option<String>,
    smtp_target: Option<String>,
    imap_target: Option<String>,
    #[serde(default, with = "humantime_serde")]
    delivery_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    poll_interval: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    cleanup_age: Option<Duration>,
    url: Option<String>,
    method: Option<HttpMethod>,
    body: Option<String>,
    body_file: Option<String>,
    headers: Option<std::collections::BTreeMap<String, String>>,
    expect_status: Option<Vec<u16>>,
    body_contains: Option<String>,
    body_regex: Option<String>,
    max_body: Option<u64>,
    max_redirects: Option<u32>,
    auth: Option<String>,
    check: Option<HttpCheck>,
    oauth2: Option<RawOAuth2>,
    dns_servers: Option<Vec<String>>,
    ip_protocol: Option<crate::probe::net::IpProtocol>,
}

#[derive(Clone, Deserialize, Hash)]
#[serde(deny_unknown_fields)]
struct RawOAuth2 {
    provider: Option<OAuth2Provider>,
    tenant: Option<String>,
    token_url: Option<String>,
    client_id: Option<String>,
    client_secret_file: Option<String>,
    client_secret_env: Option<String>,
    client_assertion_key_file: Option<String>,
    client_assertion_cert_file: Option<String>,
    grant: Option<GrantKind>,
    refresh_token_file: Option<String>,
    refresh_token_env: Option<String>,
    scopes: Option<Vec<String>>,
    ca_file: Option<String>,
    allow_plaintext: Option<bool>,
}

fn ignore_value<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<()>, D::Error> {
    serde::de::IgnoredAny::deserialize(d).map(|_| Some(()))
}

/// Keys every target may carry, whatever its protocol.
const COMMON_KEYS: &[&str] = &[
    "name",
    "region",
    "protocol",
    "interval",
    "timeout",
    "slow_threshold",
    "users",
];

/// Keys a protocol accepts besides [`COMMON_KEYS`].
fn protocol_keys(p: Protocol) -> &'static [&'static str] {
    match p {
        Protocol::Imap => &[
            "host",
            "port",
            "tls",
            "allow_plaintext",
            "username",
            "password_file",
            "password_env",
            "password",
            "ca_file",
            "server_name",
            "mailbox",
            "auth_mechanism",
            "auth",
            "oauth2",
            "dns_servers",
            "ip_protocol",
        ],
        Protocol::Smtp => &[
            "host",
            "port",
            "tls",
            "allow_plaintext",
            "username",
            "password_file",
            "password_env",
            "password",
            "ca_file",
            "server_name",
            "auth_mechanism",
            "ehlo_name",
            "mail_from",
            "send_to",
            "auth",
            "oauth2",
            "dns_servers",
            "ip_protocol",
        ],
        Protocol::Https => &[
            "url",
            "method",
            "body",
            "body_file",
            "headers",
            "expect_status",
            "body_contains",
            "body_regex",
            "max_body",
            "max_redirects",
            "auth",
            "username",
            "password_file",
            "password_env",
            "password",
            "allow_plaintext",
            "ca_file",
            "server_name",
            "check",
            "oauth2",
            "dns_servers",
            "ip_protocol",
        ],
        Protocol::Roundtrip => &[
            "smtp_target",
            "imap_target",
            "send_to",
            "mail_from",
            "delivery_timeout",
            "poll_interval",
            "cleanup_age",
        ],
    }
}

// ---------------------------------------------------------------------------------------------
// Locating errors.

/// One step of a key path.
#[derive(Clone, Debug)]
enum Seg {
    Key(String),
    /// 0-based array index, shown 1-based.
    Index(usize),
}

#[derive(Clone, Debug, Default)]
struct KeyPath(Vec<Seg>);

impl KeyPath {
    fn target(i: usize) -> Self {
        KeyPath(vec![Seg::Key("target".into()), Seg::Index(i)])
    }
    fn global() -> Self {
        KeyPath(vec![Seg::Key("global".into())])
    }
    fn key(&self, k: &str) -> Self {
        let mut p = self.clone();
        p.0.push(Seg::Key(k.to_string()));
        p
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if i == 0 => write!(f, "{k}")?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{}]", n + 1)?,
            }
        }
        Ok(())
    }
}

/// Maps key paths and byte spans of one file back to lines and columns.
struct Locator<'a> {
    file: &'a Path,
    text: &'a str,
    doc: &'a DeTable<'a>,
}

impl Locator<'_> {
    fn syntax(file: &Path, text: &str, e: &toml::de::Error) -> ConfigError {
        let (line, column) = line_col(text, e.span().map(|s| s.start).unwrap_or(0));
        ConfigError::Invalid {
            file: file.to_path_buf(),
            line,
            column,
            key: String::new(),
            message: e.message().trim().to_string(),
        }
    }

    fn at_offset(&self, offset: usize, key: String, message: String) -> ConfigError {
        let (line, column) = line_col(self.text, offset);
        ConfigError::Invalid {
            file: self.file.to_path_buf(),
            line,
            column,
            key,
            message,
        }
    }

    /// An error about the key at `path`, located at that key (or its nearest existing parent).
    fn error(&self, path: &KeyPath, message: impl Into<String>) -> ConfigError {
        let offset = self.find(path).map(|s| s.start).unwrap_or(0);
        self.at_offset(offset, self.key_text(path), message.into())
    }

    /// `path` as errors and warnings show it: a target by its index and, when it has a valid
    /// one, its name (`target[3] "imap-eu".tls`), so it is found by either.
    fn key_text(&self, path: &KeyPath) -> String {
        let text = path.to_string();
        if let [Seg::Key(k), Seg::Index(i), ..] = path.0.as_slice()
            && k == "target"
            && let Some(name) = self.target_name(*i)
        {
            let head = format!("target[{}]", i + 1);
            return format!("{head} \"{name}\"{}", &text[head.len()..]);
        }
        text
    }

    /// The name of the `i`-th `[[target]]` (0-based), if it is a valid one.
    fn target_name(&self, i: usize) -> Option<&str> {
        let (_, targets) = self.doc.iter().find(|(k, _)| k.get_ref() == "target")?;
        let DeValue::Array(targets) = targets.get_ref() else {
            return None;
        };
        let DeValue::Table(target) = targets.get(i)?.get_ref() else {
            return None;
        };
        let (_, name) = target.iter().find(|(k, _)| k.get_ref() == "name")?;
        match name.get_ref() {
            DeValue::String(name) if check_label(name).is_ok() => Some(name),
            _ => None,
        }
    }

    /// Line and column of the key at `path` (or of its nearest existing parent).
    fn position(&self, path: &KeyPath) -> (usize, usize) {
        line_col(self.text, self.find(path).map(|s| s.start).unwrap_or(0))
    }

    /// The span of the last segment of `path` that exists in the document.
    fn find(&self, path: &KeyPath) -> Option<Range<usize>> {
        let mut table = self.doc;
        let mut value: Option<&DeValue<'_>> = None;
        let mut best = None;
        for seg in &path.0 {
            match (seg, value) {
                (Seg::Key(k), None) | (Seg::Key(k), Some(DeValue::Table(_))) => {
                    if let Some(DeValue::Table(t)) = value {
                        table = t;
                    }
                    // A missing key (say, a required one) is located at its table.
                    let Some((key, v)) = table.iter().find(|(key, _)| key.get_ref() == k) else {
                        return best;
                    };
                    best = Some(key.span());
                    value = Some(v.get_ref());
                }
                (Seg::Index(i), Some(DeValue::Array(a))) => {
                    let Some(item) = a.get(*i) else {
                        return best;
                    };
                    best = Some(item.span());
                    value = Some(item.get_ref());
                }
                _ => return best,
            }
        }
        best
    }

    /// The key path whose key or value contains byte `offset`, deepest first.
    fn path_at(&self, offset: usize) -> KeyPath {
        fn walk(table: &DeTable<'_>, offset: usize, path: &mut Vec<Seg>) -> bool {
            for (k, v) in table.iter() {
                path.push(Seg::Key(k.get_ref().to_string()));
                // Deepest match first: an array's span is also its first item's header.
                if walk_value(v.get_ref(), offset, path)
                    || k.span().contains(&offset)
                    || v.span().contains(&offset)
                {
                    return true;
                }
                path.pop();
            }
            false
        }
        fn walk_value(v: &DeValue<'_>, offset: usize, path: &mut Vec<Seg>) -> bool {
            match v {
                DeValue::Table(t) => walk(t, offset, path),
                DeValue::Array(a) => {
                    for (i, item) in a.iter().enumerate() {
                        path.push(Seg::Index(i));
                        if walk_value(item.get_ref(), offset, path) || item.span().contains(&offset)
                        {
                            return true;
                        }
                        path.pop();
                    }
                    false
                }
                _ => false,
            }
        }
        let mut path = Vec::new();
        walk(self.doc, offset, &mut path);
        KeyPath(path)
    }

    fn serde_error(&self, e: &toml::de::Error) -> ConfigError {
        let offset = e.span().map(|s| s.start).unwrap_or(0);
        let mut path = self.path_at(offset);
        let message = unknown_key_message(e.message().trim());
        // serde names the offending key only in the message for these two.
        for prefix in ["missing field `", "unknown field `"] {
            if let Some(rest) = e.message().trim().strip_prefix(prefix)
                && let Some(name) = rest.split('`').next()
                && !matches!(path.0.last(), Some(Seg::Key(k)) if k == name)
            {
                path.0.push(Seg::Key(name.to_string()));
            }
        }
        self.at_offset(offset, self.key_text(&path), message)
    }

    /// Keys present in the table at `path`, with their spans.
    fn keys_of(&self, path: &KeyPath) -> Vec<(String, Range<usize>)> {
        let mut value: Option<&DeValue<'_>> = None;
        let mut table = self.doc;
        for seg in &path.0 {
            match (seg, value) {
                (Seg::Key(k), None) | (Seg::Key(k), Some(DeValue::Table(_))) => {
                    if let Some(DeValue::Table(t)) = value {
                        table = t;
                    }
                    match table.iter().find(|(key, _)| key.get_ref() == k) {
                        Some((_, v)) => value = Some(v.get_ref()),
                        None => return Vec::new(),
                    }
                }
                (Seg::Index(i), Some(DeValue::Array(a))) => match a.get(*i) {
                    Some(item) => value = Some(item.get_ref()),
                    None => return Vec::new(),
                },
                _ => return Vec::new(),
            }
        }
        match value {
            Some(DeValue::Table(t)) => {
                let mut keys: Vec<_> = t
                    .iter()
                    .map(|(k, _)| (k.get_ref().to_string(), k.span()))
                    .collect();
                keys.sort_by_key(|(_, span)| span.start);
                keys
            }
            _ => Vec::new(),
        }
    }
}

/// serde's "unknown field `x`, expected one of ..." (every field of the table, some 40 for a
/// target) as "unknown key; did you mean `y`?" when a known key is close, else a short list or
/// a pointer to the README. Other messages pass unchanged.
fn unknown_key_message(message: &str) -> String {
    let Some(rest) = message.strip_prefix("unknown field `") else {
        return message.to_string();
    };
    let Some((name, expected)) = rest.split_once('`') else {
        return message.to_string();
    };
    // The expected names are the backquoted words after "expected".
    let known: Vec<&str> = expected
        .split_once("expected")
        .map(|(_, list)| list.split('`').skip(1).step_by(2).collect())
        .unwrap_or_default();
    let name = name.to_lowercase();
    let len = name.chars().count();
    let closest = known
        .iter()
        .filter_map(|k| {
            let allowed = (k.chars().count() / 3).max(1);
            // Lengths further apart than that cannot be close (and a 5 MB key costs nothing).
            if len.abs_diff(k.chars().count()) > allowed {
                return None;
            }
            let d = edit_distance(&name, k);
            (d <= allowed).then_some((d, *k))
        })
        .min_by_key(|(d, _)| *d);
    match closest {
        Some((_, k)) => format!("unknown key; did you mean `{k}`?"),
        None if known.is_empty() => "unknown key; this table takes none".to_string(),
        None if known.len() <= 12 => {
            let list: Vec<String> = known.iter().map(|k| format!("`{k}`")).collect();
            format!("unknown key; expected one of {}", list.join(", "))
        }
        None => "unknown key; no key of this table is close to it (see the configuration \
                 reference in the README)"
            .to_string(),
    }
}

/// Optimal string alignment distance: edits (insert, delete, substitute, swap two neighbours)
/// from `a` to `b`.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map_or(offset, |nl| offset - nl - 1) + 1;
    (line, column)
}

// ---------------------------------------------------------------------------------------------
// Validation.

struct Validator<'a> {
    loc: &'a Locator<'a>,
    base_dir: PathBuf,
    roots: RootsCache,
    /// Password and CA files read so far in this load: a fleet often shares one of each, and
    /// reading it once per target was a fifth of the load time at 10,000 targets.
    files: FilesRead,
    /// `[global]`'s network settings, the default of every target.
    net: crate::probe::net::NetSettings,
}

/// Files read during one config load, by path.
#[derive(Default)]
struct FilesRead {
    secrets: std::cell::RefCell<HashMap<PathBuf, SecretString>>,
    certificates: HashMap<PathBuf, CaFile>,
}

/// A CA file's contents and their hash (what target fingerprints take in).
struct CaFile {
    pem: Vec<u8>,
    hash: u64,
}

impl<'a> Validator<'a> {
    fn new(loc: &'a Locator<'a>) -> Self {
        let base_dir = loc
            .file
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Validator {
            loc,
            base_dir,
            roots: RootsCache::default(),
            files: FilesRead::default(),
            net: Default::default(),
        }
    }

    fn config(mut self, raw: RawConfig) -> Result<Config, ConfigError> {
        let global = self.global(raw.global)?;
        self.net = global.net.clone();
        let incidents = self.incidents(raw.incidents)?;
        let mut names: HashMap<String, usize> = HashMap::new();
        for (i, t) in raw.target.iter().enumerate() {
            if let Some(first) = names.get(&t.name) {
                return Err(self.loc.error(
                    &KeyPath::target(i).key("name"),
                    format!(
                        "duplicate target name {:?} (first used by target[{}])",
                        t.name,
                        first + 1
                    ),
                ));
            }
            names.insert(t.name.clone(), i);
        }
        // Round trips refer to other targets by name, wherever they stand in the file: validate
        // the others first, then the round trips, and keep file order.
        // Where each target's timeout came from, for the warnings.
        let timeouts: HashMap<String, (usize, TimeoutFrom)> = raw
            .target
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let from = match (t.timeout, t.interval) {
                    (Some(_), _) => TimeoutFrom::Target,
                    (None, Some(iv)) if iv < global.timeout => TimeoutFrom::Interval,
                    (None, _) => TimeoutFrom::Global,
                };
                (t.name.clone(), (i, from))
            })
            .collect();
        let mut slots: Vec<Option<Arc<Target>>> = vec![None; raw.target.len()];
        let mut by_name: HashMap<String, Arc<Target>> = HashMap::new();
        let mut roundtrips = Vec::new();
        for (i, t) in raw.target.into_iter().enumerate() {
            if t.protocol == Protocol::Roundtrip {
                roundtrips.push((i, t));
                continue;
            }
            let target = Arc::new(self.target(&global, &KeyPath::target(i), t, &by_name)?);
            by_name.insert(target.name.clone(), target.clone());
            slots[i] = Some(target);
        }
        for (i, t) in roundtrips {
            slots[i] = Some(Arc::new(self.target(
                &global,
                &KeyPath::target(i),
                t,
                &by_name,
            )?));
        }
        let config = Config {
            path: self.loc.file.to_path_buf(),
            global,
            incidents,
            metrics: raw.metrics,
            targets: slots.into_iter().flatten().collect(),
            shard_override: None,
            warnings: Vec::new(),
        };
        // An empty file (or one of comments) would silently turn monitoring off, and on
        // reload remove every target as if it had recovered.
        if config.targets.is_empty() {
            return Err(ConfigError::NothingToProbe {
                file: config.path.clone(),
                message: "no targets: a config without [[target]] tables would probe nothing"
                    .into(),
            });
        }
        if let Some(m) = config.unowned_shard() {
            return Err(self.loc.error(&KeyPath::global().key("shard"), m));
        }
        let mut config = config;
        config.warnings = self.login_time_warnings(&config.targets, &timeouts);
        Ok(config)
    }

    /// A warning for each target whose timeout, minus what the phases before login take on a
    /// slow path, leaves under [`LOGIN_TIME`] for the login: servers that delay rejecting a
    /// wrong password (Cyrus about 3 s, Courier about 5 s; Dovecot's `auth_failure_delay` is
    /// 2 s) would then make a rejected password read as a timeout. Round trips log in with
    /// their legs' timeouts, so a leg's warning names them.
    fn login_time_warnings(
        &self,
        targets: &[Arc<Target>],
        timeouts: &HashMap<String, (usize, TimeoutFrom)>,
    ) -> Vec<ConfigWarning> {
        let mut warnings = Vec::new();
        // Round trips by the legs they log in through.
        let mut rounds_of: HashMap<&str, Vec<String>> = HashMap::new();
        for r in targets {
            match &r.spec {
                ProbeSpec::Roundtrip(rt) => {
                    for leg in [&rt.smtp_target, &rt.imap_target] {
                        rounds_of
                            .entry(leg.as_str())
                            .or_default()
                            .push(format!("{:?}", r.name));
                    }
                }
                ProbeSpec::Imap(_) | ProbeSpec::Smtp(_) | ProbeSpec::Https(_) => {}
            }
        }
        for t in targets {
            let Some(before) = phases_before_login(&t.spec) else {
                continue;
            };
            let trips: u32 = before.iter().map(|(_, n)| n).sum();
            let spent = ROUND_TRIP * trips;
            let left = t.timeout.saturating_sub(spent);
            if left >= LOGIN_TIME {
                continue;
            }
            let Some(&(i, from)) = timeouts.get(&t.name) else {
                continue;
            };
            let names: Vec<&str> = before.iter().map(|(p, _)| p.as_str()).collect();
            let names = match names.split_last() {
                Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
                _ => names.join(""),
            };
            let login = match t.protocol() {
                Protocol::Smtp => "auth",
                Protocol::Imap | Protocol::Roundtrip | Protocol::Https => "login",
            };
            let from = match from {
                TimeoutFrom::Target => "",
                TimeoutFrom::Global => " (from [global])",
                TimeoutFrom::Interval => " (from its interval)",
            };
            let rounds = match rounds_of.get(t.name.as_str()).map(Vec::as_slice) {
                None | Some([]) => String::new(),
                Some([one]) => format!(" (round trip {one} logs in with it too)"),
                Some(many) => format!(" (round trips {} log in with it too)", many.join(", ")),
            };
            let path = KeyPath::target(i).key("timeout");
            let (line, column) = self.loc.position(&path);
            warnings.push(ConfigWarning {
                file: self.loc.file.to_path_buf(),
                line,
                column,
                key: self.loc.key_text(&path),
                message: format!(
                    "{}{from} leaves about {} for {login} after {names} ({trips} round trips, \
                     {} each): Cyrus waits about 3s and Courier about 5s before rejecting a \
                     wrong password, so a rejection would read as a timeout, not \
                     auth_rejected; give it at least {}{rounds}",
                    humantime::format_duration(t.timeout),
                    humantime::format_duration(left),
                    humantime::format_duration(ROUND_TRIP),
                    humantime::format_duration(spent + LOGIN_TIME),
                ),
            });
        }
        warnings
    }

    fn incidents(&self, raw: RawIncidents) -> Result<IncidentSettings, ConfigError> {
        let path = KeyPath(vec![Seg::Key("incidents".into())]);
        let state_dir = match &raw.state_dir {
            Some(d) => self.resolve_path(d),
            None => std::env::var_os("STATE_DIRECTORY")
                .map(|d| {
                    // systemd may pass several, colon-separated; the first is ours.
                    let d = d.to_string_lossy().into_owned();
                    PathBuf::from(d.split(':').next().unwrap_or(&d))
                })
                .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR)),
        };
        let defaults = crate::incidents::Policy::default();
        let policy = crate::incidents::Policy {
            down_after: raw.down_after.unwrap_or(defaults.down_after),
            up_after: raw.up_after.unwrap_or(defaults.up_after),
        };
        for (key, v) in [
            ("down_after", policy.down_after),
            ("up_after", policy.up_after),
        ] {
            if !(1..=100).contains(&v) {
                return Err(self.loc.error(&path.key(key), "must be between 1 and 100"));
            }
        }
        let retention = raw.retention.unwrap_or(DEFAULT_RETENTION);
        if retention < Duration::from_secs(3600) {
            return Err(self
                .loc
                .error(&path.key("retention"), "must be at least 1h"));
        }
        if retention > MAX_RETENTION {
            return Err(self
                .loc
                .error(&path.key("retention"), "must be at most 100y"));
        }
        // `run` creates the directory; a path that cannot become one fails here, at `check`.
        if let Some(m) = not_a_directory(&state_dir) {
            let whence = match (&raw.state_dir, std::env::var_os("STATE_DIRECTORY")) {
                (Some(_), _) => "",
                (None, Some(_)) => " (from $STATE_DIRECTORY)",
                (None, None) => " (the default)",
            };
            return Err(self.loc.error(
                &path.key("state_dir"),
                format!("{}{whence}: {m}", state_dir.display()),
            ));
        }
        Ok(IncidentSettings {
            state_dir,
            policy,
            retention,
        })
    }

    fn global(&self, g: RawGlobal) -> Result<Global, ConfigError> {
        let path = KeyPath::global();
        let listen = match g.listen {
            None => DEFAULT_LISTEN
                .parse()
                .expect("default listen address parses"),
            Some(s) => s.parse().map_err(|_| {
                self.loc.error(
                    &path.key("listen"),
                    format!("{s:?} is not an address:port such as \"127.0.0.1:9783\""),
                )
            })?,
        };
        let interval = g.interval.unwrap_or(DEFAULT_INTERVAL);
        let timeout = g.timeout.unwrap_or(DEFAULT_TIMEOUT);
        let slow_threshold = g.slow_threshold.unwrap_or(DEFAULT_SLOW);
        self.check_timing(&path, interval, timeout, slow_threshold)?;
        let concurrency = g.concurrency.unwrap_or(DEFAULT_CONCURRENCY);
        if !(1..=100_000).contains(&concurrency) {
            return Err(self
                .loc
                .error(&path.key("concurrency"), "must be between 1 and 100000"));
        }
        let log_level = g.log_level.unwrap_or_else(|| "info".to_string());
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&log_level) {
            return Err(self
                .loc
                .error(&path.key("log_level"), format!("not a log filter: {e}")));
        }
        let web = match &g.web_config_file {
            None => None,
            Some(f) => {
                let file = self.resolve_path(f);
                if !file.exists() {
                    return Err(self.loc.error(
                        &path.key("web_config_file"),
                        format!("{} does not exist", file.display()),
                    ));
                }
                Some(Arc::new(crate::webconfig::WebConfig::load(&file)?))
            }
        };
        let shard = match &g.shard {
            None => None,
            Some(s) => Some(
                s.parse::<Shard>()
                    .map_err(|m| self.loc.error(&path.key("shard"), m))?,
            ),
        };
        let net = crate::probe::net::NetSettings {
            ip_protocol: g.ip_protocol.unwrap_or_default(),
            dns_servers: match &g.dns_servers {
                Some(list) => Some(self.dns_servers(&path.key("dns_servers"), list)?),
                None => None,
            },
        };
        Ok(Global {
            net,
            listen,
            interval,
            timeout,
            slow_threshold,
            concurrency,
            log_format: g.log_format.unwrap_or_default(),
            log_level,
            web,
            shard,
        })
    }

    fn check_timing(
        &self,
        path: &KeyPath,
        interval: Duration,
        timeout: Duration,
        slow: Duration,
    ) -> Result<(), ConfigError> {
        if interval < MIN_INTERVAL {
            return Err(self.loc.error(&path.key("interval"), "must be at least 1s"));
        }
        if interval > MAX_INTERVAL {
            return Err(self.loc.error(&path.key("interval"), "must be at most 24h"));
        }
        if timeout.is_zero() {
            return Err(self
                .loc
                .error(&path.key("timeout"), "must be greater than zero"));
        }
        if timeout > interval {
            return Err(self.loc.error(
                &path.key("timeout"),
                format!(
                    "timeout ({}) must not exceed the interval ({}): probes of one target never overlap",
                    humantime::format_duration(timeout),
                    humantime::format_duration(interval)
                ),
            ));
        }
        if slow.is_zero() {
            return Err(self
                .loc
                .error(&path.key("slow_threshold"), "must be greater than zero"));
        }
        if slow > MAX_INTERVAL {
            return Err(self
                .loc
                .error(&path.key("slow_threshold"), "must be at most 24h"));
        }
        Ok(())
    }

    fn target(
        &mut self,
        global: &Global,
        path: &KeyPath,
        t: RawTarget,
        others: &HashMap<String, Arc<Target>>,
    ) -> Result<Target, ConfigError> {
        check_label(&t.name).map_err(|m| self.loc.error(&path.key("name"), m))?;
        let region = t.region.clone().unwrap_or_else(|| "default".to_string());
        check_label(&region).map_err(|m| self.loc.error(&path.key("region"), m))?;
        if t.users.is_some_and(|u| u > MAX_USERS) {
            return Err(self
                .loc
                .error(&path.key("users"), format!("must be at most {MAX_USERS}")));
        }

        let protocol = t.protocol;
        let allowed = protocol_keys(protocol);
        for (key, _) in self.loc.keys_of(path) {
            if !COMMON_KEYS.contains(&key.as_str()) && !allowed.contains(&key.as_str()) {
                return Err(self.loc.error(
                    &path.key(&key),
                    format!(
                        "key `{key}` does not apply to protocol \"{}\"",
                        protocol.as_str()
                    ),
                ));
            }
        }
        if t.password.is_some() {
            return Err(self.loc.error(
                &path.key("password"),
                "passwords are never read from probes.toml: use password_file (a file, or a \
                 systemd credential) or password_env",
            ));
        }

        let mut interval = t.interval.unwrap_or(global.interval);
        let mut hasher = Fnv64::default();
        t.hash(&mut hasher);
        let (spec, timeout, slow_threshold) = if protocol == Protocol::Roundtrip {
            let rt = self.roundtrip(path, &t, others, &mut hasher)?;
            let deadline = rt.deadline();
            if t.interval.is_none() && deadline > interval {
                // Without an interval of its own, a round trip runs as often as it can finish:
                // its deadline, rounded up to whole minutes.
                interval = Duration::from_secs(deadline.as_secs().div_ceil(60) * 60);
            }
            let slow = t.slow_threshold.unwrap_or(DEFAULT_DELIVERY_SLOW);
            if deadline > interval {
                return Err(self.loc.error(
                    &path.key("interval"),
                    format!(
                        "the interval ({}) must cover one whole round trip: {} to open the \
                         mailbox + {} to send + {} delivery_timeout + {} to clean up = {}",
                        humantime::format_duration(interval),
                        humantime::format_duration(rt.imap_timeout),
                        humantime::format_duration(rt.smtp_timeout),
                        humantime::format_duration(rt.delivery_timeout),
                        humantime::format_duration(rt.imap_timeout),
                        humantime::format_duration(deadline),
                    ),
                ));
            }
            self.check_timing(path, interval, deadline, slow)?;
            (ProbeSpec::Roundtrip(Box::new(rt)), deadline, slow)
        } else {
            // A target that shortens its interval below the global timeout gets a fitting one.
            let timeout = t.timeout.unwrap_or(global.timeout.min(interval));
            let slow = t.slow_threshold.unwrap_or(global.slow_threshold);
            self.check_timing(path, interval, timeout, slow)?;
            let spec = match protocol {
                Protocol::Imap => ProbeSpec::Imap(self.imap(path, &t, &mut hasher)?),
                Protocol::Smtp => ProbeSpec::Smtp(self.smtp(path, &t, &mut hasher)?),
                Protocol::Https => ProbeSpec::Https(Box::new(self.https(path, &t, &mut hasher)?)),
                Protocol::Roundtrip => unreachable!("handled above"),
            };
            (spec, timeout, slow)
        };
        Ok(Target {
            name: t.name,
            region,
            interval,
            timeout,
            slow_threshold,
            users: t.users,
            spec,
            fingerprint: hasher.finish(),
        })
    }

    fn https(
        &mut self,
        path: &KeyPath,
        t: &RawTarget,
        fp: &mut Fnv64,
    ) -> Result<HttpsSpec, ConfigError> {
        let raw_url = t.url.as_deref().ok_or_else(|| {
            self.loc
                .error(&path.key("url"), "missing: the URL to request")
        })?;
        let url = url::Url::parse(raw_url).map_err(|e| {
            self.loc
                .error(&path.key("url"), format!("{raw_url:?} is not a URL: {e}"))
        })?;
        let allow_plaintext = t.allow_plaintext.unwrap_or(false);
        let tls = match url.scheme() {
            "https" => {
                if allow_plaintext {
                    return Err(self
                        .loc
                        .error(&path.key("allow_plaintext"), "applies only to http:// URLs"));
                }
                TlsMode::Implicit
            }
            "http" if allow_plaintext => TlsMode::None,
            "http" => {
                return Err(self.loc.error(
                    &path.key("url"),
                    "http:// sends credentials and content in clear; use https://, or set \
                     allow_plaintext = true if that is really wanted",
                ));
            }
            other => {
                return Err(self.loc.error(
                    &path.key("url"),
                    format!("scheme {other:?} is not http or https"),
                ));
            }
        };
        let host = match url.host() {
            Some(url::Host::Domain(d)) => d.to_string(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => return Err(self.loc.error(&path.key("url"), "the URL has no host")),
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err(self.loc.error(
                &path.key("url"),
                "credentials are never read from probes.toml: use auth with username and \
                 password_file or password_env",
            ));
        }
        let raw = RawTarget {
            host: Some(host),
            port: url.port_or_known_default(),
            tls: Some(tls),
            allow_plaintext: Some(allow_plaintext),
            ..t.clone()
        };
        let endpoint = self.endpoint(path, &raw, tls, Ports::HTTPS, fp)?;

        let method = t.method.unwrap_or_default();
        let body = match (&t.body, &t.body_file) {
            (Some(_), Some(_)) => {
                return Err(self.loc.error(
                    &path.key("body_file"),
                    "give either body or body_file, not both",
                ));
            }
            (Some(b), None) => Some(bytes::Bytes::from(b.clone())),
            (None, Some(f)) => {
                let file = self.resolve_path(f);
                let data = read_bounded(&file, MAX_BODY_FILE_BYTES).map_err(|e| {
                    self.loc.error(
                        &path.key("body_file"),
                        format!("cannot read {}: {e}", file.display()),
                    )
                })?;
                data.hash(fp);
                Some(bytes::Bytes::from(data))
            }
            (None, None) => None,
        };
        if body.is_some() && method != HttpMethod::Post {
            return Err(self.loc.error(
                &path.key(if t.body.is_some() {
                    "body"
                } else {
                    "body_file"
                }),
                "a request body needs method = \"POST\"",
            ));
        }
        let mut headers = Vec::new();
        for (name, value) in t.headers.iter().flatten() {
            let key = path.key("headers");
            let n = http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                self.loc
                    .error(&key, format!("{name:?} is not a header name"))
            })?;
            if n == http::header::AUTHORIZATION || n == http::header::HOST {
                return Err(self.loc.error(
                    &key,
                    format!(
                        "{name} is set by mailprobe (use auth for credentials, url for the host)"
                    ),
                ));
            }
            let v = http::HeaderValue::from_str(value).map_err(|_| {
                self.loc.error(
                    &key,
                    format!("the value of {name} is not a valid header value"),
                )
            })?;
            headers.push((n, v));
        }
        let expect_status = t.expect_status.clone().unwrap_or_default();
        if let Some(bad) = expect_status.iter().find(|s| !(100..=599).contains(*s)) {
            return Err(self.loc.error(
                &path.key("expect_status"),
                format!("{bad} is not an HTTP status code"),
            ));
        }
        let body_match = match (&t.body_contains, &t.body_regex) {
            (Some(_), Some(_)) => {
                return Err(self.loc.error(
                    &path.key("body_regex"),
                    "give either body_contains or body_regex, not both",
                ));
            }
            (Some(s), None) => Some(BodyMatch::Contains(s.clone())),
            (None, Some(r)) => Some(BodyMatch::Regex(regex::Regex::new(r).map_err(|e| {
                self.loc.error(
                    &path.key("body_regex"),
                    format!("not a regular expression: {e}"),
                )
            })?)),
            (None, None) => None,
        };
        let max_body = t.max_body.unwrap_or(DEFAULT_MAX_BODY);
        if !(1..=MAX_MAX_BODY).contains(&max_body) {
            return Err(self.loc.error(
                &path.key("max_body"),
                "must be between 1 and 67108864 (64 MiB)",
            ));
        }
        if t.max_redirects.is_some_and(|n| n > MAX_REDIRECTS) {
            return Err(self.loc.error(
                &path.key("max_redirects"),
                format!("must be at most {MAX_REDIRECTS}"),
            ));
        }
        let check = t.check.unwrap_or_default();
        if check == HttpCheck::Jmap && (t.body_contains.is_some() || t.body_regex.is_some()) {
            return Err(self.loc.error(
                &path.key(if t.body_contains.is_some() {
                    "body_contains"
                } else {
                    "body_regex"
                }),
                "check = \"jmap\" checks the JSON itself",
            ));
        }
        if t.auth.as_deref() != Some("oauth2") && t.oauth2.is_some() {
            return Err(self.loc.error(
                &path.key("oauth2"),
                "has no effect without auth = \"oauth2\"",
            ));
        }
        let auth = match t.auth.as_deref() {
            None => {
                for key in ["username", "password_file", "password_env"] {
                    if self.loc.keys_of(path).iter().any(|(k, _)| k == key) {
                        return Err(self.loc.error(
                            &path.key(key),
                            "has no effect without auth = \"basic\" or \"bearer\"",
                        ));
                    }
                }
                None
            }
            Some("basic") => Some(HttpAuth::Basic(self.credentials(
                path,
                t,
                Protocol::Https,
                fp,
            )?)),
            Some("oauth2") => {
                for key in ["username", "password_file", "password_env"] {
                    if self.loc.keys_of(path).iter().any(|(k, _)| k == key) {
                        return Err(self.loc.error(
                            &path.key(key),
                            "has no effect with auth = \"oauth2\" (the token is the credential)",
                        ));
                    }
                }
                Some(HttpAuth::OAuth2(Arc::new(self.oauth2(
                    path,
                    t,
                    Protocol::Https,
                    fp,
                )?)))
            }
            Some("bearer") => {
                if t.username.is_some() {
                    return Err(self
                        .loc
                        .error(&path.key("username"), "a bearer token has no username"));
                }
                Some(HttpAuth::Bearer(self.secret(path, t, fp)?))
            }
            Some(other) => {
                return Err(self.loc.error(
                    &path.key("auth"),
                    format!("{other:?} is not \"basic\", \"bearer\" or \"oauth2\""),
                ));
            }
        };
        Ok(HttpsSpec {
            url,
            endpoint,
            method,
            body,
            headers,
            expect_status,
            body_match,
            max_body: max_body as usize,
            max_redirects: t.max_redirects.unwrap_or(DEFAULT_MAX_REDIRECTS),
            auth,
            check,
        })
    }

    fn roundtrip(
        &mut self,
        path: &KeyPath,
        t: &RawTarget,
        others: &HashMap<String, Arc<Target>>,
        fp: &mut Fnv64,
    ) -> Result<RoundtripSpec, ConfigError> {
        if t.timeout.is_some() {
            return Err(self.loc.error(
                &path.key("timeout"),
                "a round trip's deadline is its legs' timeouts plus delivery_timeout; set \
                 delivery_timeout here and timeout on the SMTP and IMAP targets",
            ));
        }
        let leg = |key: &str, want: Protocol| -> Result<Arc<Target>, ConfigError> {
            let name = match key {
                "smtp_target" => t.smtp_target.as_ref(),
                _ => t.imap_target.as_ref(),
            }
            .ok_or_else(|| {
                self.loc.error(
                    &path.key(key),
                    format!("missing: the name of the {} target to use", want.as_str()),
                )
            })?;
            let target = others.get(name).ok_or_else(|| {
                self.loc.error(
                    &path.key(key),
                    format!("no {} target named {name:?}", want.as_str()),
                )
            })?;
            if target.protocol() != want {
                return Err(self.loc.error(
                    &path.key(key),
                    format!(
                        "target {name:?} is {}, not {}",
                        target.protocol().as_str(),
                        want.as_str()
                    ),
                ));
            }
            Ok(target.clone())
        };
        let smtp_target = leg("smtp_target", Protocol::Smtp)?;
        let imap_target = leg("imap_target", Protocol::Imap)?;
        let (ProbeSpec::Smtp(smtp), ProbeSpec::Imap(imap)) = (&smtp_target.spec, &imap_target.spec)
        else {
            unreachable!("protocols checked above");
        };
        // The legs' own settings define this target too.
        smtp_target.fingerprint.hash(fp);
        imap_target.fingerprint.hash(fp);

        let address = |key: &str, value: &str| -> Result<lettre::Address, ConfigError> {
            value.parse::<lettre::Address>().map_err(|e| {
                self.loc.error(
                    &path.key(key),
                    format!("{value:?} is not an email address: {e}"),
                )
            })
        };
        let to = match &t.send_to {
            Some(to) => address("send_to", to)?,
            None if imap.credentials.username.contains('@') => {
                address("send_to", &imap.credentials.username)?
            }
            None => {
                return Err(self.loc.error(
                    &path.key("send_to"),
                    "missing: the address of the IMAP target's mailbox (defaults to its \
                     username when that is an address)",
                ));
            }
        };
        let from = match (&t.mail_from, &smtp.send, &smtp.credentials) {
            (Some(f), _, _) => address("mail_from", f)?,
            (None, Some(send), _) => send.from.clone(),
            (None, None, Some(c)) if c.username.contains('@') => address("mail_from", &c.username)?,
            _ => {
                return Err(self.loc.error(
                    &path.key("mail_from"),
                    "missing: the sender (defaults to the SMTP target's mail_from or username)",
                ));
            }
        };
        let delivery_timeout = t.delivery_timeout.unwrap_or(DEFAULT_DELIVERY_TIMEOUT);
        let poll_interval = t.poll_interval.unwrap_or(DEFAULT_POLL_INTERVAL);
        let cleanup_age = t.cleanup_age.unwrap_or(DEFAULT_CLEANUP_AGE);
        if delivery_timeout.is_zero() {
            return Err(self
                .loc
                .error(&path.key("delivery_timeout"), "must be greater than zero"));
        }
        if delivery_timeout > MAX_INTERVAL {
            return Err(self
                .loc
                .error(&path.key("delivery_timeout"), "must be at most 24h"));
        }
        if poll_interval < Duration::from_millis(100) {
            return Err(self
                .loc
                .error(&path.key("poll_interval"), "must be at least 100ms"));
        }
        if poll_interval > MAX_POLL_INTERVAL {
            return Err(self
                .loc
                .error(&path.key("poll_interval"), "must be at most 1h"));
        }
        if cleanup_age > MAX_CLEANUP_AGE {
            return Err(self
                .loc
                .error(&path.key("cleanup_age"), "must be at most 365d"));
        }
        if cleanup_age <= delivery_timeout {
            return Err(self.loc.error(
                &path.key("cleanup_age"),
                format!(
                    "must exceed delivery_timeout ({}): younger probe mail may still be \
                     on its way",
                    humantime::format_duration(delivery_timeout)
                ),
            ));
        }
        Ok(RoundtripSpec {
            smtp_target: smtp_target.name.clone(),
            smtp: smtp.clone(),
            smtp_timeout: smtp_target.timeout,
            imap_target: imap_target.name.clone(),
            imap: imap.clone(),
            imap_timeout: imap_target.timeout,
            message: SendSpec { from, to },
            delivery_timeout,
            poll_interval,
            cleanup_age,
        })
    }

    fn imap(
        &mut self,
        path: &KeyPath,
        t: &RawTarget,
        fp: &mut Fnv64,
    ) -> Result<ImapSpec, ConfigError> {
        let endpoint = self.endpoint(path, t, TlsMode::Implicit, Ports::IMAP, fp)?;
        let credentials = self.credentials(path, t, Protocol::Imap, fp)?;
        let mailbox = t.mailbox.clone().unwrap_or_else(|| "INBOX".to_string());
        if mailbox.is_empty() || mailbox.contains(['\r', '\n']) {
            return Err(self
                .loc
                .error(&path.key("mailbox"), "must be a non-empty mailbox name"));
        }
        Ok(ImapSpec {
            endpoint,
            credentials,
            auth: t.auth_mechanism,
            mailbox,
        })
    }

    fn smtp(
        &mut self,
        path: &KeyPath,
        t: &RawTarget,
        fp: &mut Fnv64,
    ) -> Result<SmtpSpec, ConfigError> {
        let endpoint = self.endpoint(path, t, TlsMode::Starttls, Ports::SMTP, fp)?;
        let credentials = if t.username.is_some() {
            Some(self.credentials(path, t, Protocol::Smtp, fp)?)
        } else {
            for key in [
                "password_file",
                "password_env",
                "auth_mechanism",
                "auth",
                "oauth2",
            ] {
                if self.loc.keys_of(path).iter().any(|(k, _)| k == key) {
                    return Err(self.loc.error(
                        &path.key(key),
                        "has no effect without username (a target without username probes \
                         without AUTH)",
                    ));
                }
            }
            None
        };
        let ehlo_name = match &t.ehlo_name {
            Some(n) => {
                check_host(n).map_err(|m| self.loc.error(&path.key("ehlo_name"), m))?;
                n.clone()
            }
            None => default_ehlo_name(),
        };
        let address = |key: &str, value: &str| -> Result<lettre::Address, ConfigError> {
            value.parse::<lettre::Address>().map_err(|e| {
                self.loc.error(
                    &path.key(key),
                    format!("{value:?} is not an email address: {e}"),
                )
            })
        };
        let send = match &t.send_to {
            None => {
                if t.mail_from.is_some() {
                    return Err(self
                        .loc
                        .error(&path.key("mail_from"), "has no effect without send_to"));
                }
                None
            }
            Some(to) => {
                let to = address("send_to", to)?;
                let from = match (&t.mail_from, &t.username) {
                    (Some(f), _) => address("mail_from", f)?,
                    (None, Some(u)) if u.contains('@') => address("username", u)?,
                    _ => {
                        return Err(self.loc.error(
                            &path.key("mail_from"),
                            "missing: the sender of the test message (defaults to username \
                             when that is an address)",
                        ));
                    }
                };
                Some(SendSpec { from, to })
            }
        };
        Ok(SmtpSpec {
            endpoint,
            credentials,
            auth: t.auth_mechanism,
            ehlo_name,
            send,
        })
    }

    /// `default_tls` when `tls` is not set; a port from `ports` when `port` is not set.
    fn endpoint(
        &mut self,
        path: &KeyPath,
        t: &RawTarget,
        default_tls: TlsMode,
        ports: Ports,
        fp: &mut Fnv64,
    ) -> Result<Endpoint, ConfigError> {
        let host = t.host.clone().ok_or_else(|| {
            self.loc
                .error(&path.key("host"), "missing: the server to probe")
        })?;
        check_host(&host).map_err(|m| self.loc.error(&path.key("host"), m))?;
        let tls = t.tls.unwrap_or(default_tls);
        let allow_plaintext = t.allow_plaintext.unwrap_or(false);
        match (tls, allow_plaintext) {
            (TlsMode::None, false) => {
                return Err(self.loc.error(
                    &path.key("tls"),
                    "tls = \"none\" sends the password in clear text; set allow_plaintext = true \
                     if that is really wanted",
                ));
            }
            (TlsMode::Implicit, true) => {
                return Err(self.loc.error(
                    &path.key("allow_plaintext"),
                    "applies only with tls = \"none\" or \"starttls\" (continue without TLS when \
                     STARTTLS is not offered)",
                ));
            }
            _ => {}
        }
        let port = t.port.unwrap_or(match tls {
            TlsMode::Implicit => ports.implicit,
            TlsMode::Starttls => ports.starttls,
            TlsMode::None => ports.plain,
        });
        if port == 0 {
            return Err(self.loc.error(&path.key("port"), "must be 1-65535"));
        }
        let tls_client = if tls == TlsMode::None {
            for key in ["ca_file", "server_name"] {
                if self.loc.keys_of(path).iter().any(|(k, _)| k == key) {
                    return Err(self
                        .loc
                        .error(&path.key(key), "has no effect with tls = \"none\""));
                }
            }
            None
        } else {
            let server_name = t.server_name.clone().unwrap_or_else(|| host.clone());
            let ca_file = t.ca_file.as_ref().map(|f| self.resolve_path(f));
            let verifier = match &ca_file {
                Some(file) => {
                    if !self.files.certificates.contains_key(file) {
                        let bytes = read_bounded(file, MAX_PEM_BYTES).map_err(|e| {
                            self.loc.error(
                                &path.key("ca_file"),
                                format!("cannot read {}: {e}", file.display()),
                            )
                        })?;
                        let mut hash = Fnv64::default();
                        bytes.hash(&mut hash);
                        let hash = hash.finish();
                        let ca = CaFile { pem: bytes, hash };
                        self.files.certificates.insert(file.clone(), ca);
                    }
                    let ca = &self.files.certificates[file];
                    // The file's hash, not its bytes again: byte by byte for every target, that
                    // was a twentieth of the startup time at 10,000 targets.
                    ca.hash.hash(fp);
                    self.roots
                        .from_pem(file, &ca.pem)
                        .map_err(|m| self.loc.error(&path.key("ca_file"), m))?
                }
                None => self
                    .roots
                    .system()
                    .map_err(|m| self.loc.error(&path.key("tls"), m))?,
            };
            let client = TlsClient::new(verifier, &server_name).map_err(|m| {
                let key = if t.server_name.is_some() {
                    "server_name"
                } else {
                    "host"
                };
                self.loc.error(&path.key(key), m)
            })?;
            Some(Arc::new(client))
        };
        let net = self.net_settings(path, t, &host)?;
        net.hash(fp);
        Ok(Endpoint {
            host,
            port,
            tls,
            allow_plaintext,
            tls_client,
            net,
        })
    }

    /// A target's network settings: its own keys, else `[global]`'s.
    fn net_settings(
        &self,
        path: &KeyPath,
        t: &RawTarget,
        host: &str,
    ) -> Result<crate::probe::net::NetSettings, ConfigError> {
        let dns_servers = match &t.dns_servers {
            Some(list) => {
                let key = path.key("dns_servers");
                if host.parse::<std::net::IpAddr>().is_ok() {
                    return Err(self.loc.error(
                        &key,
                        "has no effect: the host is an IP address, nothing is looked up",
                    ));
                }
                Some(self.dns_servers(&key, list)?)
            }
            None => self.net.dns_servers.clone(),
        };
        let ip_protocol = t.ip_protocol.unwrap_or(self.net.ip_protocol);
        if let Ok(ip) = host.parse::<std::net::IpAddr>()
            && !ip_protocol.allows(ip)
        {
            let (key, from) = match (t.ip_protocol, &t.url) {
                (Some(_), _) => ("ip_protocol", ""),
                (None, Some(_)) => ("url", " (from [global])"),
                (None, None) => ("host", " (from [global])"),
            };
            let family = if ip.is_ipv4() { "an IPv4" } else { "an IPv6" };
            return Err(self.loc.error(
                &path.key(key),
                format!(
                    "the host {ip} is {family} address, which ip_protocol = \"{}\"{from} never \
                     connects to",
                    ip_protocol.as_str()
                ),
            ));
        }
        Ok(crate::probe::net::NetSettings {
            ip_protocol,
            dns_servers,
        })
    }

    /// `dns_servers`: IP addresses with an optional port (53 by default), no names, no repeats.
    fn dns_servers(
        &self,
        key: &KeyPath,
        list: &[String],
    ) -> Result<Arc<[SocketAddr]>, ConfigError> {
        if list.is_empty() {
            return Err(self.loc.error(
                key,
                "is empty: leave it out to use the system's resolver (/etc/resolv.conf)",
            ));
        }
        if list.len() > MAX_DNS_SERVERS {
            return Err(self.loc.error(
                key,
                format!(
                    "has {} entries; at most {MAX_DNS_SERVERS} are asked",
                    list.len()
                ),
            ));
        }
        let mut servers: Vec<SocketAddr> = Vec::with_capacity(list.len());
        for (i, entry) in list.iter().enumerate() {
            let mut item = key.clone();
            item.0.push(Seg::Index(i));
            let server =
                crate::probe::net::parse_dns_server(entry).map_err(|m| self.loc.error(&item, m))?;
            if servers.contains(&server) {
                return Err(self.loc.error(&item, format!("{server} is listed twice")));
            }
            servers.push(server);
        }
        Ok(servers.into())
    }

    /// Username plus password (`auth = "password"`, the default) or OAuth2 credential set
    /// (`auth = "oauth2"`), with an `auth_mechanism` that fits.
    fn credentials(
        &mut self,
        path: &KeyPath,
        t: &RawTarget,
        protocol: Protocol,
        fp: &mut Fnv64,
    ) -> Result<Credentials, ConfigError> {
        let username = t
            .username
            .clone()
            .ok_or_else(|| self.loc.error(&path.key("username"), "missing"))?;
        if username.is_empty() || username.contains(['\r', '\n', '\0']) {
            return Err(self
                .loc
                .error(&path.key("username"), "must be a non-empty single line"));
        }
        let oauth2 = match (t.auth.as_deref(), protocol) {
            (None | Some("password"), Protocol::Imap | Protocol::Smtp) => false,
            (Some("basic"), Protocol::Https) => false,
            (Some("oauth2"), Protocol::Imap | Protocol::Smtp) => true,
            (Some(other), _) => {
                return Err(self.loc.error(
                    &path.key("auth"),
                    format!("{other:?} is not \"password\" or \"oauth2\""),
                ));
            }
            (None, _) => false,
        };
        if let Some(m) = t.auth_mechanism
            && m.is_oauth2() != oauth2
        {
            let wants = if oauth2 {
                "\"xoauth2\" or \"oauthbearer\""
            } else {
                "\"login\" or \"plain\""
            };
            return Err(self.loc.error(
                &path.key("auth_mechanism"),
                format!(
                    "\"{}\" does not fit auth = \"{}\": use {wants}",
                    m.as_str(),
                    if oauth2 { "oauth2" } else { "password" }
                ),
            ));
        }
        let secret = if oauth2 {
            for key in ["password_file", "password_env"] {
                if self.loc.keys_of(path).iter().any(|(k, _)| k == key) {
                    return Err(self.loc.error(
                        &path.key(key),
                        "has no effect with auth = \"oauth2\" (the token is the credential)",
                    ));
                }
            }
            Secret::OAuth2(Arc::new(self.oauth2(path, t, protocol, fp)?))
        } else {
            if t.oauth2.is_some() {
                return Err(self.loc.error(
                    &path.key("oauth2"),
                    "has no effect without auth = \"oauth2\"",
                ));
            }
            Secret::Password(self.secret(path, t, fp)?)
        };
        Ok(Credentials { username, secret })
    }

    /// The `[target.oauth2]` table: explicit fields, else the provider's preset.
    fn oauth2(
        &mut self,
        path: &KeyPath,
        t: &RawTarget,
        protocol: Protocol,
        fp: &mut Fnv64,
    ) -> Result<crate::oauth2::OAuth2Spec, ConfigError> {
        use crate::oauth2::{ClientAuth, Grant, OAuth2Spec};
        let o = t.oauth2.as_ref().ok_or_else(|| {
            self.loc.error(
                &path.key("auth"),
                "auth = \"oauth2\" needs an [target.oauth2] table (provider or token_url, \
                 client_id, and a client secret or refresh token)",
            )
        })?;
        let op = path.key("oauth2");
        // The secrets of this credential set alone: they key the token cache (targets sharing a
        // credential set share a token) and join the target's fingerprint.
        let mut secrets = Fnv64::default();
        let refresh = self.read_secret(
            &op,
            ("refresh_token_file", o.refresh_token_file.as_ref()),
            ("refresh_token_env", o.refresh_token_env.as_ref()),
            &mut secrets,
        )?;
        let kind = o.grant.unwrap_or(if refresh.is_some() {
            GrantKind::RefreshToken
        } else {
            GrantKind::ClientCredentials
        });
        let grant = match (kind, refresh) {
            (GrantKind::RefreshToken, Some(r)) => Grant::RefreshToken(r),
            (GrantKind::RefreshToken, None) => {
                return Err(self.loc.error(
                    &op.key("refresh_token_file"),
                    "missing: grant = \"refresh_token\" needs refresh_token_file or \
                     refresh_token_env",
                ));
            }
            (GrantKind::ClientCredentials, Some(_)) => {
                return Err(self.loc.error(
                    &op.key("grant"),
                    "a refresh token is given but grant = \"client_credentials\"",
                ));
            }
            (GrantKind::ClientCredentials, None) => Grant::ClientCredentials,
        };
        if o.provider == Some(OAuth2Provider::Google) && kind == GrantKind::ClientCredentials {
            return Err(self.loc.error(
                &op.key("grant"),
                "Google has no client-credentials grant for mail: use a refresh token \
                 (grant = \"refresh_token\")",
            ));
        }
        let token_url = match (&o.token_url, o.provider) {
            (Some(u), _) => u.clone(),
            (None, Some(OAuth2Provider::Microsoft)) => {
                let tenant = o.tenant.as_deref().ok_or_else(|| {
                    self.loc.error(
                        &op.key("tenant"),
                        "missing: provider = \"microsoft\" needs the tenant (its domain or id)",
                    )
                })?;
                format!("https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token")
            }
            (None, Some(OAuth2Provider::Google)) => "https://oauth2.googleapis.com/token".into(),
            (None, None) => {
                return Err(self.loc.error(
                    &op.key("token_url"),
                    "missing: give token_url, or provider = \"microsoft\" or \"google\"",
                ));
            }
        };
        let token_url = url::Url::parse(&token_url).map_err(|e| {
            self.loc.error(
                &op.key("token_url"),
                format!("{token_url:?} is not a URL: {e}"),
            )
        })?;
        match token_url.scheme() {
            "https" => {}
            "http" if o.allow_plaintext == Some(true) => {}
            _ => {
                return Err(self.loc.error(
                    &op.key("token_url"),
                    "must be https:// (http:// sends the client secret in clear; set \
                     allow_plaintext = true in this table if that is really wanted)",
                ));
            }
        }
        let host = token_url.host_str().unwrap_or_default().to_string();
        let client_id = o
            .client_id
            .clone()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| {
                self.loc
                    .error(&op.key("client_id"), "missing: the application (client) id")
            })?;
        let secret = self.read_secret(
            &op,
            ("client_secret_file", o.client_secret_file.as_ref()),
            ("client_secret_env", o.client_secret_env.as_ref()),
            &mut secrets,
        )?;
        let client_auth = match (
            secret,
            &o.client_assertion_key_file,
            &o.client_assertion_cert_file,
        ) {
            (Some(_), Some(_), _) => {
                return Err(self.loc.error(
                    &op.key("client_assertion_key_file"),
                    "give either a client secret or a client assertion key, not both",
                ));
            }
            (Some(s), None, _) => ClientAuth::Secret(s),
            (None, Some(key_file), Some(cert_file)) => {
                let key_path = self
                    .resolve_secret_path(key_file)
                    .map_err(|m| self.loc.error(&op.key("client_assertion_key_file"), m))?;
                let key = read_bounded(&key_path, MAX_PEM_BYTES)
                    .map_err(|e| format!("cannot read {}: {e}", key_path.display()))
                    .and_then(|pem| {
                        pem.hash(&mut secrets);
                        use rustls::pki_types::pem::PemObject;
                        let der = rustls::pki_types::PrivatePkcs8KeyDer::from_pem_slice(&pem)
                            .map_err(|e| {
                                format!("{}: not a PKCS#8 PEM key: {e}", key_path.display())
                            })?;
                        ring::rsa::KeyPair::from_pkcs8(der.secret_pkcs8_der()).map_err(|e| {
                            format!(
                                "{}: not an RSA key ring can sign with: {e}",
                                key_path.display()
                            )
                        })
                    })
                    .map_err(|m| self.loc.error(&op.key("client_assertion_key_file"), m))?;
                let cert_path = self.resolve_path(cert_file);
                let cert = read_bounded(&cert_path, MAX_PEM_BYTES)
                    .map_err(|e| format!("cannot read {}: {e}", cert_path.display()))
                    .and_then(|pem| {
                        use rustls::pki_types::pem::PemObject;
                        rustls::pki_types::CertificateDer::from_pem_slice(&pem).map_err(|e| {
                            format!("{}: not a PEM certificate: {e}", cert_path.display())
                        })
                    })
                    .map_err(|m| self.loc.error(&op.key("client_assertion_cert_file"), m))?;
                ClientAuth::Assertion {
                    key: Arc::new(key),
                    x5t: crate::oauth2::thumbprint(&cert),
                }
            }
            (None, Some(_), None) => {
                return Err(self.loc.error(
                    &op.key("client_assertion_cert_file"),
                    "missing: the certificate registered for the key (its thumbprint names the key)",
                ));
            }
            (None, None, _) if matches!(grant, Grant::RefreshToken(_)) => ClientAuth::None,
            (None, None, _) => {
                return Err(self.loc.error(
                    &op.key("client_secret_file"),
                    "missing: the client credentials grant needs client_secret_file, \
                     client_secret_env, or client_assertion_key_file with its certificate",
                ));
            }
        };
        let scopes = match (&o.scopes, o.provider) {
            (Some(s), _) => s.clone(),
            (None, Some(OAuth2Provider::Google)) => vec!["https://mail.google.com/".into()],
            (None, Some(OAuth2Provider::Microsoft)) => match (kind, protocol) {
                (GrantKind::ClientCredentials, _) => {
                    vec!["https://outlook.office365.com/.default".into()]
                }
                (GrantKind::RefreshToken, Protocol::Smtp) => vec![
                    "https://outlook.office.com/SMTP.Send".into(),
                    "offline_access".into(),
                ],
                (GrantKind::RefreshToken, Protocol::Https) => vec![
                    "https://outlook.office.com/EWS.AccessAsUser.All".into(),
                    "offline_access".into(),
                ],
                (GrantKind::RefreshToken, _) => vec![
                    "https://outlook.office.com/IMAP.AccessAsUser.All".into(),
                    "offline_access".into(),
                ],
            },
            (None, None) => Vec::new(),
        };
        let verifier = match &o.ca_file {
            Some(f) => {
                let file = self.resolve_path(f);
                let bytes = read_bounded(&file, MAX_PEM_BYTES).map_err(|e| {
                    self.loc.error(
                        &op.key("ca_file"),
                        format!("cannot read {}: {e}", file.display()),
                    )
                })?;
                bytes.hash(fp);
                self.roots
                    .from_pem(&file, &bytes)
                    .map_err(|m| self.loc.error(&op.key("ca_file"), m))?
            }
            None => self
                .roots
                .system()
                .map_err(|m| self.loc.error(&op.key("token_url"), m))?,
        };
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| self.loc.error(&op, format!("TLS setup: {e}")))?
        .with_webpki_verifier(verifier)
        .with_no_client_auth();
        // The cache key: everything that makes a different token, secrets by hash only.
        let mut key = Fnv64::default();
        o.hash(&mut key);
        token_url.as_str().hash(&mut key);
        scopes.hash(&mut key);
        secrets.finish().hash(&mut key);
        secrets.finish().hash(fp);
        let label = format!("{client_id}@{host}");
        Ok(OAuth2Spec {
            token_url,
            client_id,
            client_auth,
            grant,
            scopes,
            tls: Arc::new(tls),
            key: format!("{:016x}", key.finish()),
            label,
        })
    }

    /// The secret from `password_file` or `password_env` (exactly one is required).
    fn secret(
        &self,
        path: &KeyPath,
        t: &RawTarget,
        fp: &mut Fnv64,
    ) -> Result<SecretString, ConfigError> {
        self.read_secret(
            path,
            ("password_file", t.password_file.as_ref()),
            ("password_env", t.password_env.as_ref()),
            fp,
        )?
        .ok_or_else(|| {
            self.loc.error(
                &path.key("password_file"),
                "missing: give password_file (a file or systemd credential) or password_env",
            )
        })
    }

    /// A secret from a file key or an environment key (at most one of them); `None` when
    /// neither is set. Files may name systemd credentials (`%d/NAME`).
    fn read_secret(
        &self,
        path: &KeyPath,
        (file_key, file): (&str, Option<&String>),
        (env_key, env): (&str, Option<&String>),
        fp: &mut Fnv64,
    ) -> Result<Option<SecretString>, ConfigError> {
        let (key, value) = match (file, env) {
            (Some(_), Some(_)) => {
                return Err(self.loc.error(
                    &path.key(env_key),
                    format!("give either {file_key} or {env_key}, not both"),
                ));
            }
            (None, None) => return Ok(None),
            (Some(file), None) => {
                let file = self
                    .resolve_secret_path(file)
                    .map_err(|m| self.loc.error(&path.key(file_key), m))?;
                (
                    file_key,
                    self.files
                        .secret(&file)
                        .map_err(|m| self.loc.error(&path.key(file_key), m))?,
                )
            }
            (None, Some(var)) => match std::env::var(var) {
                Ok(v) if !v.is_empty() => (env_key, v),
                Ok(_) => {
                    return Err(self.loc.error(
                        &path.key(env_key),
                        format!("environment variable {var} is empty"),
                    ));
                }
                Err(_) => {
                    return Err(self.loc.error(
                        &path.key(env_key),
                        format!("environment variable {var} is not set"),
                    ));
                }
            },
        };
        if value.contains(['\r', '\n', '\0']) {
            return Err(self
                .loc
                .error(&path.key(key), "the secret must be a single line"));
        }
        value.hash(fp);
        Ok(Some(SecretString::from(value)))
    }

    fn resolve_path(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    /// Expands the systemd credentials directory (`%d/NAME` or `${CREDENTIALS_DIRECTORY}/NAME`).
    fn resolve_secret_path(&self, p: &str) -> Result<PathBuf, String> {
        for prefix in [
            "%d/",
            "${CREDENTIALS_DIRECTORY}/",
            "$CREDENTIALS_DIRECTORY/",
        ] {
            if let Some(name) = p.strip_prefix(prefix) {
                let dir = std::env::var_os("CREDENTIALS_DIRECTORY").ok_or_else(|| {
                    format!(
                        "{p:?} names a systemd credential but CREDENTIALS_DIRECTORY is not set \
                         (LoadCredential= in the unit sets it)"
                    )
                })?;
                return Ok(Path::new(&dir).join(name));
            }
        }
        Ok(self.resolve_path(p))
    }
}

/// What login needs of a probe's deadline: Courier waits about 5 s before rejecting a wrong
/// password, Cyrus about 3 s.
const LOGIN_TIME: Duration = Duration::from_secs(5);
/// What one network round trip before login is allowed, for the warning: a slow
/// intercontinental path.
const ROUND_TRIP: Duration = Duration::from_millis(250);

/// Where a target's timeout came from.
#[derive(Clone, Copy, Debug)]
enum TimeoutFrom {
    /// Its own `timeout`.
    Target,
    /// `[global] timeout`.
    Global,
    /// Its `interval`, shorter than the global timeout.
    Interval,
}

/// The phases a probe goes through before it sends credentials, each with the network round
/// trips it waits for (a full TLS handshake two, a token fetch five); `None` for probes that do
/// not log in.
fn phases_before_login(spec: &ProbeSpec) -> Option<Vec<(crate::probe::Phase, u32)>> {
    use crate::probe::Phase;
    let host_is_ip = |e: &Endpoint| e.host.parse::<std::net::IpAddr>().is_ok();
    let ip = match spec {
        ProbeSpec::Imap(s) => host_is_ip(&s.endpoint),
        ProbeSpec::Smtp(s) if s.credentials.is_some() => host_is_ip(&s.endpoint),
        ProbeSpec::Smtp(_) | ProbeSpec::Https(_) | ProbeSpec::Roundtrip(_) => return None,
    };
    let phases = crate::probe::expected_phases(spec);
    let mut before = Vec::new();
    for p in phases {
        let trips = match p {
            Phase::Login | Phase::Auth => return Some(before),
            Phase::Dns if ip => continue,
            Phase::Dns | Phase::Connect | Phase::Greeting | Phase::Starttls => 1,
            Phase::Ehlo | Phase::EhloTls => 1,
            Phase::Tls => 2,
            Phase::Token => 5,
            Phase::Select
            | Phase::Logout
            | Phase::MailFrom
            | Phase::Rcpt
            | Phase::Data
            | Phase::Quit
            | Phase::Receive
            | Phase::Send
            | Phase::Delivery
            | Phase::Cleanup
            | Phase::Request
            | Phase::Body
            | Phase::Session
            | Phase::Api => 0,
        };
        before.push((p, trips));
    }
    None
}

/// Default ports of a protocol by TLS mode.
#[derive(Clone, Copy)]
struct Ports {
    implicit: u16,
    starttls: u16,
    plain: u16,
}

impl Ports {
    const IMAP: Ports = Ports {
        implicit: 993,
        starttls: 143,
        plain: 143,
    };
    const SMTP: Ports = Ports {
        implicit: 465,
        starttls: 587,
        plain: 25,
    };
    const HTTPS: Ports = Ports {
        implicit: 443,
        starttls: 443,
        plain: 80,
    };
}

/// The EHLO name when none is configured: this machine's host name if it is a usable one
/// (gethostname works under the systemd unit's `ProcSubset=pid`, /proc/sys does not).
fn default_ehlo_name() -> String {
    hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| check_host(h).is_ok())
        .unwrap_or_else(|| "localhost".to_string())
}

impl FilesRead {
    /// The password in `file`, read once per load however many targets name it.
    fn secret(&self, file: &Path) -> Result<String, String> {
        use secrecy::ExposeSecret;
        if let Some(s) = self.secrets.borrow().get(file) {
            return Ok(s.expose_secret().to_string());
        }
        let s = read_secret_file(file)?;
        self.secrets
            .borrow_mut()
            .insert(file.to_path_buf(), SecretString::from(s.clone()));
        Ok(s)
    }
}

/// Reads a password file: at most 64 KiB, one line, trailing newline removed.
fn read_secret_file(path: &Path) -> Result<String, String> {
    let text = read_bounded(path, MAX_SECRET_BYTES)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))
        .and_then(|b| {
            String::from_utf8(b).map_err(|_| format!("{} is not UTF-8 text", path.display()))
        })?;
    let trimmed = text.strip_suffix('\n').unwrap_or(&text);
    let trimmed = trimmed.strip_suffix('\r').unwrap_or(trimmed);
    if trimmed.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(trimmed.to_string())
}

/// Why `dir` cannot be (or become) a directory: it, or the nearest part of it that exists, is
/// something else (a regular file, say). `None` when it is a directory or can be created.
fn not_a_directory(dir: &Path) -> Option<String> {
    let mut p = dir;
    loop {
        match std::fs::metadata(p) {
            Ok(m) if m.is_dir() => return None,
            Ok(_) if p == dir => return Some("exists and is not a directory".into()),
            Ok(_) => return Some(format!("{} is not a directory", p.display())),
            Err(_) => match p.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => p = parent,
                _ => return None,
            },
        }
    }
}

/// Label values (target names, regions) stay short, printable and safe on a command line.
fn check_label(s: &str) -> Result<(), String> {
    let ok_start = s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    let ok_chars = s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
    if s.is_empty() || s.len() > 128 || !ok_start || !ok_chars {
        return Err(format!(
            "{s:?} must be 1-128 characters of letters, digits, '-', '_', '.', ':' and start with \
             a letter or digit"
        ));
    }
    Ok(())
}

fn check_host(host: &str) -> Result<(), String> {
    if host.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    let valid = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        });
    if valid {
        Ok(())
    } else {
        Err(format!("{host:?} is not a host name or IP address"))
    }
}

impl Config {
    /// The targets this instance probes: all of them, or its shard's.
    pub fn owned_targets(&self) -> Vec<Arc<Target>> {
        self.targets
            .iter()
            .filter(|t| self.global.shard.is_none_or(|s| s.owns(&t.name)))
            .cloned()
            .collect()
    }

    /// Logs the warnings `check` prints, the first ten of them: a fleet of 10,000 targets
    /// sharing one short timeout must not flood the journal at every start.
    pub fn log_warnings(&self) {
        const SHOWN: usize = 10;
        for w in self.warnings.iter().take(SHOWN) {
            tracing::warn!(warning = %w, "config warning");
        }
        if self.warnings.len() > SHOWN {
            tracing::warn!(
                more = self.warnings.len() - SHOWN,
                "more config warnings; `mailprobe check` lists them all"
            );
        }
    }

    /// Makes this instance probe `shard` whatever `[global] shard` says (`run --shard`, and
    /// again on every reload); refused when that shard owns none of the targets.
    pub fn override_shard(&mut self, shard: Shard) -> Result<(), ConfigError> {
        self.global.shard = Some(shard);
        self.shard_override = Some(shard);
        match self.unowned_shard() {
            None => Ok(()),
            Some(m) => Err(ConfigError::NothingToProbe {
                file: self.path.clone(),
                message: format!("--{m}"),
            }),
        }
    }

    /// Why this instance's shard leaves it nothing to probe, if it does: a deployment with more
    /// shards than it needs, not a healthy instance with zero targets.
    fn unowned_shard(&self) -> Option<String> {
        let shard = self.global.shard?;
        self.owned_targets().is_empty().then(|| {
            format!(
                "shard {shard} owns no target (the file has {}), so this instance would probe \
                 nothing: use fewer shards",
                self.targets.len()
            )
        })
    }

    /// Names of all targets, for "unknown target" messages.
    pub fn target_names(&self) -> HashSet<&str> {
        self.targets.iter().map(|t| t.name.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        parse(Path::new("probes.toml"), text)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn line_col_counts_from_one() {
        assert_eq!(line_col("a\nbc\n", 0), (1, 1));
        assert_eq!(line_col("a\nbc\n", 3), (2, 2));
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let e = err("[global]\ninterval = \"30s\"\nbogus = 1\n");
        assert_eq!(
            e,
            "probes.toml:3:1: global.bogus: unknown key; expected one of `listen`, \
             `interval`, `timeout`, `slow_threshold`, `concurrency`, `log_format`, `log_level`, \
             `web_config_file`, `shard`, `dns_servers`, `ip_protocol`"
        );
    }

    #[test]
    fn bad_enum_value_in_second_target() {
        let e = err(concat!(
            "[[target]]\nname = \"a\"\nprotocol = \"imap\"\nhost = \"h\"\nusername = \"u\"\npassword_env = \"HOME\"\n",
            "[[target]]\nname = \"b\"\nprotocol = \"imap\"\ntls = \"sometimes\"\n"
        ));
        assert!(
            e.starts_with("probes.toml:10:7: target[2] \"b\".tls: unknown variant `sometimes`"),
            "{e}"
        );
    }

    #[test]
    fn missing_name_points_at_the_table() {
        let e = err("[[target]]\nprotocol = \"imap\"\n");
        assert_eq!(e, "probes.toml:1:1: target[1].name: missing field `name`");
    }

    #[test]
    fn literal_password_refused() {
        let e = err(
            "[[target]]\nname = \"a\"\nprotocol = \"imap\"\nhost = \"h\"\nusername = \"u\"\npassword = \"hunter2\"\n",
        );
        assert!(
            e.starts_with("probes.toml:6:1: target[1] \"a\".password: passwords are never read"),
            "{e}"
        );
        assert!(!e.contains("hunter2"));
    }

    #[test]
    fn plaintext_needs_consent() {
        let e = err(
            "[[target]]\nname = \"a\"\nprotocol = \"imap\"\nhost = \"h\"\ntls = \"none\"\nusername = \"u\"\npassword_env = \"HOME\"\n",
        );
        assert!(
            e.starts_with("probes.toml:5:1: target[1] \"a\".tls: tls = \"none\" sends"),
            "{e}"
        );
    }

    #[test]
    fn duplicate_names_refused() {
        let t = "[[target]]\nname = \"a\"\nprotocol = \"imap\"\nhost = \"h\"\nusername = \"u\"\npassword_env = \"HOME\"\n";
        let e = err(&format!("{t}{t}"));
        assert!(
            e.starts_with("probes.toml:8:1: target[2] \"a\".name: duplicate target name \"a\""),
            "{e}"
        );
    }

    #[test]
    fn timeout_longer_than_interval_refused() {
        let e = err("[global]\ninterval = \"5s\"\ntimeout = \"10s\"\n");
        assert!(
            e.starts_with("probes.toml:3:1: global.timeout: timeout (10s) must not exceed"),
            "{e}"
        );
    }

    #[test]
    fn syntax_error_has_position() {
        let e = err("[[target]\n");
        assert!(e.starts_with("probes.toml:1:10: "), "{e}");
    }

    #[test]
    fn defaults_for_imap() {
        let c = parse(
            Path::new("/nonexistent/probes.toml"),
            "[[target]]\nname = \"a\"\nprotocol = \"imap\"\nhost = \"127.0.0.1\"\nusername = \"u\"\npassword_env = \"HOME\"\n",
        )
        .unwrap();
        let t = &c.targets[0];
        assert_eq!(t.region, "default");
        assert_eq!(t.interval, DEFAULT_INTERVAL);
        let ProbeSpec::Imap(s) = &t.spec else {
            panic!("an imap spec")
        };
        assert_eq!(s.endpoint.port, 993);
        assert_eq!(s.endpoint.tls, TlsMode::Implicit);
        assert_eq!(s.mailbox, "INBOX");
        assert_eq!(c.global.listen.to_string(), DEFAULT_LISTEN);
    }

    const LEGS: &str = "[[target]]\nname = \"send\"\nprotocol = \"smtp\"\nhost = \"h\"\nusername = \"u@example.test\"\npassword_env = \"HOME\"\n\
        [[target]]\nname = \"inbox\"\nprotocol = \"imap\"\nhost = \"h\"\nusername = \"u@example.test\"\npassword_env = \"HOME\"\n";

    #[test]
    fn roundtrip_refers_to_legs_anywhere_in_the_file() {
        let rt = "[[target]]\nname = \"rt\"\nprotocol = \"roundtrip\"\nsmtp_target = \"send\"\nimap_target = \"inbox\"\n";
        // Before its legs, and with no interval: one that covers 10s + 10s + 120s + 10s.
        let c = parse(Path::new("p.toml"), &format!("{rt}{LEGS}")).unwrap();
        assert_eq!(c.targets[0].name, "rt");
        assert_eq!(c.targets[0].interval, Duration::from_secs(180));
        assert_eq!(c.targets[0].timeout, Duration::from_secs(150));
        let ProbeSpec::Roundtrip(r) = &c.targets[0].spec else {
            panic!("a roundtrip spec")
        };
        assert_eq!(r.message.to.to_string(), "u@example.test");
        assert_eq!(r.message.from.to_string(), "u@example.test");
    }

    #[test]
    fn roundtrip_errors_name_the_key() {
        let rt = |extra: &str| {
            format!(
                "{LEGS}[[target]]\nname = \"rt\"\nprotocol = \"roundtrip\"\nsmtp_target = \"send\"\nimap_target = \"inbox\"\n{extra}"
            )
        };
        let e = err(&rt("").replace("smtp_target = \"send\"", "smtp_target = \"nope\""));
        assert!(
            e.contains("target[3] \"rt\".smtp_target: no smtp target named \"nope\""),
            "{e}"
        );
        let e = err(&rt("").replace("imap_target = \"inbox\"", "imap_target = \"send\""));
        assert!(
            e.contains("target[3] \"rt\".imap_target: target \"send\" is smtp, not imap"),
            "{e}"
        );
        let e = err(&rt("timeout = \"5s\"\n"));
        assert!(
            e.contains("target[3] \"rt\".timeout: a round trip's deadline is"),
            "{e}"
        );
        let e = err(&rt("interval = \"1m\"\n"));
        assert!(
            e.contains(
                "target[3] \"rt\".interval: the interval (1m) must cover one whole round trip"
            ),
            "{e}"
        );
        let e = err(&rt("delivery_timeout = \"2h\"\ninterval = \"3h\"\n"));
        assert!(
            e.contains("target[3] \"rt\".cleanup_age: must exceed delivery_timeout"),
            "{e}"
        );
        let e = err(&rt("host = \"h\"\n"));
        assert!(
            e.contains(
                "target[3] \"rt\".host: key `host` does not apply to protocol \"roundtrip\""
            ),
            "{e}"
        );
    }

    #[test]
    fn shards_split_targets_without_overlap() {
        let shards: Vec<Shard> = (0..4).map(|i| format!("{i}/4").parse().unwrap()).collect();
        let mut counts = [0usize; 4];
        for n in 0..4000 {
            let name = format!("target-{n}");
            let owners: Vec<usize> = (0..4).filter(|&i| shards[i].owns(&name)).collect();
            assert_eq!(owners.len(), 1, "exactly one shard owns {name}");
            counts[owners[0]] += 1;
        }
        assert!(
            counts.iter().all(|&c| (800..1200).contains(&c)),
            "{counts:?}"
        );
        assert!("4/4".parse::<Shard>().is_err());
        assert!("1-4".parse::<Shard>().is_err());
        let e = err("[global]\nshard = \"5/3\"\n");
        assert!(
            e.starts_with("probes.toml:2:1: global.shard: shard \"5/3\""),
            "{e}"
        );
    }

    fn oauth2_target(protocol: &str, extra: &str, oauth2: &str) -> String {
        format!(
            "[[target]]\nname = \"o\"\nprotocol = \"{protocol}\"\nhost = \"h.example\"\n\
             username = \"probe@contoso.example\"\nauth = \"oauth2\"\n{extra}\n[target.oauth2]\n{oauth2}"
        )
    }

    #[test]
    fn oauth2_presets_fill_endpoint_and_scopes() {
        let spec = |protocol: &str, oauth2: &str| {
            let c = parse(Path::new("p.toml"), &oauth2_target(protocol, "", oauth2)).unwrap();
            let creds = match &c.targets[0].spec {
                ProbeSpec::Imap(s) => s.credentials.clone(),
                ProbeSpec::Smtp(s) => s.credentials.clone().unwrap(),
                _ => unreachable!(),
            };
            match creds.secret {
                Secret::OAuth2(o) => (o.token_url.to_string(), o.scopes.clone(), o.label.clone()),
                Secret::Password(_) => panic!("oauth2 expected"),
            }
        };
        let (url, scopes, label) = spec(
            "imap",
            "provider = \"microsoft\"\ntenant = \"contoso.onmicrosoft.com\"\nclient_id = \"c1\"\nclient_secret_env = \"HOME\"\n",
        );
        assert_eq!(
            url,
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
        );
        assert_eq!(scopes, ["https://outlook.office365.com/.default"]);
        assert_eq!(label, "c1@login.microsoftonline.com");
        let (_, scopes, _) = spec(
            "smtp",
            "provider = \"microsoft\"\ntenant = \"t\"\nclient_id = \"c1\"\nrefresh_token_env = \"HOME\"\n",
        );
        assert_eq!(
            scopes,
            ["https://outlook.office.com/SMTP.Send", "offline_access"]
        );
        let (url, scopes, _) = spec(
            "imap",
            "provider = \"google\"\nclient_id = \"g1\"\nclient_secret_env = \"HOME\"\nrefresh_token_env = \"HOME\"\n",
        );
        assert_eq!(url, "https://oauth2.googleapis.com/token");
        assert_eq!(scopes, ["https://mail.google.com/"]);
        // Explicit fields win over the preset.
        let (url, scopes, _) = spec(
            "imap",
            "provider = \"google\"\ntoken_url = \"https://idp.example/t\"\nscopes = [\"x\"]\nclient_id = \"g1\"\nrefresh_token_env = \"HOME\"\n",
        );
        assert_eq!(
            (url.as_str(), scopes.as_slice()),
            ("https://idp.example/t", ["x".to_string()].as_slice())
        );
    }

    #[test]
    fn oauth2_mistakes_are_named() {
        let e = err(&oauth2_target(
            "imap",
            "",
            "provider = \"microsoft\"\nclient_id = \"c\"\nclient_secret_env = \"HOME\"\n",
        ));
        assert!(e.contains("target[1] \"o\".oauth2.tenant: missing"), "{e}");
        let e = err(&oauth2_target(
            "imap",
            "",
            "provider = \"google\"\nclient_id = \"c\"\nclient_secret_env = \"HOME\"\n",
        ));
        assert!(
            e.contains("target[1] \"o\".oauth2.grant: Google has no client-credentials grant"),
            "{e}"
        );
        let e = err(&oauth2_target(
            "imap",
            "password_env = \"HOME\"",
            "token_url = \"https://i/t\"\nclient_id = \"c\"\nclient_secret_env = \"HOME\"\n",
        ));
        assert!(
            e.contains("target[1] \"o\".password_env: has no effect with auth = \"oauth2\""),
            "{e}"
        );
        let e = err(&oauth2_target(
            "imap",
            "auth_mechanism = \"plain\"",
            "token_url = \"https://i/t\"\nclient_id = \"c\"\nclient_secret_env = \"HOME\"\n",
        ));
        assert!(
            e.contains("target[1] \"o\".auth_mechanism: \"plain\" does not fit auth = \"oauth2\""),
            "{e}"
        );
        let e = err(&oauth2_target(
            "imap",
            "",
            "token_url = \"http://i/t\"\nclient_id = \"c\"\nclient_secret_env = \"HOME\"\n",
        ));
        assert!(
            e.contains("target[1] \"o\".oauth2.token_url: must be https://"),
            "{e}"
        );
        let e = err(&oauth2_target(
            "imap",
            "",
            "token_url = \"https://i/t\"\nclient_id = \"c\"\n",
        ));
        assert!(
            e.contains("target[1] \"o\".oauth2.client_secret_file: missing"),
            "{e}"
        );
        let e = err(&oauth2_target(
            "imap",
            "",
            "token_url = \"https://i/t\"\nclient_id = \"c\"\nclient_secret_env = \"HOME\"\nbogus = 1\n",
        ));
        assert!(
            e.contains("target[1] \"o\".oauth2.bogus: unknown key; no key"),
            "{e}"
        );
    }

    /// One valid IMAP target, six lines long.
    const IMAP: &str = "[[target]]\nname = \"a\"\nprotocol = \"imap\"\nhost = \"h\"\nusername = \"u\"\npassword_env = \"HOME\"\n";

    #[test]
    fn a_config_without_targets_is_refused() {
        for text in [
            "",
            " \n\t\n\n",
            "# nothing yet\n\n   # really nothing\n",
            "[global]\ninterval = \"30s\"\n[incidents]\nstate_dir = \"/tmp\"\n",
        ] {
            assert_eq!(
                err(text),
                "probes.toml: no targets: a config without [[target]] tables would probe nothing",
                "{text:?}"
            );
        }
    }

    #[test]
    fn a_shard_that_owns_no_target_is_refused() {
        // "a" hashes to shard 0 of 2 (checked here, so the test cannot pass by accident).
        assert!(Shard { index: 0, count: 2 }.owns("a"));
        assert!(
            parse(
                Path::new("p.toml"),
                &format!("[global]\nshard = \"0/2\"\n{IMAP}")
            )
            .is_ok()
        );
        assert_eq!(
            err(&format!("[global]\nshard = \"1/2\"\n{IMAP}")),
            "probes.toml:2:1: global.shard: shard 1/2 owns no target (the file has 1), so this \
             instance would probe nothing: use fewer shards"
        );
    }

    #[test]
    fn numbers_beyond_any_fleet_are_refused() {
        let e = |extra: &str| err(&format!("{IMAP}{extra}\n"));
        assert_eq!(
            e("users = 9223372036854775808"),
            "probes.toml:7:1: target[1] \"a\".users: must be at most 10000000000"
        );
        assert_eq!(
            e("interval = \"1000000000y\""),
            "probes.toml:7:1: target[1] \"a\".interval: must be at most 24h"
        );
        assert_eq!(
            e("slow_threshold = \"1000000000y\""),
            "probes.toml:7:1: target[1] \"a\".slow_threshold: must be at most 24h"
        );
        assert_eq!(
            err(&format!("[global]\ninterval = \"1000000000y\"\n{IMAP}")),
            "probes.toml:2:1: global.interval: must be at most 24h"
        );
        assert_eq!(
            err(&format!("[incidents]\nretention = \"1000000000y\"\n{IMAP}")),
            "probes.toml:2:1: incidents.retention: must be at most 100y"
        );
        let rt = |extra: &str| {
            err(&format!(
                "{LEGS}[[target]]\nname = \"rt\"\nprotocol = \"roundtrip\"\nsmtp_target = \"send\"\nimap_target = \"inbox\"\n{extra}\n"
            ))
        };
        assert_eq!(
            rt("delivery_timeout = \"1000000000y\""),
            "probes.toml:18:1: target[3] \"rt\".delivery_timeout: must be at most 24h"
        );
        assert_eq!(
            rt("poll_interval = \"1000000000y\""),
            "probes.toml:18:1: target[3] \"rt\".poll_interval: must be at most 1h"
        );
        assert_eq!(
            rt("cleanup_age = \"1000000000y\""),
            "probes.toml:18:1: target[3] \"rt\".cleanup_age: must be at most 365d"
        );
    }

    #[test]
    fn long_values_are_cut_in_errors() {
        let long = "b".repeat(5_000_000);
        let cut = format!("{}…", "b".repeat(40));
        assert_eq!(
            err(&format!(
                "[[target]]\nname = \"{long}\"\nprotocol = \"imap\"\n"
            )),
            format!(
                "probes.toml:2:1: target[1].name: \"{cut}\" (5000000 bytes) must be 1-128 \
                 characters of letters, digits, '-', '_', '.', ':' and start with a letter or digit"
            )
        );
        // Whoever words the error (here toml/serde), and in keys too.
        let long = "b".repeat(100_000);
        assert_eq!(
            err(&format!("{IMAP}port = \"{long}\"\n")),
            format!(
                "probes.toml:7:8: target[1] \"a\".port: invalid type: string \"{cut}\" (100000 \
                 bytes), expected u16"
            )
        );
        let e = err(&format!("{IMAP}{long} = 1\n"));
        assert!(
            e.starts_with(&format!(
                "probes.toml:7:1: target[1] \"a\".{cut}: unknown key"
            )),
            "{e}"
        );
        assert!(e.len() < 300, "{e}");
    }

    #[test]
    fn a_missing_key_points_at_its_table() {
        assert_eq!(
            err(
                "[global]\ninterval = \"1m\"\n\n[[target]]\nname = \"a\"\nprotocol = \"imap\"\nhost = \"h\"\nusername = \"u\"\n"
            ),
            "probes.toml:4:1: target[1] \"a\".password_file: missing: give password_file (a file or \
             systemd credential) or password_env"
        );
    }

    #[test]
    fn unknown_keys_get_the_closest_known_key() {
        assert_eq!(
            err(&format!("{IMAP}mailbx = \"Probe\"\n")),
            "probes.toml:7:1: target[1] \"a\".mailbx: unknown key; did you mean `mailbox`?"
        );
        assert_eq!(
            err(&format!("{IMAP}Timeout = \"5s\"\n")),
            "probes.toml:7:1: target[1] \"a\".Timeout: unknown key; did you mean `timeout`?"
        );
        assert_eq!(
            err(&format!("[globl]\ninterval = \"1m\"\n{IMAP}")),
            "probes.toml:1:2: globl: unknown key; did you mean `global`?"
        );
        assert_eq!(
            err(&format!("{IMAP}bogus = 1\n")),
            "probes.toml:7:1: target[1] \"a\".bogus: unknown key; no key of this table is close to it \
             (see the configuration reference in the README)"
        );
    }

    #[test]
    fn files_named_in_the_config_are_read_bounded() {
        let e = |extra: &str| err(&format!("{IMAP}{extra}\n"));
        assert_eq!(
            e("ca_file = \"/dev/zero\""),
            "probes.toml:7:1: target[1] \"a\".ca_file: cannot read /dev/zero: larger than 4 MiB"
        );
        assert_eq!(
            err(&IMAP.replace("password_env = \"HOME\"", "password_file = \"/dev/zero\"")),
            "probes.toml:6:1: target[1] \"a\".password_file: cannot read /dev/zero: larger than 64 KiB"
        );
        assert_eq!(
            err(
                "[[target]]\nname = \"w\"\nprotocol = \"https\"\nurl = \"https://h/\"\nmethod = \"POST\"\nbody_file = \"/dev/zero\"\n"
            ),
            "probes.toml:6:1: target[1] \"w\".body_file: cannot read /dev/zero: larger than 16 MiB"
        );
        assert_eq!(
            err(&oauth2_target(
                "imap",
                "",
                "token_url = \"https://i/t\"\nclient_id = \"c\"\nclient_assertion_key_file = \"/dev/zero\"\nclient_assertion_cert_file = \"/dev/zero\"\n"
            )),
            "probes.toml:11:1: target[1] \"o\".oauth2.client_assertion_key_file: cannot read /dev/zero: \
             larger than 4 MiB"
        );
    }

    #[test]
    fn fingerprint_tracks_changes() {
        let a = "[[target]]\nname = \"a\"\nprotocol = \"imap\"\nhost = \"h\"\nusername = \"u\"\npassword_env = \"HOME\"\n";
        let b = a.replace("host = \"h\"", "host = \"h2\"");
        let fa = parse(Path::new("p.toml"), a).unwrap().targets[0].fingerprint;
        let fa2 = parse(Path::new("p.toml"), a).unwrap().targets[0].fingerprint;
        let fb = parse(Path::new("p.toml"), &b).unwrap().targets[0].fingerprint;
        assert_eq!(fa, fa2);
        assert_ne!(fa, fb);
    }
}
