//! Sync-pull benchmark on a directory of 100,000 accounts in 100
//! organizations (slapd with syncprov and its session log): a full pull
//! (`GET /v1/sync/full`: entries per second, and the peak resident memory
//! of the ldapgate process, VmHWM), then a changes pull after `BENCH_EDITS`
//! accounts were edited (`GET /v1/sync/changes`, by syncrepl: seconds), in
//! one run.
//!
//!     cargo bench --bench export
//!
//! Environment: `BENCH_ENTRIES` (default 100000), `BENCH_REPS` (default 3),
//! `BENCH_EDITS` (default 100), and `LDAPGATE_BASELINE`: the path of
//! another ldapgate build, run as one more column (a separate process on
//! the same slapd, pulled in turn).

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

/// What one pull delivered.
struct Pulled {
    records: usize,
    secs: f64,
    /// From the end line.
    cookie: String,
    method: String,
}

/// One pull of `path` over HTTPS. The body is consumed as it arrives and
/// not kept.
async fn pull(proxy: &Proxy, tls: &TlsConnector, path: &str) -> Pulled {
    let tcp = open(SocketAddr::from(([127, 0, 0, 1], proxy.control_port))).await;
    let mut s = tls
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .unwrap();
    let start = Instant::now();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: ldapgate\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(request.as_bytes()).await.unwrap();
    // Records are counted by their `"id":"` marker (the body is chunked,
    // so newlines would also count chunk framing). A few bytes are carried
    // over between reads so a marker split across two reads still counts.
    const MARKER: &[u8] = b"\"id\":\"";
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
    let secs = start.elapsed().as_secs_f64();
    tail.extend_from_slice(&buf);
    let tail = String::from_utf8_lossy(&tail);
    let end = tail
        .lines()
        .rev()
        .find(|line| line.contains("\"type\":\"end\""))
        .and_then(|line| serde_json::from_str::<serde_json::Value>(line.trim()).ok())
        .unwrap_or_else(|| panic!("pull did not end cleanly: {tail}"));
    Pulled {
        records,
        secs,
        cookie: end["cookie"].as_str().unwrap_or_default().to_owned(),
        method: end["method"].as_str().unwrap_or("full").to_owned(),
    }
}

/// `ldapgate sync verify` with `config` (the state of the proxy's pulls):
/// (seconds, peak RSS in KiB, from GNU time).
fn sync_verify(binary: &std::path::Path, config: &std::path::Path) -> (f64, u64) {
    let time = require_program("time", "time");
    let start = Instant::now();
    let out = std::process::Command::new(time)
        .arg("-v")
        .arg(binary)
        .args(["sync", "verify", "-c"])
        .arg(config)
        .output()
        .unwrap();
    let secs = start.elapsed().as_secs_f64();
    // 1: the sample directory's shared sign-in values (dup1, dup2) were
    // found, as they should be.
    assert!(out.status.code().is_some_and(|c| c <= 1), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let rss = stderr
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Maximum resident set size (kbytes): ")
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    (secs, rss)
}

/// One ldapgate under test, with what its pulls measured.
struct Column {
    name: &'static str,
    binary: std::path::PathBuf,
    proxy: Proxy,
    tls: TlsConnector,
    idle_rss: u64,
    full_rates: Vec<f64>,
    change_secs: Vec<f64>,
}

fn main() {
    let entries = env_num("BENCH_ENTRIES", 100_000) as usize;
    let reps = env_num("BENCH_REPS", 3) as usize;
    let edits = env_num("BENCH_EDITS", 100) as usize;
    eprintln!("loading {entries} entries into slapd...");
    let slapd = Slapd::start_with_lines_and_ldif(
        "moduleload syncprov\nindex entryCSN,entryUUID eq\noverlay syncprov\nsyncprov-sessionlog 100000\n",
        &ldif(entries, 100),
    );
    let start = |name, binary: Option<std::path::PathBuf>| {
        let mut config = ProxyConfig::ldaps(&slapd)
            .service_account(&slapd)
            .control(TOKEN);
        config.log_filter = "warn".into();
        config.binary = binary.clone();
        let proxy = Proxy::start(config);
        let tls = TlsConnector::from(proxy.certs.client_config());
        Column {
            name,
            binary: binary.unwrap_or_else(ldapgate_binary),
            idle_rss: peak_rss_kib(proxy.pid()),
            proxy,
            tls,
            full_rates: Vec::new(),
            change_secs: Vec::new(),
        }
    };
    let mut columns = vec![start("ldapgate", None)];
    if let Some(path) = std::env::var_os("LDAPGATE_BASELINE") {
        columns.push(start("baseline", Some(path.into())));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for rep in 0..reps {
        let mut cookies = Vec::new();
        for c in &mut columns {
            let full = rt.block_on(pull(&c.proxy, &c.tls, "/v1/sync/full"));
            assert!(
                full.records > entries,
                "{} records for {entries} entries",
                full.records
            );
            let rate = full.records as f64 / full.secs;
            eprintln!(
                "{} pull {}: {} records in {:.2}s ({rate:.0}/s), peak RSS {:.1} MiB",
                c.name,
                rep + 1,
                full.records,
                full.secs,
                peak_rss_kib(c.proxy.pid()) as f64 / 1024.0
            );
            c.full_rates.push(rate);
            cookies.push(full.cookie);
        }
        let ldif: String = (0..edits)
            .map(|i| {
                let n = (i * 997 + rep * 31) % entries;
                format!(
                    "dn: uid=bulk{n:06},ou=org{:03},{BASE_DN}\nchangetype: modify\nreplace: cn\ncn: Edited {rep} {i}\n\n",
                    n % 100
                )
            })
            .collect();
        slapd.modify(&ldif);
        for (c, cookie) in columns.iter_mut().zip(cookies) {
            let changes = rt.block_on(pull(
                &c.proxy,
                &c.tls,
                &format!("/v1/sync/changes?cookie={cookie}"),
            ));
            assert_eq!(changes.records, edits, "{}: one upsert per edit", c.name);
            assert_eq!(changes.method, "syncrepl", "{}", c.name);
            eprintln!(
                "{} changes pull {}: {} upserts in {:.3}s, peak RSS {:.1} MiB",
                c.name,
                rep + 1,
                changes.records,
                changes.secs,
                peak_rss_kib(c.proxy.pid()) as f64 / 1024.0
            );
            c.change_secs.push(changes.secs);
        }
    }
    // Scheduled verification, as `ldapgate sync verify` on the state the
    // pulls left (it checks the tracker's blind spots against it too).
    let verified: Vec<(f64, u64)> = columns
        .iter()
        .map(|c| sync_verify(&c.binary, &c.proxy.config_path))
        .collect();
    println!(
        "\nsync pulls of {entries} accounts in 100 organizations, HTTPS, median of {reps} pulls\n"
    );
    println!(
        "{:<42}{:>12}{:>12}",
        "",
        columns[0].name,
        columns.get(1).map_or("", |c| c.name)
    );
    let row = |label: &str, values: Vec<f64>, unit: &str| {
        let mut line = format!("{label:<42}");
        for v in &values {
            line.push_str(&format!("{v:>12.3}"));
        }
        if values.len() == 2 {
            line.push_str(&format!("   {unit}, ratio {:.3}", values[0] / values[1]));
        } else {
            line.push_str(&format!("   {unit}"));
        }
        println!("{line}");
    };
    row(
        "full pull, entries/s (target >= 20000)",
        columns
            .iter_mut()
            .map(|c| median(&mut c.full_rates))
            .collect(),
        "entries/s",
    );
    row(
        &format!("changes pull after {edits} edits (syncrepl)"),
        columns
            .iter_mut()
            .map(|c| median(&mut c.change_secs))
            .collect(),
        "s",
    );
    row(
        "ldapgate peak RSS (target < 64)",
        columns
            .iter()
            .map(|c| peak_rss_kib(c.proxy.pid()) as f64 / 1024.0)
            .collect(),
        "MiB",
    );
    row(
        "sync verify (one run)",
        verified.iter().map(|v| v.0).collect(),
        "s",
    );
    row(
        "sync verify peak RSS",
        verified.iter().map(|v| v.1 as f64 / 1024.0).collect(),
        "MiB",
    );
    row(
        "RSS before the first pull",
        columns.iter().map(|c| c.idle_rss as f64 / 1024.0).collect(),
        "MiB",
    );
}
