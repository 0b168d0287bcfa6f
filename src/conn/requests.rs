//! This side's PRIORITY_UPDATE requests (SPEC §6.10), as both engines keep
//! them: coalesced per stream (the newest wins, §10.3), held until the
//! stream may be named to the peer, then written oldest first within the
//! sender budget (at most 500 in any second, §16.1), however many streams
//! the application reprioritises.
//!
//! The engine decides when a stream may be named (`request` with `ready`,
//! or `ready` later: the byte-stream engine after the stream's opening
//! frame), forgets a stream whose peer direction ended, arms its pace
//! timer when `write` says so, and does not call `write` while it is
//! armed.

use std::collections::VecDeque;
use std::time::Instant;

use super::flood::RequestBudget;
use super::sched::Priority;
use crate::frame::{PriorityUpdate, StreamId, StreamMap};

/// A stream's request not written yet.
#[derive(Copy, Clone, Debug)]
struct Pending {
    priority: Priority,
    /// In `queue`: the stream may be named to the peer.
    queued: bool,
}

/// Pending requests and their pacing.
#[derive(Debug, Default)]
pub(crate) struct PriorityRequests {
    /// At most one per stream; the engine forgets a stream's entry when
    /// its application or its peer direction lets go of it, so there are
    /// at most as many as the streams the engine holds.
    pending: StreamMap<Pending>,
    /// Streams whose request may go, oldest first. An id whose entry was
    /// forgotten stays until it reaches the front or the queue is
    /// compacted, so the queue is at most twice the entries (plus a few).
    queue: VecDeque<StreamId>,
    budget: RequestBudget,
}

/// What one `write` ended on.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Written {
    /// Every queued request went (or was stale).
    Done,
    /// The budget ran out: the rest may go at this time.
    PacedUntil(Instant),
}

impl PriorityRequests {
    /// Records `priority` for `id`, replacing a request not written yet;
    /// `ready`: the stream may be named to the peer now.
    pub(crate) fn request(&mut self, id: StreamId, priority: Priority, ready: bool) {
        let entry = self.pending.entry(id).or_insert(Pending {
            priority,
            queued: false,
        });
        entry.priority = priority;
        if ready && !entry.queued {
            entry.queued = true;
            self.queue.push_back(id);
            self.compact();
        }
    }

    /// `id` may be named to the peer from now on: a request held for it
    /// joins the queue.
    pub(crate) fn ready(&mut self, id: StreamId) {
        // Called for every stream that opens; requests are rare.
        if self.pending.is_empty() {
            return;
        }
        if let Some(entry) = self.pending.get_mut(&id)
            && !entry.queued
        {
            entry.queued = true;
            self.queue.push_back(id);
            self.compact();
        }
    }

    /// Drops `id`'s request, if one is pending.
    pub(crate) fn forget(&mut self, id: StreamId) {
        self.pending.remove(&id);
    }

    /// Drops every request (the peer does not take them).
    pub(crate) fn clear(&mut self) {
        self.pending.clear();
        self.queue.clear();
    }

    /// True if `write` has something to look at (stale ids included: it
    /// drops them).
    pub(crate) fn has_queued(&self) -> bool {
        !self.queue.is_empty()
    }

    /// Takes queued requests oldest first while the budget allows, each
    /// checked by `still_wanted` (the sender rules at write time), and
    /// hands each frame to `emit`.
    pub(crate) fn write(
        &mut self,
        now: Instant,
        mut still_wanted: impl FnMut(StreamId) -> bool,
        mut emit: impl FnMut(PriorityUpdate),
    ) -> Written {
        while let Some(&id) = self.queue.front() {
            let Some(entry) = self.pending.get(&id).filter(|e| e.queued).copied() else {
                // Forgotten since it was queued.
                self.queue.pop_front();
                continue;
            };
            if !still_wanted(id) {
                self.queue.pop_front();
                self.pending.remove(&id);
                continue;
            }
            if !self.budget.try_take(now) {
                return Written::PacedUntil(self.budget.next_at(now));
            }
            self.queue.pop_front();
            self.pending.remove(&id);
            emit(PriorityUpdate {
                stream: id,
                urgency: entry.priority.urgency(),
                incremental: entry.priority.incremental(),
            });
        }
        Written::Done
    }

    /// Drops stale ids once they could outnumber the live entries.
    fn compact(&mut self) {
        if self.queue.len() > 2 * self.pending.len() + 16 {
            let pending = &self.pending;
            self.queue
                .retain(|id| pending.get(id).is_some_and(|e| e.queued));
        }
    }
}

impl From<PriorityUpdate> for Priority {
    fn from(update: PriorityUpdate) -> Priority {
        Priority::new(update.urgency, update.incremental)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn id(n: u32) -> StreamId {
        StreamId::new(n).unwrap()
    }

    fn written(requests: &mut PriorityRequests, now: Instant) -> (Vec<(u32, u8)>, Written) {
        let mut out = Vec::new();
        let end = requests.write(now, |_| true, |f| out.push((f.stream.get(), f.urgency)));
        (out, end)
    }

    #[test]
    fn held_requests_wait_for_ready_and_the_newest_wins() {
        let mut requests = PriorityRequests::default();
        let t0 = crate::test_epoch();
        requests.request(id(1), Priority::new(5, true), false);
        requests.request(id(3), Priority::new(1, true), true);
        requests.request(id(1), Priority::new(2, true), false);
        assert_eq!(written(&mut requests, t0).0, [(3, 1)]);
        assert!(!requests.has_queued());
        requests.ready(id(1));
        assert_eq!(written(&mut requests, t0).0, [(1, 2)]);
        // Forgotten before it went: nothing, and the stale id goes too.
        requests.request(id(5), Priority::new(0, true), true);
        requests.forget(id(5));
        assert_eq!(written(&mut requests, t0), (vec![], Written::Done));
        assert!(!requests.has_queued());
    }

    #[test]
    fn the_budget_paces_and_the_queue_stays_bounded() {
        let mut requests = PriorityRequests::default();
        let t0 = crate::test_epoch();
        for n in 0..300 {
            requests.request(id(2 * n + 1), Priority::default(), true);
        }
        let (out, end) = written(&mut requests, t0);
        assert_eq!(out.len(), 250);
        assert_eq!(end, Written::PacedUntil(t0 + Duration::from_millis(4)));
        // Churn: streams asked for and forgotten while paced leave at most
        // twice the live entries queued.
        for n in 1000..5000 {
            requests.request(id(2 * n + 1), Priority::default(), true);
            requests.forget(id(2 * n + 1));
        }
        assert!(requests.queue.len() <= 2 * requests.pending.len() + 17);
    }
}
