use super::*;

const SUITE: CipherSuite = CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384;

fn record(kind: u8, fragment: &[u8]) -> Vec<u8> {
    let mut r = vec![kind, 0x03, 0x03];
    put_u16_prefixed(&mut r, fragment);
    r
}

fn message(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![kind];
    put_u24_prefixed(&mut m, body);
    m
}

fn server_hello(suite: CipherSuite) -> Vec<u8> {
    let mut body = vec![0x03, 0x03];
    body.extend_from_slice(&[7; 32]);
    body.push(32);
    body.extend_from_slice(&[9; 32]);
    body.extend_from_slice(&u16::from(suite).to_be_bytes());
    body.push(0);
    message(SERVER_HELLO, &body)
}

fn certificate(chain: &[&[u8]]) -> Vec<u8> {
    let mut list = Vec::new();
    for der in chain {
        put_u24_prefixed(&mut list, der);
    }
    let mut body = Vec::new();
    put_u24_prefixed(&mut body, &list);
    message(CERTIFICATE, &body)
}

#[test]
fn a_hello_offers_the_suites_asked_and_names_a_dns_host_only() {
    let suites = [SUITE, CipherSuite::TLS_RSA_WITH_AES_256_GCM_SHA384];
    let hello = client_hello(Some("dc1.example.com"), &suites, [0; 32]);
    assert_eq!(&hello[..3], &[HANDSHAKE, 0x03, 0x01]);
    assert_eq!(
        usize::from(u16::from_be_bytes([hello[3], hello[4]])),
        hello.len() - 5
    );
    assert_eq!(hello[5], CLIENT_HELLO);
    assert_eq!(u24(&hello[6..9]), hello.len() - 9);
    // version, random, empty session id, then the suites and the SCSV.
    let suites_at = 9 + 2 + 32 + 1;
    assert_eq!(&hello[suites_at..suites_at + 2], &[0, 6]);
    assert_eq!(
        &hello[suites_at + 2..suites_at + 8],
        &[0xc0, 0x28, 0x00, 0x9d, 0x00, 0xff]
    );
    let contains = |h: &[u8], needle: &[u8]| h.windows(needle.len()).any(|w| w == needle);
    assert!(contains(&hello, b"dc1.example.com"));
    let without = client_hello(None, &suites, [0; 32]);
    assert!(!contains(&without, b"dc1.example.com"));
    assert_eq!(hello.len() - without.len(), 4 + 5 + "dc1.example.com".len());
}

#[test]
fn a_chosen_suite_and_chain_are_read_across_records_and_only_when_complete() {
    let mut handshake = server_hello(SUITE);
    handshake.extend(certificate(&[b"leaf", b"issuer"]));
    handshake.extend(message(SERVER_HELLO_DONE, &[]));
    // Split across three records at awkward places.
    let mut flight = record(HANDSHAKE, &handshake[..10]);
    flight.extend(record(HANDSHAKE, &handshake[10..50]));
    flight.extend(record(HANDSHAKE, &handshake[50..]));
    let expected = ServerAnswer::Hello {
        version: ProtocolVersion::TLSv1_2,
        suite: SUITE,
        chain: vec![
            CertificateDer::from(b"leaf".to_vec()),
            CertificateDer::from(b"issuer".to_vec()),
        ],
    };
    assert_eq!(read_answer(&flight), Ok(expected));
    let hello_and_cert = 5 + 10 + 5 + 40 + 5 + (handshake.len() - 50 - 4);
    for cut in 0..hello_and_cert {
        assert_eq!(
            read_answer(&flight[..cut]),
            Err(ProbeError::Incomplete),
            "cut at {cut}"
        );
    }
}

#[test]
fn alerts_suites_without_certificates_and_non_tls_answers() {
    let alert = record(ALERT, &[2, 40]);
    assert_eq!(
        read_answer(&alert),
        Ok(ServerAnswer::Alert(AlertDescription::HandshakeFailure))
    );
    let mut anonymous = server_hello(CipherSuite::TLS_RSA_WITH_AES_128_CBC_SHA);
    anonymous.extend(message(SERVER_HELLO_DONE, &[]));
    assert!(matches!(
        read_answer(&record(HANDSHAKE, &anonymous)),
        Ok(ServerAnswer::Hello { chain, .. }) if chain.is_empty()
    ));
    // An LDAP server answering in plain BER.
    let ber = [
        0x30, 0x0c, 0x02, 0x01, 0x01, 0x78, 0x07, 0x0a, 0x01, 0x02, 0x04, 0x00,
    ];
    assert!(matches!(read_answer(&ber), Err(ProbeError::Malformed(_))));
    let not_hello = record(HANDSHAKE, &message(CERTIFICATE, &[0, 0, 0]));
    assert!(matches!(
        read_answer(&not_hello),
        Err(ProbeError::Malformed(_))
    ));
    let bad_lengths = record(
        HANDSHAKE,
        &[server_hello(SUITE), message(CERTIFICATE, &[0, 0, 9])].concat(),
    );
    assert!(matches!(
        read_answer(&bad_lengths),
        Err(ProbeError::Malformed(_))
    ));
}
