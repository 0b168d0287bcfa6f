//! Structured frames: encode a sequence into one buffer, decode it back fed
//! in two pieces cut at an arbitrary byte, and compare.
//!
//! The mirror types below are the fuzzer's own; they are made valid while
//! converting into `creditmux::frame::Frame` (31-bit stream ids, non-zero
//! where the type needs a stream, credit values <= MAX_CREDIT, settings
//! within their ranges, payloads within the maximum), so every frame built
//! here is one a conforming sender may send and must decode to itself.

#![no_main]

use arbitrary::Arbitrary;
use bytes::{Bytes, BytesMut};
use creditmux::frame::{
    Blocked, BlockedOn, CONNECTION_WINDOW, Data, Decoded, EXTENSIONS, ErrorCode, Frame,
    FrameDecoder, GoAway, INITIAL_STREAM_WINDOW, MAX_CREDIT, MAX_FRAME_PAYLOAD, MAX_STREAMS,
    MAX_URGENCY, MaxStreams, Ping, PriorityUpdate, Reset, ResetScope, SettingSpec, Settings,
    SettingsValues, StreamId, WindowUpdate,
};
use libfuzzer_sys::fuzz_target;

/// Smallest maximum payload the target uses (MAX_FRAME_PAYLOAD.min).
const MIN_MAX_PAYLOAD: u32 = 1024;
/// Number of maximum payloads reachable: 1024..=65536, as in frame_decoder.
const MAX_PAYLOAD_SPAN: u32 = 65536 - MIN_MAX_PAYLOAD + 1;
/// GOAWAY debug data is kept small: it is diagnostic text.
const MAX_GOAWAY_DEBUG: usize = 256;

#[derive(Arbitrary, Debug)]
struct Input {
    max_payload_sel: u16,
    split: u32,
    frames: Vec<FuzzFrame>,
}

#[derive(Arbitrary, Debug)]
enum FuzzBlockedOn {
    Connection,
    StreamCount,
    Stream(u32),
}

#[derive(Arbitrary, Debug)]
enum FuzzFrame {
    Data {
        stream: u32,
        fin: bool,
        payload: Vec<u8>,
    },
    WindowUpdate {
        stream: u32,
        limit: u64,
    },
    MaxStreams {
        count: u64,
    },
    Blocked {
        on: FuzzBlockedOn,
        limit: u64,
    },
    Reset {
        stream: u32,
        code: u32,
        scope: u8,
    },
    Ping {
        ack: bool,
        payload: [u8; 8],
    },
    GoAway {
        last_stream: u32,
        code: u32,
        debug: Vec<u8>,
    },
    Settings {
        ack: bool,
        initial_stream_window: Option<u32>,
        connection_window: Option<u32>,
        max_frame_payload: Option<u32>,
        max_streams: Option<u32>,
        extensions: Option<u32>,
    },
    PriorityUpdate {
        stream: u32,
        urgency: u8,
        incremental: bool,
    },
}

/// Any 31-bit id, 0 included.
fn any_stream(raw: u32) -> StreamId {
    StreamId::new(raw & 0x7fff_ffff).expect("31-bit id")
}

/// A 31-bit id other than 0.
fn some_stream(raw: u32) -> StreamId {
    match raw & 0x7fff_ffff {
        0 => StreamId::new(1).expect("1 is a stream id"),
        id => StreamId::new(id).expect("31-bit id"),
    }
}

fn credit(raw: u64) -> u64 {
    raw & MAX_CREDIT
}

fn setting(raw: Option<u32>, spec: SettingSpec) -> Option<u32> {
    raw.map(|v| v.clamp(spec.min, spec.max))
}

impl FuzzFrame {
    fn into_frame(self, max_payload: u32) -> Frame {
        match self {
            FuzzFrame::Data {
                stream,
                fin,
                mut payload,
            } => {
                payload.truncate(max_payload as usize);
                Frame::Data(Data {
                    stream: some_stream(stream),
                    fin,
                    payload: Bytes::from(payload),
                })
            }
            FuzzFrame::WindowUpdate { stream, limit } => Frame::WindowUpdate(WindowUpdate {
                stream: any_stream(stream),
                limit: credit(limit),
            }),
            FuzzFrame::MaxStreams { count } => Frame::MaxStreams(MaxStreams {
                count: credit(count),
            }),
            FuzzFrame::Blocked { on, limit } => Frame::Blocked(Blocked {
                on: match on {
                    FuzzBlockedOn::Connection => BlockedOn::Connection,
                    FuzzBlockedOn::StreamCount => BlockedOn::StreamCount,
                    FuzzBlockedOn::Stream(id) => BlockedOn::Stream(some_stream(id)),
                },
                limit: credit(limit),
            }),
            FuzzFrame::Reset {
                stream,
                code,
                scope,
            } => Frame::Reset(Reset {
                stream: some_stream(stream),
                code: ErrorCode(code),
                scope: match scope % 3 {
                    0 => ResetScope::Both,
                    1 => ResetScope::Send,
                    _ => ResetScope::Receive,
                },
            }),
            FuzzFrame::Ping { ack, payload } => Frame::Ping(Ping { ack, payload }),
            FuzzFrame::GoAway {
                last_stream,
                code,
                mut debug,
            } => {
                debug.truncate(MAX_GOAWAY_DEBUG);
                Frame::GoAway(GoAway {
                    last_stream: any_stream(last_stream),
                    code: ErrorCode(code),
                    debug: Bytes::from(debug),
                })
            }
            FuzzFrame::Settings {
                ack,
                initial_stream_window,
                connection_window,
                max_frame_payload,
                max_streams,
                extensions,
            } => {
                // An acknowledgement carries no parameters (SPEC §5.8); the
                // encoder does not enforce that, so the sender must.
                let values = if ack {
                    SettingsValues::default()
                } else {
                    SettingsValues {
                        initial_stream_window: setting(
                            initial_stream_window,
                            INITIAL_STREAM_WINDOW,
                        ),
                        connection_window: setting(connection_window, CONNECTION_WINDOW),
                        max_frame_payload: setting(max_frame_payload, MAX_FRAME_PAYLOAD),
                        max_streams: setting(max_streams, MAX_STREAMS),
                        extensions: setting(extensions, EXTENSIONS),
                    }
                };
                Frame::Settings(Settings { ack, values })
            }
            FuzzFrame::PriorityUpdate {
                stream,
                urgency,
                incremental,
            } => Frame::PriorityUpdate(PriorityUpdate {
                stream: some_stream(stream),
                urgency: urgency % (MAX_URGENCY + 1),
                incremental,
            }),
        }
    }
}

/// Decodes everything `src` holds; panics on an error or a skipped frame.
fn drain(decoder: &mut FrameDecoder, src: &mut BytesMut, out: &mut Vec<Frame>) {
    loop {
        match decoder.decode_next(src) {
            Ok(Some(Decoded::Frame(frame))) => out.push(frame),
            Ok(Some(Decoded::Ignored(header))) => {
                panic!("a valid frame was skipped as unknown: {header:?}")
            }
            Ok(None) => return,
            Err(e) => panic!("a valid frame sequence was rejected: {e:?} ({e})"),
        }
    }
}

fuzz_target!(|input: Input| {
    let max_payload = MIN_MAX_PAYLOAD + u32::from(input.max_payload_sel) % MAX_PAYLOAD_SPAN;
    let frames: Vec<Frame> = input
        .frames
        .into_iter()
        .map(|f| f.into_frame(max_payload))
        .collect();

    let mut wire = BytesMut::new();
    let mut expected_len = 0;
    for frame in &frames {
        frame.encode(&mut wire);
        expected_len += frame.encoded_len();
        assert_eq!(wire.len(), expected_len, "encoded_len of {frame:?}");
    }
    let wire = wire.freeze();

    let split = input.split as usize % (wire.len() + 1);
    let mut decoder = FrameDecoder::new(max_payload);
    let mut src = BytesMut::from(&wire[..split]);
    let mut decoded = Vec::with_capacity(frames.len());
    drain(&mut decoder, &mut src, &mut decoded);
    src.extend_from_slice(&wire[split..]);
    drain(&mut decoder, &mut src, &mut decoded);

    assert!(
        src.is_empty(),
        "{} bytes left after the last frame",
        src.len()
    );
    assert_eq!(decoded, frames);
});
