//! The fixed 9-byte frame header (SPEC §5).

use super::{FrameError, StreamId};

/// Length of every frame header in bytes.
pub const HEADER_LEN: usize = 9;

/// The largest payload length the 24-bit length field can carry.
pub const MAX_PAYLOAD_LIMIT: u32 = (1 << 24) - 1;

/// Frame types defined by version 1 (SPEC §6). Other values are unknown
/// types, which a receiver skips.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameKind {
    /// Stream bytes, optionally ending the direction (FIN).
    Data = 0x0,
    /// New absolute data limit for a stream or the connection.
    WindowUpdate = 0x1,
    /// New cumulative stream-count limit.
    MaxStreams = 0x2,
    /// Zero-window probe.
    Blocked = 0x3,
    /// Abort of one stream.
    Reset = 0x4,
    /// Liveness and RTT probe, and its acknowledgement.
    Ping = 0x5,
    /// Shutdown notice with the last processed stream.
    GoAway = 0x6,
    /// Connection parameters, and their acknowledgement.
    Settings = 0x7,
    /// A receiver's request for the priority of a stream's data (an
    /// extension, SPEC §6.10).
    PriorityUpdate = 0x8,
}

impl FrameKind {
    /// Maps a wire type to a known kind.
    pub const fn from_u8(value: u8) -> Option<FrameKind> {
        Some(match value {
            0x0 => FrameKind::Data,
            0x1 => FrameKind::WindowUpdate,
            0x2 => FrameKind::MaxStreams,
            0x3 => FrameKind::Blocked,
            0x4 => FrameKind::Reset,
            0x5 => FrameKind::Ping,
            0x6 => FrameKind::GoAway,
            0x7 => FrameKind::Settings,
            0x8 => FrameKind::PriorityUpdate,
            _ => return None,
        })
    }

    /// The type's name in the specification.
    pub const fn name(self) -> &'static str {
        match self {
            FrameKind::Data => "DATA",
            FrameKind::WindowUpdate => "WINDOW_UPDATE",
            FrameKind::MaxStreams => "MAX_STREAMS",
            FrameKind::Blocked => "BLOCKED",
            FrameKind::Reset => "RESET",
            FrameKind::Ping => "PING",
            FrameKind::GoAway => "GOAWAY",
            FrameKind::Settings => "SETTINGS",
            FrameKind::PriorityUpdate => "PRIORITY_UPDATE",
        }
    }
}

impl std::fmt::Display for FrameKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A decoded frame header.
///
/// `kind` is the raw type byte so that unknown types can be described;
/// `flags` holds every bit as received.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// Payload length in bytes (24 bits).
    pub len: u32,
    /// Raw frame type.
    pub kind: u8,
    /// Raw flags.
    pub flags: u8,
    /// Stream the frame is about; 0 for the connection.
    pub stream: StreamId,
}

impl Header {
    /// Encodes the header. `len` must fit in 24 bits; encoders never build
    /// larger frames because payloads are bounded by the negotiated maximum.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        debug_assert!(self.len <= MAX_PAYLOAD_LIMIT);
        let len = self.len.to_be_bytes();
        let id = self.stream.get().to_be_bytes();
        [
            len[1], len[2], len[3], self.kind, self.flags, id[0], id[1], id[2], id[3],
        ]
    }

    /// Decodes a header. Fails only on the reserved bit (SPEC §5.3); all
    /// other checks depend on the frame type and the negotiated limits.
    pub fn decode(bytes: &[u8; HEADER_LEN]) -> Result<Header, FrameError> {
        let len = u32::from_be_bytes([0, bytes[0], bytes[1], bytes[2]]);
        let raw_id = u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]);
        // SPEC §5.3: the reserved bit MUST be zero; a receiver rejects it.
        let stream = StreamId::new(raw_id).ok_or(FrameError::ReservedBit)?;
        Ok(Header {
            len,
            kind: bytes[3],
            flags: bytes[4],
            stream,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_layout_matches_the_byte_table() {
        let header = Header {
            len: 0x01_02_03,
            kind: 0x04,
            flags: 0x05,
            stream: StreamId::new(0x0607_0809).unwrap(),
        };
        let bytes = header.encode();
        assert_eq!(bytes, [1, 2, 3, 4, 5, 6, 7, 8, 9]);
        assert_eq!(Header::decode(&bytes).unwrap(), header);
    }

    #[test]
    fn reserved_bit_is_rejected() {
        let bytes = [0, 0, 0, 0, 0, 0x80, 0, 0, 1];
        assert_eq!(Header::decode(&bytes), Err(FrameError::ReservedBit));
    }
}
