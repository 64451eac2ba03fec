//! The directory side: server addresses, connections (TCP, LDAPS, StartTLS,
//! CA and pin verification) and the pool that reuses them across client
//! sessions with health checks and failover.

pub mod connection;
pub mod pool;
pub mod requests;
pub mod schema;
pub mod service;

use std::time::Duration;

use thiserror::Error;

use crate::tls::{Incompatibility, PinMismatch};

pub use connection::UpstreamConn;
pub use pool::UpstreamPool;

/// Why a directory server could not be used. Each names the server.
#[derive(Debug, Error)]
pub enum UpstreamError {
    #[error("{server}: TCP connect failed: {source}")]
    Connect {
        server: String,
        source: std::io::Error,
    },
    #[error("{server}: {stage} timed out after {}", humantime::format_duration(*.after))]
    Timeout {
        server: String,
        stage: &'static str,
        after: Duration,
    },
    #[error("{server}: TLS handshake failed: {reason}")]
    Tls { server: String, reason: String },
    /// The server refused the handshake and accepts only what rustls
    /// cannot speak; the diagnosis says what and carries its certificate.
    #[error("{server}: TLS handshake failed: {found}")]
    TlsIncompatible {
        server: String,
        found: Box<Incompatibility>,
    },
    #[error("{server}: {mismatch}; add the pin if this certificate is expected")]
    PinMismatch {
        server: String,
        mismatch: Box<PinMismatch>,
    },
    #[error("{server}: StartTLS refused with result {code}: {diagnostic}")]
    StartTlsRefused {
        server: String,
        code: i64,
        diagnostic: String,
    },
    #[error("{server}: {what}")]
    Protocol { server: String, what: String },
    #[error("{server}: I/O error during {stage}: {source}")]
    Io {
        server: String,
        stage: &'static str,
        source: std::io::Error,
    },
}

/// Every configured server failed.
#[derive(Debug, Error)]
#[error("no directory server available: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct NoServerAvailable(pub Vec<UpstreamError>);
