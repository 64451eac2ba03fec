//! The tenant's directories: `[[directories]]` entries, each with its own
//! listeners and its own `signin`, `ratelimit` and `sync` tables, or the
//! single-directory form of earlier versions (`[directory]` with top-level
//! `[signin]`, `[ratelimit]`, `[sync]` and the listeners in `[server]`),
//! which is one directory named [`DEFAULT_NAME`].
//!
//! Problems inside an entry are named by its position:
//! `directories[1].base_dn`, `directories[1].signin.attributes`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use ipnet::IpNet;

use super::raw::{RawConfig, RawDirectory, RawRateLimit, RawSignIn, RawSync};
use super::{
    DirectoryConfig, Problem, RateLimitConfig, SignInConfig, SourceDigest, SyncConfig, Validator,
};

/// The keys of a `[[directories]]` entry besides the `[directory]` ones.
const ENTRY_KEYS: [&str; 8] = [
    "name",
    "ldap_listen",
    "ldaps_listen",
    "allowed_clients",
    "max_connections",
    "signin",
    "ratelimit",
    "sync",
];

/// The name of the directory of a file in the single-directory form.
pub const DEFAULT_NAME: &str = "default";
/// Longest directory name: it goes into URL paths, metric labels and the
/// state directory's name.
const MAX_NAME_LEN: usize = 63;
/// Where a `[[directories]]` entry keeps its sync state unless its
/// `sync.state_dir` says otherwise: `<this>/<name>`.
const STATE_ROOT: &str = "/var/lib/ldapgate";

/// One directory of the tenant, with everything that is per directory:
/// its client listeners, upstream servers and trust, sign-in, rate limits
/// and sync.
#[derive(Debug, Clone)]
pub struct TenantDirectory {
    /// `[a-z0-9-]+`, unique in the file; [`DEFAULT_NAME`] in the
    /// single-directory form.
    pub name: String,
    /// Where its `[directory]` keys are in the file, for messages:
    /// `directory` in the single-directory form, `directories[1]` else.
    pub key: String,
    /// What the entry was made of (its text and the files it names): a
    /// reload keeps what was built from an entry whose digest is the same.
    pub source: SourceDigest,
    /// Plain LDAP listeners whose clients reach this directory.
    pub ldap_listen: Vec<SocketAddr>,
    /// LDAPS listeners whose clients reach this directory.
    pub ldaps_listen: Vec<SocketAddr>,
    /// Who may connect to its listeners, in place of
    /// `server.allowed_clients` (None: that list).
    pub allowed_clients: Option<Vec<IpNet>>,
    /// Its clients' connections at most, within `server.max_connections`
    /// (None: no limit of its own), so that one directory's clients cannot
    /// take every connection slot from another's.
    pub max_connections: Option<usize>,
    pub directory: DirectoryConfig,
    pub signin: SignInConfig,
    pub ratelimit: RateLimitConfig,
    pub sync: SyncConfig,
}

/// True for a usable directory name: `[a-z0-9][a-z0-9-]*`, at most 63
/// bytes (not starting with `-`, which a command line would take for an
/// option).
pub fn is_directory_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

impl Validator {
    /// Every directory of the file, in file order.
    pub(super) fn directories(&mut self, raw: &RawConfig) -> Vec<TenantDirectory> {
        match (&raw.directory, &raw.directories) {
            (Some(_), Some(_)) => {
                self.problem(
                    "directories",
                    "use either one [directory] or [[directories]] entries, not both",
                );
                Vec::new()
            }
            (None, None) => {
                self.problem(
                    "directory",
                    "section is required (or [[directories]] entries, one per directory)",
                );
                Vec::new()
            }
            (Some(directory), None) => self.single(raw, directory).into_iter().collect(),
            (None, Some(entries)) => self.several(raw, entries),
        }
    }

    /// The single-directory form: named `default`, listeners from `[server]`.
    fn single(&mut self, raw: &RawConfig, directory: &RawDirectory) -> Option<TenantDirectory> {
        let server = &raw.server;
        let default_listen = vec!["0.0.0.0:389".to_owned()];
        let ldap_listen = server.ldap_listen.as_ref().unwrap_or(&default_listen);
        let ldaps_listen = server.ldaps_listen.clone().unwrap_or_default();
        if ldap_listen.is_empty() && ldaps_listen.is_empty() {
            self.problem(
                "server.ldap_listen",
                "no listener: set ldap_listen or ldaps_listen",
            );
        }
        let ldap_listen = self.addrs("server.ldap_listen", ldap_listen);
        let ldaps_listen = self.addrs("server.ldaps_listen", &ldaps_listen);
        let directory = self.directory(directory);
        let signin = self.signin(&raw.signin.clone().unwrap_or_default());
        let ratelimit = self.ratelimit(&raw.ratelimit.clone().unwrap_or_default());
        let sync = self.sync(&raw.sync.clone().unwrap_or_default());
        Some(TenantDirectory {
            name: DEFAULT_NAME.to_owned(),
            key: "directory".to_owned(),
            // Set from the file's text by the caller.
            source: SourceDigest::default(),
            ldap_listen,
            ldaps_listen,
            allowed_clients: None,
            max_connections: None,
            directory: directory?,
            signin,
            ratelimit,
            sync,
        })
    }

    /// The `[[directories]]` form.
    fn several(&mut self, raw: &RawConfig, entries: &[toml::Table]) -> Vec<TenantDirectory> {
        let misplaced = [
            ("server.ldap_listen", raw.server.ldap_listen.is_some()),
            ("server.ldaps_listen", raw.server.ldaps_listen.is_some()),
            ("signin", raw.signin.is_some()),
            ("ratelimit", raw.ratelimit.is_some()),
            ("sync", raw.sync.is_some()),
        ];
        for (key, present) in misplaced {
            if present {
                self.problem(
                    key,
                    "is per directory with [[directories]]: move it into each entry \
                     (ldap_listen, ldaps_listen, [directories.signin], [directories.ratelimit], \
                     [directories.sync])",
                );
            }
        }
        if entries.is_empty() {
            self.problem("directories", "at least one directory is required");
        }
        let mut out = Vec::new();
        for (i, entry) in entries.iter().enumerate() {
            let mut inner = Validator::default();
            let prefix = format!("directories[{i}]");
            let parsed = inner.entry(entry).map(|d| TenantDirectory {
                key: prefix.clone(),
                ..d
            });
            self.problems
                .extend(inner.problems.into_iter().map(|p| Problem {
                    key: entry_key(&prefix, &p.key),
                    message: p.message,
                }));
            out.extend(parsed);
        }
        self.distinct(&out);
        let serves = out
            .iter()
            .any(|d| !d.ldap_listen.is_empty() || !d.ldaps_listen.is_empty());
        if !serves && raw.control.is_none() && !out.is_empty() {
            self.problem(
                "directories",
                "no listener and no [control]: set ldap_listen or ldaps_listen of a directory",
            );
        }
        out
    }

    /// One `[[directories]]` entry; its problems are keyed as in the
    /// single-directory form (`directory.base_dn`, `signin.attributes`,
    /// `ldap_listen`) and renamed by the caller.
    fn entry(&mut self, entry: &toml::Table) -> Option<TenantDirectory> {
        // What is left after the entry's own keys are `[directory]` keys.
        let mut rest = entry.clone();
        let mut take = |key: &str| rest.remove(key);
        let name = match take("name") {
            Some(toml::Value::String(name)) if is_directory_name(&name) => Some(name),
            Some(toml::Value::String(name)) => {
                self.problem(
                    "name",
                    format!("`{name}` is not a directory name: lowercase letters, digits and `-`, not first, at most {MAX_NAME_LEN} characters"),
                );
                None
            }
            Some(_) => {
                self.problem("name", "must be a string");
                None
            }
            None => {
                self.problem(
                    "name",
                    "required: [a-z0-9-]+, used in paths, metrics and state",
                );
                None
            }
        };
        let ldap_listen: Vec<String> = self.table_part(take("ldap_listen"), "ldap_listen");
        let ldaps_listen: Vec<String> = self.table_part(take("ldaps_listen"), "ldaps_listen");
        let allowed_clients: Option<Vec<String>> =
            self.table_part(take("allowed_clients"), "allowed_clients");
        let max_connections: Option<i64> =
            self.table_part(take("max_connections"), "max_connections");
        let signin: RawSignIn = self.table_part(take("signin"), "signin");
        let ratelimit: RawRateLimit = self.table_part(take("ratelimit"), "ratelimit");
        let raw_sync = take("sync");
        let state_dir_given =
            matches!(&raw_sync, Some(toml::Value::Table(t)) if t.contains_key("state_dir"));
        let mut sync: RawSync = self.table_part(raw_sync, "sync");
        if !state_dir_given {
            if let Some(name) = &name {
                sync.state_dir = format!("{STATE_ROOT}/{name}");
            }
        }
        let directory = match self.decode::<RawDirectory>(rest, "directory.") {
            Some(d) => self.directory(&d),
            None => None,
        };
        let ldap_listen = self.addrs("ldap_listen", &ldap_listen);
        let ldaps_listen = self.addrs("ldaps_listen", &ldaps_listen);
        let allowed_clients = allowed_clients.map(|c| self.clients("allowed_clients", &c));
        let max_connections =
            max_connections.map(|n| self.range("max_connections", n, 1, 1_000_000));
        let signin = self.signin(&signin);
        let ratelimit = self.ratelimit(&ratelimit);
        let sync = self.sync(&sync);
        let file = |key: &str| entry.get(key).and_then(toml::Value::as_str);
        let source = SourceDigest::of(
            &[Some(&toml::Value::Table(entry.clone()))],
            &[file("ca_file"), file("bind_password_file")],
        );
        Some(TenantDirectory {
            name: name?,
            key: String::new(),
            source,
            ldap_listen,
            ldaps_listen,
            allowed_clients,
            max_connections,
            directory: directory?,
            signin,
            ratelimit,
            sync,
        })
    }

    /// A part of an entry deserialised as its raw type; the type's default
    /// when absent, or when it does not fit (with a problem for each key
    /// that does not, named `key.that_key`).
    fn table_part<T>(&mut self, value: Option<toml::Value>, key: &str) -> T
    where
        T: serde::de::DeserializeOwned + Default,
    {
        match value {
            None => T::default(),
            Some(toml::Value::Table(table)) => {
                self.decode(table, &format!("{key}.")).unwrap_or_default()
            }
            Some(value) => value.try_into().unwrap_or_else(|e: toml::de::Error| {
                self.problem(key, toml_message(&e));
                T::default()
            }),
        }
    }

    /// `table` as `T`, whose every field has a default; when it does not
    /// fit, each key that does not is named (`prefix` + key), as the
    /// single-directory form's parser names the line. serde's own message
    /// for a table names no key.
    fn decode<T: serde::de::DeserializeOwned>(
        &mut self,
        table: toml::Table,
        prefix: &str,
    ) -> Option<T> {
        let whole = toml::Value::Table(table.clone()).try_into::<T>();
        let e = match whole {
            Ok(value) => return Some(value),
            Err(e) => e,
        };
        let mut named = false;
        for (key, value) in table {
            let alone = toml::Table::from_iter([(key.clone(), value)]);
            if let Err(e) = toml::Value::Table(alone).try_into::<T>() {
                let message = toml_message(&e);
                let message = if message.starts_with("unknown field") && prefix == "directory." {
                    format!(
                        "unknown key (an entry takes the [directory] keys and {})",
                        ENTRY_KEYS.join(", ")
                    )
                } else {
                    message
                };
                self.problem(&format!("{prefix}{key}"), message);
                named = true;
            }
        }
        if !named {
            self.problem(prefix.trim_end_matches('.'), toml_message(&e));
        }
        None
    }

    /// Names, listen addresses and state directories are each one
    /// directory's own.
    fn distinct(&mut self, directories: &[TenantDirectory]) {
        let mut names = BTreeMap::new();
        let mut states: BTreeMap<&PathBuf, &str> = BTreeMap::new();
        for (i, d) in directories.iter().enumerate() {
            let renamed = names.insert(d.name.as_str(), i);
            if let Some(first) = renamed {
                self.problem(
                    &format!("directories[{i}].name"),
                    format!("`{}` is also the name of directories[{first}]", d.name),
                );
            }
            // A shared name already says why the default state is shared.
            let shared_state = states.insert(&d.sync.state_dir, &d.name);
            if let (Some(other), None) = (shared_state, renamed) {
                self.problem(
                    &format!("directories[{i}].sync.state_dir"),
                    format!(
                        "{} is also the state directory of `{other}`: sync state is per directory",
                        d.sync.state_dir.display()
                    ),
                );
            }
        }
    }
}

/// True when `a` and `b` cannot both be bound: the same port on the same
/// address, or on an unspecified address that covers the other (`0.0.0.0`
/// covers every IPv4 address; `[::]` every address, IPv4 too, as Linux
/// binds it by default).
fn clash(a: SocketAddr, b: SocketAddr) -> bool {
    let covers = |wide: SocketAddr, other: SocketAddr| {
        wide.ip().is_unspecified() && (wide.is_ipv6() || other.is_ipv4())
    };
    a.port() == b.port() && (a.ip() == b.ip() || covers(a, b) || covers(b, a))
}

impl Validator {
    /// Every address ldapgate listens on is bound once: the directories'
    /// listeners (`keys` name each directory's, e.g. `server` or
    /// `directories[1]`), the control channel's and the metrics endpoint's.
    pub(super) fn distinct_listeners(
        &mut self,
        directories: &[(String, &TenantDirectory)],
        others: &[(&str, SocketAddr)],
    ) {
        let mut taken: Vec<(SocketAddr, String)> = Vec::new();
        let mut claim = |v: &mut Validator, key: String, addr: SocketAddr, who: String| {
            if let Some((_, other)) = taken.iter().find(|(a, _)| clash(*a, addr)) {
                let other = if *other == who {
                    "this directory".to_owned()
                } else {
                    other.clone()
                };
                v.problem(
                    &key,
                    format!("{addr} is also where {other} listens: an address serves one listener"),
                );
            }
            taken.push((addr, who));
        };
        for (prefix, d) in directories {
            let lists = [
                ("ldap_listen", &d.ldap_listen),
                ("ldaps_listen", &d.ldaps_listen),
            ];
            for (key, list) in lists {
                for addr in list {
                    let who = format!("directory `{}`", d.name);
                    claim(self, format!("{prefix}.{key}"), *addr, who);
                }
            }
        }
        for (key, addr) in others {
            claim(self, (*key).to_owned(), *addr, format!("`{key}`"));
        }
    }
}

/// `directory.base_dn` of entry `directories[1]` is `directories[1].base_dn`;
/// `signin.x` is `directories[1].signin.x`.
fn entry_key(prefix: &str, key: &str) -> String {
    let key = key.strip_prefix("directory.").unwrap_or(key);
    if key == "directory" {
        prefix.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

/// A serde error of one table, on one line.
fn toml_message(e: &toml::de::Error) -> String {
    e.message().trim_end().replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_names_are_lowercase_words_with_dashes() {
        for good in ["corp-ad", "ldap", "a", "zone-2", &"x".repeat(63)] {
            assert!(is_directory_name(good), "{good}");
        }
        for bad in [
            "",
            "-corp",
            "---",
            "Corp",
            "corp_ad",
            "corp ad",
            "ad/1",
            "é",
            &"x".repeat(64),
        ] {
            assert!(!is_directory_name(bad), "{bad}");
        }
    }

    #[test]
    fn addresses_clash_on_the_same_port_where_one_covers_the_other() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(clash(a("127.0.0.1:389"), a("127.0.0.1:389")));
        assert!(clash(a("0.0.0.0:389"), a("127.0.0.1:389")));
        assert!(clash(a("127.0.0.1:389"), a("0.0.0.0:389")));
        assert!(clash(a("[::]:389"), a("127.0.0.1:389")));
        assert!(clash(a("[::]:389"), a("[::1]:389")));
        assert!(!clash(a("0.0.0.0:389"), a("[::1]:389")));
        assert!(!clash(a("127.0.0.1:389"), a("127.0.0.2:389")));
        assert!(!clash(a("0.0.0.0:389"), a("0.0.0.0:636")));
    }

    #[test]
    fn entry_keys_carry_the_entry_position() {
        assert_eq!(
            entry_key("directories[1]", "directory.base_dn"),
            "directories[1].base_dn"
        );
        assert_eq!(
            entry_key("directories[0]", "signin.attributes[2]"),
            "directories[0].signin.attributes[2]"
        );
        assert_eq!(entry_key("directories[3]", "directory"), "directories[3]");
        assert_eq!(entry_key("directories[3]", "name"), "directories[3].name");
    }
}
