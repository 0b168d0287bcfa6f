//! SPEC §3-§5, §14: what a peer that breaks the protocol gets: the
//! connection ends with the specified code, sent in a GOAWAY.

mod support;

use std::time::Instant;

use bytes::BytesMut;
use creditmux::config::Config;
use creditmux::conn::{Connection, Side, TransmitBuf};
use creditmux::error::ConnectionError;
use creditmux::frame::*;
use support::conn::violation_code;
use support::frames;
use support::raw::{self, Raw};

#[test]
fn protocol_violations_end_the_connection_with_the_specified_code() {
    let ping = Frame::Ping(Ping {
        ack: false,
        payload: [0; 8],
    });
    let cases: Vec<(Vec<Frame>, ErrorCode)> = vec![
        (vec![ping.clone()], ErrorCode::PROTOCOL_ERROR),
        (
            vec![frames::settings(), frames::settings()],
            ErrorCode::PROTOCOL_ERROR,
        ),
        (
            vec![frames::settings(), frames::data_len(2, 1)],
            ErrorCode::PROTOCOL_ERROR,
        ),
        (
            vec![frames::settings(), frames::data_len(1, 256 * 1024 + 1)],
            ErrorCode::FRAME_SIZE_ERROR,
        ),
        (
            vec![frames::settings(), frames::data_len(201, 1)],
            ErrorCode::STREAM_LIMIT_ERROR,
        ),
        (
            vec![
                frames::settings(),
                Frame::Reset(Reset::both(StreamId::new(5).unwrap(), ErrorCode::CANCEL)),
            ],
            ErrorCode::PROTOCOL_ERROR,
        ),
        (
            vec![
                frames::settings(),
                Frame::Settings(Settings {
                    ack: true,
                    values: SettingsValues::default(),
                }),
                Frame::Settings(Settings {
                    ack: true,
                    values: SettingsValues::default(),
                }),
            ],
            ErrorCode::PROTOCOL_ERROR,
        ),
        (
            std::iter::once(frames::settings())
                .chain(std::iter::repeat_n(ping, 101))
                .collect(),
            ErrorCode::ENHANCE_YOUR_CALM,
        ),
    ];
    for (frames, code) in cases {
        let server = raw::server_after(&frames);
        assert_eq!(violation_code(&server), Some(code), "frames {frames:?}");
        assert!(server.is_finished());
    }
}

#[test]
fn data_beyond_stream_credit_is_a_flow_control_error() {
    // One 16 KiB frame more than the default stream window holds.
    let frames_in_window = Config::default().stream_window() as usize / (16 * 1024);
    let frames: Vec<Frame> = std::iter::once(frames::settings())
        .chain((0..=frames_in_window).map(|_| frames::data_len(1, 16 * 1024)))
        .collect();
    let server = raw::server_after(&frames);
    assert_eq!(violation_code(&server), Some(ErrorCode::FLOW_CONTROL_ERROR));
}

#[test]
fn a_violation_sends_goaway_with_the_code() {
    let mut server = raw::server_after(&[frames::settings(), frames::data_len(2, 1)]);
    let mut buf = TransmitBuf::new();
    server.poll_transmit(std::time::Instant::now(), &mut buf, 1 << 20);
    let mut bytes = BytesMut::from(&buf.take_contiguous()[PREFACE_LEN..]);
    let mut decoder = FrameDecoder::new(1 << 20);
    let mut codes = Vec::new();
    while let Ok(Some(Decoded::Frame(f))) = decoder.decode_next(&mut bytes) {
        if let Frame::GoAway(g) = f {
            codes.push(g.code);
        }
    }
    assert_eq!(codes, [ErrorCode::PROTOCOL_ERROR]);
}

#[test]
fn bad_magic_and_other_versions_are_refused() {
    let now = std::time::Instant::now();
    let mut server = Connection::new(Side::Server, Config::default(), now);
    server.handle_input(now, &mut BytesMut::from(&b"GET / HTTP/1.1\r\n"[..]));
    assert_eq!(
        server.error(),
        Some(&ConnectionError::Preface(PrefaceError::BadMagic))
    );

    let mut server = Connection::new(Side::Server, Config::default(), now);
    let mut preface = encode_preface();
    preface[7] = 9;
    server.handle_input(now, &mut BytesMut::from(&preface[..]));
    assert_eq!(
        server.error(),
        Some(&ConnectionError::Preface(
            PrefaceError::UnsupportedVersion { version: 9 }
        ))
    );
    let mut buf = TransmitBuf::new();
    server.poll_transmit(now, &mut buf, 1 << 20);
    let bytes = buf.take_contiguous();
    let mut rest = BytesMut::from(&bytes[PREFACE_LEN..]);
    let mut decoder = FrameDecoder::new(1 << 20);
    let mut saw = false;
    while let Ok(Some(Decoded::Frame(f))) = decoder.decode_next(&mut rest) {
        if let Frame::GoAway(g) = f {
            saw = g.code == ErrorCode::VERSION_MISMATCH;
        }
    }
    assert!(
        saw,
        "a version mismatch is answered with GOAWAY VERSION_MISMATCH"
    );
}

#[test]
fn an_unknown_frame_type_before_settings_is_a_protocol_error() {
    let mut raw = Raw::server(Config::default(), &[]);
    // Type 0x20, empty payload, stream 0.
    raw.feed_bytes(&[0, 0, 0, 0x20, 0, 0, 0, 0, 0]);
    assert_eq!(violation_code(&raw.conn), Some(ErrorCode::PROTOCOL_ERROR));
}

#[test]
fn a_version_mismatch_goaway_says_supported_1() {
    let now = Instant::now();
    let mut server = Connection::new(Side::Server, Config::default(), now);
    let mut preface = encode_preface();
    preface[7] = 2;
    server.handle_input(now, &mut BytesMut::from(&preface[..]));
    let mut buf = TransmitBuf::new();
    server.poll_transmit(now, &mut buf, 1 << 20);
    let mut rest = BytesMut::from(&buf.take_contiguous()[PREFACE_LEN..]);
    let mut decoder = FrameDecoder::new(1 << 20);
    let mut goaway = None;
    while let Ok(Some(Decoded::Frame(f))) = decoder.decode_next(&mut rest) {
        if let Frame::GoAway(g) = f {
            goaway = Some(g);
        }
    }
    let goaway = goaway.expect("a GOAWAY");
    assert_eq!(goaway.code, ErrorCode::VERSION_MISMATCH);
    assert_eq!(goaway.last_stream, StreamId::CONNECTION);
    assert_eq!(&goaway.debug[..], b"supported: 1");
}
