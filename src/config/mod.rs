//! The parts of `probes.toml` every protocol's spec shares, below the probes: errors that name
//! file, line and key ([`error`], [`locate`]), secrets and bounded file reads ([`secrets`]),
//! durations, labels and the log format ([`common`]), endpoints and TLS trust ([`endpoint`]),
//! credentials ([`credentials`]) and OAuth2 credential sets ([`oauth2`]), and the context a
//! spec reads its `[[target]]` table with ([`target`]).
//!
//! Each protocol's own keys, defaults and validation live with the protocol (its `spec.rs`
//! under `probe/`); the loader that reads the file and hands each `[[target]]` table to its
//! protocol sits above the probes (`load`). Nothing here knows a protocol by name.

pub mod common;
pub mod credentials;
pub mod endpoint;
pub mod error;
pub mod locate;
pub mod maintenance;
pub mod oauth2;
pub mod secrets;
pub mod target;

pub use common::LogFormat;
pub use credentials::{AuthMechanism, Credentials, LoginKeys, Secret};
pub use endpoint::{Endpoint, EndpointKeys, IpProtocol, NetSettings, Ports, TlsMode};
pub use error::{ConfigError, ConfigWarning, FileError};
pub use locate::{KeyPath, Locator};
pub use secrets::{MAX_CONFIG_BYTES, MAX_PEM_BYTES, read_bounded, read_config_text};
pub use target::{LoadState, TargetCx};
