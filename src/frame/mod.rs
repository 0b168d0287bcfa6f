//! Wire types and codec of creditmux protocol version 1 (proto/SPEC.md).
//!
//! This layer knows bytes only: no credit, no stream states, no time, no I/O.
//! [`Frame::encode`] appends a frame to a `BytesMut`; [`FrameDecoder`] takes
//! frames off the front of a `BytesMut`, checking every length against the
//! negotiated maximum before it buffers a payload. Payloads stay [`Bytes`]:
//! decoding DATA splits the input buffer instead of copying it.

mod codec;
mod control;
mod credit;
mod data;
mod error;
mod header;
mod ids;
mod preface;
mod priority;
mod settings;

use bytes::{BufMut, Bytes, BytesMut};

pub use codec::{Decoded, FrameDecoder};
pub use control::{GoAway, Ping, Reset, ResetScope};
pub use credit::{Blocked, BlockedOn, MAX_CREDIT, MaxStreams, WindowUpdate};
pub use data::Data;
pub use error::FrameError;
pub use header::{FrameKind, HEADER_LEN, Header, MAX_PAYLOAD_LIMIT};
pub(crate) use ids::StreamMap;
pub use ids::{ErrorCode, StreamId};
pub use preface::{MAGIC, PREFACE_LEN, PrefaceError, VERSION, decode_preface, encode_preface};
pub use priority::{MAX_URGENCY, PriorityUpdate};
pub use settings::{
    CONNECTION_WINDOW, DIRECTIONAL_RESET, EXTENSIONS, INITIAL_STREAM_WINDOW, KNOWN_SETTINGS,
    MAX_FRAME_PAYLOAD, MAX_STREAMS, PRIORITY_UPDATES, SettingSpec, Settings, SettingsValues,
};

/// One frame of a type version 1 knows (PRIORITY_UPDATE: an extension
/// negotiated through SETTINGS, SPEC §7.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// DATA (SPEC §6.2).
    Data(Data),
    /// WINDOW_UPDATE (SPEC §6.3).
    WindowUpdate(WindowUpdate),
    /// MAX_STREAMS (SPEC §6.4).
    MaxStreams(MaxStreams),
    /// BLOCKED (SPEC §6.5).
    Blocked(Blocked),
    /// RESET (SPEC §6.6).
    Reset(Reset),
    /// PING (SPEC §6.7).
    Ping(Ping),
    /// GOAWAY (SPEC §6.8).
    GoAway(GoAway),
    /// SETTINGS (SPEC §6.9).
    Settings(Settings),
    /// PRIORITY_UPDATE (SPEC §6.10).
    PriorityUpdate(PriorityUpdate),
}

impl Frame {
    /// The frame's header, as it will be encoded.
    pub fn header(&self) -> Header {
        match self {
            Frame::Data(f) => f.header(),
            Frame::WindowUpdate(f) => f.header(),
            Frame::MaxStreams(f) => f.header(),
            Frame::Blocked(f) => f.header(),
            Frame::Reset(f) => f.header(),
            Frame::Ping(f) => f.header(),
            Frame::GoAway(f) => f.header(),
            Frame::Settings(f) => f.header(),
            Frame::PriorityUpdate(f) => f.header(),
        }
    }

    /// Number of bytes [`Frame::encode`] appends.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.header().len as usize
    }

    /// Appends header and payload to `dst`. Allocates only if `dst` must
    /// grow; a DATA payload is copied once. Senders that want to avoid that
    /// copy write [`Data::header`] and hand the payload `Bytes` to a
    /// vectored write instead.
    pub fn encode(&self, dst: &mut BytesMut) {
        dst.reserve(self.encoded_len());
        dst.put_slice(&self.header().encode());
        self.encode_payload(dst);
    }

    /// Appends only the payload.
    pub fn encode_payload(&self, dst: &mut impl BufMut) {
        match self {
            Frame::Data(f) => dst.put_slice(&f.payload),
            Frame::WindowUpdate(f) => f.encode_payload(dst),
            Frame::MaxStreams(f) => f.encode_payload(dst),
            Frame::Blocked(f) => f.encode_payload(dst),
            Frame::Reset(f) => f.encode_payload(dst),
            Frame::Ping(f) => f.encode_payload(dst),
            Frame::GoAway(f) => f.encode_payload(dst),
            Frame::Settings(f) => f.encode_payload(dst),
            Frame::PriorityUpdate(f) => f.encode_payload(dst),
        }
    }

    /// Encodes the frame into a fresh buffer: convenient for tests and
    /// vectors; the hot path uses [`Frame::encode`] on a reused buffer.
    pub fn to_bytes(&self) -> Bytes {
        let mut buf = BytesMut::with_capacity(self.encoded_len());
        self.encode(&mut buf);
        buf.freeze()
    }

    /// The stream the frame is about (0 for the connection).
    pub fn stream(&self) -> StreamId {
        self.header().stream
    }
}
