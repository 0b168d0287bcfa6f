//! Stream identifiers and error codes: the two open newtypes every frame uses.

use std::fmt;

/// A stream identifier: 31 bits on the wire (SPEC §5.1), the top bit is reserved.
///
/// Id 0 names the connection itself. Client-initiated streams are odd,
/// server-initiated streams are even (SPEC §8.1).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId(u32);

/// A map keyed by stream id. Ids come from the peer, so the hasher is
/// seeded randomly per map (no crafted ids pile into one bucket), and it
/// is foldhash rather than std's SipHash: lookups by id are on the path
/// of every frame and every stream operation.
pub(crate) type StreamMap<V> = std::collections::HashMap<StreamId, V, foldhash::fast::RandomState>;

impl StreamId {
    /// The connection-level id, carried by frames that are about the whole connection.
    pub const CONNECTION: StreamId = StreamId(0);
    /// The largest id that fits in 31 bits.
    pub const MAX: StreamId = StreamId(0x7fff_ffff);

    /// Builds an id from its numeric value; `None` if the reserved top bit is set.
    pub const fn new(value: u32) -> Option<StreamId> {
        if value & 0x8000_0000 != 0 {
            None
        } else {
            Some(StreamId(value))
        }
    }

    /// The numeric value.
    pub const fn get(self) -> u32 {
        self.0
    }

    /// True for id 0.
    pub const fn is_connection(self) -> bool {
        self.0 == 0
    }

    /// True for odd ids, which only the client opens.
    pub const fn is_client_initiated(self) -> bool {
        self.0 & 1 == 1
    }

    /// The position of this id among the ids of its side: 1 → 0, 3 → 1, 2 → 0, 4 → 1.
    /// The stream-count credit is measured in this index (SPEC §9.6).
    pub const fn index(self) -> u64 {
        ((self.0 as u64).saturating_sub(1)) / 2
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An error code carried by RESET and GOAWAY (SPEC §14.1).
///
/// The set is open: a code this version does not know survives decoding and
/// is reported as its number.
#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ErrorCode(pub u32);

macro_rules! error_codes {
    ($($(#[$doc:meta])* $name:ident = $value:expr;)*) => {
        impl ErrorCode {
            $($(#[$doc])* pub const $name: ErrorCode = ErrorCode($value);)*

            /// The code's name in the specification, if this version knows it.
            pub fn name(self) -> Option<&'static str> {
                match self.0 {
                    $($value => Some(stringify!($name)),)*
                    _ => None,
                }
            }

            /// Looks a code up by its name in the specification.
            pub fn from_name(name: &str) -> Option<ErrorCode> {
                match name {
                    $(stringify!($name) => Some(ErrorCode($value)),)*
                    _ => None,
                }
            }
        }
    };
}

error_codes! {
    /// Graceful shutdown or normal end; not an error.
    NO_ERROR = 0x0;
    /// The peer broke a rule of the protocol.
    PROTOCOL_ERROR = 0x1;
    /// The sender hit an internal failure.
    INTERNAL_ERROR = 0x2;
    /// The peer sent more than its credit allowed, or an invalid credit value.
    FLOW_CONTROL_ERROR = 0x3;
    /// The handshake did not complete in time.
    SETTINGS_TIMEOUT = 0x4;
    /// A frame arrived for a stream direction that had already finished.
    STREAM_CLOSED = 0x5;
    /// A frame had an invalid length.
    FRAME_SIZE_ERROR = 0x6;
    /// The stream was not processed; the opener may retry it.
    REFUSED_STREAM = 0x7;
    /// The stream is no longer wanted.
    CANCEL = 0x8;
    /// The peer opened more streams than its stream-count credit allowed.
    STREAM_LIMIT_ERROR = 0x9;
    /// A SETTINGS parameter was out of range or repeated.
    SETTINGS_ERROR = 0xa;
    /// The peer speaks another protocol version.
    VERSION_MISMATCH = 0xb;
    /// The peer exceeded a flood limit.
    ENHANCE_YOUR_CALM = 0xc;
    /// Nothing was received within the idle timeout.
    IDLE_TIMEOUT = 0xd;
    /// A half-closed stream was not finished by the peer in time.
    STREAM_TIMEOUT = 0xe;
}

impl fmt::Debug for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "ErrorCode({:#x})", self.0),
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "unknown error code {:#x}", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_id_rejects_reserved_bit() {
        assert_eq!(StreamId::new(0x8000_0001), None);
        assert_eq!(StreamId::new(0x7fff_ffff), Some(StreamId::MAX));
    }

    #[test]
    fn stream_id_index_counts_per_side() {
        let ids: Vec<u64> = [1, 3, 5, 2, 4, 6]
            .iter()
            .map(|&v| StreamId(v).index())
            .collect();
        assert_eq!(ids, [0, 1, 2, 0, 1, 2]);
        assert!(StreamId(7).is_client_initiated());
        assert!(!StreamId(8).is_client_initiated());
    }

    #[test]
    fn unknown_error_codes_survive_and_print_their_number() {
        let code = ErrorCode(0x1234);
        assert_eq!(code.name(), None);
        assert_eq!(format!("{code:?}"), "ErrorCode(0x1234)");
        assert_eq!(ErrorCode::from_name("CANCEL"), Some(ErrorCode::CANCEL));
        assert_eq!(ErrorCode::CANCEL.to_string(), "CANCEL");
    }
}
