//! PING and its acknowledgement (SPEC §6.7, §12.1), as both engines keep
//! them: the byte-stream `Connection` and the native-QUIC control plane.
//! One PING of this side in flight at a time, at most 50 sent in any
//! second, one owed acknowledgement (the newest payload wins, §10.3).

use std::time::{Duration, Instant};

use super::flood::SendBudget;

#[derive(Debug, Default)]
pub(crate) struct Pinger {
    /// PINGs asked for so far; the payload of the latest.
    seq: u64,
    /// Asked for, waiting for the send budget.
    deferred: bool,
    /// Ready to go out.
    owed: Option<[u8; 8]>,
    /// Written, not yet acknowledged: payload and when.
    sent: Option<([u8; 8], Instant)>,
    budget: SendBudget,
    /// The acknowledgement owed to the peer's newest PING.
    ack_owed: Option<[u8; 8]>,
    rtt: Option<Duration>,
    /// Smoothed round trip: the first sample, then 7/8 of the previous
    /// estimate and 1/8 of each new sample (RFC 6298 §2).
    srtt: Option<Duration>,
    /// When the latest round trip was measured.
    sampled_at: Option<Instant>,
}

impl Pinger {
    /// The application asks for a PING; one in flight serves every caller.
    /// Returns when to try again if the budget holds it back.
    pub(crate) fn request(&mut self, now: Instant) -> Option<Instant> {
        if self.in_flight() {
            return None;
        }
        self.seq += 1;
        self.deferred = true;
        self.release(now)
    }

    /// Lets a deferred PING out if the budget allows (SPEC §12.1); else
    /// returns when it will.
    pub(crate) fn release(&mut self, now: Instant) -> Option<Instant> {
        if !self.deferred {
            return None;
        }
        if self.budget.try_take(now) {
            self.deferred = false;
            self.owed = Some(self.seq.to_be_bytes());
            None
        } else {
            Some(self.budget.available_at(now))
        }
    }

    /// The PING to write now, if one is owed; it counts as sent at `now`.
    pub(crate) fn take_ping(&mut self, now: Instant) -> Option<[u8; 8]> {
        let payload = self.owed.take()?;
        self.sent = Some((payload, now));
        Some(payload)
    }

    /// The acknowledgement to write now, if one is owed.
    pub(crate) fn take_ack(&mut self) -> Option<[u8; 8]> {
        self.ack_owed.take()
    }

    /// The peer's PING: its acknowledgement is owed (the caller counts it
    /// toward the flood limit).
    pub(crate) fn on_ping(&mut self, payload: [u8; 8]) {
        self.ack_owed = Some(payload);
    }

    /// The peer's acknowledgement. True if it answers the PING in flight
    /// (the round trip is measured); false if it answers nothing, which
    /// SPEC §16.1 counts like a PING.
    pub(crate) fn on_ack(&mut self, now: Instant, payload: [u8; 8]) -> bool {
        match self.sent {
            Some((sent, at)) if sent == payload => {
                self.sent = None;
                let sample = now.saturating_duration_since(at);
                self.rtt = Some(sample);
                self.sampled_at = Some(now);
                self.srtt = Some(match self.srtt {
                    Some(srtt) => (srtt * 7 + sample) / 8,
                    None => sample,
                });
                true
            }
            _ => false,
        }
    }

    /// Something is owed to the peer.
    pub(crate) fn wants_transmit(&self) -> bool {
        self.owed.is_some() || self.ack_owed.is_some()
    }

    /// A PING of this side was asked for and is not answered yet.
    pub(crate) fn in_flight(&self) -> bool {
        self.sent.is_some() || self.owed.is_some() || self.deferred
    }

    /// When the PING in flight was written, if one is.
    pub(crate) fn unanswered_since(&self) -> Option<Instant> {
        self.sent.map(|(_, at)| at)
    }

    /// PINGs answered so far.
    pub(crate) fn completed(&self) -> u64 {
        self.seq - u64::from(self.in_flight())
    }

    /// The latest round trip.
    pub(crate) fn rtt(&self) -> Option<Duration> {
        self.rtt
    }

    /// When the latest round trip was measured.
    pub(crate) fn sampled_at(&self) -> Option<Instant> {
        self.sampled_at
    }

    /// The smoothed round trip.
    pub(crate) fn smoothed_rtt(&self) -> Option<Duration> {
        self.srtt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_ping_in_flight_serves_every_request_and_measures_the_rtt() {
        let t0 = crate::test_epoch();
        let mut p = Pinger::default();
        assert_eq!(p.request(t0), None);
        assert_eq!(p.request(t0), None);
        let payload = p.take_ping(t0).unwrap();
        assert!(p.take_ping(t0).is_none(), "one PING for both requests");
        assert!(!p.on_ack(t0, [9; 8]), "an ACK for nothing");
        assert!(p.on_ack(t0 + Duration::from_millis(7), payload));
        assert_eq!(p.rtt(), Some(Duration::from_millis(7)));
        assert_eq!(p.smoothed_rtt(), Some(Duration::from_millis(7)));
        assert_eq!(p.completed(), 1);
    }

    #[test]
    fn the_smoothed_round_trip_moves_an_eighth_of_the_way_to_each_sample() {
        let t0 = crate::test_epoch();
        let mut p = Pinger::default();
        let mut at = t0;
        for ms in [8, 16] {
            assert_eq!(p.request(at), None);
            let payload = p.take_ping(at).unwrap();
            at += Duration::from_millis(ms);
            assert!(p.on_ack(at, payload));
        }
        assert_eq!(p.rtt(), Some(Duration::from_millis(16)));
        assert_eq!(p.smoothed_rtt(), Some(Duration::from_millis(9)));
    }

    #[test]
    fn beyond_fifty_pings_a_second_the_next_waits() {
        let t0 = crate::test_epoch();
        let mut p = Pinger::default();
        for _ in 0..50 {
            assert_eq!(p.request(t0), None);
            let payload = p.take_ping(t0).unwrap();
            assert!(p.on_ack(t0, payload));
        }
        let retry = p.request(t0).expect("held back");
        assert!(retry > t0);
        assert!(p.in_flight());
        assert_eq!(p.release(retry), None);
        assert!(p.take_ping(retry).is_some());
    }
}
