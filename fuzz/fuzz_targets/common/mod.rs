//! What several targets build from: a policy from a small configuration,
//! and a directory schema for DNs compared by it.
#![allow(dead_code)] // each target uses part of it

use std::path::Path;

use ldapgate::config::Config;
use ldapgate::ldap::dn_schema::DnSchema;
use ldapgate::ldap::schema::Schema;
use ldapgate::session::policy::Policy;

/// A configuration as small as `ldapgate check-config` accepts, with a
/// service account outside base_dn; `{base}` and `{rewrite}` vary.
const CONFIG: &str = r#"
[server]
ldap_listen = ["127.0.0.1:1389"]
[directory]
servers = ["ldaps://127.0.0.1:636"]
base_dn = "{base}"
bind_dn = "cn=admin,dc=example,dc=com"
bind_password_file = "{password_file}"
[signin]
rewrite_ldap_binds = {rewrite}
"#;

/// The policy of that configuration with `base_dn`.
pub fn policy(base_dn: &str, rewrite: bool) -> Policy {
    let password_file = std::env::temp_dir().join("ldapgate-fuzz-bind-password");
    std::fs::write(&password_file, "fuzz\n").expect("the bind password file is written");
    let text = CONFIG
        .replace("{password_file}", password_file.to_str().unwrap())
        .replace("{base}", base_dn)
        .replace("{rewrite}", if rewrite { "true" } else { "false" });
    let config = Config::parse(&text, Path::new("fuzz.toml"))
        .unwrap_or_else(|e| panic!("the fuzz configuration is invalid: {e}"));
    let tenant = config
        .only_directory()
        .unwrap_or_else(|e| panic!("the fuzz configuration has one directory: {e}"));
    Policy::from_config(&config.server, tenant)
}

/// slapd's core naming types and three a site defines (case-exact,
/// numeric, and one inheriting case-exact), as in the DN schema tests.
pub const SCHEMA: [&str; 8] = [
    "( 2.5.4.41 NAME 'name' EQUALITY caseIgnoreMatch \
     SYNTAX 1.3.6.1.4.1.1466.115.121.1.15{32768} )",
    "( 2.5.4.3 NAME ( 'cn' 'commonName' ) SUP name )",
    "( 2.5.4.11 NAME ( 'ou' 'organizationalUnitName' ) SUP name )",
    "( 0.9.2342.19200300.100.1.25 NAME ( 'dc' 'domainComponent' ) \
     EQUALITY caseIgnoreIA5Match SYNTAX 1.3.6.1.4.1.1466.115.121.1.26 SINGLE-VALUE )",
    "( 0.9.2342.19200300.100.1.1 NAME ( 'uid' 'userid' ) EQUALITY caseIgnoreMatch \
     SYNTAX 1.3.6.1.4.1.1466.115.121.1.15{256} )",
    "( 1.3.6.1.4.1.32473.1.1 NAME ( 'gateTeam' 'gateTeamName' ) \
     EQUALITY caseExactMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )",
    "( 1.3.6.1.4.1.32473.1.2 NAME ( 'gateUnit' 'gateUnitNumber' ) \
     EQUALITY numericStringMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.36 )",
    "( 1.3.6.1.4.1.32473.1.3 NAME 'gateSub' SUP gateTeam )",
];

pub fn dn_schema() -> DnSchema {
    let (schema, errors) = Schema::parse(SCHEMA);
    assert!(errors.is_empty(), "{errors:?}");
    DnSchema::from_schema(&schema)
}
