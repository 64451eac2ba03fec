//! ldapgate: an LDAP proxy and delegated-authentication appliance.
//!
//! Modules in the order a client's bytes flow through them:
//!
//! - [`config`]: the TOML file parsed once into typed, validated values: shared
//!   `[server]`, `[control]`, `[metrics]`, and one [`config::TenantDirectory`] per
//!   directory of the tenant.
//! - [`daemon`]: `ldapgate run`; wires directories, listeners and shutdown, and
//!   reloads (adding and removing directories).
//! - [`directory`]: one directory at run time, owned in one place: its pool,
//!   authenticator, pulls, session context and health.
//! - [`listener`]: accept loops for LDAP (StartTLS) and LDAPS, allowlist, connection cap.
//! - [`stream`]: the plain-or-TLS byte stream under either leg, framed into PDUs
//!   ([`stream::Framed`]) and moved both ways at once.
//! - [`session`]: one client connection; [`session::policy`] decides per request.
//! - [`auth`]: delegated authentication: sign-in resolution, bind, outcomes.
//! - [`ratelimit`]: per-address and per-identity bind limits, lockout; shared
//!   between the instances of a tenant through [`cluster`].
//! - [`cluster`]: the shared store (Redis) of `[cluster]`, its health and keyed names.
//! - [`metrics`]: the Prometheus registry; each directory records through its
//!   [`metrics::DirectoryMetrics`] (the `directory` label).
//! - [`health`]: the `/metrics`, `/healthz`, `/readyz` endpoint.
//! - [`control`]: the HTTPS control channel (`/v1/directories/{name}/authenticate`,
//!   `/sync/...`, `/verify`; the unscoped `/v1/...` for the only directory;
//!   `/v1/directories`, `/v1/fingerprint`).
//! - [`http_server`]: bounded HTTP/1.1 serving under the control and metrics listeners:
//!   connection slots, header and body deadlines, size limits.
//! - [`sync`]: full and incremental pulls built on a directory reader (paged search, entry
//!   reads, ids), base-DN fingerprint, sync protection.
//! - [`ber`]: raw PDU framing with size limits, and a zero-copy TLV reader.
//! - [`ldap`]: protocol knowledge: tags, OIDs, DNs, request views, generated responses,
//!   subschema attribute types and their equality matching rules.
//! - [`upstream`]: directory servers, connections (LDAPS/StartTLS), the pool with failover
//!   that lends them per purpose (client session, sign-in bind, service account).
//! - [`tls`]: rustls setup, certificate pins and the verifier enforcing them,
//!   chain expiry, and the diagnosis of a directory with no cipher suite in common.
//! - [`verify`]: `ldapgate verify` and `POST /v1/verify`, the checks before switching over.
//! - [`random`]: random cookies and tokens.
//! - [`fingerprint`]: `ldapgate fingerprint`, reading a server's certificate to pin it.

#![forbid(unsafe_code)]

pub mod auth;
pub mod ber;
pub mod cluster;
pub mod config;
pub mod control;
pub mod daemon;
pub mod directory;
pub mod fingerprint;
pub mod health;
pub mod http_server;
pub mod ldap;
pub mod listener;
pub mod metrics;
pub mod random;
pub mod ratelimit;
pub mod session;
pub mod stream;
pub mod sync;
pub mod tls;
pub mod upstream;
pub mod verify;
