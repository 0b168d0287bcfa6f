//! Decode errors of the frame layer, each mapped to the error code a
//! receiver sends in its GOAWAY (SPEC §14).

use super::{ErrorCode, FrameKind, StreamId};

/// Why a byte sequence is not a valid frame. Every variant is a connection
/// error; [`FrameError::code`] gives the code to send to the peer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The length field exceeds the receiver's maximum payload. Detected on
    /// the header alone, before any payload is buffered.
    #[error("frame payload of {len} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// Length announced by the header.
        len: u32,
        /// The receiver's MAX_FRAME_PAYLOAD.
        max: u32,
    },
    /// A frame type with a fixed or bounded payload size arrived with another size.
    #[error("{kind} frame with a payload of {len} bytes is malformed")]
    BadLength {
        /// Frame type.
        kind: FrameKind,
        /// Length announced by the header.
        len: u32,
    },
    /// The reserved bit of a stream id was set.
    #[error("reserved bit set in a stream id")]
    ReservedBit,
    /// A stream-level frame carried stream id 0.
    #[error("{kind} frame on stream 0 (it needs a stream)")]
    StreamIdRequired {
        /// Frame type.
        kind: FrameKind,
    },
    /// A connection-level frame carried a non-zero stream id.
    #[error("{kind} frame on stream {stream} (it is connection-level)")]
    StreamIdForbidden {
        /// Frame type.
        kind: FrameKind,
        /// The stream id it carried.
        stream: StreamId,
    },
    /// A flag combination that the frame type forbids.
    #[error("{kind} frame with invalid flags {flags:#04x} on stream {stream}")]
    InvalidFlags {
        /// Frame type.
        kind: FrameKind,
        /// Flags as received.
        flags: u8,
        /// Stream the frame was on.
        stream: StreamId,
    },
    /// A credit value above 2^62 - 1.
    #[error("credit value {value} exceeds 2^62 - 1")]
    CreditOverflow {
        /// The value received.
        value: u64,
    },
    /// A known SETTINGS parameter outside its range.
    #[error("setting {id:#x} has out-of-range value {value}")]
    SettingOutOfRange {
        /// Parameter id.
        id: u16,
        /// Value received.
        value: u32,
    },
    /// A PRIORITY_UPDATE with an urgency above 7.
    #[error("PRIORITY_UPDATE on stream {stream} with undefined urgency {urgency}")]
    BadUrgency {
        /// Stream the frame was on.
        stream: StreamId,
        /// The urgency received.
        urgency: u8,
    },
    /// A known SETTINGS parameter repeated in one frame.
    #[error("setting {id:#x} appears twice")]
    SettingDuplicate {
        /// Parameter id.
        id: u16,
    },
}

impl FrameError {
    /// The error code a receiver sends in its GOAWAY for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            FrameError::TooLarge { .. } | FrameError::BadLength { .. } => {
                ErrorCode::FRAME_SIZE_ERROR
            }
            FrameError::ReservedBit
            | FrameError::StreamIdRequired { .. }
            | FrameError::StreamIdForbidden { .. }
            | FrameError::InvalidFlags { .. }
            | FrameError::BadUrgency { .. } => ErrorCode::PROTOCOL_ERROR,
            FrameError::CreditOverflow { .. } => ErrorCode::FLOW_CONTROL_ERROR,
            FrameError::SettingOutOfRange { .. } | FrameError::SettingDuplicate { .. } => {
                ErrorCode::SETTINGS_ERROR
            }
        }
    }

    /// Short machine-readable name of the error class, as used by the test
    /// vectors in proto/vectors (SPEC appendix A).
    pub fn kind_name(&self) -> &'static str {
        match self {
            FrameError::TooLarge { .. } => "too_large",
            FrameError::BadLength { .. } => "bad_length",
            FrameError::ReservedBit => "reserved_bit",
            FrameError::StreamIdRequired { .. } => "stream_id_required",
            FrameError::StreamIdForbidden { .. } => "stream_id_forbidden",
            FrameError::InvalidFlags { .. } => "invalid_flags",
            FrameError::CreditOverflow { .. } => "credit_overflow",
            FrameError::SettingOutOfRange { .. } => "setting_out_of_range",
            FrameError::SettingDuplicate { .. } => "setting_duplicate",
            FrameError::BadUrgency { .. } => "bad_urgency",
        }
    }
}
