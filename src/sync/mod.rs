//! Sync pulls of organizations and accounts: [`export`] (full pulls and the
//! walk they share), [`base`] (the base-DN fingerprint), [`changes`] (incremental by snapshot difference, sync
//! protection), [`verify`] (scheduled verification, with [`rules`] the
//! sign-in attributes' matching rules and [`shared`] the values several
//! entries share), [`snapshot`] and [`state`] (what is kept in `state_dir`).

pub mod base;
pub mod changes;
mod classify;
pub mod delta;
pub mod error;
pub mod export;
pub mod rules;
pub mod shared;
pub mod snapshot;
pub mod state;
pub mod tracking;
pub mod verify;
