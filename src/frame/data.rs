//! DATA frames (SPEC §6.2).

use bytes::Bytes;

use super::{FrameKind, Header, StreamId};

/// Stream bytes. Only DATA payload consumes credit (SPEC §9).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Data {
    /// Stream the bytes belong to; never 0.
    pub stream: StreamId,
    /// True if these are the last bytes the sender sends on this stream.
    pub fin: bool,
    /// The bytes; may be empty (an opening frame, or a bare FIN).
    pub payload: Bytes,
}

impl Data {
    /// Flag bit: the sender's direction ends with this frame.
    pub const FLAG_FIN: u8 = 0x1;

    /// The frame's header; the payload follows it on the wire unchanged.
    pub fn header(&self) -> Header {
        Data::header_for(self.stream, self.payload.len(), self.fin)
    }

    /// The header of a DATA frame carrying `len` payload bytes of
    /// `stream`, for senders that write the payload from elsewhere (a
    /// vectored write) instead of building a `Data`.
    pub fn header_for(stream: StreamId, len: usize, fin: bool) -> Header {
        Header {
            len: len as u32,
            kind: FrameKind::Data as u8,
            flags: if fin { Self::FLAG_FIN } else { 0 },
            stream,
        }
    }

    pub(super) fn decode(header: &Header, payload: Bytes) -> Data {
        Data {
            stream: header.stream,
            fin: header.flags & Self::FLAG_FIN != 0,
            payload,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fin_flag_is_bit_zero_and_other_bits_are_ignored() {
        let header = Header {
            len: 0,
            kind: 0,
            flags: 0x81,
            stream: StreamId::new(1).unwrap(),
        };
        let data = Data::decode(&header, Bytes::new());
        assert!(data.fin);
        assert_eq!(data.header().flags, Data::FLAG_FIN);
    }
}
