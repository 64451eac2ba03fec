//! Prometheus metrics: one registry for the process and the metric families
//! README.md lists under "Observe"; [`crate::health`] serves them.
//!
//! Labels come from fixed sets only: configured directory names, operation
//! names, result-code names, outcome names, listener kinds, configured
//! server URLs. Never a DN, a login or a client address, so the series
//! count cannot be driven up from outside. Every series that belongs to one
//! directory has a `directory` label, recorded through that directory's
//! [`DirectoryMetrics`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus::core::Collector;
use prometheus::{
    Encoder, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

/// Every metric ldapgate records.
pub struct Metrics {
    registry: Registry,
    /// Every metric family's full name, in registration order.
    names: Vec<String>,
    pub connections_active: IntGaugeVec,
    pub connections_total: IntCounterVec,
    pub operations_total: IntCounterVec,
    pub operation_duration_seconds: HistogramVec,
    pub binds_total: IntCounterVec,
    pub auth_total: IntCounterVec,
    pub ratelimit_rejections_total: IntCounterVec,
    /// Identities locked out by ldapgate's own lockout (a surge is a
    /// password spray).
    pub lockouts_total: IntCounterVec,
    pub upstream_up: IntGaugeVec,
    pub upstream_pool_connections: IntGaugeVec,
    pub tls_pin_failures_total: IntCounterVec,
    pub certificate_expiry_seconds: GaugeVec,
    pub sync_runs_total: IntCounterVec,
    pub sync_last_success_timestamp_seconds: GaugeVec,
    pub sync_objects: IntGaugeVec,
    pub sync_shared_sign_in_values: IntGaugeVec,
    pub sync_tracking_mismatches_total: IntCounterVec,
    pub config_reloads_total: IntCounterVec,
    pub config_last_reload_success_timestamp_seconds: Gauge,
    pub build_info: IntGaugeVec,
    /// 1 while the `[cluster]` store answers, 0 while it does not; no
    /// series without `[cluster]`.
    pub cluster_store_up: IntGaugeVec,
    /// HTTP listeners (`control`, `metrics`) that were full when a
    /// connection arrived, by which connection was closed for it.
    pub connection_slots_full_total: IntCounterVec,
    /// When ldapgate's own certificates expire (Unix seconds), by which
    /// (`listener`, `control`): their files are read only at start and on
    /// reload, so the time left is worked out anew at each rendering.
    own_certificates_not_after: Mutex<BTreeMap<String, i64>>,
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

/// Latency buckets for LDAP operations: a cached bind answers in well under
/// a millisecond, a large search may take seconds.
const OPERATION_BUCKETS: [f64; 14] = [
    0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

impl Metrics {
    fn new() -> Metrics {
        let registry = Registry::new();
        let mut names = Vec::new();
        // The names, help texts and label names below are constants that
        // satisfy Prometheus's rules and are registered once each (every
        // unit test below builds this struct), so creation and registration
        // cannot fail.
        macro_rules! register {
            ($metric:expr) => {{
                let m = $metric.expect("constant metric definition is valid");
                names.extend(m.desc().iter().map(|d| d.fq_name.clone()));
                registry
                    .register(Box::new(m.clone()))
                    .expect("each metric name is registered once");
                m
            }};
        }
        let opts = |name: &str, help: &str| Opts::new(name, help).namespace("ldapgate");
        Metrics {
            connections_active: register!(IntGaugeVec::new(
                opts("connections_active", "Client connections open now."),
                &["directory", "listener"]
            )),
            connections_total: register!(IntCounterVec::new(
                opts("connections_total", "Client connections accepted."),
                &["directory", "listener"]
            )),
            operations_total: register!(IntCounterVec::new(
                opts(
                    "operations_total",
                    "LDAP operations from clients, by operation and result code name \
                     (refusals by ldapgate's policy included)."
                ),
                &["directory", "op", "result"]
            )),
            operation_duration_seconds: register!(HistogramVec::new(
                HistogramOpts::new(
                    "operation_duration_seconds",
                    "Time from a client's request to its final response."
                )
                .namespace("ldapgate")
                .buckets(OPERATION_BUCKETS.to_vec()),
                &["directory", "op"]
            )),
            binds_total: register!(IntCounterVec::new(
                opts("binds_total", "Bind operations from LDAP clients, by result."),
                &["directory", "result"]
            )),
            auth_total: register!(IntCounterVec::new(
                opts(
                    "auth_total",
                    "Delegated authentications (control channel and rewritten LDAP binds), by outcome."
                ),
                &["directory", "outcome"]
            )),
            ratelimit_rejections_total: register!(IntCounterVec::new(
                opts("ratelimit_rejections_total", "Sign-ins refused by rate limits and lockout."),
                &["directory", "reason"]
            )),
            lockouts_total: register!(IntCounterVec::new(
                opts(
                    "lockouts_total",
                    "Identities locked out after failures_before_lockout wrong passwords \
                     within lockout_window."
                ),
                &["directory"]
            )),
            upstream_up: register!(IntGaugeVec::new(
                opts("upstream_up", "1 when the directory server answered its last check."),
                &["directory", "server"]
            )),
            upstream_pool_connections: register!(IntGaugeVec::new(
                opts(
                    "upstream_pool_connections",
                    "Connections to a directory server: idle in the session pool, or in use \
                     (by a session, or kept for sign-in binds and the service account)."
                ),
                &["directory", "server", "state"]
            )),
            tls_pin_failures_total: register!(IntCounterVec::new(
                opts(
                    "tls_pin_failures_total",
                    "TLS handshakes with a directory server whose certificate matched no pin."
                ),
                &["directory", "server"]
            )),
            certificate_expiry_seconds: register!(GaugeVec::new(
                opts(
                    "certificate_expiry_seconds",
                    "Seconds until a certificate expires: a directory server's (server = its URL) \
                     or ldapgate's own (server = \"listener\" or \"control\", directory empty)."
                ),
                &["directory", "server"]
            )),
            sync_runs_total: register!(IntCounterVec::new(
                opts("sync_runs_total", "Sync pulls and verifications, by kind and result."),
                &["directory", "kind", "result"]
            )),
            sync_last_success_timestamp_seconds: register!(GaugeVec::new(
                opts(
                    "sync_last_success_timestamp_seconds",
                    "When a sync pull last succeeded (Unix time)."
                ),
                &["directory"]
            )),
            sync_objects: register!(IntGaugeVec::new(
                opts(
                    "sync_objects",
                    "Organizations and accounts under base_dn at the last verification."
                ),
                &["directory", "kind"]
            )),
            sync_shared_sign_in_values: register!(IntGaugeVec::new(
                opts(
                    "sync_shared_sign_in_values",
                    "Sign-in ID values held by more than one entry at the last verification \
                     (those users cannot sign in with them)."
                ),
                &["directory"]
            )),
            sync_tracking_mismatches_total: register!(IntCounterVec::new(
                opts(
                    "sync_tracking_mismatches_total",
                    "Changes pulls whose change tracking reported deleted an object that still \
                     exists (the pull compared the whole directory instead)."
                ),
                &["directory"]
            )),
            config_reloads_total: register!(IntCounterVec::new(
                opts("config_reloads_total", "Configuration reloads (SIGHUP), by result."),
                &["result"]
            )),
            config_last_reload_success_timestamp_seconds: register!(Gauge::with_opts(opts(
                "config_last_reload_success_timestamp_seconds",
                "When the configuration was last loaded successfully (Unix time)."
            ))),
            build_info: register!(IntGaugeVec::new(
                opts("build_info", "1, labelled with the running version."),
                &["version"]
            )),
            cluster_store_up: register!(IntGaugeVec::new(
                opts(
                    "cluster_store_up",
                    "1 while the shared store of [cluster] answers; 0 while it does not (each \
                     instance then enforces lockout with its own counts)."
                ),
                &[]
            )),
            connection_slots_full_total: register!(IntCounterVec::new(
                opts(
                    "connection_slots_full_total",
                    "Connections that arrived at a full HTTP listener, by the connection \
                     closed for them: `oldest` (the oldest without an authenticated request) \
                     or `new` (every open one had completed an authenticated request)."
                ),
                &["listener", "closed"]
            )),
            own_certificates_not_after: Mutex::new(BTreeMap::new()),
            registry,
            names,
        }
        .with_build_info()
    }

    fn with_build_info(self) -> Metrics {
        self.build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        self
    }

    /// The full name of every metric family, observed yet or not.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        self.refresh_own_certificates();
        let mut out = Vec::new();
        // Encoding into a Vec fails only on I/O errors, which a Vec has none of.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }

    /// Forgets every directory server's health and pool gauges, before
    /// they are set anew from the pools in force: servers and directories
    /// removed by a reload must not linger.
    pub fn reset_upstream(&self) {
        self.upstream_up.reset();
        self.upstream_pool_connections.reset();
    }

    /// Records a certificate of ldapgate's own (`listener`, `control`)
    /// expiring at `not_after` (Unix seconds).
    pub fn own_certificate_expiry(&self, which: &str, not_after: i64) {
        self.own_certificates().insert(which.to_owned(), not_after);
        self.refresh_own_certificates();
    }

    /// Sets the time left on each of ldapgate's own certificates from now:
    /// without it the gauge would say what was left at start or at the
    /// last reload, and an expiry alert would never fire on a daemon that
    /// runs for months.
    fn refresh_own_certificates(&self) {
        let now = unix_now();
        for (which, not_after) in self.own_certificates().iter() {
            self.certificate_expiry_seconds
                .with_label_values(&["", which])
                .set((not_after - now) as f64);
        }
    }

    fn own_certificates(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, i64>> {
        // Only inserts and reads happen under the lock, so a poisoned one
        // still holds a whole map.
        self.own_certificates_not_after
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records a configuration load (at start and on SIGHUP).
    /// Whether the shared store answers (see [`Metrics::cluster_store_up`]).
    pub fn cluster_store(&self, up: bool) {
        self.cluster_store_up
            .with_label_values::<&str>(&[])
            .set(i64::from(up));
    }

    pub fn config_loaded(&self, ok: bool) {
        self.config_reloads_total
            .with_label_values(&[if ok { "success" } else { "error" }])
            .inc();
        if ok {
            self.config_last_reload_success_timestamp_seconds
                .set(unix_now() as f64);
        }
    }
}

/// The metrics of one directory: every series it records carries its
/// `directory` label. Cheap to clone: the clones of one directory's value
/// (its pool, sessions, sign-in and pulls hold them) are retired together.
#[derive(Debug, Clone)]
pub struct DirectoryMetrics {
    directory: Arc<str>,
    /// Set by [`DirectoryMetrics::forget`]: the directory is no longer
    /// configured, and what its last sessions and tasks do is not recorded.
    retired: Arc<AtomicBool>,
}

impl DirectoryMetrics {
    /// `directory` is a configured directory name (`[a-z0-9-]+`).
    pub fn new(directory: &str) -> DirectoryMetrics {
        DirectoryMetrics {
            directory: directory.into(),
            retired: Arc::new(AtomicBool::new(false)),
        }
    }

    fn retired(&self) -> bool {
        self.retired.load(Ordering::Relaxed)
    }

    /// The directory's name, as in the `directory` label.
    pub fn directory(&self) -> &str {
        &self.directory
    }

    /// Records one finished client operation.
    pub fn operation(&self, op: &str, code: i64, elapsed: Duration) {
        if self.retired() {
            return;
        }
        let m = metrics();
        let d = &*self.directory;
        let result = result_name(code);
        m.operations_total.with_label_values(&[d, op, result]).inc();
        m.operation_duration_seconds
            .with_label_values(&[d, op])
            .observe(elapsed.as_secs_f64());
        if op == "bind" {
            m.binds_total.with_label_values(&[d, result]).inc();
        }
    }

    /// A client connection accepted on a listener of `kind` (`ldap`,
    /// `ldaps`); the returned gauge is decremented when it ends (a handle,
    /// so that a directory forgotten meanwhile gets no series back).
    pub fn connection_opened(&self, kind: &str) -> Option<IntGauge> {
        if self.retired() {
            return None;
        }
        let m = metrics();
        let d = &*self.directory;
        m.connections_total.with_label_values(&[d, kind]).inc();
        let active = m.connections_active.with_label_values(&[d, kind]);
        active.inc();
        Some(active)
    }

    /// A delegated authentication ended with `outcome` (its wire name).
    pub fn authentication(&self, outcome: &str) {
        if self.retired() {
            return;
        }
        metrics()
            .auth_total
            .with_label_values(&[&self.directory, outcome])
            .inc();
    }

    /// A sign-in refused by a rate limit or lockout, for `reason`.
    pub fn rate_limited(&self, reason: &str) {
        if self.retired() {
            return;
        }
        metrics()
            .ratelimit_rejections_total
            .with_label_values(&[&self.directory, reason])
            .inc();
    }

    /// An identity locked out by ldapgate's lockout.
    pub fn locked_out(&self) {
        if self.retired() {
            return;
        }
        metrics()
            .lockouts_total
            .with_label_values(&[&self.directory])
            .inc();
    }

    /// A TLS handshake with `server` whose certificate matched no pin.
    pub fn pin_failure(&self, server: &str) {
        if self.retired() {
            return;
        }
        metrics()
            .tls_pin_failures_total
            .with_label_values(&[&self.directory, server])
            .inc();
    }

    /// The certificate chain `server` presented expires at `not_after`
    /// (Unix seconds).
    pub fn certificate_expiry(&self, server: &str, not_after: i64) {
        if self.retired() {
            return;
        }
        metrics()
            .certificate_expiry_seconds
            .with_label_values(&[&self.directory, server])
            .set((not_after - unix_now()) as f64);
    }

    /// A directory server's health and pool occupancy now.
    pub fn upstream(&self, server: &str, up: bool, idle: usize, in_use: usize) {
        if self.retired() {
            return;
        }
        let m = metrics();
        let d = &*self.directory;
        m.upstream_up
            .with_label_values(&[d, server])
            .set(i64::from(up));
        m.upstream_pool_connections
            .with_label_values(&[d, server, "idle"])
            .set(idle as i64);
        m.upstream_pool_connections
            .with_label_values(&[d, server, "in_use"])
            .set(in_use as i64);
    }

    /// Records a sync run of `kind` ("full", "changes", "verify") that
    /// ended with `result` ("success" or an error code).
    pub fn sync_run(&self, kind: &str, result: &str) {
        if self.retired() {
            return;
        }
        let m = metrics();
        let d = &*self.directory;
        m.sync_runs_total
            .with_label_values(&[d, kind, result])
            .inc();
        if result == "success" && kind != "verify" {
            m.sync_last_success_timestamp_seconds
                .with_label_values(&[d])
                .set(unix_now() as f64);
        }
    }

    /// What the last verification counted.
    pub fn verified(&self, orgs: usize, accounts: usize, shared_sign_in_values: usize) {
        if self.retired() {
            return;
        }
        let m = metrics();
        let d = &*self.directory;
        m.sync_objects
            .with_label_values(&[d, "org"])
            .set(orgs as i64);
        m.sync_objects
            .with_label_values(&[d, "account"])
            .set(accounts as i64);
        m.sync_shared_sign_in_values
            .with_label_values(&[d])
            .set(shared_sign_in_values as i64);
    }

    /// Removes every series of this directory (it was removed by a reload,
    /// or a rejected reload built it and it never served): dashboards must
    /// not show a directory that is not configured.
    pub fn forget(&self) {
        self.retired.store(true, Ordering::Relaxed);
        let m = metrics();
        let d = &*self.directory;
        forget_in(&m.connections_active, d);
        forget_in(&m.connections_total, d);
        forget_in(&m.operations_total, d);
        forget_in(&m.operation_duration_seconds, d);
        forget_in(&m.binds_total, d);
        forget_in(&m.auth_total, d);
        forget_in(&m.ratelimit_rejections_total, d);
        forget_in(&m.lockouts_total, d);
        forget_in(&m.upstream_up, d);
        forget_in(&m.upstream_pool_connections, d);
        forget_in(&m.tls_pin_failures_total, d);
        forget_in(&m.certificate_expiry_seconds, d);
        forget_in(&m.sync_runs_total, d);
        forget_in(&m.sync_last_success_timestamp_seconds, d);
        forget_in(&m.sync_objects, d);
        forget_in(&m.sync_shared_sign_in_values, d);
        forget_in(&m.sync_tracking_mismatches_total, d);
    }

    /// Removes the certificate expiry of every server of this directory,
    /// before it is recorded anew from a rebuilt pool whose servers may
    /// differ.
    pub fn forget_certificates(&self) {
        forget_in(&metrics().certificate_expiry_seconds, &self.directory);
    }

    /// A changes pull whose change tracking reported deleted an object
    /// that still exists.
    pub fn tracking_mismatch(&self) {
        if self.retired() {
            return;
        }
        metrics()
            .sync_tracking_mismatches_total
            .with_label_values(&[&self.directory])
            .inc();
    }
}

/// Removes the series of `family` whose `directory` label is `directory`.
fn forget_in<T: prometheus::core::MetricVecBuilder>(
    family: &prometheus::core::MetricVec<T>,
    directory: &str,
) {
    for gathered in family.collect() {
        for metric in gathered.get_metric() {
            let labels: std::collections::HashMap<&str, &str> = metric
                .get_label()
                .iter()
                .map(|l| (l.name(), l.value()))
                .collect();
            if labels.get("directory") == Some(&directory) {
                // Absent already when another scrape removed it first.
                let _ = family.remove(&labels);
            }
        }
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The RFC 4511 name of an LDAP result code (AD and OpenLDAP extensions
/// included); "other" for anything else, so the label set stays bounded.
pub fn result_name(code: i64) -> &'static str {
    match code {
        0 => "success",
        1 => "operationsError",
        2 => "protocolError",
        3 => "timeLimitExceeded",
        4 => "sizeLimitExceeded",
        5 => "compareFalse",
        6 => "compareTrue",
        7 => "authMethodNotSupported",
        8 => "strongerAuthRequired",
        10 => "referral",
        11 => "adminLimitExceeded",
        12 => "unavailableCriticalExtension",
        13 => "confidentialityRequired",
        14 => "saslBindInProgress",
        16 => "noSuchAttribute",
        17 => "undefinedAttributeType",
        18 => "inappropriateMatching",
        19 => "constraintViolation",
        20 => "attributeOrValueExists",
        21 => "invalidAttributeSyntax",
        32 => "noSuchObject",
        33 => "aliasProblem",
        34 => "invalidDNSyntax",
        36 => "aliasDereferencingProblem",
        48 => "inappropriateAuthentication",
        49 => "invalidCredentials",
        50 => "insufficientAccessRights",
        51 => "busy",
        52 => "unavailable",
        53 => "unwillingToPerform",
        54 => "loopDetect",
        64 => "namingViolation",
        65 => "objectClassViolation",
        66 => "notAllowedOnNonLeaf",
        67 => "notAllowedOnRDN",
        68 => "entryAlreadyExists",
        69 => "objectClassModsProhibited",
        71 => "affectsMultipleDSAs",
        80 => "other",
        118 => "canceled",
        119 => "noSuchOperation",
        120 => "tooLate",
        121 => "cannotCancel",
        4096 => "syncRefreshRequired",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_registers_and_renders_with_its_contract_name() {
        let m = DirectoryMetrics::new("corp-ad");
        m.operation("search", 0, Duration::from_millis(3));
        m.operation("bind", 49, Duration::from_micros(300));
        m.sync_run("full", "success");
        let text = String::from_utf8(metrics().render()).unwrap();
        for name in [
            "ldapgate_operations_total{directory=\"corp-ad\",op=\"search\",result=\"success\"}",
            "ldapgate_operation_duration_seconds_bucket{directory=\"corp-ad\",op=\"bind\",le=\"0.0005\"}",
            "ldapgate_binds_total{directory=\"corp-ad\",result=\"invalidCredentials\"}",
            "ldapgate_sync_runs_total{directory=\"corp-ad\",kind=\"full\",result=\"success\"}",
            "ldapgate_sync_last_success_timestamp_seconds{directory=\"corp-ad\"}",
        ] {
            assert!(text.contains(name), "{name} missing from\n{text}");
        }
    }

    #[test]
    fn a_forgotten_directory_leaves_no_series_and_the_others_stay() {
        let gone = DirectoryMetrics::new("gone-dir");
        let kept = DirectoryMetrics::new("kept-dir");
        for m in [&gone, &kept] {
            m.operation("search", 0, Duration::from_millis(1));
            m.certificate_expiry("ldaps://dc:636", 2_000_000_000);
            m.sync_run("full", "success");
            m.connection_opened("ldap");
        }
        let session_of_gone = gone.clone();
        gone.forget();
        // What its last sessions do is not recorded either.
        session_of_gone.operation("search", 0, Duration::from_millis(1));
        assert!(session_of_gone.connection_opened("ldap").is_none());
        let text = String::from_utf8(metrics().render()).unwrap();
        assert!(!text.contains("gone-dir"), "{text}");
        assert!(text.contains("ldapgate_operations_total{directory=\"kept-dir\""));
        assert!(text.contains("ldapgate_sync_runs_total{directory=\"kept-dir\""));
        kept.forget_certificates();
        let text = String::from_utf8(metrics().render()).unwrap();
        assert!(!text.contains("ldapgate_certificate_expiry_seconds{directory=\"kept-dir\""));
        assert!(text.contains("ldapgate_connections_total{directory=\"kept-dir\""));
    }

    #[test]
    fn every_contract_metric_is_registered() {
        let names = metrics().names();
        for contract in [
            "ldapgate_connections_active",
            "ldapgate_connections_total",
            "ldapgate_operations_total",
            "ldapgate_operation_duration_seconds",
            "ldapgate_binds_total",
            "ldapgate_auth_total",
            "ldapgate_ratelimit_rejections_total",
            "ldapgate_lockouts_total",
            "ldapgate_upstream_up",
            "ldapgate_upstream_pool_connections",
            "ldapgate_tls_pin_failures_total",
            "ldapgate_certificate_expiry_seconds",
            "ldapgate_sync_runs_total",
            "ldapgate_sync_last_success_timestamp_seconds",
        ] {
            assert!(names.iter().any(|n| n == contract), "{contract}");
        }
    }

    #[test]
    fn lockouts_are_counted_by_directory() {
        let m = DirectoryMetrics::new("lockout-dir");
        m.locked_out();
        m.locked_out();
        let text = String::from_utf8(metrics().render()).unwrap();
        assert!(
            text.contains("ldapgate_lockouts_total{directory=\"lockout-dir\"} 2"),
            "{text}"
        );
    }

    #[test]
    fn own_certificate_expiry_is_the_time_left_at_each_rendering() {
        let m = metrics();
        m.own_certificate_expiry("own-test", unix_now() + 1000);
        let gauge = m
            .certificate_expiry_seconds
            .with_label_values(&["", "own-test"]);
        // Stale, as a value computed only at start would be months later.
        gauge.set(1_000_000.0);
        m.render();
        let left = gauge.get();
        assert!((990.0..=1000.0).contains(&left), "{left}");
    }

    #[test]
    fn result_names_are_bounded() {
        assert_eq!(result_name(0), "success");
        assert_eq!(result_name(49), "invalidCredentials");
        assert_eq!(result_name(12345), "other");
        assert_eq!(result_name(-1), "other");
    }
}
