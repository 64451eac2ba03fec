//! The HTTP listeners bound what an unauthenticated client can hold (issue
//! 12): silent and trickling peers on the control channel do not keep an
//! authenticated caller out, the metrics listener is capped, HTTP/2 is
//! refused, bodies are read only after the token, 400s quote nothing, and
//! every spelling of the bearer scheme is accepted. Real ldapgate, real
//! slapd, raw TCP/TLS peers (rustls) and curl as the caller.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

const TOKEN: &str = "bounds-token-0123456789";

/// The default `control.max_connections`.
const CONTROL_SLOTS: usize = 256;
/// The default `metrics.max_connections`.
const METRICS_SLOTS: usize = 64;
/// The default `header_timeout` and `body_timeout`, with room for a busy
/// machine: a peer past it must have been closed.
const TIMEOUT_AND_SLACK: Duration = Duration::from_secs(10 + 8);

fn proxy(slapd: &Slapd, metrics_port: Option<u16>) -> Proxy {
    let mut config = ProxyConfig::ldaps(slapd)
        .service_account(slapd)
        .control(TOKEN);
    if let Some(port) = metrics_port {
        config = config.section(&format!("[metrics]\nlisten = \"127.0.0.1:{port}\""));
    }
    Proxy::start(config)
}

fn control_addr(proxy: &Proxy) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], proxy.control_port))
}

/// A sign-in as the cloud side makes it: curl, a valid token.
fn sign_in(proxy: &Proxy) -> HttpReply {
    let body = json!({ "login": "alice", "password": "alice-pw" }).to_string();
    control_request(proxy, "POST", "/v1/authenticate", Some(TOKEN), Some(&body))
}

/// curl to the control channel with exactly these extra header lines.
fn curl(proxy: &Proxy, headers: &[&str], body: &str) -> (u16, String) {
    let curl = require_program("curl", "curl");
    let mut cmd = Command::new(curl);
    cmd.args(["-sS", "--max-time", "20", "-o", "-", "-w", "\n%{http_code}"])
        .arg("--cacert")
        .arg(&proxy.certs.ca_pem)
        .args([
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            body,
        ]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    cmd.arg(format!(
        "https://127.0.0.1:{}/v1/authenticate",
        proxy.control_port
    ));
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    (status.trim().parse().unwrap_or(0), body.to_owned())
}

/// A client connection: TLS (rustls) to the control channel, or plain TCP.
enum Peer {
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
    Plain(TcpStream),
}

impl Peer {
    /// Connects and finishes the TLS handshake; None when the listener
    /// closed the connection first.
    fn tls(addr: SocketAddr, ca_der: &[u8], alpn: &[&[u8]]) -> Option<Peer> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(rustls_pki_types::CertificateDer::from(ca_der.to_vec()))
            .unwrap();
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let mut sock = TcpStream::connect(addr).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        while conn.is_handshaking() {
            conn.complete_io(&mut sock).ok()?;
        }
        // The client's Finished is on its way; the server's handshake ends
        // when it arrives.
        conn.complete_io(&mut sock).ok()?;
        Some(Peer::Tls(Box::new(rustls::StreamOwned::new(conn, sock))))
    }

    fn plain(addr: SocketAddr) -> Peer {
        Peer::Plain(TcpStream::connect(addr).unwrap())
    }

    fn tcp(&self) -> &TcpStream {
        match self {
            Peer::Tls(s) => &s.sock,
            Peer::Plain(s) => s,
        }
    }

    fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Peer::Tls(s) => s.write_all(bytes).and_then(|()| s.flush()),
            Peer::Plain(s) => s.write_all(bytes),
        }
    }

    fn read_some(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Peer::Tls(s) => s.read(buf),
            Peer::Plain(s) => s.read(buf),
        }
    }

    /// Whether the server has closed the connection, looking for `wait`.
    fn closed_within(&mut self, wait: Duration) -> bool {
        self.read_until_closed(wait).is_some()
    }

    /// What the server sent until it closed the connection, if it did
    /// within `wait`.
    fn read_until_closed(&mut self, wait: Duration) -> Option<String> {
        let deadline = Instant::now() + wait;
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.tcp()
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            match self.read_some(&mut buf) {
                Ok(0) => return Some(String::from_utf8_lossy(&got).into_owned()),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return None
                }
                Err(_) => return Some(String::from_utf8_lossy(&got).into_owned()),
            }
        }
    }

    /// The first bytes the server answers with, waiting up to `wait`.
    fn answer(&mut self, wait: Duration) -> String {
        self.tcp().set_read_timeout(Some(wait)).unwrap();
        let mut buf = [0u8; 4096];
        match self.read_some(&mut buf) {
            Ok(n) => String::from_utf8_lossy(&buf[..n]).into_owned(),
            Err(e) => format!("<no answer: {e}>"),
        }
    }
}

/// How many of `peers` the server has not closed (each looked at briefly).
fn still_open(peers: &mut [Peer]) -> usize {
    let mut open = 0;
    for p in peers {
        if !p.closed_within(Duration::from_millis(5)) {
            open += 1;
        }
    }
    open
}

/// `count` peers that finish the TLS handshake and send nothing.
fn silent_peers(proxy: &Proxy, count: usize) -> Vec<Peer> {
    (0..count)
        .filter_map(|_| Peer::tls(control_addr(proxy), &proxy.certs.ca_der, &[]))
        .collect()
}

/// A request's header announcing a 200-byte body, and its first byte.
fn body_pending(token: Option<&str>) -> Vec<u8> {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    format!(
        "POST /v1/authenticate HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}\
         Content-Type: application/json\r\nContent-Length: 200\r\n\r\n{{"
    )
    .into_bytes()
}

#[test]
fn silent_tls_peers_do_not_keep_an_authenticated_caller_out() {
    let slapd = Slapd::start();
    let mut proxy = proxy(&slapd, None);
    let opened = Instant::now();
    let mut peers = silent_peers(&proxy, CONTROL_SLOTS + 44);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        still_open(&mut peers),
        CONTROL_SLOTS,
        "max_connections silent peers hold every slot"
    );

    let started = Instant::now();
    let ok = sign_in(&proxy);
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(ok.json()["outcome"], "success");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered at once, not when the silent peers time out: {:?}",
        started.elapsed()
    );

    // Every silent peer is closed by header_timeout (10 s by default) after
    // its handshake, whether or not a newcomer wanted its slot.
    let left = TIMEOUT_AND_SLACK.saturating_sub(opened.elapsed());
    let deadline = Instant::now() + left;
    for peer in &mut peers {
        let wait = deadline.saturating_duration_since(Instant::now());
        assert!(
            peer.closed_within(wait.max(Duration::from_millis(10))),
            "a silent peer still open {:?} after its handshake",
            opened.elapsed()
        );
    }
    proxy.assert_alive();
}

/// Peers that send a request's header and then its body one byte a second.
fn trickle(mut peers: Vec<Peer>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<Peer>> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            for p in &mut peers {
                let _ = p.send(b" ");
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        peers
    })
}

#[test]
fn trickling_bodies_with_a_token_do_not_keep_an_authenticated_caller_out() {
    let slapd = Slapd::start();
    let mut proxy = proxy(&slapd, None);
    let mut peers = Vec::new();
    for _ in 0..CONTROL_SLOTS + 44 {
        if let Some(mut p) = Peer::tls(control_addr(&proxy), &proxy.certs.ca_der, &[]) {
            if p.send(&body_pending(Some(TOKEN))).is_ok() {
                peers.push(p);
            }
        }
    }
    let opened = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let trickling = trickle(peers, stop.clone());

    let started = Instant::now();
    let ok = sign_in(&proxy);
    assert_eq!(ok.status, 200, "{ok:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered at once: {:?}",
        started.elapsed()
    );

    // A body still trickling when body_timeout (10 s) has passed since its
    // header is answered 408 and its connection closed.
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    let mut peers = trickling.join().unwrap();
    let deadline = opened + TIMEOUT_AND_SLACK;
    let mut timed_out = 0;
    for p in &mut peers {
        let wait = deadline.saturating_duration_since(Instant::now());
        let answer = p
            .read_until_closed(wait.max(Duration::from_millis(10)))
            .unwrap_or_else(|| panic!("a trickling peer still open after {:?}", opened.elapsed()));
        if answer.starts_with("HTTP/1.1 408") {
            timed_out += 1;
        } else {
            // Closed to make room for a newer connection: nothing sent.
            assert_eq!(answer, "", "{answer}");
        }
    }
    assert!(timed_out >= CONTROL_SLOTS - 2, "{timed_out} answered 408");
    proxy.assert_alive();
}

#[test]
fn a_request_without_a_valid_token_is_refused_before_its_body_arrives() {
    let slapd = Slapd::start();
    let proxy = proxy(&slapd, None);
    for token in [None, Some("wrong-token")] {
        let mut p = Peer::tls(control_addr(&proxy), &proxy.certs.ca_der, &[]).unwrap();
        p.send(&body_pending(token)).unwrap();
        // 199 bytes of the body never come.
        let answer = p
            .read_until_closed(Duration::from_secs(5))
            .unwrap_or_else(|| panic!("token {token:?}: not answered while the body is pending"));
        assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    }
    // The same many times over does not hold slots: the caller gets in.
    let mut peers = Vec::new();
    for _ in 0..CONTROL_SLOTS + 44 {
        if let Some(mut p) = Peer::tls(control_addr(&proxy), &proxy.certs.ca_der, &[]) {
            let _ = p.send(&body_pending(None));
            peers.push(p);
        }
    }
    assert_eq!(sign_in(&proxy).status, 200);
}

#[test]
fn a_body_over_the_limit_is_refused_from_its_length() {
    let slapd = Slapd::start();
    let proxy = proxy(&slapd, None);
    let mut p = Peer::tls(control_addr(&proxy), &proxy.certs.ca_der, &[]).unwrap();
    p.send(
        format!(
            "POST /v1/authenticate HTTP/1.1\r\nHost: 127.0.0.1\r\n\
             Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n\
             Content-Length: 10000000\r\n\r\n{{"
        )
        .as_bytes(),
    )
    .unwrap();
    let answer = p.answer(Duration::from_secs(5));
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
}

#[test]
fn a_header_section_over_the_limit_is_refused() {
    let slapd = Slapd::start();
    let proxy = proxy(&slapd, None);
    let mut p = Peer::tls(control_addr(&proxy), &proxy.certs.ca_der, &[]).unwrap();
    let filler = "x".repeat(1000);
    let mut request = String::from("GET /v1/sync/full HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for i in 0..40 {
        request.push_str(&format!("X-Filler-{i}: {filler}\r\n"));
    }
    request.push_str("\r\n");
    // The listener may close before every byte is taken.
    let _ = p.send(request.as_bytes());
    let answer = p.answer(Duration::from_secs(5));
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
}

/// The HTTP/2 connection preface (RFC 9113 §3.4) and an empty SETTINGS frame.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

#[test]
fn http2_is_refused_on_both_listeners() {
    let slapd = Slapd::start();
    let metrics_port = free_port();
    let proxy = proxy(&slapd, Some(metrics_port));

    let mut p = Peer::tls(control_addr(&proxy), &proxy.certs.ca_der, &[b"h2"]).unwrap();
    if let Peer::Tls(s) = &p {
        assert_eq!(s.conn.alpn_protocol(), None, "h2 is not negotiated");
    }
    // hyper (HTTP/1.1 only) recognises the preface and closes without an
    // answer; an HTTP/2 server would send its SETTINGS and keep the
    // connection open.
    p.send(H2_PREFACE).unwrap();
    let answer = p
        .read_until_closed(Duration::from_secs(5))
        .expect("control: closed at once");
    assert_eq!(answer, "", "control");

    let mut m = Peer::plain(wait_for_metrics(metrics_port));
    m.send(H2_PREFACE).unwrap();
    let answer = m
        .read_until_closed(Duration::from_secs(5))
        .expect("metrics: closed at once");
    assert_eq!(answer, "", "metrics");
}

fn wait_for_metrics(port: u16) -> SocketAddr {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let start = Instant::now();
    while TcpStream::connect(addr).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "metrics never listened"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    addr
}

fn scrape(port: u16) -> (u16, String) {
    let out = Command::new(require_program("curl", "curl"))
        .args(["-sS", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}"])
        .arg(format!("http://127.0.0.1:{port}/metrics"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    (status.trim().parse().unwrap_or(0), body.to_owned())
}

#[test]
fn the_metrics_listener_is_capped_and_still_scraped() {
    let slapd = Slapd::start();
    let metrics_port = free_port();
    let mut proxy = proxy(&slapd, Some(metrics_port));
    let addr = wait_for_metrics(metrics_port);
    std::thread::sleep(Duration::from_millis(200));
    let opened = Instant::now();
    let mut peers: Vec<Peer> = (0..1000)
        .map(|_| {
            let mut p = Peer::plain(addr);
            let _ = p.send(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n");
            p
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        still_open(&mut peers),
        METRICS_SLOTS,
        "half-open connections held"
    );

    let (status, body) = scrape(metrics_port);
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("ldapgate_connections_active{directory=\"\",listener=\"metrics\"}"),
        "the scrape counts its own listener"
    );
    // 936 of the 1000 closed for newer ones, and one for the scrape.
    let displaced = body
        .lines()
        .find_map(|l| {
            l.strip_prefix(
                "ldapgate_connection_slots_full_total{closed=\"oldest\",listener=\"metrics\"} ",
            )
        })
        .and_then(|v| v.parse::<u64>().ok());
    assert_eq!(displaced, Some(1000 - METRICS_SLOTS as u64 + 1), "{body}");

    let deadline = opened + TIMEOUT_AND_SLACK;
    for p in &mut peers {
        let wait = deadline.saturating_duration_since(Instant::now());
        assert!(
            p.closed_within(wait.max(Duration::from_millis(10))),
            "a half-open metrics connection still open after {:?}",
            opened.elapsed()
        );
    }
    proxy.assert_alive();
}

#[test]
fn bad_request_answers_quote_nothing_from_the_request() {
    let slapd = Slapd::start();
    let proxy = proxy(&slapd, None);
    for (body, field, secret) in [
        (r#"{"login":48151623,"password":"x"}"#, "login", "48151623"),
        (r#"{"login":"alice","password":true}"#, "password", "true"),
        (
            r#"{"login":"alice","password":["pw-in-array"]}"#,
            "password",
            "pw-in-array",
        ),
        (
            r#"{"login":"alice","password":{"k":"pw-in-object"}}"#,
            "password",
            "pw-in-object",
        ),
        (
            r#"{"login":"alice","password":"p","leak-me-key":1}"#,
            "login",
            "leak-me-key",
        ),
        (r#"{"login":"alice"}"#, "password", "alice"),
        (
            r#"{"login":"alice-secret","password":"p""#,
            "JSON",
            "alice-secret",
        ),
        (r#""just-a-string""#, "login", "just-a-string"),
    ] {
        let r = control_request(&proxy, "POST", "/v1/authenticate", Some(TOKEN), Some(body));
        assert_eq!(r.status, 400, "{body}: {r:?}");
        let detail = r.json()["detail"].as_str().unwrap_or_default().to_owned();
        assert!(detail.contains(field), "{body}: {detail}");
        assert!(
            !r.body.contains(secret),
            "{body}: the answer quotes it: {}",
            r.body
        );
    }
}

#[test]
fn every_spelling_of_the_bearer_scheme_is_accepted() {
    let slapd = Slapd::start();
    let proxy = proxy(&slapd, None);
    let body = json!({ "login": "alice", "password": "alice-pw" }).to_string();
    for field in [
        format!("Authorization: bearer {TOKEN}"),
        format!("Authorization: BEARER {TOKEN}"),
        format!("Authorization: bEaReR {TOKEN}"),
        format!("Authorization: Bearer  {TOKEN}"),
        format!("Authorization: Bearer   {TOKEN}"),
        format!("Authorization: Bearer\t{TOKEN}"),
    ] {
        let (status, answer) = curl(&proxy, &[&field], &body);
        assert_eq!(status, 200, "{field:?}: {answer}");
    }
    for field in [
        format!("Authorization: Bearer{TOKEN}"),
        format!("Authorization: Basic {TOKEN}"),
        "Authorization: Bearer".to_owned(),
        format!("Authorization: Bearer {TOKEN}x"),
    ] {
        let (status, answer) = curl(&proxy, &[&field], &body);
        assert_eq!((status, answer.as_str()), (401, ""), "{field:?}");
    }
}

/// Sends a complete authenticated sign-in on `p` and reads the answer,
/// leaving the connection open (HTTP/1.1 keep-alive).
fn signed_in_connection(proxy: &Proxy) -> Peer {
    let mut p = Peer::tls(control_addr(proxy), &proxy.certs.ca_der, &[]).unwrap();
    let body = json!({ "login": "alice", "password": "alice-pw" }).to_string();
    p.send(
        format!(
            "POST /v1/authenticate HTTP/1.1\r\nHost: 127.0.0.1\r\n\
             Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .unwrap();
    let answer = p.answer(Duration::from_secs(10));
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    p
}

#[test]
fn a_full_control_channel_closes_its_oldest_unauthenticated_connection() {
    let slapd = Slapd::start();
    let proxy = Proxy::start(
        ProxyConfig::ldaps(&slapd)
            .service_account(&slapd)
            .control(TOKEN)
            .control_setting("max_connections = 4"),
    );
    let addr = control_addr(&proxy);
    // Four connections that never start their TLS handshake hold every slot.
    let mut held: Vec<Peer> = (0..4).map(|_| Peer::plain(addr)).collect();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(still_open(&mut held), 4);
    // A fifth takes the slot of the oldest.
    let mut fifth = Peer::plain(addr);
    assert!(
        held[0].closed_within(Duration::from_secs(2)),
        "the oldest is closed at once"
    );
    assert_eq!(still_open(&mut held[1..]), 3);
    assert!(
        !fifth.closed_within(Duration::from_millis(200)),
        "the newcomer is served"
    );
    drop(held);
    drop(fifth);

    // Connections that completed an authenticated request are kept: with
    // all four slots theirs, a newcomer is the one closed.
    std::thread::sleep(Duration::from_millis(300));
    let mut callers: Vec<Peer> = (0..4).map(|_| signed_in_connection(&proxy)).collect();
    let mut newcomer = Peer::plain(addr);
    assert!(
        newcomer.closed_within(Duration::from_secs(2)),
        "refused when every slot is admitted"
    );
    assert_eq!(
        still_open(&mut callers),
        4,
        "no authenticated caller is closed"
    );
}
