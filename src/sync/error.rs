//! Why a sync pull failed, and how the failure is reported: a JSON body
//! (HTTP) or an error line (NDJSON, CLI).

use crate::metrics::DirectoryMetrics;
use serde_json::{json, Value};

use super::state::StateError;
use crate::cluster::StoreError;
use crate::upstream::service::ServiceError;
use crate::upstream::UpstreamError;

/// Why a pull failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error("search under {base} failed with result {code}: {diagnostic}")]
    Search {
        base: String,
        code: i64,
        diagnostic: String,
    },
    #[error("base DN {0} does not exist")]
    BaseMissing(String),
    #[error(
        "base DN {base_dn} now resolves to entry {found}, not the recorded {recorded}; \
         sync is blocked until an operator checks the configuration and runs `ldapgate sync rearm`"
    )]
    BaseDnMoved {
        base_dn: String,
        recorded: String,
        found: String,
    },
    #[error(transparent)]
    State(#[from] StateError),
    #[error("{0}; sync state is shared through it, so pulls wait for it (retry later)")]
    Store(#[from] StoreError),
    #[error("the consumer went away")]
    ConsumerGone,
    #[error("cookie {0:?} names no kept snapshot; run a full pull")]
    UnknownCookie(String),
    #[error(
        "sync protection: the change set deletes {account_deletes} accounts and {org_deletes} \
         organizations, over the configured limits; review it and pull again with approve={approval}"
    )]
    Protection {
        account_deletes: usize,
        org_deletes: usize,
        approval: String,
    },
}

impl SyncError {
    /// The `error` value of the JSON error line.
    pub fn code(&self) -> &'static str {
        match self {
            SyncError::BaseDnMoved { .. } => "base_dn_moved",
            SyncError::Service(_) | SyncError::Upstream(_) => "directory_unavailable",
            SyncError::Search { .. } | SyncError::BaseMissing(_) => "directory_error",
            SyncError::State(_) => "state_error",
            SyncError::Store(_) => "store_unavailable",
            SyncError::ConsumerGone => "consumer_gone",
            SyncError::UnknownCookie(_) => "cookie_unknown",
            SyncError::Protection { .. } => "sync_protection",
        }
    }

    /// The JSON body or error line that reports this error.
    pub fn to_json(&self) -> Value {
        let mut v = json!({ "error": self.code(), "detail": self.to_string() });
        if let SyncError::Protection {
            account_deletes,
            org_deletes,
            approval,
        } = self
        {
            v["account_deletes"] = json!(account_deletes);
            v["org_deletes"] = json!(org_deletes);
            v["approval"] = json!(approval);
        }
        v
    }
}

/// Counts a sync run of `kind` ("full", "changes", "verify") in the
/// metrics, by its result: "success" or the error's code.
pub fn record_run<T>(metrics: &DirectoryMetrics, kind: &str, result: &Result<T, SyncError>) {
    let outcome = match result {
        Ok(_) => "success",
        Err(e) => e.code(),
    };
    metrics.sync_run(kind, outcome);
}
