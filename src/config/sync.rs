//! `[sync]` and `[sync.fields]`: pulls of organizations and accounts.

use std::path::PathBuf;
use std::time::Duration;

use super::raw::RawSync;
use super::Validator;

/// The IDaaS fields and the attributes they come from, by default.
pub const DEFAULT_FIELDS: [(&str, &str); 5] = [
    ("username", "uid"),
    ("display_name", "cn"),
    ("email", "mail"),
    ("mobile", "mobile"),
    ("employee_id", "employeeNumber"),
];

/// How a changes pull finds what changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeTracking {
    /// The directory's own change tracking where it has one (syncrepl on
    /// OpenLDAP, uSNChanged on AD), the snapshot difference otherwise.
    Auto,
    /// Always the difference against the last snapshot (a full walk).
    Snapshot,
}

/// `[sync]`.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// Where the base-DN fingerprint and sync state are kept.
    pub state_dir: PathBuf,
    pub page_size: u32,
    pub max_account_deletes: usize,
    pub max_org_deletes: usize,
    /// Zero: no scheduled verification.
    pub verify_interval: Duration,
    pub change_tracking: ChangeTracking,
    /// (IDaaS field, LDAP attribute), in field order.
    pub fields: Vec<(String, String)>,
}

impl Validator {
    pub(super) fn sync(&mut self, r: &RawSync) -> SyncConfig {
        if r.state_dir.trim().is_empty() {
            self.problem("sync.state_dir", "required: a directory ldapgate may write");
        }
        let fields: Vec<(String, String)> = match &r.fields {
            Some(map) => map.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            None => DEFAULT_FIELDS
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        for (field, attr) in &fields {
            let ok = attr.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && attr.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
            if !ok {
                self.problem(
                    &format!("sync.fields.{field}"),
                    format!("`{attr}` is not an attribute name"),
                );
            }
        }
        let change_tracking = match r.change_tracking.as_str() {
            "auto" => ChangeTracking::Auto,
            "snapshot" => ChangeTracking::Snapshot,
            other => {
                self.problem(
                    "sync.change_tracking",
                    format!("`{other}` is not one of auto, snapshot"),
                );
                ChangeTracking::Auto
            }
        };
        SyncConfig {
            change_tracking,
            state_dir: PathBuf::from(&r.state_dir),
            page_size: self.range("sync.page_size", r.page_size, 1, 100_000) as u32,
            max_account_deletes: self.range(
                "sync.max_account_deletes",
                r.max_account_deletes,
                0,
                10_000_000,
            ),
            max_org_deletes: self.range("sync.max_org_deletes", r.max_org_deletes, 0, 10_000_000),
            verify_interval: self.duration("sync.verify_interval", &r.verify_interval, true),
            fields,
        }
    }
}
