//! One directory of the tenant at run time: everything built from its
//! `[[directories]]` entry (or the single `[directory]`), owned in one
//! place. Its pool, sign-in resolver and rate limiter, sync state and
//! health are its own: one directory down leaves the others serving, and a
//! login of one is unknown to another.
//!
//! A [`Directory`] is built whole from one configuration and replaced whole
//! on reload; sessions and requests keep the one they started with.

mod schema;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tracing::warn;

use crate::auth::Authenticator;
use crate::cluster::ClusterStore;
use crate::config::{ServerConfig, TenantDirectory};
use crate::listener::{Admission, Serving};
use crate::metrics::DirectoryMetrics;
use crate::ratelimit::BindLimiter;
use crate::session::budget::PduBudget;
use crate::session::policy::Policy;
use crate::session::{SessionContext, SessionLimits};
use crate::sync::export::Exporter;
use crate::sync::verify::Schedule;
use crate::upstream::pool::PoolSetupError;
use crate::upstream::UpstreamPool;
use schema::DnSchemaReader;

/// How long a directory's build waits for the first check of its servers.
const FIRST_CHECK: Duration = Duration::from_secs(3);
/// How long a TLS handshake from a client may take.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What one configured directory runs on.
pub struct Directory {
    /// Its entry of the configuration in force.
    pub config: TenantDirectory,
    /// Its series of the process's metrics (`directory` label).
    pub metrics: DirectoryMetrics,
    pub pool: Arc<UpstreamPool>,
    /// Sign-in by sign-in ID (control channel, CLI, rewritten LDAP binds).
    pub authenticator: Arc<Authenticator>,
    /// Full and changes pulls, verification.
    pub exporter: Arc<Exporter>,
    /// What its listeners hand new client connections.
    pub serving: Arc<Serving>,
    /// Its scheduled verification's settings.
    pub schedule: Arc<Schedule>,
    /// The shared store of `[cluster]`, when configured.
    pub cluster: Option<Arc<ClusterStore>>,
}

/// What every directory's build shares: the `[server]` section, the
/// connection permits and the PDU budget of the whole daemon.
pub struct Shared<'a> {
    pub server: &'a ServerConfig,
    /// One permit per open client connection (`server.max_connections`).
    pub connections: Arc<Semaphore>,
    /// The permits of each directory with a `max_connections` of its own,
    /// by name; kept across reloads like the shared ones.
    pub directory_connections: &'a BTreeMap<String, Arc<Semaphore>>,
    pub budget: PduBudget,
    /// The shared store of `[cluster]`, when configured.
    pub cluster: Option<Arc<ClusterStore>>,
}

impl Directory {
    /// Builds everything of `config`: the pool (checked once, so the log
    /// says at once whether the directory is reachable and the pool starts
    /// warm, then checked every `health_check_interval`), the DN schema,
    /// sign-in and sync. `limiter` carries counters and lockouts over a
    /// reload.
    pub async fn build(
        config: &TenantDirectory,
        shared: &Shared<'_>,
        limiter: Arc<BindLimiter>,
    ) -> Result<Directory, PoolSetupError> {
        let metrics = DirectoryMetrics::new(&config.name);
        let d = &config.directory;
        let pool = UpstreamPool::new(d, metrics.clone())?;
        let checked = first_check(&pool, &config.name).await;
        pool.spawn_health_checks(d.health_check_interval);
        let authenticator = Arc::new(Authenticator::new(config, pool.clone(), limiter));
        authenticator.watch_changes();
        let policy = Policy::from_config(shared.server, config);
        DnSchemaReader::new(&pool, &policy.dn_scope, d)
            .start(checked && pool.any_up())
            .await;
        let server = shared.server;
        let starttls = server
            .tls
            .as_ref()
            .map(|t| TlsAcceptor::from(t.config.clone()));
        let ctx = Arc::new(SessionContext {
            metrics: metrics.clone(),
            policy,
            pool: pool.clone(),
            authenticator: authenticator.clone(),
            starttls: starttls.clone(),
            budget: shared.budget.clone(),
            limits: SessionLimits {
                client_max_message: server.max_message_bytes,
                before_bind_max_message: server.max_message_bytes_before_bind,
                pdu_timeout: server.pdu_timeout,
                send_timeout: server.send_timeout,
                upstream_max_message: d.max_message_bytes,
                idle_timeout: server.idle_timeout,
                operation_timeout: d.operation_timeout,
                tls_handshake_timeout: TLS_HANDSHAKE_TIMEOUT,
            },
        });
        let exporter = Arc::new(Exporter::new(config, pool.clone(), shared.cluster.clone()));
        let schedule = Arc::new(Schedule {
            exporter: exporter.clone(),
            sign_in: config.signin.attributes.clone(),
            every: config.sync.verify_interval,
        });
        Ok(Directory {
            config: config.clone(),
            metrics,
            pool,
            authenticator,
            exporter,
            serving: Arc::new(Serving {
                ctx,
                ldaps: starttls,
                admission: Arc::new(admission(config, shared)),
            }),
            schedule,
            cluster: shared.cluster.clone(),
        })
    }

    /// The configured name (`[a-z0-9-]+`).
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// True when at least one of its servers answered its last check.
    pub fn ready(&self) -> bool {
        self.pool.any_up()
    }

    /// Sets its servers' health and pool gauges in the metrics.
    pub fn observe_pool(&self) {
        for server in self.pool.servers() {
            let (idle, in_use) = server.occupancy();
            self.metrics
                .upstream(&server.endpoint.to_string(), server.is_up(), idle, in_use);
        }
    }
}

/// Checks `pool`'s servers once, which says in the log at once whether the
/// directory is reachable and warms the pool. A server that takes long to
/// answer (or never does) must not hold up the listeners of this directory
/// or of the others: after [`FIRST_CHECK`] the checks go on in the
/// background. True when the check finished.
async fn first_check(pool: &Arc<UpstreamPool>, directory: &str) -> bool {
    let checked = tokio::time::timeout(FIRST_CHECK, pool.check_health())
        .await
        .is_ok();
    if !checked {
        warn!(
            %directory,
            "the directory's servers did not all answer within {} s: serving, and checking them in the background",
            FIRST_CHECK.as_secs()
        );
        return false;
    }
    for server in pool.servers() {
        if !server.is_up() {
            warn!(%directory, server = %server.endpoint, "directory server is not reachable");
        }
    }
    true
}

/// Who the listeners of `config` let in: its own `allowed_clients` or the
/// shared ones, within the shared connection limit and its own.
fn admission(config: &TenantDirectory, shared: &Shared<'_>) -> Admission {
    Admission {
        allowed_clients: config
            .allowed_clients
            .clone()
            .unwrap_or_else(|| shared.server.allowed_clients.clone()),
        connections: shared.connections.clone(),
        directory_connections: shared.directory_connections.get(&config.name).cloned(),
        tls_handshake_timeout: TLS_HANDSHAKE_TIMEOUT,
    }
}

/// The directories of the configuration in force, in file order.
#[derive(Default)]
pub struct Directories {
    list: Vec<Arc<Directory>>,
}

impl Directories {
    pub fn new(list: Vec<Arc<Directory>>) -> Directories {
        Directories { list }
    }

    /// The directory called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Directory>> {
        self.list.iter().find(|d| d.name() == name)
    }

    /// Every directory, in file order.
    pub fn as_slice(&self) -> &[Arc<Directory>] {
        &self.list
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Directory>> {
        self.list.iter()
    }
}
