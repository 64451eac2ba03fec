//! TLS servers other than slapd, for what slapd cannot be made to do:
//! `openssl s_server` serving exactly the certificates and cipher suites a
//! test names (a Windows Server 2012 R2 DC's suite list, a chain with a
//! stray certificate). It speaks TLS, not LDAP.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::{free_port, require_program, show, wait_for_port};

/// A running `openssl s_server` on a free loopback port; killed on drop.
pub struct OpensslServer {
    pub port: u16,
    child: Child,
}

impl OpensslServer {
    /// Serves `cert` (leaf) with `key`, plus `args` (e.g. `-tls1_2`,
    /// `-cipher ...`, `-cert_chain FILE`). Answers any request with its
    /// status page (`-www`), so a client never waits on it.
    pub fn start(cert: &Path, key: &Path, args: &[&str]) -> OpensslServer {
        let port = free_port();
        let mut child = Command::new(require_program("openssl", "openssl"))
            .arg("s_server")
            .args(["-accept", &format!("127.0.0.1:{port}")])
            .arg("-cert")
            .arg(cert)
            .arg("-key")
            .arg(key)
            .args(["-www", "-quiet"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for_port(
            SocketAddr::from(([127, 0, 0, 1], port)),
            "openssl s_server",
            &mut child,
        );
        OpensslServer { port, child }
    }

    pub fn ldaps_url(&self) -> String {
        format!("ldaps://127.0.0.1:{}", self.port)
    }
}

impl Drop for OpensslServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A self-signed RSA 2048 certificate for `localhost`/127.0.0.1 with
/// subject `CN={name}`, as a Windows DC has by default (rcgen on ring
/// cannot make RSA keys, so openssl does): (certificate, key) PEM paths.
pub fn rsa_certificate(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let cert = dir.join(format!("{name}.pem"));
    let key = dir.join(format!("{name}.key"));
    let out = Command::new(require_program("openssl", "openssl"))
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "90",
        ])
        .args(["-subj", &format!("/CN={name}")])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(out.status.success(), "openssl req: {}", show(&out));
    (cert, key)
}
