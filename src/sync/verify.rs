//! Scheduled verification: a full pass that checks the base DN's
//! fingerprint, counts organizations and accounts, finds objects the change
//! tracking does not report ([`super::drift`]), and finds sign-in ID
//! values that belong to more than one entry. Those users cannot sign in
//! (their login is ambiguous), and the operator should know before they try.
//! Values compare under each sign-in attribute's equality rule from the
//! directory's schema ([`super::rules`]), across attributes
//! ([`super::shared`]), as the sign-in filter compares them.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use super::drift::Walked;
use super::error::record_run;
use super::error::SyncError;
use super::export::Exporter;
use super::render::Item;
use super::rules::sign_in_rules;
pub use super::shared::SharedValue;
use super::shared::SharedValues;
use super::snapshot::{line_hash, Kind};

/// What a verification found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub orgs: usize,
    pub accounts: usize,
    pub shared_sign_in_values: Vec<SharedValue>,
    /// Objects the directory's change tracking does not report (see
    /// [`super::drift`]), the most for one kept snapshot; changes pulls
    /// from such a snapshot compare the whole directory.
    pub untracked_objects: usize,
}

/// Runs one verification. `sign_in` are the `[signin]` attributes: a value
/// is shared when one login matches it on two entries, in the same
/// attribute or not (a login matches any of them), under the directory's
/// equality rules.
pub async fn verify(exporter: &Exporter, sign_in: &[String]) -> Result<Report, SyncError> {
    let result = verification(exporter, sign_in).await;
    record_run(exporter.metrics(), "verify", &result);
    if let Ok(report) = &result {
        exporter.metrics().verified(
            report.orgs,
            report.accounts,
            report.shared_sign_in_values.len(),
        );
    }
    result
}

async fn verification(exporter: &Exporter, sign_in: &[String]) -> Result<Report, SyncError> {
    let mut report = Report::default();
    let (tx, mut rx) = mpsc::channel::<Item>(256);
    let count = async move {
        let (mut orgs, mut accounts) = (0, 0);
        let mut walked = Walked::new();
        while let Some(item) = rx.recv().await {
            match item.kind {
                Kind::Org => orgs += 1,
                Kind::Account => accounts += 1,
            }
            walked.insert(item.id, line_hash(&item.line));
        }
        (orgs, accounts, walked)
    };
    let (walked_ok, (orgs, accounts, walked)) = tokio::join!(exporter.walk(tx), count);
    walked_ok?;
    report.orgs = orgs;
    report.accounts = accounts;
    report.untracked_objects = exporter.check_drift(&walked).await?;
    drop(walked);

    let rules = sign_in_rules(exporter.reader(), sign_in).await;
    debug!(rules = ?rules.describe(), "sign-in attributes compare by these rules");
    let mut shared = SharedValues::new(rules);
    exporter
        .scan_accounts(sign_in, |entry| shared.add(entry))
        .await?;
    report.shared_sign_in_values = shared.finish();
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
    let report = match verify(&schedule.exporter, &schedule.sign_in).await {
        Ok(report) => report,
        Err(e) => return error!(error = %e, "scheduled verification failed"),
    };
    if report.untracked_objects > 0 {
        warn!(
            untracked = report.untracked_objects,
            "the directory's change tracking does not report some objects (restored from a \
             backup?): the next changes pull compares the whole directory"
        );
    }
    if report.shared_sign_in_values.is_empty() {
        info!(
            orgs = report.orgs,
            accounts = report.accounts,
            "scheduled verification passed"
        );
        return;
    }
    for s in &report.shared_sign_in_values {
        warn!(
            attribute = %s.attribute,
            value = %s.value,
            rule = s.rule,
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
