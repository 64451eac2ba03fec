//! Configuration: the TOML file of CONTRACT.md parsed once into typed,
//! validated values. Every problem is reported with the key at fault, all of
//! them at once, and nothing reads a configuration string after this.

mod auth;
mod directory;
mod http;
mod metrics;
mod raw;
mod sync;

pub use auth::{ControlConfig, Rate, RateLimitConfig, SignInConfig};
pub use directory::{DirectoryConfig, DirectoryKind, ServiceAccount};
pub use http::HttpLimits;
pub use metrics::MetricsConfig;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
pub use sync::{ChangeTracking, SyncConfig};

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
    pub server: ServerConfig,
    pub directory: DirectoryConfig,
    pub signin: SignInConfig,
    pub ratelimit: RateLimitConfig,
    /// None when the file has no `[control]` section: no control channel.
    pub control: Option<ControlConfig>,
    /// None when the file has no `[metrics]` section: no metrics endpoint.
    pub metrics: Option<MetricsConfig>,
    pub sync: SyncConfig,
}

/// `[server]`: the client-facing listeners.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub ldap_listen: Vec<SocketAddr>,
    pub ldaps_listen: Vec<SocketAddr>,
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
        let mut v = Validator::default();
        let server = v.server(&raw.server);
        let directory = match &raw.directory {
            Some(d) => v.directory(d),
            None => {
                v.problem("directory", "section is required");
                None
            }
        };
        let signin = v.signin(&raw.signin);
        let ratelimit = v.ratelimit(&raw.ratelimit);
        let control = raw.control.as_ref().map(|c| v.control(c));
        let metrics = raw.metrics.as_ref().and_then(|m| v.metrics(m));
        let sync = v.sync(&raw.sync);
        match (server, directory) {
            (Some(server), Some(directory)) if v.problems.is_empty() => Ok(Config {
                server,
                directory,
                signin,
                ratelimit,
                control: control.flatten(),
                metrics,
                sync,
            }),
            _ => Err(ConfigError::Invalid(v.problems)),
        }
    }
}

/// Collects every problem rather than stopping at the first.
#[derive(Default)]
struct Validator {
    problems: Vec<Problem>,
}

impl Validator {
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
        let ldap_listen = self.addrs("server.ldap_listen", &r.ldap_listen);
        let ldaps_listen = self.addrs("server.ldaps_listen", &r.ldaps_listen);
        if r.ldap_listen.is_empty() && r.ldaps_listen.is_empty() {
            self.problem(
                "server.ldap_listen",
                "no listener: set ldap_listen or ldaps_listen",
            );
        }
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
                if !r.ldaps_listen.is_empty() {
                    self.problem("server.tls_cert", "required when ldaps_listen is set");
                }
                if r.require_tls {
                    self.problem("server.tls_cert", "required when require_tls = true");
                }
                None
            }
        };
        let mut allowed_clients = Vec::new();
        for (i, c) in r.allowed_clients.iter().enumerate() {
            let parsed = c
                .parse::<IpNet>()
                .or_else(|_| c.parse::<std::net::IpAddr>().map(IpNet::from));
            match parsed {
                Ok(net) => allowed_clients.push(net.trunc()),
                Err(_) => self.problem(
                    &format!("server.allowed_clients[{i}]"),
                    format!("`{c}` is not a CIDR like \"10.0.0.0/8\" or an address"),
                ),
            }
        }
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
            ldap_listen,
            ldaps_listen,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("test.toml"))
    }

    fn keys(err: ConfigError) -> Vec<String> {
        match err {
            ConfigError::Invalid(p) => p.into_iter().map(|p| p.key).collect(),
            other => panic!("expected Invalid, got {other}"),
        }
    }

    const MINIMAL: &str = r#"
        [server]
        ldap_listen = ["127.0.0.1:1389"]
        [directory]
        servers = ["ldap://127.0.0.1:389"]
        starttls = false
        base_dn = "dc=example,dc=com"
    "#;

    #[test]
    fn minimal_config_gets_contract_defaults() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.server.max_connections, 10_000);
        assert_eq!(c.server.idle_timeout, Duration::from_secs(900));
        assert_eq!(c.server.max_message_bytes, 1_048_576);
        assert_eq!(c.server.max_message_bytes_before_bind, 65_536);
        assert_eq!(c.server.pdu_timeout, Duration::from_secs(30));
        assert_eq!(c.server.send_timeout, Duration::from_secs(30));
        assert_eq!(c.server.unfinished_pdu_budget, 64 << 20);
        assert_eq!(c.directory.pool_size, 16);
        assert_eq!(c.directory.operation_timeout, Duration::from_secs(10));
        assert_eq!(c.directory.max_message_bytes, 16 * 1024 * 1024);
        assert_eq!(c.directory.kind, DirectoryKind::OpenLdap);
        assert!(!c.directory.every_leg_encrypted());
    }

    #[test]
    fn the_unfinished_pdu_budget_holds_one_largest_pdu() {
        let small_budget = MINIMAL.replace(
            "[server]",
            "[server]\nmax_message_bytes = 2097152\nunfinished_pdu_budget = 1048576",
        );
        assert_eq!(
            keys(parse(&small_budget).unwrap_err()),
            ["server.unfinished_pdu_budget"]
        );
        let smaller = MINIMAL.replace("[server]", "[server]\nmax_message_bytes = 32768");
        let c = parse(&smaller).unwrap();
        assert_eq!(
            c.server.max_message_bytes_before_bind, 32768,
            "never above max_message_bytes"
        );
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let err = parse(
            r#"
            [server]
            ldap_listen = ["nope"]
            ldaps_listen = ["127.0.0.1:1636"]
            allowed_clients = ["10.0.0.0/8", "banana"]
            idle_timeout = "soon"
            max_message_bytes = 10
            [directory]
            kind = "novell"
            servers = ["http://x"]
            pins = ["sha256:00"]
            base_dn = "example.com"
            bind_dn = "cn=svc,dc=example,dc=com"
        "#,
        )
        .unwrap_err();
        let keys = keys(err);
        for k in [
            "server.ldap_listen[0]",
            "server.tls_cert",
            "server.allowed_clients[1]",
            "server.idle_timeout",
            "server.max_message_bytes",
            "directory.kind",
            "directory.servers[0]",
            "directory.pins[0]",
            "directory.base_dn",
            "directory.bind_password_file",
        ] {
            assert!(keys.iter().any(|got| got == k), "missing {k} in {keys:?}");
        }
    }

    #[test]
    fn unknown_keys_and_bad_toml_are_errors() {
        let err = parse("[server]\nldap_lisen = []\n[directory]\n").unwrap_err();
        assert!(err.to_string().contains("ldap_lisen"), "{err}");
        assert!(matches!(parse("[server"), Err(ConfigError::Syntax { .. })));
        assert_eq!(keys(parse("[server]\n").unwrap_err()), vec!["directory"]);
    }

    #[test]
    fn password_file_is_read_and_redacted() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "s3cret\n").unwrap();
        let text = format!(
            "{MINIMAL}\nbind_dn = \"cn=svc,dc=example,dc=com\"\nbind_password_file = \"{}\"\n",
            file.display()
        );
        let c = parse(&text).unwrap();
        let account = c.directory.service_account.unwrap();
        assert_eq!(account.password.expose(), "s3cret");
        assert!(!format!("{account:?}").contains("s3cret"));
        std::fs::write(&file, "").unwrap();
        assert_eq!(
            keys(parse(&text).unwrap_err()),
            vec!["directory.bind_password_file"]
        );
    }

    #[test]
    fn single_addresses_are_accepted_as_allowed_clients() {
        let text = MINIMAL.replace(
            "[directory]",
            "allowed_clients = [\"192.168.1.7\", \"10.1.2.3/8\"]\n[directory]",
        );
        let c = parse(&text).unwrap();
        assert_eq!(
            c.server.allowed_clients,
            vec![
                "192.168.1.7/32".parse::<IpNet>().unwrap(),
                "10.0.0.0/8".parse().unwrap()
            ]
        );
    }
}
