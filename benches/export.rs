//! Full-export benchmark: `GET /v1/sync/full` of a directory of 100,000
//! accounts in 100 organizations: entries per second and the peak resident
//! memory of the ldapgate process (VmHWM), in one run.
//!
//!     cargo bench --bench export
//!
//! Environment: `BENCH_ENTRIES` (default 100000), `BENCH_REPS` (default 3).

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use std::net::SocketAddr;
use std::time::Instant;

use bytes::BytesMut;
use common::*;
use rustls_pki_types::ServerName;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;

const TOKEN: &str = "export-bench-token";

fn ldif(entries: usize, orgs: usize) -> String {
    let mut out = String::with_capacity(entries * 300);
    for o in 0..orgs {
        out.push_str(&format!(
            "dn: ou=org{o:03},{BASE_DN}\nobjectClass: organizationalUnit\nou: org{o:03}\n\n"
        ));
    }
    for i in 0..entries {
        let o = i % orgs;
        out.push_str(&format!(
            "dn: uid=bulk{i:06},ou=org{o:03},{BASE_DN}\nobjectClass: inetOrgPerson\nuid: bulk{i:06}\n\
             cn: Bulk User {i}\nsn: {i}\nmail: bulk{i:06}@example.com\nmobile: +86139{i:08}\n\
             employeeNumber: B{i:06}\nuserPassword: not-exported\n\n"
        ));
    }
    out
}

fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// One pull over HTTPS; returns (lines, seconds). The body is consumed as
/// it arrives and not kept.
async fn pull(proxy: &Proxy, tls: &TlsConnector) -> (usize, f64) {
    let tcp = open(SocketAddr::from(([127, 0, 0, 1], proxy.control_port))).await;
    let mut s = tls
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .unwrap();
    let start = Instant::now();
    let request = format!(
        "GET /v1/sync/full HTTP/1.1\r\nHost: ldapgate\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(request.as_bytes()).await.unwrap();
    // Records are counted by their `"type":"` marker (the body is chunked,
    // so newlines would also count chunk framing). A few bytes are carried
    // over between reads so a marker split across two reads still counts.
    const MARKER: &[u8] = b"{\"type\":\"";
    let mut buf = BytesMut::with_capacity(1 << 16);
    let mut records = 0usize;
    let mut tail: Vec<u8> = Vec::new();
    loop {
        buf.reserve(1 << 16);
        let n = s.read_buf(&mut buf).await.unwrap_or(0);
        if n == 0 {
            break;
        }
        records += buf.windows(MARKER.len()).filter(|w| *w == MARKER).count();
        let keep = buf.len().saturating_sub(MARKER.len() - 1);
        tail.extend_from_slice(&buf[keep.saturating_sub(4096)..keep]);
        if tail.len() > 8192 {
            tail.drain(..tail.len() - 4096);
        }
        let carry = buf.split_off(keep);
        buf = carry;
    }
    tail.extend_from_slice(&buf);
    let tail = String::from_utf8_lossy(&tail);
    assert!(
        tail.contains("\"type\":\"end\""),
        "pull did not end cleanly: {tail}"
    );
    (records, start.elapsed().as_secs_f64())
}

fn main() {
    let entries = env_num("BENCH_ENTRIES", 100_000) as usize;
    let reps = env_num("BENCH_REPS", 3) as usize;
    eprintln!("loading {entries} entries into slapd...");
    let slapd = Slapd::start_with_extra_ldif(&ldif(entries, 100));
    let mut config = ProxyConfig::ldaps(&slapd)
        .service_account(&slapd)
        .control(TOKEN);
    config.log_filter = "warn".into();
    let proxy = Proxy::start(config);
    let tls = TlsConnector::from(proxy.certs.client_config());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let baseline = peak_rss_kib(proxy.pid());
    let mut rates = Vec::new();
    for rep in 0..reps {
        let (records, secs) = rt.block_on(pull(&proxy, &tls));
        assert!(records > entries, "{records} records for {entries} entries");
        let rate = records as f64 / secs;
        eprintln!(
            "pull {}: {records} records in {secs:.2}s ({rate:.0}/s)",
            rep + 1
        );
        rates.push(rate);
    }
    let peak = peak_rss_kib(proxy.pid());
    println!(
        "\nfull export of {entries} accounts in 100 organizations, HTTPS, median of {reps} pulls\n"
    );
    println!(
        "entries/s                  {:>10.0}   (target >= 20000)",
        median(&mut rates)
    );
    println!(
        "ldapgate peak RSS          {:>10.1} MiB (target < 64; {:.1} MiB before the first pull)",
        peak as f64 / 1024.0,
        baseline as f64 / 1024.0
    );
}
