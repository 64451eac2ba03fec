//! The configuration file as written: TOML deserialised with serde, strings
//! still strings. [`super::Config::parse`] turns it into typed values.

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    /// The single-directory form.
    pub directory: Option<RawDirectory>,
    /// `[[directories]]`: each entry is `[directory]` keys plus `name`,
    /// `ldap_listen`, `ldaps_listen` and the `signin`, `ratelimit` and
    /// `sync` tables; split apart in `super::tenant`, since serde's
    /// `flatten` and `deny_unknown_fields` do not combine.
    pub directories: Option<Vec<toml::Table>>,
    pub signin: Option<RawSignIn>,
    pub ratelimit: Option<RawRateLimit>,
    pub control: Option<RawControl>,
    pub metrics: Option<RawMetrics>,
    pub sync: Option<RawSync>,
    pub cluster: Option<RawCluster>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    pub store: Option<String>,
    pub password_file: Option<String>,
    pub key_file: Option<String>,
    pub ca_file: Option<String>,
    #[serde(default = "default_cluster_timeout")]
    pub timeout: String,
}

fn default_cluster_timeout() -> String {
    "500ms".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    pub listen: Option<String>,
    #[serde(default = "default_metrics_max_connections")]
    pub max_connections: i64,
    #[serde(default = "default_http_timeout")]
    pub header_timeout: String,
    #[serde(default = "default_http_timeout")]
    pub body_timeout: String,
}

fn default_metrics_max_connections() -> i64 {
    64
}

/// `header_timeout` and `body_timeout` of both HTTP listeners.
fn default_http_timeout() -> String {
    "10s".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawServer {
    /// The single-directory form's listeners (default `0.0.0.0:389`).
    pub ldap_listen: Option<Vec<String>>,
    pub ldaps_listen: Option<Vec<String>>,
    pub tls_cert: Option<String>,
    pub tls_key: Option<String>,
    pub require_tls: bool,
    pub allowed_clients: Vec<String>,
    pub max_connections: i64,
    pub idle_timeout: String,
    pub max_message_bytes: i64,
    pub max_message_bytes_before_bind: i64,
    pub pdu_timeout: String,
    pub send_timeout: String,
    pub unfinished_pdu_budget: i64,
}

impl Default for RawServer {
    fn default() -> Self {
        Self {
            ldap_listen: None,
            ldaps_listen: None,
            tls_cert: None,
            tls_key: None,
            require_tls: false,
            allowed_clients: Vec::new(),
            max_connections: 10_000,
            idle_timeout: "15m".into(),
            max_message_bytes: 1_048_576,
            max_message_bytes_before_bind: 65_536,
            pdu_timeout: "30s".into(),
            send_timeout: "30s".into(),
            unfinished_pdu_budget: 64 * 1_048_576,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDirectory {
    #[serde(default = "default_kind")]
    pub kind: String,
    #[serde(default)]
    pub servers: Vec<String>,
    #[serde(default = "yes")]
    pub starttls: bool,
    pub ca_file: Option<String>,
    #[serde(default)]
    pub pins: Vec<String>,
    pub base_dn: Option<String>,
    pub bind_dn: Option<String>,
    pub bind_password_file: Option<String>,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: String,
    #[serde(default = "default_operation_timeout")]
    pub operation_timeout: String,
    #[serde(default = "default_pool_size")]
    pub pool_size: i64,
    #[serde(default = "default_health_check_interval")]
    pub health_check_interval: String,
    #[serde(default = "default_directory_max_message")]
    pub max_message_bytes: i64,
    #[serde(default)]
    pub read_only: bool,
}

fn default_kind() -> String {
    "openldap".into()
}
fn yes() -> bool {
    true
}
fn default_connect_timeout() -> String {
    "5s".into()
}
fn default_operation_timeout() -> String {
    "10s".into()
}
fn default_pool_size() -> i64 {
    16
}
fn default_health_check_interval() -> String {
    "10s".into()
}
fn default_directory_max_message() -> i64 {
    16 * 1024 * 1024
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSignIn {
    pub attributes: Vec<String>,
    pub user_object_classes: Vec<String>,
    pub org_object_classes: Vec<String>,
    pub rewrite_ldap_binds: bool,
    pub cache_ttl: String,
    pub change_check_interval: String,
}

impl Default for RawSignIn {
    fn default() -> Self {
        Self {
            attributes: vec![
                "uid".into(),
                "mobile".into(),
                "mail".into(),
                "employeeNumber".into(),
            ],
            user_object_classes: vec!["inetOrgPerson".into()],
            org_object_classes: vec!["organizationalUnit".into()],
            rewrite_ldap_binds: true,
            cache_ttl: "5m".into(),
            change_check_interval: "1s".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRateLimit {
    pub binds_per_ip: String,
    pub binds_per_identity: String,
    pub service_binds_per_identity: String,
    pub failures_before_lockout: i64,
    pub lockout_window: String,
    pub lockout_duration: String,
    pub max_concurrent_binds: i64,
}

impl Default for RawRateLimit {
    fn default() -> Self {
        Self {
            binds_per_ip: "50/s".into(),
            binds_per_identity: "10/m".into(),
            service_binds_per_identity: "100/s".into(),
            failures_before_lockout: 5,
            lockout_window: "15m".into(),
            lockout_duration: "15m".into(),
            max_concurrent_binds: 256,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawControl {
    pub listen: Option<String>,
    pub tls_cert: Option<String>,
    pub tls_key: Option<String>,
    #[serde(default)]
    pub token_sha256: Vec<String>,
    #[serde(default)]
    pub client_ca_file: Option<String>,
    #[serde(default = "default_control_max_connections")]
    pub max_connections: i64,
    #[serde(default = "default_http_timeout")]
    pub header_timeout: String,
    #[serde(default = "default_http_timeout")]
    pub body_timeout: String,
}

fn default_control_max_connections() -> i64 {
    256
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSync {
    pub state_dir: String,
    pub page_size: i64,
    pub max_account_deletes: i64,
    pub max_org_deletes: i64,
    pub verify_interval: String,
    pub change_tracking: String,
    /// IDaaS field = LDAP attribute; replaces the defaults when present.
    pub fields: Option<std::collections::BTreeMap<String, String>>,
}

impl Default for RawSync {
    fn default() -> Self {
        Self {
            state_dir: "/var/lib/ldapgate".into(),
            page_size: 500,
            max_account_deletes: 30,
            max_org_deletes: 10,
            verify_interval: "24h".into(),
            change_tracking: "auto".into(),
            fields: None,
        }
    }
}
