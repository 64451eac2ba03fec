pub mod export;
pub mod state;
