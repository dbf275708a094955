//! The round trip's pure parts: late mail remembered, stamps read, UID sets.

use super::*;

#[test]
fn pending_is_bounded_and_forgets() {
    let p = Pending::default();
    let now = SystemTime::now();
    for i in 0..100 {
        p.add("t", &format!("tok{i}"), now);
    }
    assert_eq!(p.len("t"), MAX_PENDING);
    assert_eq!(p.snapshot("t")[0].0, "tok36", "oldest dropped first");
    p.forget("t", &["tok40".to_string()], now);
    assert_eq!(p.len("t"), MAX_PENDING - 1);
    p.forget("t", &[], now + Duration::from_secs(1));
    assert!(p.is_empty("t"));
}

const T: u64 = 1_795_000_000;

fn at(secs: u64, millis: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis)
}

#[test]
fn the_server_time_ends_at_the_stamped_second_and_never_exceeds_the_seen_time() {
    let stamps = Stamps::Imap {
        internal: Some(at(T + 1, 0)),
        received: None,
    };
    // Accepted at T.400, stamped T+1 (so delivered before T+2), seen 3 s later.
    let st = stamps.server_time(at(T, 400), Duration::from_secs(3));
    assert_eq!(
        st,
        ServerTime::Stamped {
            took: Duration::from_millis(1600),
            source: StampSource::InternalDate
        }
    );
    // Seen 0.5 s after acceptance: the stamp cannot say more than that.
    let st = stamps.server_time(at(T, 800), Duration::from_millis(500));
    assert_eq!(
        st,
        ServerTime::Stamped {
            took: Duration::from_millis(500),
            source: StampSource::InternalDate
        }
    );
    // A server clock a little behind ours: delivered "at once", not unknown.
    let st = stamps.server_time(at(T + 3, 500), Duration::from_secs(2));
    assert_eq!(
        st,
        ServerTime::Stamped {
            took: Duration::ZERO,
            source: StampSource::InternalDate
        }
    );
}

#[test]
fn an_internaldate_that_is_not_the_arrival_falls_back_to_received_or_is_unknown() {
    let accepted = at(T, 0);
    let seen = Duration::from_secs(2);
    let copied = Stamps::Imap {
        internal: Some(at(T - 86_400, 0)),
        received: Some(at(T, 0)),
    };
    assert_eq!(
        copied.server_time(accepted, seen),
        ServerTime::Stamped {
            took: Duration::from_secs(1),
            source: StampSource::Received
        }
    );
    let skewed = Stamps::Imap {
        internal: Some(at(T + 3600, 0)),
        received: Some(at(T - 60, 0)),
    };
    assert_eq!(
        skewed.server_time(accepted, seen),
        ServerTime::Unknown(
            "INTERNALDATE 3598 s after the message was seen, Received 59 s before acceptance"
                .into()
        )
    );
    assert_eq!(
        Stamps::default().server_time(accepted, seen),
        ServerTime::Unknown("no INTERNALDATE, no Received date".into())
    );
}

#[test]
fn the_topmost_received_date_is_read_from_folded_fields() {
    let header = b"Received: from mail.example.test ([127.0.0.1])\r\n\
        \tby mx.example.test with LMTP id abc\r\n\
        \tfor <probe@example.test>; Tue, 24 Nov 2026 12:00:05 +0100 (CET)\r\n\
        Received: from client by submit.example.test; Tue, 24 Nov 2026 11:00:00 +0000\r\n\r\n";
    let expected = chrono::DateTime::parse_from_rfc3339("2026-11-24T11:00:05Z")
        .unwrap()
        .timestamp();
    assert_eq!(topmost_received(header), unix(expected));
    assert_eq!(
        topmost_received(b"received: by x; 24 Nov 2026 11:00:05 GMT\r\n\r\n"),
        unix(expected)
    );
    assert_eq!(topmost_received(b"\r\n"), None);
    assert_eq!(topmost_received(b"Received: by x; yesterday\r\n\r\n"), None);
    assert_eq!(topmost_received(b"Received: by x\r\n\r\n"), None);
    // Cut by the byte limit inside the field: "EST" cut to "E" would parse as -0000.
    let mut cut = b"Received: by x (".to_vec();
    cut.resize(RECEIVED_MAX - 30, b'x');
    cut.extend_from_slice(b"); Tue, 24 Nov 2026 11:00:05 E");
    assert_eq!(cut.len(), RECEIVED_MAX);
    assert!(chrono::DateTime::parse_from_rfc2822("Tue, 24 Nov 2026 11:00:05 E").is_ok());
    assert_eq!(topmost_received(&cut), None);
}

#[test]
fn uid_sets() {
    assert_eq!(uid_set(&[3u32, 5, 9]), "3,5,9");
}
