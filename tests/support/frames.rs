//! Frame builders for tests that play a peer frame by frame.

#![allow(dead_code)]

use bytes::Bytes;
use creditmux::frame::{Data, ErrorCode, Frame, GoAway, Reset, Settings, StreamId};

pub fn id(n: u32) -> StreamId {
    StreamId::new(n).expect("a stream id")
}

/// SETTINGS with every value at its default.
pub fn settings() -> Frame {
    Frame::Settings(Settings::default())
}

pub fn data(stream: u32, payload: &[u8], fin: bool) -> Frame {
    Frame::Data(Data {
        stream: id(stream),
        fin,
        payload: Bytes::copy_from_slice(payload),
    })
}

pub fn reset(stream: u32, code: ErrorCode) -> Frame {
    Frame::Reset(Reset::both(id(stream), code))
}

pub fn goaway(last: u32, code: ErrorCode) -> Frame {
    Frame::GoAway(GoAway {
        last_stream: StreamId::new(last).unwrap_or(StreamId::CONNECTION),
        code,
        debug: Bytes::new(),
    })
}

/// DATA on `stream` with `len` zero bytes, no FIN.
pub fn data_len(stream: u32, len: usize) -> Frame {
    Frame::Data(Data {
        stream: id(stream),
        fin: false,
        payload: Bytes::from(vec![0u8; len]),
    })
}

/// The (last_stream_id, code) of every GOAWAY among `frames`.
pub fn goaways(frames: &[Frame]) -> Vec<(u32, ErrorCode)> {
    frames
        .iter()
        .filter_map(|f| match f {
            Frame::GoAway(g) => Some((g.last_stream.get(), g.code)),
            _ => None,
        })
        .collect()
}
