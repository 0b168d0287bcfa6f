//! The DATA scheduler's queue: which stream with data and credit sends
//! next (SPEC §10.2, local policy), by each stream's [`Priority`].
//!
//! A stream's first frame, which opens it, goes before everything else,
//! in the order the streams were opened: the peer must see stream ids in
//! increasing order (SPEC §8.1), whatever their priorities. After that,
//! urgency: a stream of a more urgent level always goes before one of a
//! less urgent level. Within a level, the streams that are not
//! incremental go one at a time, lowest stream id first, each until it has
//! nothing more to send now; then the incremental ones take turns of one
//! frame each, round-robin. This is RFC 9218's model (§4) for a
//! multiplexer; control frames still go before any DATA (§10.2).
//!
//! Lower urgencies can starve while a more urgent stream always has data
//! and credit: that is the point of urgency. A stream's credit bounds how
//! much it sends before its reader must answer, so a stalled urgent reader
//! cannot hold the connection.
//!
//! Work per frame: finding the most urgent occupied level reads one byte
//! of bitmap; an incremental stream is a `VecDeque` push and pop (O(1));
//! a non-incremental one a `BTreeSet` insert and removal (O(log n) in the
//! streams at its level).

use std::collections::{BTreeSet, VecDeque};

use crate::frame::StreamId;

/// Urgency levels, 0 (most urgent) to 7.
const LEVELS: usize = 8;

/// A stream's send priority: an urgency from 0 (most urgent) to 7, and
/// whether it shares its level round-robin (incremental) or goes one at a
/// time (RFC 9218 §4).
///
/// The default is urgency 3, incremental: every stream takes equal turns,
/// as creditmux streams did before priorities. (RFC 9218's default is not
/// incremental, which suits HTTP responses that are useless until whole;
/// a multiplexer's streams are independent flows.)
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Priority {
    urgency: u8,
    incremental: bool,
}

impl Priority {
    /// The most urgent level there is.
    pub const MOST_URGENT: u8 = 0;
    /// The least urgent level there is.
    pub const LEAST_URGENT: u8 = (LEVELS - 1) as u8;

    /// A priority of `urgency` (0 is the most urgent; above 7 counts as 7).
    pub const fn new(urgency: u8, incremental: bool) -> Priority {
        let urgency = if urgency > Self::LEAST_URGENT {
            Self::LEAST_URGENT
        } else {
            urgency
        };
        Priority {
            urgency,
            incremental,
        }
    }

    /// 0 (most urgent) to 7.
    pub const fn urgency(self) -> u8 {
        self.urgency
    }

    /// Whether the stream shares its urgency level round-robin.
    pub const fn incremental(self) -> bool {
        self.incremental
    }
}

impl Default for Priority {
    fn default() -> Self {
        Priority::new(3, true)
    }
}

/// Streams with data and credit, by priority.
#[derive(Debug, Default)]
pub(super) struct DataQueue {
    /// Streams not yet announced, in the order they were opened.
    opening: VecDeque<StreamId>,
    /// Per urgency: the streams that go one at a time, lowest id first.
    sequential: [BTreeSet<StreamId>; LEVELS],
    /// Per urgency: the streams that take turns.
    incremental: [VecDeque<StreamId>; LEVELS],
    /// Bit `u` set while level `u` holds a stream.
    occupied: u8,
    len: usize,
}

impl DataQueue {
    /// Queues `id`, not yet announced, for its opening frame: after the
    /// streams opened before it, before any other turn.
    pub(super) fn push_opening(&mut self, id: StreamId) {
        self.opening.push_back(id);
        self.len += 1;
    }

    /// Queues `id` at `priority` (for its next turn, if incremental).
    pub(super) fn push(&mut self, id: StreamId, priority: Priority) {
        let level = usize::from(priority.urgency);
        if priority.incremental {
            self.incremental[level].push_back(id);
        } else if !self.sequential[level].insert(id) {
            return;
        }
        self.occupied |= 1 << level;
        self.len += 1;
    }

    /// The stream whose turn it is, out of the queue.
    pub(super) fn pop(&mut self) -> Option<StreamId> {
        if let Some(id) = self.opening.pop_front() {
            self.len -= 1;
            return Some(id);
        }
        while self.occupied != 0 {
            let level = self.occupied.trailing_zeros() as usize;
            let id = self.sequential[level]
                .pop_first()
                .or_else(|| self.incremental[level].pop_front());
            self.clear_if_empty(level);
            if let Some(id) = id {
                self.len -= 1;
                return Some(id);
            }
        }
        None
    }

    /// Clears level `level`'s bit once it holds no stream.
    fn clear_if_empty(&mut self, level: usize) {
        if self.sequential[level].is_empty() && self.incremental[level].is_empty() {
            self.occupied &= !(1 << level);
        }
    }

    /// Takes `id`, queued at `priority` (not for its opening), out of the
    /// queue: O(log n) for a non-incremental stream, O(n) in the streams at
    /// its level for an incremental one (a priority change, not a turn).
    pub(super) fn remove(&mut self, id: StreamId, priority: Priority) {
        let level = usize::from(priority.urgency);
        let removed = if priority.incremental {
            let queue = &mut self.incremental[level];
            let before = queue.len();
            queue.retain(|&queued| queued != id);
            before != queue.len()
        } else {
            self.sequential[level].remove(&id)
        };
        if removed {
            self.len -= 1;
            self.clear_if_empty(level);
        }
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every queued stream, in no particular order.
    pub(super) fn iter(&self) -> impl Iterator<Item = &StreamId> + '_ {
        self.opening
            .iter()
            .chain(self.sequential.iter().flatten())
            .chain(self.incremental.iter().flatten())
    }

    pub(super) fn clear(&mut self) {
        *self = DataQueue::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u32) -> StreamId {
        StreamId::new(n).unwrap()
    }

    fn drain(queue: &mut DataQueue) -> Vec<u32> {
        std::iter::from_fn(|| queue.pop().map(StreamId::get)).collect()
    }

    #[test]
    fn more_urgent_levels_go_first_and_incremental_streams_keep_their_order() {
        let mut q = DataQueue::default();
        q.push(id(1), Priority::new(5, true));
        q.push(id(3), Priority::new(1, true));
        q.push(id(5), Priority::new(5, true));
        q.push(id(7), Priority::new(1, true));
        assert_eq!(q.len(), 4);
        assert_eq!(drain(&mut q), vec![3, 7, 1, 5]);
        assert!(q.is_empty());
    }

    #[test]
    fn non_incremental_streams_go_lowest_id_first_and_before_incremental_ones() {
        let mut q = DataQueue::default();
        q.push(id(9), Priority::new(3, true));
        q.push(id(7), Priority::new(3, false));
        q.push(id(3), Priority::new(3, false));
        q.push(id(3), Priority::new(3, false));
        assert_eq!(q.len(), 3, "a sequential stream is queued once");
        assert_eq!(drain(&mut q), vec![3, 7, 9]);
    }

    #[test]
    fn removing_a_stream_frees_its_level() {
        let mut q = DataQueue::default();
        q.push(id(1), Priority::new(0, true));
        q.push(id(3), Priority::new(2, false));
        q.push(id(5), Priority::new(4, true));
        q.remove(id(1), Priority::new(0, true));
        q.remove(id(3), Priority::new(2, false));
        q.remove(id(3), Priority::new(2, false));
        assert_eq!(q.len(), 1);
        assert_eq!(drain(&mut q), vec![5]);
    }

    #[test]
    fn streams_to_open_go_first_in_the_order_they_came() {
        let mut q = DataQueue::default();
        q.push(id(1), Priority::new(0, false));
        q.push_opening(id(7));
        q.push_opening(id(5));
        assert_eq!(q.len(), 3);
        assert_eq!(drain(&mut q), vec![7, 5, 1]);
    }

    #[test]
    fn urgency_above_the_least_urgent_level_counts_as_it() {
        assert_eq!(Priority::new(200, false).urgency(), 7);
        assert_eq!(Priority::default(), Priority::new(3, true));
    }
}
