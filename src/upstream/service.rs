//! Connections bound as the service account, for ldapgate's own searches
//! (sign-in resolution, identities of bind DNs, sync). They never reach
//! client sessions.

use std::sync::Arc;

use ldap3_proto::proto::LdapFilter;

use super::checkin::Identity;
use super::pool::Lease;
use super::requests::SearchReply;
use super::{NoServerAvailable, UpstreamError, UpstreamPool};

/// Why a request as the service account failed.
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
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
}

impl UpstreamPool {
    /// A connection bound as the service account (anonymous when none is
    /// configured): an idle one, or a new one bound now.
    pub async fn service_lease(self: &Arc<Self>) -> Result<Lease, ServiceError> {
        if let Some(lease) = self.idle_service() {
            return Ok(lease);
        }
        let mut lease = self.session_lease().await?.for_service();
        if let Some(account) = self.account() {
            let dn = account.dn.to_string();
            let reply = lease.bind_simple(&dn, account.password.expose()).await?;
            if reply.code != 0 {
                return Err(ServiceError::Bind {
                    dn,
                    code: reply.code,
                    diagnostic: reply.diagnostic,
                });
            }
        }
        lease.set_identity(Identity::ServiceAccount);
        Ok(lease)
    }

    /// [`super::UpstreamConn::read_base`] as the service account.
    pub async fn read_base(
        self: &Arc<Self>,
        dn: &str,
        filter: LdapFilter,
        attrs: Vec<String>,
    ) -> Result<SearchReply, ServiceError> {
        let mut lease = self.service_lease().await?;
        Ok(lease.read_base(dn, filter, attrs).await?)
    }
}
