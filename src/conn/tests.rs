//! Unit tests of the core's internals that need a clock value.

use std::time::{Duration, Instant};

use super::flood::{Flood, FloodCounters};
use crate::config::FloodLimits;

#[test]
fn flood_limits_apply_per_second_of_the_injected_clock() {
    let limits = FloodLimits {
        pings: 2,
        ..FloodLimits::default()
    };
    let mut counters = FloodCounters::new(limits);
    let t0 = Instant::now();
    assert!(counters.count(t0, Flood::Ping).is_ok());
    assert!(counters.count(t0, Flood::Ping).is_ok());
    assert_eq!(counters.count(t0, Flood::Ping), Err(Flood::Ping));
    // Other counters are independent.
    assert!(counters.count(t0, Flood::Blocked).is_ok());
    let t1 = t0 + Duration::from_secs(1);
    assert!(counters.count(t1, Flood::Ping).is_ok());
}

#[test]
fn the_send_budget_allows_fifty_frames_in_any_second() {
    use super::flood::{SEND_BUDGET_PER_SECOND, SendBudget};
    let mut budget = SendBudget::default();
    let t0 = Instant::now();
    for i in 0..SEND_BUDGET_PER_SECOND as u32 {
        assert!(budget.try_take(t0 + Duration::from_millis(10) * i));
    }
    let t = t0 + Duration::from_millis(600);
    assert!(!budget.try_take(t));
    // The oldest send leaves the window 1 s after it was made.
    assert_eq!(budget.available_at(t), t0 + Duration::from_secs(1));
    assert!(budget.try_take(t0 + Duration::from_secs(1)));
    assert!(!budget.try_take(t0 + Duration::from_secs(1)));
    assert!(budget.try_take(t0 + Duration::from_millis(1010)));
}
