//! The Prometheus alerting rules shipped in `config/ldapgate-alerts.yml`:
//! valid for `promtool check rules`, passing their unit tests in
//! `config/ldapgate-alerts.test.yml` under `promtool test rules`, each
//! alert tested both firing and quiet, and naming only metrics the daemon
//! exports.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

fn config_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("config")
        .join(name)
}

fn promtool(args: &[&str], file: &Path) {
    let promtool = require_program("promtool", "prometheus");
    let out = Command::new(promtool)
        .args(args)
        .arg(file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool {} {}\n{}",
        args.join(" "),
        file.display(),
        show(&out)
    );
}

#[test]
fn promtool_accepts_the_rules() {
    promtool(&["check", "rules"], &config_file("ldapgate-alerts.yml"));
}

#[test]
fn the_rules_pass_their_promtool_unit_tests() {
    promtool(&["test", "rules"], &config_file("ldapgate-alerts.test.yml"));
}

/// The value after `key:` on a line, if the line is that key.
fn value_of<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.trim()
        .strip_prefix(key)
        .and_then(|rest| rest.strip_prefix(':'))
        .map(str::trim)
}

#[test]
fn every_alert_is_tested_firing_and_quiet() {
    let rules = std::fs::read_to_string(config_file("ldapgate-alerts.yml")).unwrap();
    let tests = std::fs::read_to_string(config_file("ldapgate-alerts.test.yml")).unwrap();
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| value_of(l.trim().strip_prefix("- ")?, "alert"))
        .collect();
    assert!(alerts.len() >= 10, "{alerts:?}");
    // Each `alertname:` line of a test case is followed by its
    // `exp_alerts:`, empty (`[]`) when the alert must not fire.
    let mut firing = Vec::new();
    let mut quiet = Vec::new();
    let mut lines = tests.lines();
    while let Some(line) = lines.next() {
        let Some(name) = value_of(line, "alertname") else {
            continue;
        };
        let expected = lines
            .next()
            .and_then(|l| value_of(l, "exp_alerts"))
            .unwrap_or_else(|| panic!("no exp_alerts after the case of {name}"));
        if expected == "[]" {
            quiet.push(name);
        } else {
            firing.push(name);
        }
    }
    for alert in &alerts {
        assert!(firing.contains(alert), "no case where {alert} fires");
        assert!(quiet.contains(alert), "no case where {alert} stays quiet");
    }
    for tested in firing.iter().chain(&quiet) {
        assert!(alerts.contains(tested), "a case tests {tested}, not a rule");
    }
}

#[test]
fn the_rules_name_only_metrics_the_daemon_exports() {
    let rules = std::fs::read_to_string(config_file("ldapgate-alerts.yml")).unwrap();
    let families = ldapgate::metrics::metrics().names();
    let mut named = std::collections::BTreeSet::new();
    for line in rules.lines() {
        // Comments may name metrics in prose; expressions are what counts.
        let code = line.split('#').next().unwrap_or_default();
        named.extend(
            code.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .filter(|w| w.starts_with("ldapgate_")),
        );
    }
    assert!(named.len() >= 8, "{named:?}");
    for name in named {
        assert!(
            families.iter().any(|f| f == name),
            "the rules name {name}, which ldapgate does not export"
        );
    }
}
