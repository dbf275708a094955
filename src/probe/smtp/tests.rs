//! SMTP replies parsed strictly, enhanced codes, EHLO capabilities, the probe message, dot-stuffing.

use super::*;

#[test]
fn reply_lines_parse_strictly() {
    assert_eq!(
        parse_line("250-PIPELINING").unwrap(),
        (250, false, "PIPELINING")
    );
    assert_eq!(parse_line("250 OK").unwrap(), (250, true, "OK"));
    assert_eq!(parse_line("250").unwrap(), (250, true, ""));
    for bad in ["", "25", "abc def", "250_OK", "650 no", "HTTP/1.1 400"] {
        assert!(parse_line(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn enhanced_codes_are_recognised() {
    let r = |t: &str| Reply {
        code: 535,
        lines: vec![t.into()],
    };
    assert_eq!(
        r("5.7.8 Error: authentication failed").enhanced(),
        Some("5.7.8")
    );
    assert_eq!(r("Error: authentication failed").enhanced(), None);
    assert_eq!(r("5.7 nope").enhanced(), None);
}

#[test]
fn a_reply_reads_with_all_its_lines_and_long_ones_keep_their_end() {
    // Gmail's refusal of a wrong password, as sent.
    let r = Reply {
        code: 535,
        lines: vec![
            "5.7.8 Username and Password not accepted. For more information, go to".into(),
            "5.7.8  https://support.google.com/mail/?p=BadCredentials abc123 - gsmtp".into(),
        ],
    };
    assert_eq!(
        r.to_string(),
        "535 5.7.8 Username and Password not accepted. For more information, go to \
         https://support.google.com/mail/?p=BadCredentials abc123 - gsmtp"
    );
    let long = Reply {
        code: 554,
        lines: (0..MAX_REPLY_LINES - 1)
            .map(|i| format!("5.7.1 line {i}"))
            .chain(["5.7.1 session 08DD33F1A2B3C4D5".to_string()])
            .collect(),
    };
    let text = long.text();
    assert!(text.chars().count() <= MAX_REPLY_TEXT + 3, "{text}");
    assert!(text.starts_with("5.7.1 line 0 line 1 "), "{text}");
    assert!(text.ends_with(" session 08DD33F1A2B3C4D5"), "{text}");
    assert!(text.contains(" … "), "{text}");
}

#[test]
fn ehlo_capabilities() {
    let r = Reply {
        code: 250,
        lines: vec![
            "mx.example.test".into(),
            "PIPELINING".into(),
            "starttls".into(),
            "AUTH PLAIN LOGIN".into(),
            "AUTH=XOAUTH2".into(),
        ],
    };
    let c = Capabilities::from_reply(&r);
    assert!(c.starttls);
    assert!(c.offers("PLAIN") && c.offers("LOGIN") && c.offers("XOAUTH2"));
}

#[test]
fn dot_stuffing_and_terminator() {
    assert_eq!(dot_stuff(b"a\n.b\r\n..c"), b"a\r\n..b\r\n...c\r\n.\r\n");
    assert_eq!(dot_stuff(b".\r\n"), b"..\r\n.\r\n");
}

#[test]
fn probe_message_is_marked_and_terminated() {
    let send = SendSpec {
        from: "probe@example.test".parse().unwrap(),
        to: "probe@example.test".parse().unwrap(),
    };
    let m = ProbeMessage::new(&send, "abc123").unwrap();
    let text = String::from_utf8(m.data.clone()).unwrap();
    assert!(
        text.contains("Auto-Submitted: auto-generated\r\n"),
        "{text}"
    );
    assert!(text.contains("X-Mailprobe-Token: abc123\r\n"), "{text}");
    assert!(
        text.contains("Subject: mailprobe probe abc123\r\n"),
        "{text}"
    );
    assert!(
        text.contains("Message-ID: <mailprobe.abc123@example.test>\r\n"),
        "{text}"
    );
    assert!(text.contains("Date: "), "{text}");
    assert!(text.ends_with("\r\n.\r\n"));
}
