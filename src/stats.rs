//! What a session and a stream report about themselves, on every engine.
//!
//! [`SessionStats`] and [`StreamStats`] are what [`Session::stats`] and
//! [`Stream::stats`] return. The creditmux engine (TCP, TLS, framed QUIC)
//! knows every field. Native QUIC leaves flow control, queues and stream
//! ends to quinn, which does not report them: such a field is `None` there,
//! never a zero that looks like a measurement. SPEC §18.7 says what the
//! fields that native QUIC does fill mean there.
//!
//! The sans-IO core reports the same counters, always complete, through
//! [`conn::ConnectionStats`] and [`conn::StreamStats`].
//!
//! [`Session::stats`]: crate::Session::stats
//! [`Stream::stats`]: crate::Stream::stats
//! [`conn::ConnectionStats`]: crate::conn::ConnectionStats
//! [`conn::StreamStats`]: crate::conn::StreamStats

use std::fmt;
use std::time::Duration;

use crate::frame::ErrorCode;

/// Counts of frames by error code (RESETs or GOAWAYs), in fixed space: one
/// counter for each code SPEC §14.1 defines, and one for every other code
/// (a peer chooses the codes it sends, so they are not keys of a map).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct CodeCounts {
    known: [u64; KNOWN_CODES],
    other: u64,
}

/// The codes of SPEC §14.1 are 0 to this, less one.
const KNOWN_CODES: usize = 0xf;

impl CodeCounts {
    /// Counts one frame with `code`.
    pub(crate) fn add(&mut self, code: ErrorCode) {
        let slot = match self.known.get_mut(code.0 as usize) {
            Some(slot) => slot,
            None => &mut self.other,
        };
        *slot = slot.saturating_add(1);
    }

    /// Frames counted with `code`; for a code SPEC §14.1 does not define,
    /// the count of every such code ([`CodeCounts::other`]).
    pub fn get(&self, code: ErrorCode) -> u64 {
        self.known
            .get(code.0 as usize)
            .copied()
            .unwrap_or(self.other)
    }

    /// Frames counted with a code SPEC §14.1 does not define.
    pub fn other(&self) -> u64 {
        self.other
    }

    /// Frames counted, whatever their code.
    pub fn total(&self) -> u64 {
        self.known
            .iter()
            .fold(self.other, |sum, n| sum.saturating_add(*n))
    }

    /// The defined codes counted at least once, with their counts.
    pub fn iter(&self) -> impl Iterator<Item = (ErrorCode, u64)> + '_ {
        self.known
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(code, n)| (ErrorCode(code as u32), *n))
    }
}

impl fmt::Debug for CodeCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        map.entries(self.iter());
        if self.other > 0 {
            map.entry(&"other", &self.other);
        }
        map.finish()
    }
}

/// Counters of a session, from [`Session::stats`](crate::Session::stats).
///
/// `None` marks what the session's engine cannot know (native QUIC); over
/// TCP, TLS and framed QUIC every field is `Some`, but for the round trips,
/// which are `None` until a PING completes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionStats {
    /// Bytes written to the transport (frames and preface; native QUIC:
    /// UDP payload bytes).
    pub transport_bytes_sent: u64,
    /// Bytes read from the transport (native QUIC: UDP payload bytes).
    pub transport_bytes_received: u64,
    /// Stream payload bytes sent.
    pub data_bytes_sent: u64,
    /// Stream payload bytes received.
    pub data_bytes_received: u64,
    /// Frames sent (native QUIC: QUIC frames).
    pub frames_sent: u64,
    /// Frames received (native QUIC: QUIC frames).
    pub frames_received: u64,
    /// Streams currently open.
    pub open_streams: u64,
    /// Connection credit the peer granted that is not used yet.
    pub send_window: Option<u64>,
    /// Connection credit announced to the peer and not used yet.
    pub recv_window: Option<u64>,
    /// Payload bytes received and not yet read, over all streams.
    pub recv_buffered: Option<u64>,
    /// Payload bytes written by the application and not yet sent, over all
    /// streams.
    pub queued_data_bytes: Option<u64>,
    /// Streams the peer opened that wait for `accept()`.
    pub accept_backlog: Option<u64>,
    /// Streams with data and credit, waiting for their turn to send.
    pub data_queue_depth: Option<u64>,
    /// Streams owing a control frame (WINDOW_UPDATE, BLOCKED, RESET).
    pub control_queue_depth: Option<u64>,
    /// Time with data queued and zero connection credit.
    pub blocked_on_connection: Option<Duration>,
    /// Time streams spent with data queued and zero stream credit, summed
    /// over streams (closed ones included).
    pub blocked_on_streams: Option<Duration>,
    /// Times the connection or a stream ran out of credit with data queued.
    pub zero_window_events: Option<u64>,
    /// BLOCKED probes sent (native QUIC: `DATA_BLOCKED`,
    /// `STREAM_DATA_BLOCKED` and `STREAMS_BLOCKED` frames sent).
    pub probes_sent: u64,
    /// The peer's BLOCKED probes answered.
    pub probes_answered: Option<u64>,
    /// Times the tuning grew a receive window (SPEC §9.8).
    pub windows_grown: Option<u64>,
    /// Times the tuning shrank a receive window back.
    pub windows_shrunk: Option<u64>,
    /// The latest PING round trip.
    pub rtt: Option<Duration>,
    /// The smoothed round trip (RFC 6298 weights over the PINGs; native
    /// QUIC: quinn's estimate from every acknowledgement).
    pub smoothed_rtt: Option<Duration>,
    /// Streams that closed with both FINs exchanged (SPEC §8.6).
    pub streams_completed: Option<u64>,
    /// Streams this side reset.
    pub streams_reset_local: Option<u64>,
    /// Streams the peer reset or refused.
    pub streams_reset_remote: Option<u64>,
    /// Of `streams_reset_local`: reset with CANCEL at a graceful close's
    /// drain deadline (SPEC §13.2).
    pub streams_cancelled_at_drain: Option<u64>,
    /// RESET frames sent, by code.
    pub resets_sent: Option<CodeCounts>,
    /// RESET frames received, by code.
    pub resets_received: Option<CodeCounts>,
    /// GOAWAY frames sent, by code.
    pub goaways_sent: CodeCounts,
    /// GOAWAY frames received, by code.
    pub goaways_received: CodeCounts,
}

/// Counters of one stream, from [`Stream::stats`](crate::Stream::stats).
///
/// `None` marks what the session's engine cannot know (native QUIC); over
/// TCP, TLS and framed QUIC every field is `Some`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamStats {
    /// Payload bytes sent.
    pub bytes_sent: u64,
    /// Payload bytes received (with those discarded after the read half
    /// was dropped).
    pub bytes_received: u64,
    /// Payload bytes buffered for sending.
    pub send_buffered: Option<u64>,
    /// Payload bytes received and not yet read.
    pub recv_buffered: Option<u64>,
    /// Credit the peer granted that is not used yet.
    pub send_window: Option<u64>,
    /// Credit this side announced that the peer has not used yet.
    pub recv_window: Option<u64>,
    /// Time spent with data queued and zero stream credit.
    pub blocked_on_stream: Option<Duration>,
    /// Times the stream ran out of stream credit with data queued.
    pub zero_window_events: Option<u64>,
    /// BLOCKED probes sent for this stream.
    pub probes_sent: Option<u64>,
}

impl From<crate::conn::ConnectionStats> for SessionStats {
    fn from(s: crate::conn::ConnectionStats) -> Self {
        SessionStats {
            transport_bytes_sent: s.transport_bytes_sent,
            transport_bytes_received: s.transport_bytes_received,
            data_bytes_sent: s.data_bytes_sent,
            data_bytes_received: s.data_bytes_received,
            frames_sent: s.frames_sent,
            frames_received: s.frames_received,
            open_streams: s.open_streams,
            send_window: Some(s.send_window),
            recv_window: Some(s.recv_window),
            recv_buffered: Some(s.recv_buffered),
            queued_data_bytes: Some(s.queued_data_bytes),
            accept_backlog: Some(s.accept_backlog),
            data_queue_depth: Some(s.data_queue_depth),
            control_queue_depth: Some(s.control_queue_depth),
            blocked_on_connection: Some(s.blocked_on_connection),
            blocked_on_streams: Some(s.blocked_on_streams),
            zero_window_events: Some(s.zero_window_events),
            probes_sent: s.probes_sent,
            probes_answered: Some(s.probes_answered),
            windows_grown: Some(s.windows_grown),
            windows_shrunk: Some(s.windows_shrunk),
            rtt: s.rtt,
            smoothed_rtt: s.smoothed_rtt,
            streams_completed: Some(s.streams_completed),
            streams_reset_local: Some(s.streams_reset_local),
            streams_reset_remote: Some(s.streams_reset_remote),
            streams_cancelled_at_drain: Some(s.streams_cancelled_at_drain),
            resets_sent: Some(s.resets_sent),
            resets_received: Some(s.resets_received),
            goaways_sent: s.goaways_sent,
            goaways_received: s.goaways_received,
        }
    }
}

impl From<crate::conn::StreamStats> for StreamStats {
    fn from(s: crate::conn::StreamStats) -> Self {
        StreamStats {
            bytes_sent: s.bytes_sent,
            bytes_received: s.bytes_received,
            send_buffered: Some(s.send_buffered),
            recv_buffered: Some(s.recv_buffered),
            send_window: Some(s.send_window),
            recv_window: Some(s.recv_window),
            blocked_on_stream: Some(s.blocked_on_stream),
            zero_window_events: Some(s.zero_window_events),
            probes_sent: Some(s.probes_sent),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_counted_in_fixed_space_with_unknown_ones_together() {
        let mut counts = CodeCounts::default();
        counts.add(ErrorCode::CANCEL);
        counts.add(ErrorCode::CANCEL);
        counts.add(ErrorCode::STREAM_TIMEOUT);
        counts.add(ErrorCode(0x1234));
        counts.add(ErrorCode(u32::MAX));
        assert_eq!(counts.get(ErrorCode::CANCEL), 2);
        assert_eq!(counts.get(ErrorCode::STREAM_TIMEOUT), 1);
        assert_eq!(counts.get(ErrorCode::NO_ERROR), 0);
        assert_eq!(counts.other(), 2);
        assert_eq!(counts.get(ErrorCode(0x99)), 2);
        assert_eq!(counts.total(), 5);
        assert_eq!(
            counts.iter().collect::<Vec<_>>(),
            vec![(ErrorCode::CANCEL, 2), (ErrorCode::STREAM_TIMEOUT, 1)]
        );
        assert_eq!(
            format!("{counts:?}"),
            "{CANCEL: 2, STREAM_TIMEOUT: 1, \"other\": 2}"
        );
    }
}
