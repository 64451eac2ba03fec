//! The limits of the two HTTP listeners, `[control]` and `[metrics]`: what
//! a client that has not (yet) made an authenticated request can hold.

use std::time::Duration;

use super::Validator;

/// The longest timeout accepted for `header_timeout` and `body_timeout`: a
/// bound an operator can raise far enough for a slow network and no further
/// than a stalled peer should be allowed to sit on a connection.
const MAX_TIMEOUT: Duration = Duration::from_secs(600);

/// How one HTTP listener bounds its connections (see `crate::http_server`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Connections open at once, TLS handshakes included. When all are open,
    /// the oldest that has not completed an authenticated request is closed
    /// to make room (or the new one, when every connection has).
    pub max_connections: usize,
    /// From the moment a connection waits for a request (the end of the TLS
    /// handshake, or of the previous response) until that request's header
    /// section is complete: the wait for the first byte, the keep-alive idle
    /// time between requests and slow headers, in one bound.
    pub header_timeout: Duration,
    /// From the end of a request's header section until the last byte of
    /// its body.
    pub body_timeout: Duration,
}

/// The raw keys of one listener's limits, as the file spells them.
pub(super) struct RawHttpLimits<'a> {
    pub max_connections: i64,
    pub header_timeout: &'a str,
    pub body_timeout: &'a str,
}

impl Validator {
    /// `section.max_connections`, `section.header_timeout` and
    /// `section.body_timeout`, each checked and named when wrong.
    pub(super) fn http_limits(&mut self, section: &str, r: &RawHttpLimits<'_>) -> HttpLimits {
        let max_connections = self.range(
            &format!("{section}.max_connections"),
            r.max_connections,
            1,
            100_000,
        );
        let header_timeout =
            self.http_timeout(&format!("{section}.header_timeout"), r.header_timeout);
        let body_timeout = self.http_timeout(&format!("{section}.body_timeout"), r.body_timeout);
        HttpLimits {
            max_connections,
            header_timeout,
            body_timeout,
        }
    }

    fn http_timeout(&mut self, key: &str, text: &str) -> Duration {
        let d = self.duration(key, text, false);
        if d > MAX_TIMEOUT {
            self.problem(
                key,
                format!(
                    "`{text}` is longer than {}",
                    humantime::format_duration(MAX_TIMEOUT)
                ),
            );
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::{Config, ConfigError};

    const DIRECTORY: &str = "[directory]\nservers = [\"ldap://127.0.0.1:389\"]\nstarttls = false\n\
                             base_dn = \"dc=example,dc=com\"\n";

    #[test]
    fn metrics_limits_default_and_every_bad_value_is_named() {
        let text = format!("{DIRECTORY}[metrics]\nlisten = \"127.0.0.1:9389\"\n");
        let c = Config::parse(&text, Path::new("t.toml")).unwrap();
        let limits = c.metrics.unwrap().limits;
        assert_eq!(
            limits,
            HttpLimits {
                max_connections: 64,
                header_timeout: Duration::from_secs(10),
                body_timeout: Duration::from_secs(10),
            }
        );
        let text = format!(
            "{DIRECTORY}[metrics]\nlisten = \"127.0.0.1:9389\"\nmax_connections = 0\n\
             header_timeout = \"0s\"\nbody_timeout = \"2h\"\n"
        );
        let Err(ConfigError::Invalid(problems)) = Config::parse(&text, Path::new("t.toml")) else {
            panic!("accepted");
        };
        let keys: Vec<_> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "metrics.max_connections",
                "metrics.header_timeout",
                "metrics.body_timeout"
            ]
        );
    }
}
