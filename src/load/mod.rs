//! Loading `probes.toml`: reads the file (bounded), parses `[global]` and `[incidents]`, and
//! hands each `[[target]]` table to its protocol's spec through the probe registry. It sits
//! above `probe` (which it asks) and below the daemon; `config` below both holds what every
//! protocol's spec shares.
//!
//! Loading is in passes, like rathole's. serde first reads the document: `[global]` and
//! `[incidents]` into their raw models, each `[[target]]` into the keys every target has
//! (`RawTarget`) and, a second pass, the rest of the table into its protocol's own struct
//! (`#[serde(deny_unknown_fields)]`): a key of another protocol is refused as not applying to
//! this one, a misspelt key gets the closest known one. Then the values are checked and turned
//! into a [`Config`] of ready-to-probe targets (secrets read, TLS roots loaded). Every error
//! names file, line, column and key through one [`Locator`].

mod global;
mod incidents;
mod maintenance;
mod metrics;
mod prometheus;
mod provider;
mod status;
mod warnings;

mod chunks;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use crate::config::common::{check_label, check_timing};
use crate::config::locate::unknown_key;
use crate::config::{
    ConfigError, ConfigWarning, KeyPath, LoadState, Locator, MAX_CONFIG_BYTES, TargetCx,
    read_config_text,
};
use crate::hash::Fnv64;
use crate::probe::registry::spec_kind;
use crate::probe::spec::{ReadTable, Targets, field_names};
use crate::probe::{Protocol, Target};
pub use global::{DEFAULT_INTERVAL, DEFAULT_LISTEN, Global, Shard};
pub use incidents::{DEFAULT_STATE_DIR, IncidentSettings, Policy};
pub use maintenance::instant;
pub use metrics::MetricsSettings;
pub use prometheus::{PrometheusSettings, QueryAuth, Source};
pub use provider::{DEFAULT_PROVIDER_INTERVAL, DEFAULT_PROVIDER_TIMEOUT, MAX_FEED_BYTES};
pub use status::{Service, ServiceText, StatusSettings};
use warnings::TimeoutFrom;

/// More users than any fleet has; sums over 100,000 targets still fit SQLite's INTEGER.
const MAX_USERS: u64 = 10_000_000_000;

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
    pub metrics: MetricsSettings,
    /// `[status]`: the public status page.
    pub status: StatusSettings,
    /// `[[target]]`s in file order.
    pub targets: Vec<Arc<Target>>,
    /// `[[provider]]`s: the provider status feeds polled beside the probes.
    pub providers: Vec<Arc<crate::provider::ProviderSpec>>,
    /// `[[maintenance]]` windows in file order.
    pub maintenance: Vec<crate::config::maintenance::Window>,
    /// The shard given on the command line (`run --shard`), which outranks `[global] shard`
    /// at start and at every reload.
    pub shard_override: Option<Shard>,
    /// What `check` warns about (valid, but probably not what was meant).
    pub warnings: Vec<ConfigWarning>,
    /// `[prometheus]`: set when `[global] source = "prometheus"` (the instance probes nothing
    /// and reads every location's results from there).
    pub prometheus: Option<Arc<PrometheusSettings>>,
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
    let doc = chunks::parse(&text).map_err(|e| Locator::syntax(path, &text, &e))?;
    let loc = Locator::new(path, &text, doc.get_ref());
    let read = read(&loc, &doc)?;
    incidents::incidents(&loc, &LoadState::new(path), read.incidents)
}

/// What `mailprobe maintenance` and `mailprobe incidents note` need from the config, read
/// without any target's secrets (an admin's shell has no systemd credentials).
#[derive(Debug)]
pub struct Light {
    /// `[incidents]`: where the database is.
    pub incidents: IncidentSettings,
    /// `[[maintenance]]`, checked against the targets' names and regions.
    pub maintenance: Vec<crate::config::maintenance::Window>,
    /// Every target's name.
    pub targets: std::collections::BTreeSet<String>,
    /// Every target's region.
    pub regions: std::collections::BTreeSet<String>,
}

/// Reads [`Light`] from the config at `path`.
pub fn load_light(path: &Path) -> Result<Light, ConfigError> {
    let text = read_config_text(path, "config", MAX_CONFIG_BYTES)?;
    let doc = chunks::parse(&text).map_err(|e| Locator::syntax(path, &text, &e))?;
    let loc = Locator::new(path, &text, doc.get_ref());
    let read = read(&loc, &doc)?;
    let incidents = incidents::incidents(&loc, &LoadState::new(path), read.incidents)?;
    let targets = read.targets.iter().map(|(t, _)| t.name.clone()).collect();
    let regions = read
        .targets
        .iter()
        .map(|(t, _)| t.region.clone().unwrap_or_else(|| "default".into()))
        .collect();
    let maintenance = maintenance::windows(&loc, read.maintenance, &targets, &regions)?;
    Ok(Light {
        incidents,
        maintenance,
        targets,
        regions,
    })
}

/// Parses and validates config `text` as if read from `path` (relative paths resolve against
/// its directory).
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let doc = chunks::parse(text).map_err(|e| Locator::syntax(path, text, &e))?;
    let loc = Locator::new(path, text, doc.get_ref());
    let read = read(&loc, &doc)?;
    Loader {
        loc: &loc,
        state: LoadState::new(path),
        providers: Vec::new(),
    }
    .config(read)
}

/// The top of the file as written; `[[target]]` tables are read on their own.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    global: global::RawGlobal,
    #[serde(default)]
    incidents: incidents::RawIncidents,
    #[serde(default)]
    metrics: MetricsSettings,
    #[serde(default)]
    provider: Vec<provider::RawProvider>,
    #[serde(default)]
    status: status::RawStatus,
    #[serde(default)]
    maintenance: Vec<maintenance::RawMaintenance>,
    prometheus: Option<prometheus::RawPrometheus>,
    /// Taken out before this pass (see [`read`]); named so that it is a known key.
    #[serde(default, rename = "target")]
    _target: serde::de::IgnoredAny,
}

/// The keys every `[[target]]` has, whatever its protocol.
#[derive(Clone, Deserialize, Hash)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    name: String,
    region: Option<String>,
    protocol: Protocol,
    #[serde(default, with = "humantime_serde")]
    interval: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    slow_threshold: Option<Duration>,
    users: Option<u64>,
    /// The provider the target is on (a `[[provider]]` name or a kind); inferred from the
    /// host name when not given.
    provider: Option<String>,
}

/// What serde read, before any value is checked.
struct Read {
    global: global::RawGlobal,
    incidents: incidents::RawIncidents,
    metrics: MetricsSettings,
    providers: Vec<provider::RawProvider>,
    status: status::RawStatus,
    maintenance: Vec<maintenance::RawMaintenance>,
    prometheus: Option<prometheus::RawPrometheus>,
    /// Each `[[target]]`: the keys every target has, and its protocol's table.
    targets: Vec<(RawTarget, Box<dyn ReadTable>)>,
}

/// serde's passes over the document: the top tables, then each `[[target]]` split into the
/// keys every target has and its protocol's own keys.
fn read(loc: &Locator<'_>, doc: &Spanned<DeTable<'_>>) -> Result<Read, ConfigError> {
    // The locator keeps `doc` for the errors; serde consumes what it reads, so each part is
    // copied as it is read: the top tables together (small), each target on its own. A copy
    // of the whole document at once was the largest transient of a load (about 14 MB of
    // 10,000 targets, held through the reading of all of them).
    let span = doc.span();
    let top: DeTable<'_> = doc
        .get_ref()
        .iter()
        .filter(|(k, _)| k.get_ref() != "target")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let targets = doc
        .get_ref()
        .iter()
        .find(|(k, _)| k.get_ref() == "target")
        .map(|(_, v)| v);
    let raw = RawConfig::deserialize(toml::de::Deserializer::from(Spanned::new(span, top)))
        .map_err(|e| loc.serde_error(&e))?;
    let items: &[Spanned<DeValue<'_>>] = match targets {
        None => &[],
        Some(value) => match value.get_ref() {
            DeValue::Array(items) => items,
            other => {
                // serde's own words for a `target` that is not an array of tables.
                let e = Vec::<RawTarget>::deserialize(ValueDeserializer::from(Spanned::new(
                    value.span(),
                    other.clone(),
                )))
                .err();
                return Err(e.map_or_else(
                    || loc.error(&KeyPath::table("target"), "must be [[target]] tables"),
                    |e| loc.serde_error(&e),
                ));
            }
        },
    };
    let common = field_names::<RawTarget>();
    let mut targets = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let span = item.span();
        let table = match item.get_ref().clone() {
            DeValue::Table(table) => table,
            other => return Err(serde_error_of::<RawTarget>(loc, Spanned::new(span, other))),
        };
        let (own, rest): (DeTable<'_>, DeTable<'_>) = table
            .into_iter()
            .partition(|(k, _)| common.contains(&k.get_ref().as_ref()));
        let raw = RawTarget::deserialize(ValueDeserializer::from(Spanned::new(
            span.clone(),
            DeValue::Table(own),
        )))
        .map_err(|e| loc.serde_error(&e))?;
        let table = spec_kind(raw.protocol)
            .read(Spanned::new(span, DeValue::Table(rest)))
            .map_err(|e| target_key_error(loc, &e, i, raw.protocol, common))?;
        targets.push((raw, table));
    }
    Ok(Read {
        global: raw.global,
        incidents: raw.incidents,
        metrics: raw.metrics,
        providers: raw.provider,
        status: raw.status,
        maintenance: raw.maintenance,
        prometheus: raw.prometheus,
        targets,
    })
}

/// serde's error for `T` read from `value`, located.
fn serde_error_of<T: serde::de::DeserializeOwned>(
    loc: &Locator<'_>,
    value: Spanned<DeValue<'_>>,
) -> ConfigError {
    match T::deserialize(ValueDeserializer::from(value)) {
        Err(e) => loc.serde_error(&e),
        Ok(_) => loc.error(&KeyPath::table("target"), "must be [[target]] tables"),
    }
}

/// serde's error from the second pass over target `i`: a key of this table that its protocol
/// does not know is said not to apply when another protocol has it, else it gets the closest
/// key of the target (its protocol's or every target's).
fn target_key_error(
    loc: &Locator<'_>,
    e: &toml::de::Error,
    i: usize,
    protocol: Protocol,
    common: &[&str],
) -> ConfigError {
    let path = KeyPath::target(i);
    let name = e
        .message()
        .trim()
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split('`').next());
    let Some(name) = name.filter(|n| loc.serde_path(e).to_string() == path.key(n).to_string())
    else {
        return loc.serde_error(e);
    };
    if Protocol::ALL
        .iter()
        .any(|p| *p != protocol && spec_kind(*p).keys().contains(&name))
    {
        return loc.error(
            &path.key(name),
            format!(
                "key `{name}` does not apply to protocol \"{}\"",
                protocol.as_str()
            ),
        );
    }
    let known: Vec<&str> = common
        .iter()
        .chain(spec_kind(protocol).keys())
        .copied()
        .collect();
    loc.error(&path.key(name), unknown_key(name, &known))
}

/// Checks what serde read and builds the targets.
struct Loader<'a> {
    loc: &'a Locator<'a>,
    state: LoadState,
    /// The `[[provider]]`s, read before the targets that name them.
    providers: Vec<Arc<crate::provider::ProviderSpec>>,
}

impl Loader<'_> {
    fn config(mut self, read: Read) -> Result<Config, ConfigError> {
        let global = global::global(self.loc, &self.state, read.global)?;
        self.state.net = global.net.clone();
        let incidents = incidents::incidents(self.loc, &self.state, read.incidents)?;
        self.providers = provider::providers(self.loc, &mut self.state, read.providers)?;
        let status = status::status(self.loc, &self.state, read.status, global.web.clone())?;
        let source = global.source;
        let prometheus =
            prometheus::prometheus(self.loc, &mut self.state, source, read.prometheus)?;
        if source == Source::Prometheus && !read.targets.is_empty() {
            return Err(self.loc.error(
                &KeyPath::target(0),
                "with source = \"prometheus\" this instance probes nothing: its targets are \
                 what the probing instances report to Prometheus (remove the [[target]] tables)",
            ));
        }
        let mut names: HashMap<String, usize> = HashMap::new();
        for (i, (t, _)) in read.targets.iter().enumerate() {
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
        // Where each target's timeout came from, for the warnings.
        let timeouts: HashMap<String, (usize, TimeoutFrom)> = read
            .targets
            .iter()
            .enumerate()
            .map(|(i, (t, _))| {
                let from = match (t.timeout, t.interval) {
                    (Some(_), _) => TimeoutFrom::Target,
                    (None, Some(iv)) if iv < global.timeout => TimeoutFrom::Interval,
                    (None, _) => TimeoutFrom::Global,
                };
                (t.name.clone(), (i, from))
            })
            .collect();
        // Round trips refer to other targets by name, wherever they stand in the file: build
        // the others first, then those, and keep file order.
        let mut slots: Vec<Option<Arc<Target>>> = vec![None; read.targets.len()];
        let mut built: Targets = HashMap::new();
        let mut later = Vec::new();
        for (i, (t, table)) in read.targets.into_iter().enumerate() {
            if table.names_targets() {
                later.push((i, t, table));
                continue;
            }
            let target = Arc::new(self.target(&global, i, t, table, &built)?);
            built.insert(target.name.clone(), target.clone());
            slots[i] = Some(target);
        }
        for (i, t, table) in later {
            slots[i] = Some(Arc::new(self.target(&global, i, t, table, &built)?));
        }
        let targets: Vec<Arc<Target>> = slots.into_iter().flatten().collect();
        let maintenance = maintenance::windows(
            self.loc,
            read.maintenance,
            &targets.iter().map(|t| t.name.clone()).collect(),
            &targets.iter().map(|t| t.region.clone()).collect(),
        )?;
        let mut config = Config {
            path: self.loc.file.to_path_buf(),
            global,
            incidents,
            metrics: read.metrics,
            status,
            targets,
            providers: std::mem::take(&mut self.providers),
            maintenance,
            shard_override: None,
            warnings: Vec::new(),
            prometheus: prometheus.map(Arc::new),
        };
        // An empty file (or one of comments) would silently turn monitoring off, and on
        // reload remove every target as if it had recovered.
        if config.targets.is_empty() && source == Source::Probes {
            return Err(ConfigError::NothingToProbe {
                file: config.path.clone(),
                message: "no targets: a config without [[target]] tables would probe nothing"
                    .into(),
            });
        }
        if let Some(m) = config.unowned_shard() {
            return Err(self.loc.error(&KeyPath::table("global").key("shard"), m));
        }
        config.warnings = warnings::login_time(self.loc, &config.targets, &timeouts);
        Ok(config)
    }

    /// Checks the keys every target has, then hands the rest to its protocol's spec.
    fn target(
        &mut self,
        global: &Global,
        i: usize,
        t: RawTarget,
        table: Box<dyn ReadTable>,
        built: &Targets,
    ) -> Result<Target, ConfigError> {
        let loc = self.loc;
        let path = KeyPath::target(i);
        check_label(&t.name).map_err(|m| loc.error(&path.key("name"), m))?;
        let region = t.region.clone().unwrap_or_else(|| "default".to_string());
        check_label(&region).map_err(|m| loc.error(&path.key("region"), m))?;
        if t.users.is_some_and(|u| u > MAX_USERS) {
            return Err(loc.error(&path.key("users"), format!("must be at most {MAX_USERS}")));
        }
        // Only protocols that sign in take the key, and only to refuse it here.
        if loc.keys_of(&path).iter().any(|(k, _)| k == "password") {
            return Err(loc.error(
                &path.key("password"),
                "passwords are never read from probes.toml: use password_file (a file, or a \
                 systemd credential) or password_env",
            ));
        }

        let mut interval = t.interval.unwrap_or(global.interval);
        // A table that names other targets is built first: its deadline may be its own.
        let early = if table.names_targets() {
            None
        } else {
            Some(timing(loc, &path, global, &t, interval)?)
        };
        let mut fp = Fnv64::default();
        t.hash(&mut fp);
        table.hash_into(&mut fp);
        let mut cx = TargetCx::new(loc, path.clone(), &mut self.state, fp);
        let spec = table.build(&mut cx, built)?;
        let mut fp = cx.fp;
        if let Some(p) = &t.provider {
            provider::check_target_provider(p, &self.providers)
                .map_err(|m| loc.error(&path.key("provider"), m))?;
        }
        let provider = t.provider.clone().or_else(|| {
            spec.get()
                .endpoint()
                .and_then(|e| crate::provider::infer_from_host(&e.host))
                .map(|k| k.as_str().to_string())
        });
        let (timeout, slow_threshold) = match spec.get().own_deadline() {
            Some(own) => {
                if t.interval.is_none() && own.deadline > interval {
                    // Without an interval of its own, such a target runs as often as it can
                    // finish: its deadline, rounded up to whole minutes.
                    interval = Duration::from_secs(own.deadline.as_secs().div_ceil(60) * 60);
                }
                let slow = t.slow_threshold.unwrap_or(own.slow_default);
                if own.deadline > interval {
                    return Err(loc.error(
                        &path.key("interval"),
                        format!(
                            "the interval ({}) must cover {}",
                            humantime::format_duration(interval),
                            own.explain
                        ),
                    ));
                }
                check_timing(loc, &path, interval, own.deadline, slow)?;
                (own.deadline, slow)
            }
            None => match early {
                Some(timing) => timing,
                None => timing(loc, &path, global, &t, interval)?,
            },
        };
        // What it takes from [global] or works out defines it too: a reload that changes only
        // those must not leave the old settings running as "unchanged".
        (interval, timeout, slow_threshold, &provider, &region).hash(&mut fp);
        let fingerprint = fp.finish();
        Ok(Target {
            name: t.name,
            region,
            interval,
            timeout,
            slow_threshold,
            users: t.users,
            provider,
            spec,
            fingerprint,
        })
    }
}

/// A target's timeout and slow threshold, its own or `[global]`'s, checked against its
/// interval; a target that shortens its interval below the global timeout gets a fitting one.
fn timing(
    loc: &Locator<'_>,
    path: &KeyPath,
    global: &Global,
    t: &RawTarget,
    interval: Duration,
) -> Result<(Duration, Duration), ConfigError> {
    let timeout = t.timeout.unwrap_or(global.timeout.min(interval));
    let slow = t.slow_threshold.unwrap_or(global.slow_threshold);
    check_timing(loc, path, interval, timeout, slow)?;
    Ok((timeout, slow))
}

impl Config {
    /// Takes `old`'s copy of every target a reload left unchanged (same name, same
    /// fingerprint), so that one copy of each stays in memory: the scheduler keeps running the
    /// old one, and this config, the incident service and the liveness check would otherwise
    /// hold a second, identical one until the next restart.
    pub fn share_unchanged(&mut self, old: &Config) {
        let before: HashMap<&str, &Arc<Target>> =
            old.targets.iter().map(|t| (t.name.as_str(), t)).collect();
        for t in &mut self.targets {
            if let Some(o) = before.get(t.name.as_str())
                && o.fingerprint == t.fingerprint
            {
                *t = Arc::clone(o);
            }
        }
    }

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
