//! Scheduled verification: a full pass that checks the base DN's
//! fingerprint, counts organizations and accounts, and finds sign-in ID
//! values that belong to more than one entry. Those users cannot sign in
//! (their login is ambiguous), and the operator should know before they try.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{error, info, warn};

use super::error::record_run;
use super::export::{Exporter, Item, SyncError};
use super::snapshot::Kind;
use crate::metrics::metrics;

/// A sign-in ID value found on several entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SharedValue {
    pub attribute: String,
    pub value: String,
    pub dns: Vec<String>,
}

/// What a verification found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub orgs: usize,
    pub accounts: usize,
    pub shared_sign_in_values: Vec<SharedValue>,
}

fn key(value: &str) -> u64 {
    let digest = Sha256::digest(value.trim().to_lowercase().as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// Runs one verification. `sign_in` are the `[signin]` attributes: a value
/// is shared when two entries carry it, in the same attribute or not (a
/// login matches any of them).
pub async fn verify(exporter: &Exporter, sign_in: &[String]) -> Result<Report, SyncError> {
    let result = verification(exporter, sign_in).await;
    record_run("verify", &result);
    if let Ok(report) = &result {
        let m = metrics();
        m.sync_objects
            .with_label_values(&["org"])
            .set(report.orgs as i64);
        m.sync_objects
            .with_label_values(&["account"])
            .set(report.accounts as i64);
        m.sync_shared_sign_in_values
            .set(report.shared_sign_in_values.len() as i64);
    }
    result
}

async fn verification(exporter: &Exporter, sign_in: &[String]) -> Result<Report, SyncError> {
    let mut report = Report::default();
    let (tx, mut rx) = mpsc::channel::<Item>(256);
    let count = async move {
        let (mut orgs, mut accounts) = (0, 0);
        while let Some(item) = rx.recv().await {
            match item.kind {
                Kind::Org => orgs += 1,
                Kind::Account => accounts += 1,
            }
        }
        (orgs, accounts)
    };
    let (walked, (orgs, accounts)) = tokio::join!(exporter.walk(tx), count);
    walked?;
    report.orgs = orgs;
    report.accounts = accounts;

    // Values are kept as 8-byte hashes with the index of the first entry's
    // DN, so a large directory costs little memory.
    let mut dns: Vec<String> = Vec::new();
    let mut first_seen: HashMap<u64, u32> = HashMap::new();
    let mut shared: HashMap<u64, SharedValue> = HashMap::new();
    exporter
        .scan_accounts(sign_in, |entry| {
            let index = u32::try_from(dns.len()).unwrap_or(u32::MAX);
            dns.push(entry.dn.clone());
            let mut own: Vec<u64> = Vec::new();
            for attr in &entry.attributes {
                if !sign_in.iter().any(|a| a.eq_ignore_ascii_case(&attr.atype)) {
                    continue;
                }
                for v in &attr.vals {
                    let Ok(text) = std::str::from_utf8(v) else {
                        continue;
                    };
                    let k = key(text);
                    if own.contains(&k) {
                        continue; // the same person by two attributes
                    }
                    own.push(k);
                    match first_seen.get(&k) {
                        None => {
                            first_seen.insert(k, index);
                        }
                        Some(&first) => {
                            let s = shared.entry(k).or_insert_with(|| SharedValue {
                                attribute: attr.atype.clone(),
                                value: text.to_owned(),
                                dns: vec![dns.get(first as usize).cloned().unwrap_or_default()],
                            });
                            s.dns.push(entry.dn.clone());
                        }
                    }
                }
            }
        })
        .await?;
    let mut shared: Vec<SharedValue> = shared.into_values().collect();
    shared.sort_by(|a, b| (&a.attribute, &a.value).cmp(&(&b.attribute, &b.value)));
    report.shared_sign_in_values = shared;
    Ok(report)
}

/// What scheduled verification runs with: replaced on reload.
pub struct Schedule {
    pub exporter: Arc<Exporter>,
    /// The `[signin]` attributes.
    pub sign_in: Vec<String>,
    /// Zero: no scheduled verification.
    pub every: Duration,
}

/// Runs [`verify`] every `every` of the schedule in force and logs what it
/// found. A new schedule with the same interval keeps the timer running (a
/// reload does not postpone verification); a new interval restarts it.
pub fn spawn_scheduled(
    mut schedule: watch::Receiver<Arc<Schedule>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = schedule.borrow().every;
        let mut next = Instant::now() + every;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(next), if !every.is_zero() => {
                    let current = schedule.borrow().clone();
                    run_scheduled(&current).await;
                    next = Instant::now() + every;
                }
                changed = schedule.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let now = schedule.borrow().every;
                    if now != every {
                        every = now;
                        next = Instant::now() + every;
                    }
                }
            }
        }
    })
}

/// One scheduled verification, logged.
async fn run_scheduled(schedule: &Schedule) {
    match verify(&schedule.exporter, &schedule.sign_in).await {
        Ok(report) if report.shared_sign_in_values.is_empty() => {
            info!(
                orgs = report.orgs,
                accounts = report.accounts,
                "scheduled verification passed"
            );
        }
        Ok(report) => {
            for s in &report.shared_sign_in_values {
                warn!(
                    attribute = %s.attribute,
                    value = %s.value,
                    entries = ?s.dns,
                    "sign-in ID value shared by several entries: these users cannot sign in with it"
                );
            }
            warn!(
                orgs = report.orgs,
                accounts = report.accounts,
                shared = report.shared_sign_in_values.len(),
                "scheduled verification found shared sign-in ID values"
            );
        }
        Err(e) => error!(error = %e, "scheduled verification failed"),
    }
}
