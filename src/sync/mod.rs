//! Sync pulls of organizations and accounts. Modules in the order they
//! build on each other:
//!
//! - [`error`]: why a pull failed; [`state`]: atomic files in `state_dir`.
//! - [`reader`]: the directory reader: paged searches (RFC 2696), entry
//!   reads and stable ids, over the service account's connections.
//! - [`tracking`]: the directory's own change tracking (syncrepl, AD uSN
//!   cursors), read through the reader.
//! - [`snapshot`]: what a pull leaves for the next changes pull; [`store`]:
//!   where snapshots and the fingerprint live (`state_dir`, or the shared
//!   store of `[cluster]`).
//! - [`classify`]: which entries are organizations and accounts.
//! - [`render`]: the NDJSON lines of a pull.
//! - [`objects`]: organizations and accounts read, classified and rendered
//!   (the walk of a full pull); `lookup` finds them by id.
//! - [`base`]: the base-DN fingerprint; [`containers`]: the entries that hold
//!   objects without being any.
//! - [`delta`]: from a change tracker's report to a change set, following
//!   entries through moves.
//! - [`export`]: the pulls of one directory ([`export::Exporter`]) and the
//!   full pull; [`changes`]: the changes pull and sync protection.
//! - [`verify`]: scheduled verification, with [`drift`] (what the change
//!   tracking cannot report), [`rules`] (the sign-in attributes' matching
//!   rules) and [`shared`] (the values several entries share).

pub mod base;
pub mod changes;
pub mod classify;
pub mod containers;
pub mod delta;
pub mod drift;
pub mod error;
pub mod export;
mod lookup;
pub mod objects;
pub mod reader;
pub mod render;
pub mod rules;
pub mod shared;
pub mod snapshot;
pub mod state;
pub mod store;
pub mod tracking;
pub mod verify;
