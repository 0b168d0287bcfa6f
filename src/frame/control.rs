//! RESET, PING and GOAWAY (SPEC §6.6–§6.8).

use bytes::{BufMut, Bytes};

use super::{ErrorCode, FrameError, FrameKind, Header, StreamId};

/// Payload length of RESET.
pub(super) const RESET_PAYLOAD_LEN: u32 = 4;
/// Payload length of PING.
pub(super) const PING_PAYLOAD_LEN: u32 = 8;
/// Smallest GOAWAY payload: last stream id and error code.
pub(super) const GOAWAY_MIN_PAYLOAD_LEN: u32 = 8;

fn be_u32(bytes: &[u8], at: usize) -> u32 {
    let mut raw = [0u8; 4];
    if let Some(src) = bytes.get(at..at + 4) {
        raw.copy_from_slice(src);
    }
    u32::from_be_bytes(raw)
}

/// Abort of one stream in both directions (SPEC §6.6).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Reset {
    /// The stream aborted; never 0.
    pub stream: StreamId,
    /// Why.
    pub code: ErrorCode,
}

impl Reset {
    /// The frame's header.
    pub fn header(&self) -> Header {
        Header {
            len: RESET_PAYLOAD_LEN,
            kind: FrameKind::Reset as u8,
            flags: 0,
            stream: self.stream,
        }
    }

    pub(super) fn encode_payload(&self, dst: &mut impl BufMut) {
        dst.put_u32(self.code.0);
    }

    pub(super) fn decode(header: &Header, payload: &[u8]) -> Reset {
        Reset {
            stream: header.stream,
            code: ErrorCode(be_u32(payload, 0)),
        }
    }
}

/// Liveness and RTT probe, or its acknowledgement (SPEC §6.7).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Ping {
    /// True on the reply.
    pub ack: bool,
    /// Opaque bytes, echoed by the reply.
    pub payload: [u8; 8],
}

impl Ping {
    /// Flag bit: this PING is a reply.
    pub const FLAG_ACK: u8 = 0x1;

    /// The frame's header.
    pub fn header(&self) -> Header {
        Header {
            len: PING_PAYLOAD_LEN,
            kind: FrameKind::Ping as u8,
            flags: if self.ack { Self::FLAG_ACK } else { 0 },
            stream: StreamId::CONNECTION,
        }
    }

    pub(super) fn encode_payload(&self, dst: &mut impl BufMut) {
        dst.put_slice(&self.payload);
    }

    pub(super) fn decode(header: &Header, payload: &[u8]) -> Ping {
        let mut opaque = [0u8; 8];
        let n = payload.len().min(8);
        opaque[..n].copy_from_slice(&payload[..n]);
        Ping {
            ack: header.flags & Self::FLAG_ACK != 0,
            payload: opaque,
        }
    }
}

/// Shutdown notice (SPEC §6.8): streams the sender opened up to
/// `last_stream` are processed, later ones are not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoAway {
    /// Highest peer-initiated stream the sender processed or will process.
    pub last_stream: StreamId,
    /// NO_ERROR for a graceful shutdown; anything else is a connection error.
    pub code: ErrorCode,
    /// Free-form diagnostic bytes (UTF-8 recommended), not interpreted.
    pub debug: Bytes,
}

impl GoAway {
    /// The frame's header.
    pub fn header(&self) -> Header {
        Header {
            len: GOAWAY_MIN_PAYLOAD_LEN + self.debug.len() as u32,
            kind: FrameKind::GoAway as u8,
            flags: 0,
            stream: StreamId::CONNECTION,
        }
    }

    pub(super) fn encode_payload(&self, dst: &mut impl BufMut) {
        dst.put_u32(self.last_stream.get());
        dst.put_u32(self.code.0);
        dst.put_slice(&self.debug);
    }

    pub(super) fn decode(payload: Bytes) -> Result<GoAway, FrameError> {
        // SPEC §6.8: the reserved bit of last_stream_id MUST be zero.
        let last_stream = StreamId::new(be_u32(&payload, 0)).ok_or(FrameError::ReservedBit)?;
        Ok(GoAway {
            last_stream,
            code: ErrorCode(be_u32(&payload, 4)),
            debug: payload.slice(GOAWAY_MIN_PAYLOAD_LEN as usize..),
        })
    }
}
