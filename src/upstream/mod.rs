//! The directory side: the configured servers ([`server`]), connections to
//! them (TCP, LDAPS, StartTLS, CA and pin verification: [`connect`]), each a
//! framed stream with its server's name and limits ([`connection`]), and the
//! pool that lends them out per purpose — client sessions, sign-in binds,
//! the service account's searches ([`service`]) — with health checks and
//! failover. Every lease comes back through one check-in rule ([`checkin`]).
//!
//! Dependencies run one way: `server` and `connection` know nothing of the
//! pool; `connect` builds a connection to a server; the pool lends them.

pub mod checkin;
pub mod connect;
pub mod connection;
pub mod pool;
pub mod requests;
pub mod schema;
pub mod server;
pub mod service;
mod stash;

use std::time::Duration;

use thiserror::Error;

use crate::tls::{Incompatibility, PinMismatch};

pub use connection::UpstreamConn;
pub use pool::{Lease, UpstreamPool};
pub use server::UpstreamServer;

/// Timeouts and limits every connection of a pool obeys.
#[derive(Debug, Clone, Copy)]
pub struct PoolSettings {
    /// TCP connect, and the TLS handshake after it, each.
    pub connect_timeout: Duration,
    /// One request of ldapgate's own, from sending it to its final
    /// response (for long searches: between two responses).
    pub operation_timeout: Duration,
    /// Idle connections kept per server for client sessions.
    pub max_idle_per_server: usize,
    /// The largest PDU accepted from the directory, in bytes.
    pub max_message_bytes: usize,
}

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
