//! What ships beside the binary: the systemd unit, its sandboxing rated by
//! systemd itself, and the Grafana dashboard, whose queries must name
//! metrics the daemon exports.

mod common;

use common::*;
use std::process::Command;

#[test]
fn the_unit_is_rated_2_0_or_lower_by_systemd_analyze_security() {
    let analyze = require_program("systemd-analyze", "systemd");
    let unit = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/ldapgate.service");
    let out = Command::new(analyze)
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&unit)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no overall rating in:\n{}", show(&out)));
    let score: f64 = line
        .split(':')
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the score from `{line}`"));
    assert!(score <= 2.0, "{line}\n{text}");
    // What the hardening must never lose, whatever the score.
    let unit_text = std::fs::read_to_string(&unit).unwrap();
    for line in [
        "Type=notify",
        "User=ldapgate",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "LoadCredential=bind_password:",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
    ] {
        assert!(
            unit_text.lines().any(|l| l.starts_with(line)),
            "{line} missing"
        );
    }
}

#[test]
fn the_dashboard_queries_only_metrics_the_daemon_exports() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/grafana-dashboard.json");
    let dashboard: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).expect("the dashboard is JSON");
    let families: Vec<&str> = ldapgate::metrics::metrics()
        .names()
        .iter()
        .map(String::as_str)
        .collect();
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.len() >= 6, "the graphs an operator looks at first");
    let mut used = std::collections::BTreeSet::new();
    for panel in panels {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            let names: Vec<&str> = expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("ldapgate_"))
                .collect();
            assert!(!names.is_empty(), "{expr}");
            for name in names {
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s))
                    .filter(|f| families.contains(f))
                    .unwrap_or(name);
                assert!(
                    families.contains(&family),
                    "panel {:?} queries {name}, which ldapgate does not export",
                    panel["title"]
                );
                used.insert(family.to_owned());
            }
        }
    }
    for first in [
        "ldapgate_auth_total",
        "ldapgate_operations_total",
        "ldapgate_operation_duration_seconds",
        "ldapgate_upstream_up",
        "ldapgate_ratelimit_rejections_total",
        "ldapgate_certificate_expiry_seconds",
        "ldapgate_sync_last_success_timestamp_seconds",
    ] {
        assert!(used.contains(first), "no panel shows {first}");
    }
}
