//! Credit frames: WINDOW_UPDATE, MAX_STREAMS and BLOCKED (SPEC §6.3–§6.5).
//!
//! All three carry an absolute value, never an increment, so a duplicated or
//! late frame is harmless.

use bytes::BufMut;

use super::{FrameError, FrameKind, Header, StreamId};

/// The largest credit value a frame may carry: 2^62 - 1 (SPEC §6.3).
pub const MAX_CREDIT: u64 = (1 << 62) - 1;

/// Payload length of every credit frame.
pub(super) const CREDIT_PAYLOAD_LEN: u32 = 8;

fn decode_value(payload: &[u8]) -> Result<u64, FrameError> {
    // The length was checked on the header (SPEC §6.3); copying into a fixed
    // array keeps this total even if a caller passes a short slice.
    let mut raw = [0u8; 8];
    let n = payload.len().min(8);
    raw[..n].copy_from_slice(&payload[..n]);
    let value = u64::from_be_bytes(raw);
    if value > MAX_CREDIT {
        return Err(FrameError::CreditOverflow { value });
    }
    Ok(value)
}

/// "You may send up to byte `limit`" on a stream, or on the connection
/// when `stream` is 0.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct WindowUpdate {
    /// Stream, or [`StreamId::CONNECTION`].
    pub stream: StreamId,
    /// Absolute limit: the offset one past the last byte the peer may send.
    pub limit: u64,
}

impl WindowUpdate {
    /// The frame's header.
    pub fn header(&self) -> Header {
        credit_header(FrameKind::WindowUpdate, 0, self.stream)
    }

    pub(super) fn encode_payload(&self, dst: &mut impl BufMut) {
        dst.put_u64(self.limit);
    }

    pub(super) fn decode(header: &Header, payload: &[u8]) -> Result<WindowUpdate, FrameError> {
        Ok(WindowUpdate {
            stream: header.stream,
            limit: decode_value(payload)?,
        })
    }
}

/// "You may open streams with index below `count`" (cumulative; SPEC §6.4).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct MaxStreams {
    /// Cumulative stream-count limit.
    pub count: u64,
}

impl MaxStreams {
    /// The frame's header.
    pub fn header(&self) -> Header {
        credit_header(FrameKind::MaxStreams, 0, StreamId::CONNECTION)
    }

    pub(super) fn encode_payload(&self, dst: &mut impl BufMut) {
        dst.put_u64(self.count);
    }

    pub(super) fn decode(payload: &[u8]) -> Result<MaxStreams, FrameError> {
        Ok(MaxStreams {
            count: decode_value(payload)?,
        })
    }
}

/// What a BLOCKED probe is stuck on.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum BlockedOn {
    /// Connection data credit (stream 0, no flag).
    Connection,
    /// Stream-count credit (stream 0, STREAMS flag).
    StreamCount,
    /// One stream's data credit.
    Stream(StreamId),
}

/// Zero-window probe: "I have more to send and am stuck at `limit`"
/// (SPEC §6.5, §11). The receiver answers with its current limit.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Blocked {
    /// The credit the sender waits for.
    pub on: BlockedOn,
    /// The limit (a byte offset, or a stream count) the sender is stuck
    /// at (SPEC §6.5).
    pub limit: u64,
}

impl Blocked {
    /// Flag bit: blocked on stream-count credit. Only valid on stream 0.
    pub const FLAG_STREAMS: u8 = 0x1;

    /// The frame's header.
    pub fn header(&self) -> Header {
        let (flags, stream) = match self.on {
            BlockedOn::Connection => (0, StreamId::CONNECTION),
            BlockedOn::StreamCount => (Self::FLAG_STREAMS, StreamId::CONNECTION),
            BlockedOn::Stream(id) => (0, id),
        };
        credit_header(FrameKind::Blocked, flags, stream)
    }

    pub(super) fn encode_payload(&self, dst: &mut impl BufMut) {
        dst.put_u64(self.limit);
    }

    pub(super) fn decode(header: &Header, payload: &[u8]) -> Result<Blocked, FrameError> {
        let streams_flag = header.flags & Self::FLAG_STREAMS != 0;
        let on = match (header.stream.is_connection(), streams_flag) {
            (true, false) => BlockedOn::Connection,
            (true, true) => BlockedOn::StreamCount,
            (false, false) => BlockedOn::Stream(header.stream),
            // SPEC §6.5: the STREAMS flag is only meaningful on stream 0.
            (false, true) => {
                return Err(FrameError::InvalidFlags {
                    kind: FrameKind::Blocked,
                    flags: header.flags,
                    stream: header.stream,
                });
            }
        };
        Ok(Blocked {
            on,
            limit: decode_value(payload)?,
        })
    }
}

fn credit_header(kind: FrameKind, flags: u8, stream: StreamId) -> Header {
    Header {
        len: CREDIT_PAYLOAD_LEN,
        kind: kind as u8,
        flags,
        stream,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credit_values_above_62_bits_are_rejected() {
        let bytes = (MAX_CREDIT + 1).to_be_bytes();
        assert_eq!(
            MaxStreams::decode(&bytes),
            Err(FrameError::CreditOverflow {
                value: MAX_CREDIT + 1
            })
        );
        assert_eq!(
            MaxStreams::decode(&MAX_CREDIT.to_be_bytes()).unwrap().count,
            MAX_CREDIT
        );
    }

    #[test]
    fn streams_flag_on_a_stream_is_invalid() {
        let header = Header {
            len: 8,
            kind: FrameKind::Blocked as u8,
            flags: Blocked::FLAG_STREAMS,
            stream: StreamId::new(3).unwrap(),
        };
        assert!(matches!(
            Blocked::decode(&header, &[0; 8]),
            Err(FrameError::InvalidFlags { .. })
        ));
    }
}
