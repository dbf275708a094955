//! SASL with OAuth2 bearer tokens, shared by IMAP (`AUTHENTICATE`) and SMTP (`AUTH`): XOAUTH2
//! (Google's and Microsoft's) and OAUTHBEARER (RFC 7628).
//!
//! A server that rejects the token answers with a base64 JSON challenge (`{"status":"401",...}`)
//! that the client must answer (XOAUTH2: an empty line; OAUTHBEARER: `%x01`) before the final
//! failure arrives; the decoded status goes into the probe's detail.

use base64::Engine;

/// A bearer-token SASL mechanism.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bearer {
    /// `XOAUTH2`.
    XOAuth2,
    /// `OAUTHBEARER` (RFC 7628).
    OAuthBearer,
}

impl Bearer {
    /// The mechanism name.
    pub fn name(self) -> &'static str {
        match self {
            Bearer::XOAuth2 => "XOAUTH2",
            Bearer::OAuthBearer => "OAUTHBEARER",
        }
    }

    /// The one to use: `configured`, else XOAUTH2 when offered (the widest supported), else
    /// OAUTHBEARER when offered, else XOAUTH2.
    pub fn choose(configured: Option<Bearer>, offered: impl Fn(&str) -> bool) -> Bearer {
        configured.unwrap_or(if offered("XOAUTH2") || !offered("OAUTHBEARER") {
            Bearer::XOAuth2
        } else {
            Bearer::OAuthBearer
        })
    }

    /// The client's first message (raw, before base64).
    pub fn initial(self, user: &str, token: &str, host: &str, port: u16) -> Vec<u8> {
        match self {
            Bearer::XOAuth2 => format!("user={user}\x01auth=Bearer {token}\x01\x01").into_bytes(),
            Bearer::OAuthBearer => {
                // RFC 7628 §3.1: gs2 header with the authzid, commas and equals escaped.
                let authzid = user.replace('=', "=3D").replace(',', "=2C");
                format!(
                    "n,a={authzid},\x01host={host}\x01port={port}\x01auth=Bearer {token}\x01\x01"
                )
                .into_bytes()
            }
        }
    }

    /// The answer to the server's error challenge (raw).
    pub fn error_reply(self) -> &'static [u8] {
        match self {
            Bearer::XOAuth2 => b"",
            Bearer::OAuthBearer => b"\x01",
        }
    }
}

/// The server's error challenge in words: its `status` (and `scope`, `schemes`) when it is the
/// JSON the mechanisms define, else its text, clipped.
pub fn decode_error(challenge: &[u8]) -> String {
    let json: Option<serde_json::Value> = serde_json::from_slice(challenge).ok();
    match json.as_ref().and_then(|j| j.as_object()) {
        Some(obj) => {
            let mut parts: Vec<String> = Vec::new();
            for key in ["status", "scope", "schemes"] {
                if let Some(v) = obj.get(key) {
                    let v = v
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string());
                    parts.push(format!("{key} {v}"));
                }
            }
            if parts.is_empty() {
                "an error challenge without a status".into()
            } else {
                parts.join(", ")
            }
        }
        None => String::from_utf8_lossy(challenge)
            .chars()
            .take(200)
            .collect(),
    }
}

/// Base64 of a raw SASL message.
pub fn b64(raw: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_responses_follow_the_specs() {
        assert_eq!(
            Bearer::XOAuth2.initial("a@b.c", "tok", "imap.b.c", 993),
            b"user=a@b.c\x01auth=Bearer tok\x01\x01"
        );
        assert_eq!(
            Bearer::OAuthBearer.initial("a,x=@b.c", "tok", "imap.b.c", 993),
            b"n,a=a=2Cx=3D@b.c,\x01host=imap.b.c\x01port=993\x01auth=Bearer tok\x01\x01"
        );
    }

    #[test]
    fn error_challenges_are_decoded() {
        assert_eq!(
            decode_error(br#"{"status":"invalid_token","scope":"mail","schemes":"bearer"}"#),
            "status invalid_token, scope mail, schemes bearer"
        );
        assert_eq!(decode_error(br#"{"status":401}"#), "status 401");
        assert_eq!(decode_error(b"nope"), "nope");
    }

    #[test]
    fn the_mechanism_follows_what_is_offered() {
        assert_eq!(
            Bearer::choose(None, |m| m == "OAUTHBEARER"),
            Bearer::OAuthBearer
        );
        assert_eq!(Bearer::choose(None, |_| true), Bearer::XOAuth2);
        assert_eq!(Bearer::choose(None, |_| false), Bearer::XOAuth2);
        assert_eq!(
            Bearer::choose(Some(Bearer::OAuthBearer), |_| true),
            Bearer::OAuthBearer
        );
    }
}
