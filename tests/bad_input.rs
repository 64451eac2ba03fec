//! Hostile and broken clients: each gets a clean close (with a Notice of
//! Disconnection where LDAP has one), ldapgate does not panic, and other
//! sessions carry on.

mod common;

use common::*;
use ldap3_proto::proto::*;
use ldapgate::ber;
use ldapgate::ldap::response::{encode, read_result, ResultSummary};
use ldapgate::ldap::{oid, tag};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

const ALICE: &str = "uid=alice,ou=people,dc=example,dc=com";

fn bind_request(msgid: i32, dn: &str, pw: &str) -> Vec<u8> {
    encode(LdapMsg::new(
        msgid,
        LdapOp::BindRequest(LdapBindRequest {
            version: 3,
            dn: dn.into(),
            cred: LdapBindCred::Simple(pw.into()),
        }),
    ))
}

fn search_request(msgid: i32, base: &str) -> Vec<u8> {
    search_request_for(msgid, base, LdapFilter::Present("objectClass".into()))
}

fn start_tls_request(msgid: i32) -> Vec<u8> {
    encode(LdapMsg::new(
        msgid,
        LdapOp::ExtendedRequest(LdapExtendedRequest {
            name: oid::START_TLS.into(),
            value: None,
        }),
    ))
}

/// A raw client socket.
struct Raw {
    tcp: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    fn connect(port: u16) -> Raw {
        let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
        tcp.set_nodelay(true).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Raw {
            tcp,
            buf: Vec::new(),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.tcp.write_all(bytes).unwrap();
    }

    /// The next PDU, or None at end of stream.
    fn next_pdu(&mut self) -> Option<Vec<u8>> {
        loop {
            match ber::peek_pdu(&self.buf, 1 << 24) {
                Ok(h) => return Some(self.buf.drain(..h.len).collect()),
                Err(ber::FrameError::Incomplete) => {}
                Err(e) => panic!("ldapgate sent malformed BER: {e}"),
            }
            let mut chunk = [0u8; 16384];
            match self.tcp.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
                Err(e) => panic!("reading from ldapgate: {e}"),
            }
        }
    }

    fn next_result(&mut self) -> ResultSummary {
        let pdu = self
            .next_pdu()
            .expect("a response before the connection closed");
        read_result(&pdu).unwrap()
    }

    /// Reads until the server closes; returns the PDUs seen on the way.
    fn until_closed(&mut self) -> Vec<Vec<u8>> {
        let mut seen = Vec::new();
        while let Some(pdu) = self.next_pdu() {
            seen.push(pdu);
        }
        seen
    }
}

fn notice(pdus: &[Vec<u8>]) -> ResultSummary {
    let last = pdus.last().expect("a Notice of Disconnection before close");
    let r = read_result(last).unwrap();
    assert_eq!(r.msgid, 0, "unsolicited");
    assert_eq!(
        r.response_name.as_deref(),
        Some(oid::NOTICE_OF_DISCONNECTION)
    );
    r
}

/// Another client still gets served.
fn others_still_served(proxy: &mut Proxy) {
    let out = ldap_tool(
        "ldapwhoami",
        &proxy.certs.ca_pem,
        &["-x", "-H", &proxy.ldap_url(), "-D", ALICE, "-w", "alice-pw"],
        None,
    );
    assert!(out.status.success(), "{}", show(&out));
    proxy.assert_alive();
}

fn setup() -> (Slapd, Proxy) {
    let slapd = Slapd::start();
    let proxy = Proxy::start(ProxyConfig::ldaps(&slapd).server("max_message_bytes = 65536"));
    (slapd, proxy)
}

#[test]
fn malformed_ber_gets_a_protocol_error_notice() {
    let (_slapd, mut proxy) = setup();
    for garbage in [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        vec![0x30, 0x80, 0x02, 0x01, 0x01, 0x42, 0x00, 0x00, 0x00],
        // Valid framing, but the bind's name is not an OCTET STRING.
        vec![
            0x30, 0x0c, 0x02, 0x01, 0x01, 0x60, 0x07, 0x02, 0x01, 0x03, 0x02, 0x00, 0x80, 0x00,
        ],
        // Message ID 0 is the server's.
        bind_request(0, "", ""),
        // A response where a request belongs.
        encode(LdapMsg::new(
            3,
            LdapOp::DelResponse(LdapResult {
                code: LdapResultCode::Success,
                matcheddn: String::new(),
                message: String::new(),
                referral: vec![],
            }),
        )),
    ] {
        let mut raw = Raw::connect(proxy.ldap_port);
        raw.send(&garbage);
        let n = notice(&raw.until_closed());
        assert_eq!(n.code, 2, "protocolError for {garbage:02x?}: {n:?}");
    }
    others_still_served(&mut proxy);
}

#[test]
fn oversized_pdu_is_refused_on_its_header() {
    let (_slapd, mut proxy) = setup();
    let mut raw = Raw::connect(proxy.ldap_port);
    // Declares 1 MiB against a 64 KiB limit; only the header is sent.
    raw.send(&[0x30, 0x83, 0x10, 0x00, 0x00, 0x02, 0x01, 0x01]);
    let n = notice(&raw.until_closed());
    assert_eq!(n.code, 11, "adminLimitExceeded: {n:?}");
    assert!(n.diagnostic.contains("exceeds the limit"), "{n:?}");
    others_still_served(&mut proxy);
}

#[test]
fn pdus_written_one_byte_at_a_time_are_reassembled() {
    let (_slapd, mut proxy) = setup();
    let mut raw = Raw::connect(proxy.ldap_port);
    let mut bytes = bind_request(1, ALICE, "alice-pw");
    bytes.extend(search_request(2, ALICE));
    for b in &bytes {
        raw.send(std::slice::from_ref(b));
        std::thread::sleep(Duration::from_millis(1));
    }
    let bind = raw.next_result();
    assert_eq!(
        (bind.msgid, bind.op_tag, bind.code),
        (1, tag::BIND_RESPONSE, 0)
    );
    let entry = raw.next_pdu().unwrap();
    assert_eq!(
        ber::peek_pdu(&entry, 1 << 20).unwrap().op_tag,
        tag::SEARCH_RESULT_ENTRY
    );
    let done = raw.next_result();
    assert_eq!(
        (done.msgid, done.op_tag, done.code),
        (2, tag::SEARCH_RESULT_DONE, 0)
    );
    others_still_served(&mut proxy);
}

#[test]
fn data_pipelined_behind_starttls_closes_the_connection() {
    let (_slapd, mut proxy) = setup();
    let mut raw = Raw::connect(proxy.ldap_port);
    let mut bytes = start_tls_request(1);
    bytes.extend(bind_request(2, ALICE, "alice-pw"));
    raw.send(&bytes);
    let pdus = raw.until_closed();
    // The StartTLS response, and nothing for the injected bind.
    assert_eq!(pdus.len(), 1, "{pdus:02x?}");
    let r = read_result(&pdus[0]).unwrap();
    assert_eq!((r.msgid, r.op_tag), (1, tag::EXTENDED_RESPONSE));
    assert!(proxy.log().contains("StartTlsInjection"), "{}", proxy.log());
    others_still_served(&mut proxy);
}

#[test]
fn starttls_with_an_operation_outstanding_is_refused() {
    let (_slapd, mut proxy) = setup();
    let mut raw = Raw::connect(proxy.ldap_port);
    let mut bytes = search_request(1, &format!("ou=people,{BASE_DN}"));
    bytes.extend(start_tls_request(2));
    raw.send(&bytes);
    let mut starttls = None;
    let mut search_done = None;
    while starttls.is_none() || search_done.is_none() {
        let pdu = raw.next_pdu().expect("responses");
        let h = ber::peek_pdu(&pdu, 1 << 20).unwrap();
        match h.op_tag {
            tag::EXTENDED_RESPONSE => starttls = Some(read_result(&pdu).unwrap()),
            tag::SEARCH_RESULT_DONE => search_done = Some(read_result(&pdu).unwrap()),
            _ => {}
        }
    }
    assert_eq!(starttls.unwrap().code, 1, "operationsError");
    assert_eq!(search_done.unwrap().code, 0);
    others_still_served(&mut proxy);
}

#[test]
fn garbage_on_the_ldaps_port_is_dropped() {
    let (_slapd, mut proxy) = setup();
    let mut raw = Raw::connect(proxy.ldaps_port);
    raw.send(&bind_request(1, ALICE, "alice-pw"));
    let mut rest = Vec::new();
    let _ = raw.tcp.read_to_end(&mut rest);
    // Whatever TLS alert came back, no LDAP response did.
    assert!(ber::peek_pdu(&rest, 1 << 20).is_err(), "{rest:02x?}");
    others_still_served(&mut proxy);
}

#[test]
fn client_vanishing_mid_search_leaves_others_unharmed() {
    let (_slapd, mut proxy) = setup();
    for _ in 0..5 {
        let mut raw = Raw::connect(proxy.ldap_port);
        raw.send(&search_request(1, BASE_DN));
        let first = raw.next_pdu().unwrap();
        assert_eq!(
            ber::peek_pdu(&first, 1 << 20).unwrap().op_tag,
            tag::SEARCH_RESULT_ENTRY
        );
        drop(raw);
    }
    others_still_served(&mut proxy);
}

#[test]
fn an_oversized_search_entry_from_the_directory_is_refused() {
    let slapd = Slapd::start();
    // The smallest allowed upstream limit, below the size of the sample
    // directory's root entry plus a 4 KiB description added below.
    let mut proxy = Proxy::start(ProxyConfig::ldaps(&slapd).directory("max_message_bytes = 1024"));
    let out = ldap_tool(
        "ldapmodify",
        &slapd.certs.ca_pem,
        &["-x", "-H", &slapd.ldap_url(), "-D", ADMIN_DN, "-w", ADMIN_PW],
        Some(&format!(
            "dn: uid=carol,ou=people,{BASE_DN}\nchangetype: modify\nreplace: description\ndescription: {}\n",
            "x".repeat(4096)
        )),
    );
    assert!(out.status.success(), "{}", show(&out));
    let mut raw = Raw::connect(proxy.ldap_port);
    raw.send(&search_request(
        1,
        &format!("uid=carol,ou=people,{BASE_DN}"),
    ));
    let n = notice(&raw.until_closed());
    assert_eq!(n.code, 52, "{n:?}");
    assert!(n.diagnostic.contains("exceeds the limit"), "{n:?}");
    others_still_served(&mut proxy);
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off_after_send_timeout() {
    let slapd = Slapd::start();
    let mut proxy = Proxy::start(ProxyConfig::ldaps(&slapd).server("send_timeout = \"2s\""));
    // A 1 MiB entry, added directly to slapd.
    let mut ldap = connect(&slapd.ldap_url(), None, false).await;
    ldap.simple_bind(ADMIN_DN, ADMIN_PW)
        .await
        .unwrap()
        .success()
        .unwrap();
    let big = format!("uid=big,ou=people,{BASE_DN}");
    let photo = vec![0x5a_u8; 1 << 20];
    ldap.add(
        &big,
        vec![
            (
                "objectClass".as_bytes(),
                std::collections::HashSet::from(["inetOrgPerson".as_bytes()]),
            ),
            (
                "uid".as_bytes(),
                std::collections::HashSet::from(["big".as_bytes()]),
            ),
            (
                "cn".as_bytes(),
                std::collections::HashSet::from(["Big".as_bytes()]),
            ),
            (
                "sn".as_bytes(),
                std::collections::HashSet::from(["B".as_bytes()]),
            ),
            (
                "jpegPhoto".as_bytes(),
                std::collections::HashSet::from([photo.as_slice()]),
            ),
        ],
    )
    .await
    .unwrap()
    .success()
    .unwrap();
    // 32 MiB of answers requested, none read: socket buffers fill up.
    let mut raw = Raw::connect(proxy.ldap_port);
    let mut requests = Vec::new();
    for id in 1..=32 {
        requests.extend(search_request(id, &big));
    }
    raw.send(&requests);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !proxy.log().contains("client stopped reading") {
        assert!(
            std::time::Instant::now() < deadline,
            "session not ended:\n{}",
            proxy.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(raw);
    others_still_served(&mut proxy);
}
