//! `[status]`: the public status page — its title, time zone, the words it uses for services
//! and regions, and the listener it may be published on (apart from `/metrics` and reloads).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use serde::Deserialize;

use crate::config::{ConfigError, KeyPath, LoadState, Locator};
use crate::probe::Protocol;
use crate::webconfig::WebConfig;

/// What a protocol gives the people whose mail it is: the page's components are these per
/// region, not protocols.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Service {
    /// Reading mail: IMAP, POP3, Graph and Gmail reads.
    Reading,
    /// Sending mail: SMTP submission.
    Sending,
    /// Receiving mail from the internet: MX.
    Receiving,
    /// Webmail and apps: HTTPS, JMAP.
    Webmail,
    /// Mail delivery end to end: round trips.
    Delivery,
}

impl Service {
    /// Every service, in page order.
    pub const ALL: [Service; 5] = [
        Service::Reading,
        Service::Sending,
        Service::Receiving,
        Service::Webmail,
        Service::Delivery,
    ];

    /// What a protocol's probes stand for; exhaustive, so a new protocol must say.
    pub fn of(p: Protocol) -> Service {
        match p {
            Protocol::Imap | Protocol::Pop3 | Protocol::Graph | Protocol::Gmail => Service::Reading,
            Protocol::Mx => Service::Receiving,
            Protocol::Smtp => Service::Sending,
            Protocol::Roundtrip => Service::Delivery,
            Protocol::Https => Service::Webmail,
        }
    }

    /// The key in `[status.services]` and the JSON.
    pub fn key(self) -> &'static str {
        match self {
            Service::Reading => "reading",
            Service::Sending => "sending",
            Service::Receiving => "receiving",
            Service::Webmail => "webmail",
            Service::Delivery => "delivery",
        }
    }

    /// The name shown when the config gives none.
    pub fn default_name(self) -> &'static str {
        match self {
            Service::Reading => "Reading mail",
            Service::Sending => "Sending mail",
            Service::Receiving => "Receiving mail from the internet",
            Service::Webmail => "Webmail and apps",
            Service::Delivery => "Mail delivery",
        }
    }

    /// What people cannot do when it is down, after "cannot": "read mail".
    pub fn verb(self) -> &'static str {
        match self {
            Service::Reading => "read mail",
            Service::Sending => "send mail",
            Service::Receiving => "receive mail from the internet",
            Service::Webmail => "use webmail and apps",
            Service::Delivery => "get mail delivered",
        }
    }

    /// Parses a `[status.services]` key.
    pub fn parse(s: &str) -> Option<Service> {
        Service::ALL.into_iter().find(|v| v.key() == s)
    }
}

/// How one service is shown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceText {
    /// Display name.
    pub name: String,
    /// One line under it, may be empty.
    pub description: String,
}

/// `[status]`, checked, with defaults filled in.
#[derive(Clone, Debug)]
pub struct StatusSettings {
    /// The page's heading and title.
    pub title: String,
    /// The IANA zone times are shown in ("Europe/Berlin"); UTC by default.
    pub time_zone: jiff::tz::TimeZone,
    /// Its name as configured, for the page's footer.
    pub time_zone_name: String,
    /// Names and descriptions per service.
    pub services: BTreeMap<Service, ServiceText>,
    /// Display names of regions ("eu-west" → "Europe"); a region not listed shows as is.
    pub regions: BTreeMap<String, String>,
    /// Where the public page alone is served, so it can be published.
    pub listen: Option<SocketAddr>,
    /// TLS and basic auth of the public listener; `[global]`'s when not set.
    pub web: Option<Arc<WebConfig>>,
    /// Whether `web_config_file` was set here (else `[global]`'s applies).
    pub own_web: bool,
}

impl PartialEq for StatusSettings {
    fn eq(&self, other: &Self) -> bool {
        self.title == other.title
            && self.time_zone_name == other.time_zone_name
            && self.services == other.services
            && self.regions == other.regions
            && self.listen == other.listen
            && self.own_web == other.own_web
    }
}

impl Default for StatusSettings {
    fn default() -> Self {
        StatusSettings {
            title: DEFAULT_TITLE.into(),
            time_zone: jiff::tz::TimeZone::UTC,
            time_zone_name: "UTC".into(),
            services: Service::ALL
                .into_iter()
                .map(|s| {
                    (
                        s,
                        ServiceText {
                            name: s.default_name().into(),
                            description: String::new(),
                        },
                    )
                })
                .collect(),
            regions: BTreeMap::new(),
            listen: None,
            web: None,
            own_web: false,
        }
    }
}

impl StatusSettings {
    /// A service's display name.
    pub fn name(&self, s: Service) -> &str {
        self.services
            .get(&s)
            .map_or(s.default_name(), |t| t.name.as_str())
    }

    /// A region's display name.
    pub fn region<'a>(&'a self, r: &'a str) -> &'a str {
        self.regions.get(r).map_or(r, String::as_str)
    }
}

/// The title when none is configured.
pub const DEFAULT_TITLE: &str = "Mail service status";

/// `[status]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStatus {
    title: Option<String>,
    time_zone: Option<String>,
    listen: Option<String>,
    web_config_file: Option<String>,
    #[serde(default)]
    services: BTreeMap<String, RawService>,
    #[serde(default)]
    regions: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    name: Option<String>,
    description: Option<String>,
}

/// Longest title, name or description the page takes.
const MAX_TEXT: usize = 200;

/// Checks `[status]` and fills in its defaults; the public listener's web config is
/// `[global]`'s unless this table names its own.
pub(super) fn status(
    loc: &Locator<'_>,
    load: &LoadState,
    raw: RawStatus,
    global_web: Option<Arc<WebConfig>>,
) -> Result<StatusSettings, ConfigError> {
    let path = KeyPath::table("status");
    let mut s = StatusSettings::default();
    let text = |key: &KeyPath, v: String| -> Result<String, ConfigError> {
        let v = v.trim().to_string();
        if v.is_empty() || v.chars().count() > MAX_TEXT || v.chars().any(char::is_control) {
            return Err(loc.error(
                key,
                format!("must be 1 to {MAX_TEXT} characters on one line"),
            ));
        }
        Ok(v)
    };
    if let Some(t) = raw.title {
        s.title = text(&path.key("title"), t)?;
    }
    if let Some(z) = raw.time_zone {
        s.time_zone = jiff::tz::TimeZone::get(&z).map_err(|e| {
            loc.error(
                &path.key("time_zone"),
                format!("{z:?} is not a time zone this system knows (an IANA name such as \"Europe/Berlin\"): {e}"),
            )
        })?;
        s.time_zone_name = z;
    }
    if let Some(l) = raw.listen {
        s.listen = Some(l.parse().map_err(|_| {
            loc.error(
                &path.key("listen"),
                format!("{l:?} is not an address:port such as \"0.0.0.0:8080\""),
            )
        })?);
    }
    s.web = global_web;
    if let Some(f) = &raw.web_config_file {
        let file = load.resolve_path(f);
        if !file.exists() {
            return Err(loc.error(
                &path.key("web_config_file"),
                format!("{} does not exist", file.display()),
            ));
        }
        s.web = Some(Arc::new(WebConfig::load(&file)?));
        s.own_web = true;
    }
    let services_path = path.key("services");
    for (key, v) in raw.services {
        let at = services_path.key(&key);
        let Some(service) = Service::parse(&key) else {
            let known: Vec<&str> = Service::ALL.iter().map(|s| s.key()).collect();
            return Err(loc.error(&at, crate::config::locate::unknown_key(&key, &known)));
        };
        let entry = s
            .services
            .get_mut(&service)
            .expect("every service has text");
        if let Some(n) = v.name {
            entry.name = text(&at.key("name"), n)?;
        }
        if let Some(d) = v.description {
            entry.description = text(&at.key("description"), d)?;
        }
    }
    let regions_path = path.key("regions");
    for (region, name) in raw.regions {
        let name = text(&regions_path.key(&region), name)?;
        s.regions.insert(region, name);
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_protocol_is_a_service() {
        for p in Protocol::ALL {
            let s = Service::of(*p);
            assert_eq!(Service::parse(s.key()), Some(s));
        }
        assert_eq!(Service::of(Protocol::Imap).default_name(), "Reading mail");
        assert_eq!(Service::of(Protocol::Smtp).default_name(), "Sending mail");
        assert_eq!(
            Service::of(Protocol::Https).default_name(),
            "Webmail and apps"
        );
        assert_eq!(
            Service::of(Protocol::Roundtrip).default_name(),
            "Mail delivery"
        );
    }

    fn parse(extra: &str) -> Result<StatusSettings, String> {
        let text = format!(
            "{extra}\n[[target]]\nname = \"a\"\nprotocol = \"imap\"\nhost = \"h\"\n\
             username = \"u\"\npassword_env = \"HOME\"\n"
        );
        crate::load::parse(std::path::Path::new("p.toml"), &text)
            .map(|c| c.status)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_overrides() {
        let s = parse("").unwrap();
        assert_eq!(s.title, DEFAULT_TITLE);
        assert_eq!(s.time_zone_name, "UTC");
        assert_eq!(
            s.name(Service::Receiving),
            "Receiving mail from the internet"
        );
        assert_eq!(s.listen, None);
        let s = parse(
            "[status]\ntitle = \"Example Mail\"\ntime_zone = \"Europe/Berlin\"\n\
             listen = \"127.0.0.1:0\"\n[status.services.reading]\nname = \"Mailboxes\"\n\
             description = \"IMAP and the apps\"\n[status.regions]\neu-west = \"Europe\"\n",
        )
        .unwrap();
        assert_eq!(s.title, "Example Mail");
        assert_eq!(s.time_zone_name, "Europe/Berlin");
        assert_eq!(s.name(Service::Reading), "Mailboxes");
        assert_eq!(
            s.services[&Service::Reading].description,
            "IMAP and the apps"
        );
        assert_eq!(s.region("eu-west"), "Europe");
        assert_eq!(s.region("us"), "us");
        assert!(s.listen.is_some());
    }

    #[test]
    fn bad_values_are_refused_by_key() {
        let e = parse("[status]\ntime_zone = \"Mars/Olympus\"\n").unwrap_err();
        assert!(
            e.contains("status.time_zone") && e.contains("Mars/Olympus"),
            "{e}"
        );
        let e = parse("[status.services.readin]\nname = \"x\"\n").unwrap_err();
        assert!(e.contains("reading"), "{e}");
        let e = parse("[status]\nlisten = \"nowhere\"\n").unwrap_err();
        assert!(e.contains("status.listen"), "{e}");
        let e = parse("[status]\ntitle = \"\"\n").unwrap_err();
        assert!(e.contains("status.title"), "{e}");
        let e = parse("[status]\ncolour = \"red\"\n").unwrap_err();
        assert!(e.contains("colour"), "{e}");
    }
}
