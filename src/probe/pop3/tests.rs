use super::wire::{Caps, StatusLine};
use super::*;

#[test]
fn status_lines_are_read_strictly_with_their_codes() {
    let l = StatusLine::parse("-ERR [SYS/TEMP] Try again later").unwrap();
    assert!(!l.ok);
    assert_eq!(l.code.as_deref(), Some("SYS/TEMP"));
    assert_eq!(l.text, "Try again later");
    assert_eq!(l.to_string(), "-ERR [SYS/TEMP] Try again later");
    let l = StatusLine::parse("+OK Dovecot (Debian) ready.").unwrap();
    assert!(l.ok);
    assert_eq!((l.code, l.text.as_str()), (None, "Dovecot (Debian) ready."));
    assert_eq!(StatusLine::parse("+OK").unwrap().text, "");
    assert_eq!(StatusLine::parse("-ERR").map(|l| l.ok), Some(false));
    // A bracket that is no code (a space inside, or never closed) is text.
    let l = StatusLine::parse("-ERR [not a code] x").unwrap();
    assert_eq!((l.code, l.text.as_str()), (None, "[not a code] x"));
    let l = StatusLine::parse("-ERR [IN-USE").unwrap();
    assert_eq!((l.code, l.text.as_str()), (None, "[IN-USE"));
    for garbage in [
        "",
        "+ok fine",
        "+OKAY",
        "-ERROR x",
        "* OK IMAP here",
        "220 smtp.example ESMTP",
        "HTTP/1.1 400 Bad Request",
    ] {
        assert_eq!(StatusLine::parse(garbage), None, "{garbage:?}");
    }
}

#[test]
fn capa_tags_and_sasl_mechanisms() {
    let caps = Caps::from_lines(&[
        "CAPA".into(),
        "TOP".into(),
        "UIDL".into(),
        "RESP-CODES".into(),
        "AUTH-RESP-CODE".into(),
        "stls".into(),
        "USER".into(),
        "SASL PLAIN login XOAUTH2".into(),
    ]);
    assert_eq!(caps.has("STLS"), Some(true));
    assert_eq!(caps.has("USER"), Some(true));
    assert_eq!(caps.has("PIPELINING"), Some(false));
    assert_eq!(caps.sasl("PLAIN"), Some(true));
    assert_eq!(caps.sasl("LOGIN"), Some(true));
    assert_eq!(caps.sasl("OAUTHBEARER"), Some(false));
    // "SASL" itself is no mechanism, and a tag is not a mechanism.
    assert_eq!(caps.sasl("SASL"), Some(false));
    assert_eq!(caps.sasl("USER"), Some(false));
    let none = Caps::unknown();
    assert_eq!(none.has("STLS"), None);
    assert_eq!(none.sasl("PLAIN"), None);
}

#[test]
fn stat_answers_are_parsed_strictly() {
    assert_eq!(parse_stat("2 320"), Some((2, 320)));
    assert_eq!(parse_stat("0 0"), Some((0, 0)));
    // RFC 1939 section 5: text may follow the size.
    assert_eq!(parse_stat("2 320 messages"), Some((2, 320)));
    for bad in [
        "",
        "2",
        "2 ",
        " 2 320",
        "2  320",
        "two 320",
        "2 320k",
        "-1 0",
        "+2 3",
        "99999999999999999999999 1",
    ] {
        assert_eq!(parse_stat(bad), None, "{bad:?}");
    }
}
