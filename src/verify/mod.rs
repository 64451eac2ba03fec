//! `ldapgate verify` and `POST /v1/verify`: what an operator checks before
//! switching an identity provider over to ldapgate. For every configured
//! directory server, in order: TCP, TLS, the pins, the certificate's
//! expiry, the service-account bind, and the base DN with its recorded
//! fingerprint. Each check is one line with its reason; a check that
//! cannot run because an earlier one failed says so.
//!
//! Verification opens connections of its own (never the pool's), so it
//! measures what a new connection would meet now, and it changes nothing:
//! the fingerprint is compared, never recorded.

mod store;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::net::TcpStream;

use crate::cluster::ClusterStore;
use crate::config::{ClusterConfig, Config, TenantDirectory};
use crate::ldap::url::Scheme;
use crate::metrics::DirectoryMetrics;
use crate::sync::export::{Exporter, SyncError};
use crate::tls::ChainExpiry;
use crate::upstream::{PoolSettings, UpstreamConn, UpstreamError, UpstreamPool, UpstreamServer};

/// A certificate closer to its expiry than this is a warning.
const EXPIRY_WARNING: Duration = Duration::from_secs(30 * 86400);

/// How a check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    /// Works, but needs attention soon (a certificate about to expire).
    Warn,
    Fail,
    /// Not run: an earlier check of the same server failed, or it does not
    /// apply to this configuration.
    Skip,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
            Status::Skip => "skip",
        }
    }
}

/// One check of one server.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// The configured directory the server belongs to.
    pub directory: String,
    pub server: String,
    pub check: &'static str,
    pub status: Status,
    pub detail: String,
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<4}  {}  {:<8}  {}",
            self.status.label(),
            self.server,
            self.check,
            self.detail
        )
    }
}

/// Every check of every server.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// False when any check failed.
    pub ok: bool,
    pub checks: Vec<Check>,
}

/// Why verification could not start at all.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the directory connections: {0}")]
pub struct VerifyError(#[from] crate::upstream::pool::PoolSetupError);

/// Runs every check against every server of every directory of `config`,
/// and against the shared store of `[cluster]`.
pub async fn verify(config: &Config) -> Result<Report, VerifyError> {
    let mut checks = Vec::new();
    let mut cluster = None;
    if let Some(c) = &config.cluster {
        checks.extend(verify_store(c).await);
        cluster = ClusterStore::new(c).ok();
        if let Some(store) = &cluster {
            store.probe().await;
        }
    }
    for directory in &config.directories {
        checks.extend(verify_directory(directory, cluster.clone()).await?.checks);
    }
    let ok = checks.iter().all(|c| c.status != Status::Fail);
    Ok(Report { ok, checks })
}

/// The checks of the shared store of `[cluster]`: reachable and
/// authenticated, takes ldapgate's writes, round-trip time, same key.
pub async fn verify_store(config: &ClusterConfig) -> Vec<Check> {
    store::checks(config).await
}

/// The checks of one directory and, with `[cluster]`, of the shared store
/// (what `ldapgate verify --directory` and `POST /v1/verify` report).
pub async fn verify_with_store(
    config: &TenantDirectory,
    cluster: Option<Arc<ClusterStore>>,
) -> Result<Report, VerifyError> {
    let mut checks = match &cluster {
        Some(store) => verify_store(store.config()).await,
        None => Vec::new(),
    };
    checks.extend(verify_directory(config, cluster).await?.checks);
    let ok = checks.iter().all(|c| c.status != Status::Fail);
    Ok(Report { ok, checks })
}

/// Runs every check against every server of one directory; the recorded
/// fingerprint is read from `cluster` when given.
pub async fn verify_directory(
    config: &TenantDirectory,
    cluster: Option<Arc<ClusterStore>>,
) -> Result<Report, VerifyError> {
    let pool = UpstreamPool::new(&config.directory, DirectoryMetrics::new(&config.name))?;
    // The exporter knows the base entry's id attribute and where sync
    // state is kept; it is used here only to read, never to record.
    let exporter = Exporter::new(config, pool.clone(), cluster);
    let mut checks = Vec::new();
    for (index, server) in pool.servers().iter().enumerate() {
        ServerChecks {
            config,
            exporter: &exporter,
            server,
            index,
            settings: pool.settings(),
            out: &mut checks,
        }
        .run()
        .await;
    }
    let ok = checks.iter().all(|c| c.status != Status::Fail);
    Ok(Report { ok, checks })
}

struct ServerChecks<'a> {
    config: &'a TenantDirectory,
    exporter: &'a Exporter,
    server: &'a UpstreamServer,
    index: usize,
    settings: PoolSettings,
    out: &'a mut Vec<Check>,
}

impl ServerChecks<'_> {
    fn push(&mut self, check: &'static str, status: Status, detail: impl Into<String>) {
        self.out.push(Check {
            directory: self.config.name.clone(),
            server: self.server.endpoint.to_string(),
            check,
            status,
            detail: detail.into(),
        });
    }

    fn skip_rest(&mut self, checks: &[&'static str], why: &str) {
        for check in checks {
            self.push(check, Status::Skip, why.to_owned());
        }
    }

    async fn run(mut self) {
        let d = &self.config.directory;
        let authority = self.server.endpoint.authority();
        let started = Instant::now();
        match tokio::time::timeout(d.connect_timeout, TcpStream::connect(&authority)).await {
            Ok(Ok(_)) => self.push(
                "tcp",
                Status::Ok,
                format!(
                    "connected to {authority} in {:.1} ms",
                    started.elapsed().as_secs_f64() * 1000.0
                ),
            ),
            Ok(Err(e)) => {
                self.push("tcp", Status::Fail, format!("{authority}: {e}"));
                return self.skip_rest(&["tls", "pin", "expiry", "bind", "base_dn"], "TCP failed");
            }
            Err(_) => {
                let after = humantime::format_duration(d.connect_timeout);
                self.push(
                    "tcp",
                    Status::Fail,
                    format!(
                        "{authority}: no connection within {after} ({}.connect_timeout)",
                        self.config.key
                    ),
                );
                return self.skip_rest(&["tls", "pin", "expiry", "bind", "base_dn"], "TCP failed");
            }
        }
        let connected = self.server.connect(self.index, &self.settings).await;
        let mut conn = match connected {
            Ok(conn) => conn,
            Err(UpstreamError::PinMismatch { mismatch, .. }) => {
                self.push("tls", Status::Ok, "handshake reached the certificate check");
                self.push("pin", Status::Fail, mismatch.to_string());
                return self.skip_rest(&["expiry", "bind", "base_dn"], "the pin check failed");
            }
            Err(e) => {
                self.push("tls", Status::Fail, e.to_string());
                return self.skip_rest(&["pin", "expiry", "bind", "base_dn"], "TLS failed");
            }
        };
        self.tls_checks(&conn);
        self.bind_and_base(&mut conn).await;
    }

    fn tls_checks(&mut self, conn: &UpstreamConn) {
        let d = &self.config.directory;
        let how = match self.server.endpoint.scheme {
            Scheme::Ldaps => "LDAPS",
            Scheme::Ldap => "StartTLS",
        };
        let key = &self.config.key;
        if conn.peer_certificates().is_none_or(|c| c.is_empty()) {
            let detail = format!(
                "plain LDAP: the leg to this server is not encrypted ({key}.starttls = false)"
            );
            self.push("tls", Status::Warn, detail);
            return self.skip_rest(&["pin", "expiry"], "no TLS");
        }
        let trust = if d.ca_file.is_some() {
            format!("chain verified against {key}.ca_file")
        } else if d.pins.is_empty() {
            "chain verified against the system roots".to_owned()
        } else {
            "trusted by pin alone".to_owned()
        };
        self.push("tls", Status::Ok, format!("{how} handshake, {trust}"));
        if d.pins.is_empty() {
            self.push(
                "pin",
                Status::Skip,
                format!("no pins configured ({key}.pins)"),
            );
        } else {
            self.push(
                "pin",
                Status::Ok,
                "the certificate matches a configured pin",
            );
        }
        let (status, detail) = expiry_check(
            conn.chain_expiry(),
            d.ca_file.is_some() || d.pins.is_empty(),
        );
        self.push("expiry", status, detail);
    }

    async fn bind_and_base(&mut self, conn: &mut UpstreamConn) {
        let d = &self.config.directory;
        match &d.service_account {
            None => {
                let detail = format!(
                    "no service account ({}.bind_dn); searches run anonymously",
                    self.config.key
                );
                self.push("bind", Status::Skip, detail)
            }
            Some(account) => {
                let dn = account.dn.to_string();
                let reply = conn.bind_simple(&dn, account.password.expose()).await;
                match reply {
                    Ok(r) if r.code == 0 => self.push("bind", Status::Ok, format!("bound as {dn}")),
                    Ok(r) => {
                        self.push(
                            "bind",
                            Status::Fail,
                            format!(
                                "bind as {dn} failed with result {}: {} (check {key}.bind_dn and bind_password_file)",
                                r.code, r.diagnostic, key = self.config.key
                            ),
                        );
                        return self.skip_rest(&["base_dn"], "the service bind failed");
                    }
                    Err(e) => {
                        self.push("bind", Status::Fail, format!("bind as {dn}: {e}"));
                        return self.skip_rest(&["base_dn"], "the service bind failed");
                    }
                }
            }
        }
        let base = self.exporter.base_dn().to_string();
        let found = match self.exporter.base_id(conn).await {
            Ok(id) => id,
            Err(SyncError::BaseMissing(_)) => {
                return self.push(
                    "base_dn",
                    Status::Fail,
                    format!("{base} does not exist, or the service account cannot read it"),
                )
            }
            Err(e) => return self.push("base_dn", Status::Fail, e.to_string()),
        };
        match self.exporter.recorded_base_id().await {
            Ok(Some(recorded)) if recorded == found => self.push(
                "base_dn",
                Status::Ok,
                format!("{base} present, id {found}, matches the recorded fingerprint"),
            ),
            Ok(Some(recorded)) => self.push(
                "base_dn",
                Status::Fail,
                format!(
                    "{base} now resolves to entry {found}, not the recorded {recorded}: sync is \
                     blocked (base_dn_moved) until `ldapgate sync rearm`"
                ),
            ),
            Ok(None) => self.push(
                "base_dn",
                Status::Ok,
                format!("{base} present, id {found}; no fingerprint recorded yet (the first sync records it)"),
            ),
            Err(e) => self.push(
                "base_dn",
                Status::Fail,
                format!("{base} present, id {found}; the recorded fingerprint cannot be read: {e}"),
            ),
        }
    }
}

/// The expiry check: when the chain a connection relied on stops verifying,
/// naming the certificate that expires first. `chained` tells whether that
/// chain is the path verified to a CA (else: every certificate served, as
/// with pins alone).
fn expiry_check(expiry: Option<&ChainExpiry>, chained: bool) -> (Status, String) {
    let Some(e) = expiry else {
        return (
            Status::Fail,
            "a certificate of the served chain does not parse".into(),
        );
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let chain = if chained {
        "verified chain"
    } else {
        "served chain"
    };
    let which = format!(
        "{e} has the earliest notAfter of the {chain}, {}",
        e.not_after
    );
    let left = e.not_after_unix - now;
    if left <= 0 {
        let ago = (now - e.not_after_unix) / 86_400;
        return (
            Status::Fail,
            format!("the chain expired {ago} days ago: {which}"),
        );
    }
    let days = e.days_left(now);
    if left < EXPIRY_WARNING.as_secs() as i64 {
        let advice = if e.is_leaf() {
            "renew it (and its pin)"
        } else {
            "renew it and have the directory serve the new one with its certificate"
        };
        return (
            Status::Warn,
            format!("the chain expires in {days} days: {which}; {advice}"),
        );
    }
    (
        Status::Ok,
        format!("the chain expires in {days} days: {which}"),
    )
}
