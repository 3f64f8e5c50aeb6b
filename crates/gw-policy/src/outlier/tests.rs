use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::advance;

use super::*;

fn eps(n: u8) -> Vec<SocketAddr> {
    (1..=n)
        .map(|i| SocketAddr::from(([10, 0, 0, i], 80)))
        .collect()
}

fn detector(failures: u32, percent: u32) -> OutlierDetector {
    OutlierDetector::new(OutlierConfig {
        consecutive_failures: failures,
        base_ejection_time: Duration::from_secs(10),
        max_ejection_time: Duration::from_secs(25),
        max_ejection_percent: percent,
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

fn fail(d: &OutlierDetector, e: SocketAddr, times: u32, total: usize) {
    for _ in 0..times {
        d.report(e, Outcome::Failure, total);
    }
}

#[tokio::test(start_paused = true)]
async fn consecutive_failures_eject_and_a_success_resets_the_count() {
    let d = detector(3, 100);
    let e = eps(2);
    fail(&d, e[0], 2, 2);
    d.report(e[0], Outcome::Success, 2);
    fail(&d, e[0], 2, 2);
    assert!(!d.is_ejected(e[0]), "the success broke the run");
    fail(&d, e[0], 1, 2);
    assert!(d.is_ejected(e[0]));
    assert!(!d.is_ejected(e[1]));
}

#[tokio::test(start_paused = true)]
async fn ejected_endpoints_come_back_after_the_ejection_time() {
    let d = detector(1, 100);
    let e = eps(2);
    fail(&d, e[0], 1, 2);
    advance(Duration::from_millis(9_999)).await;
    assert!(d.is_ejected(e[0]));
    assert_eq!(d.select(&e, 0), Some(e[1]));
    advance(Duration::from_millis(1)).await;
    assert!(!d.is_ejected(e[0]));
    assert_eq!(d.select(&e, 0), Some(e[0]));
}

#[tokio::test(start_paused = true)]
async fn repeated_ejections_last_longer_up_to_the_maximum_and_decay() {
    let d = detector(1, 100);
    let e = eps(2);
    // 10 s, then 20 s, then capped at 25 s.
    for length in [10, 20, 25] {
        fail(&d, e[0], 1, 2);
        advance(Duration::from_secs(length) - Duration::from_millis(1)).await;
        assert!(d.is_ejected(e[0]), "ejected for {length}s");
        advance(Duration::from_millis(1)).await;
        assert!(!d.is_ejected(e[0]), "back after {length}s");
    }
    // Healthy for 3 base times: the count (3) decays to 0, the next ejection is 10 s again.
    advance(Duration::from_secs(30)).await;
    fail(&d, e[0], 1, 2);
    advance(Duration::from_secs(10)).await;
    assert!(!d.is_ejected(e[0]));
}

// Envoy: "max_ejection_percent: The maximum % of an upstream cluster that can be ejected due
// to outlier detection ... will eject at least one host regardless of the value".
#[tokio::test(start_paused = true)]
async fn the_ejected_share_is_capped_but_one_may_always_go() {
    let d = detector(1, 10);
    let e = eps(4);
    fail(&d, e[0], 1, 4);
    fail(&d, e[1], 1, 4);
    assert!(d.is_ejected(e[0]), "one endpoint may always be ejected");
    assert!(!d.is_ejected(e[1]), "10 % of 4 endpoints is less than two");
    let d = detector(1, 50);
    for x in &e {
        fail(&d, *x, 1, 4);
    }
    assert_eq!(e.iter().filter(|x| d.is_ejected(**x)).count(), 2);
}

// Envoy's panic threshold: when every endpoint is ejected, pick among all of them anyway.
#[tokio::test(start_paused = true)]
async fn when_all_are_ejected_selection_still_picks_one() {
    let d = detector(1, 100);
    let e = eps(2);
    fail(&d, e[0], 1, 2);
    fail(&d, e[1], 1, 2);
    assert!(d.is_ejected(e[0]) && d.is_ejected(e[1]));
    assert_eq!(d.select(&e, 0), Some(e[0]));
    assert_eq!(d.select(&e, 1), Some(e[1]));
    assert_eq!(d.select(&[], 0), None);
}

#[test]
fn settings_are_validated() {
    let bad = |c: OutlierConfig| OutlierDetector::new(c).err();
    let base = OutlierConfig::default();
    assert_eq!(
        bad(OutlierConfig {
            consecutive_failures: 0,
            ..base
        }),
        Some(OutlierError::NoFailures)
    );
    assert_eq!(
        bad(OutlierConfig {
            base_ejection_time: Duration::ZERO,
            ..base
        }),
        Some(OutlierError::EjectionTime)
    );
    assert_eq!(
        bad(OutlierConfig {
            max_ejection_time: Duration::from_secs(1),
            ..base
        }),
        Some(OutlierError::EjectionTime)
    );
    assert_eq!(
        bad(OutlierConfig {
            max_ejection_percent: 101,
            ..base
        }),
        Some(OutlierError::Percent(101))
    );
    assert!(OutlierDetector::new(base).is_ok());
}

#[tokio::test(start_paused = true)]
async fn forgotten_endpoints_are_back_in() {
    let d = detector(1, 100);
    let e = eps(2);
    fail(&d, e[0], 1, 2);
    d.retain(|x| *x != e[0]);
    assert!(!d.is_ejected(e[0]));
}
