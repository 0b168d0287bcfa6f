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
