//! PRIORITY_UPDATE (SPEC §6.10): a receiver asks the sender of a stream's
//! data to send it at another priority.

use bytes::BufMut;

use super::{FrameError, FrameKind, Header, StreamId};

/// Payload length of PRIORITY_UPDATE: the urgency byte.
pub(super) const PRIORITY_PAYLOAD_LEN: u32 = 1;

/// The least urgent urgency the frame carries; larger values are a
/// decoding error (SPEC §5.3 step 9).
pub const MAX_URGENCY: u8 = 7;

/// A request for the priority at which the frame's receiver sends the
/// stream's DATA (SPEC §6.10), RFC 9218's urgency and incremental flag.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct PriorityUpdate {
    /// The stream; never 0.
    pub stream: StreamId,
    /// 0 (most urgent) to [`MAX_URGENCY`].
    pub urgency: u8,
    /// The stream shares its urgency level round-robin.
    pub incremental: bool,
}

impl PriorityUpdate {
    /// Flag bit: incremental.
    pub const FLAG_INCREMENTAL: u8 = 0x1;

    /// The frame's header.
    pub fn header(&self) -> Header {
        Header {
            len: PRIORITY_PAYLOAD_LEN,
            kind: FrameKind::PriorityUpdate as u8,
            flags: if self.incremental {
                Self::FLAG_INCREMENTAL
            } else {
                0
            },
            stream: self.stream,
        }
    }

    pub(super) fn encode_payload(&self, dst: &mut impl BufMut) {
        dst.put_u8(self.urgency);
    }

    pub(super) fn decode(header: &Header, payload: &[u8]) -> Result<PriorityUpdate, FrameError> {
        let urgency = payload.first().copied().unwrap_or(0);
        // SPEC §6.10: urgencies above 7 are not defined.
        if urgency > MAX_URGENCY {
            return Err(FrameError::BadUrgency {
                stream: header.stream,
                urgency,
            });
        }
        Ok(PriorityUpdate {
            stream: header.stream,
            urgency,
            incremental: header.flags & Self::FLAG_INCREMENTAL != 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urgency_is_one_byte_and_incremental_is_flag_bit_zero() {
        let frame = PriorityUpdate {
            stream: StreamId::new(5).unwrap(),
            urgency: 6,
            incremental: true,
        };
        let mut payload = Vec::new();
        frame.encode_payload(&mut payload);
        assert_eq!(payload, [6]);
        let header = frame.header();
        assert_eq!((header.len, header.kind, header.flags), (1, 0x8, 0x1));
        assert_eq!(PriorityUpdate::decode(&header, &payload), Ok(frame));
    }

    #[test]
    fn urgency_above_seven_is_an_error() {
        let header = PriorityUpdate {
            stream: StreamId::new(1).unwrap(),
            urgency: 0,
            incremental: false,
        }
        .header();
        let err = PriorityUpdate::decode(&header, &[8]).unwrap_err();
        assert_eq!(err.code(), super::super::ErrorCode::PROTOCOL_ERROR);
        assert_eq!(err.kind_name(), "bad_urgency");
    }
}
