//! Unit tests of configuration parsing: defaults, every problem named by
//! its key, both forms of directories.

use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("test.toml"))
}

fn keys(err: ConfigError) -> Vec<String> {
    match err {
        ConfigError::Invalid(p) => p.into_iter().map(|p| p.key).collect(),
        other => panic!("expected Invalid, got {other}"),
    }
}

const MINIMAL: &str = r#"
    [server]
    ldap_listen = ["127.0.0.1:1389"]
    [directory]
    servers = ["ldap://127.0.0.1:389"]
    starttls = false
    base_dn = "dc=example,dc=com"
"#;

#[test]
fn minimal_config_gets_contract_defaults() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.server.max_connections, 10_000);
    assert_eq!(c.server.idle_timeout, Duration::from_secs(900));
    assert_eq!(c.server.max_message_bytes, 1_048_576);
    assert_eq!(c.server.max_message_bytes_before_bind, 65_536);
    assert_eq!(c.server.pdu_timeout, Duration::from_secs(30));
    assert_eq!(c.server.send_timeout, Duration::from_secs(30));
    assert_eq!(c.server.unfinished_pdu_budget, 64 << 20);
    assert_eq!(c.directories[0].directory.pool_size, 16);
    assert_eq!(
        c.directories[0].directory.operation_timeout,
        Duration::from_secs(10)
    );
    assert_eq!(
        c.directories[0].directory.max_message_bytes,
        16 * 1024 * 1024
    );
    assert_eq!(c.directories[0].directory.kind, DirectoryKind::OpenLdap);
    assert!(!c.directories[0].directory.every_leg_encrypted());
}

#[test]
fn the_unfinished_pdu_budget_holds_one_largest_pdu() {
    let small_budget = MINIMAL.replace(
        "[server]",
        "[server]\nmax_message_bytes = 2097152\nunfinished_pdu_budget = 1048576",
    );
    assert_eq!(
        keys(parse(&small_budget).unwrap_err()),
        ["server.unfinished_pdu_budget"]
    );
    let smaller = MINIMAL.replace("[server]", "[server]\nmax_message_bytes = 32768");
    let c = parse(&smaller).unwrap();
    assert_eq!(
        c.server.max_message_bytes_before_bind, 32768,
        "never above max_message_bytes"
    );
}

#[test]
fn every_problem_is_reported_with_its_key() {
    let err = parse(
        r#"
        [server]
        ldap_listen = ["nope"]
        ldaps_listen = ["127.0.0.1:1636"]
        allowed_clients = ["10.0.0.0/8", "banana"]
        idle_timeout = "soon"
        max_message_bytes = 10
        [directory]
        kind = "novell"
        servers = ["http://x"]
        pins = ["sha256:00"]
        base_dn = "example.com"
        bind_dn = "cn=svc,dc=example,dc=com"
    "#,
    )
    .unwrap_err();
    let keys = keys(err);
    for k in [
        "server.ldap_listen[0]",
        "server.tls_cert",
        "server.allowed_clients[1]",
        "server.idle_timeout",
        "server.max_message_bytes",
        "directory.kind",
        "directory.servers[0]",
        "directory.pins[0]",
        "directory.base_dn",
        "directory.bind_password_file",
    ] {
        assert!(keys.iter().any(|got| got == k), "missing {k} in {keys:?}");
    }
}

#[test]
fn unknown_keys_and_bad_toml_are_errors() {
    let err = parse("[server]\nldap_lisen = []\n[directory]\n").unwrap_err();
    assert!(err.to_string().contains("ldap_lisen"), "{err}");
    assert!(matches!(parse("[server"), Err(ConfigError::Syntax { .. })));
    assert_eq!(keys(parse("[server]\n").unwrap_err()), vec!["directory"]);
}

#[test]
fn password_file_is_read_and_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pw");
    std::fs::write(&file, "s3cret\n").unwrap();
    let text = format!(
        "{MINIMAL}\nbind_dn = \"cn=svc,dc=example,dc=com\"\nbind_password_file = \"{}\"\n",
        file.display()
    );
    let c = parse(&text).unwrap();
    let account = c.directories[0].directory.service_account.clone().unwrap();
    assert_eq!(account.password.expose(), "s3cret");
    assert!(!format!("{account:?}").contains("s3cret"));
    std::fs::write(&file, "").unwrap();
    assert_eq!(
        keys(parse(&text).unwrap_err()),
        vec!["directory.bind_password_file"]
    );
}

#[test]
fn single_addresses_are_accepted_as_allowed_clients() {
    let text = MINIMAL.replace(
        "[directory]",
        "allowed_clients = [\"192.168.1.7\", \"10.1.2.3/8\"]\n[directory]",
    );
    let c = parse(&text).unwrap();
    assert_eq!(
        c.server.allowed_clients,
        vec![
            "192.168.1.7/32".parse::<IpNet>().unwrap(),
            "10.0.0.0/8".parse().unwrap()
        ]
    );
}

const TWO: &str = r#"
    [server]
    max_connections = 500
    [[directories]]
    name = "corp-ad"
    kind = "ad"
    ldap_listen = ["127.0.0.1:1389"]
    servers = ["ldap://127.0.0.1:389"]
    starttls = false
    base_dn = "dc=corp,dc=example"
    [directories.signin]
    attributes = ["sAMAccountName", "mail"]
    user_object_classes = ["user"]
    [directories.ratelimit]
    failures_before_lockout = 3
    [[directories]]
    name = "partners"
    ldap_listen = ["127.0.0.1:2389"]
    servers = ["ldap://127.0.0.1:3389"]
    starttls = false
    base_dn = "dc=partners,dc=example"
    [directories.sync]
    page_size = 100
"#;

#[test]
fn several_directories_each_have_their_own_settings() {
    let c = parse(TWO).unwrap();
    assert_eq!(c.server.max_connections, 500);
    let names: Vec<&str> = c.directories.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["corp-ad", "partners"]);
    let ad = c.directory("corp-ad").unwrap();
    assert_eq!(ad.directory.kind, DirectoryKind::ActiveDirectory);
    assert_eq!(ad.signin.attributes, ["sAMAccountName", "mail"]);
    assert_eq!(ad.ratelimit.failures_before_lockout, 3);
    assert_eq!(ad.ldap_listen, ["127.0.0.1:1389".parse().unwrap()]);
    let partners = c.directory("partners").unwrap();
    assert_eq!(partners.directory.kind, DirectoryKind::OpenLdap);
    assert_eq!(
        partners.signin.attributes[0], "uid",
        "defaults per directory"
    );
    assert_eq!(partners.ratelimit.failures_before_lockout, 5);
    assert_eq!(partners.sync.page_size, 100);
    assert_eq!(
        partners.sync.state_dir,
        PathBuf::from("/var/lib/ldapgate/partners"),
        "state is per directory"
    );
    assert_eq!(
        c.only_directory().unwrap_err(),
        DirectoryChoice::Ambiguous(vec!["corp-ad".into(), "partners".into()])
    );
    assert_eq!(
        c.choose_directory(Some("partners")).unwrap().name,
        "partners"
    );
    assert!(c
        .choose_directory(Some("nope"))
        .unwrap_err()
        .to_string()
        .contains("corp-ad, partners"));
}

#[test]
fn a_directory_may_limit_its_own_clients() {
    let limited = TWO.replace(
        "name = \"partners\"",
        "name = \"partners\"\nmax_connections = 50\nallowed_clients = [\"192.0.2.0/24\", \"198.51.100.7\"]",
    );
    let c = parse(&limited).unwrap();
    let partners = c.directory("partners").unwrap();
    assert_eq!(partners.max_connections, Some(50));
    assert_eq!(
        partners.allowed_clients.as_deref(),
        Some(
            &[
                "192.0.2.0/24".parse().unwrap(),
                "198.51.100.7/32".parse().unwrap()
            ][..]
        )
    );
    let ad = c.directory("corp-ad").unwrap();
    assert_eq!(
        (ad.max_connections, ad.allowed_clients.as_ref()),
        (None, None)
    );
    let bad = TWO.replace(
        "name = \"partners\"",
        "name = \"partners\"\nmax_connections = 0\nallowed_clients = [\"nope\"]",
    );
    assert_eq!(
        keys(parse(&bad).unwrap_err()),
        [
            "directories[1].allowed_clients[0]",
            "directories[1].max_connections"
        ]
    );
}

#[test]
fn the_single_directory_form_is_one_directory_named_default() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.directories.len(), 1);
    let d = c.only_directory().unwrap();
    assert_eq!(d.name, DEFAULT_NAME);
    assert_eq!(d.ldap_listen, ["127.0.0.1:1389".parse().unwrap()]);
    assert_eq!(d.sync.state_dir, PathBuf::from("/var/lib/ldapgate"));
    assert_eq!(c.choose_directory(None).unwrap().name, "default");
    let no_listen = MINIMAL.replace("ldap_listen = [\"127.0.0.1:1389\"]\n", "");
    assert_eq!(
        parse(&no_listen).unwrap().directories[0].ldap_listen,
        ["0.0.0.0:389".parse().unwrap()],
        "the default listener of earlier versions"
    );
}

#[test]
fn problems_in_an_entry_are_named_by_its_position() {
    let bad = TWO
        .replace("name = \"partners\"", "name = \"Partners!\"")
        .replace("base_dn = \"dc=corp,dc=example\"", "base_dn = \"corp\"")
        .replace(
            "failures_before_lockout = 3",
            "failures_before_lockout = -1",
        )
        .replace("page_size = 100", "page_size = 100\nbogus = 1");
    let found = keys(parse(&bad).unwrap_err());
    for k in [
        "directories[0].base_dn",
        "directories[0].ratelimit.failures_before_lockout",
        "directories[1].name",
        "directories[1].sync.bogus",
    ] {
        assert!(found.iter().any(|got| got == k), "missing {k} in {found:?}");
    }
    let unknown = TWO.replace("kind = \"ad\"", "kind = \"ad\"\nservrs = []");
    let err = parse(&unknown).unwrap_err();
    assert_eq!(keys(err), ["directories[0].servrs"]);
    let typo = TWO.replace("kind = \"ad\"", "kind = \"ad\"\nldap_listten = []");
    let err = parse(&typo).unwrap_err().to_string();
    assert!(
        err.contains("directories[0].ldap_listten: unknown key") && err.contains("ldap_listen"),
        "the entry's own keys are named among the choices: {err}"
    );
    // A value of the wrong type is named by its key.
    let typed = TWO
        .replace(
            "kind = \"ad\"",
            "kind = \"ad\"\nread_only = \"yes\"\npool_size = \"16\"",
        )
        .replace(
            "failures_before_lockout = 3",
            "failures_before_lockout = \"3\"",
        );
    assert_eq!(
        keys(parse(&typed).unwrap_err()),
        [
            "directories[0].ratelimit.failures_before_lockout",
            "directories[0].pool_size",
            "directories[0].read_only",
        ]
    );
}

#[test]
fn names_listeners_and_state_are_each_one_directory_s() {
    let same_name = TWO.replace("name = \"partners\"", "name = \"corp-ad\"");
    assert_eq!(
        keys(parse(&same_name).unwrap_err()),
        ["directories[1].name"]
    );
    let same_port = TWO.replace("127.0.0.1:2389", "127.0.0.1:1389");
    assert_eq!(
        keys(parse(&same_port).unwrap_err()),
        ["directories[1].ldap_listen"]
    );
    let covered = TWO.replace("127.0.0.1:2389", "0.0.0.0:1389");
    assert_eq!(
        keys(parse(&covered).unwrap_err()),
        ["directories[1].ldap_listen"],
        "0.0.0.0 takes the port on 127.0.0.1 too"
    );
    let twice = TWO.replace(
        "ldap_listen = [\"127.0.0.1:2389\"]",
        "ldap_listen = [\"127.0.0.1:2389\"]\nldaps_listen = [\"127.0.0.1:2389\"]",
    );
    let err = parse(&twice).unwrap_err();
    assert!(err.to_string().contains("this directory"), "{err}");
    let found = keys(err);
    assert!(
        found.contains(&"directories[1].ldaps_listen".to_owned()),
        "{found:?}"
    );
    let metrics_too = format!("{TWO}\n[metrics]\nlisten = \"127.0.0.1:2389\"\n");
    assert_eq!(keys(parse(&metrics_too).unwrap_err()), ["metrics.listen"]);
    let single = MINIMAL.replace(
        "ldap_listen = [\"127.0.0.1:1389\"]",
        "ldap_listen = [\"127.0.0.1:1389\", \"[::]:1389\"]",
    );
    assert_eq!(keys(parse(&single).unwrap_err()), ["server.ldap_listen"]);
    let same_state = TWO.replace(
        "page_size = 100",
        "page_size = 100\nstate_dir = \"/var/lib/ldapgate/corp-ad\"",
    );
    assert_eq!(
        keys(parse(&same_state).unwrap_err()),
        ["directories[1].sync.state_dir"]
    );
}

#[test]
fn the_two_forms_do_not_mix() {
    let both = format!("{MINIMAL}\n[[directories]]\nname = \"x\"\n");
    assert!(keys(parse(&both).unwrap_err()).contains(&"directories".to_owned()));
    let top_level = TWO.replace(
        "[server]",
        "[signin]\nattributes = [\"uid\"]\n[server]\nldap_listen = [\"127.0.0.1:1\"]",
    );
    let found = keys(parse(&top_level).unwrap_err());
    assert!(found.contains(&"signin".to_owned()), "{found:?}");
    assert!(
        found.contains(&"server.ldap_listen".to_owned()),
        "{found:?}"
    );
    assert_eq!(
        keys(parse("[server]\n[[directories]]\n").unwrap_err()),
        [
            "directories[0].name",
            "directories[0].servers",
            "directories[0].base_dn"
        ]
    );
}

/// `[cluster]` with `store` and a key file of `key_bytes` bytes.
fn with_cluster(dir: &Path, store: &str, key_bytes: usize, extra: &str) -> String {
    let key = dir.join("key");
    std::fs::write(&key, vec![b'k'; key_bytes]).unwrap();
    format!(
        "{MINIMAL}\n[cluster]\nstore = \"{store}\"\nkey_file = \"{}\"\n{extra}",
        key.display()
    )
}

#[test]
fn a_cluster_store_is_parsed_and_its_secrets_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "store-secret\n").unwrap();
    let text = with_cluster(
        dir.path(),
        "rediss://ldapgate@redis.example:6380/2",
        32,
        &format!("password_file = \"{}\"\ntimeout = \"250ms\"", pw.display()),
    );
    let c = parse(&text).unwrap().cluster.unwrap();
    assert_eq!(
        c.store.to_string(),
        "rediss://ldapgate@redis.example:6380/2"
    );
    assert_eq!((c.store.tls, c.store.port, c.store.db), (true, 6380, 2));
    assert_eq!(c.password.as_ref().unwrap().expose(), "store-secret");
    assert_eq!(c.timeout, Duration::from_millis(250));
    let shown = format!("{c:?}");
    assert!(
        !shown.contains("store-secret") && !shown.contains("kkkk"),
        "{shown}"
    );
    // Defaults: port 6379, database 0, no password, 500 ms.
    let c = parse(&with_cluster(dir.path(), "redis://[::1]", 32, ""))
        .unwrap()
        .cluster
        .unwrap();
    assert_eq!(c.store.to_string(), "redis://[::1]:6379/0");
    assert!(c.password.is_none());
    assert_eq!(c.timeout, Duration::from_millis(500));
    assert!(parse(MINIMAL).unwrap().cluster.is_none());
}

#[test]
fn a_wrong_cluster_section_names_the_key_at_fault() {
    let dir = tempfile::tempdir().unwrap();
    for (store, key_bytes, extra, key) in [
        ("redis://:secret@10.0.0.5:6379/0", 32, "", "cluster.store"),
        ("http://10.0.0.5", 32, "", "cluster.store"),
        ("redis://10.0.0.5/x", 32, "", "cluster.store"),
        ("redis://10.0.0.5/0?protocol=resp3", 32, "", "cluster.store"),
        ("redis:///0", 32, "", "cluster.store"),
        ("10.0.0.5:6379", 32, "", "cluster.store"),
        ("redis://10.0.0.5", 31, "", "cluster.key_file"),
        (
            "redis://10.0.0.5",
            32,
            "timeout = \"0s\"",
            "cluster.timeout",
        ),
        (
            "redis://10.0.0.5",
            32,
            "ca_file = \"/etc/hostname\"",
            "cluster.ca_file",
        ),
        (
            "redis://10.0.0.5",
            32,
            "password_file = \"/nonexistent\"",
            "cluster.password_file",
        ),
    ] {
        let text = with_cluster(dir.path(), store, key_bytes, extra);
        let mut at_fault = keys(parse(&text).unwrap_err());
        at_fault.dedup();
        assert_eq!(at_fault, vec![key], "{store} {extra}");
    }
    // Without key_file (the instances then keep a key in the store).
    let text = format!("{MINIMAL}\n[cluster]\nstore = \"redis://10.0.0.5\"\n");
    assert!(parse(&text).unwrap().cluster.unwrap().key.is_none());
    let err = parse(&with_cluster(dir.path(), "redis://10.0.0.5", 8, "")).unwrap_err();
    assert!(err.to_string().contains("head -c 32 /dev/urandom"), "{err}");
    assert!(parse(&format!("{MINIMAL}\n[cluster]\nstores = 1\n")).is_err());
    // A binary key is taken whole, even when its last byte is a newline;
    // a text key loses the newline `echo` adds.
    let key = dir.path().join("binary-key");
    let mut binary = vec![0xffu8; 31];
    binary.push(b'\n');
    std::fs::write(&key, &binary).unwrap();
    let text = format!(
        "{MINIMAL}\n[cluster]\nstore = \"redis://h\"\nkey_file = \"{}\"\n",
        key.display()
    );
    assert_eq!(
        parse(&text).unwrap().cluster.unwrap().key.unwrap().expose(),
        &binary[..]
    );
    std::fs::write(&key, format!("{}\n", "k".repeat(32))).unwrap();
    assert_eq!(
        parse(&text)
            .unwrap()
            .cluster
            .unwrap()
            .key
            .unwrap()
            .expose()
            .len(),
        32
    );
}
