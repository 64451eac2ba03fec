//! `ldapgate run`: wires configuration, directories, listeners and
//! shutdown together, and swaps in a new configuration on reload.
//!
//! Each configured directory is built whole ([`Directory`]) and published
//! to its own listeners through a `watch` channel; the control channel and
//! the metrics endpoint see every directory of the configuration in force.
//! Listeners read the current value for each connection they accept, so a
//! reload changes what new sessions get, and sessions already running keep
//! what they started with until they end. A reload may add a directory
//! (its listeners are bound) or remove one (its listeners stop accepting;
//! its open sessions go on until they end).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::cluster::{ClusterStore, StoreSetupError};
use crate::config::{Config, RateLimitConfig, TenantDirectory};
use crate::control::{ControlError, ControlServer, ControlServing, ControlState};
use crate::directory::{Directories, Directory, Shared};
use crate::health::{MetricsBindError, MetricsServer, Readiness};
use crate::listener::{BindError, BoundListener, ListenerKind, Serving};
use crate::metrics::{metrics, DirectoryMetrics};
use crate::ratelimit::shared::SharedLimits;
use crate::ratelimit::BindLimiter;
use crate::session::budget::PduBudget;
use crate::sync::verify::{self, Schedule};
use crate::tls;
use crate::upstream::pool::PoolSetupError;

/// How often rate-limiter state that has gone stale is dropped.
const LIMITER_HOUSEKEEPING: Duration = Duration::from_secs(10);
/// How long SIGTERM waits for open sessions before exiting anyway; below
/// the unit's TimeoutStopSec so systemd never has to kill.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the daemon could not start, or a configuration could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("directory `{directory}`: {source}")]
    Pool {
        directory: String,
        source: PoolSetupError,
    },
    #[error("directory `{directory}`: {source}")]
    Bind {
        directory: String,
        source: BindError,
    },
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error(transparent)]
    Metrics(#[from] MetricsBindError),
    #[error(transparent)]
    Cluster(#[from] StoreSetupError),
}

/// One directory's place in the running daemon, kept across reloads that
/// keep the directory: its listeners, scheduled verification and limiter.
struct Slot {
    /// What its listeners hand new connections.
    serving: watch::Sender<Arc<Serving>>,
    /// Its verification schedule; dropping it ends the task.
    schedule: watch::Sender<Arc<Schedule>>,
    verification: JoinHandle<()>,
    /// Stops its listeners (the directory was removed, or the daemon stops).
    listening: watch::Sender<bool>,
    /// Addresses as configured (a reload that changes them warns).
    listen: (Vec<SocketAddr>, Vec<SocketAddr>),
    limiter: Arc<BindLimiter>,
    ratelimit: RateLimitConfig,
}

/// What a reload needs from the configuration in force.
struct Current {
    config: Config,
    slots: BTreeMap<String, Slot>,
}

/// A started daemon: its bound addresses and the handles that reload and
/// stop it.
pub struct Running {
    /// Every plain LDAP listener bound at start, all directories together.
    pub ldap_addrs: Vec<SocketAddr>,
    /// Every LDAPS listener bound at start.
    pub ldaps_addrs: Vec<SocketAddr>,
    pub control_addr: Option<SocketAddr>,
    pub metrics_addr: Option<SocketAddr>,
    /// The shared store of `[cluster]`, for the life of the process.
    cluster: Option<Arc<ClusterStore>>,
    /// The daemon stops: listeners stop accepting, sessions hear it.
    stop: watch::Sender<bool>,
    listeners: TaskTracker,
    sessions: TaskTracker,
    control: Option<watch::Sender<Arc<ControlServing>>>,
    directories: watch::Sender<Arc<Directories>>,
    /// One permit per open client connection, across reloads.
    connections: Arc<Semaphore>,
    /// Each directory's own connection limit and its permits, across
    /// reloads that keep the limit.
    directory_connections: Mutex<DirectoryPermits>,
    /// What unfinished large PDUs may hold in all, across reloads.
    budget: PduBudget,
    current: Mutex<Current>,
}

/// Directories built from one configuration, not yet serving.
struct Built {
    directories: Vec<(Arc<Directory>, Arc<BindLimiter>)>,
}

/// A configuration ready to be put in force: nothing of it can fail any
/// more.
struct Prepared {
    built: Built,
    /// Each directory's own connection limit and permits.
    permits: DirectoryPermits,
    /// The bound listeners of each directory the configuration adds.
    added: BTreeMap<String, Vec<BoundListener>>,
    directories: Arc<Directories>,
    /// The control channel's new routes, when it runs.
    control: Option<Arc<ControlServing>>,
}

impl Running {
    /// Applies `config` to new sessions and requests: directories added
    /// get their listeners, directories removed stop accepting, the others
    /// serve new connections with their new settings. Listen addresses of
    /// a kept directory cannot change without a restart: a change is named
    /// in the returned warnings and the old addresses keep serving. On
    /// error nothing changed.
    pub async fn reload(&self, config: Config) -> Result<Vec<String>, StartError> {
        let (old_config, limiters) = {
            let current = self.lock_current();
            let limiters: BTreeMap<String, (Arc<BindLimiter>, RateLimitConfig)> = current
                .slots
                .iter()
                .map(|(name, slot)| (name.clone(), (slot.limiter.clone(), slot.ratelimit.clone())))
                .collect();
            (current.config.clone(), limiters)
        };
        let mut warnings = needs_restart(&old_config, &config);
        let prepared = match self.prepare(&old_config, &config, &limiters).await {
            Ok(p) => p,
            Err(e) => {
                // What the rejected configuration built never served.
                for d in &config.directories {
                    if !limiters.contains_key(&d.name) {
                        DirectoryMetrics::new(&d.name).forget();
                    }
                }
                return Err(e);
            }
        };
        self.resize_connections(&old_config, &config, &mut warnings);
        self.commit(prepared, &mut warnings);
        match (&self.control, &config.control) {
            (None, Some(_)) => {
                warnings.push("[control] was added: restart to open the control channel".into())
            }
            (Some(_), None) => warnings.push(
                "[control] was removed: the control channel keeps its old settings until a restart"
                    .into(),
            ),
            _ => {}
        }
        record_own_certificates(&config);
        self.lock_current().config = config;
        Ok(warnings)
    }

    /// Everything `config` needs, made before anything in force changes:
    /// its directories (those unchanged kept as they are), the listeners of
    /// directories it adds, and the control channel's routes.
    async fn prepare(
        &self,
        old: &Config,
        config: &Config,
        limiters: &BTreeMap<String, (Arc<BindLimiter>, RateLimitConfig)>,
    ) -> Result<Prepared, StartError> {
        // A directory whose entry (and the shared [server]) did not change
        // is kept as it is: its pool, caches and sessions' context.
        let previous = self.directories.borrow().clone();
        let kept: Vec<Arc<Directory>> = if old.server.source == config.server.source {
            previous.iter().cloned().collect()
        } else {
            Vec::new()
        };
        for d in previous.iter() {
            let entry = config.directory(d.name());
            let rebuilt = !kept.iter().any(|k| Arc::ptr_eq(k, d))
                || entry.is_none_or(|c| c.source != d.config.source);
            if rebuilt {
                // Its servers may differ; what they present is recorded
                // again as its new pool connects.
                d.metrics.forget_certificates();
            }
        }
        let permits = self.directory_permits(config);
        let built = self.build(config, &permits, limiters, &kept).await?;
        let mut added = BTreeMap::new();
        for (directory, _) in &built.directories {
            if !limiters.contains_key(directory.name()) {
                let bound = bind_listeners(&directory.config).await?;
                added.insert(directory.name().to_owned(), bound);
            }
        }
        let directories = Arc::new(Directories::new(
            built.directories.iter().map(|(d, _)| d.clone()).collect(),
        ));
        let control = match (&self.control, &config.control) {
            (Some(_), Some(control)) => {
                let state = Arc::new(ControlState::new(directories.clone(), control));
                Some(Arc::new(ControlServing::new(control, state)?))
            }
            _ => None,
        };
        Ok(Prepared {
            built,
            permits,
            added,
            directories,
            control,
        })
    }

    /// Puts `prepared` in force: kept directories' listeners serve the new
    /// settings, added ones start, removed ones stop accepting.
    fn commit(&self, prepared: Prepared, warnings: &mut Vec<String>) {
        let Prepared {
            built,
            permits,
            mut added,
            directories,
            control,
        } = prepared;
        let mut current = self.lock_current();
        let mut slots = std::mem::take(&mut current.slots);
        for (directory, limiter) in &built.directories {
            let name = directory.name().to_owned();
            let slot = match slots.remove(&name) {
                Some(slot) => self.update_slot(slot, directory, limiter, warnings),
                None => {
                    info!(directory = %name, "directory added");
                    let bound = added.remove(&name).unwrap_or_default();
                    self.open_slot(directory, limiter.clone(), bound)
                }
            };
            current.slots.insert(name, slot);
        }
        let previous = self.directories.borrow().clone();
        for (name, slot) in slots {
            info!(directory = %name, "directory removed: its listeners stop accepting; its open sessions go on until they end");
            slot.close();
            if let Some(removed) = previous.get(&name) {
                // Retires the value its last sessions and tasks hold too.
                removed.metrics.forget();
            }
        }
        self.directories.send_replace(directories);
        let mut in_force = self
            .directory_connections
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for (name, (max, semaphore)) in &permits {
            let old = in_force.get(name).map(|(old, _)| *old);
            if let Some(old) = old.filter(|old| old != max) {
                let over = resize_permits(semaphore, old, *max);
                if over > 0 {
                    warnings.push(format!(
                        "directory `{name}`: max_connections: {over} connections over the new limit stay open until they end"
                    ));
                }
            }
        }
        *in_force = permits;
        if let (Some(sender), Some(control)) = (&self.control, control) {
            sender.send_replace(control);
        }
    }

    /// A kept directory's slot, serving `directory` from now on.
    fn update_slot(
        &self,
        slot: Slot,
        directory: &Arc<Directory>,
        limiter: &Arc<BindLimiter>,
        warnings: &mut Vec<String>,
    ) -> Slot {
        let name = directory.name();
        if slot.listen != listen_of(&directory.config) {
            warnings.push(format!(
                "directory `{name}`: ldap_listen / ldaps_listen changed: restart to listen on the new addresses"
            ));
        }
        let same = Arc::ptr_eq(&slot.serving.borrow(), &directory.serving);
        if !same {
            info!(directory = %name, "directory changed: new sessions use the new settings");
            slot.serving.send_replace(directory.serving.clone());
            slot.schedule.send_replace(directory.schedule.clone());
        }
        Slot {
            limiter: limiter.clone(),
            ratelimit: directory.config.ratelimit.clone(),
            ..slot
        }
    }

    /// Builds every directory of `config` but those of `kept` whose entry
    /// is unchanged; `limiters` are those in force, by directory, kept when
    /// the limits are unchanged.
    async fn build(
        &self,
        config: &Config,
        permits: &DirectoryPermits,
        limiters: &BTreeMap<String, (Arc<BindLimiter>, RateLimitConfig)>,
        kept: &[Arc<Directory>],
    ) -> Result<Built, StartError> {
        let own = semaphores(permits);
        let shared = Shared {
            server: &config.server,
            connections: self.connections.clone(),
            directory_connections: &own,
            budget: self.budget.clone(),
            cluster: self.cluster.clone(),
        };
        build(config, &shared, limiters, kept).await
    }

    /// The permits of each directory of `config` with a `max_connections`
    /// of its own: those in force when the limit is the same (open
    /// connections hold them), new ones otherwise.
    fn directory_permits(&self, config: &Config) -> DirectoryPermits {
        let in_force = self
            .directory_connections
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        directory_permits(config, &in_force)
    }

    /// Starts serving `directory` on the listeners `bound` for it.
    fn open_slot(
        &self,
        directory: &Directory,
        limiter: Arc<BindLimiter>,
        bound: Vec<BoundListener>,
    ) -> Slot {
        let (serving, serving_rx) = watch::channel(directory.serving.clone());
        let (schedule, schedule_rx) = watch::channel(directory.schedule.clone());
        let (listening, listening_rx) = watch::channel(false);
        for listener in bound {
            self.listeners.spawn(listener.serve(
                serving_rx.clone(),
                self.sessions.clone(),
                listening_rx.clone(),
                self.stop.subscribe(),
            ));
        }
        Slot {
            serving,
            verification: verify::spawn_scheduled(schedule_rx),
            schedule,
            listening,
            listen: listen_of(&directory.config),
            limiter,
            ratelimit: directory.config.ratelimit.clone(),
        }
    }

    /// Adds or retires connection permits for a changed `max_connections`.
    fn resize_connections(&self, old: &Config, new: &Config, warnings: &mut Vec<String>) {
        let (old_max, new_max) = (old.server.max_connections, new.server.max_connections);
        let over = resize_permits(&self.connections, old_max, new_max);
        if over > 0 {
            warnings.push(format!(
                "server.max_connections: {over} connections over the new limit stay open until they end"
            ));
        }
    }

    fn lock_current(&self) -> std::sync::MutexGuard<'_, Current> {
        // A panic while holding this lock cannot leave Current half
        // written (each field is replaced whole), so a poisoned lock is
        // still good.
        self.current.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stops accepting; every session hears it (an idle one is sent a
    /// Notice of Disconnection at once, one with operations in flight ends
    /// when they are answered); waits up to the drain timeout for them.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let slots = std::mem::take(&mut self.lock_current().slots);
        for slot in slots.into_values() {
            slot.close();
        }
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
    }
}

impl Slot {
    /// Stops its listeners and its scheduled verification.
    fn close(self) {
        let _ = self.listening.send(true);
        self.verification.abort();
    }
}

/// The listen addresses of `d` as configured.
fn listen_of(d: &TenantDirectory) -> (Vec<SocketAddr>, Vec<SocketAddr>) {
    (d.ldap_listen.clone(), d.ldaps_listen.clone())
}

/// Settings that only take effect at start, named when a reload changes them.
fn needs_restart(old: &Config, new: &Config) -> Vec<String> {
    let mut warnings = Vec::new();
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
    if old.cluster != new.cluster {
        warnings.push("[cluster] changed: restart to apply".into());
    }
    warnings
}

/// The limiter of `d`: counted with the tenant's other instances through
/// `cluster`, when there is one.
fn new_limiter(d: &TenantDirectory, cluster: Option<&Arc<ClusterStore>>) -> Arc<BindLimiter> {
    let shared = cluster.map(|store| {
        SharedLimits::new(
            store.clone(),
            &d.name,
            &d.ratelimit,
            d.directory.operation_timeout,
        )
    });
    let limiter = BindLimiter::with_shared(&d.ratelimit, shared);
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
            metrics().own_certificate_expiry(name, expiry.not_after_unix);
        }
    }
}

/// Builds every directory of `config`, one after the other (each checks
/// its servers once); a directory of `kept` with the same name and source
/// is taken as it is. A directory keeps its limiter from `limiters` when
/// its limits are unchanged; with new limits, failure counts and lockouts
/// carry over.
async fn build(
    config: &Config,
    shared: &Shared<'_>,
    limiters: &BTreeMap<String, (Arc<BindLimiter>, RateLimitConfig)>,
    kept: &[Arc<Directory>],
) -> Result<Built, StartError> {
    // Each directory checks its servers while the others do: one whose
    // servers do not answer delays none of the others.
    let builds = config.directories.iter().map(|d| {
        let unchanged = kept
            .iter()
            .find(|k| k.name() == d.name && k.config.source == d.source);
        let limiter = match limiters.get(&d.name) {
            Some((limiter, limits)) if *limits == d.ratelimit => limiter.clone(),
            Some((old, _)) => {
                let limiter = new_limiter(d, shared.cluster.as_ref());
                limiter.carry_over(old);
                limiter
            }
            None => new_limiter(d, shared.cluster.as_ref()),
        };
        async move {
            let directory = match unchanged {
                Some(directory) => directory.clone(),
                None => Arc::new(Directory::build(d, shared, limiter.clone()).await.map_err(
                    |source| StartError::Pool {
                        directory: d.name.clone(),
                        source,
                    },
                )?),
            };
            Ok::<_, StartError>((directory, limiter))
        }
    });
    let directories = futures_util::future::try_join_all(builds).await?;
    Ok(Built { directories })
}

/// Binds the listeners of one directory.
async fn bind_listeners(d: &TenantDirectory) -> Result<Vec<BoundListener>, StartError> {
    let mut bound = Vec::new();
    let kinds = [
        (ListenerKind::Ldap, &d.ldap_listen),
        (ListenerKind::Ldaps, &d.ldaps_listen),
    ];
    for (kind, addrs) in kinds {
        for addr in addrs {
            let listener =
                BoundListener::bind(kind, *addr)
                    .await
                    .map_err(|source| StartError::Bind {
                        directory: d.name.clone(),
                        source,
                    })?;
            bound.push(listener);
        }
    }
    Ok(bound)
}

/// Each directory's own connection limit and its permits, by name.
type DirectoryPermits = BTreeMap<String, (usize, Arc<Semaphore>)>;

/// The permits of each directory of `config` with a `max_connections` of
/// its own: those of `in_force` for a directory that had a limit (resized
/// when the configuration is put in force, see [`resize_permits`], so that
/// its open connections keep counting), new ones otherwise.
fn directory_permits(config: &Config, in_force: &DirectoryPermits) -> DirectoryPermits {
    config
        .directories
        .iter()
        .filter_map(|d| {
            let max = d.max_connections?;
            let permits = match in_force.get(&d.name) {
                Some((_, permits)) => permits.clone(),
                None => Arc::new(Semaphore::new(max)),
            };
            Some((d.name.clone(), (max, permits)))
        })
        .collect()
}

/// Changes the permits of `permits` from `old` to `new` in place, so that
/// the connections open now keep counting. Returns how many open
/// connections are over a lower limit: their permits are retired as they
/// end.
fn resize_permits(permits: &Arc<Semaphore>, old: usize, new: usize) -> usize {
    if new >= old {
        permits.add_permits(new - old);
        return 0;
    }
    let over = (old - new) - permits.forget_permits(old - new);
    if over > 0 {
        let permits = permits.clone();
        tokio::spawn(async move {
            for _ in 0..over {
                match permits.acquire().await {
                    Ok(permit) => permit.forget(),
                    Err(_) => return,
                }
            }
        });
    }
    over
}

/// The semaphores of `permits`, by directory name.
fn semaphores(permits: &DirectoryPermits) -> BTreeMap<String, Arc<Semaphore>> {
    permits
        .iter()
        .map(|(name, (_, permits))| (name.clone(), permits.clone()))
        .collect()
}

/// Binds every listener and starts serving.
pub async fn start(config: &Config) -> Result<Running, StartError> {
    let cluster = match &config.cluster {
        Some(c) => {
            let store = ClusterStore::new(c)?;
            // One answer before serving, so that the first sign-ins count
            // in the store; a store that is down delays the start by at
            // most a second and is probed again every second.
            store.probe().await;
            store.spawn_probe();
            Some(store)
        }
        None => None,
    };
    let connections = Arc::new(Semaphore::new(config.server.max_connections));
    let budget = PduBudget::new(config.server.unfinished_pdu_budget);
    let in_force = directory_permits(config, &BTreeMap::new());
    let own = semaphores(&in_force);
    let shared = Shared {
        server: &config.server,
        connections: connections.clone(),
        directory_connections: &own,
        budget: budget.clone(),
        cluster: cluster.clone(),
    };
    let built = build(config, &shared, &BTreeMap::new(), &[]).await?;
    let mut bound = Vec::new();
    for (directory, _) in &built.directories {
        bound.push(bind_listeners(&directory.config).await?);
    }
    let control_server = match &config.control {
        Some(control) => Some(ControlServer::bind(control.listen, control.limits).await?),
        None => None,
    };
    let metrics_server = match &config.metrics {
        Some(m) => Some(MetricsServer::bind(m.listen, m.limits).await?),
        None => None,
    };
    let directories = Arc::new(Directories::new(
        built.directories.iter().map(|(d, _)| d.clone()).collect(),
    ));
    let (stop, stop_rx) = watch::channel(false);
    let (directories_tx, directories_rx) = watch::channel(directories.clone());
    let listeners = TaskTracker::new();
    let mut control = None;
    let mut control_addr = None;
    if let (Some(server), Some(settings)) = (control_server, &config.control) {
        let state = Arc::new(ControlState::new(directories.clone(), settings));
        let (sender, receiver) = watch::channel(Arc::new(ControlServing::new(settings, state)?));
        control_addr = Some(server.addr);
        listeners.spawn(server.serve(receiver, stop_rx.clone()));
        control = Some(sender);
    }
    let mut metrics_addr = None;
    if let Some(server) = metrics_server {
        metrics_addr = Some(server.addr);
        let readiness = Arc::new(Readiness {
            directories: directories_rx,
            cluster: cluster.clone(),
        });
        listeners.spawn(server.serve(readiness, stop_rx.clone()));
    }
    let mut running = Running {
        ldap_addrs: Vec::new(),
        ldaps_addrs: Vec::new(),
        control_addr,
        metrics_addr,
        cluster,
        stop,
        listeners,
        sessions: TaskTracker::new(),
        control,
        directories: directories_tx,
        connections,
        directory_connections: Mutex::new(in_force),
        budget,
        current: Mutex::new(Current {
            config: config.clone(),
            slots: BTreeMap::new(),
        }),
    };
    let mut slots = BTreeMap::new();
    for ((directory, limiter), bound) in built.directories.iter().zip(bound) {
        for listener in &bound {
            match listener.kind {
                ListenerKind::Ldap => running.ldap_addrs.push(listener.addr),
                ListenerKind::Ldaps => running.ldaps_addrs.push(listener.addr),
            }
        }
        let slot = running.open_slot(directory, limiter.clone(), bound);
        slots.insert(directory.name().to_owned(), slot);
    }
    running.lock_current().slots = slots;
    record_own_certificates(config);
    metrics().config_loaded(true);
    Ok(running)
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
        moved.server.unfinished_pdu_budget *= 2;
        let warnings = needs_restart(&old, &moved);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("unfinished_pdu_budget") && warnings[1].contains("[metrics]"));
    }
}
