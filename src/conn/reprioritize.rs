//! PRIORITY_UPDATE both ways (SPEC §6.10): this side asking the peer to
//! send a stream's data at another priority, and the peer asking this
//! side.
//!
//! Requests are kept by [`PriorityRequests`](super::requests), shared with
//! the native control plane; here a request waits for its stream's opening
//! frame (the peer must not see an idle id) and is dropped once the peer's
//! direction ends.

use std::time::Instant;

use super::flood::Flood;
use super::requests::Written;
use super::sched::Priority;
use super::timer::Timer;
use super::transmit::TransmitBuf;
use super::{Connection, Phase};
use crate::error::PriorityRequestError;
use crate::frame::{Frame, PriorityUpdate, StreamId};

impl Connection {
    /// Asks the peer to send `id`'s DATA at `priority` from now on (SPEC
    /// §6.10). Coalesced: a request not yet written is replaced. It goes
    /// out after the stream's opening frame and within the sender budget.
    ///
    /// Fails if the peer did not announce PRIORITY_UPDATES, or if the peer
    /// sends nothing more on the stream (its direction finished or reset,
    /// or the stream is unknown).
    pub fn request_priority(
        &mut self,
        now: Instant,
        id: StreamId,
        priority: Priority,
    ) -> Result<(), PriorityRequestError> {
        self.now = now;
        if self
            .handshake
            .peer
            .is_some_and(|peer| !peer.priority_updates)
        {
            return Err(PriorityRequestError::Unsupported);
        }
        if self.phase == Phase::Closed {
            return Err(PriorityRequestError::Finished);
        }
        let Some(stream) = self.streams.get(&id) else {
            return Err(PriorityRequestError::Finished);
        };
        if !stream.recv_open() {
            return Err(PriorityRequestError::Finished);
        }
        let announced = !stream.needs_open;
        self.priority_requests.request(id, priority, announced);
        Ok(())
    }

    /// True if a request can be written now (the driver's `wants_transmit`).
    pub(super) fn priority_requests_ready(&self) -> bool {
        self.priority_requests.has_queued()
            && self.handshake.peer.is_some()
            && self.timers.get(Timer::PriorityPace).is_none()
    }

    /// Writes the pending requests the budget allows; arms the pace timer
    /// for the rest.
    pub(super) fn write_priority_requests(&mut self, now: Instant, out: &mut TransmitBuf) {
        let Some(peer) = self.handshake.peer else {
            return;
        };
        if self.timers.get(Timer::PriorityPace).is_some() {
            // Held back until the pace timer has run: `wants_transmit`
            // says so too, without a clock.
            return;
        }
        if !peer.priority_updates {
            // The peer does not take them: what was asked before its
            // SETTINGS arrived is dropped.
            self.priority_requests.clear();
            return;
        }
        let streams = &self.streams;
        let mut frames = Vec::new();
        // SPEC §6.10: only while the peer still sends on the stream.
        let still_wanted = |id| streams.get(&id).is_some_and(|s| s.recv_open());
        let end = self
            .priority_requests
            .write(now, still_wanted, |update| frames.push(update));
        if let Written::PacedUntil(at) = end {
            self.timers.set(Timer::PriorityPace, at);
        }
        for update in frames {
            self.put_frame(out, &Frame::PriorityUpdate(update));
            self.stats.priority_requests_sent += 1;
        }
    }

    /// The peer's PRIORITY_UPDATE (SPEC §6.10).
    pub(super) fn on_priority_update(&mut self, now: Instant, update: PriorityUpdate) {
        self.count_flood(now, Flood::PriorityUpdate);
        let id = update.stream;
        let Some(stream) = self.streams.get(&id) else {
            self.on_unheld_stream(now, id, "PRIORITY_UPDATE");
            return;
        };
        if stream.is_closed() {
            self.count_flood(now, Flood::StrayFrame);
            return;
        }
        if !stream.send_open() {
            // Nothing more to send on it: nothing to order.
            return;
        }
        self.stats.priority_requests_received += 1;
        let priority = Priority::from(update);
        tracing::trace!(side = ?self.side, stream = %id, ?priority, "priority requested by the peer");
        self.apply_priority(id, priority);
    }
}
