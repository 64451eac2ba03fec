//! A diagnostic TLS 1.2 ClientHello, built by hand, that offers cipher
//! suites rustls does not implement, only to read the server's answer: the
//! suite it chooses and the certificate chain it sends, or its alert. The
//! handshake is never completed with it: after the server's first flight
//! the connection is dropped. Nothing read here is trusted or used for
//! data; it names why a real handshake failed and lets `ldapgate
//! fingerprint` show a certificate ldapgate cannot connect to.
//!
//! Wire formats: RFC 5246 §6.2 (records), §7.4.1.2 (ClientHello), §7.4.1.3
//! (ServerHello), §7.4.2 (Certificate), §7.2 (alerts); extensions from
//! RFC 6066 §3 (server_name), RFC 8422 §5.1 (supported_groups,
//! ec_point_formats), RFC 5246 §7.4.1.4.1 (signature_algorithms), RFC 5746
//! §3.3 (the renegotiation SCSV, which SChannel expects).

use std::time::Duration;

use rustls::{AlertDescription, CipherSuite, ProtocolVersion};
use rustls_pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The most a server's first flight may take before the probe gives up
/// reading it (a certificate chain is a few kilobytes; bytes).
const MAX_FLIGHT: usize = 256 * 1024;

/// The largest TLS record (RFC 5246 §6.2.3: 2^14 plus expansion; bytes).
const MAX_RECORD: usize = (1 << 14) + 2048;

/// Record content types (RFC 5246 §6.2.1).
const ALERT: u8 = 21;
const HANDSHAKE: u8 = 22;

/// Handshake message types (RFC 5246 §7.4).
const CLIENT_HELLO: u8 = 1;
const SERVER_HELLO: u8 = 2;
const CERTIFICATE: u8 = 11;
const SERVER_KEY_EXCHANGE: u8 = 12;
const CERTIFICATE_REQUEST: u8 = 13;
const SERVER_HELLO_DONE: u8 = 14;

/// TLS_EMPTY_RENEGOTIATION_INFO_SCSV (RFC 5746 §3.3).
const RENEGOTIATION_SCSV: u16 = 0x00ff;

/// Groups offered for ECDHE: x25519, secp256r1, secp384r1, secp521r1.
const GROUPS: [u16; 4] = [0x001d, 0x0017, 0x0018, 0x0019];

/// Signature schemes offered: rustls' own, then the SHA-1 ones older
/// servers still sign with.
const SIGNATURE_SCHEMES: [u16; 11] = [
    0x0403, 0x0503, 0x0603, 0x0804, 0x0805, 0x0806, 0x0401, 0x0501, 0x0601, 0x0201, 0x0203,
];

/// What a server answered to a diagnostic ClientHello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerAnswer {
    /// It chose `suite` at `version` and sent `chain` (leaf first; empty
    /// for a suite without certificates).
    Hello {
        version: ProtocolVersion,
        suite: CipherSuite,
        chain: Vec<CertificateDer<'static>>,
    },
    /// It refused with this alert.
    Alert(AlertDescription),
    /// It closed the connection without a word (what SChannel does when no
    /// suite fits).
    Closed,
}

/// Why a server's answer could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    /// More bytes are needed: the usual case while reading, not a failure.
    #[error("the server's answer is incomplete")]
    Incomplete,
    #[error("the server's answer is not TLS: {0}")]
    Malformed(&'static str),
    #[error("the server's first flight exceeds {MAX_FLIGHT} bytes")]
    TooLarge,
    #[error("I/O error: {0}")]
    Io(String),
    #[error("no answer within {}", humantime::format_duration(*.0))]
    Timeout(Duration),
}

/// A TLS 1.2 ClientHello record offering `suites` in this order, with SNI
/// when `host` is a DNS name (RFC 6066 §3 forbids IP addresses there).
pub fn client_hello(host: Option<&str>, suites: &[CipherSuite], random: [u8; 32]) -> Vec<u8> {
    let mut body = vec![0x03, 0x03];
    body.extend_from_slice(&random);
    body.push(0); // no session to resume
    let mut ids: Vec<u8> = suites
        .iter()
        .flat_map(|s| u16::from(*s).to_be_bytes())
        .collect();
    ids.extend_from_slice(&RENEGOTIATION_SCSV.to_be_bytes());
    put_u16_prefixed(&mut body, &ids);
    body.extend_from_slice(&[1, 0]); // compression: null only
    let mut extensions = Vec::new();
    if let Some(host) = host {
        let mut entry = vec![0]; // host_name
        put_u16_prefixed(&mut entry, host.as_bytes());
        let mut list = Vec::new();
        put_u16_prefixed(&mut list, &entry);
        put_extension(&mut extensions, 0x0000, &list);
    }
    let groups: Vec<u8> = GROUPS.iter().flat_map(|g| g.to_be_bytes()).collect();
    let mut list = Vec::new();
    put_u16_prefixed(&mut list, &groups);
    put_extension(&mut extensions, 0x000a, &list);
    put_extension(&mut extensions, 0x000b, &[1, 0]); // uncompressed points
    let schemes: Vec<u8> = SIGNATURE_SCHEMES
        .iter()
        .flat_map(|s| s.to_be_bytes())
        .collect();
    let mut list = Vec::new();
    put_u16_prefixed(&mut list, &schemes);
    put_extension(&mut extensions, 0x000d, &list);
    put_u16_prefixed(&mut body, &extensions);

    let mut handshake = vec![CLIENT_HELLO];
    put_u24_prefixed(&mut handshake, &body);
    // Record version 1.0 for the first record, as every client sends it
    // (RFC 5246 Appendix E.1): some servers refuse anything else.
    let mut record = vec![HANDSHAKE, 0x03, 0x01];
    put_u16_prefixed(&mut record, &handshake);
    record
}

/// Reads the server's answer from the bytes of its first flight received so
/// far: `Incomplete` until the ServerHello and the Certificate message (or
/// the end of the flight) or an alert have arrived.
pub fn read_answer(flight: &[u8]) -> Result<ServerAnswer, ProbeError> {
    let handshake = match reassemble(flight)? {
        Flight::Alert(alert) => return Ok(ServerAnswer::Alert(alert)),
        Flight::Handshake(bytes) => bytes,
    };
    let mut messages = Messages(&handshake);
    let hello = match messages.next_message()? {
        None => return Err(ProbeError::Incomplete),
        Some((SERVER_HELLO, hello)) => hello,
        Some(_) => {
            return Err(ProbeError::Malformed(
                "the first message is not a ServerHello",
            ))
        }
    };
    let (version, suite) = parse_server_hello(hello)?;
    loop {
        match messages.next_message()? {
            Some((CERTIFICATE, body)) => {
                let chain = parse_certificates(body)?;
                return Ok(ServerAnswer::Hello {
                    version,
                    suite,
                    chain,
                });
            }
            Some((SERVER_KEY_EXCHANGE | CERTIFICATE_REQUEST | SERVER_HELLO_DONE, _)) => {
                // A suite without a certificate (anonymous, PSK).
                return Ok(ServerAnswer::Hello {
                    version,
                    suite,
                    chain: Vec::new(),
                });
            }
            Some(_) => {}
            None => return Err(ProbeError::Incomplete),
        }
    }
}

/// Sends a diagnostic ClientHello on `stream` (TCP, after StartTLS when
/// that applies) and reads the answer within `limit`.
pub async fn ask<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    host: Option<&str>,
    suites: &[CipherSuite],
    limit: Duration,
) -> Result<ServerAnswer, ProbeError> {
    let hello = client_hello(host, suites, random());
    let work = async {
        stream
            .write_all(&hello)
            .await
            .map_err(|e| ProbeError::Io(e.to_string()))?;
        let mut flight = Vec::with_capacity(8 * 1024);
        loop {
            match read_answer(&flight) {
                Err(ProbeError::Incomplete) => {}
                done => return done,
            }
            if flight.len() >= MAX_FLIGHT {
                return Err(ProbeError::TooLarge);
            }
            match stream.read_buf(&mut flight).await {
                Ok(0) if flight.is_empty() => return Ok(ServerAnswer::Closed),
                Ok(0) => return Err(ProbeError::Malformed("closed in the middle of its answer")),
                Ok(_) => {}
                Err(e) if flight.is_empty() && is_reset(&e) => return Ok(ServerAnswer::Closed),
                Err(e) => return Err(ProbeError::Io(e.to_string())),
            }
        }
    };
    tokio::time::timeout(limit, work)
        .await
        .map_err(|_| ProbeError::Timeout(limit))?
}

/// True for the ways a server ends a connection instead of answering.
pub fn is_reset(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionReset, UnexpectedEof};
    matches!(
        e.kind(),
        ConnectionReset | ConnectionAborted | UnexpectedEof
    )
}

/// The client random. The probe never completes a handshake, so its
/// secrecy protects nothing; it is random only so that the hello looks like
/// any other.
fn random() -> [u8; 32] {
    use ring::rand::SecureRandom;
    let mut random = [0u8; 32];
    // On failure the zeros serve as well: see above.
    let _ = ring::rand::SystemRandom::new().fill(&mut random);
    random
}

/// The first flight's records, reassembled.
enum Flight {
    /// The handshake-protocol bytes of its records so far.
    Handshake(Vec<u8>),
    /// An alert came before any handshake message.
    Alert(AlertDescription),
}

/// Reassembles the records of `flight` (RFC 5246 §6.2.1: handshake messages
/// may span records, and records may carry several).
fn reassemble(flight: &[u8]) -> Result<Flight, ProbeError> {
    let mut handshake = Vec::new();
    let mut rest = flight;
    while let Some(header) = rest.get(..5) {
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        if header[1] != 0x03 || len > MAX_RECORD {
            return Err(ProbeError::Malformed("not a TLS record"));
        }
        let Some(fragment) = rest.get(5..5 + len) else {
            break;
        };
        match header[0] {
            HANDSHAKE => handshake.extend_from_slice(fragment),
            ALERT if handshake.is_empty() => {
                let description = fragment
                    .get(1)
                    .ok_or(ProbeError::Malformed("an alert without a description"))?;
                return Ok(Flight::Alert(AlertDescription::from(*description)));
            }
            // An alert after the ServerHello: what came before is the answer.
            ALERT => break,
            _ => {
                return Err(ProbeError::Malformed(
                    "a record that is neither handshake nor alert",
                ))
            }
        }
        rest = &rest[5 + len..];
    }
    Ok(Flight::Handshake(handshake))
}

/// Handshake messages, one at a time: (type, body).
struct Messages<'a>(&'a [u8]);

impl<'a> Messages<'a> {
    /// The next complete message; None when the rest is incomplete.
    fn next_message(&mut self) -> Result<Option<(u8, &'a [u8])>, ProbeError> {
        let Some(header) = self.0.get(..4) else {
            return Ok(None);
        };
        let len = u24(&header[1..4]);
        if len > MAX_FLIGHT {
            return Err(ProbeError::TooLarge);
        }
        let Some(body) = self.0.get(4..4 + len) else {
            return Ok(None);
        };
        let kind = header[0];
        self.0 = &self.0[4 + len..];
        Ok(Some((kind, body)))
    }
}

/// The version and suite a ServerHello chose.
fn parse_server_hello(hello: &[u8]) -> Result<(ProtocolVersion, CipherSuite), ProbeError> {
    let short = ProbeError::Malformed("a ServerHello too short for its fields");
    let version = hello.get(..2).ok_or(short.clone())?;
    let session_len = usize::from(*hello.get(34).ok_or(short.clone())?);
    let at = 35 + session_len;
    let suite = hello.get(at..at + 2).ok_or(short)?;
    Ok((
        ProtocolVersion::from(u16::from_be_bytes([version[0], version[1]])),
        CipherSuite::from(u16::from_be_bytes([suite[0], suite[1]])),
    ))
}

/// The certificates of a TLS 1.2 Certificate message, leaf first.
fn parse_certificates(body: &[u8]) -> Result<Vec<CertificateDer<'static>>, ProbeError> {
    let bad = ProbeError::Malformed("a Certificate message whose lengths do not add up");
    let total = u24(body.get(..3).ok_or(bad.clone())?);
    let mut list = body.get(3..3 + total).ok_or(bad.clone())?;
    let mut chain = Vec::new();
    while !list.is_empty() {
        let len = u24(list.get(..3).ok_or(bad.clone())?);
        let der = list.get(3..3 + len).ok_or(bad.clone())?;
        chain.push(CertificateDer::from(der.to_vec()));
        list = &list[3 + len..];
    }
    Ok(chain)
}

fn u24(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .take(3)
        .fold(0, |n, b| (n << 8) | usize::from(*b))
}

fn put_u16_prefixed(out: &mut Vec<u8>, data: &[u8]) {
    // Every caller's data is far below 64 KiB (a hello's fields).
    out.extend_from_slice(&(data.len() as u16).to_be_bytes());
    out.extend_from_slice(data);
}

fn put_u24_prefixed(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
    out.extend_from_slice(data);
}

fn put_extension(out: &mut Vec<u8>, kind: u16, data: &[u8]) {
    out.extend_from_slice(&kind.to_be_bytes());
    put_u16_prefixed(out, data);
}

#[cfg(test)]
mod tests;
