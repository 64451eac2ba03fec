//! Configuration parsing: `Config::parse` of arbitrary TOML text. Every
//! text is either a configuration or a list of problems, each naming its
//! key; a configuration builds what `ldapgate run` builds from it first.
#![no_main]

use std::path::Path;

use ldapgate::auth::accounts::AccountClasses;
use ldapgate::config::{Config, ConfigError};
use ldapgate::ldap::dn::Dn;
use ldapgate::session::policy::Policy;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if names_a_special_file(text) {
        return;
    }
    match Config::parse(text, Path::new("fuzz.toml")) {
        Ok(config) => {
            assert!(!config.directories.is_empty(), "valid, with no directory");
            for tenant in &config.directories {
                let base = &tenant.directory.base_dn;
                assert_eq!(Dn::parse(base.as_str()).as_ref(), Ok(base));
                let policy = Policy::from_config(&config.server, tenant);
                assert!(policy.dn_scope.current().contains(base));
                let _ = AccountClasses::from_config(tenant).filter();
            }
            let _ = format!("{config:?}");
        }
        Err(ConfigError::Invalid(problems)) => {
            assert!(!problems.is_empty(), "invalid, with no problem named");
            for p in &problems {
                assert!(!p.key.is_empty(), "a problem without its key: {p}");
            }
        }
        Err(e) => assert!(!e.problems().is_empty()),
    }
});

/// Validation reads `bind_password_file` and looks at the paths it is
/// given. An operator's file names real files; a fuzzer's may name
/// /dev/zero or /proc/kmsg, which read forever or block: such inputs are
/// left out (by every string in the text, however the key is spelt).
fn names_a_special_file(text: &str) -> bool {
    let Ok(value) = text.parse::<toml::Table>() else {
        return false; // not TOML: refused before any file is touched
    };
    fn any(v: &toml::Value) -> bool {
        match v {
            toml::Value::String(s) => special(s),
            toml::Value::Array(a) => a.iter().any(any),
            toml::Value::Table(t) => t.values().any(any),
            _ => false,
        }
    }
    value.values().any(any)
}

fn special(path: &str) -> bool {
    let Ok(real) = std::fs::canonicalize(path) else {
        return false;
    };
    let Ok(meta) = std::fs::metadata(&real) else {
        return true;
    };
    ["/dev", "/proc", "/sys", "/run"]
        .iter()
        .any(|p| real.starts_with(p))
        || !(meta.is_file() || meta.is_dir())
        || meta.len() > 1 << 20
}
