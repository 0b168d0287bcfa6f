//! SPEC §12, timeouts: every byte is liveness, but a frame must complete
//! within the frame timeout (§12.2), so a peer cannot hold a connection
//! by trickling one frame forever. One real core, a hand-made peer,
//! virtual time.

mod support;

use std::time::Duration;

use bytes::BytesMut;
use creditmux::config::Config;
use creditmux::error::ConnectionError;
use creditmux::frame::{ErrorCode, Frame};
use support::frames::data;
use support::raw::Raw;

/// DATA on stream 1 with a 4096-byte payload, encoded.
fn big_frame() -> Vec<u8> {
    let mut bytes = BytesMut::new();
    data(1, &[7u8; 4096], false).encode(&mut bytes);
    bytes.to_vec()
}

/// Feeds `bytes` one byte per `every`, running timers in between; stops
/// early if the connection ends.
fn trickle(raw: &mut Raw, bytes: &[u8], every: Duration) {
    for b in bytes {
        if raw.conn.is_finished() {
            return;
        }
        raw.feed_bytes(&[*b]);
        raw.run_for(every);
    }
}

#[test]
fn a_frame_trickled_past_the_frame_timeout_ends_the_connection() {
    let mut raw = Raw::established(Config::default());
    let frame = big_frame();
    // One byte every 2 s: alive by §12.2's first rule (the idle timeout
    // never fires), yet the frame would take hours.
    trickle(&mut raw, &frame[..100], Duration::from_secs(2));
    assert!(raw.conn.is_finished(), "still open after 200 s");
    match raw.conn.error() {
        Some(ConnectionError::ProtocolViolation { code, .. }) => {
            assert_eq!(*code, ErrorCode::IDLE_TIMEOUT)
        }
        other => panic!("ended with {other:?}"),
    }
    let goaway = raw.sent().into_iter().find_map(|f| match f {
        Frame::GoAway(g) => Some(g.code),
        _ => None,
    });
    assert_eq!(goaway, Some(ErrorCode::IDLE_TIMEOUT));
}

#[test]
fn slow_frames_that_each_complete_in_time_keep_the_connection() {
    let config = Config::builder()
        .frame_timeout(Some(Duration::from_secs(30)))
        .build()
        .unwrap();
    let mut raw = Raw::established(config);
    let frame = big_frame();
    // Each frame arrives in 10 pieces over 25 s; 120 s in all.
    for _ in 0..5 {
        for piece in frame.chunks(frame.len().div_ceil(10)) {
            raw.feed_bytes(piece);
            raw.run_for(Duration::from_millis(2500));
        }
    }
    assert!(raw.conn.error().is_none(), "{:?}", raw.conn.error());
}

#[test]
fn the_frame_timeout_can_be_turned_off() {
    let config = Config::builder().frame_timeout(None).build().unwrap();
    let mut raw = Raw::established(config);
    trickle(&mut raw, &big_frame()[..100], Duration::from_secs(2));
    assert!(raw.conn.error().is_none(), "{:?}", raw.conn.error());
}
