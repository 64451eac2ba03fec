//! Configuration: the TOML file (`config/ldapgate.toml` is the commented
//! reference) parsed once into typed, validated values. Every problem is
//! reported with the key at fault, all of them at once, and nothing reads a
//! configuration string after this.

mod auth;
mod cluster;
mod digest;
mod directory;
mod http;
mod metrics;
mod raw;
mod sync;
mod tenant;

pub use auth::{ControlConfig, Rate, RateLimitConfig, SignInConfig};
pub use cluster::{ClusterConfig, ClusterKey, StoreAddress, MIN_KEY_BYTES};
pub use digest::SourceDigest;
pub use directory::{DirectoryConfig, DirectoryKind, ServiceAccount};
pub use http::HttpLimits;
pub use metrics::MetricsConfig;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
pub use sync::{ChangeTracking, SyncConfig};
pub use tenant::{is_directory_name, TenantDirectory, DEFAULT_NAME};

use ipnet::IpNet;
use thiserror::Error;

use crate::tls;
use raw::{RawConfig, RawServer};

/// One invalid value: the key and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
}

impl ConfigError {
    /// The individual problems, one per line of output.
    pub fn problems(&self) -> Vec<String> {
        match self {
            ConfigError::Invalid(p) => p.iter().map(ToString::to_string).collect(),
            other => vec![other.to_string()],
        }
    }
}

/// A secret read from a file; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// The whole configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// What every directory's listeners share.
    pub server: ServerConfig,
    /// At least one, names unique, in file order.
    pub directories: Vec<TenantDirectory>,
    /// None when the file has no `[control]` section: no control channel.
    pub control: Option<ControlConfig>,
    /// None when the file has no `[metrics]` section: no metrics endpoint.
    pub metrics: Option<MetricsConfig>,
    /// None when the file has no `[cluster]` section: the instance shares
    /// nothing with others.
    pub cluster: Option<ClusterConfig>,
}

/// `[server]`: what the client-facing listeners of every directory share
/// (their certificate and client limits).
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// What `[server]` was made of (its text, certificate and key).
    pub source: SourceDigest,
    pub tls: Option<ListenerTls>,
    pub require_tls: bool,
    pub allowed_clients: Vec<IpNet>,
    pub max_connections: usize,
    pub idle_timeout: Duration,
    /// Largest PDU accepted from a client that has bound (bytes).
    pub max_message_bytes: usize,
    /// Largest PDU accepted from a client that has not bound successfully
    /// (bytes): all an anonymous client can make ldapgate buffer at once.
    pub max_message_bytes_before_bind: usize,
    /// How long a client may take to send one PDU once its first byte
    /// arrived; then the connection is closed.
    pub pdu_timeout: Duration,
    /// How long answers may wait for a client that takes none of them;
    /// then the session ends and its directory connection is closed, which
    /// frees what the directory had blocked writing to it.
    pub send_timeout: Duration,
    /// Bytes that unfinished PDUs larger than a read buffer may hold across
    /// all connections together ([`crate::session::budget`]).
    pub unfinished_pdu_budget: usize,
}

/// The listener certificate, loaded and checked.
#[derive(Clone)]
pub struct ListenerTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub config: Arc<rustls::ServerConfig>,
}

impl fmt::Debug for ListenerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ListenerTls")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish()
    }
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Validates configuration text; `path` is only named in errors and used
    /// to resolve nothing (paths in the file are taken as written).
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: path.to_owned(),
            message: e.to_string().trim_end().replace('\n', " "),
        })?;
        // The same text as a table, for the digests of its parts; it parsed
        // as RawConfig, so it parses as a table.
        let doc: toml::Table = toml::from_str(text).unwrap_or_default();
        let mut v = Validator::default();
        let mut server = v.server(&raw.server);
        if let Some(server) = &mut server {
            server.source = SourceDigest::of(
                &[doc.get("server")],
                &[
                    raw.server.tls_cert.as_deref(),
                    raw.server.tls_key.as_deref(),
                ],
            );
        }
        let mut directories = v.directories(&raw);
        if let (Some(d), [single]) = (&raw.directory, directories.as_mut_slice()) {
            let listen = doc.get("server").and_then(toml::Value::as_table);
            single.source = SourceDigest::of(
                &[
                    listen.and_then(|s| s.get("ldap_listen")),
                    listen.and_then(|s| s.get("ldaps_listen")),
                    doc.get("directory"),
                    doc.get("signin"),
                    doc.get("ratelimit"),
                    doc.get("sync"),
                ],
                &[d.ca_file.as_deref(), d.bind_password_file.as_deref()],
            );
        }
        let control = raw.control.as_ref().map(|c| v.control(c));
        let metrics = raw.metrics.as_ref().and_then(|m| v.metrics(m));
        let cluster = raw.cluster.as_ref().map(|c| v.cluster(c));
        let keyed: Vec<(String, &TenantDirectory)> = directories
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let key = if raw.directory.is_some() {
                    "server".to_owned()
                } else {
                    format!("directories[{i}]")
                };
                (key, d)
            })
            .collect();
        let mut others = Vec::new();
        if let Some(Some(c)) = &control {
            others.push(("control.listen", c.listen));
        }
        if let Some(m) = &metrics {
            others.push(("metrics.listen", m.listen));
        }
        v.distinct_listeners(&keyed, &others);
        if raw.server.tls_cert.is_none() && raw.server.tls_key.is_none() && wants_ldaps(&raw) {
            v.problem("server.tls_cert", "required when ldaps_listen is set");
        }
        match server {
            Some(server) if v.problems.is_empty() && !directories.is_empty() => Ok(Config {
                server,
                directories,
                control: control.flatten(),
                metrics,
                cluster: cluster.flatten(),
            }),
            _ => Err(ConfigError::Invalid(v.problems)),
        }
    }

    /// The directory called `name`.
    pub fn directory(&self, name: &str) -> Option<&TenantDirectory> {
        self.directories.iter().find(|d| d.name == name)
    }

    /// The directory a command without `--directory` (or an unscoped
    /// control path) means: the only one, or an error naming the choices.
    pub fn only_directory(&self) -> Result<&TenantDirectory, DirectoryChoice> {
        self.choose_directory(None)
    }

    /// The directory `name` names, or the only one when `name` is None.
    pub fn choose_directory(
        &self,
        name: Option<&str>,
    ) -> Result<&TenantDirectory, DirectoryChoice> {
        choose(&self.directories, |d| &d.name, name)
    }
}

/// The item of `items` (in file order) whose name (`name_of`) is `name`, or
/// the only item when `name` is None: what `--directory` and the control
/// paths resolve, over the configuration or the directories running.
pub fn choose<'a, T>(
    items: &'a [T],
    name_of: impl Fn(&T) -> &str,
    name: Option<&str>,
) -> Result<&'a T, DirectoryChoice> {
    let names = || items.iter().map(|d| name_of(d).to_owned()).collect();
    match (name, items) {
        (None, [only]) => Ok(only),
        (None, _) => Err(DirectoryChoice::Ambiguous(names())),
        (Some(name), _) => {
            items
                .iter()
                .find(|d| name_of(d) == name)
                .ok_or_else(|| DirectoryChoice::Unknown {
                    name: name.to_owned(),
                    configured: names(),
                })
        }
    }
}

/// Why a command or request does not name one configured directory.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DirectoryChoice {
    #[error("several directories are configured ({}): name one with --directory NAME or /v1/directories/NAME/...", .0.join(", "))]
    Ambiguous(Vec<String>),
    #[error("no directory is named `{name}`; configured: {}", .configured.join(", "))]
    Unknown {
        name: String,
        configured: Vec<String>,
    },
}

/// Collects every problem rather than stopping at the first.
#[derive(Default)]
struct Validator {
    problems: Vec<Problem>,
}

impl Validator {
    /// Client addresses: CIDRs, or single addresses (a /32 or /128).
    fn clients(&mut self, key: &str, list: &[String]) -> Vec<IpNet> {
        let mut out = Vec::new();
        for (i, c) in list.iter().enumerate() {
            let parsed = c
                .parse::<IpNet>()
                .or_else(|_| c.parse::<std::net::IpAddr>().map(IpNet::from));
            match parsed {
                Ok(net) => out.push(net.trunc()),
                Err(_) => self.problem(
                    &format!("{key}[{i}]"),
                    format!("`{c}` is not a CIDR like \"10.0.0.0/8\" or an address"),
                ),
            }
        }
        out
    }

    fn problem(&mut self, key: &str, message: impl fmt::Display) {
        self.problems.push(Problem {
            key: key.to_owned(),
            message: message.to_string(),
        });
    }

    fn duration(&mut self, key: &str, text: &str, allow_zero: bool) -> Duration {
        match humantime::parse_duration(text) {
            Ok(d) if d.is_zero() && !allow_zero => {
                self.problem(key, "must be greater than zero");
                Duration::ZERO
            }
            Ok(d) => d,
            Err(e) => {
                self.problem(
                    key,
                    format!("`{text}` is not a duration like \"5s\" or \"15m\": {e}"),
                );
                Duration::ZERO
            }
        }
    }

    fn range(&mut self, key: &str, value: i64, min: i64, max: i64) -> usize {
        if value < min || value > max {
            self.problem(key, format!("{value} is outside {min}..={max}"));
            return 0;
        }
        usize::try_from(value).unwrap_or(0)
    }

    fn addrs(&mut self, key: &str, list: &[String]) -> Vec<SocketAddr> {
        let mut out = Vec::new();
        for (i, s) in list.iter().enumerate() {
            match s.parse::<SocketAddr>() {
                Ok(a) => out.push(a),
                Err(_) => self.problem(
                    &format!("{key}[{i}]"),
                    format!("`{s}` is not an address:port like \"0.0.0.0:389\""),
                ),
            }
        }
        out
    }

    /// A secret read from `file` (a systemd credential): its text without
    /// the trailing newline `echo secret > file` leaves; empty is a problem.
    fn secret_file(&mut self, key: &str, file: &str) -> Option<Secret> {
        match std::fs::read_to_string(file) {
            Ok(s) => {
                let s = s.strip_suffix('\n').unwrap_or(&s);
                let s = s.strip_suffix('\r').unwrap_or(s);
                if s.is_empty() {
                    self.problem(key, format!("{file} is empty"));
                    None
                } else {
                    Some(Secret(s.to_owned()))
                }
            }
            Err(e) => {
                self.problem(key, format!("cannot read {file}: {e}"));
                None
            }
        }
    }

    fn readable(&mut self, key: &str, path: &str) -> Option<PathBuf> {
        let p = PathBuf::from(path);
        match std::fs::metadata(&p) {
            Ok(m) if m.is_file() => Some(p),
            Ok(_) => {
                self.problem(key, format!("{path} is not a file"));
                None
            }
            Err(e) => {
                self.problem(key, format!("cannot read {path}: {e}"));
                None
            }
        }
    }

    /// A certificate chain and key for a TLS listener of `section`, loaded
    /// and checked as a pair.
    fn listener_tls(&mut self, section: &str, cert: &str, key: &str) -> Option<ListenerTls> {
        let cert_key = format!("{section}.tls_cert");
        let cert = self.readable(&cert_key, cert);
        let key = self.readable(&format!("{section}.tls_key"), key);
        let (cert, key) = (cert?, key?);
        match tls::server_config(&cert, &key) {
            Ok(config) => Some(ListenerTls { cert, key, config }),
            Err(e) => {
                self.problem(&cert_key, e);
                None
            }
        }
    }

    fn server(&mut self, r: &RawServer) -> Option<ServerConfig> {
        let tls = match (&r.tls_cert, &r.tls_key) {
            (Some(cert), Some(key)) => self.listener_tls("server", cert, key),
            (Some(_), None) => {
                self.problem("server.tls_key", "required when tls_cert is set");
                None
            }
            (None, Some(_)) => {
                self.problem("server.tls_cert", "required when tls_key is set");
                None
            }
            (None, None) => {
                if r.require_tls {
                    self.problem("server.tls_cert", "required when require_tls = true");
                }
                None
            }
        };
        let allowed_clients = self.clients("server.allowed_clients", &r.allowed_clients);
        let max_message_bytes = self.range(
            "server.max_message_bytes",
            r.max_message_bytes,
            1024,
            1 << 30,
        );
        // Never more than a bound client may send.
        let max_message_bytes_before_bind = self
            .range(
                "server.max_message_bytes_before_bind",
                r.max_message_bytes_before_bind,
                1024,
                1 << 30,
            )
            .min(max_message_bytes);
        // A PDU of max_message_bytes must fit in the budget, or it could
        // never be read.
        let unfinished_pdu_budget = self.range(
            "server.unfinished_pdu_budget",
            r.unfinished_pdu_budget,
            i64::try_from(max_message_bytes)
                .unwrap_or(1 << 30)
                .max(1024),
            1 << 40,
        );
        Some(ServerConfig {
            source: SourceDigest::default(),
            tls,
            require_tls: r.require_tls,
            allowed_clients,
            max_connections: self.range("server.max_connections", r.max_connections, 1, 1_000_000),
            idle_timeout: self.duration("server.idle_timeout", &r.idle_timeout, false),
            max_message_bytes,
            max_message_bytes_before_bind,
            pdu_timeout: self.duration("server.pdu_timeout", &r.pdu_timeout, false),
            send_timeout: self.duration("server.send_timeout", &r.send_timeout, false),
            unfinished_pdu_budget,
        })
    }
}

/// True when any directory has an LDAPS listener, which needs the
/// `[server]` certificate (read from the file as written, so that it is
/// said even when the directory has problems of its own).
fn wants_ldaps(raw: &RawConfig) -> bool {
    let single = raw
        .server
        .ldaps_listen
        .as_ref()
        .is_some_and(|l| !l.is_empty());
    let several = raw.directories.iter().flatten().any(|entry| {
        entry
            .get("ldaps_listen")
            .and_then(toml::Value::as_array)
            .is_some_and(|l| !l.is_empty())
    });
    single || several
}

#[cfg(test)]
mod tests;
