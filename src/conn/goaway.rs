//! GOAWAY bookkeeping both engines share (SPEC §13, §16.1): what this side
//! sent and what it received, with the rules that make repeated GOAWAYs
//! harmless.

use crate::frame::{ErrorCode, StreamId};
use crate::stats::CodeCounts;

/// GOAWAY frames accepted per connection (SPEC §16.1); a conformant peer
/// sends at most 5 (§13.2), and this side sends at most 2.
pub(crate) const MAX_GOAWAYS_RECEIVED: u32 = 10;

#[derive(Debug, Default)]
pub(crate) struct Goaways {
    /// last_stream_id and code of the GOAWAY this side sent (or owes).
    sent: Option<(StreamId, ErrorCode)>,
    /// The lowest last_stream_id received.
    received: Option<StreamId>,
    received_count: u32,
    /// GOAWAY frames written, by code.
    sent_codes: CodeCounts,
    /// GOAWAY frames received, by code (those past the limit included).
    received_codes: CodeCounts,
}

/// A GOAWAY received past the limit of SPEC §16.1.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct TooManyGoaways;

impl Goaways {
    /// The last_stream_id of a GOAWAY with `code` to send now, given the
    /// highest peer stream this side processed, or `None` if it would say
    /// nothing new. SPEC §13.2: a further GOAWAY never carries a higher
    /// last_stream_id (streams refused since were not processed), and only
    /// an error after a graceful one says something new; repeated closes
    /// send nothing more, far below the cap of 5.
    pub(crate) fn send(&mut self, processed: StreamId, code: ErrorCode) -> Option<StreamId> {
        let mut last = processed;
        if let Some((previous_last, previous_code)) = self.sent {
            last = last.min(previous_last);
            if previous_code != ErrorCode::NO_ERROR || code == ErrorCode::NO_ERROR {
                return None;
            }
        }
        self.sent = Some((last, code));
        Some(last)
    }

    /// A GOAWAY with `last` arrived; returns the last_stream_id in force
    /// (SPEC §13.2: the lowest received), or an error past the limit.
    pub(crate) fn receive(
        &mut self,
        last: StreamId,
        code: ErrorCode,
    ) -> Result<StreamId, TooManyGoaways> {
        self.received_codes.add(code);
        self.received_count += 1;
        if self.received_count > MAX_GOAWAYS_RECEIVED {
            return Err(TooManyGoaways);
        }
        let last = self.received.map_or(last, |previous| previous.min(last));
        self.received = Some(last);
        Ok(last)
    }

    /// A GOAWAY with `code` was written to the transport.
    pub(crate) fn note_written(&mut self, code: ErrorCode) {
        self.sent_codes.add(code);
    }

    /// GOAWAY frames written, by code.
    pub(crate) fn sent_codes(&self) -> &CodeCounts {
        &self.sent_codes
    }

    /// GOAWAY frames received, by code.
    pub(crate) fn received_codes(&self) -> &CodeCounts {
        &self.received_codes
    }

    /// This side sent (or owes) a GOAWAY.
    pub(crate) fn sent(&self) -> bool {
        self.sent.is_some()
    }

    /// The last_stream_id in force from the peer's GOAWAYs, if any came.
    pub(crate) fn received(&self) -> Option<StreamId> {
        self.received
    }

    /// A GOAWAY went either way: no new streams.
    pub(crate) fn going_away(&self) -> bool {
        self.sent.is_some() || self.received.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u32) -> StreamId {
        StreamId::new(n).unwrap()
    }

    #[test]
    fn a_further_goaway_is_an_error_after_a_graceful_one_and_never_raises_last() {
        let mut g = Goaways::default();
        assert_eq!(g.send(id(7), ErrorCode::NO_ERROR), Some(id(7)));
        assert_eq!(g.send(id(9), ErrorCode::NO_ERROR), None);
        assert_eq!(g.send(id(9), ErrorCode::INTERNAL_ERROR), Some(id(7)));
        assert_eq!(g.send(id(3), ErrorCode::CANCEL), None);
    }

    #[test]
    fn the_lowest_last_stream_id_received_holds_and_the_eleventh_is_a_flood() {
        let mut g = Goaways::default();
        assert_eq!(g.receive(id(9), ErrorCode::NO_ERROR), Ok(id(9)));
        assert_eq!(g.receive(id(11), ErrorCode::NO_ERROR), Ok(id(9)));
        assert_eq!(g.receive(id(5), ErrorCode::NO_ERROR), Ok(id(5)));
        for _ in 3..MAX_GOAWAYS_RECEIVED {
            assert!(g.receive(id(5), ErrorCode::NO_ERROR).is_ok());
        }
        assert_eq!(g.receive(id(5), ErrorCode::NO_ERROR), Err(TooManyGoaways));
    }
}
