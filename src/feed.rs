//! The Atom feed (RFC 4287) of incident openings, changes, notes by people, maintenance notices
//! and resolutions: what people subscribe to instead of watching the page. `/feed.atom` has every
//! incident; `/feed.atom?region=eu` and `/regions/eu/feed.atom` those touching one region.
//!
//! Every timeline entry is one feed entry. Its id is a `urn:uuid:` made from the database's
//! random identity and the entry's row id, so it never changes and never repeats across
//! installations (a feed reader shows each event once). Text is XML-escaped and sent as
//! `type="text"`: a note typed by a person cannot become markup in anyone's reader.
//!
//! The public listener's feed ([`Audience::Public`]) speaks as the public page does: services
//! and regions by their display names, causes in plain words, and no target, host or failure
//! class; the timeline's own wording (which names targets) stays on the private listener.

use std::fmt::Write as _;
use std::hash::Hasher as _;
use std::time::SystemTime;

use crate::hash::Fnv64;
use crate::incidents::render::timestamp;
use crate::incidents::{Entry, EntryKind, Stage};
use crate::load::StatusSettings;
use crate::status::model;

/// Entries in a feed at most: the latest, as feeds carry.
pub const LIMIT: usize = 50;

/// Where the feed lives, for its links.
#[derive(Clone, Debug)]
pub struct Origin {
    /// `https://status.example.org` (no trailing slash), from the request, when known.
    pub base: Option<String>,
    /// The region the feed is limited to.
    pub region: Option<String>,
    /// Who reads it.
    pub audience: Audience,
}

/// Who reads a feed: the admins behind the private listener, or anyone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Audience {
    /// The private listener: the timeline's own words, target names included.
    Admin,
    /// The public listener: the public page's plain words, no target names.
    Public,
}

/// What kind of event an entry is, for its title and `category`.
fn category(e: &Entry) -> &'static str {
    match e.kind {
        EntryKind::Note => "note",
        EntryKind::Maintenance => "maintenance",
        EntryKind::Change if e.event.starts_with("opened") => "opened",
        EntryKind::Change => match e.summary.stage {
            Stage::Resolved | Stage::Removed if !e.status.starts_with("ongoing") => "resolved",
            _ => "changed",
        },
    }
}

fn title(e: &Entry, audience: Audience, settings: &StatusSettings) -> String {
    let id = e.incident;
    if audience == Audience::Public {
        let what = model::incident_title(&e.summary, settings);
        return match category(e) {
            "opened" => format!("Incident #{id} opened: {what}"),
            "note" => format!("Incident #{id}: update"),
            "maintenance" => format!("Incident #{id}: planned maintenance"),
            "resolved" => format!("Incident #{id} resolved: {what}"),
            _ => format!("Incident #{id}: {what}"),
        };
    }
    let regions = if e.summary.regions.is_empty() {
        String::new()
    } else {
        format!(" in {}", e.summary.regions.join(", "))
    };
    match category(e) {
        "opened" => format!("Incident #{id} opened: {}{regions}", e.summary.stage),
        "note" => format!("Incident #{id}: update"),
        "maintenance" => format!("Incident #{id}: planned maintenance"),
        "resolved" => format!("Incident #{id} {}", e.status),
        _ => format!("Incident #{id}: {}{regions}", e.summary.stage),
    }
}

fn content(e: &Entry, audience: Audience, settings: &StatusSettings) -> String {
    let s = &e.summary;
    if audience == Audience::Public {
        return match e.kind {
            // Written by a person for the people affected: shown as written.
            EntryKind::Note => e.event.clone(),
            EntryKind::Maintenance => format!(
                "Planned maintenance on {}.",
                model::incident_title(s, settings)
            ),
            EntryKind::Change => format!(
                "{}\n\nAffected: {}. Likely cause: {}.",
                model::entry_text(s),
                model::incident_title(s, settings),
                model::incident_cause(s)
            ),
        };
    }
    let protocols: Vec<&str> = s.protocols.iter().map(|p| p.as_str()).collect();
    format!(
        "{}\n\nRegions: {}. Services: {}. Affected users: {}. Likely cause: {}. Status: {}.",
        e.headline(),
        if s.regions.is_empty() {
            "-".to_string()
        } else {
            s.regions.join(", ")
        },
        protocols.join(", "),
        s.users,
        s.hint,
        e.status
    )
}

/// A UUID (RFC 9562 version 8: ours, not random, not time-based) from 16 bytes.
fn uuid(mut b: [u8; 16]) -> String {
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "urn:uuid:{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The first 8 bytes of the database's identity (32 hex digits), and `low` after them.
fn id_bytes(instance: &str, low: u64) -> [u8; 16] {
    let mut b = [0u8; 16];
    for (i, byte) in b.iter_mut().take(8).enumerate() {
        *byte = instance
            .get(2 * i..2 * i + 2)
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .unwrap_or(0);
    }
    b[8..].copy_from_slice(&low.to_be_bytes());
    b
}

/// The feed's id: the whole feed's, or a region's (a different feed, so a different id).
fn feed_id(instance: &str, region: Option<&str>) -> String {
    let low = region.map_or(0, |r| {
        let mut h = Fnv64::default();
        h.write(r.as_bytes());
        h.finish() | 1
    });
    uuid(id_bytes(instance, low))
}

/// An entry's id, from its row id (which SQLite never reuses: AUTOINCREMENT).
fn entry_id(instance: &str, row: i64) -> String {
    uuid(id_bytes(instance, u64::try_from(row).unwrap_or(0)))
}

/// Text as XML character data or attribute value; characters XML 1.0 cannot carry become
/// U+FFFD.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// The feed of `entries` (newest first, with their row ids) of the database `instance`.
pub fn render(
    instance: &str,
    origin: &Origin,
    settings: &StatusSettings,
    entries: &[(i64, Entry)],
    now: SystemTime,
) -> String {
    let region = origin.region.as_deref();
    let base = origin.base.as_deref().unwrap_or("");
    let updated = entries.iter().map(|(_, e)| e.at).max().unwrap_or(now);
    let self_path = match region {
        Some(r) => format!("/regions/{r}/feed.atom"),
        None => "/feed.atom".to_string(),
    };
    let mut x = String::with_capacity(1024 + entries.len() * 1024);
    x.push_str("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n");
    x.push_str("<feed xmlns=\"http://www.w3.org/2005/Atom\">\n");
    let _ = writeln!(x, "  <id>{}</id>", feed_id(instance, region));
    let _ = writeln!(
        x,
        "  <title>{}</title>",
        esc(&match region {
            Some(r) => format!("Mail status: incidents in {r}"),
            None => "Mail status: incidents".to_string(),
        })
    );
    let _ = writeln!(x, "  <updated>{}</updated>", timestamp(updated));
    let _ = writeln!(
        x,
        "  <link rel=\"self\" type=\"application/atom+xml\" href=\"{}\"/>",
        esc(&format!("{base}{self_path}"))
    );
    let _ = writeln!(
        x,
        "  <link rel=\"alternate\" type=\"text/html\" href=\"{}\"/>",
        esc(&format!("{base}/"))
    );
    x.push_str("  <author><name>mailprobe</name></author>\n");
    x.push_str("  <generator>mailprobe</generator>\n");
    for (row, e) in entries {
        x.push_str("  <entry>\n");
        let _ = writeln!(x, "    <id>{}</id>", entry_id(instance, *row));
        let _ = writeln!(
            x,
            "    <title type=\"text\">{}</title>",
            esc(&title(e, origin.audience, settings))
        );
        let _ = writeln!(x, "    <updated>{}</updated>", timestamp(e.at));
        let _ = writeln!(x, "    <published>{}</published>", timestamp(e.at));
        let _ = writeln!(
            x,
            "    <link rel=\"alternate\" type=\"text/html\" href=\"{}\"/>",
            esc(&format!("{base}/incidents/{}", e.incident))
        );
        let _ = writeln!(x, "    <category term=\"{}\"/>", category(e));
        let _ = writeln!(
            x,
            "    <content type=\"text\">{}</content>",
            esc(&content(e, origin.audience, settings))
        );
        x.push_str("  </entry>\n");
    }
    x.push_str("</feed>\n");
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_uuids_stable_per_row_and_distinct_per_feed() {
        let inst = "0123456789abcdef0123456789abcdef";
        let a = entry_id(inst, 7);
        assert_eq!(a, entry_id(inst, 7));
        assert_ne!(a, entry_id(inst, 8));
        assert_ne!(a, entry_id("fedcba9876543210fedcba9876543210", 7));
        assert_eq!(a, "urn:uuid:01234567-89ab-8def-8000-000000000007");
        let feeds = [
            feed_id(inst, None),
            feed_id(inst, Some("eu")),
            feed_id(inst, Some("us")),
        ];
        assert!(feeds[0] != feeds[1] && feeds[1] != feeds[2] && feeds[0] != feeds[2]);
        assert!(feeds.iter().all(|f| !f.ends_with("8000-000000000007")));
    }

    #[test]
    fn xml_is_escaped_and_carries_no_illegal_characters() {
        assert_eq!(
            esc("<a href='x'>&\"]]>\u{1}"),
            "&lt;a href=&apos;x&apos;&gt;&amp;&quot;]]&gt;\u{FFFD}"
        );
    }
}
