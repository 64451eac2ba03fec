//! Issue 11, part 3: DNs the directory treats as equal are equal for
//! ldapgate, and DNs it tells apart are apart: base-DN scope and bind names
//! follow the directory's schema (attribute type names, aliases, OIDs and
//! equality rules, read from its subschema). Every case runs the same
//! OpenLDAP tool directly against slapd and through ldapgate.

mod common;

use common::*;

/// A site schema with two naming types the built-in table does not know,
/// each with an alias: one compared case-exactly, one as a numeric string.
/// OIDs under IANA's example enterprise number (RFC 5612).
const SITE_SCHEMA: &str = "\
attributetype ( 1.3.6.1.4.1.32473.1.1 NAME ( 'gateTeam' 'gateTeamName' ) \
 DESC 'ldapgate tests: a case-exact naming attribute' \
 EQUALITY caseExactMatch SUBSTR caseExactSubstringsMatch \
 SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )
attributetype ( 1.3.6.1.4.1.32473.1.2 NAME ( 'gateUnit' 'gateUnitNumber' ) \
 DESC 'ldapgate tests: a numeric-string naming attribute' \
 EQUALITY numericStringMatch SUBSTR numericStringSubstringsMatch \
 SYNTAX 1.3.6.1.4.1.1466.115.121.1.36 )";

/// Two teams whose names differ only in case (two entries under
/// caseExactMatch), one unit, and a user in each.
fn site_ldif() -> String {
    let mut ldif = String::new();
    for (rdn, ou) in [
        ("gateTeam: Blue", "team-upper"),
        ("gateTeam: blue", "team-lower"),
        ("gateUnit: 1234", "unit"),
    ] {
        let (attr, value) = rdn.split_once(": ").unwrap();
        ldif.push_str(&format!(
            "dn: {attr}={value},{BASE_DN}\nobjectClass: organizationalUnit\n\
             objectClass: extensibleObject\nou: {ou}\n{rdn}\n\n"
        ));
    }
    for (uid, parent, pw) in [
        ("erin", "gateTeam=Blue", "erin-pw"),
        ("erin", "gateTeam=blue", "other-erin-pw"),
        ("frank", "gateUnit=1234", "frank-pw"),
    ] {
        ldif.push_str(&format!(
            "dn: uid={uid},{parent},{BASE_DN}\nobjectClass: inetOrgPerson\nuid: {uid}\n\
             cn: {uid}\nsn: {uid}\nuserPassword: {pw}\n\n"
        ));
    }
    ldif
}

/// slapd with the site schema and entries.
fn site_slapd() -> Slapd {
    Slapd::start_with_schema(SITE_SCHEMA, &site_ldif())
}

/// ldapgate in front of `slapd` serving `base_dn`, with the service
/// account (which may bind, and reads the subschema).
fn proxy_for(slapd: &Slapd, base_dn: &str) -> Proxy {
    let mut config = ProxyConfig::plain(slapd).service_account(slapd);
    config.directory = config.directory.replace(
        &format!("base_dn = \"{BASE_DN}\""),
        &format!("base_dn = \"{base_dn}\""),
    );
    Proxy::start(config)
}

/// slapd with the site schema, and ldapgate in front of it serving
/// `base_dn`.
fn site_behind_proxy(base_dn: &str) -> (Slapd, Proxy) {
    let slapd = site_slapd();
    let proxy = proxy_for(&slapd, base_dn);
    (slapd, proxy)
}

/// What a user of an OpenLDAP tool sees: its exit status (the LDAP
/// result code) and its output.
fn run(tool: &str, url: &str, args: &[&str]) -> (i32, String) {
    let mut all = vec!["-x", "-H", url];
    all.extend_from_slice(args);
    let out = ldap_tool(tool, std::path::Path::new("/dev/null"), &all, None);
    let code = out.status.code().unwrap_or(-1);
    (code, String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The DNs `ldapsearch -LLL` printed.
fn dns(output: &str) -> Vec<String> {
    output
        .lines()
        .filter_map(|l| l.strip_prefix("dn: "))
        .map(str::to_owned)
        .collect()
}

/// `ldapsearch -b base (uid=<uid>)`: result code and the DNs found.
fn search(url: &str, base: &str, uid: &str) -> (i32, Vec<String>) {
    let filter = format!("(uid={uid})");
    let (code, out) = run("ldapsearch", url, &["-LLL", "-b", base, &filter, "1.1"]);
    (code, dns(&out))
}

/// `ldapwhoami -D dn -w password`: the result code.
fn bind(url: &str, dn: &str, password: &str) -> i32 {
    run("ldapwhoami", url, &["-D", dn, "-w", password]).0
}

/// `ldapcompare` as the administrator: 6 compareTrue, 5 compareFalse.
fn compare(url: &str, dn: &str, assertion: &str) -> i32 {
    run(
        "ldapcompare",
        url,
        &["-D", ADMIN_DN, "-w", ADMIN_PW, dn, assertion],
    )
    .0
}

/// `ldapmodrdn -r -s new_superior entry new_rdn` as the administrator.
fn move_entry(url: &str, entry: &str, new_rdn: &str, new_superior: &str) -> i32 {
    let args = [
        "-D",
        ADMIN_DN,
        "-w",
        ADMIN_PW,
        "-r",
        "-s",
        new_superior,
        entry,
        new_rdn,
    ];
    run("ldapmodrdn", url, &args).0
}

/// A search for `uid` under `base` finds `want` and a bind as
/// `uid=<uid>,<base>` succeeds, directly and through ldapgate.
fn assert_served_as_directly(
    slapd: &Slapd,
    proxy: &Proxy,
    base: &str,
    uid: &str,
    password: &str,
    want: &str,
) {
    let dn = format!("uid={uid},{base}");
    for (url, who) in [(slapd.ldap_url(), "slapd"), (proxy.ldap_url(), "ldapgate")] {
        let found = search(&url, base, uid);
        assert_eq!(
            found,
            (0, vec![want.to_owned()]),
            "{who}: search under {base}"
        );
        assert_eq!(bind(&url, &dn, password), 0, "{who}: bind as {dn}");
    }
}

/// The issue's inputs: a search base, binds, compares and modify DNs
/// spelled with aliases, OIDs and `OID.` prefixes answer through ldapgate
/// as slapd answers them.
#[test]
fn alias_and_oid_spellings_answer_as_the_directory_does() {
    let slapd = Slapd::start();
    let proxy = proxy_for(&slapd, BASE_DN);
    let (direct, through) = (slapd.ldap_url(), proxy.ldap_url());
    let alice = format!("uid=alice,ou=people,{BASE_DN}");

    let want = search(&direct, "ou=people,domainComponent=example,dc=com", "alice");
    assert_eq!(want, (0, vec![alice.clone()]));
    let got = search(
        &through,
        "ou=people,domainComponent=example,dc=com",
        "alice",
    );
    assert_eq!(got, want);

    // slapd refuses RFC 2253's `OID.` prefix (invalidDNSyntax); ldapgate
    // lets the directory say so.
    for (dn, want) in [
        ("uid=alice,ou=people,domainComponent=example,dc=com", 0),
        (
            "0.9.2342.19200300.100.1.1=alice,2.5.4.11=people,dc=example,dc=com",
            0,
        ),
        (
            "userid=alice,organizationalUnitName=people,0.9.2342.19200300.100.1.25=example,dc=com",
            0,
        ),
        (
            "0.9.2342.19200300.100.1.1=alice,OID.2.5.4.11=people,dc=example,dc=com",
            34,
        ),
    ] {
        for (password, want) in [
            ("alice-pw", want),
            ("wrong", if want == 0 { 49 } else { want }),
        ] {
            assert_eq!(bind(&direct, dn, password), want, "slapd: {dn} {password}");
            assert_eq!(
                bind(&through, dn, password),
                want,
                "ldapgate: {dn} {password}"
            );
        }
    }

    for (dn, assertion, want) in [
        (
            "organizationalUnitName=people,domainComponent=example,dc=com",
            "ou:people",
            6,
        ),
        (
            "0.9.2342.19200300.100.1.1=bob,2.5.4.11=people,dc=example,dc=com",
            "mail:bob@example.com",
            6,
        ),
        (
            "userid=bob,organizationalUnitName=People,DC=Example,dc=com",
            "sn:Smith",
            5,
        ),
        (
            "userid=bob,OID.2.5.4.11=people,dc=example,dc=com",
            "sn:Builder",
            34,
        ),
    ] {
        assert_eq!(compare(&direct, dn, assertion), want, "slapd: {dn}");
        assert_eq!(compare(&through, dn, assertion), want, "ldapgate: {dn}");
    }

    // carol moves to ou=groups and back, each way directly and through
    // ldapgate, entry and newSuperior spelled with OIDs and aliases.
    let at_people = format!("uid=carol,ou=people,{BASE_DN}");
    let at_groups = format!("uid=carol,ou=groups,{BASE_DN}");
    for url in [&direct, &through] {
        let code = move_entry(
            url,
            "0.9.2342.19200300.100.1.1=carol,organizationalUnitName=people,dc=example,dc=com",
            "uid=carol",
            "2.5.4.11=groups,domainComponent=example,dc=com",
        );
        assert_eq!(code, 0, "{url}: move to ou=groups");
        assert_eq!(
            search(&direct, BASE_DN, "carol"),
            (0, vec![at_groups.clone()])
        );
        let code = move_entry(
            url,
            "userid=carol,2.5.4.11=groups,dc=example,0.9.2342.19200300.100.1.25=com",
            "uid=carol",
            "ou=people,domainComponent=example,dc=com",
        );
        assert_eq!(code, 0, "{url}: move back");
        assert_eq!(
            search(&direct, BASE_DN, "carol"),
            (0, vec![at_people.clone()])
        );
    }
    for url in [&direct, &through] {
        let code = move_entry(
            url,
            &at_people,
            "uid=carol",
            "OID.2.5.4.11=groups,dc=example,dc=com",
        );
        assert_eq!(code, 34, "{url}: `OID.` in newSuperior");
    }
}

/// An alias and the OID of a type only the directory's schema defines
/// name that type: under `base_dn = gateTeam=Blue,...`, a search base and
/// a bind spelled `gateTeamName=Blue` or `1.3.6.1.4.1.32473.1.1=Blue` are
/// in scope (the previous build refused them with 50).
#[test]
fn an_alias_from_the_directorys_schema_is_the_same_type() {
    let base = format!("gateTeam=Blue,{BASE_DN}");
    let (slapd, proxy) = site_behind_proxy(&base);
    let through = proxy.ldap_url();
    let erin = format!("uid=erin,{base}");
    for spelling in [
        format!("gateTeamName=Blue,{BASE_DN}"),
        format!("1.3.6.1.4.1.32473.1.1=Blue,{BASE_DN}"),
        "GATETEAMNAME=Blue,domainComponent=example,dc=com".to_owned(),
    ] {
        assert_served_as_directly(&slapd, &proxy, &spelling, "erin", "erin-pw", &erin);
        let dn = format!("uid=erin,{spelling}");
        assert_eq!(compare(&through, &dn, "uid:erin"), 6, "ldapgate: {dn}");
    }
}

/// Under caseExactMatch `gateTeam=blue` is another entry than
/// `gateTeam=Blue`: outside `base_dn = gateTeam=Blue,...`, for searches,
/// binds and moves (the previous build took it as base_dn and let a client
/// read and bind in the other team's subtree).
#[test]
fn values_differing_in_case_are_different_dns_for_a_case_exact_type() {
    let base = format!("gateTeam=Blue,{BASE_DN}");
    let (slapd, proxy) = site_behind_proxy(&base);
    let (direct, through) = (slapd.ldap_url(), proxy.ldap_url());
    let other = format!("gateTeam=blue,{BASE_DN}");
    let other_erin = format!("uid=erin,{other}");

    // Directly: two teams, two erins, two passwords.
    assert_eq!(
        search(&direct, &other, "erin"),
        (0, vec![other_erin.clone()])
    );
    assert_eq!(bind(&direct, &other_erin, "other-erin-pw"), 0);
    assert_eq!(bind(&direct, &other_erin, "erin-pw"), 49);

    // Through ldapgate the other team is outside base_dn.
    assert_eq!(search(&through, &other, "erin"), (50, vec![]));
    assert_eq!(
        search(&through, &format!("gateTeamName=blue,{BASE_DN}"), "erin"),
        (50, vec![])
    );
    assert_eq!(bind(&through, &other_erin, "other-erin-pw"), 50);
    assert_eq!(compare(&through, &other_erin, "uid:erin"), 50);
    let moved = move_entry(&through, &format!("uid=erin,{base}"), "uid=erin2", &other);
    assert_eq!(moved, 50, "a move into the other team leaves base_dn");
    // Its own team, whatever the case of the other parts.
    assert_eq!(
        bind(
            &through,
            "UID=Erin,gateTeam=Blue,DC=Example,dc=COM",
            "erin-pw"
        ),
        0
    );
    assert_eq!(
        search(&through, &base, "erin"),
        (0, vec![format!("uid=erin,{base}")])
    );
}

/// Lockout counts per entry, and under caseExactMatch `gateTeam=blue`
/// names another entry than `gateTeam=Blue`: locking one erin out leaves
/// the other alone, while every spelling of the locked one is locked.
#[test]
fn lockout_follows_the_entry_a_case_exact_dn_names() {
    let slapd = site_slapd();
    let proxy = Proxy::start(
        ProxyConfig::plain(&slapd)
            .service_account(&slapd)
            .section("[ratelimit]\nbinds_per_ip = \"50/s\"\nfailures_before_lockout = 5"),
    );
    let through = proxy.ldap_url();
    let locked = format!("uid=erin,gateTeam=blue,{BASE_DN}");
    for _ in 0..5 {
        assert_eq!(bind(&through, &locked, "wrong"), 49);
    }
    assert_eq!(bind(&through, &locked, "other-erin-pw"), 53);
    let alias = format!("UID=erin,gateTeamName=blue,{BASE_DN}");
    assert_eq!(bind(&through, &alias, "other-erin-pw"), 53);
    let other = format!("uid=erin,gateTeam=Blue,{BASE_DN}");
    assert_eq!(bind(&through, &other, "erin-pw"), 0);
}

/// Under numericStringMatch spaces are insignificant (RFC 4518 §2.6.1):
/// `gateUnit=12 34` is `base_dn = gateUnit=1234,...` for searches and binds
/// (the previous build refused it with 50), and `gateUnit=12345` is not.
#[test]
fn numeric_string_values_with_spaces_are_the_same_dn() {
    let base = format!("gateUnit=1234,{BASE_DN}");
    let (slapd, proxy) = site_behind_proxy(&base);
    let through = proxy.ldap_url();
    let frank = format!("uid=frank,{base}");
    for spelling in [
        format!("gateUnitNumber=12 34,{BASE_DN}"),
        format!("gateUnit=1 2 3 4,{BASE_DN}"),
    ] {
        assert_served_as_directly(&slapd, &proxy, &spelling, "frank", "frank-pw", &frank);
    }
    assert_eq!(
        search(&through, &format!("gateUnit=12345,{BASE_DN}"), "frank"),
        (50, vec![])
    );
}

/// While the subschema cannot be read, DNs compare by the built-in table
/// (and a warning says so); once the directory is back, its schema is read
/// within a health-check interval and decides from then on.
#[test]
fn the_schema_is_read_when_the_directory_comes_back() {
    let mut slapd = site_slapd();
    slapd.stop();
    let base = format!("gateTeam=Blue,{BASE_DN}");
    let mut config = ProxyConfig::plain(&slapd)
        .service_account(&slapd)
        .directory("health_check_interval = \"1s\"");
    config.directory = config.directory.replace(
        &format!("base_dn = \"{BASE_DN}\""),
        &format!("base_dn = \"{base}\""),
    );
    let proxy = Proxy::start(config);
    let through = proxy.ldap_url();
    let alias = format!("gateTeamName=Blue,{BASE_DN}");
    // Sessions get unavailable (52) meanwhile: nothing to compare yet.
    assert_eq!(search(&through, &alias, "erin"), (52, vec![]));
    slapd.restart();
    let want = (0, vec![format!("uid=erin,{base}")]);
    let start = std::time::Instant::now();
    while search(&through, &alias, "erin") != want {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(10),
            "the schema was not read after the directory came back:\n{}",
            proxy.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let log = proxy.log();
    assert!(
        log.contains("cannot read the directory's subschema"),
        "{log}"
    );
    assert!(
        log.contains("DNs compare by the directory's schema"),
        "{log}"
    );
}
