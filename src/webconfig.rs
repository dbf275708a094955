//! Protection of the daemon's HTTP endpoints, from a web config file compatible with Prometheus'
//! exporter-toolkit: TLS (`tls_server_config`), bcrypt basic auth (`basic_auth_users`) and
//! extra response headers (`http_server_config.headers`).
//!
//! The same file a Prometheus exporter uses works here, and Prometheus' scrape config needs
//! nothing new (`scheme: https`, `tls_config`, `basic_auth`). Keys of the toolkit that mailprobe
//! does not implement are refused rather than silently ignored.
//!
//! bcrypt is slow on purpose (about 60 ms at cost 10), so wrong passwords must not be able to
//! buy CPU from the probes. As exporter-toolkit does, and then some:
//! - every verdict is cached per `user:password` (right ones, and the last [`REFUSED_CACHED`]
//!   wrong ones), so a password replayed from many connections costs one bcrypt run, and a
//!   check already under way is waited for rather than run again;
//! - bcrypt runs on one thread of its own, never on the async workers nor in an unbounded pool
//!   of blocking threads, and rests after each check so that it never takes more than a quarter
//!   of one core; it is fed by a bounded queue in which one client address may have
//!   [`QUEUED_PER_CLIENT`] checks at a time: a client guessing passwords waits behind its own
//!   guesses, not in front of everybody else's, and a check that finds no room is answered
//!   [`Access::Busy`] (the server sends 503 with `Retry-After`);
//! - a user name that does not exist is checked against the costliest configured hash, so it
//!   takes as long as one that does.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::sync::{Arc, LazyLock, Mutex};

use axum::http::{HeaderName, HeaderValue};
use base64::Engine;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::sync::watch;

use crate::config::ConfigError;
use crate::sync::lock;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebConfig {
    tls_server_config: Option<RawTls>,
    http_server_config: Option<RawHttp>,
    basic_auth_users: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert_file: String,
    key_file: String,
    client_auth_type: Option<String>,
    client_ca_file: Option<String>,
    min_version: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    headers: Option<BTreeMap<String, String>>,
    http2: Option<bool>,
}

/// Loaded web settings: what the HTTP server enforces.
pub struct WebConfig {
    /// The file it came from.
    pub path: PathBuf,
    /// TLS for every connection, when configured.
    pub tls: Option<Arc<ServerConfig>>,
    /// User name → bcrypt hash; empty means no authentication.
    users: BTreeMap<String, String>,
    /// The hash an unknown user's password is checked against: the costliest configured one,
    /// so that a user name that does not exist costs as much as one that does.
    decoy: Option<String>,
    /// Headers added to every response.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Verdicts reached and checks under way.
    cache: Arc<AuthCache>,
    /// bcrypt verifications run so far (what an attacker can make the daemon spend).
    bcrypt_runs: Arc<AtomicU64>,
}

/// What a request's credentials get.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Right credentials, or none needed.
    Granted,
    /// Missing, malformed or wrong credentials.
    Refused,
    /// Not checked now: this client (or everybody) has as many checks waiting as allowed.
    Busy,
}

/// Wrong `user:password` pairs remembered; the oldest is forgotten first.
pub const REFUSED_CACHED: usize = 4096;
/// Right pairs remembered. There are few (one per user, usually); more means someone who
/// knows a password varies what follows its 72nd byte (bcrypt reads no further), and the set
/// starts afresh.
const GRANTED_CACHED: usize = 256;
/// Checks waiting for the bcrypt thread, from all clients together.
const QUEUE: usize = 32;
/// Checks one client address may have waiting at once (a scraper has one credential; two
/// allow for a browser's parallel first requests with a new one).
pub const QUEUED_PER_CLIENT: usize = 2;
/// The checker thread rests after each check for this many times as long as the check took,
/// so that bcrypt never takes more than a quarter of one core, however many guesses arrive.
const REST_PER_CHECK: u32 = 3;

/// A `user:password` pair as the cache knows it: an HMAC under a key made at load, so that the
/// cache holds nothing a password could be found from by hashing guesses.
type Tag = [u8; 32];

/// Verdicts already reached, and checks under way, for one loaded web config.
struct AuthCache {
    key: ring::hmac::Key,
    state: Mutex<CacheState>,
}

#[derive(Default)]
struct CacheState {
    granted: HashSet<Tag>,
    refused: HashSet<Tag>,
    /// `refused` in the order it was filled, to forget the oldest.
    refused_order: VecDeque<Tag>,
    /// Checks queued or running; whoever asks again waits for the same one.
    pending: HashMap<Tag, watch::Receiver<Option<bool>>>,
}

impl AuthCache {
    fn new() -> AuthCache {
        let rng = ring::rand::SystemRandom::new();
        let key = ring::hmac::Key::generate(ring::hmac::HMAC_SHA256, &rng).unwrap_or_else(|_| {
            // No randomness from the OS: a key that is at least not known in advance.
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            let seed = format!("{}:{}", now.as_nanos(), std::process::id());
            ring::hmac::Key::new(ring::hmac::HMAC_SHA256, seed.as_bytes())
        });
        AuthCache {
            key,
            state: Mutex::new(CacheState::default()),
        }
    }

    fn tag(&self, user: &str, password: &str) -> Tag {
        let mut ctx = ring::hmac::Context::with_key(&self.key);
        ctx.update(user.as_bytes());
        ctx.update(b":");
        ctx.update(password.as_bytes());
        let mut tag = [0u8; 32];
        tag.copy_from_slice(&ctx.sign().as_ref()[..32]);
        tag
    }

    /// Stores a verdict and ends the check under way for it.
    fn record(&self, tag: Tag, granted: bool) {
        let mut s = lock(&self.state);
        s.pending.remove(&tag);
        if granted {
            if s.granted.len() >= GRANTED_CACHED {
                s.granted.clear();
            }
            s.granted.insert(tag);
        } else if s.refused.insert(tag) {
            s.refused_order.push_back(tag);
            if s.refused_order.len() > REFUSED_CACHED
                && let Some(oldest) = s.refused_order.pop_front()
            {
                s.refused.remove(&oldest);
            }
        }
    }
}

/// One password to check.
struct Job {
    cache: Arc<AuthCache>,
    runs: Arc<AtomicU64>,
    tag: Tag,
    password: SecretString,
    hash: String,
    known: bool,
    client: IpAddr,
    done: watch::Sender<Option<bool>>,
}

/// The one thread that runs bcrypt for every web config the daemon loads, behind a bounded
/// queue with a share per client address.
struct Checker {
    queue: Option<SyncSender<Job>>,
    queued: Mutex<HashMap<IpAddr, usize>>,
}

static CHECKER: LazyLock<Checker> = LazyLock::new(|| {
    let (queue, jobs) = sync_channel::<Job>(QUEUE);
    let started = std::thread::Builder::new()
        .name("mailprobe-bcrypt".into())
        .spawn(move || {
            for job in jobs {
                let started = std::time::Instant::now();
                CHECKER.run(job);
                std::thread::sleep(started.elapsed() * REST_PER_CHECK);
            }
        });
    let queue = match started {
        Ok(_) => Some(queue),
        Err(e) => {
            tracing::error!(
                error = %e,
                "cannot start the basic-auth thread; passwords cannot be checked"
            );
            None
        }
    };
    Checker {
        queue,
        queued: Mutex::new(HashMap::new()),
    }
});

impl Checker {
    /// Queues `job` unless its client has its share waiting or the queue is full.
    fn submit(&self, job: Job) -> bool {
        let Some(queue) = &self.queue else {
            return false;
        };
        let client = job.client;
        let mut queued = lock(&self.queued);
        if queued.get(&client).copied().unwrap_or(0) >= QUEUED_PER_CLIENT {
            return false;
        }
        if queue.try_send(job).is_err() {
            return false;
        }
        *queued.entry(client).or_insert(0) += 1;
        true
    }

    fn run(&self, job: Job) {
        let granted =
            bcrypt::verify(job.password.expose_secret(), &job.hash).unwrap_or(false) && job.known;
        job.runs.fetch_add(1, Ordering::Relaxed);
        job.cache.record(job.tag, granted);
        {
            let mut queued = lock(&self.queued);
            if let Some(n) = queued.get_mut(&job.client) {
                *n -= 1;
                if *n == 0 {
                    queued.remove(&job.client);
                }
            }
        }
        let _ = job.done.send(Some(granted));
    }
}

impl std::fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebConfig")
            .field("path", &self.path)
            .field("tls", &self.tls.is_some())
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// The largest web config file read (a few users and headers take a few KiB).
const MAX_WEB_CONFIG_BYTES: u64 = 1024 * 1024;

impl WebConfig {
    /// Reads and checks the web config at `path` (relative file names inside resolve against
    /// its directory).
    pub fn load(path: &Path) -> Result<WebConfig, ConfigError> {
        let text = crate::config::read_config_text(path, "web config", MAX_WEB_CONFIG_BYTES)?;
        let at = |key: &str, message: String| {
            let (line, column) = find_key(&text, key);
            ConfigError::Invalid {
                file: path.to_path_buf(),
                line,
                column,
                key: key.to_string(),
                message,
            }
        };
        let raw: RawWebConfig = yaml_serde::from_str(&text).map_err(|e| {
            let loc = e.location();
            ConfigError::Invalid {
                file: path.to_path_buf(),
                line: loc.as_ref().map_or(1, |l| l.line()),
                column: loc.as_ref().map_or(1, |l| l.column()),
                key: String::new(),
                message: e.to_string(),
            }
        })?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let resolve = |p: &str| {
            let p = Path::new(p);
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                dir.join(p)
            }
        };

        let tls = match raw.tls_server_config {
            None => None,
            Some(t) => Some(Arc::new(
                server_config(&t, &resolve).map_err(|(k, m)| at(k, m))?,
            )),
        };
        let mut users = BTreeMap::new();
        for (user, hash) in raw.basic_auth_users.unwrap_or_default() {
            if user.contains(':') || user.is_empty() {
                return Err(at(
                    &user,
                    "a user name must be non-empty and without ':'".into(),
                ));
            }
            if !is_bcrypt(&hash) {
                return Err(at(
                    &user,
                    "the password must be a bcrypt hash ($2a$, $2b$ or $2y$, 60 characters), \
                     e.g. from `htpasswd -nBC 10 USER`"
                        .into(),
                ));
            }
            users.insert(user, hash);
        }
        let mut headers = Vec::new();
        if let Some(http) = raw.http_server_config {
            if http.http2 == Some(false) {
                return Err(at(
                    "http2",
                    "turning HTTP/2 off is not supported; leave it out".into(),
                ));
            }
            for (name, value) in http.headers.unwrap_or_default() {
                let n = HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| at(&name, format!("{name:?} is not a header name")))?;
                let v = HeaderValue::from_str(&value)
                    .map_err(|_| at(&name, "not a valid header value".into()))?;
                headers.push((n, v));
            }
        }
        let decoy = users.values().max_by_key(|h| bcrypt_cost(h)).cloned();
        Ok(WebConfig {
            path: path.to_path_buf(),
            tls,
            users,
            decoy,
            headers,
            cache: Arc::new(AuthCache::new()),
            bcrypt_runs: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Whether requests must carry basic-auth credentials (some user is configured): what
    /// lets the notes API accept writes from other hosts than this one.
    pub fn requires_auth(&self) -> bool {
        !self.users.is_empty()
    }

    /// Checks the `Authorization` header of a request from `client`: from the cache, or by
    /// waiting for a bcrypt run on the checker thread (one per `user:password` at a time).
    pub async fn check(
        self: &Arc<Self>,
        authorization: Option<&HeaderValue>,
        client: IpAddr,
    ) -> Access {
        if self.users.is_empty() {
            return Access::Granted;
        }
        let Some((user, password)) = basic_credentials(authorization) else {
            return Access::Refused;
        };
        let tag = self.cache.tag(&user, &password);
        let mut verdict = {
            let mut state = lock(&self.cache.state);
            if state.granted.contains(&tag) {
                return Access::Granted;
            }
            if state.refused.contains(&tag) {
                return Access::Refused;
            }
            match state.pending.get(&tag) {
                // A check of the same pair is under way (its sender still there): wait for it.
                Some(running) if running.has_changed().is_ok() => running.clone(),
                _ => {
                    let (hash, known) = self.hash_for(&user);
                    let (done, verdict) = watch::channel(None);
                    let job = Job {
                        cache: self.cache.clone(),
                        runs: self.bcrypt_runs.clone(),
                        tag,
                        password: SecretString::from(password),
                        hash: hash.to_string(),
                        known,
                        client,
                        done,
                    };
                    if !CHECKER.submit(job) {
                        state.pending.remove(&tag);
                        return Access::Busy;
                    }
                    state.pending.insert(tag, verdict.clone());
                    verdict
                }
            }
        };
        match verdict.wait_for(Option::is_some).await.map(|v| *v) {
            Ok(Some(true)) => Access::Granted,
            Ok(_) => Access::Refused,
            // The checker went away without an answer.
            Err(_) => Access::Busy,
        }
    }

    /// The hash a password for `user` is checked against, and whether `user` exists.
    fn hash_for(&self, user: &str) -> (&str, bool) {
        match self.users.get(user) {
            Some(h) => (h.as_str(), true),
            None => (self.decoy.as_deref().unwrap_or_default(), false),
        }
    }
}

/// `(user, password)` of a `Basic` authorization header.
fn basic_credentials(authorization: Option<&HeaderValue>) -> Option<(String, String)> {
    let encoded = authorization?.to_str().ok()?.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// The cost a bcrypt hash was made with (0 when it cannot be read).
fn bcrypt_cost(hash: &str) -> u32 {
    hash.parse::<bcrypt::HashParts>()
        .map_or(0, |p| p.get_cost())
}

fn is_bcrypt(h: &str) -> bool {
    h.len() == 60
        && ["$2a$", "$2b$", "$2y$"].iter().any(|p| h.starts_with(p))
        && h.parse::<bcrypt::HashParts>().is_ok()
}

fn server_config(
    t: &RawTls,
    resolve: &dyn Fn(&str) -> PathBuf,
) -> Result<ServerConfig, (&'static str, String)> {
    // Read bounded like every file the config names: a device or a huge file is an error.
    let read = |key: &'static str, path: &Path| {
        crate::config::read_bounded(path, crate::config::MAX_PEM_BYTES)
            .map_err(|e| (key, format!("{}: {e}", path.display())))
    };
    let cert_path = resolve(&t.cert_file);
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(&read("cert_file", &cert_path)?)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ("cert_file", format!("{}: {e}", cert_path.display())))?;
    if certs.is_empty() {
        return Err((
            "cert_file",
            format!("{} holds no certificate", cert_path.display()),
        ));
    }
    let key_path = resolve(&t.key_file);
    let key = PrivateKeyDer::from_pem_slice(&read("key_file", &key_path)?)
        .map_err(|e| ("key_file", format!("{}: {e}", key_path.display())))?;
    let versions: &[&rustls::SupportedProtocolVersion] = match t.min_version.as_deref() {
        None | Some("TLS12") => &[&rustls::version::TLS13, &rustls::version::TLS12],
        Some("TLS13") => &[&rustls::version::TLS13],
        Some(other) => {
            return Err((
                "min_version",
                format!("{other:?} is not supported; use TLS12 or TLS13"),
            ));
        }
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| ("min_version", e.to_string()))?;
    let builder = match t.client_auth_type.as_deref() {
        None | Some("NoClientCert") => builder.with_no_client_auth(),
        Some("RequireAndVerifyClientCert") => {
            let ca = t.client_ca_file.as_deref().ok_or((
                "client_ca_file",
                "RequireAndVerifyClientCert needs client_ca_file".to_string(),
            ))?;
            let ca_path = resolve(ca);
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(&read("client_ca_file", &ca_path)?) {
                let c = c.map_err(|e| ("client_ca_file", e.to_string()))?;
                roots
                    .add(c)
                    .map_err(|e| ("client_ca_file", e.to_string()))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|e| ("client_ca_file", e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        Some(other) => {
            return Err((
                "client_auth_type",
                format!(
                    "{other:?} is not supported; use NoClientCert or RequireAndVerifyClientCert"
                ),
            ));
        }
    };
    let mut cfg = builder
        .with_single_cert(certs, key)
        .map_err(|e| ("key_file", format!("certificate and key do not fit: {e}")))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

/// 1-based line and column of the first `key:` in a YAML text (1:1 when absent).
fn find_key(text: &str, key: &str) -> (usize, usize) {
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.starts_with(&format!("{key}:")) || trimmed.starts_with(&format!("\"{key}\":")) {
            return (i + 1, line.len() - trimmed.len() + 1);
        }
    }
    (1, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let p = dir.join("web.yml");
        std::fs::write(&p, text).unwrap();
        p
    }

    #[tokio::test]
    async fn users_are_checked_against_bcrypt_and_cached() {
        let cfg = with_users("users", &[("alice", "s3cret", 4)]);
        let client: IpAddr = "192.0.2.9".parse().unwrap();
        let check = |h: Option<HeaderValue>| {
            let cfg = cfg.clone();
            async move { cfg.check(h.as_ref(), client).await }
        };
        assert_eq!(check(Some(basic("alice", "s3cret"))).await, Access::Granted);
        assert_eq!(check(Some(basic("alice", "s3cret"))).await, Access::Granted);
        assert_eq!(check(Some(basic("alice", "wrong"))).await, Access::Refused);
        assert_eq!(
            check(Some(basic("mallory", "s3cret"))).await,
            Access::Refused
        );
        assert_eq!(check(None).await, Access::Refused);
        // The first right and the two wrong pairs each took one run; the repeat none.
        assert_eq!(cfg.bcrypt_runs.load(Ordering::Relaxed), 3);
    }

    fn basic(u: &str, p: &str) -> HeaderValue {
        HeaderValue::from_str(&format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
        ))
        .unwrap()
    }

    fn cost(hash: &str) -> u32 {
        hash.parse::<bcrypt::HashParts>().unwrap().get_cost()
    }

    /// A web config with these `(user, password, bcrypt cost)` users, in its own directory.
    fn with_users(tag: &str, users: &[(&str, &str, u32)]) -> Arc<WebConfig> {
        let dir = std::env::temp_dir().join(format!("mp-web-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut text = "basic_auth_users:\n".to_string();
        for (u, p, c) in users {
            text.push_str(&format!("  {u}: '{}'\n", bcrypt::hash(p, *c).unwrap()));
        }
        let cfg = WebConfig::load(&write(&dir, &text)).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        Arc::new(cfg)
    }

    #[test]
    fn an_unknown_user_costs_the_bcrypt_work_of_a_known_one() {
        let cfg = with_users("cost", &[("alice", "a", 5)]);
        let (known, true) = cfg.hash_for("alice") else {
            panic!("alice is configured")
        };
        let (unknown, false) = cfg.hash_for("mallory") else {
            panic!("mallory is not configured")
        };
        assert_eq!(cost(unknown), cost(known));
        // With several costs, an unknown user costs as much as the costliest known one.
        let cfg = with_users("costs", &[("alice", "a", 4), ("bob", "b", 6)]);
        assert_eq!(cost(cfg.hash_for("mallory").0), 6);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_wrong_password_costs_one_bcrypt_run_however_often_it_is_tried() {
        let cfg = with_users("once", &[("alice", "s3cret", 6)]);
        let client: IpAddr = "192.0.2.1".parse().unwrap();
        let wrong = basic("alice", "wrong");
        let tries = (0..32).map(|_| cfg.check(Some(&wrong), client));
        let answers = futures::future::join_all(tries).await;
        assert!(answers.iter().all(|a| *a == Access::Refused), "{answers:?}");
        for _ in 0..10 {
            assert_eq!(cfg.check(Some(&wrong), client).await, Access::Refused);
        }
        assert_eq!(cfg.bcrypt_runs.load(Ordering::Relaxed), 1);
        let right = basic("alice", "s3cret");
        assert_eq!(cfg.check(Some(&right), client).await, Access::Granted);
        assert_eq!(cfg.check(Some(&right), client).await, Access::Granted);
        assert_eq!(cfg.bcrypt_runs.load(Ordering::Relaxed), 2);
        // No header, or one that is not Basic, costs nothing.
        assert_eq!(cfg.check(None, client).await, Access::Refused);
        let bearer = HeaderValue::from_static("Bearer x");
        assert_eq!(cfg.check(Some(&bearer), client).await, Access::Refused);
        assert_eq!(cfg.bcrypt_runs.load(Ordering::Relaxed), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_guessing_client_waits_for_its_own_checks_and_others_still_get_theirs() {
        let cfg = with_users("guess", &[("alice", "s3cret", 8)]);
        let guesser: IpAddr = "192.0.2.2".parse().unwrap();
        let scraper: IpAddr = "192.0.2.3".parse().unwrap();
        let guesses: Vec<_> = (0..64)
            .map(|i| basic("alice", &format!("guess-{i}")))
            .collect();
        let right = basic("alice", "s3cret");
        let (answers, scrape) = tokio::join!(
            futures::future::join_all(guesses.iter().map(|g| cfg.check(Some(g), guesser))),
            cfg.check(Some(&right), scraper),
        );
        assert_eq!(scrape, Access::Granted);
        let busy = answers.iter().filter(|a| **a == Access::Busy).count();
        let refused = answers.iter().filter(|a| **a == Access::Refused).count();
        assert_eq!(busy + refused, 64, "{answers:?}");
        // One client gets a couple of checks queued at a time, not 64.
        assert!(busy >= 56, "{answers:?}");
        assert!(cfg.bcrypt_runs.load(Ordering::Relaxed) <= 9);
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let dir = std::env::temp_dir().join(format!("mp-web2-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = write(&dir, "basic_auth_users:\n  alice: plaintext\n");
        let e = WebConfig::load(&p).unwrap_err().to_string();
        assert!(
            e.contains("web.yml:2:3: alice: the password must be a bcrypt hash"),
            "{e}"
        );
        let p = write(
            &dir,
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  cipher_suites: [x]\n",
        );
        let e = WebConfig::load(&p).unwrap_err().to_string();
        assert!(e.contains("unknown field `cipher_suites`"), "{e}");
        let p = write(
            &dir,
            "tls_server_config:\n  cert_file: missing.pem\n  key_file: b\n",
        );
        let e = WebConfig::load(&p).unwrap_err().to_string();
        assert!(e.contains("web.yml:2:3: cert_file: "), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
