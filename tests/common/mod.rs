//! Test fixtures: a real OpenLDAP slapd and a real ldapgate process, each on
//! free loopback ports, with TLS certificates generated per run.
//!
//! Shared by the integration tests, the quick-start example and the
//! benchmarks (included with `#[path]`), so all three run the same setup.
#![allow(dead_code)]

pub mod pulls;
pub mod redis_server;
pub mod samba;
pub mod tls_peers;

// Not every test crate pulls.
#[allow(unused_imports)]
pub use pulls::*;
#[allow(unused_imports)]
pub use tls_peers::*;

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Base DN of the sample directory.
pub const BASE_DN: &str = "dc=example,dc=com";
/// The directory's root DN and its password.
pub const ADMIN_DN: &str = "cn=admin,dc=example,dc=com";
pub const ADMIN_PW: &str = "admin-secret";
/// Users under ou=people besides the generated ones: alice, bob, carol,
/// dup1, dup2, pat.
pub const NAMED_USERS: usize = 6;
/// Number of generated users `user000`..: enough for several search pages.
pub const GENERATED_USERS: usize = 60;

/// Where a needed program lives, or a panic saying how to install it.
pub fn require_program(name: &str, package: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/bin"] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    panic!("`{name}` is not installed; these tests need it: apt-get install -y {package}");
}

/// A loopback port nothing listens on, never handed out before in this
/// process: a server stopped and started again on its ports (a restore, a
/// failover) must not find them taken by another test's server.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("binding an ephemeral loopback port");
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// Waits until something accepts on `addr`.
pub fn wait_for_port(addr: SocketAddr, what: &str, child: &mut Child) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited with {status} before listening on {addr}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{what} did not listen on {addr} within 20s");
}

/// A CA and a server certificate for `localhost`/127.0.0.1 signed by it.
pub struct Certs {
    pub dir: PathBuf,
    pub ca_pem: PathBuf,
    pub cert_pem: PathBuf,
    pub key_pem: PathBuf,
    pub ca_der: Vec<u8>,
    pub cert_der: Vec<u8>,
}

impl Certs {
    pub fn generate(dir: &Path, name: &str) -> Certs {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().unwrap();
        let cert = Certs::server_params(name).signed_by(&key, &issuer).unwrap();
        Certs::write(dir, name, &ca, &[&cert], &key)
    }

    /// A server certificate's parameters: `CN={name}.test`, for
    /// `localhost` and 127.0.0.1.
    fn server_params(name: &str) -> rcgen::CertificateParams {
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("{name}.test"));
        params
    }

    /// Writes `{name}-ca.pem` (the root), `{name}.pem` (`served`, leaf
    /// first) and `{name}.key` under `dir`.
    fn write(
        dir: &Path,
        name: &str,
        root: &rcgen::Certificate,
        served: &[&rcgen::Certificate],
        key: &rcgen::KeyPair,
    ) -> Certs {
        std::fs::create_dir_all(dir).unwrap();
        let ca_pem = dir.join(format!("{name}-ca.pem"));
        let cert_pem = dir.join(format!("{name}.pem"));
        let key_pem = dir.join(format!("{name}.key"));
        std::fs::write(&ca_pem, root.pem()).unwrap();
        let chain: String = served.iter().map(|c| c.pem()).collect();
        std::fs::write(&cert_pem, chain).unwrap();
        std::fs::write(&key_pem, key.serialize_pem()).unwrap();
        Certs {
            dir: dir.to_owned(),
            ca_pem,
            cert_pem,
            key_pem,
            ca_der: root.der().to_vec(),
            cert_der: served[0].der().to_vec(),
        }
    }

    /// A root CA (10 years) → an intermediate CA (`intermediate_days`) → a
    /// server certificate for `localhost`/127.0.0.1 (`leaf_days`), as a
    /// directory serves them: `cert_pem` holds the leaf then the
    /// intermediate, `ca_pem` the root alone. Subjects: `{name} root CA`,
    /// `{name} intermediate CA`, `{name}.test`.
    pub fn generate_chain(dir: &Path, name: &str, intermediate_days: i64, leaf_days: i64) -> Certs {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let until = |days: i64| time::OffsetDateTime::now_utc() + time::Duration::days(days);
        let ca_params = |cn: String, days: i64| {
            let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
            p.distinguished_name.push(DnType::CommonName, cn);
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.not_after = until(days);
            p
        };
        let root_key = KeyPair::generate().unwrap();
        let root_params = ca_params(format!("{name} root CA"), 3650);
        let root = root_params.self_signed(&root_key).unwrap();
        let root_issuer = Issuer::new(root_params, root_key);
        let mid_key = KeyPair::generate().unwrap();
        let mid_params = ca_params(format!("{name} intermediate CA"), intermediate_days);
        let mid = mid_params.signed_by(&mid_key, &root_issuer).unwrap();
        let mid_issuer = Issuer::new(mid_params, mid_key);
        let key = KeyPair::generate().unwrap();
        let mut params = Certs::server_params(name);
        params.not_after = until(leaf_days);
        let cert = params.signed_by(&key, &mid_issuer).unwrap();
        Certs::write(dir, name, &root, &[&cert, &mid], &key)
    }

    /// A rustls client config trusting this CA (for the `ldap3` crate).
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(rustls_pki_types::CertificateDer::from(self.ca_der.clone()))
            .unwrap();
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        Arc::new(config)
    }
}

/// The sample directory: two OUs, named users and generated ones.
pub fn sample_ldif() -> String {
    let mut ldif = format!(
        "dn: {BASE_DN}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n\n\
         dn: ou=people,{BASE_DN}\nobjectClass: organizationalUnit\nou: people\n\n\
         dn: ou=engineering,ou=people,{BASE_DN}\nobjectClass: organizationalUnit\nou: engineering\n\n\
         dn: ou=groups,{BASE_DN}\nobjectClass: organizationalUnit\nou: groups\n\n"
    );
    for (uid, cn, mobile, pw) in [
        ("alice", "Alice Liddell", "+8613800000001", "alice-pw"),
        ("bob", "Bob Builder", "+8613800000002", "bob-pw"),
        ("carol", "Carol Danvers", "+8613800000003", "carol-pw"),
    ] {
        ldif.push_str(&format!(
            "dn: uid={uid},ou=people,{BASE_DN}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {cn}\n\
             sn: {}\nmail: {uid}@example.com\nmobile: {mobile}\nemployeeNumber: E-{uid}\n\
             userPassword: {pw}\n\n",
            cn.split(' ').nth(1).unwrap_or(cn)
        ));
    }
    // Two people sharing a mobile number (ambiguous), and one whose uid is
    // also their employee number (one person by two attributes).
    for (uid, mobile, employee) in [
        ("dup1", "+8613800009999", "E-dup1"),
        ("dup2", "+8613800009999", "E-dup2"),
        ("pat", "+8613800000004", "pat"),
    ] {
        ldif.push_str(&format!(
            "dn: uid={uid},ou=people,{BASE_DN}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {uid}\n\
             sn: {uid}\nmobile: {mobile}\nemployeeNumber: {employee}\nuserPassword: {uid}-pw\n\n"
        ));
    }
    for i in 0..GENERATED_USERS {
        ldif.push_str(&format!(
            "dn: uid=user{i:03},ou=engineering,ou=people,{BASE_DN}\nobjectClass: inetOrgPerson\n\
             uid: user{i:03}\ncn: User {i}\nsn: {i}\nmail: user{i:03}@example.com\n\
             userPassword: user{i:03}-pw\n\n"
        ));
    }
    ldif
}

/// Password policies and users in each policy state, for the ppolicy
/// overlay (OpenLDAP 2.5: the schema is built into the module).
pub fn ppolicy_ldif() -> String {
    let mut ldif =
        format!("dn: ou=policies,{BASE_DN}\nobjectClass: organizationalUnit\nou: policies\n\n");
    for (cn, extra) in [
        (
            "lockout",
            "pwdLockout: TRUE\npwdMaxFailure: 3\npwdLockoutDuration: 0\n",
        ),
        ("expired", "pwdMaxAge: 60\npwdGraceAuthNLimit: 0\n"),
        ("grace", "pwdMaxAge: 60\npwdGraceAuthNLimit: 2\n"),
        ("reset", "pwdMustChange: TRUE\n"),
    ] {
        ldif.push_str(&format!(
            "dn: cn={cn},ou=policies,{BASE_DN}\nobjectClass: organizationalRole\nobjectClass: pwdPolicy\n\
             cn: {cn}\npwdAttribute: userPassword\n{extra}\n"
        ));
    }
    for (uid, policy, extra) in [
        ("pp-locked", "lockout", ""),
        ("pp-expired", "expired", "pwdChangedTime: 20000101000000Z\n"),
        ("pp-grace", "grace", "pwdChangedTime: 20000101000000Z\n"),
        ("pp-reset", "reset", "pwdReset: TRUE\n"),
    ] {
        ldif.push_str(&format!(
            "dn: uid={uid},ou=people,{BASE_DN}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {uid}\nsn: {uid}\n\
             userPassword: {uid}-pw\npwdPolicySubentry: cn={policy},ou=policies,{BASE_DN}\n{extra}\n"
        ));
    }
    ldif
}

/// A running slapd. Killed on drop.
pub struct Slapd {
    pub dir: tempfile::TempDir,
    pub ldap_port: u16,
    pub ldaps_port: u16,
    pub certs: Certs,
    child: Child,
}

impl Slapd {
    /// Starts slapd with the sample directory, plain LDAP (StartTLS
    /// available) and LDAPS, on free ports.
    pub fn start() -> Slapd {
        Self::start_with(false)
    }

    /// With the ppolicy overlay and the users of [`ppolicy_ldif`].
    pub fn start_with_ppolicy() -> Slapd {
        Self::start_with(true)
    }

    fn start_with(ppolicy: bool) -> Slapd {
        Self::start_full(ppolicy, "", "", "")
    }

    /// With extra global `slapd.conf` lines for the database (e.g. limits).
    pub fn start_with_database_lines(lines: &str) -> Slapd {
        Self::start_full(false, "", lines, "")
    }

    /// With more entries loaded at start (bulk-loaded with `slapadd -q`).
    pub fn start_with_extra_ldif(ldif: &str) -> Slapd {
        Self::start_full(false, "", "", ldif)
    }

    /// With extra `slapd.conf` lines for the database and extra entries.
    pub fn start_with_lines_and_ldif(database_lines: &str, extra_ldif: &str) -> Slapd {
        Self::start_full(false, "", database_lines, extra_ldif)
    }

    /// With more schema (`attributetype` / `objectclass` lines of
    /// `slapd.conf`) and entries that use it.
    pub fn start_with_schema(schema: &str, extra_ldif: &str) -> Slapd {
        Self::start_full(false, schema, "", extra_ldif)
    }

    /// Serving `certs` (made with [`Certs::generate`] or
    /// [`Certs::generate_chain`] under `dir`) with extra global `slapd.conf`
    /// lines, e.g. `TLSCipherSuite` (a GnuTLS priority string).
    pub fn start_with_tls(dir: tempfile::TempDir, certs: Certs, global_lines: &str) -> Slapd {
        Self::start_in(dir, Some(certs), false, global_lines, "", "")
    }

    fn start_full(ppolicy: bool, schema: &str, database_lines: &str, extra_ldif: &str) -> Slapd {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(dir, None, ppolicy, schema, database_lines, extra_ldif)
    }

    fn start_in(
        dir: tempfile::TempDir,
        certs: Option<Certs>,
        ppolicy: bool,
        schema: &str,
        database_lines: &str,
        extra_ldif: &str,
    ) -> Slapd {
        let slapadd = require_program("slapadd", "slapd ldap-utils");
        let certs = certs.unwrap_or_else(|| Certs::generate(&dir.path().join("tls"), "slapd"));
        let db = dir.path().join("db");
        std::fs::create_dir_all(&db).unwrap();
        let conf = dir.path().join("slapd.conf");
        std::fs::write(
            &conf,
            format!(
                "include /etc/ldap/schema/core.schema\n\
                 include /etc/ldap/schema/cosine.schema\n\
                 include /etc/ldap/schema/inetorgperson.schema\n\
                 include /etc/ldap/schema/nis.schema\n\
                 {schema}\n\
                 modulepath /usr/lib/ldap\n\
                 moduleload back_mdb\n\
                 {ppolicy_module}\
                 pidfile {dir}/slapd.pid\n\
                 TLSCACertificateFile {ca}\n\
                 TLSCertificateFile {cert}\n\
                 TLSCertificateKeyFile {key}\n\
                 password-hash {{SSHA}}\n\
                 sizelimit unlimited\n\
                 database mdb\n\
                 maxsize 1073741824\n\
                 suffix \"{BASE_DN}\"\n\
                 rootdn \"{ADMIN_DN}\"\n\
                 rootpw {ADMIN_PW}\n\
                 directory {db}\n\
                 index objectClass eq\n\
                 index uid,mail,mobile,employeeNumber eq\n\
                 access to attrs=userPassword by self write by anonymous auth by * none\n\
                 access to * by * read\n\
                 {database_lines}\n\
                 {ppolicy_overlay}",
                dir = dir.path().display(),
                ca = certs.ca_pem.display(),
                cert = certs.cert_pem.display(),
                key = certs.key_pem.display(),
                db = db.display(),
                ppolicy_module = if ppolicy { "moduleload ppolicy\n" } else { "" },
                ppolicy_overlay = if ppolicy {
                    "overlay ppolicy\nppolicy_use_lockout\n"
                } else {
                    ""
                },
            ),
        )
        .unwrap();
        let ldif = dir.path().join("data.ldif");
        let mut data = sample_ldif();
        if ppolicy {
            data.push_str(&ppolicy_ldif());
        }
        data.push_str(extra_ldif);
        std::fs::write(&ldif, data).unwrap();
        let out = Command::new(slapadd)
            .arg("-q")
            .arg("-f")
            .arg(&conf)
            .arg("-l")
            .arg(&ldif)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "slapadd failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let ldap_port = free_port();
        let ldaps_port = free_port();
        let child = spawn_slapd(&dir, ldap_port, ldaps_port);
        Slapd {
            dir,
            ldap_port,
            ldaps_port,
            certs,
            child,
        }
    }

    /// An LDIF change (`ldapmodify`) made directly on slapd as its rootdn;
    /// it must succeed.
    pub fn modify(&self, ldif: &str) {
        if let Err(e) = self.try_modify(ldif) {
            panic!("{e}");
        }
    }

    /// [`Self::modify`], with slapd's refusal as the error.
    pub fn try_modify(&self, ldif: &str) -> Result<(), String> {
        let out = ldap_tool(
            "ldapmodify",
            &self.certs.ca_pem,
            &["-x", "-H", &self.ldap_url(), "-D", ADMIN_DN, "-w", ADMIN_PW],
            Some(ldif),
        );
        if out.status.success() {
            Ok(())
        } else {
            Err(format!("ldapmodify: {}\nof:\n{ldif}", show(&out)))
        }
    }

    /// A backup of the entries under BASE_DN matching `filter`, as
    /// `slapcat` writes it (entryUUID and entryCSN included).
    pub fn backup(&self, filter: &str) -> Vec<u8> {
        let out = Command::new(require_program("slapcat", "slapd"))
            .args(["-b", BASE_DN, "-f"])
            .arg(self.dir.path().join("slapd.conf"))
            .args(["-a", filter])
            .output()
            .unwrap();
        assert!(out.status.success(), "slapcat: {}", show(&out));
        out.stdout
    }

    /// Restores a [`Self::backup`] as an operator would: slapd stopped
    /// (cleanly, as `systemctl stop` does, when `clean`: slapd then saves
    /// its contextCSN; else killed), `slapadd`, slapd started again.
    pub fn restore(&mut self, backup: &[u8], clean: bool) {
        if clean {
            send_signal(self.pid(), "TERM");
            let _ = self.child.wait();
        } else {
            self.stop();
        }
        let ldif = self.dir.path().join("restore.ldif");
        std::fs::write(&ldif, backup).unwrap();
        let out = Command::new(require_program("slapadd", "slapd"))
            .args(["-q", "-b", BASE_DN, "-f"])
            .arg(self.dir.path().join("slapd.conf"))
            .arg("-l")
            .arg(&ldif)
            .output()
            .unwrap();
        assert!(out.status.success(), "slapadd: {}", show(&out));
        self.restart();
    }

    /// The slapd process id (for SIGSTOP/SIGCONT in tests that need a
    /// directory that stops answering for a while).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Starts slapd again on the same ports and data, after [`Self::stop`].
    pub fn restart(&mut self) {
        self.stop();
        self.child = spawn_slapd(&self.dir, self.ldap_port, self.ldaps_port);
    }

    pub fn ldap_url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.ldap_port)
    }

    pub fn ldaps_url(&self) -> String {
        format!("ldaps://127.0.0.1:{}", self.ldaps_port)
    }

    /// The plain LDAP port's address, for raw sockets.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.ldap_port))
    }

    /// Stops slapd (for failover tests); the ports then refuse connections.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_slapd(dir: &tempfile::TempDir, ldap_port: u16, ldaps_port: u16) -> Child {
    let mut child = Command::new(require_program("slapd", "slapd ldap-utils"))
        .arg("-f")
        .arg(dir.path().join("slapd.conf"))
        .arg("-h")
        .arg(format!(
            "ldap://127.0.0.1:{ldap_port}/ ldaps://127.0.0.1:{ldaps_port}/"
        ))
        .args(["-d", "0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_port(
        SocketAddr::from(([127, 0, 0, 1], ldap_port)),
        "slapd",
        &mut child,
    );
    child
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The ldapgate binary of this build. Cargo names it for tests and benches;
/// an example finds it beside its own directory (target/<profile>/).
pub fn ldapgate_binary() -> PathBuf {
    // Another build under test, e.g. to show that a new test fails on the
    // build before a fix.
    if let Some(path) = std::env::var_os("LDAPGATE_TEST_BINARY") {
        return PathBuf::from(path);
    }
    if let Some(path) = option_env!("CARGO_BIN_EXE_ldapgate") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap();
    let path = profile_dir.join("ldapgate");
    assert!(
        path.exists(),
        "{} not found: build it first (cargo build)",
        path.display()
    );
    path
}

/// A running `ldapgate run`. Killed on drop.
pub struct Proxy {
    pub dir: tempfile::TempDir,
    pub ldap_port: u16,
    pub ldaps_port: u16,
    /// Listening only when the config enabled the control channel.
    pub control_port: u16,
    pub certs: Certs,
    pub config_path: PathBuf,
    pub log_path: PathBuf,
    child: Child,
}

/// How a test wants ldapgate configured. `directory` holds the
/// `[directory]` lines; `server_extra` more `[server]` lines.
pub struct ProxyConfig {
    pub directory: String,
    pub server_extra: String,
    /// RUST_LOG for the ldapgate process.
    pub log_filter: String,
    /// More sections after `[directory]` (`[signin]`, `[ratelimit]`, ...).
    pub sections: String,
    /// With a bearer token: a `[control]` section on a free port.
    pub control_token: Option<String>,
    /// More `[control]` lines.
    pub control_extra: String,
    /// Another ldapgate binary to run (benches compare a baseline build);
    /// None: this build's.
    pub binary: Option<PathBuf>,
}

const TEST_LOG_FILTER: &str = "ldapgate=debug";

impl ProxyConfig {
    /// ldapgate in front of `slapd` over plain LDAP, no StartTLS upstream.
    pub fn plain(slapd: &Slapd) -> ProxyConfig {
        ProxyConfig {
            directory: format!(
                "servers = [\"{}\"]\nstarttls = false\nbase_dn = \"{BASE_DN}\"\n",
                slapd.ldap_url()
            ),
            server_extra: String::new(),
            log_filter: TEST_LOG_FILTER.into(),
            sections: String::new(),
            control_token: None,
            control_extra: String::new(),
            binary: None,
        }
    }

    /// ldapgate in front of `slapd` over LDAPS, trusting its CA.
    pub fn ldaps(slapd: &Slapd) -> ProxyConfig {
        ProxyConfig {
            directory: format!(
                "servers = [\"{}\"]\nca_file = \"{}\"\nbase_dn = \"{BASE_DN}\"\n",
                slapd.ldaps_url(),
                slapd.certs.ca_pem.display()
            ),
            server_extra: String::new(),
            log_filter: TEST_LOG_FILTER.into(),
            sections: String::new(),
            control_token: None,
            control_extra: String::new(),
            binary: None,
        }
    }

    /// Any `[directory]` section, tests' log level.
    pub fn with_directory(directory: String) -> ProxyConfig {
        ProxyConfig {
            directory,
            server_extra: String::new(),
            log_filter: TEST_LOG_FILTER.into(),
            sections: String::new(),
            control_token: None,
            control_extra: String::new(),
            binary: None,
        }
    }

    pub fn directory(mut self, extra: &str) -> Self {
        self.directory.push_str(extra);
        self.directory.push('\n');
        self
    }

    pub fn section(mut self, text: &str) -> Self {
        self.sections.push_str(text);
        self.sections.push('\n');
        self
    }

    /// Enables the control channel, accepting `token`.
    pub fn control(mut self, token: &str) -> Self {
        self.control_token = Some(token.to_owned());
        self
    }

    /// Adds a line to the `[control]` section.
    pub fn control_setting(mut self, line: &str) -> Self {
        self.control_extra.push_str(line);
        self.control_extra.push('\n');
        self
    }

    /// Adds the service account (cn=admin) with its password in a file.
    pub fn service_account(self, slapd: &Slapd) -> Self {
        let pw = slapd.dir.path().join("bind_password");
        std::fs::write(&pw, ADMIN_PW).unwrap();
        self.directory(&format!(
            "bind_dn = \"{ADMIN_DN}\"\nbind_password_file = \"{}\"",
            pw.display()
        ))
    }

    pub fn server(mut self, extra: &str) -> Self {
        self.server_extra.push_str(extra);
        self.server_extra.push('\n');
        self
    }
}

/// What a configuration for one ldapgate process refers to: free ports,
/// the listener and control certificate, a directory for state and logs.
pub struct ProxyFiles {
    pub dir: tempfile::TempDir,
    pub certs: Certs,
    pub ldap_port: u16,
    pub ldaps_port: u16,
    pub control_port: u16,
}

impl ProxyFiles {
    pub fn new() -> ProxyFiles {
        let dir = tempfile::tempdir().unwrap();
        let certs = Certs::generate(&dir.path().join("tls"), "ldapgate");
        ProxyFiles {
            dir,
            certs,
            ldap_port: free_port(),
            ldaps_port: free_port(),
            control_port: free_port(),
        }
    }

    /// `[server]` with the listener certificate and no listener of its own.
    pub fn server_section(&self) -> String {
        format!(
            "[server]\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
            self.certs.cert_pem.display(),
            self.certs.key_pem.display()
        )
    }

    /// `[control]` on `control_port`, accepting `token`.
    pub fn control_section(&self, token: &str) -> String {
        use sha2::Digest;
        let hash: String = sha2::Sha256::digest(token.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!(
            "[control]\nlisten = \"127.0.0.1:{}\"\ntls_cert = \"{}\"\n\
             tls_key = \"{}\"\ntoken_sha256 = [\"{hash}\"]\n",
            self.control_port,
            self.certs.cert_pem.display(),
            self.certs.key_pem.display(),
        )
    }

    /// Writes `text` as the configuration and runs `binary` on it until it
    /// listens on `ldap_port` (and `control_port` when `control`).
    fn launch(
        self,
        text: &str,
        binary: &Path,
        log_filter: &str,
        control: bool,
    ) -> Result<Proxy, String> {
        let ProxyFiles {
            dir,
            certs,
            ldap_port,
            ldaps_port,
            control_port,
        } = self;
        let config_path = dir.path().join("ldapgate.toml");
        std::fs::write(&config_path, text).unwrap();
        let log_path = dir.path().join("ldapgate.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let mut child = Command::new(binary)
            .arg("run")
            .arg("-c")
            .arg(&config_path)
            .env("RUST_LOG", log_filter)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let addr = SocketAddr::from(([127, 0, 0, 1], ldap_port));
        let start = Instant::now();
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                return Err(format!("exited with {status}\n{log}"));
            }
            if start.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                return Err("did not listen within 20s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if control {
            wait_for_port(
                SocketAddr::from(([127, 0, 0, 1], control_port)),
                "ldapgate control channel",
                &mut child,
            );
        }
        Ok(Proxy {
            dir,
            ldap_port,
            ldaps_port,
            control_port,
            certs,
            config_path,
            log_path,
            child,
        })
    }
}

impl Proxy {
    pub fn start(config: ProxyConfig) -> Proxy {
        Self::try_start(config).unwrap_or_else(|log| panic!("ldapgate did not start:\n{log}"))
    }

    /// Starts ldapgate; Err carries its log when it exits early.
    pub fn try_start(config: ProxyConfig) -> Result<Proxy, String> {
        let files = ProxyFiles::new();
        let mut text = format!(
            "[server]\nldap_listen = [\"127.0.0.1:{}\"]\n\
             ldaps_listen = [\"127.0.0.1:{}\"]\n\
             tls_cert = \"{}\"\ntls_key = \"{}\"\n{}\n[directory]\n{}\n{}\n",
            files.ldap_port,
            files.ldaps_port,
            files.certs.cert_pem.display(),
            files.certs.key_pem.display(),
            config.server_extra,
            config.directory,
            config.sections,
        );
        if !config.sections.contains("[sync]") {
            text.push_str(&format!(
                "[sync]\nstate_dir = \"{}\"\n",
                files.dir.path().join("state").display()
            ));
        }
        if let Some(token) = &config.control_token {
            text.push_str(&files.control_section(token));
            text.push_str(&config.control_extra);
            text.push('\n');
        }
        let binary = config.binary.clone().unwrap_or_else(ldapgate_binary);
        files.launch(
            &text,
            &binary,
            &config.log_filter,
            config.control_token.is_some(),
        )
    }

    /// Starts ldapgate with the configuration `text` made of `files`
    /// (ports, certificates, a directory for state); it must listen on
    /// `files.ldap_port`.
    pub fn start_text(files: ProxyFiles, text: &str, control: bool) -> Proxy {
        files
            .launch(text, &ldapgate_binary(), TEST_LOG_FILTER, control)
            .unwrap_or_else(|log| panic!("ldapgate did not start:\n{log}"))
    }

    pub fn ldap_url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.ldap_port)
    }

    /// The certificates carry 127.0.0.1 as an IP SAN. (Not `localhost`:
    /// libldap replaces that with the machine's FQDN before checking names.)
    pub fn ldaps_url(&self) -> String {
        format!("ldaps://127.0.0.1:{}", self.ldaps_port)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.ldap_port))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The ldapgate process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to `within` for the process to exit.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < within {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Waits up to 10 s for `text` to appear in the log.
    pub fn wait_for_log(&self, text: &str) {
        self.wait_for_log_times(text, 1);
    }

    /// Waits up to 10 s for `text` to appear `times` times in the log.
    pub fn wait_for_log_times(&self, text: &str, times: usize) {
        let start = Instant::now();
        while self.log().matches(text).count() < times {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "`{text}` not logged {times} times within 10s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Panics with the log if the process has exited (e.g. panicked).
    pub fn assert_alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("ldapgate exited with {status}:\n{}", self.log());
        }
        assert!(
            !self.log().contains("panicked"),
            "ldapgate panicked:\n{}",
            self.log()
        );
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs an OpenLDAP command-line tool with TLS trust for `ca`.
pub fn ldap_tool(
    tool: &str,
    ca: &Path,
    args: &[&str],
    stdin: Option<&str>,
) -> std::process::Output {
    let mut cmd = Command::new(require_program(tool, "ldap-utils"));
    cmd.args(args)
        .env("LDAPTLS_CACERT", ca)
        .env("LDAPTLS_REQCERT", "demand");
    run_with_stdin(cmd, stdin)
}

/// Runs `cmd` with `stdin` as its standard input, capturing its output.
pub fn run_with_stdin(mut cmd: Command, stdin: Option<&str>) -> std::process::Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

/// stdout and stderr of a tool, for assertion messages.
pub fn show(out: &std::process::Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// An async ldap3 connection through `url`.
pub async fn connect(url: &str, certs: Option<&Certs>, starttls: bool) -> ldap3::Ldap {
    let mut settings = ldap3::LdapConnSettings::new()
        .set_conn_timeout(Duration::from_secs(10))
        .set_starttls(starttls);
    if let Some(c) = certs {
        settings = settings.set_config(c.client_config());
    }
    let (conn, ldap) = ldap3::LdapConnAsync::with_settings(settings, url)
        .await
        .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
    ldap3::drive!(conn);
    ldap
}

/// A search that must succeed, its entries parsed.
pub async fn search_ok(
    ldap: &mut ldap3::Ldap,
    base: &str,
    scope: ldap3::Scope,
    filter: &str,
    attrs: &[&str],
) -> Vec<ldap3::SearchEntry> {
    let (entries, _) = ldap
        .search(base, scope, filter, attrs.to_vec())
        .await
        .unwrap_or_else(|e| panic!("search {base} {filter}: {e}"))
        .success()
        .unwrap_or_else(|e| panic!("search {base} {filter}: {e}"));
    entries
        .into_iter()
        .map(ldap3::SearchEntry::construct)
        .collect()
}

/// An HTTP reply read by curl.
#[derive(Debug)]
pub struct HttpReply {
    pub status: u16,
    pub headers: String,
    pub body: String,
}

impl HttpReply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }

    /// The body as NDJSON lines.
    pub fn ndjson(&self) -> Vec<serde_json::Value> {
        json_lines(&self.body)
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }
}

/// A request to the control channel with curl, trusting ldapgate's CA.
pub fn control_request(
    proxy: &Proxy,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> HttpReply {
    let curl = require_program("curl", "curl");
    let headers_file = proxy.dir.path().join(format!("h-{}", free_port()));
    let body_file = proxy.dir.path().join(format!("b-{}", free_port()));
    let mut cmd = Command::new(curl);
    cmd.args([
        "-sS",
        "--max-time",
        "20",
        "-X",
        method,
        "-w",
        "%{http_code}",
    ])
    .arg("--cacert")
    .arg(&proxy.certs.ca_pem)
    .arg("-D")
    .arg(&headers_file)
    .arg("-o")
    .arg(&body_file)
    .arg(format!("https://127.0.0.1:{}{path}", proxy.control_port));
    if let Some(t) = token {
        cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    if let Some(b) = body {
        cmd.args(["-H", "Content-Type: application/json", "--data-binary", b]);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "curl failed: {}", show(&out));
    HttpReply {
        status: String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0),
        headers: std::fs::read_to_string(&headers_file).unwrap_or_default(),
        body: std::fs::read_to_string(&body_file).unwrap_or_default(),
    }
}

/// The outcome of one sign-in over each of the three channels: the JSON of
/// `ldapgate authenticate` (with the proxy's own config), the JSON and
/// status of `POST /v1/authenticate`, and an LDAP simple bind with the login
/// as its name (result code and diagnostic).
pub struct ChannelOutcomes {
    pub cli: String,
    pub http: (u16, String),
    pub ldap: (i64, String),
}

pub async fn sign_in_everywhere(
    proxy: &Proxy,
    token: &str,
    login: &str,
    password: &str,
) -> ChannelOutcomes {
    let mut child = Command::new(ldapgate_binary())
        .args(["authenticate", "-c"])
        .arg(&proxy.config_path)
        .args(["--login", login])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    let out = child.wait_with_output().unwrap();
    let cli: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", show(&out)));
    let body = serde_json::json!({ "login": login, "password": password }).to_string();
    let http = control_request(proxy, "POST", "/v1/authenticate", Some(token), Some(&body));
    let mut ldap = connect(&proxy.ldap_url(), None, false).await;
    let bind = ldap.simple_bind(login, password).await.unwrap();
    let _ = ldap.unbind().await;
    ChannelOutcomes {
        cli: cli["outcome"].as_str().unwrap_or("").to_owned(),
        http: (
            http.status,
            http.json()["outcome"].as_str().unwrap_or("").to_owned(),
        ),
        ldap: (bind.rc as i64, bind.text),
    }
}

/// Asserts that the control channels report `outcome` and that the LDAP
/// bind answered `ldap` (result code, diagnostic): the directory's own
/// answer ([`direct_bind`]) where the directory decided, ldapgate's where
/// a rule of its own did.
pub fn assert_everywhere(got: &ChannelOutcomes, login: &str, outcome: &str, ldap: &(i64, String)) {
    let status = match outcome {
        "success" => 200,
        "invalid_credentials" | "ambiguous_login" => 401,
        _ => 403,
    };
    assert_eq!(got.cli, outcome, "{login}: ldapgate authenticate");
    assert_eq!(
        (got.http.0, got.http.1.as_str()),
        (status, outcome),
        "{login}: /v1/authenticate"
    );
    assert_eq!(&got.ldap, ldap, "{login}: LDAP bind");
}

/// A simple bind straight to the directory at `url` (its certificate is
/// not checked: the fixtures' own), with `controls`: the result an LDAP
/// client sees, and the response controls as (type, value).
pub async fn direct_bind_with(
    url: &str,
    dn: &str,
    password: &str,
    controls: Vec<ldap3::controls::RawControl>,
) -> (i64, String, Vec<(String, Option<Vec<u8>>)>) {
    let settings = ldap3::LdapConnSettings::new()
        .set_conn_timeout(Duration::from_secs(10))
        .set_no_tls_verify(true);
    let (conn, mut ldap) = ldap3::LdapConnAsync::with_settings(settings, url)
        .await
        .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
    ldap3::drive!(conn);
    bind_as(&mut ldap, dn, password, controls).await
}

/// A simple bind on `ldap` with `controls`, as [`direct_bind_with`] reports it.
pub async fn bind_as(
    ldap: &mut ldap3::Ldap,
    name: &str,
    password: &str,
    controls: Vec<ldap3::controls::RawControl>,
) -> (i64, String, Vec<(String, Option<Vec<u8>>)>) {
    let r = ldap
        .with_controls(controls)
        .simple_bind(name, password)
        .await
        .unwrap_or_else(|e| panic!("bind as {name}: {e}"));
    let controls = r
        .ctrls
        .iter()
        .map(|c| (c.1.ctype.clone(), c.1.val.clone()))
        .collect();
    (i64::from(r.rc), r.text, controls)
}

/// [`direct_bind_with`] without controls: result code and diagnostic.
pub async fn direct_bind(url: &str, dn: &str, password: &str) -> (i64, String) {
    let (rc, text, _) = direct_bind_with(url, dn, password, Vec::new()).await;
    (rc, text)
}

/// The password policy request control (draft-behera-ldap-password-policy).
pub fn ppolicy_request() -> ldap3::controls::RawControl {
    ldap3::controls::RawControl {
        ctype: "1.3.6.1.4.1.42.2.27.8.5.1".into(),
        crit: false,
        val: None,
    }
}

/// Parses NDJSON text, one value per line.
pub fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// A SearchRequest PDU (subtree, every attribute) encoded by ldapgate's
/// encoder (ldap3_proto's).
pub fn search_request_for(
    msgid: i32,
    base: &str,
    filter: ldap3_proto::proto::LdapFilter,
) -> Vec<u8> {
    use ldap3_proto::proto::*;
    ldapgate::ldap::response::encode(LdapMsg::new(
        msgid,
        LdapOp::SearchRequest(LdapSearchRequest {
            base: base.into(),
            scope: LdapSearchScope::Subtree,
            aliases: LdapDerefAliases::Never,
            sizelimit: 0,
            timelimit: 0,
            typesonly: false,
            filter,
            attrs: vec![],
        }),
    ))
}

/// A slapd holding `ou=bulk` with 3,001 entries of about `size` bytes: a
/// search of it streams for a while. 2 KB (6 MB in all) is the issue's
/// input; 8 KB (24 MB) is more than the socket buffers of both legs hold
/// on loopback (up to 4 MB a sending side each, as the kernel grows them).
pub fn bulk_slapd(size: usize) -> Slapd {
    let mut ldif = format!("dn: ou=bulk,{BASE_DN}\nobjectClass: organizationalUnit\nou: bulk\n\n");
    let filler = "x".repeat(size);
    for i in 0..BULK_ENTRIES {
        ldif.push_str(&format!(
            "dn: cn=b{i},ou=bulk,{BASE_DN}\nobjectClass: organizationalRole\ncn: b{i}\n\
             description: {filler}\n\n"
        ));
    }
    Slapd::start_with_extra_ldif(&ldif)
}

pub const BULK_ENTRIES: usize = 3001;

/// A search of every bulk entry, message `msgid`.
pub fn bulk_search(msgid: i32) -> Vec<u8> {
    search_request_for(
        msgid,
        &format!("ou=bulk,{BASE_DN}"),
        ldap3_proto::proto::LdapFilter::Present("cn".into()),
    )
}

/// A base-scope SearchRequest PDU for the root DSE asking for `attrs`.
pub fn root_dse_request(msgid: i32, attrs: &[&str]) -> Vec<u8> {
    use ldap3_proto::proto::*;
    ldapgate::ldap::response::encode(LdapMsg::new(
        msgid,
        LdapOp::SearchRequest(LdapSearchRequest {
            base: String::new(),
            scope: LdapSearchScope::Base,
            aliases: LdapDerefAliases::Never,
            sizelimit: 0,
            timelimit: 0,
            typesonly: false,
            filter: LdapFilter::Present("objectClass".into()),
            attrs: attrs.iter().map(|a| (*a).into()).collect(),
        }),
    ))
}

/// The next BER TLV on `r`: its tag and content; None at end of stream,
/// a read timeout or a truncated TLV.
pub fn next_tlv(r: &mut impl std::io::Read) -> Option<(u8, Vec<u8>)> {
    let mut head = [0u8; 2];
    r.read_exact(&mut head).ok()?;
    let len = if head[1] & 0x80 == 0 {
        usize::from(head[1])
    } else {
        let mut n = vec![0u8; usize::from(head[1] & 0x7f)];
        r.read_exact(&mut n).ok()?;
        n.iter().fold(0usize, |a, b| a << 8 | usize::from(*b))
    };
    let mut content = vec![0u8; len];
    r.read_exact(&mut content).ok()?;
    Some((head[0], content))
}

/// One report line: (status, server, check, detail).
pub type VerifyLine = (String, String, String, String);

/// `ldapgate verify`: exit code, report lines, and the output for messages.
pub fn verify(config: &Path) -> (i32, Vec<VerifyLine>, String) {
    let out = Command::new(ldapgate_binary())
        .args(["verify", "-c"])
        .arg(config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines = text
        .lines()
        .map(|l| {
            let mut parts = l.split_whitespace();
            let mut next = || parts.next().unwrap_or_default().to_owned();
            let (status, server, check) = (next(), next(), next());
            let detail = parts.collect::<Vec<_>>().join(" ");
            (status, server, check, detail)
        })
        .collect();
    (out.status.code().unwrap_or(-1), lines, show(&out))
}

/// A command left running whose standard output is read line by line on a
/// thread of its own: for searches that stay open (persistent searches).
pub struct RunningLines {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl RunningLines {
    /// Starts `command` with its standard output and error captured.
    pub fn spawn(command: &mut Command) -> RunningLines {
        use std::io::BufRead;
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        RunningLines { child, lines }
    }

    /// True while the command has not exited.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// True when a line containing `needle` arrives within ten seconds.
    pub fn sees(&self, needle: &str) -> bool {
        (0..100).any(|_| {
            self.lines
                .recv_timeout(Duration::from_millis(100))
                .is_ok_and(|line| line.contains(needle))
        })
    }

    /// Kills the command; what it wrote to standard error, for messages.
    pub fn stop(mut self) -> Output {
        let _ = self.child.kill();
        self.child.wait_with_output().unwrap()
    }
}

/// Sends signal `name` ("HUP", "TERM", "STOP", "CONT") to process `pid`.
pub fn send_signal(pid: u32, name: &str) {
    let out = Command::new("kill")
        .args(["-s", name, &pid.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "kill -s {name} {pid}: {}", show(&out));
}

/// A plain HTTP GET on loopback: (status, headers, body). Retries while
/// the port is not yet listening, up to 5 s.
pub fn http_get(port: u16, path: &str) -> (u16, String, String) {
    use std::io::Read;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let start = Instant::now();
    let mut tcp = loop {
        match TcpStream::connect(addr) {
            Ok(t) => break t,
            Err(e) if start.elapsed() > Duration::from_secs(5) => {
                panic!("GET {path} on port {port}: {e}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(tcp, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut reply = String::new();
    tcp.read_to_string(&mut reply).unwrap();
    let (head, body) = reply.split_once("\r\n\r\n").unwrap_or((&reply, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_owned(), body.to_owned())
}

/// The value of one series in a Prometheus text exposition (the series
/// written as Prometheus writes it, labels sorted by name); None when absent.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// The SPKI pin (`sha256/<base64>`) of the first certificate in a PEM file.
pub fn spki_pin(pem: &Path) -> String {
    use rustls_pki_types::pem::PemObject;
    let der = rustls_pki_types::CertificateDer::from_pem_file(pem).unwrap();
    ldapgate::tls::CertFingerprints::of(&der)
        .unwrap()
        .spki
        .to_string()
}
