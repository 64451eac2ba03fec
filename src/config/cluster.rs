//! `[cluster]`: the shared store (Redis or Valkey) through which the
//! appliances of one tenant share lockout counts, per-identity rates and
//! sync state. Without the section an instance works alone.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::raw::RawCluster;
use super::{Secret, Validator};

/// Fewest bytes `key_file` must hold: a 256-bit key.
pub const MIN_KEY_BYTES: usize = 32;

/// The longest `cluster.timeout`.
const MAX_TIMEOUT: Duration = Duration::from_secs(10);

/// The key every instance of a tenant shares (`key_file`): it hashes the
/// identities in store keys and signs approval tokens. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterKey(Vec<u8>);

impl ClusterKey {
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterKey(<redacted>)")
    }
}

/// Where the store listens: `redis://host:port/db` or `rediss://` for TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreAddress {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// The logical database (`/0` when the URL names none).
    pub db: i64,
    /// An ACL user, when the URL names one (`redis://ldapgate@host`).
    pub username: Option<String>,
}

impl fmt::Display for StoreAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "rediss" } else { "redis" };
        let user = self
            .username
            .as_deref()
            .map(|u| format!("{u}@"))
            .unwrap_or_default();
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        write!(f, "{scheme}://{user}{host}:{}/{}", self.port, self.db)
    }
}

/// `[cluster]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    pub store: StoreAddress,
    /// From `password_file` (a systemd credential); none: no AUTH.
    pub password: Option<Secret>,
    /// From `key_file`: the same on every instance of the tenant. None:
    /// the instances use a key kept in the store itself (made by the first
    /// one), which whoever reads the store can read too.
    pub key: Option<ClusterKey>,
    /// CA bundle for `rediss://` (default: the system's roots).
    pub ca_file: Option<PathBuf>,
    /// How long one store call may take before the store counts as down
    /// and each instance decides on its own (default 500 ms).
    pub timeout: Duration,
}

impl Validator {
    pub(super) fn cluster(&mut self, r: &RawCluster) -> Option<ClusterConfig> {
        let store = match &r.store {
            Some(url) => self.store_address(url),
            None => {
                self.problem(
                    "cluster.store",
                    "required in [cluster]: a URL like \"redis://10.0.0.5:6379/0\"",
                );
                None
            }
        };
        let password = r
            .password_file
            .as_deref()
            .and_then(|file| self.secret_file("cluster.password_file", file));
        let key = r.key_file.as_deref().map(|file| self.cluster_key(file));
        let ca_file = r
            .ca_file
            .as_deref()
            .and_then(|f| self.readable("cluster.ca_file", f))
            .filter(|path| match crate::tls::load_certs(path) {
                Ok(_) => true,
                Err(e) => {
                    self.problem("cluster.ca_file", e);
                    false
                }
            });
        let timeout = self.duration("cluster.timeout", &r.timeout, false);
        // Every sign-in may wait this long on a store that stopped
        // answering, before the instance decides alone.
        if timeout > MAX_TIMEOUT {
            self.problem(
                "cluster.timeout",
                format!(
                    "at most {}s: every sign-in may wait this long",
                    MAX_TIMEOUT.as_secs()
                ),
            );
        }
        if let (Some(s), Some(_)) = (&store, &r.ca_file) {
            if !s.tls {
                self.problem("cluster.ca_file", "only used with a rediss:// store");
            }
        }
        let key = match key {
            Some(None) => return None,
            Some(Some(key)) => Some(key),
            None => None,
        };
        Some(ClusterConfig {
            store: store?,
            password,
            key,
            ca_file,
            timeout,
        })
    }

    fn store_address(&mut self, text: &str) -> Option<StoreAddress> {
        const KEY: &str = "cluster.store";
        let url = match url::Url::parse(text) {
            Ok(url) => url,
            Err(e) => {
                self.problem(
                    KEY,
                    format!("not a URL like \"redis://10.0.0.5:6379/0\": {e}"),
                );
                return None;
            }
        };
        let tls = match url.scheme() {
            "redis" => false,
            "rediss" => true,
            other => {
                self.problem(KEY, format!("scheme `{other}`: use redis:// or rediss://"));
                return None;
            }
        };
        // The password is a secret: from a file, never in the configuration.
        if url.password().is_some() {
            self.problem(
                KEY,
                "holds a password: put it in cluster.password_file instead",
            );
            return None;
        }
        let Some(host) = url.host_str().filter(|h| !h.is_empty()) else {
            self.problem(KEY, "names no host");
            return None;
        };
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let db = match url.path().trim_start_matches('/') {
            "" => 0,
            n => match n.parse::<i64>() {
                Ok(db) if (0..=1_000_000).contains(&db) => db,
                _ => {
                    self.problem(KEY, format!("`/{n}` is not a database number like /0"));
                    return None;
                }
            },
        };
        if url.query().is_some() || url.fragment().is_some() {
            self.problem(KEY, "takes no query or fragment");
            return None;
        }
        Some(StoreAddress {
            tls,
            host,
            port: url.port().unwrap_or(6379),
            db,
            username: Some(url.username())
                .filter(|u| !u.is_empty())
                .map(str::to_owned),
        })
    }

    fn cluster_key(&mut self, file: &str) -> Option<ClusterKey> {
        const KEY: &str = "cluster.key_file";
        match std::fs::read(file) {
            Ok(mut bytes) => {
                // `echo`'s newline is not part of a key written as text; a
                // binary key (`head -c 32 /dev/urandom`) is taken whole,
                // whatever its last byte.
                if std::str::from_utf8(&bytes).is_ok() {
                    while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                        bytes.pop();
                    }
                }
                if bytes.len() < MIN_KEY_BYTES {
                    self.problem(
                        KEY,
                        format!(
                            "{file} holds {} bytes; at least {MIN_KEY_BYTES} are needed \
                             (e.g. `head -c 32 /dev/urandom > {file}`)",
                            bytes.len()
                        ),
                    );
                    return None;
                }
                Some(ClusterKey(bytes))
            }
            Err(e) => {
                self.problem(KEY, format!("cannot read {file}: {e}"));
                None
            }
        }
    }
}
