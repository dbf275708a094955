//! The incident timeline: probe results turned into the outage story an admin tells.
//!
//! - [`state`]: per-target health (`up`, `degraded`, `down`) with hysteresis.
//! - [`engine`]: grouping into incidents by scope, stages, causes and timeline entries.
//! - [`store`]: SQLite persistence in the state directory, with migrations and retention.
//! - [`service`]: the task that feeds the engine, ticks it, saves and publishes its state.
//! - [`render`]: the timeline as a table, Markdown, CSV or JSON.
//! - [`seen`]: which locations saw what, when the state is read from Prometheus.

pub mod engine;
pub mod render;
pub mod seen;
pub mod service;
pub mod state;
pub mod store;

pub use engine::{Entry, Incident, Known, Scope, Stage, Summary};
pub use state::{Health, Observation, TargetState};
