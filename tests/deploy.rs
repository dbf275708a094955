//! The files under deploy/ stay valid and true to the daemon: Prometheus accepts the scrape config
//! and the rules, every alert passes its promtool unit tests, Alertmanager accepts its config and
//! routes as its comments say, the dashboard is importable JSON, and the rules and the dashboard
//! name only metrics the daemon exports (README's metrics table) or rules the rules file records.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use mailprobe_testpeers::util::require_program;

fn path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Runs `program args...`, panics with its output unless it exits 0, returns its stdout.
fn run(program: &Path, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{} {args:?} failed ({}):\n{stdout}\n{stderr}",
        program.display(),
        out.status
    );
    stdout
}

fn promtool() -> PathBuf {
    require_program("promtool", "prometheus")
}

fn amtool() -> PathBuf {
    require_program("amtool", "prometheus-alertmanager")
}

const RULES: &str = "deploy/prometheus/mailprobe.rules.yml";
const RULE_TESTS: &str = "deploy/prometheus/mailprobe.rules.test.yml";
/// The rules for a deliberate single-location setup, and their tests.
const SINGLE_RULES: &str = "deploy/prometheus/mailprobe.single-location.rules.yml";
const SINGLE_RULE_TESTS: &str = "deploy/prometheus/mailprobe.single-location.rules.test.yml";
const RUNBOOK: &str = "deploy/runbook.md";
const ALERTMANAGER: &str = "deploy/alertmanager/alertmanager.yml";
const DASHBOARD: &str = "deploy/grafana/mailprobe.json";

/// The values of `key: VALUE` lines of a YAML file (list items included), in order.
fn yaml_values(text: &str, key: &str) -> Vec<String> {
    let prefix = format!("{key}:");
    text.lines()
        .map(|l| l.trim_start().trim_start_matches("- "))
        .filter_map(|l| l.strip_prefix(prefix.as_str()))
        .map(|v| v.trim().trim_matches('"').to_string())
        .collect()
}

/// The alerts of both rules files.
fn alert_names() -> Vec<String> {
    let mut names = yaml_values(&read(RULES), "alert");
    names.extend(yaml_values(&read(SINGLE_RULES), "alert"));
    assert!(names.len() >= 10, "too few alerts found: {names:?}");
    names
}

#[test]
fn prometheus_accepts_the_example_config_and_the_rules_it_loads() {
    let out = run(
        &promtool(),
        &[
            "check",
            "config",
            path("deploy/prometheus/prometheus.yml").to_str().unwrap(),
        ],
    );
    // The config loads the rules file, so both were checked.
    assert!(out.contains("mailprobe.rules.yml"), "{out}");
    for rules in [RULES, SINGLE_RULES] {
        let out = run(
            &promtool(),
            &["check", "rules", path(rules).to_str().unwrap()],
        );
        assert!(out.contains("SUCCESS"), "{out}");
    }
}

#[test]
fn the_example_config_labels_every_scrape_target_with_a_location() {
    let config = read("deploy/prometheus/prometheus.yml");
    let (_, scrape) = config
        .split_once("\nscrape_configs:")
        .expect("scrape_configs");
    let targets = scrape.matches("- targets:").count();
    let locations = yaml_values(scrape, "location");
    assert!(targets >= 2, "several vantage points expected:\n{config}");
    assert_eq!(
        locations.len(),
        targets,
        "one location per target group: {locations:?}"
    );
    let distinct: BTreeSet<_> = locations.iter().collect();
    assert_eq!(distinct.len(), locations.len(), "{locations:?}");
    assert!(
        config.contains("job_name: mailprobe"),
        "the rules select job=\"mailprobe\""
    );
}

#[test]
fn every_alert_passes_its_promtool_unit_tests_and_has_some() {
    for file in [RULE_TESTS, SINGLE_RULE_TESTS] {
        let out = run(
            &promtool(),
            &["test", "rules", path(file).to_str().unwrap()],
        );
        assert!(out.contains("SUCCESS"), "{out}");
    }
    let tests = read(RULE_TESTS) + &read(SINGLE_RULE_TESTS);
    let tested: BTreeSet<String> = yaml_values(&tests, "alertname").into_iter().collect();
    let untested: Vec<_> = alert_names()
        .into_iter()
        .filter(|a| !tested.contains(a))
        .collect();
    assert!(
        untested.is_empty(),
        "alerts without unit tests: {untested:?}"
    );
    // Each alert has a case where it fires (its name among the expected labels) and one where it
    // must not (`exp_alerts: []`), as the file's header promises.
    for alert in alert_names() {
        let blocks: Vec<&str> = tests
            .split("- eval_time:")
            .filter(|b| b.contains(&format!("alertname: {alert}\n")))
            .collect();
        assert!(
            blocks.iter().any(|b| b.contains("exp_labels:")),
            "{alert} is never expected to fire"
        );
        assert!(
            blocks.iter().any(|b| b.contains("exp_alerts: []")),
            "{alert} is never checked not to fire"
        );
    }
}

#[test]
fn every_alert_carries_severity_scope_and_annotations() {
    let rules = read(RULES) + &read(SINGLE_RULES);
    let runbook = read(RUNBOOK);
    // Section headings of the runbook, as GitHub makes their anchors.
    let anchors: BTreeSet<String> = runbook
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .map(|h| h.trim().to_lowercase())
        .collect();
    // Split into one chunk per rule (alert or record).
    let chunks: Vec<&str> = rules
        .split("\n      - ")
        .filter(|c| c.starts_with("alert:"))
        .collect();
    assert_eq!(chunks.len(), alert_names().len());
    for chunk in chunks {
        let name = chunk.lines().next().unwrap();
        let severity = yaml_values(chunk, "severity");
        assert!(
            matches!(
                severity.as_slice(),
                [s] if ["critical", "warning", "info"].contains(&s.as_str())
            ),
            "{name}: severity {severity:?}"
        );
        let scope = yaml_values(chunk, "scope");
        assert!(
            matches!(
                scope.as_slice(),
                [s] if ["target", "region", "global", "prober"].contains(&s.as_str())
            ),
            "{name}: scope {scope:?}"
        );
        for key in ["summary", "description", "runbook_url", "dashboard_url"] {
            assert_eq!(yaml_values(chunk, key).len(), 1, "{name}: no {key}");
        }
        let alert = name.trim_start_matches("alert:").trim();
        let runbook_url = &yaml_values(chunk, "runbook_url")[0];
        let anchor = alert.to_lowercase();
        assert!(
            runbook_url.ends_with(&format!("/runbook.md#{anchor}")),
            "{alert}: {runbook_url}"
        );
        assert!(
            anchors.contains(&anchor),
            "{alert}: no section `## {alert}` in {RUNBOOK}"
        );
        assert!(
            yaml_values(chunk, "dashboard_url")[0].contains("/d/mailprobe/"),
            "{alert}: the dashboard's uid"
        );
    }
    // Every section of the runbook is about an alert that exists.
    let alerts: BTreeSet<String> = alert_names().iter().map(|a| a.to_lowercase()).collect();
    let orphans: Vec<_> = anchors.difference(&alerts).collect();
    assert!(
        orphans.is_empty(),
        "runbook sections without an alert: {orphans:?}"
    );
}

#[test]
fn alertmanager_accepts_its_config_and_routes_as_documented() {
    let config = path(ALERTMANAGER);
    let config = config.to_str().unwrap();
    let out = run(&amtool(), &["check-config", config]);
    assert!(out.contains("SUCCESS"), "{out}");
    // (labels of an alert, the receivers it must reach)
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "alertname=MailprobeTargetDown",
                "severity=critical",
                "scope=target",
                "region=eu",
                "class=connect_refused",
            ],
            "mail-oncall-pager",
        ),
        (
            &[
                "alertname=MailprobeAuthFailingAcrossTargets",
                "severity=critical",
                "scope=region",
                "region=eu",
                "class=auth_rejected",
            ],
            "identity-team-webhook,mail-oncall-pager",
        ),
        (
            &[
                "alertname=MailprobeTargetDown",
                "severity=critical",
                "scope=target",
                "region=eu",
                "class=auth_policy",
            ],
            "identity-team-webhook,mail-oncall-pager",
        ),
        (
            &[
                "alertname=MailprobeCertificateExpiringSoon",
                "severity=warning",
                "scope=target",
                "region=eu",
            ],
            "mail-tickets-webhook",
        ),
        (
            &[
                "alertname=MailprobeNotScraped",
                "severity=warning",
                "scope=prober",
            ],
            "monitoring-team-email",
        ),
        (
            &[
                "alertname=MailprobeProbesSkipped",
                "severity=info",
                "scope=prober",
            ],
            "monitoring-team-email",
        ),
        (
            &[
                "alertname=MailprobeProberBlind",
                "severity=warning",
                "scope=prober",
            ],
            "monitoring-team-email",
        ),
        (
            &[
                "alertname=MailprobeAllProbersBlind",
                "severity=critical",
                "scope=global",
            ],
            "mail-oncall-pager",
        ),
        (&["alertname=Other", "severity=info"], "mail-admins-email"),
    ];
    for (labels, receivers) in cases {
        let verify = format!("--verify.receivers={receivers}");
        let mut args = vec!["config", "routes", "test", "--config.file", config, &verify];
        args.extend_from_slice(labels);
        run(&amtool(), &args);
    }
    // Inhibit rules name alerts that exist (a renamed alert would silently stop inhibiting).
    let am = read(ALERTMANAGER);
    let alerts = alert_names();
    let named: Vec<&str> = am
        .split("alertname=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .collect();
    assert!(!named.is_empty());
    for name in named {
        assert!(alerts.iter().any(|a| a == name), "unknown alert {name}");
    }
}

#[test]
fn the_dashboard_is_importable_json_with_location_region_and_target_variables() {
    let dash: serde_json::Value = serde_json::from_str(&read(DASHBOARD)).expect("valid JSON");
    let inputs = dash["__inputs"].as_array().expect("__inputs");
    assert!(
        inputs.iter().any(|i| i["name"] == "DS_PROMETHEUS"
            && i["type"] == "datasource"
            && i["pluginId"] == "prometheus"),
        "{inputs:?}"
    );
    let vars: Vec<&str> = dash["templating"]["list"]
        .as_array()
        .expect("templating.list")
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    for v in ["location", "region", "target"] {
        assert!(vars.contains(&v), "no ${v} variable: {vars:?}");
    }
    let panels = dash["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    let mut queries = 0;
    for p in panels {
        let title = p["title"].as_str().expect("every panel has a title");
        assert!(ids.insert(p["id"].as_u64().expect("id")), "duplicate id");
        let g = &p["gridPos"];
        let (x, w) = (g["x"].as_u64().unwrap(), g["w"].as_u64().unwrap());
        assert!(x + w <= 24 && g["h"].as_u64().unwrap() > 0, "{title}: {g}");
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"]["uid"], "${DS_PROMETHEUS}", "{title}");
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}");
        for t in targets {
            assert!(
                t["expr"].as_str().is_some_and(|e| !e.trim().is_empty()),
                "{title}"
            );
            queries += 1;
        }
    }
    assert!(queries >= 10, "{queries} queries");
    // The Grafana version __requires names writes the schemaVersion the file has (Grafana 10.0
    // writes 38; 39 came with a migration of 10.3), so an import into that version needs no
    // migration it does not know.
    let grafana = dash["__requires"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "grafana")
        .expect("__requires names Grafana");
    assert_eq!(
        (grafana["version"].as_str(), dash["schemaVersion"].as_u64()),
        (Some("10.0.0"), Some(38))
    );
    // A protocol variable for the phase panels, repeated per protocol.
    assert!(vars.contains(&"protocol"), "{vars:?}");
    assert!(
        panels.iter().any(|p| p["repeat"] == "protocol"),
        "a panel repeated per protocol"
    );
}

/// Metric names in the README's metrics table, with their types.
fn documented_metrics() -> Vec<(String, String)> {
    let readme = read("README.md");
    let rows: Vec<(String, String)> = readme
        .lines()
        .filter_map(|l| l.strip_prefix("| `mailprobe_"))
        .filter_map(|l| {
            let mut cells = l.split('|');
            let name = cells.next()?.trim().trim_end_matches('`');
            let kind = cells.next()?.trim();
            Some((format!("mailprobe_{name}"), kind.to_string()))
        })
        .collect();
    assert!(rows.len() >= 20, "metrics table not found: {rows:?}");
    rows
}

/// Words of `text` made of metric-name characters that mention `mailprobe_`.
fn metric_words(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .map(|w| w.trim_end_matches(':'))
        .filter(|w| w.contains("mailprobe_"))
        .map(str::to_string)
        .collect()
}

/// The words of `text` that are neither a documented metric (or a histogram's series) nor a
/// recording rule of `recorded`.
fn unknown_metrics(text: &str, recorded: &BTreeSet<String>) -> Vec<String> {
    let documented = documented_metrics();
    let known = |w: &str| {
        documented.iter().any(|(name, kind)| {
            w == name
                || (kind == "histogram"
                    && ["_bucket", "_sum", "_count"]
                        .iter()
                        .any(|s| w.strip_suffix(s) == Some(name)))
        })
    };
    metric_words(text)
        .into_iter()
        .filter(|w| {
            if w.contains(':') {
                !recorded.contains(w)
            } else {
                !known(w)
            }
        })
        .collect()
}

/// Every string in the dashboard (queries, variables, descriptions), one per line.
fn dashboard_strings() -> String {
    fn walk(v: &serde_json::Value, out: &mut String) {
        match v {
            serde_json::Value::String(s) => {
                out.push_str(s);
                out.push('\n');
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            serde_json::Value::Object(o) => o.values().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = String::new();
    walk(
        &serde_json::from_str(&read(DASHBOARD)).expect("valid JSON"),
        &mut out,
    );
    out
}

#[test]
fn rules_and_dashboard_name_only_exported_metrics_and_recorded_rules() {
    let rules = read(RULES);
    let recorded: BTreeSet<String> = yaml_values(&rules, "record").into_iter().collect();
    assert!(recorded.contains("target:mailprobe_availability:ratio_30d"));
    // The check itself catches a metric that does not exist, and an undefined recording rule.
    assert_eq!(
        unknown_metrics(
            "rate(mailprobe_probe_nonexistent_total[5m]) / region:mailprobe_nothing:ratio",
            &recorded
        ),
        [
            "mailprobe_probe_nonexistent_total",
            "region:mailprobe_nothing:ratio"
        ]
    );

    for (file, text) in [
        (RULES, rules.clone()),
        (SINGLE_RULES, read(SINGLE_RULES)),
        (RULE_TESTS, read(RULE_TESTS)),
        (DASHBOARD, dashboard_strings()),
    ] {
        assert!(metric_words(&text).len() >= 2, "{file}: no metrics found");
        let unknown = unknown_metrics(&text, &recorded);
        assert!(
            unknown.is_empty(),
            "{file} names unknown metrics: {unknown:?}"
        );
    }

    // The dashboard shows what it promises.
    let dash = metric_words(&dashboard_strings());
    for m in [
        "mailprobe_probes_total",
        "mailprobe_probe_failures_total",
        "mailprobe_tls_cert_expiry_timestamp_seconds",
        "mailprobe_region_roundtrip_delivery_seconds_bucket",
        "mailprobe_region_phase_duration_seconds_bucket",
        "mailprobe_probe_last_duration_seconds",
        "target:mailprobe_availability:ratio_30d",
        "mailprobe_prober_errors_total",
    ] {
        assert!(dash.contains(m), "the dashboard does not use {m}");
    }
}

/// A blocking HTTP/1.1 exchange with 127.0.0.1 (Alertmanager's API): `(status, body)`.
fn http_json(addr: std::net::SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect to Alertmanager");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut rest = body;
        let mut plain = String::new();
        while let Some((size, tail)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 || tail.len() < n {
                break;
            }
            plain.push_str(&tail[..n]);
            rest = tail[n..].trim_start_matches("\r\n");
        }
        plain
    } else {
        body.to_string()
    };
    (status, body)
}

/// The inhibition a blind prober needs is Alertmanager's: the shipped alertmanager.yml, in a real
/// Alertmanager, holds back the target alerts from the blind prober's instance and location, and
/// only those (amtool can test routes, not inhibitions).
#[test]
fn a_blind_prober_holds_back_its_own_target_alerts_in_alertmanager() {
    let am = mailprobe_testpeers::prometheus::Alertmanager::start(&read(ALERTMANAGER));
    let alert = |name: &str,
                 severity: &str,
                 scope: &str,
                 instance: &str,
                 location: &str,
                 target: Option<&str>| {
        let target = target.map(|t| format!(r#","target":"{t}","region":"eu","protocol":"imap","class":"connect_timeout","phase":"connect""#)).unwrap_or_default();
        format!(
            r#"{{"labels":{{"alertname":"{name}","severity":"{severity}","scope":"{scope}","job":"mailprobe","instance":"{instance}","location":"{location}"{target}}}}}"#
        )
    };
    let alerts = [
        alert(
            "MailprobeProberBlind",
            "warning",
            "prober",
            "probe-a:9783",
            "eu-west",
            None,
        ),
        // From the blind prober: held back.
        alert(
            "MailprobeRoundtripNotDelivering",
            "critical",
            "target",
            "probe-a:9783",
            "eu-west",
            Some("imap-eu"),
        ),
        alert(
            "MailprobeTargetDown",
            "critical",
            "target",
            "probe-a:9783",
            "eu-west",
            Some("smtp-eu"),
        ),
        // From another location: comes through.
        alert(
            "MailprobeTargetDown",
            "critical",
            "target",
            "probe-b:9783",
            "us-east",
            Some("smtp-eu"),
        ),
    ];
    let (status, body) = http_json(
        am.addr(),
        "POST",
        "/api/v2/alerts",
        &format!("[{}]", alerts.join(",")),
    );
    assert_eq!(status, 200, "{body}\n{}", am.log());
    // Alertmanager applies inhibitions as it lists alerts: wait until it lists all four.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let listed = loop {
        let (_, body) = http_json(am.addr(), "GET", "/api/v2/alerts", "");
        let listed: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        if listed.as_array().is_some_and(|a| a.len() == 4) {
            break listed;
        }
        assert!(std::time::Instant::now() < deadline, "{body}\n{}", am.log());
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let inhibited = |name: &str, location: &str| {
        listed
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["labels"]["alertname"] == name && a["labels"]["location"] == location)
            .map(|a| {
                a["status"]["inhibitedBy"]
                    .as_array()
                    .is_some_and(|i| !i.is_empty())
            })
            .unwrap_or_else(|| panic!("{name} from {location} not listed: {listed}"))
    };
    assert!(inhibited("MailprobeTargetDown", "eu-west"), "{listed}");
    assert!(
        inhibited("MailprobeRoundtripNotDelivering", "eu-west"),
        "{listed}"
    );
    assert!(!inhibited("MailprobeTargetDown", "us-east"), "{listed}");
    assert!(!inhibited("MailprobeProberBlind", "eu-west"), "{listed}");
}
