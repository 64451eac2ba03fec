pub mod changes;
pub mod export;
pub mod snapshot;
pub mod state;
