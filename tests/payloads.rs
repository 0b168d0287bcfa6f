//! The core's input paths the driver uses: DATA payloads handed on in parts
//! and read straight into a reader's buffer; and the regressions the
//! `session` fuzz target found in them and around them.

mod support;

use std::time::Duration;

use bytes::BytesMut;
use creditmux::config::Config;
use creditmux::conn::{Connection, ReadOutcome, Side, TransmitBuf};
use creditmux::error::ConnectionError;
use creditmux::frame::*;
use support::conn::{pattern, read_available, violation_code};
use support::frames;
use support::raw::{self};

/// A server core past the handshake with a hand-made client (default
/// settings), its own preface and SETTINGS already written.
fn fuzz_server(config: Config) -> (Connection, std::time::Instant) {
    let now = std::time::Instant::now();
    let mut server = Connection::new(Side::Server, config, now);
    let mut buf = TransmitBuf::new();
    server.poll_transmit(now, &mut buf, 1 << 20);
    let mut input = BytesMut::from(&encode_preface()[..]);
    frames::settings().encode(&mut input);
    Frame::Settings(Settings {
        ack: true,
        values: SettingsValues::default(),
    })
    .encode(&mut input);
    server.handle_input(now, &mut input);
    assert!(server.is_established());
    (server, now)
}

/// Writes until `poll_transmit` adds nothing; returns the bytes written.
fn drain_transmit(conn: &mut Connection, now: std::time::Instant) -> usize {
    let mut total = 0;
    loop {
        let mut buf = TransmitBuf::new();
        conn.poll_transmit(now, &mut buf, 1 << 20);
        if buf.is_empty() {
            return total;
        }
        total += buf.len();
    }
}

#[test]
fn an_ended_connection_with_control_frames_owed_stops_wanting_to_transmit() {
    // The keepalive PING and the idle timeout fall due in one call: the
    // PING is owed when the connection ends. The driver shuts the transport
    // down only once wants_transmit() is false; it used to stay true.
    let (mut server, now) = fuzz_server(Config::default());
    drain_transmit(&mut server, now);
    let late = now + Duration::from_secs(63);
    server.handle_timeout(late);
    assert_eq!(server.error(), Some(&ConnectionError::IdleTimeout));
    drain_transmit(&mut server, late);
    assert!(server.is_finished());
    assert!(
        !server.wants_transmit(),
        "a finished connection wants to write"
    );

    // The same with a PING and a PING ack owed when a frame error arrives,
    // and with reads and releases after the end that owe credit updates.
    let (mut server, now) = fuzz_server(Config::default());
    let mut input = BytesMut::new();
    frames::data_len(1, 1024).encode(&mut input);
    server.handle_input(now, &mut input);
    let sid = server.accept().unwrap();
    drain_transmit(&mut server, now);
    server.ping(now);
    let mut input = BytesMut::new();
    Frame::Ping(Ping {
        ack: false,
        payload: [7; 8],
    })
    .encode(&mut input);
    input.extend_from_slice(&[0xff; HEADER_LEN]);
    server.handle_input(now, &mut input);
    assert!(matches!(server.error(), Some(ConnectionError::Frame(_))));
    assert!(matches!(
        server.read(now, sid, usize::MAX),
        Ok(ReadOutcome::Data(_))
    ));
    server.release(now, sid);
    drain_transmit(&mut server, now);
    assert!(server.is_finished());
    assert!(
        !server.wants_transmit(),
        "a finished connection wants to write"
    );
}

#[test]
fn transport_bytes_received_counts_a_split_frame_once() {
    let now = std::time::Instant::now();
    let mut server = Connection::new(Side::Server, Config::default(), now);
    let mut wire = BytesMut::from(&encode_preface()[..]);
    frames::settings().encode(&mut wire);
    frames::data_len(1, 100).encode(&mut wire);
    // Fed a byte at a time into one buffer, as a driver does: a partial
    // frame stays in the buffer until the rest arrives.
    let mut buf = BytesMut::new();
    for &b in wire.iter() {
        buf.extend_from_slice(&[b]);
        server.handle_input(now, &mut buf);
    }
    assert!(server.error().is_none());
    assert_eq!(server.stats().frames_received, 2);
    assert_eq!(server.stats().transport_bytes_received, wire.len() as u64);
}

#[test]
fn a_connection_ended_by_one_timer_runs_no_other_and_arms_none() {
    // The handshake never completes (no SETTINGS ack) and open() waits for
    // stream-count credit (MAX_STREAMS 0), so a probe is armed: both timers
    // are due in one handle_timeout call.
    let now = std::time::Instant::now();
    let mut server = Connection::new(Side::Server, Config::default(), now);
    drain_transmit(&mut server, now);
    let mut input = BytesMut::from(&encode_preface()[..]);
    Frame::Settings(Settings {
        ack: false,
        values: SettingsValues {
            max_streams: Some(0),
            ..SettingsValues::default()
        },
    })
    .encode(&mut input);
    server.handle_input(now, &mut input);
    assert_eq!(server.open(now), Ok(None));
    let late = now + Duration::from_secs(205);
    server.handle_timeout(late);
    assert_eq!(server.error(), Some(&ConnectionError::HandshakeTimeout));
    assert_eq!(
        server.poll_timeout(),
        None,
        "a finished connection keeps a timer"
    );
    assert_eq!(server.stats().probes_sent, 0, "a probe ran after the end");
}

/// A DATA header of `len` payload bytes on stream `stream`, then the first
/// `first` of them.
fn data_start(stream: u32, len: usize, fin: bool, first: usize) -> BytesMut {
    let header = Data::header_for(StreamId::new(stream).unwrap(), len, fin);
    let mut input = BytesMut::from(&header.encode()[..]);
    input.extend_from_slice(&pattern(len, 3)[..first]);
    input
}

/// A server whose peer opened stream 1 with 10 bytes, read already.
fn server_reading_stream_1() -> (Connection, StreamId) {
    let mut server = raw::server_after(&[frames::settings(), frames::data_len(1, 10)]);
    let id = server.accept().expect("stream 1");
    assert_eq!(
        read_available(&mut server, std::time::Instant::now(), id)
            .0
            .len(),
        10
    );
    (server, id)
}

#[test]
fn a_large_payload_is_delivered_in_parts_and_its_rest_read_directly() {
    let now = std::time::Instant::now();
    let (mut server, id) = server_reading_stream_1();
    let before = server.stats();

    // Header and 1000 of 50,000 bytes: the 1000 are readable at once.
    let len = 50_000;
    server.handle_input(now, &mut data_start(1, len, true, 1000));
    assert_eq!(server.direct_payload(id), 0, "buffered bytes go first");
    let (first, finished) = read_available(&mut server, now, id);
    assert_eq!((first.len(), finished), (1000, false));
    assert_eq!(server.direct_payload(id), len - 1000);
    assert_eq!(server.direct_payload(StreamId::new(3).unwrap()), 0);

    // The rest is read around the core in two pieces: accounted exactly
    // as delivered frames, with the FIN at the end.
    assert!(
        !server.commit_direct_payload(now, id, len),
        "beyond the rest"
    );
    assert!(server.commit_direct_payload(now, id, 20_000));
    assert_eq!(server.direct_payload(id), len - 21_000);
    assert!(matches!(
        server.read(now, id, 1 << 20),
        Ok(ReadOutcome::Blocked)
    ));
    assert!(server.commit_direct_payload(now, id, len - 21_000));
    assert!(matches!(
        server.read(now, id, 1 << 20),
        Ok(ReadOutcome::Finished)
    ));
    assert_eq!(server.direct_payload(id), 0);
    let after = server.stats();
    assert_eq!(
        after.data_bytes_received - before.data_bytes_received,
        len as u64
    );
    assert_eq!(after.frames_received - before.frames_received, 1);
    assert_eq!(
        after.transport_bytes_received - before.transport_bytes_received,
        (HEADER_LEN + len) as u64
    );
    let stats = server.stream_stats(id).unwrap();
    assert_eq!(stats.bytes_received, 10 + len as u64);
    assert_eq!(stats.recv_buffered, 0);
    assert!(server.error().is_none());
}

#[test]
fn a_payload_read_directly_beyond_the_stream_credit_is_a_flow_control_error() {
    let now = std::time::Instant::now();
    let (mut server, id) = server_reading_stream_1();
    let window = Config::default().stream_window() as usize;
    let max = Config::default().max_frame_payload() as usize;
    // Frames up to the window stay within credit; the one beyond it is
    // refused even though it was read around the decoder's buffer.
    let mut rest = window - 10;
    while rest > 0 {
        let len = rest.min(max);
        server.handle_input(now, &mut data_start(1, len, false, 0));
        assert!(server.commit_direct_payload(now, id, len));
        rest -= len;
    }
    assert!(server.error().is_none());
    // Reads released the credit, but the peer never saw the update.
    server.handle_input(now, &mut data_start(1, 1000, false, 0));
    assert!(!server.commit_direct_payload(now, id, 1000));
    assert_eq!(violation_code(&server), Some(ErrorCode::FLOW_CONTROL_ERROR));
    assert_eq!(server.direct_payload(id), 0);
}

#[test]
fn a_data_frame_beyond_the_credit_fails_at_its_first_part() {
    let now = std::time::Instant::now();
    let (mut server, id) = server_reading_stream_1();
    let window = Config::default().stream_window() as usize;
    let max = Config::default().max_frame_payload() as usize;
    // Read, so credit is released, but never announced to the peer.
    let mut rest = window - 10 - 1000;
    while rest > 0 {
        let len = rest.min(max);
        let mut input = BytesMut::new();
        frames::data_len(1, len).encode(&mut input);
        server.handle_input(now, &mut input);
        rest -= read_available(&mut server, now, id).0.len();
    }
    assert!(server.error().is_none());
    // 5000 bytes announced where 1000 are left: refused on the header's
    // length, with only 10 bytes of the frame here.
    server.handle_input(now, &mut data_start(1, 5000, false, 10));
    assert_eq!(violation_code(&server), Some(ErrorCode::FLOW_CONTROL_ERROR));
    assert_eq!(
        read_available_or_error(&mut server, std::time::Instant::now(), id),
        0
    );
}

/// Bytes readable from `id` before the stream reports an error.
fn read_available_or_error(conn: &mut Connection, now: std::time::Instant, id: StreamId) -> usize {
    let mut n = 0;
    while let Ok(ReadOutcome::Data(b)) = conn.read(now, id, usize::MAX) {
        n += b.len();
    }
    n
}
