//! `[global]`: daemon-wide settings and every target's defaults, and the shard of the targets
//! this instance probes.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::config::common::check_timing;
use crate::config::endpoint::dns_servers;
use crate::config::{ConfigError, IpProtocol, KeyPath, LoadState, Locator, LogFormat, NetSettings};
use crate::hash::stable_hash;
use crate::webconfig::WebConfig;

/// Where the daemon listens when `[global] listen` is not set.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9783";
/// Time between two probes of a target, when neither it nor `[global]` says.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_SLOW: Duration = Duration::from_secs(2);
const DEFAULT_CONCURRENCY: usize = 64;

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
    pub web: Option<Arc<WebConfig>>,
    /// The part of the targets this instance probes, when several split a large fleet.
    pub shard: Option<Shard>,
    /// Targets' default address families and name servers (`ip_protocol`, `dns_servers`).
    pub net: NetSettings,
    /// Whether this instance probes, or reads every location's results from Prometheus.
    pub source: super::Source,
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

/// `[global]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGlobal {
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
    ip_protocol: Option<IpProtocol>,
    source: Option<super::Source>,
}

/// Checks `[global]` and fills in its defaults.
pub(super) fn global(
    loc: &Locator<'_>,
    load: &LoadState,
    g: RawGlobal,
) -> Result<Global, ConfigError> {
    let path = KeyPath::table("global");
    let listen = match g.listen {
        None => DEFAULT_LISTEN
            .parse()
            .expect("default listen address parses"),
        Some(s) => s.parse().map_err(|_| {
            loc.error(
                &path.key("listen"),
                format!("{s:?} is not an address:port such as \"127.0.0.1:9783\""),
            )
        })?,
    };
    let interval = g.interval.unwrap_or(DEFAULT_INTERVAL);
    let timeout = g.timeout.unwrap_or(DEFAULT_TIMEOUT);
    let slow_threshold = g.slow_threshold.unwrap_or(DEFAULT_SLOW);
    check_timing(loc, &path, interval, timeout, slow_threshold)?;
    let concurrency = g.concurrency.unwrap_or(DEFAULT_CONCURRENCY);
    if !(1..=100_000).contains(&concurrency) {
        return Err(loc.error(&path.key("concurrency"), "must be between 1 and 100000"));
    }
    let log_level = g.log_level.unwrap_or_else(|| "info".to_string());
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(&log_level) {
        return Err(loc.error(&path.key("log_level"), format!("not a log filter: {e}")));
    }
    let web = match &g.web_config_file {
        None => None,
        Some(f) => {
            let file = load.resolve_path(f);
            if !file.exists() {
                return Err(loc.error(
                    &path.key("web_config_file"),
                    format!("{} does not exist", file.display()),
                ));
            }
            Some(Arc::new(WebConfig::load(&file)?))
        }
    };
    let shard = match &g.shard {
        None => None,
        Some(s) => Some(
            s.parse::<Shard>()
                .map_err(|m| loc.error(&path.key("shard"), m))?,
        ),
    };
    let net = NetSettings {
        ip_protocol: g.ip_protocol.unwrap_or_default(),
        dns_servers: match &g.dns_servers {
            Some(list) => Some(dns_servers(loc, &path.key("dns_servers"), list)?),
            None => None,
        },
    };
    Ok(Global {
        source: g.source.unwrap_or_default(),
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
