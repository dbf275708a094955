//! Classification of what every protocol shares: transport, TLS, deadlines, tokens, faults.

use super::*;

#[test]
fn labels_are_unique_snake_case() {
    let mut seen = std::collections::HashSet::new();
    for c in FailureClass::ALL {
        assert!(seen.insert(c.as_str()));
        assert!(
            c.as_str()
                .chars()
                .all(|ch| ch.is_ascii_lowercase() || ch == '_')
        );
        let json = serde_json::to_string(c).unwrap();
        assert_eq!(json, format!("\"{}\"", c.as_str()));
    }
}

#[test]
fn timeouts_depend_on_phase() {
    assert_eq!(
        classify(Phase::Connect, &ProbeError::Timeout),
        FailureClass::ConnectTimeout
    );
    assert_eq!(
        classify(Phase::Greeting, &ProbeError::Timeout),
        FailureClass::GreetingTimeout
    );
    assert_eq!(
        classify(Phase::Select, &ProbeError::Timeout),
        FailureClass::Timeout
    );
}

#[test]
fn limits_are_protocol_errors_and_resets_are_closed() {
    let limit = io::Error::new(io::ErrorKind::InvalidData, LimitExceeded::Line(10));
    assert_eq!(
        classify(Phase::Greeting, &ProbeError::Io(limit)),
        FailureClass::ProtocolError
    );
    let reset = io::Error::from(io::ErrorKind::ConnectionReset);
    assert_eq!(
        classify(Phase::Login, &ProbeError::Io(reset)),
        FailureClass::ConnectionClosed
    );
    let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
    assert_eq!(
        classify(
            Phase::Connect,
            &ProbeError::Connect {
                addr: "127.0.0.1:1".parse().unwrap(),
                source: refused
            }
        ),
        FailureClass::ConnectRefused
    );
}

fn connect(errno: i32) -> Verdict {
    judge(
        Phase::Connect,
        &ProbeError::Connect {
            addr: "192.0.2.1:993".parse().unwrap(),
            source: io::Error::from_raw_os_error(errno),
        },
    )
}

/// Only a real network error is `network_unreachable`; what this host ran out of, or
/// forbade, is a prober fault; what nobody mapped says so.
#[test]
fn connect_errors_by_os_error() {
    use FailureClass as C;
    use ProberFault as F;
    for (errno, fault) in [
        (libc::EMFILE, F::FileDescriptors),
        (libc::ENFILE, F::FileDescriptors),
        (libc::ENOMEM, F::Memory),
        (libc::ENOBUFS, F::Memory),
        (libc::EADDRNOTAVAIL, F::LocalAddress),
        (libc::EAFNOSUPPORT, F::LocalAddress),
        (libc::EPERM, F::LocalFirewall),
        (libc::EACCES, F::LocalFirewall),
    ] {
        let v = connect(errno);
        assert_eq!(
            (v.class, v.fault),
            (C::ProberError, Some(fault)),
            "errno {errno}"
        );
    }
    for (errno, class) in [
        (libc::ENETUNREACH, C::NetworkUnreachable),
        (libc::EHOSTUNREACH, C::NetworkUnreachable),
        (libc::ENETDOWN, C::NetworkUnreachable),
        (libc::EHOSTDOWN, C::NetworkUnreachable),
        (libc::ECONNREFUSED, C::ConnectRefused),
        (libc::ECONNRESET, C::ConnectRefused),
        (libc::ETIMEDOUT, C::ConnectTimeout),
        (libc::EINVAL, C::Unrecognized),
        (libc::EPROTO, C::Unrecognized),
    ] {
        let v = connect(errno);
        assert_eq!((v.class, v.fault), (class, None), "errno {errno}");
    }
}

#[test]
fn io_errors_after_connect() {
    use FailureClass as C;
    let io = |e: io::Error| judge(Phase::Login, &ProbeError::Io(e));
    assert_eq!(
        io(io::Error::from_raw_os_error(libc::ENOBUFS)).fault,
        Some(ProberFault::Memory)
    );
    assert_eq!(
        io(io::Error::from(io::ErrorKind::OutOfMemory)).fault,
        Some(ProberFault::Memory)
    );
    assert_eq!(
        io(io::Error::from(io::ErrorKind::UnexpectedEof)).class,
        C::ConnectionClosed
    );
    assert_eq!(
        io(io::Error::from_raw_os_error(libc::ETIMEDOUT)).class,
        C::Timeout
    );
    assert_eq!(io(io::Error::other("something new")).class, C::Unrecognized);
    let garbage = "Error(Error { input: [72], code: Tag }) during parsing of \"HTTP/1.1\"";
    assert_eq!(io(io::Error::other(garbage)).class, C::ProtocolError);
    let tls = |e: rustls::Error| io(io::Error::new(io::ErrorKind::InvalidData, e));
    assert_eq!(
        tls(rustls::Error::AlertReceived(
            rustls::AlertDescription::InternalError
        ))
        .class,
        C::ConnectionClosed
    );
    assert_eq!(tls(rustls::Error::DecryptError).class, C::ProtocolError);
    let handshake = |e: io::Error| judge(Phase::Tls, &ProbeError::Tls(e));
    assert_eq!(
        handshake(io::Error::other(rustls::Error::FailedToGetRandomBytes)).fault,
        Some(ProberFault::Internal)
    );
    assert_eq!(
        handshake(io::Error::from(io::ErrorKind::UnexpectedEof)).class,
        C::TlsHandshakeFailed
    );
    assert_eq!(
        handshake(io::Error::from_raw_os_error(libc::EMFILE)).fault,
        Some(ProberFault::FileDescriptors)
    );
}

/// A reply as a server sends it (CRLF-separated lines, `-` continuations).

#[test]
fn token_failures_of_the_cache_or_this_host_are_prober_faults() {
    use crate::oauth2::{TokenError, TokenFault};
    let token = |fault| {
        judge(
            Phase::Token,
            &ProbeError::Token(TokenError {
                url: "https://login.example.test/token".into(),
                reason: "x".into(),
                fault,
            }),
        )
    };
    assert_eq!(
        token(TokenFault::Cache).fault,
        Some(ProberFault::TokenCache)
    );
    assert_eq!(
        token(TokenFault::Os(io::Error::from_raw_os_error(libc::EMFILE))).fault,
        Some(ProberFault::FileDescriptors)
    );
    assert_eq!(
        token(TokenFault::Os(io::Error::from_raw_os_error(
            libc::ECONNREFUSED
        )))
        .class,
        FailureClass::AuthTokenFailed
    );
    assert_eq!(
        token(TokenFault::Endpoint).class,
        FailureClass::AuthTokenFailed
    );
}

#[test]
fn panics_and_internal_errors_are_prober_faults_of_their_own() {
    let v = judge(Phase::Login, &ProbeError::Panic("boom".into()));
    assert_eq!(
        (v.class, v.fault),
        (FailureClass::ProberError, Some(ProberFault::Panic))
    );
    let v = judge(Phase::Tls, &ProbeError::Internal("no TLS config".into()));
    assert_eq!(v.fault, Some(ProberFault::Internal));
    // A round trip's leg is judged the same.
    let leg = ProbeError::Leg {
        phase: Phase::Connect,
        error: Box::new(ProbeError::Connect {
            addr: "127.0.0.1:25".parse().unwrap(),
            source: io::Error::from_raw_os_error(libc::EMFILE),
        }),
    };
    assert_eq!(
        judge(Phase::Send, &leg).fault,
        Some(ProberFault::FileDescriptors)
    );
}

#[test]
fn prober_fault_labels_are_unique_snake_case() {
    let mut seen = std::collections::HashSet::new();
    for f in ProberFault::ALL {
        assert!(seen.insert(f.as_str()));
        assert!(
            f.as_str()
                .chars()
                .all(|c| c.is_ascii_lowercase() || c == '_')
        );
        assert_eq!(
            serde_json::to_string(f).unwrap(),
            format!("\"{}\"", f.as_str())
        );
    }
}
