//! Keeping secrets out of failure details.
//!
//! A server may echo what it was sent, in whatever form it went on the wire: raw (an IMAP
//! literal, an HTTP header), IMAP-quoted with `"` and `\` escaped, or base64 inside a SASL
//! message (PLAIN, LOGIN, XOAUTH2, OAUTHBEARER). Every such form is replaced by [`MARK`] in the
//! whole text, before the detail is cut to length, so an echo that straddles the cut cannot leave
//! its first characters behind. A secret of only a few characters is replaced only where a
//! protocol puts a value (a whole token, a whole base64 word), never inside the server's words:
//! a password `in` must not turn `Login` into `Log[REDACTED]`.

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use secrecy::{ExposeSecret, SecretString};

/// What a secret is replaced with.
pub const MARK: &str = "[REDACTED]";

/// Secrets shorter than this many characters are replaced only as whole tokens: shorter strings
/// occur inside ordinary words too often.
const SHORT: usize = 8;

/// Base64 as SASL sends it, decoded whether or not the padding is there (an echo may be cut).
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// `text` with every wire form of every secret in `secrets` replaced by [`MARK`].
pub fn redact<'a>(text: &str, secrets: impl IntoIterator<Item = &'a SecretString>) -> String {
    let mut out = text.to_string();
    for secret in secrets {
        let secret = secret.expose_secret();
        if secret.is_empty() {
            continue;
        }
        let short = secret.chars().count() < SHORT;
        for form in text_forms(secret) {
            out = if short {
                replace_tokens(&out, &form)
            } else {
                out.replace(&form, MARK)
            };
        }
        out = replace_base64(&out, secret.as_bytes(), short);
    }
    out
}

/// The secret as it appears in text: raw (also an IMAP literal), and quoted with `\` and `"`
/// escaped (an IMAP quoted string; JSON and Rust's Debug escape these two the same way).
/// Longest first, so a form containing another is replaced whole.
fn text_forms(secret: &str) -> Vec<String> {
    let escaped = secret.replace('\\', "\\\\").replace('"', "\\\"");
    if escaped == secret {
        vec![secret.to_string()]
    } else {
        vec![escaped, secret.to_string()]
    }
}

/// Whether `c` (`None`: the start or end of the text) ends a token: white space, quotes and
/// brackets, as around the arguments of a command a server echoes.
fn boundary(c: Option<char>) -> bool {
    c.is_none_or(|c| {
        c.is_whitespace()
            || c.is_control()
            || matches!(
                c,
                '"' | '\'' | '(' | ')' | '[' | ']' | '{' | '}' | '<' | '>' | ',' | ';'
            )
    })
}

/// `text` with the occurrences of `form` that are whole tokens replaced.
fn replace_tokens(text: &str, form: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut from = 0;
    let mut search = 0;
    while let Some(i) = text[search..].find(form).map(|i| search + i) {
        let end = i + form.len();
        if boundary(text[..i].chars().next_back()) && boundary(text[end..].chars().next()) {
            out.push_str(&text[from..i]);
            out.push_str(MARK);
            from = end;
            search = end;
        } else {
            search = i + text[i..].chars().next().map_or(1, char::len_utf8);
        }
    }
    out.push_str(&text[from..]);
    out
}

/// `text` with every base64 word that carries `secret` replaced: one that decodes to it (SASL
/// LOGIN), to a SASL message (PLAIN, XOAUTH2, OAUTHBEARER, whole or cut), or, for a longer
/// secret, to anything containing it or to a piece of it (an echo the server cut).
fn replace_base64(text: &str, secret: &[u8], short: bool) -> String {
    let mut out = String::with_capacity(text.len());
    let mut from = 0;
    for (start, end) in base64_words(text) {
        let Some(decoded) = decode(&text[start..end]) else {
            continue;
        };
        let hides = decoded == secret
            || sasl_message(&decoded)
            || (!short && (contains(&decoded, secret) || contains(secret, &decoded)));
        if hides {
            out.push_str(&text[from..start]);
            out.push_str(MARK);
            from = end;
        }
    }
    out.push_str(&text[from..]);
    out
}

/// Byte ranges of the words of `text` that could be base64: characters of the alphabet, then at
/// most two `=` (a one-character secret is two, unpadded).
fn base64_words(text: &str) -> Vec<(usize, usize)> {
    let bytes = text.as_bytes();
    let mut words = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if !(bytes[i].is_ascii_alphanumeric() || bytes[i] == b'+' || bytes[i] == b'/') {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len()
            && (bytes[i].is_ascii_alphanumeric() || matches!(bytes[i], b'+' | b'/'))
        {
            i += 1;
        }
        let mut end = i;
        while end < bytes.len() && end - i < 2 && bytes[end] == b'=' {
            end += 1;
        }
        if i - start >= 2 {
            words.push((start, end));
        }
        i = end;
    }
    words
}

/// The bytes `word` encodes; a word the server cut mid-group decodes up to the cut.
fn decode(word: &str) -> Option<Vec<u8>> {
    let digits = word.trim_end_matches('=');
    let usable = digits.len() - usize::from(digits.len() % 4 == 1);
    BASE64.decode(&digits[..usable]).ok()
}

/// Whether `data` is (the start of) a SASL client message that carries a secret: PLAIN
/// (`authzid NUL authcid NUL passwd`, RFC 4616), XOAUTH2 (`user=... ^A auth=Bearer ...`) or
/// OAUTHBEARER (`n,a=..., ^A ... auth=Bearer ...`, RFC 7628).
fn sasl_message(data: &[u8]) -> bool {
    let text = match std::str::from_utf8(data) {
        Ok(t) => t,
        // Cut inside a character: judge what came before.
        Err(e) => std::str::from_utf8(&data[..e.valid_up_to()]).unwrap_or_default(),
    };
    let nuls = text.chars().filter(|&c| c == '\0').count();
    let plain = (1..=2).contains(&nuls)
        && text.chars().all(|c| c == '\0' || !c.is_control())
        && text.chars().filter(|&c| c != '\0').count() >= 3;
    let bearer = (text.starts_with("user=") || text.starts_with("n,")) && text.contains('\x01');
    plain || bearer
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.len() >= 4 && haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(text: &str, secret: &str) -> String {
        redact(text, [&SecretString::from(secret)])
    }

    fn b64(data: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(data)
    }

    #[test]
    fn raw_and_quoted_forms_are_replaced() {
        let pw = r#"Pw"Quo\te-secret"#;
        assert_eq!(
            r(r#"NO you said: LOGIN "u" "Pw\"Quo\\te-secret""#, pw),
            r#"NO you said: LOGIN "u" "[REDACTED]""#
        );
        assert_eq!(
            r("literal {16}\r\nPw\"Quo\\te-secret", pw),
            "literal {16}\r\n[REDACTED]"
        );
    }

    #[test]
    fn every_sasl_form_is_replaced() {
        let pw = "pr0be-Secret";
        for blob in [
            b64(b"\0probe@example.test\0pr0be-Secret"),
            b64(b"admin\0probe@example.test\0pr0be-Secret"),
            b64(b"pr0be-Secret"),
            b64(b"user=probe@example.test\x01auth=Bearer pr0be-Secret\x01\x01"),
            b64(b"n,a=probe@example.test,\x01host=h\x01port=993\x01auth=Bearer pr0be-Secret\x01\x01"),
        ] {
            let out = r(&format!("NO [ALERT] you said: {blob}."), pw);
            assert_eq!(out, "NO [ALERT] you said: [REDACTED].", "{blob}");
        }
    }

    #[test]
    fn a_sasl_echo_the_server_cut_is_replaced() {
        let blob = b64(b"\0probe@example.test\0pr0be-Secret");
        // Cut inside the password, off the 4-character grid.
        for cut in [30, 33, 35] {
            let out = r(&format!("NO echo {}", &blob[..cut]), "pr0be-Secret");
            assert_eq!(out, "NO echo [REDACTED]", "{cut}");
        }
        let login = b64(b"pr0be-Secret");
        assert_eq!(
            r(&format!("NO {}", &login[..7]), "pr0be-Secret"),
            "NO [REDACTED]"
        );
    }

    #[test]
    fn a_short_secret_is_replaced_only_as_a_whole_token() {
        assert_eq!(
            r(r#"Login failed within domain: LOGIN "u" "in" (in)"#, "in"),
            r#"Login failed within domain: LOGIN "u" "[REDACTED]" ([REDACTED])"#
        );
        assert_eq!(r("server imap.ab.example", "ab"), "server imap.ab.example");
        // Its base64 (SASL LOGIN) is a whole word: replaced; other words decoding to something
        // that merely contains it are not.
        assert_eq!(r(&format!("NO {}", b64(b"in")), "in"), "NO [REDACTED]");
        assert_eq!(r(&format!("NO {}", b64(b"\0u\0in")), "in"), "NO [REDACTED]");
        assert_eq!(r("NO aW5zaWRl", "in"), "NO aW5zaWRl");
    }

    #[test]
    fn server_text_is_left_alone() {
        // Exchange's greeting stamp is base64 of UTF-16 text: full of NULs, not SASL.
        let stamp = "* OK The Microsoft Exchange IMAP4 service is ready. \
                     [QgBZADIAUABSADEAMQBDAEEAMAAwADcAMAAuAG4AYQBtAHAAcgBkADEAMQAuAHAAcgBvAGQALgBvAHUAdABsAG8AbwBrAC4AYwBvAG0A]";
        assert_eq!(r(stamp, "pr0be-Secret"), stamp);
        let gmail = "NO [WEBALERT https://accounts.google.com/signin/continue?sarp=1&scc=1&plt=AKgnsbt] \
                     Web login required.";
        assert_eq!(r(gmail, "pr0be-Secret"), gmail);
        assert_eq!(r(gmail, "in"), gmail);
    }

    #[test]
    fn empty_secrets_are_ignored() {
        assert_eq!(r("NO nothing", ""), "NO nothing");
    }
}
