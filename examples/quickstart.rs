//! Quick start: a throwaway slapd with sample users and ldapgate in front of
//! it, both on loopback, until Ctrl-C. Uses the same fixtures as the tests.
//!
//!     cargo run --example quickstart

#[path = "../tests/common/mod.rs"]
mod common;

use common::*;

fn main() {
    let slapd = Slapd::start();
    let metrics = free_port();
    let proxy = Proxy::start(
        ProxyConfig::ldaps(&slapd)
            .service_account(&slapd)
            .section(&format!("[metrics]\nlisten = \"127.0.0.1:{metrics}\"\n"))
            .control(TOKEN),
    );
    let ca = proxy.certs.ca_pem.display();
    println!(
        "\nldapgate is running in front of a throwaway slapd (upstream over LDAPS).\n\n\
         ldapgate   {ldap}  (StartTLS offered)   {ldaps}   control https://127.0.0.1:{control}\n\
         metrics    http://127.0.0.1:{metrics}/metrics   /healthz   /readyz\n\
         slapd      {slapd_url}  (direct, for comparison)\n\
         config     {config}\n\
         log        {log}\n\
         CA         {ca}\n\n\
         Sample users (password = <uid>-pw): alice, bob, carol, user000..user{last:03}\n\n\
         Try:\n\
         \x20 ldapwhoami -x -H {ldap} -D uid=alice,ou=people,{BASE_DN} -w alice-pw\n\
         \x20 ldapsearch -x -LLL -H {ldap} -b {BASE_DN} '(mobile=+8613800000002)' cn mail\n\
         \x20 LDAPTLS_CACERT={ca} ldapwhoami -x -ZZ -H {ldap} -D uid=bob,ou=people,{BASE_DN} -w bob-pw\n\
         \x20 ldapwhoami -x -H {ldap} -D +8613800000001 -w alice-pw      # sign-in ID instead of a DN\n\
         \x20 curl --cacert {ca} -H 'Authorization: Bearer {TOKEN}' \\\n\
         \x20      --json '{{\"login\":\"bob@example.com\",\"password\":\"bob-pw\"}}' https://127.0.0.1:{control}/v1/authenticate\n\
         \x20 curl --cacert {ca} -H 'Authorization: Bearer {TOKEN}' https://127.0.0.1:{control}/v1/sync/full\n\
         \x20 target/debug/ldapgate fingerprint 127.0.0.1:{slapd_ldaps}\n\
         \x20 target/debug/ldapgate verify -c {config}\n\
         \x20 curl -s http://127.0.0.1:{metrics}/metrics | grep ^ldapgate_auth_total\n\n\
         Ctrl-C stops both.",
        ldap = proxy.ldap_url(),
        ldaps = proxy.ldaps_url(),
        slapd_url = slapd.ldap_url(),
        slapd_ldaps = slapd.ldaps_port,
        config = proxy.config_path.display(),
        control = proxy.control_port,
        log = proxy.log_path.display(),
        last = GENERATED_USERS - 1,
    );
    let (tx, rx) = std::sync::mpsc::channel();
    ctrlc_channel(tx);
    let _ = rx.recv();
    drop(proxy);
    drop(slapd);
}

/// The control channel's bearer token in this throwaway setup.
const TOKEN: &str = "quickstart-token";

/// Waits for SIGINT/SIGTERM on a small runtime, then signals `tx`.
fn ctrlc_channel(tx: std::sync::mpsc::Sender<()>) {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        });
        let _ = tx.send(());
    });
}
