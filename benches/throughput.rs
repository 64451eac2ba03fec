//! Load benchmark: operations per second directly against slapd, through
//! ldapgate, and through HAProxy in TCP mode (when installed), in one run.
//!
//!     cargo bench --bench throughput
//!
//! Workloads, each over `CONNS` concurrent client connections:
//! - search: persistent connections, one bind, then base-object searches;
//! - bind: persistent connections, simple binds as different users;
//! - connect+bind+unbind: a new TCP connection per bind, as many PHP-style
//!   applications do.
//!
//! Every (target, workload) pair runs `REPS` times, interleaved so that
//! noise on this 2-core machine spreads evenly; the median is reported with
//! its ratio to direct slapd. Environment: `BENCH_SECS` (per run, default
//! 3), `BENCH_REPS` (default 5), `BENCH_CONNS` (default 8), and
//! `LDAPGATE_BASELINE`: the path of another ldapgate build, run as one more
//! column with the same configuration (to compare a change in one run).
//!
//! slapd runs the syncprov overlay, as a deployment that uses change
//! tracking does: its contextCSN lets ldapgate keep bind DNs' identities
//! cached while nothing changes. ldapgate's bind limits are raised out of
//! the way: this measures the cost of counting, not the limits.

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::*;
use ldap3_proto::proto::*;
use ldapgate::ldap::tag;
use support::*;
use tokio::io::AsyncWriteExt;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Workload {
    Search,
    Bind,
    ConnectBindUnbind,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::Search => "search (persistent)",
            Workload::Bind => "bind (persistent)",
            Workload::ConnectBindUnbind => "connect+bind+unbind",
        }
    }
}

async fn client(
    addr: SocketAddr,
    workload: Workload,
    worker: usize,
    until: Instant,
    done: Arc<AtomicU64>,
) {
    let mut buf = BytesMut::with_capacity(16384);
    let mut i = worker * 7;
    match workload {
        Workload::Search => {
            let mut s = open(addr).await;
            s.write_all(&bind_pdu(1, &user_dn(worker), &user_pw(worker)))
                .await
                .unwrap();
            assert_eq!(
                await_response(&mut s, &mut buf, tag::BIND_RESPONSE).await,
                0
            );
            let mut msgid = 2;
            while Instant::now() < until {
                let search = search_pdu(
                    msgid,
                    &user_dn(i),
                    LdapSearchScope::Base,
                    LdapFilter::Present("objectClass".into()),
                );
                s.write_all(&search).await.unwrap();
                assert_eq!(
                    await_response(&mut s, &mut buf, tag::SEARCH_RESULT_DONE).await,
                    0
                );
                done.fetch_add(1, Ordering::Relaxed);
                msgid += 1;
                i += 1;
            }
        }
        Workload::Bind => persistent_binds(addr, i, until, &done).await,
        Workload::ConnectBindUnbind => {
            while Instant::now() < until {
                let mut s = open(addr).await;
                buf.clear();
                s.write_all(&bind_pdu(1, &user_dn(i), &user_pw(i)))
                    .await
                    .unwrap();
                assert_eq!(
                    await_response(&mut s, &mut buf, tag::BIND_RESPONSE).await,
                    0
                );
                s.write_all(UNBIND).await.unwrap();
                drop(s);
                done.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        }
    }
}

/// Operations per second for one run.
fn run(
    rt: &tokio::runtime::Runtime,
    addr: SocketAddr,
    workload: Workload,
    secs: u64,
    conns: usize,
) -> f64 {
    rt.block_on(async {
        let done = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let until = start + Duration::from_secs(secs);
        let tasks: Vec<_> = (0..conns)
            .map(|w| tokio::spawn(client(addr, workload, w, until, done.clone())))
            .collect();
        for t in tasks {
            t.await.expect("benchmark client");
        }
        done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
    })
}

fn start_haproxy(slapd: &Slapd) -> Option<(Child, SocketAddr, tempfile::TempDir)> {
    let haproxy = ["/usr/sbin/haproxy", "/usr/bin/haproxy"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())?;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = dir.path().join("haproxy.cfg");
    std::fs::write(
        &cfg,
        format!(
            "global\n  maxconn 4096\n  nbthread 2\n\
             defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n\
             frontend ldap\n  bind 127.0.0.1:{port}\n  default_backend slapd\n\
             backend slapd\n  server s1 127.0.0.1:{}\n",
            slapd.ldap_port
        ),
    )
    .unwrap();
    let mut child = Command::new(haproxy)
        .arg("-f")
        .arg(&cfg)
        .arg("-db")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_for_port(addr, "haproxy", &mut child);
    Some((child, addr, dir))
}

fn main() {
    // `cargo bench` passes --bench; a filter argument is not supported.
    let secs = env_num("BENCH_SECS", 3);
    let reps = env_num("BENCH_REPS", 5) as usize;
    let conns = env_num("BENCH_CONNS", 8) as usize;
    let slapd = Slapd::start_with_database_lines(
        "moduleload syncprov\nindex entryCSN,entryUUID eq\noverlay syncprov\n",
    );
    let config = |binary: Option<std::path::PathBuf>| {
        let mut config = ProxyConfig::plain(&slapd).service_account(&slapd).section(
            "[ratelimit]\nbinds_per_ip = \"1000000/s\"\nbinds_per_identity = \"1000000/s\"\n",
        );
        config.log_filter = "warn".into();
        config.binary = binary;
        config
    };
    let proxy = Proxy::start(config(None));
    let baseline =
        std::env::var_os("LDAPGATE_BASELINE").map(|path| Proxy::start(config(Some(path.into()))));
    let haproxy = start_haproxy(&slapd);

    let mut targets: Vec<(&str, SocketAddr)> = vec![
        (
            "slapd direct",
            SocketAddr::from(([127, 0, 0, 1], slapd.ldap_port)),
        ),
        ("ldapgate", proxy.addr()),
    ];
    if let Some(b) = &baseline {
        targets.push(("ldapgate baseline", b.addr()));
    }
    if let Some((_, addr, _)) = &haproxy {
        targets.push(("haproxy tcp", *addr));
    } else {
        eprintln!("haproxy not installed (apt-get install haproxy): skipping that column");
    }
    let workloads = [
        Workload::Search,
        Workload::Bind,
        Workload::ConnectBindUnbind,
    ];
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    // Warm-up: fill caches and pools.
    for (_, addr) in &targets {
        for w in workloads {
            run(&rt, *addr, w, 1, conns);
        }
    }
    let mut results = vec![vec![Vec::new(); workloads.len()]; targets.len()];
    for rep in 0..reps {
        for (wi, w) in workloads.iter().enumerate() {
            for (ti, (_, addr)) in targets.iter().enumerate() {
                let ops = run(&rt, *addr, *w, secs, conns);
                results[ti][wi].push(ops);
            }
        }
        eprintln!("rep {}/{reps} done", rep + 1);
    }

    println!(
        "\nthroughput, {conns} connections, median of {reps} runs of {secs}s (ops/s, ratio to direct)\n"
    );
    print!("{:<22}", "workload");
    for (name, _) in &targets {
        print!("{name:>24}");
    }
    println!();
    for (wi, w) in workloads.iter().enumerate() {
        print!("{:<22}", w.name());
        let direct = median(&mut results[0][wi].clone());
        for (ti, _) in targets.iter().enumerate() {
            let m = median(&mut results[ti][wi].clone());
            print!("{:>15.0} ({:>4.2}x)", m, m / direct);
        }
        println!();
    }
    if let Some((mut child, _, _)) = haproxy {
        let _ = child.kill();
        let _ = child.wait();
    }
}
