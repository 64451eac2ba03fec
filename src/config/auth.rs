//! `[signin]`, `[ratelimit]` and `[control]`: delegated authentication and
//! the HTTPS control channel.

use std::fmt;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use super::http::{HttpLimits, RawHttpLimits};
use super::raw::{RawControl, RawRateLimit, RawSignIn};
use super::{ListenerTls, Validator};

/// `[signin]`: how a login identifier finds its entry.
#[derive(Debug, Clone)]
pub struct SignInConfig {
    /// Attributes OR-ed in the resolution filter.
    pub attributes: Vec<String>,
    pub user_object_classes: Vec<String>,
    pub org_object_classes: Vec<String>,
    pub rewrite_ldap_binds: bool,
    /// How long a login's resolved DN is cached at most; zero disables the
    /// cache.
    pub cache_ttl: Duration,
    /// How often the directory's change marker is read; a cached resolution
    /// is used only while the marker has not moved since it was cached (and
    /// for at most this long where the directory has no marker).
    pub change_check_interval: Duration,
}

/// A rate with burst: `count` per `period`, up to `count` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: NonZeroU32,
    pub period: Duration,
}

impl FromStr for Rate {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("`{s}` is not a rate like \"50/s\", \"10/m\" or \"100/h\"");
        let (count, unit) = s.split_once('/').ok_or_else(bad)?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        let count =
            NonZeroU32::new(count).ok_or_else(|| format!("`{s}`: the count must be at least 1"))?;
        let period = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            other => humantime::parse_duration(other).map_err(|_| bad())?,
        };
        if period.is_zero() {
            return Err(bad());
        }
        Ok(Rate { count, period })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}",
            self.count,
            humantime::format_duration(self.period)
        )
    }
}

/// `[ratelimit]`: bind rates, lockout and concurrency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitConfig {
    pub binds_per_ip: Rate,
    pub binds_per_identity: Rate,
    /// Binds per entry outside the account classes (service accounts,
    /// administrators) through the LDAP listener.
    pub service_binds_per_identity: Rate,
    /// Wrong-password results per identity within `lockout_window` that
    /// lock it for `lockout_duration`; zero disables lockout.
    pub failures_before_lockout: u32,
    pub lockout_window: Duration,
    pub lockout_duration: Duration,
    pub max_concurrent_binds: usize,
}

/// `[control]`: the HTTPS control channel.
#[derive(Debug, Clone)]
pub struct ControlConfig {
    pub listen: SocketAddr,
    pub tls: ListenerTls,
    /// SHA-256 of every accepted bearer token.
    pub token_sha256: Vec<[u8; 32]>,
    /// When set, clients must present a certificate from this CA.
    pub client_ca_file: Option<PathBuf>,
    /// `max_connections`, `header_timeout`, `body_timeout`.
    pub limits: HttpLimits,
}

fn is_attribute_name(s: &str) -> bool {
    let name = s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    let oid = !s.is_empty() && s.chars().all(|c| c.is_ascii_digit() || c == '.');
    name || oid
}

impl Validator {
    fn names(&mut self, key: &str, list: &[String], required: bool) -> Vec<String> {
        if required && list.is_empty() {
            self.problem(key, "at least one is required");
        }
        for (i, name) in list.iter().enumerate() {
            if !is_attribute_name(name) {
                self.problem(
                    &format!("{key}[{i}]"),
                    format!("`{name}` is not an attribute or class name"),
                );
            }
        }
        list.to_vec()
    }

    pub(super) fn signin(&mut self, r: &RawSignIn) -> SignInConfig {
        SignInConfig {
            attributes: self.names("signin.attributes", &r.attributes, true),
            user_object_classes: self.names(
                "signin.user_object_classes",
                &r.user_object_classes,
                true,
            ),
            org_object_classes: self.names(
                "signin.org_object_classes",
                &r.org_object_classes,
                false,
            ),
            rewrite_ldap_binds: r.rewrite_ldap_binds,
            cache_ttl: self.duration("signin.cache_ttl", &r.cache_ttl, true),
            change_check_interval: self.duration(
                "signin.change_check_interval",
                &r.change_check_interval,
                false,
            ),
        }
    }

    fn rate(&mut self, key: &str, text: &str) -> Rate {
        text.parse().unwrap_or_else(|e: String| {
            self.problem(key, e);
            Rate {
                count: NonZeroU32::MIN,
                period: Duration::from_secs(1),
            }
        })
    }

    pub(super) fn ratelimit(&mut self, r: &RawRateLimit) -> RateLimitConfig {
        RateLimitConfig {
            binds_per_ip: self.rate("ratelimit.binds_per_ip", &r.binds_per_ip),
            binds_per_identity: self.rate("ratelimit.binds_per_identity", &r.binds_per_identity),
            service_binds_per_identity: self.rate(
                "ratelimit.service_binds_per_identity",
                &r.service_binds_per_identity,
            ),
            failures_before_lockout: self.range(
                "ratelimit.failures_before_lockout",
                r.failures_before_lockout,
                0,
                1000,
            ) as u32,
            lockout_window: self.duration("ratelimit.lockout_window", &r.lockout_window, false),
            lockout_duration: self.duration(
                "ratelimit.lockout_duration",
                &r.lockout_duration,
                false,
            ),
            max_concurrent_binds: self.range(
                "ratelimit.max_concurrent_binds",
                r.max_concurrent_binds,
                1,
                100_000,
            ),
        }
    }

    pub(super) fn control(&mut self, r: &RawControl) -> Option<ControlConfig> {
        let listen = match r.listen.as_deref().map(str::parse::<SocketAddr>) {
            Some(Ok(a)) => Some(a),
            Some(Err(_)) => {
                self.problem(
                    "control.listen",
                    "not an address:port like \"0.0.0.0:8443\"",
                );
                None
            }
            None => {
                self.problem("control.listen", "required when [control] is present");
                None
            }
        };
        let tls = match (&r.tls_cert, &r.tls_key) {
            (Some(cert), Some(key)) => self.listener_tls("control", cert, key),
            _ => {
                self.problem(
                    "control.tls_cert",
                    "the control channel is HTTPS only: set tls_cert and tls_key",
                );
                None
            }
        };
        let mut token_sha256 = Vec::new();
        for (i, hex) in r.token_sha256.iter().enumerate() {
            match decode_hex32(hex) {
                Some(h) => token_sha256.push(h),
                None => self.problem(
                    &format!("control.token_sha256[{i}]"),
                    "not 64 hex digits (`printf %s TOKEN | sha256sum`)",
                ),
            }
        }
        let client_ca_file = r
            .client_ca_file
            .as_deref()
            .filter(|s| !s.is_empty())
            .and_then(|p| self.readable("control.client_ca_file", p));
        if r.token_sha256.is_empty() && client_ca_file.is_none() {
            self.problem(
                "control.token_sha256",
                "no way to authenticate callers: set token_sha256 or client_ca_file",
            );
        }
        let limits = self.http_limits(
            "control",
            &RawHttpLimits {
                max_connections: r.max_connections,
                header_timeout: &r.header_timeout,
                body_timeout: &r.body_timeout,
            },
        );
        Some(ControlConfig {
            listen: listen?,
            tls: tls?,
            token_sha256,
            client_ca_file,
            limits,
        })
    }
}

fn decode_hex32(s: &str) -> Option<[u8; 32]> {
    let s = s.trim();
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in s.as_bytes().chunks(2).enumerate() {
        out[i] = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        let r: Rate = "50/s".parse().unwrap();
        assert_eq!((r.count.get(), r.period), (50, Duration::from_secs(1)));
        let r: Rate = "10/m".parse().unwrap();
        assert_eq!(r.period, Duration::from_secs(60));
        let r: Rate = "5/30s".parse().unwrap();
        assert_eq!(r.period, Duration::from_secs(30));
        assert!("0/s".parse::<Rate>().is_err());
        assert!("ten/s".parse::<Rate>().is_err());
        assert!("10".parse::<Rate>().is_err());
        assert!("10/fortnight".parse::<Rate>().is_err());
    }

    #[test]
    fn hex_tokens() {
        assert_eq!(decode_hex32(&"ab".repeat(32)), Some([0xab; 32]));
        assert_eq!(decode_hex32("ab"), None);
        assert_eq!(decode_hex32(&"zz".repeat(32)), None);
    }

    #[test]
    fn attribute_names() {
        assert!(is_attribute_name("employeeNumber"));
        assert!(is_attribute_name("2.5.4.3"));
        assert!(!is_attribute_name("mail)(uid=*"));
        assert!(!is_attribute_name(""));
    }
}
