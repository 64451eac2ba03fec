//! A real Samba AD DC for Active Directory behaviour: provisioned once per
//! test process, users in every account state created with samba-tool.
//!
//! Samba serves LDAP on the fixed ports 389 and 636, so one instance is
//! shared by the tests of a process. It runs with `-i` and exits when its
//! standard input closes, that is when the test process ends.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use rustls_pki_types::pem::PemObject;

use super::{require_program, show};

/// An OpenLDAP tool bound as the AD administrator over LDAPS. Only for
/// setting the fixture up: Samba's self-signed certificate names the host,
/// not 127.0.0.1, so libldap is told not to check it here.
pub fn admin_tool(tool: &str, args: &[&str], stdin: Option<&str>) -> std::process::Output {
    let mut cmd = Command::new(require_program(tool, "ldap-utils"));
    cmd.args([
        "-x",
        "-H",
        "ldaps://127.0.0.1:636",
        "-D",
        AD_ADMIN_DN,
        "-w",
        AD_ADMIN_PW,
    ])
    .args(args)
    .env("LDAPTLS_REQCERT", "never");
    super::run_with_stdin(cmd, stdin)
}

pub const AD_BASE_DN: &str = "DC=example,DC=com";
pub const AD_ADMIN_DN: &str = "CN=Administrator,CN=Users,DC=example,DC=com";
pub const AD_ADMIN_PW: &str = "Adm1n!Passw0rd";

/// Users and their passwords. `lck` is locked out by the tests themselves;
/// `wpw` takes the wrong passwords of the all-channel test, three of them,
/// which must not add up with others' on one account (the domain locks an
/// account at three).
pub const AD_USERS: &[(&str, &str)] = &[
    ("ada", "Ada!Passw0rd1"),
    ("wpw", "Wpw!Passw0rd1"),
    ("dis", "Dis!Passw0rd1"),
    ("exp", "Exp!Passw0rd1"),
    ("mcp", "Mcp!Passw0rd1"),
    ("lck", "Lck!Passw0rd1"),
];

pub struct SambaAd {
    pub dir: PathBuf,
    /// The SPKI pin of Samba's self-signed certificate, whose name (the
    /// host's FQDN) does not match 127.0.0.1: pins are how to trust it.
    pub pin: String,
    /// The administrator's password in a file, for `bind_password_file`
    /// (written once: tests running side by side read it).
    pub bind_password_file: PathBuf,
    _stdin: Mutex<ChildStdin>,
}

/// The shared Samba AD DC, started on first use.
pub fn samba() -> &'static SambaAd {
    static SAMBA: OnceLock<SambaAd> = OnceLock::new();
    SAMBA.get_or_init(start)
}

fn port_open(port: u16) -> bool {
    TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .is_ok()
}

impl SambaAd {
    /// `samba-tool ARGS` against this domain, which must succeed.
    pub fn tool(&self, args: &[&str]) {
        samba_tool(&self.dir, args);
    }
}

fn samba_tool(dir: &std::path::Path, args: &[&str]) {
    let out = Command::new(require_program("samba-tool", "samba samba-ad-dc"))
        .args(args)
        .arg("-s")
        .arg(dir.join("etc/smb.conf"))
        .output()
        .unwrap();
    assert!(out.status.success(), "samba-tool {args:?}: {}", show(&out));
}

fn start() -> SambaAd {
    let samba = require_program("samba", "samba samba-ad-dc");
    assert!(
        !port_open(389) && !port_open(636),
        "ports 389/636 are in use on 127.0.0.1; Samba AD needs them: stop the other LDAP server"
    );
    let dir = tempfile::tempdir().unwrap().keep();
    let out = Command::new(require_program("samba-tool", "samba samba-ad-dc"))
        .args([
            "domain",
            "provision",
            "--realm=EXAMPLE.COM",
            "--domain=EXAMPLE",
            "--server-role=dc",
            "--dns-backend=NONE",
            &format!("--adminpass={AD_ADMIN_PW}"),
            &format!("--targetdir={}", dir.display()),
            "--option=interfaces=lo",
            "--option=bind interfaces only=yes",
            "--option=server services=ldap",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "samba-tool domain provision: {}",
        show(&out)
    );
    for (user, pw) in AD_USERS {
        if *user == "mcp" {
            // pwdLastSet = 0: the password must change (sub-code 773).
            samba_tool(
                &dir,
                &["user", "create", user, pw, "--must-change-at-next-login"],
            );
        } else {
            samba_tool(&dir, &["user", "create", user, pw]);
        }
    }
    samba_tool(&dir, &["user", "disable", "dis"]);
    samba_tool(&dir, &["user", "setexpiry", "exp", "--days=0"]);
    samba_tool(
        &dir,
        &[
            "domain",
            "passwordsettings",
            "set",
            "--account-lockout-threshold=3",
        ],
    );

    let log = std::fs::File::create(dir.join("samba.log")).unwrap();
    let mut child = Command::new(samba)
        .args(["-i", "-M", "single", "-s"])
        .arg(dir.join("etc/smb.conf"))
        .stdin(Stdio::piped())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    let started = Instant::now();
    // Ready when an administrator bind over LDAPS works.
    loop {
        let out = admin_tool("ldapwhoami", &[], None);
        // Samba does not implement Who am I?, but the bind before it
        // succeeded when the error is about the extended operation.
        let text = String::from_utf8_lossy(&out.stderr);
        if out.status.success() || text.contains("not supported") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "Samba did not serve LDAPS within 60s: {}",
            show(&out)
        );
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "samba exited with {status}; see {}",
                dir.join("samba.log").display()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // Attributes samba-tool does not set.
    let modify = format!(
        "dn: CN=ada,CN=Users,{AD_BASE_DN}\nchangetype: modify\nreplace: mail\nmail: ada.lovelace@example.com\n-\n\
         replace: mobile\nmobile: +8613900000001\n"
    );
    let out = admin_tool("ldapmodify", &[], Some(&modify));
    assert!(out.status.success(), "ldapmodify on Samba: {}", show(&out));
    let cert = std::fs::read(dir.join("private/tls/cert.pem")).unwrap();
    let der = rustls_pki_types::CertificateDer::from_pem_slice(&cert).unwrap();
    let pin = ldapgate::tls::CertFingerprints::of(&der)
        .unwrap()
        .spki
        .to_string();
    let bind_password_file = dir.join("ldapgate_bind_password");
    std::fs::write(&bind_password_file, AD_ADMIN_PW).unwrap();
    let mut stdin = stdin;
    let _ = stdin.flush();
    SambaAd {
        dir,
        pin,
        bind_password_file,
        _stdin: Mutex::new(stdin),
    }
}
