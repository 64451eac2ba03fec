//! `[metrics]`: the plain-HTTP endpoint for Prometheus and health probes.

use std::net::SocketAddr;

use super::http::{HttpLimits, RawHttpLimits};
use super::raw::RawMetrics;
use super::Validator;

/// `[metrics]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsConfig {
    /// `/metrics`, `/healthz` and `/readyz` are served here.
    pub listen: SocketAddr,
    /// `max_connections` (default 64), `header_timeout`, `body_timeout`.
    pub limits: HttpLimits,
}

impl Validator {
    pub(super) fn metrics(&mut self, r: &RawMetrics) -> Option<MetricsConfig> {
        let Some(listen) = &r.listen else {
            self.problem(
                "metrics.listen",
                "required in [metrics]: an address:port like \"127.0.0.1:9389\"",
            );
            return None;
        };
        let addrs = self.addrs("metrics.listen", std::slice::from_ref(listen));
        let limits = self.http_limits(
            "metrics",
            &RawHttpLimits {
                max_connections: r.max_connections,
                header_timeout: &r.header_timeout,
                body_timeout: &r.body_timeout,
            },
        );
        addrs
            .first()
            .map(|&listen| MetricsConfig { listen, limits })
    }
}
