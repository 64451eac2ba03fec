//! A lean raw-PDU LDAP client and run bookkeeping shared by the benchmarks,
//! so that what is measured is the servers, not a client library.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use ldap3_proto::proto::*;
use ldapgate::ber;
use ldapgate::ldap::response::encode;
use std::sync::atomic::{AtomicU64, Ordering};

use ldapgate::ldap::tag;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{BASE_DN, GENERATED_USERS};

pub fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub fn user_uid(i: usize) -> String {
    format!("user{:03}", i % GENERATED_USERS)
}

pub fn user_dn(i: usize) -> String {
    format!("uid={},ou=engineering,ou=people,{BASE_DN}", user_uid(i))
}

pub fn user_pw(i: usize) -> String {
    format!("{}-pw", user_uid(i))
}

pub fn bind_pdu(msgid: i32, dn: &str, pw: &str) -> Vec<u8> {
    encode(LdapMsg::new(
        msgid,
        LdapOp::BindRequest(LdapBindRequest {
            version: 3,
            dn: dn.into(),
            cred: LdapBindCred::Simple(pw.into()),
        }),
    ))
}

pub fn search_pdu(msgid: i32, base: &str, scope: LdapSearchScope, filter: LdapFilter) -> Vec<u8> {
    encode(LdapMsg::new(
        msgid,
        LdapOp::SearchRequest(LdapSearchRequest {
            base: base.into(),
            scope,
            aliases: LdapDerefAliases::Never,
            sizelimit: 0,
            timelimit: 0,
            typesonly: false,
            filter,
            attrs: vec!["cn".into(), "mail".into()],
        }),
    ))
}

pub const UNBIND: &[u8] = &[0x30, 0x05, 0x02, 0x01, 0x7f, 0x42, 0x00];

/// Reads PDUs until one with `final_tag`; returns its result code.
pub async fn await_response<S: AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut BytesMut,
    final_tag: u8,
) -> i64 {
    loop {
        while let Ok(h) = ber::peek_pdu(buf, 1 << 24) {
            let pdu = buf.split_to(h.len);
            if h.op_tag == final_tag {
                return ldapgate::ldap::response::read_result(&pdu).unwrap().code;
            }
        }
        buf.reserve(16384);
        let n = s.read_buf(buf).await.expect("read");
        assert!(n > 0, "server closed the connection");
    }
}

pub async fn open(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).await.expect("connect");
    s.set_nodelay(true).unwrap();
    s
}

/// Simple binds as the generated users, one after another on one
/// persistent connection, until `until`; counts each into `done`.
pub async fn persistent_binds(
    addr: SocketAddr,
    mut i: usize,
    until: std::time::Instant,
    done: &AtomicU64,
) {
    let mut s = open(addr).await;
    let mut buf = BytesMut::new();
    let mut msgid = 1;
    while std::time::Instant::now() < until {
        s.write_all(&bind_pdu(msgid, &user_dn(i), &user_pw(i)))
            .await
            .unwrap();
        assert_eq!(
            await_response(&mut s, &mut buf, tag::BIND_RESPONSE).await,
            0
        );
        done.fetch_add(1, Ordering::Relaxed);
        msgid += 1;
        i += 1;
    }
}

pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// CPU time (user + system) a process has used so far, from
/// /proc/PID/stat; zero when it cannot be read.
pub fn cpu_time(pid: u32) -> Duration {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Duration::ZERO;
    };
    // Fields after the command (which may hold spaces) start past ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|v| v.parse::<u64>().ok()))
        .sum();
    // USER_HZ is 100 on Linux.
    Duration::from_millis(ticks * 10)
}
