//! Unit tests of the per-instance limits.

use super::*;

fn config(per_ip: &str, per_identity: &str, failures: u32) -> RateLimitConfig {
    RateLimitConfig {
        binds_per_ip: per_ip.parse().unwrap(),
        binds_per_identity: per_identity.parse().unwrap(),
        service_binds_per_identity: "100/s".parse().unwrap(),
        failures_before_lockout: failures,
        lockout_window: Duration::from_secs(60),
        lockout_duration: Duration::from_millis(300),
        max_concurrent_binds: 4,
    }
}

#[test]
fn per_ip_rate_allows_the_burst_then_refuses() {
    let l = BindLimiter::new(&config("5/s", "100/s", 0));
    let ip: IpAddr = "10.0.0.1".parse().unwrap();
    for _ in 0..5 {
        l.check_client(ip).unwrap();
    }
    let refused = l.check_client(ip).unwrap_err();
    assert!(matches!(refused, Refusal::ClientRate { .. }));
    assert!(refused.retry_after() <= Duration::from_millis(200));
    // Another address has its own budget; v4-mapped v6 is the same client.
    l.check_client("10.0.0.2".parse().unwrap()).unwrap();
    assert!(l.check_client("::ffff:10.0.0.1".parse().unwrap()).is_err());
    // One IPv6 /64 is one client.
    for i in 0..5u16 {
        l.check_client(format!("2001:db8::{i:x}").parse().unwrap())
            .unwrap();
    }
    assert!(l.check_client("2001:db8::ffff".parse().unwrap()).is_err());
    l.check_client("2001:db8:0:1::1".parse().unwrap()).unwrap();
}

#[test]
fn lockout_after_n_failures_and_release_after_the_duration() {
    let l = BindLimiter::new(&config("100/s", "100/s", 3));
    assert!(!l.record_failure("id:a"));
    assert!(!l.record_failure("id:a"));
    l.check_identity("id:a").unwrap();
    assert!(l.record_failure("id:a"));
    assert!(matches!(
        l.check_identity("id:a"),
        Err(Refusal::LockedOut { .. })
    ));
    l.check_identity("id:b").unwrap();
    std::thread::sleep(Duration::from_millis(350));
    l.check_identity("id:a").unwrap();
}

#[test]
fn a_service_account_has_its_own_rate_and_a_lockout_per_address() {
    let l = BindLimiter::new(&config("100/s", "1/m", 2));
    for _ in 0..50 {
        l.check_service("id:svc@10.0.0.1").unwrap();
    }
    l.record_failure("id:svc@10.0.0.1");
    assert!(l.record_failure("id:svc@10.0.0.1"));
    assert!(matches!(
        l.check_service("id:svc@10.0.0.1"),
        Err(Refusal::LockedOut { .. })
    ));
    l.check_service("id:svc@10.0.0.2").unwrap();
    // Never unlimited: the service rate runs out too.
    let refused = (0..200).any(|_| {
        matches!(
            l.check_service("id:svc@10.0.0.2"),
            Err(Refusal::IdentityRate { .. })
        )
    });
    assert!(refused);
}

#[test]
fn lockouts_and_counts_carry_over_to_new_limits() {
    let old = BindLimiter::new(&config("100/s", "100/s", 3));
    for _ in 0..3 {
        old.record_failure("id:locked");
    }
    old.record_failure("id:counted");
    old.record_failure("id:counted");
    let new = BindLimiter::new(&config("200/s", "200/s", 3));
    new.carry_over(&old);
    assert!(matches!(
        new.check_identity("id:locked"),
        Err(Refusal::LockedOut { .. })
    ));
    assert!(new.record_failure("id:counted"), "the third failure locks");
}

#[test]
fn success_clears_the_failure_count() {
    let l = BindLimiter::new(&config("100/s", "100/s", 3));
    l.record_failure("id:a");
    l.record_failure("id:a");
    l.record_success("id:a");
    assert!(!l.record_failure("id:a"));
    assert!(!l.record_failure("id:a"));
}

#[test]
fn memory_stays_bounded_under_a_spray_of_distinct_logins() {
    // 1000/s per identity: a key is fresh again 1 ms after one use.
    let l = BindLimiter::new(&config("1000000/s", "1000/s", 5));
    for i in 0..100_000u32 {
        let login = normalised_login(&format!("spray-{i}"));
        l.check_identity(&login).unwrap();
        l.check_client(IpAddr::from(i.to_be_bytes())).unwrap();
        l.record_failure(&login);
    }
    assert!(l.tracked_keys() >= 100_000, "the spray was tracked");
    std::thread::sleep(Duration::from_millis(20));
    l.housekeeping();
    // Rate state is gone; failure counts remain only up to their cap
    // and their window.
    assert_eq!(l.per_ip.len() + l.per_identity.len(), 0);
    assert!(l.failures.entry_count() <= MAX_TRACKED);
}

#[test]
fn normalises_logins() {
    assert_eq!(normalised_login(" Alice "), normalised_login("alice"));
}
