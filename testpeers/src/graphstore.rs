//! The Graph peer's mailboxes: messages in each Inbox (`id`, `subject`, `receivedDateTime`,
//! `internetMessageHeaders`), listed with the OData query options mailprobe uses, parsed
//! strictly so the peer is never laxer than Graph.
//!
//! From "List messages" (<https://learn.microsoft.com/graph/api/user-list-messages>), "message
//! resource type" (<https://learn.microsoft.com/graph/api/resources/message>) and "Use query
//! parameters" (<https://learn.microsoft.com/graph/query-parameters>):
//! - `$filter`: clauses joined by `and`, each `contains(subject,'...')`,
//!   `startswith(subject,'...')`, `subject eq '...'`, or `receivedDateTime ge|gt|le|lt|eq
//!   <DateTimeOffset>`; string literals in single quotes, a quote doubled inside. Anything else
//!   is a 400: `internetMessageHeaders` (and `body`) cannot be filtered on, other syntax is an
//!   invalid filter clause. Exchange compares strings case-insensitively.
//! - `$select`: the message's properties; an unknown one is a 400. `internetMessageHeaders` is
//!   returned only when selected.
//! - `$top`: 1 to 1000 (default 10); `@odata.nextLink` when more matched.
//! - Newest first (`receivedDateTime` descending); `receivedDateTime` in whole seconds, UTC.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// One message in an Inbox.
#[derive(Clone, Debug)]
pub struct Stored {
    /// Graph's id.
    pub id: String,
    /// `subject`.
    pub subject: String,
    /// `receivedDateTime` (whole seconds).
    pub received: SystemTime,
    /// `internetMessageHeaders`, in order.
    pub headers: Vec<(String, String)>,
    /// The body text.
    pub body: String,
}

/// A refusal of a query: status, `error.code`, `error.message`.
pub type QueryError = (u16, &'static str, String);

fn bad(message: impl Into<String>) -> QueryError {
    (400, "BadRequest", message.into())
}

/// Properties a message has here (a subset of Graph's; others are unknown to this peer).
const PROPERTIES: &[&str] = &[
    "id",
    "subject",
    "receivedDateTime",
    "internetMessageHeaders",
    "body",
    "from",
    "toRecipients",
];

#[derive(Debug, PartialEq)]
enum Clause {
    Contains(String),
    StartsWith(String),
    SubjectEq(String),
    Received(Cmp, i64),
}

#[derive(Debug, PartialEq, Clone, Copy)]
enum Cmp {
    Ge,
    Gt,
    Le,
    Lt,
    Eq,
}

/// An OData string literal at the start of `s`: its value and the rest.
fn literal(s: &str) -> Option<(String, &str)> {
    let mut rest = s.strip_prefix('\'')?;
    let mut out = String::new();
    loop {
        let i = rest.find('\'')?;
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        match rest.strip_prefix('\'') {
            Some(r) => {
                out.push('\'');
                rest = r;
            }
            None => return Some((out, rest)),
        }
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.fff]Z` as Unix seconds.
pub fn parse_datetime(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || !s.ends_with('Z') || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let frac = &s[19..s.len() - 1];
    if !(frac.is_empty()
        || frac.len() > 1 && frac.starts_with('.') && frac[1..].bytes().all(|c| c.is_ascii_digit()))
    {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<u32>().ok();
    let month = time::Month::try_from(n(5..7)? as u8).ok()?;
    let date = time::Date::from_calendar_date(n(0..4)? as i32, month, n(8..10)? as u8).ok()?;
    let t = time::Time::from_hms(n(11..13)? as u8, n(14..16)? as u8, n(17..19)? as u8).ok()?;
    Some(
        time::PrimitiveDateTime::new(date, t)
            .assume_utc()
            .unix_timestamp(),
    )
}

/// `at` as Graph writes it: `2026-11-30T09:20:11Z`.
pub fn format_datetime(at: SystemTime) -> String {
    let secs = at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
    let t = time::OffsetDateTime::from_unix_timestamp(secs).expect("a representable time");
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

fn clause(c: &str) -> Result<Clause, QueryError> {
    let invalid = || bad(format!("Invalid filter clause: {c}"));
    for (func, make) in [
        ("contains(", Clause::Contains as fn(String) -> Clause),
        ("startswith(", Clause::StartsWith as fn(String) -> Clause),
    ] {
        if let Some(args) = c.strip_prefix(func) {
            let (prop, rest) = args.split_once(',').ok_or_else(invalid)?;
            let prop = prop.trim();
            if prop != "subject" {
                return Err(unfilterable(prop).unwrap_or_else(invalid));
            }
            let (value, rest) = literal(rest.trim_start()).ok_or_else(invalid)?;
            if rest.trim() != ")" {
                return Err(invalid());
            }
            return Ok(make(value));
        }
    }
    let mut words = c.splitn(3, ' ');
    let (prop, op, value) = (
        words.next().unwrap_or(""),
        words.next().unwrap_or(""),
        words.next().unwrap_or(""),
    );
    match prop {
        "subject" if op == "eq" => match literal(value) {
            Some((v, "")) => Ok(Clause::SubjectEq(v)),
            _ => Err(invalid()),
        },
        "receivedDateTime" => {
            let cmp = match op {
                "ge" => Cmp::Ge,
                "gt" => Cmp::Gt,
                "le" => Cmp::Le,
                "lt" => Cmp::Lt,
                "eq" => Cmp::Eq,
                _ => return Err(invalid()),
            };
            let at = parse_datetime(value).ok_or_else(invalid)?;
            Ok(Clause::Received(cmp, at))
        }
        p => Err(unfilterable(p).unwrap_or_else(invalid)),
    }
}

/// The refusal of filtering on a property Graph does not filter on.
fn unfilterable(prop: &str) -> Option<QueryError> {
    let root = prop.split('/').next().unwrap_or(prop);
    ["internetMessageHeaders", "body"].contains(&root).then(|| {
        (
            400,
            "ErrorInvalidProperty",
            format!("The property '{root}' does not support filtering."),
        )
    })
}

/// Parses a `$filter` value.
fn filter(f: &str) -> Result<Vec<Clause>, QueryError> {
    // `and` outside string literals splits the clauses.
    let mut clauses = Vec::new();
    let (mut start, mut quoted) = (0, false);
    let b = f.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\'' {
            quoted = !quoted;
        } else if !quoted && f[i..].starts_with(" and ") {
            clauses.push(clause(f[start..i].trim())?);
            start = i + 5;
            i += 5;
            continue;
        }
        i += 1;
    }
    if quoted {
        return Err(bad(format!(
            "Invalid filter clause: unterminated string in {f}"
        )));
    }
    clauses.push(clause(f[start..].trim())?);
    Ok(clauses)
}

fn matches(m: &Stored, clauses: &[Clause]) -> bool {
    let subject = m.subject.to_lowercase();
    let received = m
        .received
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64;
    clauses.iter().all(|c| match c {
        Clause::Contains(v) => subject.contains(&v.to_lowercase()),
        Clause::StartsWith(v) => subject.starts_with(&v.to_lowercase()),
        Clause::SubjectEq(v) => subject == v.to_lowercase(),
        Clause::Received(cmp, at) => match cmp {
            Cmp::Ge => received >= *at,
            Cmp::Gt => received > *at,
            Cmp::Le => received <= *at,
            Cmp::Lt => received < *at,
            Cmp::Eq => received == *at,
        },
    })
}

/// The answer to `GET .../mailFolders/inbox/messages` with `query` over `inbox`.
pub fn list(
    inbox: &[Stored],
    query: &[(String, String)],
    url: &str,
) -> Result<serde_json::Value, QueryError> {
    let (mut clauses, mut select, mut top) = (Vec::new(), None, 10usize);
    for (k, v) in query {
        match k.as_str() {
            "$filter" => clauses = filter(v)?,
            "$select" => {
                let props: Vec<&str> = v.split(',').map(str::trim).collect();
                if let Some(p) = props.iter().find(|p| !PROPERTIES.contains(p)) {
                    return Err((
                        400,
                        "RequestBroker--ParseUri",
                        format!(
                            "Could not find a property named '{p}' on type 'microsoft.graph.message'."
                        ),
                    ));
                }
                select = Some(props);
            }
            "$top" => {
                top = v
                    .parse()
                    .ok()
                    .filter(|t| (1..=1000).contains(t))
                    .ok_or_else(|| bad(format!("Invalid $top value: {v}")))?;
            }
            other => {
                return Err(bad(format!(
                    "Query option '{other}' is not supported by this peer."
                )));
            }
        }
    }
    let mut hits: Vec<&Stored> = inbox.iter().filter(|m| matches(m, &clauses)).collect();
    hits.sort_by_key(|m| std::cmp::Reverse(m.received));
    let more = hits.len() > top;
    let select = select.unwrap_or(vec!["id", "subject", "receivedDateTime"]);
    let value: Vec<serde_json::Value> = hits
        .into_iter()
        .take(top)
        .map(|m| {
            let mut o = serde_json::Map::new();
            o.insert("@odata.etag".into(), format!("W/\"{}\"", m.id).into());
            o.insert("id".into(), m.id.clone().into());
            for p in &select {
                let v = match *p {
                    "subject" => m.subject.clone().into(),
                    "receivedDateTime" => format_datetime(m.received).into(),
                    "internetMessageHeaders" => m
                        .headers
                        .iter()
                        .map(|(n, v)| serde_json::json!({"name": n, "value": v}))
                        .collect(),
                    "body" => serde_json::json!({"contentType": "text", "content": m.body}),
                    _ => continue,
                };
                o.insert(p.to_string(), v);
            }
            serde_json::Value::Object(o)
        })
        .collect();
    let mut answer = serde_json::json!({"value": value});
    if more {
        answer["@odata.nextLink"] = format!("{url}&$skip={top}").into();
    }
    Ok(answer)
}

/// A stored message from an RFC 5322 one, received now (whole seconds).
pub fn from_rfc5322(id: String, message: &str) -> Stored {
    let (headers, body) = crate::smtpsink::split_message(message);
    let subject = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("subject"))
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    Stored {
        id,
        subject,
        received: whole_seconds(SystemTime::now()),
        headers,
        body,
    }
}

/// `at` cut to the second (what Exchange stamps).
pub fn whole_seconds(at: SystemTime) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_graph_takes_and_refuses_the_rest() {
        assert_eq!(
            filter("contains(subject,'it''s') and receivedDateTime lt 2026-11-30T09:20:11Z")
                .unwrap(),
            vec![
                Clause::Contains("it's".into()),
                Clause::Received(Cmp::Lt, 1_796_030_411)
            ]
        );
        assert_eq!(
            filter("subject eq 'a and b'").unwrap(),
            vec![Clause::SubjectEq("a and b".into())]
        );
        assert_eq!(
            filter("startswith(subject, 'x')").unwrap(),
            vec![Clause::StartsWith("x".into())]
        );
        let code = |f: &str| filter(f).unwrap_err().1;
        assert_eq!(
            code("internetMessageHeaders/any(h:h/value eq 'x')"),
            "ErrorInvalidProperty"
        );
        assert_eq!(code("contains(body/content,'x')"), "ErrorInvalidProperty");
        assert_eq!(code("contains(subject,x)"), "BadRequest");
        assert_eq!(code("contains(subject,'x'"), "BadRequest");
        assert_eq!(code("subject eq 'x"), "BadRequest");
        assert_eq!(code("receivedDateTime ge yesterday"), "BadRequest");
        assert_eq!(
            code("receivedDateTime ge '2026-11-30T09:20:11Z'"),
            "BadRequest"
        );
        assert_eq!(code("isRead eq false"), "BadRequest");
    }

    #[test]
    fn datetimes_round_trip() {
        let at = UNIX_EPOCH + Duration::from_secs(1_796_030_411);
        assert_eq!(format_datetime(at), "2026-11-30T09:20:11Z");
        assert_eq!(parse_datetime("2026-11-30T09:20:11Z"), Some(1_796_030_411));
        assert_eq!(
            parse_datetime("2026-11-30T09:20:11.123Z"),
            Some(1_796_030_411)
        );
        assert_eq!(parse_datetime("2026-11-30T09:20:11+01:00"), None);
        assert_eq!(parse_datetime("2026-13-30T09:20:11Z"), None);
    }
}
