//! Helpers shared by the integration tests: a temp dir with a test PKI, configs written as real
//! TOML files and loaded through the real loader, and one-shot probes.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use mailprobe::config::{self, Config};
use mailprobe::probe::{self, Outcome, Phase, ProbeContext};
use mailprobe_testpeers::pki::TestPki;
use mailprobe_testpeers::util::short_tempdir;

pub use mailprobe_testpeers::dovecot::{PASSWORD, USER};

/// A scratch directory with a test CA and certificates.
pub struct Env {
    pub dir: mailprobe_testpeers::tempfile::TempDir,
    pub pki: TestPki,
}

impl Env {
    pub fn new() -> Env {
        mailprobe::install_crypto_provider();
        let dir = short_tempdir("mpt-");
        let pki = TestPki::generate(&dir.path().join("pki"));
        Env { dir, pki }
    }

    /// Writes a secret file and returns its path.
    pub fn secret(&self, name: &str, value: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, format!("{value}\n")).unwrap();
        p
    }

    /// The path configs are written to.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("probes.toml")
    }

    /// Writes `text` as probes.toml and loads it with the real loader.
    pub fn config(&self, text: &str) -> Config {
        std::fs::write(self.config_path(), text).unwrap();
        config::load(&self.config_path()).unwrap_or_else(|e| panic!("config error: {e}\n{text}"))
    }

    /// A `[[target]]` for an IMAP server on 127.0.0.1:`port` trusting the test CA, logging in
    /// as the test user; `extra` lines are appended (they may override nothing already set).
    pub fn imap_target(&self, name: &str, port: u16, extra: &str) -> String {
        let pass = self.secret(&format!("{name}.pass"), PASSWORD);
        format!(
            "[[target]]\nname = \"{name}\"\nregion = \"test\"\nprotocol = \"imap\"\nhost = \"127.0.0.1\"\n\
             port = {port}\nca_file = \"{ca}\"\nusername = \"{USER}\"\npassword_file = \"{pass}\"\n{extra}\n",
            ca = self.pki.ca.display(),
            pass = pass.display(),
        )
    }
}

/// Probes the first target of `cfg` once.
pub async fn probe_first(cfg: &Config) -> Outcome {
    let ctx = ProbeContext::new();
    probe::run(&cfg.targets[0], &ctx).await
}

/// Probes every target of `cfg` once, concurrently.
pub async fn probe_all(cfg: &Config) -> Vec<Outcome> {
    let ctx = Arc::new(ProbeContext::new());
    let mut handles = Vec::new();
    for t in &cfg.targets {
        let (t, ctx) = (t.clone(), ctx.clone());
        handles.push(tokio::spawn(async move { probe::run(&t, &ctx).await }));
    }
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

/// The phases an outcome went through, in order.
pub fn phases(o: &Outcome) -> Vec<Phase> {
    o.phases.iter().map(|p| p.phase).collect()
}

/// `(class, phase)` of a failed outcome, as label strings, with the detail for messages.
pub fn failure(o: &Outcome) -> (&'static str, &'static str) {
    let f = o
        .failure
        .as_ref()
        .unwrap_or_else(|| panic!("expected a failure, got success: {o:?}"));
    (f.class.as_str(), f.phase.as_str())
}
