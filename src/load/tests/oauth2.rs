//! The loader on OAuth2 keys: presets, mistakes, service accounts, named and never shown.

use super::*;

pub(super) fn oauth2_target(protocol: &str, extra: &str, oauth2: &str) -> String {
    format!(
        "[[target]]\nname = \"o\"\nprotocol = \"{protocol}\"\nhost = \"h.example\"\n\
         username = \"probe@contoso.example\"\nauth = \"oauth2\"\n{extra}\n[target.oauth2]\n{oauth2}"
    )
}

#[test]
fn oauth2_presets_fill_endpoint_and_scopes() {
    let spec = |protocol: &str, oauth2: &str| {
        let c = parse(Path::new("p.toml"), &oauth2_target(protocol, "", oauth2)).unwrap();
        let creds = match &c.targets[0].spec {
            ProbeSpec::Imap(s) => s.credentials.clone(),
            ProbeSpec::Smtp(s) => s.credentials.clone().unwrap(),
            _ => unreachable!(),
        };
        match creds.secret {
            Secret::OAuth2(o) => (o.token_url.to_string(), o.scopes.clone(), o.label.clone()),
            Secret::Password(_) => panic!("oauth2 expected"),
        }
    };
    let (url, scopes, label) = spec(
        "imap",
        "provider = \"microsoft\"\ntenant = \"contoso.onmicrosoft.com\"\nclient_id = \"c1\"\nclient_secret_env = \"HOME\"\n",
    );
    assert_eq!(
        url,
        "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
    );
    assert_eq!(scopes, ["https://outlook.office365.com/.default"]);
    assert_eq!(label, "c1@login.microsoftonline.com");
    let (_, scopes, _) = spec(
        "smtp",
        "provider = \"microsoft\"\ntenant = \"t\"\nclient_id = \"c1\"\nrefresh_token_env = \"HOME\"\n",
    );
    assert_eq!(
        scopes,
        ["https://outlook.office.com/SMTP.Send", "offline_access"]
    );
    let (url, scopes, _) = spec(
        "imap",
        "provider = \"google\"\nclient_id = \"g1\"\nclient_secret_env = \"HOME\"\nrefresh_token_env = \"HOME\"\n",
    );
    assert_eq!(url, "https://oauth2.googleapis.com/token");
    assert_eq!(scopes, ["https://mail.google.com/"]);
    // Explicit fields win over the preset.
    let (url, scopes, _) = spec(
        "imap",
        "provider = \"google\"\ntoken_url = \"https://idp.example/t\"\nscopes = [\"x\"]\nclient_id = \"g1\"\nrefresh_token_env = \"HOME\"\n",
    );
    assert_eq!(
        (url.as_str(), scopes.as_slice()),
        ("https://idp.example/t", ["x".to_string()].as_slice())
    );
}

#[test]
fn oauth2_mistakes_are_named() {
    let e = err(&oauth2_target(
        "imap",
        "",
        "provider = \"microsoft\"\nclient_id = \"c\"\nclient_secret_env = \"HOME\"\n",
    ));
    assert!(e.contains("target[1] \"o\".oauth2.tenant: missing"), "{e}");
    let e = err(&oauth2_target(
        "imap",
        "",
        "provider = \"google\"\nclient_id = \"c\"\nclient_secret_env = \"HOME\"\n",
    ));
    assert!(
        e.contains("target[1] \"o\".oauth2.grant: Google has no client-credentials grant"),
        "{e}"
    );
    let e = err(&oauth2_target(
        "imap",
        "password_env = \"HOME\"",
        "token_url = \"https://i/t\"\nclient_id = \"c\"\nclient_secret_env = \"HOME\"\n",
    ));
    assert!(
        e.contains("target[1] \"o\".password_env: has no effect with auth = \"oauth2\""),
        "{e}"
    );
    let e = err(&oauth2_target(
        "imap",
        "auth_mechanism = \"plain\"",
        "token_url = \"https://i/t\"\nclient_id = \"c\"\nclient_secret_env = \"HOME\"\n",
    ));
    assert!(
        e.contains("target[1] \"o\".auth_mechanism: \"plain\" does not fit auth = \"oauth2\""),
        "{e}"
    );
    let e = err(&oauth2_target(
        "imap",
        "",
        "token_url = \"http://i/t\"\nclient_id = \"c\"\nclient_secret_env = \"HOME\"\n",
    ));
    assert!(
        e.contains("target[1] \"o\".oauth2.token_url: must be https://"),
        "{e}"
    );
    let e = err(&oauth2_target(
        "imap",
        "",
        "token_url = \"https://i/t\"\nclient_id = \"c\"\n",
    ));
    assert!(
        e.contains("target[1] \"o\".oauth2.client_secret_file: missing"),
        "{e}"
    );
    let e = err(&oauth2_target(
        "imap",
        "",
        "token_url = \"https://i/t\"\nclient_id = \"c\"\nclient_secret_env = \"HOME\"\nbogus = 1\n",
    ));
    assert!(
        e.contains("target[1] \"o\".oauth2.bogus: unknown key; no key"),
        "{e}"
    );
}

/// A service account's mistakes are named, and its key file's contents never echoed.
#[test]
fn service_account_mistakes_are_named_and_its_key_never_shown() {
    let e = err(&oauth2_target(
        "imap",
        "",
        "provider = \"google\"\nclient_id = \"c\"\nrefresh_token_env = \"HOME\"\nsubject = \"x@y\"\n",
    ));
    assert!(
        e.contains("target[1] \"o\".oauth2.subject: applies only to grant = \"jwt_bearer\""),
        "{e}"
    );
    let e = err(&oauth2_target("imap", "", "grant = \"jwt_bearer\"\n"));
    assert!(
        e.contains("oauth2.service_account_key_file: missing"),
        "{e}"
    );
    let dir = std::env::temp_dir().join(format!("mp-sa-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.json");
    std::fs::write(
        &bad,
        "{\"private_key\": \"-----BEGIN PRIVATE KEY-----\\nc2VjcmV0LWtleS1ieXRlcw\\n\"",
    )
    .unwrap();
    let e = err(&oauth2_target(
        "imap",
        "",
        &format!("service_account_key_file = \"{}\"\n", bad.display()),
    ));
    assert!(e.contains("not a service account JSON key"), "{e}");
    assert!(!e.contains("c2VjcmV0") && !e.contains("PRIVATE KEY"), "{e}");
    let nokey = dir.join("nokey.json");
    std::fs::write(
        &nokey,
        "{\"type\": \"service_account\", \"private_key\": \"-----BEGIN PRIVATE KEY-----\\nc2VjcmV0\\n-----END PRIVATE KEY-----\\n\", \"client_email\": \"sa@p.iam\"}",
    )
    .unwrap();
    let e = err(&oauth2_target(
        "imap",
        "",
        &format!("service_account_key_file = \"{}\"\n", nokey.display()),
    ));
    assert!(e.contains("private_key is not"), "{e}");
    assert!(!e.contains("c2VjcmV0"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}
