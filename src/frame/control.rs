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

/// Which directions of a stream a RESET aborts, named from its sender's
/// side (SPEC §6.6, §8.7.1).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum ResetScope {
    /// Both directions: no flag (or both flags) on the wire.
    #[default]
    Both,
    /// Only the direction the sender sends in (flag SEND): it writes no
    /// more.
    Send,
    /// Only the direction the sender receives in (flag RECEIVE): it
    /// stopped reading, and its peer stops sending.
    Receive,
}

/// Abort of one stream, in both directions or one (SPEC §6.6).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Reset {
    /// The stream aborted; never 0.
    pub stream: StreamId,
    /// Why.
    pub code: ErrorCode,
    /// Which directions. Anything but [`ResetScope::Both`] only after the
    /// peer announced DIRECTIONAL_RESET (SPEC §7.1).
    pub scope: ResetScope,
}

impl Reset {
    /// Flag SEND: only the sender's sending direction.
    pub const FLAG_SEND: u8 = 0x1;
    /// Flag RECEIVE: only the sender's receiving direction.
    pub const FLAG_RECEIVE: u8 = 0x2;

    /// A RESET of both directions.
    pub fn both(stream: StreamId, code: ErrorCode) -> Reset {
        Reset {
            stream,
            code,
            scope: ResetScope::Both,
        }
    }

    /// The frame's header.
    pub fn header(&self) -> Header {
        let flags = match self.scope {
            ResetScope::Both => 0,
            ResetScope::Send => Reset::FLAG_SEND,
            ResetScope::Receive => Reset::FLAG_RECEIVE,
        };
        Header {
            len: RESET_PAYLOAD_LEN,
            kind: FrameKind::Reset as u8,
            flags,
            stream: self.stream,
        }
    }

    pub(super) fn encode_payload(&self, dst: &mut impl BufMut) {
        dst.put_u32(self.code.0);
    }

    pub(super) fn decode(header: &Header, payload: &[u8]) -> Reset {
        let send = header.flags & Reset::FLAG_SEND != 0;
        let receive = header.flags & Reset::FLAG_RECEIVE != 0;
        let scope = match (send, receive) {
            (true, false) => ResetScope::Send,
            (false, true) => ResetScope::Receive,
            // Neither, or both: both directions (SPEC §6.6).
            _ => ResetScope::Both,
        };
        Reset {
            stream: header.stream,
            code: ErrorCode(be_u32(payload, 0)),
            scope,
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
