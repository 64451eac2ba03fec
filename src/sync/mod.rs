//! Sync pulls of organizations and accounts: [`export`] (full pulls and the
//! walk they share), [`base`] (the base-DN fingerprint), [`changes`] (incremental by snapshot difference, sync
//! protection), [`delta`] (from a change tracker's report to a change set, with `containers` and
//! `lookup` following entries through moves), [`verify`] (scheduled verification, with [`rules`] the
//! sign-in attributes' matching rules and [`shared`] the values several
//! entries share, and [`drift`] what the change tracking cannot report), [`snapshot`] and [`state`] (what is kept in `state_dir`).

pub mod base;
pub mod changes;
mod classify;
mod containers;
pub mod delta;
pub mod drift;
pub mod error;
pub mod export;
mod lookup;
pub mod rules;
pub mod shared;
pub mod snapshot;
pub mod state;
pub mod tracking;
pub mod verify;
