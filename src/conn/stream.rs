//! Per-stream state of the sans-IO core: the two directions, their credit,
//! their buffers, and the coalesced control frames owed for the stream.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};

/// Send chunks smaller than this are gathered with their successors into
/// one frame.
const GATHER_BELOW: usize = 4096;

use super::sched::Priority;
use crate::error::Initiator;
use crate::flow::{RecvCredit, SendCredit};
use crate::frame::ErrorCode;

/// Which scheduling queue a stream sits in (a stream is in at most one).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Queued {
    No,
    /// Ready to send DATA.
    Data,
    /// Has DATA but waits for connection credit.
    ConnBlocked,
}

/// Zero-window probe schedule for one credit (SPEC §11).
#[derive(Copy, Clone, Debug)]
pub(crate) struct Probe {
    pub(crate) since: Instant,
    pub(crate) next_at: Instant,
    pub(crate) interval: Duration,
}

impl Probe {
    pub(crate) fn start(now: Instant, interval: Duration) -> Probe {
        Probe {
            since: now,
            next_at: now + interval,
            interval,
        }
    }

    /// Advances after a probe was sent: doubles the interval up to `cap`.
    pub(crate) fn backoff(&mut self, now: Instant, cap: Duration) {
        self.interval = (self.interval * 2).min(cap);
        self.next_at = now + self.interval;
    }
}

/// A half of the application's handle to a stream.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Half {
    /// The read half.
    Recv,
    /// The write half.
    Send,
}

/// Per-stream counters, exposed through `stream_stats`.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamStats {
    /// Payload bytes sent.
    pub bytes_sent: u64,
    /// Payload bytes received (with those discarded after the read half
    /// was dropped).
    pub bytes_received: u64,
    /// Payload bytes buffered for sending.
    pub send_buffered: u64,
    /// Payload bytes received and not yet read.
    pub recv_buffered: u64,
    /// Credit the peer granted that is not used yet.
    pub send_window: u64,
    /// Credit this side announced that the peer has not used yet.
    pub recv_window: u64,
    /// Time spent with data queued and zero stream credit.
    pub blocked_on_stream: Duration,
    /// Times the stream ran out of stream credit with data queued.
    pub zero_window_events: u64,
    /// BLOCKED probes sent for this stream.
    pub probes_sent: u64,
}

/// Where the send direction stands (SPEC §8.3, from this side).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum SendState {
    /// The application may write.
    Open,
    /// The application finished: a FIN follows the buffered bytes.
    Finishing,
    /// The FIN went out.
    Finished,
    /// Aborted by a reset, this side's or the peer's: nothing more goes
    /// out, and writes fail with the code.
    Reset(ErrorCode, Initiator),
}

/// Where the receive direction stands (SPEC §8.3, from this side).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum RecvState {
    /// Bytes are buffered for a reader.
    Open,
    /// The application will not read any more: arriving bytes are dropped
    /// and their credit returned at once, until the peer's FIN.
    Discarding,
    /// The peer's FIN arrived; unread bytes may remain.
    Finished,
    /// Aborted by a reset: buffered bytes are gone and reads fail with the
    /// code. (The peer's RESET after its FIN leaves this direction
    /// `Finished`, SPEC §8.7.)
    Reset(ErrorCode, Initiator),
}

#[derive(Debug)]
pub(crate) struct StreamState {
    // Send direction.
    pub(crate) send: SendState,
    pub(crate) send_credit: SendCredit,
    /// Inline, unlike `recv_buf`: the DATA scheduler reaches it for every
    /// frame, and one more pointer to follow cost 100 ns per frame with
    /// 10,000 streams (cold caches).
    pub(crate) send_buf: VecDeque<Bytes>,
    pub(crate) send_buffered: usize,
    /// The opening frame has not gone out yet (locally opened streams).
    pub(crate) needs_open: bool,
    pub(crate) half_closed_at: Option<Instant>,
    // Receive direction.
    pub(crate) recv: RecvState,
    pub(crate) recv_credit: RecvCredit,
    pub(crate) recv_buf: ChunkQueue,
    // Both.
    /// The application dropped its handle.
    pub(crate) released: bool,
    /// The application dropped this half of its handle.
    pub(crate) recv_handle_dropped: bool,
    pub(crate) send_handle_dropped: bool,
    /// Owed control frames (coalesced: one of each at most).
    pub(crate) owe_window_update: bool,
    pub(crate) owe_blocked: bool,
    /// A RESET owed for the send direction, and one for the receive
    /// direction, with the code of the direction's `Reset` state; owed
    /// together with the same code, one RESET covers both (SPEC §6.6,
    /// §8.7.1).
    pub(crate) owe_reset: bool,
    pub(crate) owe_stop: bool,
    pub(crate) in_control_queue: bool,
    pub(crate) queued: Queued,
    /// Where the DATA scheduler puts it (see `sched`).
    pub(crate) priority: Priority,
    pub(crate) in_wake_queue: bool,
    /// A write found the send buffer full; wake the writer when it drains.
    pub(crate) writer_waiting: bool,
    /// A flush waits for the buffered bytes (and a queued FIN) to go out;
    /// wake it when they have.
    pub(crate) flush_waiting: bool,
    /// The application let go of the stream after finishing it, while the
    /// peer may still send: once the FIN is out, RESET CANCEL tells the
    /// peer to stop (SPEC §8.7; the peer keeps the finished direction).
    pub(crate) cancel_after_fin: bool,
    /// The transport offset (in bytes emitted since the connection began)
    /// just past the stream's latest DATA frame: its bytes are on the wire
    /// once the transport has taken that many.
    pub(crate) emitted_until: u64,
    /// Boxed: most streams never probe, and the state stays small.
    pub(crate) probe: Option<Box<Probe>>,
    /// A BLOCKED went out and no WINDOW_UPDATE came since: the next one may
    /// be its answer, which is not a flood (SPEC §16.1).
    pub(crate) blocked_unanswered: bool,
    /// When the receive window was last announced, in milliseconds since
    /// the connection began (0: never); the window tuning's clock.
    pub(crate) announced_at_ms: u32,
    pub(crate) stats: StreamCounters,
}

/// The counters a stream keeps; [`StreamStats`] adds what is computed
/// from the rest of the state when asked.
#[derive(Copy, Clone, Debug, Default)]
pub(crate) struct StreamCounters {
    /// Nanoseconds (a u64 holds 584 years).
    pub(crate) blocked_on_stream_ns: u64,
    /// 32 bits, saturating: four billion events on one stream is already
    /// past meaning, and the stream state stays smaller.
    pub(crate) zero_window_events: u32,
    pub(crate) probes_sent: u32,
}

impl StreamState {
    pub(crate) fn new(send_limit: u64, recv_window: u64) -> StreamState {
        StreamState {
            send: SendState::Open,
            send_credit: SendCredit::new(send_limit),
            send_buf: VecDeque::new(),
            send_buffered: 0,
            needs_open: false,
            half_closed_at: None,
            recv: RecvState::Open,
            recv_credit: RecvCredit::new(recv_window),
            recv_buf: ChunkQueue::default(),
            released: false,
            recv_handle_dropped: false,
            send_handle_dropped: false,
            owe_window_update: false,
            owe_blocked: false,
            owe_reset: false,
            owe_stop: false,
            in_control_queue: false,
            queued: Queued::No,
            priority: Priority::default(),
            in_wake_queue: false,
            writer_waiting: false,
            flush_waiting: false,
            cancel_after_fin: false,
            emitted_until: 0,
            probe: None,
            blocked_unanswered: false,
            announced_at_ms: 0,
            stats: StreamCounters::default(),
        }
    }

    /// The send direction has nothing more to do.
    pub(crate) fn send_done(&self) -> bool {
        matches!(self.send, SendState::Finished | SendState::Reset(..))
    }

    /// The application finished the send direction (the FIN may still wait).
    pub(crate) fn send_finished(&self) -> bool {
        matches!(self.send, SendState::Finishing | SendState::Finished)
    }

    /// The peer's FIN arrived.
    pub(crate) fn fin_received(&self) -> bool {
        self.recv == RecvState::Finished
    }

    /// The receive direction is over: the peer finished and every byte was
    /// read (or discarded), or the direction was reset.
    pub(crate) fn recv_done(&self) -> bool {
        match self.recv {
            RecvState::Reset(..) => true,
            RecvState::Finished => self.recv_buf.is_empty(),
            RecvState::Open | RecvState::Discarding => false,
        }
    }

    /// Still receiving DATA for a reader: not reset, not finished, not
    /// discarding.
    pub(crate) fn takes_data(&self) -> bool {
        self.recv == RecvState::Open
    }

    /// Closed in the sense of SPEC §8.3: both directions ended, by FIN or
    /// by reset (unread data may remain). Frames from the peer are then
    /// ignored.
    pub(crate) fn is_closed(&self) -> bool {
        self.send_done() && matches!(self.recv, RecvState::Finished | RecvState::Reset(..))
    }

    /// The reset that ended the stream, or one of its directions, with who
    /// sent it.
    pub(crate) fn reset(&self) -> Option<(ErrorCode, Initiator)> {
        match (self.send, self.recv) {
            (SendState::Reset(code, initiator), _) | (_, RecvState::Reset(code, initiator)) => {
                Some((code, initiator))
            }
            _ => None,
        }
    }

    /// Every byte the application handed over, and a queued FIN, went out
    /// (the opening frame too): nothing of the send side waits in the core.
    pub(crate) fn send_emitted(&self) -> bool {
        self.send_buffered == 0
            && !self.needs_open
            && matches!(self.send, SendState::Open | SendState::Finished)
    }

    /// A frame for this stream arrived: SPEC §12.4, every frame received
    /// for a half-closed(local) stream restarts its half-close timeout.
    pub(crate) fn peer_frame(&mut self, now: Instant) {
        if self.half_closed_at.is_some() {
            self.half_closed_at = Some(now);
        }
    }

    /// Owes a control frame.
    pub(crate) fn owes_control(&self) -> bool {
        self.owe_window_update || self.owe_blocked || self.owes_reset()
    }

    /// Owes a RESET, for either direction.
    pub(crate) fn owes_reset(&self) -> bool {
        self.owe_reset || self.owe_stop
    }

    /// The send direction may still carry DATA (not finished, not reset).
    pub(crate) fn send_open(&self) -> bool {
        matches!(self.send, SendState::Open | SendState::Finishing)
    }

    /// The peer's direction may still carry DATA for this side to keep
    /// (no FIN from the peer, not reset); received DATA then counts
    /// against the stream credit (SPEC §6.2).
    pub(crate) fn recv_open(&self) -> bool {
        matches!(self.recv, RecvState::Open | RecvState::Discarding)
    }

    /// Has something for the DATA scheduler: bytes, a FIN, or the opening frame.
    pub(crate) fn wants_to_send(&self) -> bool {
        match self.send {
            SendState::Open => self.send_buffered > 0 || self.needs_open,
            SendState::Finishing => true,
            SendState::Finished | SendState::Reset(..) => false,
        }
    }

    /// Takes up to `max` bytes off the send buffer for one frame. A large
    /// front chunk is split off without copying; runs of small chunks (many
    /// small writes) are gathered into one frame so headers stay a small
    /// share of the bytes.
    pub(crate) fn take_send(&mut self, max: usize) -> Bytes {
        let Some(front) = self.send_buf.front_mut() else {
            return Bytes::new();
        };
        let chunk = if front.len() > max {
            front.split_to(max)
        } else if front.len() >= GATHER_BELOW || self.send_buf.len() == 1 {
            pop_front(&mut self.send_buf)
        } else {
            let mut gathered = BytesMut::with_capacity(max.min(self.send_buffered));
            while let Some(front) = self.send_buf.front_mut() {
                let room = max - gathered.len();
                if room == 0 {
                    break;
                }
                if front.len() > room {
                    gathered.extend_from_slice(&front.split_to(room));
                    break;
                }
                gathered.extend_from_slice(front);
                pop_front(&mut self.send_buf);
            }
            gathered.freeze()
        };
        self.send_buffered -= chunk.len();
        chunk
    }

    /// Drops everything buffered for sending (on reset).
    pub(crate) fn clear_send(&mut self) {
        self.send_buf = VecDeque::new();
        self.send_buffered = 0;
    }

    /// Takes up to `max` buffered received bytes.
    pub(crate) fn take_recv(&mut self, max: usize) -> Option<Bytes> {
        let front = self.recv_buf.front_mut()?;
        if front.len() <= max {
            Some(self.recv_buf.pop_front())
        } else {
            let chunk = front.split_to(max);
            Some(chunk)
        }
    }

    /// Drops everything buffered for reading; returns the byte count so the
    /// caller can release connection credit (SPEC §9.7: credit conservation).
    pub(crate) fn discard_recv(&mut self) -> u64 {
        let n: usize = self.recv_buf.iter().map(Buf::remaining).sum();
        self.recv_buf = ChunkQueue::default();
        n as u64
    }
}

/// Takes the front chunk of the send queue and frees the queue's
/// allocation once it is empty: most streams are idle most of the time.
fn pop_front(queue: &mut VecDeque<Bytes>) -> Bytes {
    let chunk = queue.pop_front().unwrap_or_default();
    if queue.is_empty() {
        *queue = VecDeque::new();
    }
    chunk
}

/// A queue of buffered chunks that is one word while empty and frees its
/// allocation once it empties: most streams are idle most of the time, and
/// an idle stream then holds no buffer memory at all (a refill costs two
/// small allocations, next to a whole frame's work).
// Boxed on purpose: the point is one word instead of a VecDeque's four.
#[allow(clippy::box_collection)]
#[derive(Debug, Default)]
pub(crate) struct ChunkQueue(Option<Box<VecDeque<Bytes>>>);

impl ChunkQueue {
    pub(crate) fn push_back(&mut self, chunk: Bytes) {
        self.0.get_or_insert_default().push_back(chunk);
    }

    pub(crate) fn front_mut(&mut self) -> Option<&mut Bytes> {
        self.0.as_mut()?.front_mut()
    }

    /// Takes the front chunk (empty if there is none).
    pub(crate) fn pop_front(&mut self) -> Bytes {
        let Some(queue) = self.0.as_mut() else {
            return Bytes::new();
        };
        let chunk = queue.pop_front().unwrap_or_default();
        if queue.is_empty() {
            self.0 = None;
        }
        chunk
    }

    pub(crate) fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |queue| queue.len())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Bytes> {
        self.0.iter().flat_map(|queue| queue.iter())
    }
}

#[cfg(test)]
mod size {
    use super::StreamState;

    /// Every open stream holds one (boxed); idle memory per stream is a
    /// published figure, so growth should be a decision. (168 bytes until
    /// flush completion needed the stream's transport offset, 184 since.)
    #[test]
    fn stream_state_stays_small() {
        let size = std::mem::size_of::<StreamState>();
        assert!(size <= 184, "StreamState grew to {size} bytes");
    }
}
