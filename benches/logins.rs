//! Login benchmark: sign-ins per second through `POST /v1/authenticate`
//! (DN cache warm and cold) next to a naive client that, for every login,
//! connects to slapd, binds the service account, searches, binds the user
//! and unbinds; and slapd's own persistent-connection bind rate. One run.
//!
//!     cargo bench --bench logins
//!
//! With a `redis-server` on the machine, the warm configuration runs again
//! with `[cluster]` (lockout, rates and turns counted in the shared store).
//!
//! Environment: `BENCH_ONLY` (workloads by short name, e.g. `warm,cluster`),
//! `BENCH_SECS` (per run, default 3), `BENCH_REPS` (default 5),
//! `BENCH_CONNS` (concurrent clients, default 8), and `LDAPGATE_BASELINE`:
//! the path of another ldapgate build, run warm with the same configuration
//! (to compare a change in one run).
//!
//! slapd runs the syncprov overlay, whose contextCSN tells ldapgate that
//! cached resolutions still hold.

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use common::*;
use ldap3_proto::proto::{LdapFilter, LdapSearchScope};
use ldapgate::ldap::tag;
use rustls_pki_types::ServerName;
use support::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::TlsConnector;

const TOKEN: &str = "bench-token";

#[derive(Clone, Copy, PartialEq)]
enum Workload {
    SlapdPersistentBinds,
    NaiveLdaps,
    NaivePlain,
    GateWarm,
    GateCold,
    GateBaseline,
    GateCluster,
}

impl Workload {
    /// The name `BENCH_ONLY` takes.
    fn short(self) -> &'static str {
        match self {
            Workload::SlapdPersistentBinds => "slapd",
            Workload::NaiveLdaps => "naive-ldaps",
            Workload::NaivePlain => "naive-plain",
            Workload::GateWarm => "warm",
            Workload::GateCold => "cold",
            Workload::GateBaseline => "baseline",
            Workload::GateCluster => "cluster",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Workload::SlapdPersistentBinds => "slapd binds, persistent connections",
            Workload::NaiveLdaps => "naive client, LDAPS per login",
            Workload::NaivePlain => "naive client, plain LDAP per login",
            Workload::GateWarm => "ldapgate /v1/authenticate, DN cache warm",
            Workload::GateCold => "ldapgate /v1/authenticate, DN cache off",
            Workload::GateBaseline => "baseline build, DN cache warm",
            Workload::GateCluster => "ldapgate warm, [cluster] store on loopback",
        }
    }
}

struct Setup {
    slapd: Slapd,
    warm: Proxy,
    cold: Proxy,
    slapd_tls: TlsConnector,
    warm_tls: TlsConnector,
    cold_tls: TlsConnector,
    baseline: Option<(Proxy, TlsConnector)>,
    cluster: (Proxy, TlsConnector, common::redis_server::RedisServer),
}

impl Setup {
    /// The processes that serve `w`: ldapgate (and the store it uses).
    fn serving(&self, w: Workload) -> Vec<u32> {
        match w {
            Workload::GateWarm => vec![self.warm.pid()],
            Workload::GateCold => vec![self.cold.pid()],
            Workload::GateCluster => {
                let mut pids = vec![self.cluster.0.pid()];
                pids.extend(self.cluster.2.pid());
                pids
            }
            Workload::GateBaseline => self.baseline.iter().map(|(p, _)| p.pid()).collect(),
            _ => Vec::new(),
        }
    }
}

fn tls(certs: &Certs) -> TlsConnector {
    TlsConnector::from(certs.client_config())
}

/// One HTTP/1.1 request on a kept-alive connection; returns the status.
async fn http_login<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    buf: &mut BytesMut,
    login: &str,
    pw: &str,
) -> u16 {
    let body = format!(r#"{{"login":"{login}","password":"{pw}"}}"#);
    let request = format!(
        "POST /v1/authenticate HTTP/1.1\r\nHost: ldapgate\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(request.as_bytes()).await.unwrap();
    s.flush().await.unwrap();
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let status: u16 = head
                .split(' ')
                .nth(1)
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                buf.reserve(4096);
                assert!(s.read_buf(buf).await.unwrap() > 0, "connection closed");
            }
            buf.advance(end + 4 + len);
            return status;
        }
        buf.reserve(4096);
        assert!(s.read_buf(buf).await.unwrap() > 0, "connection closed");
    }
}

async fn naive_login<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, i: usize) {
    let mut buf = BytesMut::with_capacity(4096);
    s.write_all(&bind_pdu(1, ADMIN_DN, ADMIN_PW)).await.unwrap();
    assert_eq!(await_response(s, &mut buf, tag::BIND_RESPONSE).await, 0);
    let login = user_uid(i);
    let filter = LdapFilter::And(vec![
        LdapFilter::Equality("objectClass".into(), "inetOrgPerson".into()),
        LdapFilter::Or(
            ["uid", "mobile", "mail", "employeeNumber"]
                .iter()
                .map(|a| LdapFilter::Equality((*a).into(), login.clone()))
                .collect(),
        ),
    ]);
    s.write_all(&search_pdu(2, BASE_DN, LdapSearchScope::Subtree, filter))
        .await
        .unwrap();
    assert_eq!(
        await_response(s, &mut buf, tag::SEARCH_RESULT_DONE).await,
        0
    );
    s.write_all(&bind_pdu(3, &user_dn(i), &user_pw(i)))
        .await
        .unwrap();
    assert_eq!(await_response(s, &mut buf, tag::BIND_RESPONSE).await, 0);
    s.write_all(UNBIND).await.unwrap();
    let _ = s.shutdown().await;
}

async fn worker(setup: Arc<Setup>, w: Workload, id: usize, until: Instant, done: Arc<AtomicU64>) {
    let slapd_ldap = SocketAddr::from(([127, 0, 0, 1], setup.slapd.ldap_port));
    let slapd_ldaps = SocketAddr::from(([127, 0, 0, 1], setup.slapd.ldaps_port));
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let mut i = id * 7;
    match w {
        Workload::SlapdPersistentBinds => persistent_binds(slapd_ldap, i, until, &done).await,
        Workload::NaiveLdaps | Workload::NaivePlain => {
            while Instant::now() < until {
                if w == Workload::NaiveLdaps {
                    let tcp = open(slapd_ldaps).await;
                    let mut s = setup.slapd_tls.connect(name.clone(), tcp).await.unwrap();
                    naive_login(&mut s, i).await;
                } else {
                    let mut s = open(slapd_ldap).await;
                    naive_login(&mut s, i).await;
                }
                done.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        }
        Workload::GateWarm
        | Workload::GateCold
        | Workload::GateBaseline
        | Workload::GateCluster => {
            let (proxy, tls) = match (w, &setup.baseline) {
                (Workload::GateWarm, _) => (&setup.warm, &setup.warm_tls),
                (Workload::GateCluster, _) => (&setup.cluster.0, &setup.cluster.1),
                (Workload::GateBaseline, Some((proxy, tls))) => (proxy, tls),
                _ => (&setup.cold, &setup.cold_tls),
            };
            let tcp = open(SocketAddr::from(([127, 0, 0, 1], proxy.control_port))).await;
            let mut s = tls.connect(name, tcp).await.unwrap();
            let mut buf = BytesMut::new();
            while Instant::now() < until {
                let status = http_login(&mut s, &mut buf, &user_uid(i), &user_pw(i)).await;
                assert_eq!(status, 200, "login failed");
                done.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        }
    }
}

fn run(
    rt: &tokio::runtime::Runtime,
    setup: &Arc<Setup>,
    w: Workload,
    secs: u64,
    conns: usize,
) -> f64 {
    rt.block_on(async {
        let done = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let until = start + Duration::from_secs(secs);
        let tasks: Vec<_> = (0..conns)
            .map(|id| tokio::spawn(worker(setup.clone(), w, id, until, done.clone())))
            .collect();
        for t in tasks {
            t.await.expect("benchmark worker");
        }
        done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
    })
}

/// Median latency of single sign-ins that fail: unknown login and wrong password.
fn failure_latencies(rt: &tokio::runtime::Runtime, setup: &Arc<Setup>) -> (f64, f64) {
    rt.block_on(async {
        let tcp = open(SocketAddr::from(([127, 0, 0, 1], setup.cold.control_port))).await;
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let mut s = setup.cold_tls.connect(name, tcp).await.unwrap();
        let mut buf = BytesMut::new();
        let mut unknown = Vec::new();
        let mut wrong = Vec::new();
        for i in 0..300 {
            let t = Instant::now();
            assert_eq!(
                http_login(&mut s, &mut buf, &format!("nobody{i}"), "x").await,
                401
            );
            unknown.push(t.elapsed().as_secs_f64() * 1000.0);
            let t = Instant::now();
            assert_eq!(
                http_login(&mut s, &mut buf, &user_uid(i), "wrong").await,
                401
            );
            wrong.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        (median(&mut unknown), median(&mut wrong))
    })
}

fn main() {
    let secs = env_num("BENCH_SECS", 3);
    let reps = env_num("BENCH_REPS", 5) as usize;
    let conns = env_num("BENCH_CONNS", 8) as usize;
    let slapd = Slapd::start_with_database_lines(
        "moduleload syncprov\nindex entryCSN,entryUUID eq\noverlay syncprov\n",
    );
    let limits = "[ratelimit]\nbinds_per_ip = \"1000000/s\"\nbinds_per_identity = \"1000000/s\"\nfailures_before_lockout = 1000\n";
    let redis = common::redis_server::RedisServer::start_for_bench();
    let key = redis.dir.path().join("cluster-key");
    std::fs::write(&key, [7u8; 32]).unwrap();
    let cluster_section = redis.cluster_section(Some(&key));
    let proxy = |cache: &str, binary: Option<std::path::PathBuf>, extra: &str| {
        let mut c = ProxyConfig::ldaps(&slapd)
            .service_account(&slapd)
            .section(&format!(
                "[signin]\ncache_ttl = \"{cache}\"\n{limits}\n{extra}"
            ))
            .control(TOKEN);
        c.log_filter = "warn".into();
        c.binary = binary;
        Proxy::start(c)
    };
    let warm = proxy("5m", None, "");
    let cold = proxy("0s", None, "");
    let clustered = proxy("5m", None, &cluster_section);
    let baseline = std::env::var_os("LDAPGATE_BASELINE").map(|path| {
        let p = proxy("5m", Some(path.into()), "");
        let connector = tls(&p.certs);
        (p, connector)
    });
    let clustered_tls = tls(&clustered.certs);
    let setup = Arc::new(Setup {
        slapd_tls: tls(&slapd.certs),
        warm_tls: tls(&warm.certs),
        cold_tls: tls(&cold.certs),
        slapd,
        warm,
        cold,
        baseline,
        cluster: (clustered, clustered_tls, redis),
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut workloads = vec![
        Workload::SlapdPersistentBinds,
        Workload::NaiveLdaps,
        Workload::NaivePlain,
        Workload::GateWarm,
        Workload::GateCold,
        Workload::GateCluster,
    ];
    if setup.baseline.is_some() {
        workloads.push(Workload::GateBaseline);
    }
    // BENCH_ONLY=warm,cluster: only the workloads whose short names are
    // listed (to profile one of them).
    if let Ok(only) = std::env::var("BENCH_ONLY") {
        workloads.retain(|w| only.split(',').any(|o| o == w.short()));
    }
    for w in &workloads {
        run(&rt, &setup, *w, 1, conns);
    }
    let mut results = vec![Vec::new(); workloads.len()];
    // CPU of the processes that serve each ldapgate workload, per sign-in.
    let mut cpu = vec![Vec::new(); workloads.len()];
    for rep in 0..reps {
        for (wi, w) in workloads.iter().enumerate() {
            let pids = setup.serving(*w);
            let before: Duration = pids.iter().map(|p| cpu_time(*p)).sum();
            let started = Instant::now();
            let rate = run(&rt, &setup, *w, secs, conns);
            let used: Duration = pids.iter().map(|p| cpu_time(*p)).sum::<Duration>() - before;
            let logins = rate * started.elapsed().as_secs_f64();
            results[wi].push(rate);
            if !pids.is_empty() && logins > 0.0 {
                cpu[wi].push(used.as_secs_f64() * 1e6 / logins);
            }
        }
        eprintln!("rep {}/{reps} done", rep + 1);
    }
    let m: Vec<f64> = results.iter_mut().map(|r| median(r)).collect();
    println!("\nsign-ins, {conns} concurrent clients, median of {reps} runs of {secs}s\n");
    for (wi, w) in workloads.iter().enumerate() {
        let per = if cpu[wi].is_empty() {
            String::new()
        } else {
            format!("   {:>6.0} µs CPU per sign-in", median(&mut cpu[wi]))
        };
        println!("{:<45}{:>10.0}/s{per}", w.name(), m[wi]);
    }
    println!("(CPU: the ldapgate process, and with [cluster] the store's too)\n");
    let of = |w: Workload| workloads.iter().position(|x| *x == w).map(|i| m[i]);
    let ratios = [
        (
            Workload::GateWarm,
            Workload::NaiveLdaps,
            "   (target >= 3x)",
        ),
        (
            Workload::GateWarm,
            Workload::SlapdPersistentBinds,
            "   (target >= 0.5x)",
        ),
        (Workload::GateCold, Workload::NaiveLdaps, ""),
        (
            Workload::GateCluster,
            Workload::GateWarm,
            "   (target >= 0.8x)",
        ),
        (Workload::GateWarm, Workload::GateBaseline, ""),
    ];
    for (a, b, target) in ratios {
        if let (Some(x), Some(y)) = (of(a), of(b)) {
            println!("{} / {}: {:.2}x{target}", a.name(), b.name(), x / y);
        }
    }
    let (unknown, wrong) = failure_latencies(&rt, &setup);
    println!("median latency, unknown login {unknown:.2} ms, wrong password {wrong:.2} ms");
}
