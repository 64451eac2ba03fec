//! Connections bound as the service account, for ldapgate's own searches
//! (sign-in resolution, sync). They never reach client sessions.

use std::sync::Arc;
use std::time::Duration;

use ldap3_proto::proto::LdapFilter;

use super::connection::ExchangeError;
use super::pool::ConnStash;
use super::requests::SearchReply;
use super::{NoServerAvailable, UpstreamConn, UpstreamPool};
use crate::config::ServiceAccount;

/// Idle service-account connections kept.
const IDLE: usize = 8;

/// Why a service-account connection could not be had.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Unavailable(#[from] NoServerAvailable),
    #[error("service account bind as {dn} failed with result {code}: {diagnostic}")]
    Bind {
        dn: String,
        code: i64,
        diagnostic: String,
    },
    #[error("{server}: {source}")]
    Exchange {
        server: String,
        source: ExchangeError,
    },
}

/// Hands out connections bound as the service account (anonymous when
/// none is configured).
pub struct ServiceConnections {
    pool: Arc<UpstreamPool>,
    account: Option<ServiceAccount>,
    idle: ConnStash,
}

impl ServiceConnections {
    pub fn new(pool: Arc<UpstreamPool>, account: Option<ServiceAccount>) -> Self {
        ServiceConnections {
            pool,
            account,
            idle: ConnStash::new(IDLE),
        }
    }

    pub fn pool(&self) -> &Arc<UpstreamPool> {
        &self.pool
    }

    /// A bound connection: an idle one, or a new one bound now.
    pub async fn get(
        &self,
        limit: Duration,
        max_message: usize,
    ) -> Result<UpstreamConn, ServiceError> {
        if let Some(conn) = self.idle.take() {
            return Ok(conn);
        }
        let mut conn = self.pool.checkout().await?;
        if let Some(account) = &self.account {
            let dn = account.dn.to_string();
            let reply = conn
                .bind_simple(&dn, account.password.expose(), limit, max_message)
                .await
                .map_err(|source| ServiceError::Exchange {
                    server: self.pool.server_name(conn.server),
                    source,
                })?;
            if reply.code != 0 {
                return Err(ServiceError::Bind {
                    dn,
                    code: reply.code,
                    diagnostic: reply.diagnostic,
                });
            }
        }
        Ok(conn)
    }

    /// Returns a connection after a request completed cleanly.
    pub fn put(&self, conn: UpstreamConn) {
        self.idle.put(conn);
    }

    /// [`UpstreamConn::read_base`] on a service connection.
    pub async fn read_base(
        &self,
        dn: &str,
        filter: LdapFilter,
        attrs: Vec<String>,
        limit: Duration,
        max_message: usize,
    ) -> Result<SearchReply, ServiceError> {
        let mut conn = self.get(limit, max_message).await?;
        match conn.read_base(dn, filter, attrs, limit, max_message).await {
            Ok(reply) => {
                self.put(conn);
                Ok(reply)
            }
            Err(source) => Err(ServiceError::Exchange {
                server: self.pool.server_name(conn.server),
                source,
            }),
        }
    }
}
