//! Updates by people: what was found, what is being done. A note is a timeline entry of kind
//! `note`, added by `mailprobe incidents note ID "text"` or `POST /api/v1/incidents/{id}/notes`,
//! and shown wherever the timeline is (CLI, report, status page and JSON, Atom feed).

/// The longest note kept, in characters: a few paragraphs, as a status update is.
pub const MAX_NOTE_CHARS: usize = 4000;
/// The largest notes API request body read: the longest note, JSON-escaped, with room to spare.
pub const MAX_NOTE_BODY: usize = 32 * 1024;

/// Whether the notes API takes a write from `client`: any client that passed basic auth (the
/// web config has users), else only clients on this host. Notes appear on the status page the
/// public reads, so an unauthenticated write from the network would let anyone post there; on
/// the host itself, whoever can connect can run `mailprobe incidents note` just as well.
pub fn may_write(authenticated: bool, client: Option<std::net::IpAddr>) -> bool {
    authenticated || client.is_some_and(|ip| ip.to_canonical().is_loopback())
}

/// Why a note was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// Nothing but white space.
    #[error("the note is empty")]
    Empty,
    /// Longer than [`MAX_NOTE_CHARS`].
    #[error("the note is longer than {MAX_NOTE_CHARS} characters")]
    TooLong,
    /// A control character other than a line break or tab (it would garble a terminal or a
    /// feed reader, and XML 1.0 cannot carry most of them).
    #[error(
        "the note contains a control character (U+{0:04X}); only line breaks and tabs are kept"
    )]
    Control(u32),
}

/// The note as kept: trimmed, CRLF made LF; refused when empty, too long or with control
/// characters.
pub fn check(text: &str) -> Result<String, NoteError> {
    let text = text.trim().replace("\r\n", "\n");
    if text.is_empty() {
        return Err(NoteError::Empty);
    }
    if text.chars().count() > MAX_NOTE_CHARS {
        return Err(NoteError::TooLong);
    }
    if let Some(c) = text.chars().find(|c| {
        (c.is_control() && *c != '\n' && *c != '\t') || *c == '\u{FFFE}' || *c == '\u{FFFF}'
    }) {
        return Err(NoteError::Control(c as u32));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_basic_auth_only_this_host_may_write() {
        let ip = |s: &str| Some(s.parse().unwrap());
        assert!(may_write(false, ip("127.0.0.1")));
        assert!(may_write(false, ip("::1")));
        assert!(may_write(false, ip("::ffff:127.0.0.1")));
        assert!(!may_write(false, ip("192.0.2.7")));
        assert!(!may_write(false, ip("::ffff:192.0.2.7")));
        assert!(!may_write(false, None), "no address known: refused");
        assert!(may_write(true, ip("192.0.2.7")));
    }

    #[test]
    fn a_note_is_trimmed_and_bounded_and_keeps_line_breaks() {
        assert_eq!(
            check("  found it\r\nfixing  "),
            Ok("found it\nfixing".into())
        );
        assert_eq!(check(" \n\t "), Err(NoteError::Empty));
        assert_eq!(
            check(&"é".repeat(MAX_NOTE_CHARS)).map(|s| s.len()),
            Ok(2 * MAX_NOTE_CHARS)
        );
        assert_eq!(
            check(&"x".repeat(MAX_NOTE_CHARS + 1)),
            Err(NoteError::TooLong)
        );
        assert_eq!(check("bell\u{7}"), Err(NoteError::Control(7)));
        assert_eq!(check("esc\u{1b}[31m"), Err(NoteError::Control(0x1b)));
        assert_eq!(
            check("<b>&</b>"),
            Ok("<b>&</b>".into()),
            "escaping is each view's job"
        );
    }
}
