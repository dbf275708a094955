//! Who a probe signs in as: a username with a password, or with an OAuth2 credential set; and
//! the SASL mechanism that carries them. IMAP and SMTP read `auth` as `"password"` (the default)
//! or `"oauth2"`; HTTPS has its own values (see its spec) and reuses the password part for Basic.

use std::fmt;
use std::sync::Arc;

use secrecy::SecretString;
use serde::Deserialize;

use super::error::ConfigError;
use super::oauth2::{OAuth2Spec, RawOAuth2};
use super::target::TargetCx;

/// How a probe authenticates (`auth_mechanism`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMechanism {
    /// IMAP: the `LOGIN` command; SMTP: SASL `AUTH LOGIN`.
    #[default]
    Login,
    /// SASL PLAIN: IMAP `AUTHENTICATE PLAIN`, SMTP `AUTH PLAIN`.
    Plain,
    /// SASL XOAUTH2 with an OAuth2 token.
    Xoauth2,
    /// SASL OAUTHBEARER (RFC 7628) with an OAuth2 token.
    Oauthbearer,
}

impl AuthMechanism {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMechanism::Login => "login",
            AuthMechanism::Plain => "plain",
            AuthMechanism::Xoauth2 => "xoauth2",
            AuthMechanism::Oauthbearer => "oauthbearer",
        }
    }

    /// Whether it sends an OAuth2 token (rather than a password).
    pub fn is_oauth2(self) -> bool {
        matches!(self, AuthMechanism::Xoauth2 | AuthMechanism::Oauthbearer)
    }
}

/// What proves who the probe is.
#[derive(Clone)]
pub enum Secret {
    /// A password read from a file or the environment; its `Debug` prints `[REDACTED]`.
    Password(SecretString),
    /// An OAuth2 bearer token from this credential set.
    OAuth2(Arc<OAuth2Spec>),
}

impl Secret {
    /// The static secrets in it, to be redacted from any detail.
    pub fn static_secrets(&self) -> Vec<&SecretString> {
        match self {
            Secret::Password(p) => vec![p],
            Secret::OAuth2(o) => o.secrets(),
        }
    }
}

/// A username and its secret.
#[derive(Clone)]
pub struct Credentials {
    /// Login name; never used as a metric label or logged.
    pub username: String,
    /// The password or token source.
    pub secret: Secret,
}

impl Credentials {
    /// The password, when this is password authentication.
    pub fn password(&self) -> Option<&SecretString> {
        match &self.secret {
            Secret::Password(p) => Some(p),
            Secret::OAuth2(_) => None,
        }
    }

    /// Whether it signs in with an OAuth2 token (a `token` phase comes first).
    pub fn is_oauth2(&self) -> bool {
        matches!(self.secret, Secret::OAuth2(_))
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &"[REDACTED]")
            .field("password", &"[REDACTED]")
            .finish()
    }
}

/// A target's sign-in keys as written.
#[derive(Clone, Copy, Debug)]
pub struct LoginKeys<'a> {
    /// `username`.
    pub username: Option<&'a str>,
    /// `password_file`.
    pub password_file: Option<&'a str>,
    /// `password_env`.
    pub password_env: Option<&'a str>,
    /// `auth`: `"password"` (the default) or `"oauth2"`; `None` for HTTPS Basic, whose spec
    /// read its own `auth`.
    pub auth: Option<&'a str>,
    /// `auth_mechanism`.
    pub auth_mechanism: Option<AuthMechanism>,
    /// `[target.oauth2]`.
    pub oauth2: Option<&'a RawOAuth2>,
    /// The scope this protocol asks Microsoft for with a refresh token (its delegated
    /// permission, e.g. `https://outlook.office.com/IMAP.AccessAsUser.All`).
    pub delegated_scope: &'static str,
}

impl TargetCx<'_> {
    /// Username plus password (`auth = "password"`, the default) or OAuth2 credential set
    /// (`auth = "oauth2"`), with an `auth_mechanism` that fits.
    pub fn credentials(&mut self, keys: LoginKeys<'_>) -> Result<Credentials, ConfigError> {
        let username = keys
            .username
            .ok_or_else(|| self.error("username", "missing"))?
            .to_string();
        if username.is_empty() || username.contains(['\r', '\n', '\0']) {
            return Err(self.error("username", "must be a non-empty single line"));
        }
        let oauth2 = match keys.auth {
            None | Some("password") => false,
            Some("oauth2") => true,
            Some(other) => {
                return Err(self.error(
                    "auth",
                    format!("{other:?} is not \"password\" or \"oauth2\""),
                ));
            }
        };
        if let Some(m) = keys.auth_mechanism
            && m.is_oauth2() != oauth2
        {
            let wants = if oauth2 {
                "\"xoauth2\" or \"oauthbearer\""
            } else {
                "\"login\" or \"plain\""
            };
            return Err(self.error(
                "auth_mechanism",
                format!(
                    "\"{}\" does not fit auth = \"{}\": use {wants}",
                    m.as_str(),
                    if oauth2 { "oauth2" } else { "password" }
                ),
            ));
        }
        let secret = if oauth2 {
            self.refuse_given(
                &["password_file", "password_env"],
                "has no effect with auth = \"oauth2\" (the token is the credential)",
            )?;
            // A service account acts for the user who signs in.
            Secret::OAuth2(Arc::new(self.oauth2_with(
                keys.oauth2,
                super::oauth2::OAuth2Defaults {
                    delegated: keys.delegated_scope,
                    subject: Some(&username),
                    ..Default::default()
                },
            )?))
        } else {
            if keys.oauth2.is_some() {
                return Err(self.error("oauth2", "has no effect without auth = \"oauth2\""));
            }
            Secret::Password(self.password(keys.password_file, keys.password_env)?)
        };
        Ok(Credentials { username, secret })
    }
}

/// For `#[serde(deserialize_with)]` on a `password` key: accepted by the parser whatever its
/// value, only so that it is refused with a helpful message (and the value never kept).
pub fn refused_value<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<()>, D::Error> {
    serde::de::IgnoredAny::deserialize(d).map(|_| Some(()))
}
