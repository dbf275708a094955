//! The one list of protocols: the [`Protocol`] label, the [`ProbeSpec`] a target holds, and how
//! each protocol's `[[target]]` table is read ([`spec_kind`]). Each protocol is one line in each
//! table below; everything else about it (running it, its phases, its keys, defaults and checks)
//! is in its own folder, `probe/<protocol>/`, reached through [`ProtocolSpec`] and
//! [`SpecTable`](super::spec::SpecTable).
//!
//! # Adding a protocol
//!
//! A new folder `src/probe/pop3/` with `mod.rs` (the dialogue) and `spec.rs` (a `Pop3Spec`
//! implementing [`ProtocolSpec`] and a `Pop3Table` implementing
//! [`SpecTable`](super::spec::SpecTable)), then these lines elsewhere and no more:
//!
//! 1. `src/probe/mod.rs`: `pub mod pop3;`
//! 2. here, in `protocols!`: `Pop3 = "pop3",` (with its doc line): the variant, its label, its
//!    place in [`Protocol::ALL`] and the value of the `protocol` key;
//! 3. here, in [`ProbeSpec`]: `Pop3(super::pop3::spec::Pop3Spec),` (with its doc line);
//! 4. here, in [`ProbeSpec::get`]: `ProbeSpec::Pop3(s) => s,`: the dispatch of running it, its
//!    phases, endpoint, secrets and timing;
//! 5. here, in [`spec_kind`]:
//!    `Protocol::Pop3 => SpecKind::of::<super::pop3::spec::Pop3Table>(),`:
//!    its keys and how they are read and checked;
//! 6. for each phase no protocol had before, one line in `phases!` (`src/probe/phase.rs`):
//!    `Stat = "stat",` (with its doc line).
//!
//! Nothing else outside the folder changes. The folder uses what all protocols share: in
//! `spec.rs`, the [`TargetCx`](crate::config::TargetCx) helpers for endpoints, credentials,
//! OAuth2 (with the protocol's own Microsoft scope) and secrets; in `mod.rs`, the shared phase
//! steps (`resolve_and_connect`, `tls_handshake`, `oauth2_token`), [`net`](super::net),
//! [`bounded`](super::bounded) and [`sasl`](super::sasl); its server's refusals implement
//! [`Answer`](super::error::Answer) in its folder, judged by its own table, while DNS, TCP,
//! TLS, I/O, deadlines and tokens keep the shared [`ProbeError`](super::ProbeError) variants.

use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::spec::{ProtocolSpec, SpecKind};
use crate::config::Endpoint;

/// Declares [`Protocol`] from one line per protocol: variant and label.
macro_rules! protocols {
    ($($(#[doc = $doc:literal])* $variant:ident = $label:literal,)*) => {
        /// The protocols mailprobe speaks; the `protocol` label and config key.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
        pub enum Protocol {
            $($(#[doc = $doc])* #[serde(rename = $label)] $variant,)*
        }

        impl Protocol {
            /// Every protocol, for pre-created series and summaries.
            pub const ALL: &'static [Protocol] = &[$(Protocol::$variant),*];

            /// The label value.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Protocol::$variant => $label,)*
                }
            }
        }
    };
}

protocols! {
    /// IMAP4rev1 mailbox access.
    Imap = "imap",
    /// SMTP submission (or an MX).
    Smtp = "smtp",
    /// Send over SMTP, see it arrive over IMAP.
    Roundtrip = "roundtrip",
    /// Webmail and mail APIs over HTTPS (pages, Autodiscover/EWS, JMAP).
    Https = "https",
    /// POP3 mailbox access.
    Pop3 = "pop3",
    /// A mail domain's MX hosts, as the world delivers to it.
    Mx = "mx",
    /// Exchange Online (or any Microsoft 365 mailbox) through Microsoft Graph.
    Graph = "graph",
    /// A Google Workspace mailbox through the Gmail API.
    Gmail = "gmail",
}

/// The protocol-specific part of a target; a closed set matched exhaustively.
#[derive(Clone, Debug)]
pub enum ProbeSpec {
    /// `protocol = "imap"`.
    Imap(super::imap::spec::ImapSpec),
    /// `protocol = "smtp"`.
    Smtp(super::smtp::spec::SmtpSpec),
    /// `protocol = "roundtrip"`.
    Roundtrip(Box<super::roundtrip::spec::RoundtripSpec>),
    /// `protocol = "https"`.
    Https(Box<super::https::spec::HttpsSpec>),
    /// `protocol = "pop3"`.
    Pop3(super::pop3::spec::Pop3Spec),
    /// `protocol = "mx"`.
    Mx(Box<super::mx::spec::MxSpec>),
    /// `protocol = "graph"`.
    Graph(Box<super::graph::spec::GraphSpec>),
    /// `protocol = "gmail"`.
    Gmail(Box<super::gmail::spec::GmailSpec>),
}

impl ProbeSpec {
    /// The protocol's own side of the spec, which everything else asks.
    pub fn get(&self) -> &dyn ProtocolSpec {
        match self {
            ProbeSpec::Imap(s) => s,
            ProbeSpec::Smtp(s) => s,
            ProbeSpec::Roundtrip(s) => &**s,
            ProbeSpec::Https(s) => &**s,
            ProbeSpec::Pop3(s) => s,
            ProbeSpec::Mx(s) => &**s,
            ProbeSpec::Graph(s) => &**s,
            ProbeSpec::Gmail(s) => &**s,
        }
    }

    /// The protocol label of this spec.
    pub fn protocol(&self) -> Protocol {
        self.get().protocol()
    }

    /// The endpoint this spec connects to, for summaries.
    pub fn endpoint(&self) -> Option<&Endpoint> {
        self.get().endpoint()
    }

    /// Secrets that must never be echoed back in details, however a server words its errors.
    pub fn secrets(&self) -> Vec<&SecretString> {
        self.get().secrets()
    }
}

/// How each protocol's `[[target]]` table is read and checked.
pub fn spec_kind(protocol: Protocol) -> SpecKind {
    match protocol {
        Protocol::Imap => SpecKind::of::<super::imap::spec::ImapTable>(),
        Protocol::Smtp => SpecKind::of::<super::smtp::spec::SmtpTable>(),
        Protocol::Roundtrip => SpecKind::of::<super::roundtrip::spec::RoundtripTable>(),
        Protocol::Https => SpecKind::of::<super::https::spec::HttpsTable>(),
        Protocol::Pop3 => SpecKind::of::<super::pop3::spec::Pop3Table>(),
        Protocol::Mx => SpecKind::of::<super::mx::spec::MxTable>(),
        Protocol::Graph => SpecKind::of::<super::graph::spec::GraphTable>(),
        Protocol::Gmail => SpecKind::of::<super::gmail::spec::GmailTable>(),
    }
}

/// One thing to probe, fully resolved and validated.
#[derive(Clone, Debug)]
pub struct Target {
    /// Unique name; the `target` label.
    pub name: String,
    /// The `region` label (e.g. the datacenter or market the mailbox lives in).
    pub region: String,
    /// Time between two probes.
    pub interval: Duration,
    /// Deadline of one probe.
    pub timeout: Duration,
    /// A success slower than this is degraded.
    pub slow_threshold: Duration,
    /// How many users this target stands for, when known (for incident reports).
    pub users: Option<u64>,
    /// The provider it is on (a `[[provider]]` name or a kind), to put the provider's issues
    /// beside its incidents.
    pub provider: Option<String>,
    /// What to do.
    pub spec: ProbeSpec,
    /// Hash of everything that defines this target (secrets hashed, never stored in clear);
    /// equal fingerprints mean a reload left the target unchanged.
    pub fingerprint: u64,
}

impl Target {
    /// The protocol label.
    pub fn protocol(&self) -> Protocol {
        self.spec.protocol()
    }
}
