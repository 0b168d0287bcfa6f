//! Property tests of the frame codec: round trips, split invariance, and
//! hostile bytes (no panic, bounded buffering).

use bytes::{Bytes, BytesMut};
use creditmux::frame::*;
use proptest::prelude::*;

const MAX_PAYLOAD: u32 = 4096;

fn stream_id(nonzero: bool) -> impl Strategy<Value = StreamId> {
    let lo = if nonzero { 1 } else { 0 };
    prop_oneof![lo..16u32, lo..=0x7fff_ffffu32].prop_map(|v| StreamId::new(v).unwrap())
}

fn credit() -> impl Strategy<Value = u64> {
    prop_oneof![0..1_000_000u64, Just(MAX_CREDIT), 0..=MAX_CREDIT]
}

fn setting(spec: SettingSpec) -> impl Strategy<Value = Option<u32>> {
    proptest::option::of(spec.min..=spec.max)
}

fn frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        (
            stream_id(true),
            any::<bool>(),
            proptest::collection::vec(any::<u8>(), 0..=MAX_PAYLOAD as usize)
        )
            .prop_map(|(stream, fin, p)| Frame::Data(Data {
                stream,
                fin,
                payload: Bytes::from(p)
            })),
        (stream_id(false), credit())
            .prop_map(|(stream, limit)| Frame::WindowUpdate(WindowUpdate { stream, limit })),
        credit().prop_map(|count| Frame::MaxStreams(MaxStreams { count })),
        (
            prop_oneof![
                Just(BlockedOn::Connection),
                Just(BlockedOn::StreamCount),
                stream_id(true).prop_map(BlockedOn::Stream)
            ],
            credit()
        )
            .prop_map(|(on, limit)| Frame::Blocked(Blocked { on, limit })),
        (
            stream_id(true),
            any::<u32>(),
            prop_oneof![
                Just(ResetScope::Both),
                Just(ResetScope::Send),
                Just(ResetScope::Receive)
            ]
        )
            .prop_map(|(stream, c, scope)| Frame::Reset(Reset {
                stream,
                code: ErrorCode(c),
                scope
            })),
        (any::<bool>(), any::<[u8; 8]>())
            .prop_map(|(ack, payload)| Frame::Ping(Ping { ack, payload })),
        (
            stream_id(false),
            any::<u32>(),
            proptest::collection::vec(any::<u8>(), 0..64)
        )
            .prop_map(|(last_stream, c, d)| Frame::GoAway(GoAway {
                last_stream,
                code: ErrorCode(c),
                debug: Bytes::from(d)
            })),
        Just(Frame::Settings(Settings {
            ack: true,
            values: SettingsValues::default()
        })),
        (
            setting(INITIAL_STREAM_WINDOW),
            setting(CONNECTION_WINDOW),
            setting(MAX_FRAME_PAYLOAD),
            setting(MAX_STREAMS),
            setting(EXTENSIONS)
        )
            .prop_map(|(a, b, c, d, e)| Frame::Settings(Settings {
                ack: false,
                values: SettingsValues {
                    initial_stream_window: a,
                    connection_window: b,
                    max_frame_payload: c,
                    max_streams: d,
                    extensions: e,
                },
            })),
        (stream_id(true), 0..=MAX_URGENCY, any::<bool>()).prop_map(
            |(stream, urgency, incremental)| Frame::PriorityUpdate(PriorityUpdate {
                stream,
                urgency,
                incremental
            })
        ),
    ]
}

fn decode_stream(bytes: &[u8], cuts: &[usize]) -> Result<Vec<Decoded>, FrameError> {
    let mut decoder = FrameDecoder::new(MAX_PAYLOAD);
    let mut src = BytesMut::new();
    let mut out = Vec::new();
    let mut start = 0;
    let mut ends: Vec<usize> = cuts.iter().map(|&c| c.min(bytes.len())).collect();
    ends.sort_unstable();
    ends.push(bytes.len());
    for end in ends {
        src.extend_from_slice(&bytes[start..end]);
        start = end;
        while let Some(d) = decoder.decode_next(&mut src)? {
            out.push(d);
        }
    }
    Ok(out)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn encode_then_decode_returns_the_same_frames(frames in proptest::collection::vec(frame(), 1..8)) {
        let mut buf = BytesMut::new();
        for f in &frames {
            f.encode(&mut buf);
        }
        let expected: Vec<Decoded> = frames.into_iter().map(Decoded::Frame).collect();
        prop_assert_eq!(decode_stream(&buf, &[]), Ok(expected));
    }

    #[test]
    fn decoding_any_split_equals_decoding_whole(
        frames in proptest::collection::vec(frame(), 1..6),
        junk in proptest::collection::vec(any::<u8>(), 0..64),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let mut buf = BytesMut::new();
        for f in &frames {
            f.encode(&mut buf);
        }
        buf.extend_from_slice(&junk);
        let cuts: Vec<usize> = cuts.iter().map(|i| i.index(buf.len() + 1)).collect();
        // Whole and split must agree on frames and on the error, if any.
        prop_assert_eq!(decode_stream(&buf, &[]), decode_stream(&buf, &cuts));
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_buffering_stays_bounded(
        bytes in proptest::collection::vec(any::<u8>(), 0..20_000),
        chunk in 1usize..3000,
    ) {
        let mut decoder = FrameDecoder::new(MAX_PAYLOAD);
        let mut src = BytesMut::new();
        // Bound on what the decoder may ask for: header + max payload, and
        // an allocator may round a growth up to at most twice that.
        let bound = 2 * (HEADER_LEN + MAX_PAYLOAD as usize);
        'outer: for piece in bytes.chunks(chunk) {
            src.extend_from_slice(piece);
            loop {
                let before = src.capacity();
                let outcome = decoder.decode_next(&mut src);
                let after = src.capacity();
                prop_assert!(after <= before.max(bound), "decoder grew the buffer to {} bytes", after);
                match outcome {
                    Ok(Some(_)) => continue,
                    Ok(None) => break,
                    Err(e) => {
                        // Every error maps to a connection error code the spec names.
                        prop_assert!(e.code().name().is_some());
                        break 'outer;
                    }
                }
            }
        }
    }

    #[test]
    fn lengths_over_the_maximum_are_refused_on_the_header(kind in any::<u8>(), len in (MAX_PAYLOAD + 1)..=MAX_PAYLOAD_LIMIT, sid in 0u32..0x7fff_ffff) {
        let header = Header { len, kind, flags: 0, stream: StreamId::new(sid).unwrap() };
        let mut src = BytesMut::from(&header.encode()[..]);
        let err = FrameDecoder::new(MAX_PAYLOAD).decode_next(&mut src).unwrap_err();
        prop_assert_eq!(err, FrameError::TooLarge { len, max: MAX_PAYLOAD });
    }
}
