//! SPEC §9, flow control: credit a peer breaks, and what stays accounted
//! for afterwards (§9.3 enforcement, §9.7 credit conservation). One real
//! server core against hand-made client frames under virtual time.

mod support;

use bytes::{Bytes, BytesMut};
use creditmux::config::Config;
use creditmux::conn::{Connection, ReadOutcome};
use creditmux::error::ConnectionError;
use creditmux::frame::{Data, ErrorCode, Frame, Settings, SettingsValues, StreamId};
use support::raw::Raw;

const STREAM_WINDOW: u32 = 4 * 1024;
const CONN_WINDOW: u32 = 16 * 1024;

/// Small windows and frames, so a few frames reach a limit.
fn small_config() -> Config {
    Config::builder()
        .stream_window(STREAM_WINDOW)
        .connection_window(CONN_WINDOW)
        .max_frame_payload(1024)
        .build()
        .expect("valid config")
}

fn settings() -> Frame {
    Frame::Settings(Settings::default())
}

fn data(stream: u32, len: usize) -> Frame {
    Frame::Data(Data {
        stream: StreamId::new(stream).expect("stream id"),
        fin: false,
        payload: Bytes::from(vec![0x5a; len]),
    })
}

fn encoded(frame: &Frame) -> BytesMut {
    let mut bytes = BytesMut::new();
    frame.encode(&mut bytes);
    bytes
}

fn flow_control_error(conn: &Connection) -> bool {
    matches!(
        conn.error(),
        Some(ConnectionError::ProtocolViolation {
            code: ErrorCode::FLOW_CONTROL_ERROR,
            ..
        })
    )
}

/// SPEC §9.7: the connection's unreleased bytes are exactly its streams'
/// unread bytes.
fn assert_conserved(conn: &Connection, ids: &[StreamId]) {
    let streams: u64 = ids
        .iter()
        .filter_map(|&id| conn.stream_stats(id))
        .map(|s| s.recv_buffered)
        .sum();
    assert_eq!(
        conn.stats().recv_buffered,
        streams,
        "connection credit held differs from its streams' unread bytes"
    );
}

/// Reads `id` until it has nothing more; returns the byte count.
fn drain(conn: &mut Connection, now: std::time::Instant, id: StreamId) -> usize {
    let mut n = 0;
    while let Ok(ReadOutcome::Data(bytes)) = conn.read(now, id, usize::MAX) {
        n += bytes.len();
    }
    n
}

/// The frame that breaks the stream credit while the connection credit
/// still has room: it was counted in the connection credit before the
/// stream check failed, and no stream ever held its bytes.
#[test]
fn data_beyond_the_stream_credit_takes_no_connection_credit() {
    let id = StreamId::new(1).unwrap();
    let mut raw = Raw::server(small_config(), &[settings(), data(1, 1000)]);
    assert_eq!(raw.conn.accept(), Some(id));
    raw.feed(&[data(1, 1000), data(1, 1000), data(1, 1000)]);
    assert!(raw.conn.error().is_none());
    assert_conserved(&raw.conn, &[id]);
    // 4000 of 4096 bytes used: 97 more break the stream credit, while the
    // connection credit (16 KiB) has room for them.
    raw.feed(&[data(1, 97)]);
    assert!(flow_control_error(&raw.conn), "{:?}", raw.conn.error());
    assert_conserved(&raw.conn, &[id]);
    assert_eq!(raw.conn.stats().recv_buffered, 4000);
    // What was received in credit stays readable (SPEC §14.2), and once it
    // is read nothing is held: the refused frame left no trace.
    assert_eq!(drain(&mut raw.conn, raw.now, id), 4000);
    raw.conn.release(raw.now, id);
    assert_eq!(raw.conn.stats().recv_buffered, 0);
}

/// The same on a stream whose reader stopped: its data is dropped on
/// arrival, and a frame beyond its credit must not stay counted either.
#[test]
fn data_beyond_the_credit_of_a_stream_nobody_reads_takes_no_connection_credit() {
    let id = StreamId::new(1).unwrap();
    let mut raw = Raw::server(small_config(), &[settings(), data(1, 1000)]);
    assert_eq!(raw.conn.accept(), Some(id));
    raw.conn.stop_reading(raw.now, id);
    raw.feed(&[data(1, 1000), data(1, 1000), data(1, 1000)]);
    assert!(raw.conn.error().is_none());
    assert_eq!(raw.conn.stats().recv_buffered, 0);
    // The credit released by discarding was never announced: 97 more bytes
    // are still beyond the announced limit.
    raw.feed(&[data(1, 97)]);
    assert!(flow_control_error(&raw.conn), "{:?}", raw.conn.error());
    assert_conserved(&raw.conn, &[id]);
    assert_eq!(raw.conn.stats().recv_buffered, 0);
}

/// The minimized input of fuzz target `session` that found the leak
/// (`session-credit-520`): the peer's SETTINGS without its acknowledgement,
/// a stream the server opened but has not announced yet, DATA on it
/// delivered in pieces whose tails arrive with the next frame, and a last
/// 520-byte frame beyond the stream credit. The connection credit held
/// stayed 520 bytes above the stream's unread bytes.
#[test]
fn fuzz_session_credit_520_regression() {
    let mut raw = Raw::server(
        Config::builder()
            .stream_window(STREAM_WINDOW)
            .connection_window(CONN_WINDOW)
            .max_frame_payload(1024)
            .max_incoming_streams(8)
            .accept_backlog(8)
            .send_buffer(4 * 1024)
            .max_stray_control(16)
            .build()
            .unwrap(),
        &[],
    );
    // Handshake: the peer's SETTINGS, its acknowledgement withheld.
    let peer = SettingsValues {
        max_frame_payload: Some(1024 + 64_511 % 2049),
        max_streams: Some(251 % 12),
        ..SettingsValues::default()
    };
    raw.feed(&[Frame::Settings(Settings {
        ack: false,
        values: peer,
    })]);
    let id = raw.conn.open(raw.now).unwrap().expect("stream credit");
    assert_eq!(id.get(), 2);
    // (payload length, trailing bytes held back until the next frame)
    let frames = [
        (468, 7),
        (1007, 3),
        (1007, 3),
        (468, 7),
        (1007, 3),
        (520, 0),
    ];
    let mut pending = BytesMut::new();
    for (len, hold) in frames {
        pending.extend_from_slice(&encoded(&data(2, len)));
        let deliver = pending.split_to(pending.len() - hold);
        raw.feed_bytes(&deliver);
        assert_conserved(&raw.conn, &[id]);
    }
    // 3957 bytes within the stream window of 4096; the 520 break it.
    assert!(flow_control_error(&raw.conn), "{:?}", raw.conn.error());
    assert_eq!(raw.conn.stats().recv_buffered, 3957);
    assert_eq!(drain(&mut raw.conn, raw.now, id), 3957);
    assert_eq!(raw.conn.stats().recv_buffered, 0);
}

/// Found by fuzz target `session` (`session-timer-after-end`): a DATA
/// frame beyond the stream credit whose header arrived but whose payload
/// had not. The credit check on its first part ended the connection, and
/// then the partial frame it left behind armed the frame timeout (SPEC
/// §12.2) on the finished connection, so a driver would have woken for a
/// connection that had nothing left to do.
#[test]
fn data_beyond_credit_cut_short_leaves_no_timer_armed() {
    let id = StreamId::new(1).unwrap();
    let mut raw = Raw::server(small_config(), &[settings(), data(1, 1000)]);
    assert_eq!(raw.conn.accept(), Some(id));
    raw.feed(&[data(1, 1000), data(1, 1000), data(1, 1000)]);
    assert!(raw.conn.error().is_none());
    // 4000 of 4096 bytes used; the header of a 1000-byte frame and the
    // first 10 bytes of its payload.
    let frame = encoded(&data(1, 1000));
    raw.feed_bytes(&frame[..frame.len() - 990]);
    assert!(flow_control_error(&raw.conn), "{:?}", raw.conn.error());
    assert!(raw.conn.is_finished());
    assert_eq!(
        raw.conn.poll_timeout(),
        None,
        "a finished connection keeps a timer"
    );
    assert_conserved(&raw.conn, &[id]);
}
