//! `ldapgate run`: wires configuration, upstream pool, listeners and
//! shutdown together, and swaps in a new configuration on reload.
//!
//! Everything built from one configuration (the pool and its pins, the
//! listener certificate, policy, the control channel's certificate and
//! routes) is published through `watch` channels. Listeners read the
//! current value for each connection they accept, so a reload changes what
//! new sessions get, and sessions already running keep what they started
//! with until they end.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::auth::Authenticator;
use crate::config::{Config, DirectoryConfig};
use crate::control::{ControlError, ControlServer, ControlServing, ControlState};
use crate::ldap::dn_schema::DnSchema;
use crate::listener::{Admission, BindError, BoundListener, ListenerKind, Serving};
use crate::metrics::http::{MetricsBindError, MetricsServer, Readiness};
use crate::metrics::metrics;
use crate::ratelimit::BindLimiter;
use crate::session::budget::PduBudget;
use crate::session::policy::{Policy, SharedDnScope, WeakDnScope};
use crate::session::{SessionContext, SessionLimits};
use crate::sync::export::Exporter;
use crate::sync::verify::{self, Schedule};
use crate::tls;
use crate::upstream::pool::PoolSetupError;
use crate::upstream::service::ServiceConnections;
use crate::upstream::UpstreamPool;

/// How long a TLS handshake from a client may take.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often rate-limiter state that has gone stale is dropped.
const LIMITER_HOUSEKEEPING: Duration = Duration::from_secs(10);
/// How often the directory's subschema is read again once it has been
/// read: schemas change rarely, and a change is seen within this long.
const DN_SCHEMA_REFRESH: Duration = Duration::from_secs(600);
/// How long SIGTERM waits for open sessions before exiting anyway; below
/// the unit's TimeoutStopSec so systemd never has to kill.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the daemon could not start, or a configuration could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Pool(#[from] PoolSetupError),
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error(transparent)]
    Metrics(#[from] MetricsBindError),
}

/// What one configuration builds.
struct Built {
    serving: Arc<Serving>,
    control: Option<Arc<ControlServing>>,
    pool: Arc<UpstreamPool>,
    schedule: Arc<Schedule>,
}

/// What a reload needs from the configuration in force.
struct Current {
    config: Config,
    limiter: Arc<BindLimiter>,
}

/// A started daemon: its bound addresses and the handles that reload and
/// stop it.
pub struct Running {
    pub ldap_addrs: Vec<SocketAddr>,
    pub ldaps_addrs: Vec<SocketAddr>,
    pub control_addr: Option<SocketAddr>,
    pub metrics_addr: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    listeners: TaskTracker,
    sessions: TaskTracker,
    serving: watch::Sender<Arc<Serving>>,
    control: Option<watch::Sender<Arc<ControlServing>>>,
    pool: watch::Sender<Arc<UpstreamPool>>,
    schedule: watch::Sender<Arc<Schedule>>,
    /// Scheduled verification, one task across reloads.
    verification: JoinHandle<()>,
    /// One permit per open client connection, across reloads.
    connections: Arc<Semaphore>,
    /// What unfinished large PDUs may hold in all, across reloads.
    budget: PduBudget,
    current: Mutex<Current>,
}

impl Running {
    /// Applies `config` to new sessions and requests. Listen addresses
    /// cannot change without a restart: a change is named in the returned
    /// warnings and the old addresses keep serving. On error nothing
    /// changed.
    pub async fn reload(&self, config: Config) -> Result<Vec<String>, StartError> {
        let (limiter, old_max, old_config) = {
            let current = self.lock_current();
            let limiter = if current.config.ratelimit == config.ratelimit {
                // Counters and lockouts survive a reload that keeps the limits.
                current.limiter.clone()
            } else {
                // New limits; failure counts and lockouts carry over.
                let limiter = new_limiter(&config);
                limiter.carry_over(&current.limiter);
                limiter
            };
            (
                limiter,
                current.config.server.max_connections,
                current.config.clone(),
            )
        };
        let mut warnings = needs_restart(&old_config, &config);
        let built = build(
            &config,
            limiter.clone(),
            self.connections.clone(),
            self.budget.clone(),
        )
        .await?;
        let new_max = config.server.max_connections;
        if new_max > old_max {
            self.connections.add_permits(new_max - old_max);
        } else if new_max < old_max {
            let over = (old_max - new_max) - self.connections.forget_permits(old_max - new_max);
            if over > 0 {
                // The permits still held by open connections are retired as
                // those connections end.
                warnings.push(format!(
                    "server.max_connections: {over} connections over the new limit stay open until they end"
                ));
                let connections = self.connections.clone();
                tokio::spawn(async move {
                    for _ in 0..over {
                        match connections.acquire().await {
                            Ok(permit) => permit.forget(),
                            Err(_) => return,
                        }
                    }
                });
            }
        }
        self.serving.send_replace(built.serving);
        self.pool.send_replace(built.pool);
        self.schedule.send_replace(built.schedule);
        match (&self.control, built.control) {
            (Some(sender), Some(control)) => {
                sender.send_replace(control);
            }
            (None, Some(_)) => {
                warnings.push("[control] was added: restart to open the control channel".into())
            }
            (Some(_), None) => warnings.push(
                "[control] was removed: the control channel keeps its old settings until a restart"
                    .into(),
            ),
            (None, None) => {}
        }
        *self.lock_current() = Current { config, limiter };
        Ok(warnings)
    }

    fn lock_current(&self) -> std::sync::MutexGuard<'_, Current> {
        // A panic while holding this lock cannot leave Current half
        // written (it is replaced whole), so a poisoned lock is still good.
        self.current.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stops accepting, waits up to the drain timeout for open sessions.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        self.listeners.close();
        self.listeners.wait().await;
        self.sessions.close();
        let open = self.sessions.len();
        if open > 0 {
            info!(open, "waiting for open sessions to finish");
        }
        if tokio::time::timeout(DRAIN_TIMEOUT, self.sessions.wait())
            .await
            .is_err()
        {
            warn!(
                open = self.sessions.len(),
                "sessions still open after the drain timeout; exiting"
            );
        }
        self.verification.abort();
    }
}

/// Settings that only take effect at start, named when a reload changes them.
fn needs_restart(old: &Config, new: &Config) -> Vec<String> {
    let mut warnings = Vec::new();
    if old.server.ldap_listen != new.server.ldap_listen
        || old.server.ldaps_listen != new.server.ldaps_listen
    {
        warnings.push(
            "server.ldap_listen / ldaps_listen changed: restart to listen on the new addresses"
                .into(),
        );
    }
    let control_socket = |c: &Config| c.control.as_ref().map(|c| (c.listen, c.limits));
    if old.control.is_some() && new.control.is_some() && control_socket(old) != control_socket(new)
    {
        warnings.push(
            "control.listen / max_connections / header_timeout / body_timeout changed: restart to apply"
                .into(),
        );
    }
    if old.server.unfinished_pdu_budget != new.server.unfinished_pdu_budget {
        warnings.push("server.unfinished_pdu_budget changed: restart to apply".into());
    }
    if old.metrics != new.metrics {
        warnings.push("[metrics] changed: restart to apply".into());
    }
    warnings
}

fn new_limiter(config: &Config) -> Arc<BindLimiter> {
    let limiter = BindLimiter::new(&config.ratelimit);
    limiter.spawn_housekeeping(LIMITER_HOUSEKEEPING);
    limiter
}

/// Records when the certificate chains ldapgate presents expire: the
/// earliest `notAfter` of each file, which holds the chain served as it is.
fn record_own_certificates(config: &Config) {
    let own = [
        ("listener", config.server.tls.as_ref().map(|t| &t.cert)),
        ("control", config.control.as_ref().map(|c| &c.tls.cert)),
    ];
    for (name, path) in own {
        let expiry = path
            .and_then(|p| tls::load_certs(p).ok())
            .and_then(|chain| tls::ChainExpiry::of(&chain).ok().flatten());
        if let Some(expiry) = expiry {
            metrics().certificate_expiry(name, expiry.not_after_unix);
        }
    }
}

/// Builds everything new sessions and requests use from `config`: the pool
/// (checked once, so the log says at once whether the directory is
/// reachable and the pool starts warm), policy, certificates, control routes.
async fn build(
    config: &Config,
    limiter: Arc<BindLimiter>,
    connections: Arc<Semaphore>,
    budget: PduBudget,
) -> Result<Built, StartError> {
    let pool = UpstreamPool::new(&config.directory)?;
    pool.check_health().await;
    for server in pool.servers() {
        if !server.is_up() {
            warn!(server = %server.endpoint, "directory server is not reachable");
        }
    }
    pool.spawn_health_checks(config.directory.health_check_interval);
    let authenticator = Arc::new(Authenticator::new(config, pool.clone(), limiter));
    authenticator.watch_changes();
    let tls_acceptor = config
        .server
        .tls
        .as_ref()
        .map(|t| TlsAcceptor::from(t.config.clone()));
    let service = Arc::new(ServiceConnections::new(
        pool.clone(),
        config.directory.service_account.clone(),
    ));
    let policy = Policy::from_config(config);
    DnSchemaReader::new(&service, &policy.dn_scope, &config.directory)
        .start()
        .await;
    let ctx = Arc::new(SessionContext {
        policy,
        pool: pool.clone(),
        authenticator: authenticator.clone(),
        starttls: tls_acceptor.clone(),
        budget,
        limits: SessionLimits {
            client_max_message: config.server.max_message_bytes,
            before_bind_max_message: config.server.max_message_bytes_before_bind,
            pdu_timeout: config.server.pdu_timeout,
            send_timeout: config.server.send_timeout,
            upstream_max_message: config.directory.max_message_bytes,
            idle_timeout: config.server.idle_timeout,
            operation_timeout: config.directory.operation_timeout,
            tls_handshake_timeout: TLS_HANDSHAKE_TIMEOUT,
        },
    });
    let admission = Arc::new(Admission {
        allowed_clients: config.server.allowed_clients.clone(),
        connections,
        tls_handshake_timeout: TLS_HANDSHAKE_TIMEOUT,
    });
    let exporter = Arc::new(Exporter::new(config, service));
    let control = match &config.control {
        Some(control) => {
            let state = Arc::new(ControlState::new(
                authenticator.clone(),
                exporter.clone(),
                Arc::new(config.clone()),
            ));
            Some(Arc::new(ControlServing::new(control, state)?))
        }
        None => None,
    };
    let schedule = Arc::new(Schedule {
        exporter,
        sign_in: config.signin.attributes.clone(),
        every: config.sync.verify_interval,
    });
    record_own_certificates(config);
    Ok(Built {
        serving: Arc::new(Serving {
            ctx,
            ldaps: tls_acceptor,
            admission,
        }),
        control,
        pool,
        schedule,
    })
}

/// Keeps the sessions' DN comparison on the directory's schema
/// ([`DnSchema`]): reads its subschema at start, again every
/// [`DN_SCHEMA_REFRESH`], and every health-check interval while it cannot
/// be read (the directory down, or its subschema hidden from the service
/// account). Until the first read succeeds DNs compare by the built-in
/// table; a failed re-read keeps the schema read before.
struct DnSchemaReader {
    service: Weak<ServiceConnections>,
    scope: WeakDnScope,
    limit: Duration,
    max_message: usize,
    retry: Duration,
    /// What the last read gave: the number of attribute types, or None
    /// after a failure; logged only when it changes.
    last: Option<Option<usize>>,
}

impl DnSchemaReader {
    fn new(
        service: &Arc<ServiceConnections>,
        scope: &SharedDnScope,
        directory: &DirectoryConfig,
    ) -> DnSchemaReader {
        DnSchemaReader {
            service: Arc::downgrade(service),
            scope: scope.downgrade(),
            limit: directory.operation_timeout,
            max_message: directory.max_message_bytes,
            retry: directory.health_check_interval,
            last: None,
        }
    }

    /// Reads once now (the first sessions then compare by the directory's
    /// schema), then keeps reading in a task that ends when the
    /// configuration is replaced (its policy or service connections gone).
    async fn start(mut self) {
        let Some(mut wait) = self.read().await else {
            return;
        };
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(wait).await;
                match self.read().await {
                    Some(next) => wait = next,
                    None => return,
                }
            }
        });
    }

    /// One read; how long until the next, or None when nobody needs it.
    async fn read(&mut self) -> Option<Duration> {
        let service = self.service.upgrade()?;
        let scope = self.scope.upgrade()?;
        let read = service.read_schema(self.limit, self.max_message).await;
        let applied = read.map(|schema| {
            let types = schema.len();
            scope
                .set_schema(DnSchema::from_schema(&schema))
                .map(|()| types)
        });
        match applied {
            Ok(Ok(types)) => {
                if self.last != Some(Some(types)) {
                    info!(
                        types,
                        "DNs compare by the directory's schema: attribute type names, \
                         aliases and OIDs, and each type's equality rule"
                    );
                }
                self.last = Some(Some(types));
                Some(DN_SCHEMA_REFRESH)
            }
            Ok(Err(e)) => {
                warn!(error = %e, "the directory's schema does not parse base_dn; DNs compare as before");
                self.last = Some(None);
                Some(DN_SCHEMA_REFRESH)
            }
            Err(e) => {
                if self.last != Some(None) {
                    warn!(
                        error = %e,
                        retry = %humantime::format_duration(self.retry),
                        "cannot read the directory's subschema: DNs compare by the schema read \
                         before, or the built-in table of naming types (values case-insensitive)"
                    );
                }
                self.last = Some(None);
                Some(self.retry)
            }
        }
    }
}

/// Binds every listener and starts serving.
pub async fn start(config: &Config) -> Result<Running, StartError> {
    let connections = Arc::new(Semaphore::new(config.server.max_connections));
    let budget = PduBudget::new(config.server.unfinished_pdu_budget);
    let limiter = new_limiter(config);
    let built = build(config, limiter.clone(), connections.clone(), budget.clone()).await?;

    let mut bound = Vec::new();
    for addr in &config.server.ldap_listen {
        bound.push(BoundListener::bind(ListenerKind::Ldap, *addr).await?);
    }
    for addr in &config.server.ldaps_listen {
        bound.push(BoundListener::bind(ListenerKind::Ldaps, *addr).await?);
    }
    let control_server = match &config.control {
        Some(control) => Some(ControlServer::bind(control.listen, control.limits).await?),
        None => None,
    };
    let metrics_server = match &config.metrics {
        Some(m) => Some(MetricsServer::bind(m.listen, m.limits).await?),
        None => None,
    };

    let (stop, stop_rx) = watch::channel(false);
    let (serving, serving_rx) = watch::channel(built.serving);
    let (pool, pool_rx) = watch::channel(built.pool);
    let (schedule, schedule_rx) = watch::channel(built.schedule);
    let verification = verify::spawn_scheduled(schedule_rx);
    let listeners = TaskTracker::new();
    let sessions = TaskTracker::new();
    let mut ldap_addrs = Vec::new();
    let mut ldaps_addrs = Vec::new();
    for listener in bound {
        match listener.kind {
            ListenerKind::Ldap => ldap_addrs.push(listener.addr),
            ListenerKind::Ldaps => ldaps_addrs.push(listener.addr),
        }
        listeners.spawn(listener.serve(serving_rx.clone(), sessions.clone(), stop_rx.clone()));
    }
    let mut control = None;
    let mut control_addr = None;
    if let (Some(server), Some(serving)) = (control_server, built.control) {
        let (sender, receiver) = watch::channel(serving);
        control_addr = Some(server.addr);
        listeners.spawn(server.serve(receiver, stop_rx.clone()));
        control = Some(sender);
    }
    let mut metrics_addr = None;
    if let Some(server) = metrics_server {
        metrics_addr = Some(server.addr);
        // Every listener is bound by now.
        let readiness = Arc::new(Readiness { pool: pool_rx });
        listeners.spawn(server.serve(readiness, stop_rx.clone()));
    }
    metrics().config_loaded(true);
    Ok(Running {
        ldap_addrs,
        ldaps_addrs,
        control_addr,
        metrics_addr,
        stop,
        listeners,
        sessions,
        serving,
        control,
        pool,
        schedule,
        verification,
        connections,
        budget,
        current: Mutex::new(Current {
            config: config.clone(),
            limiter,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Config {
        let text = format!(
            "[server]\nldap_listen = [\"127.0.0.1:1389\"]\n[directory]\nservers = [\"ldap://127.0.0.1:1\"]\n\
             base_dn = \"dc=x\"\n{extra}"
        );
        Config::parse(&text, std::path::Path::new("t.toml")).unwrap()
    }

    #[test]
    fn a_reload_names_what_only_a_restart_applies() {
        let old = config("[metrics]\nlisten = \"127.0.0.1:9389\"\n");
        assert!(needs_restart(&old, &old).is_empty());
        let same_but_timeouts =
            config("[metrics]\nlisten = \"127.0.0.1:9389\"\n[sync]\nverify_interval = \"1h\"\n");
        assert!(needs_restart(&old, &same_but_timeouts).is_empty());
        let mut moved = config("[metrics]\nlisten = \"127.0.0.1:9390\"\n");
        moved.server.ldap_listen = vec!["127.0.0.1:2389".parse().unwrap()];
        let warnings = needs_restart(&old, &moved);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("ldap_listen") && warnings[1].contains("[metrics]"));
    }
}
