//! The incident timeline: probe results turned into the outage story an admin tells.
//!
//! - [`state`]: per-target health (`up`, `degraded`, `down`) with hysteresis.
//! - [`engine`]: grouping into incidents by scope, stages, causes and timeline entries.
//! - [`store`]: SQLite persistence in the state directory, with migrations and retention.
//! - [`service`]: the task that feeds the engine, ticks it, saves and publishes its state.
//! - [`providers`]: the provider's issues beside our incidents (merged, matched, stored).
//! - [`uptime`]: per-day rollups of each component's state for the uptime bars.
//! - [`render`]: the timeline as a table, Markdown, CSV or JSON.
//! - [`maintenance`]: planned-work windows, which open no incidents.
//! - [`notes`]: updates written by people into an incident's timeline.
//! - [`seen`]: which locations saw what, when the state is read from Prometheus.

pub mod engine;
pub mod maintenance;
pub mod notes;
pub mod providers;
pub mod render;
pub mod seen;
pub mod service;
pub mod state;
pub mod store;
pub mod uptime;

pub use engine::{Entry, EntryKind, Incident, Known, Scope, Stage, Summary};
pub use state::{Health, Observation, TargetState};
