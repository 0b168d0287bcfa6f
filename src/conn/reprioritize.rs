//! PRIORITY_UPDATE both ways (SPEC §6.10): this side asking the peer to
//! send a stream's data at another priority, and the peer asking this
//! side.
//!
//! Requests are coalesced per stream (the newest wins, §10.3) and paced
//! by a [`RequestBudget`](super::flood::RequestBudget), so never more than
//! the sender budget of §16.1 in any second, however many streams the
//! application reprioritises. A request waits for its stream's opening
//! frame (the peer must not see an idle id).

use std::time::Instant;

use super::flood::Flood;
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
    /// or the stream is unknown). Before the peer's SETTINGS arrived the
    /// request is kept, and dropped if the peer turns out not to take it.
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
        let Some(stream) = self.streams.get_mut(&id) else {
            return Err(PriorityRequestError::Finished);
        };
        if !stream.recv_open() {
            return Err(PriorityRequestError::Finished);
        }
        let waits_for_open = stream.needs_open;
        if stream.owe_priority.replace(priority).is_none() {
            self.queues.priority.push_back(id);
            self.priority_waits_for_open &= waits_for_open;
            self.compact_priority_queue();
        }
        Ok(())
    }

    /// Drops ids from the request queue that no longer owe one (streams
    /// forgotten with a request pending), once they could outnumber the
    /// live streams: the queue stays within twice the streams.
    fn compact_priority_queue(&mut self) {
        if self.queues.priority.len() > 2 * self.streams.len() + 16 {
            let streams = &self.streams;
            self.queues
                .priority
                .retain(|id| streams.get(id).is_some_and(|s| s.owe_priority.is_some()));
        }
    }

    /// True if a request can be written now (the driver's `wants_transmit`).
    pub(super) fn priority_requests_ready(&self) -> bool {
        !self.queues.priority.is_empty()
            && self.handshake.peer.is_some()
            && !self.priority_waits_for_open
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
            for id in std::mem::take(&mut self.queues.priority) {
                if let Some(stream) = self.streams.get_mut(&id) {
                    stream.owe_priority = None;
                }
            }
            return;
        }
        // Set again below if every request left waits for its stream's
        // opening frame.
        self.priority_waits_for_open = false;
        let mut waiting_open = 0;
        for _ in 0..self.queues.priority.len() {
            let Some(&id) = self.queues.priority.front() else {
                break;
            };
            let Some(stream) = self.streams.get_mut(&id) else {
                self.queues.priority.pop_front();
                continue;
            };
            if stream.owe_priority.is_none() || !stream.recv_open() {
                stream.owe_priority = None;
                self.queues.priority.pop_front();
                continue;
            }
            if stream.needs_open {
                // SPEC §6.10: not before the opening frame; the data
                // scheduler sends that, and this request then next time.
                self.queues.priority.rotate_left(1);
                waiting_open += 1;
                continue;
            }
            if !self.priority_budget.try_take(now) {
                let at = self.priority_budget.next_at(now);
                self.timers.set(Timer::PriorityPace, at);
                return;
            }
            self.queues.priority.pop_front();
            let Some(priority) = stream.owe_priority.take() else {
                continue;
            };
            let frame = Frame::PriorityUpdate(PriorityUpdate {
                stream: id,
                urgency: priority.urgency(),
                incremental: priority.incremental(),
            });
            self.put_frame(out, &frame);
            self.stats.priority_requests_sent += 1;
        }
        self.priority_waits_for_open =
            waiting_open > 0 && waiting_open == self.queues.priority.len();
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
        let priority = Priority::new(update.urgency, update.incremental);
        tracing::trace!(side = ?self.side, stream = %id, ?priority, "priority requested by the peer");
        self.apply_priority(id, priority);
    }
}
