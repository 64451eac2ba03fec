//! An LDAP URL naming one directory server (RFC 4516, reduced to what a
//! server address needs): `ldap://host[:port]` or `ldaps://host[:port]`.

use std::fmt;
use std::str::FromStr;

use rustls_pki_types::ServerName;
use thiserror::Error;

/// How the connection to a server starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Plain LDAP, upgraded with StartTLS when configured.
    Ldap,
    /// TLS from the first byte.
    Ldaps,
}

/// One configured directory server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub scheme: Scheme,
    pub host: String,
    pub port: u16,
}

/// Why a server URL was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EndpointError {
    #[error("not a URL: {0}")]
    NotAUrl(String),
    #[error("scheme must be ldap:// or ldaps://, not {0}://")]
    Scheme(String),
    #[error("no host")]
    NoHost,
    #[error("a server URL takes no path, query or credentials")]
    Extra,
    #[error("host `{0}` is not usable as a TLS server name")]
    ServerName(String),
}

impl FromStr for Endpoint {
    type Err = EndpointError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let url = url::Url::parse(s).map_err(|e| EndpointError::NotAUrl(e.to_string()))?;
        let scheme = match url.scheme() {
            "ldap" => Scheme::Ldap,
            "ldaps" => Scheme::Ldaps,
            other => return Err(EndpointError::Scheme(other.to_owned())),
        };
        let host = match url.host() {
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            Some(h) => h.to_string(),
            None => return Err(EndpointError::NoHost),
        };
        if host.is_empty() {
            return Err(EndpointError::NoHost);
        }
        if !matches!(url.path(), "" | "/")
            || url.query().is_some()
            || url.fragment().is_some()
            || !url.username().is_empty()
            || url.password().is_some()
        {
            return Err(EndpointError::Extra);
        }
        let port = url.port().unwrap_or(match scheme {
            Scheme::Ldap => 389,
            Scheme::Ldaps => 636,
        });
        let endpoint = Endpoint { scheme, host, port };
        endpoint.server_name()?;
        Ok(endpoint)
    }
}

impl Endpoint {
    /// The name the server's certificate must carry.
    pub fn server_name(&self) -> Result<ServerName<'static>, EndpointError> {
        ServerName::try_from(self.host.clone())
            .map_err(|_| EndpointError::ServerName(self.host.clone()))
    }

    /// `host:port`, bracketing IPv6 literals.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.scheme {
            Scheme::Ldap => "ldap",
            Scheme::Ldaps => "ldaps",
        };
        write!(f, "{scheme}://{}", self.authority())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_with_default_ports() {
        let e: Endpoint = "ldaps://dc1.example.com".parse().unwrap();
        assert_eq!((e.scheme, e.port), (Scheme::Ldaps, 636));
        let e: Endpoint = "ldap://dc2.example.com:3389/".parse().unwrap();
        assert_eq!(
            (e.scheme, e.host.as_str(), e.port),
            (Scheme::Ldap, "dc2.example.com", 3389)
        );
        let e: Endpoint = "ldap://[::1]:1389".parse().unwrap();
        assert_eq!(e.authority(), "[::1]:1389");
        assert_eq!(e.to_string(), "ldap://[::1]:1389");
        assert!(e.server_name().is_ok());
    }

    #[test]
    fn rejects_other_urls() {
        assert!(matches!(
            "http://x".parse::<Endpoint>(),
            Err(EndpointError::Scheme(_))
        ));
        assert!(matches!(
            "ldap://x/dc=example,dc=com".parse::<Endpoint>(),
            Err(EndpointError::Extra)
        ));
        assert!(matches!(
            "ldap://user:pw@x".parse::<Endpoint>(),
            Err(EndpointError::Extra)
        ));
        assert!(matches!(
            "dc1.example.com:389".parse::<Endpoint>(),
            Err(EndpointError::Scheme(_)) | Err(EndpointError::NotAUrl(_))
        ));
    }
}
