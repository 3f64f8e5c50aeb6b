use std::time::Duration;

use tokio::time::advance;

use super::*;

fn budget(percent: u32, interval: u64, min_count: u32, min_interval: u64) -> RetryBudget {
    RetryBudget::new(Config {
        percent,
        interval: Duration::from_secs(interval),
        min_retry_count: min_count,
        min_retry_interval: Duration::from_secs(min_interval),
    })
}

// GEP-3388 (CRD): "if the retry budget interval is 10 seconds, there have been 1000 active
// requests in the past 10 seconds, and the allowed percentage of requests that can be retried
// is 20% (the default), then 200 of those requests may be composed of retries."
#[tokio::test(start_paused = true)]
async fn retries_are_capped_at_the_percentage_of_requests() {
    let b = budget(20, 10, 1, 1);
    for _ in 0..800 {
        b.deposit();
    }
    let mut allowed = 0;
    while b.try_withdraw() {
        allowed += 1;
    }
    // 200 retries among 1000 requests: exactly 20 %.
    assert_eq!(allowed, 200);
    assert_eq!(b.counts(), (1000, 200));
}

// "MinRetryRate defines the minimum rate of retries that will be allowable over a specified
// duration of time ... This ensures that requests can still be retried during periods of low
// traffic."
#[tokio::test(start_paused = true)]
async fn the_minimum_rate_allows_retries_without_traffic() {
    let b = budget(0, 10, 3, 1);
    assert!(b.try_withdraw());
    assert!(b.try_withdraw());
    assert!(b.try_withdraw());
    assert!(!b.try_withdraw(), "three per second, no more");
    advance(Duration::from_millis(1001)).await;
    assert!(b.try_withdraw(), "a new second, new minimum");
}

// "Active requests will only be considered for the duration of the interval when calculating
// the retry budget."
#[tokio::test(start_paused = true)]
async fn requests_leave_the_budget_after_the_interval() {
    let b = budget(50, 10, 1, 1);
    for _ in 0..10 {
        b.deposit();
    }
    advance(Duration::from_secs(5)).await;
    assert_eq!(b.counts(), (10, 0));
    advance(Duration::from_secs(6)).await;
    assert_eq!(b.counts(), (0, 0));
    // Only the minimum is left.
    assert!(b.try_withdraw());
    assert!(!b.try_withdraw());
}

// "Retrying the same original request multiple times within the retry budget interval will
// lead to each retry being counted towards calculating the budget."
#[tokio::test(start_paused = true)]
async fn each_retry_counts() {
    let b = budget(50, 10, 1, 60);
    b.deposit();
    assert!(b.try_withdraw(), "1 retry of 2 requests is 50 %");
    assert!(!b.try_withdraw(), "2 of 3 would be 67 %");
    assert_eq!(b.counts(), (2, 1));
}

#[tokio::test(start_paused = true)]
async fn drives_tower_retry_as_a_budget() {
    use tower::retry::budget::Budget;
    let b = budget(0, 10, 1, 1);
    let dynamic: &dyn Budget = &b;
    dynamic.deposit();
    assert!(dynamic.withdraw());
    assert!(!dynamic.withdraw());
}
