//! SPEC §8.7, reset and letting go of a stream: a RESET aborts what was
//! still open and nothing that was finished. Two sans-IO cores in memory
//! under virtual time.

mod support;

use creditmux::config::Config;
use creditmux::conn::ConnectionStats;
use creditmux::error::{Initiator, StreamError};
use creditmux::frame::*;
use support::conn::{pattern, read_available, try_read_available};
use support::frames;
use support::pair::{Pair, count_frames, inject};
use support::raw::Raw;

fn small_windows() -> Config {
    Config::builder()
        .stream_window(64 * 1024)
        .connection_window(256 * 1024)
        .max_frame_payload(16 * 1024)
        .build()
        .unwrap()
}

#[test]
fn a_reset_after_the_fin_leaves_the_finished_direction_readable() {
    let mut pair = Pair::default_pair();
    pair.connect();
    let id = pair.client.open(pair.now).unwrap().unwrap();
    let data = pattern(100_000, 3);
    assert_eq!(pair.client.write(pair.now, id, &data).unwrap(), data.len());
    pair.client.finish(pair.now, id).unwrap();
    pair.drive();
    let sid = pair.server.accept().unwrap();
    // The server has read nothing when the client resets after its FIN.
    pair.client.reset(pair.now, id, ErrorCode::CANCEL);
    pair.drive();
    let (got, end) = try_read_available(&mut pair.server, pair.now, sid);
    assert_eq!(end, Ok(true), "reads end as after any FIN");
    assert!(
        got == data,
        "{} of {} bytes readable",
        got.len(),
        data.len()
    );
    // The server's own direction is what the RESET aborted.
    assert_eq!(
        pair.server.write(pair.now, sid, b"late"),
        Err(StreamError::Reset {
            code: ErrorCode::CANCEL,
            initiator: Initiator::Remote
        })
    );
    pair.server.release(pair.now, sid);
    pair.client.release(pair.now, id);
    pair.drive();
    for conn in [&pair.client, &pair.server] {
        let stats = conn.stats();
        assert_eq!((stats.open_streams, stats.recv_buffered), (0, 0));
    }
}

#[test]
fn a_reset_before_the_fin_discards_what_is_unread() {
    let mut pair = Pair::default_pair();
    pair.connect();
    let id = pair.client.open(pair.now).unwrap().unwrap();
    pair.client
        .write(pair.now, id, &pattern(10_000, 1))
        .unwrap();
    pair.drive();
    let sid = pair.server.accept().unwrap();
    pair.client.reset(pair.now, id, ErrorCode(0x42));
    pair.drive();
    let (got, end) = try_read_available(&mut pair.server, pair.now, sid);
    assert!(got.is_empty());
    assert_eq!(
        end,
        Err(StreamError::Reset {
            code: ErrorCode(0x42),
            initiator: Initiator::Remote
        })
    );
    assert_eq!(pair.server.stats().recv_buffered, 0);
}

/// The writer finishes and lets go at once, with most of its bytes still
/// queued behind the peer's credit: they and the FIN still go out, and the
/// RESET CANCEL that stops the peer's direction comes after them.
#[test]
fn letting_go_of_a_finished_stream_delivers_it_then_cancels_the_peer() {
    let mut pair = Pair::new(small_windows(), small_windows());
    pair.connect();
    let id = pair.client.open(pair.now).unwrap().unwrap();
    let data = pattern(200_000, 9);
    let mut written = 0;
    while written < data.len() {
        let n = pair.client.write(pair.now, id, &data[written..]).unwrap();
        written += n;
        if n == 0 {
            pair.step();
        }
    }
    pair.client.finish(pair.now, id).unwrap();
    pair.client.release(pair.now, id);
    let mut got = Vec::new();
    let mut sid = None;
    let mut finished = false;
    for _ in 0..10_000 {
        pair.step();
        sid = sid.or_else(|| pair.server.accept());
        if let Some(sid) = sid {
            let (bytes, end) = try_read_available(&mut pair.server, pair.now, sid);
            got.extend_from_slice(&bytes);
            if end == Ok(true) {
                finished = true;
                break;
            }
            assert_eq!(end, Ok(false), "after {} bytes", got.len());
        }
    }
    assert!(
        finished,
        "no FIN after {} of {} bytes",
        got.len(),
        data.len()
    );
    assert!(got == data, "the bytes differ");
    pair.drive();
    let sid = sid.unwrap();
    assert_eq!(
        pair.server.write(pair.now, sid, b"reply nobody reads"),
        Err(StreamError::Reset {
            code: ErrorCode::CANCEL,
            initiator: Initiator::Remote
        })
    );
    pair.server.release(pair.now, sid);
    pair.drive();
    assert_eq!(pair.client.stats().open_streams, 0);
    assert_eq!(pair.server.stats().open_streams, 0);
}

#[test]
fn the_counters_say_how_each_stream_ended() {
    let mut pair = Pair::default_pair();
    pair.connect();
    // One completed both ways, one reset by the client, one by the server.
    let ids: Vec<_> = (0..3)
        .map(|_| pair.client.open(pair.now).unwrap().unwrap())
        .collect();
    pair.drive();
    let sids: Vec<_> = (0..3).map(|_| pair.server.accept().unwrap()).collect();
    pair.client.finish(pair.now, ids[0]).unwrap();
    pair.server.finish(pair.now, sids[0]).unwrap();
    pair.client.reset(pair.now, ids[1], ErrorCode::CANCEL);
    pair.server
        .reset(pair.now, sids[2], ErrorCode::INTERNAL_ERROR);
    pair.drive();
    assert_eq!(
        read_available(&mut pair.client, pair.now, ids[0]),
        (vec![], true)
    );
    let client = pair.client.stats();
    let server = pair.server.stats();
    assert_eq!(
        (
            client.streams_completed,
            client.streams_reset_local,
            client.streams_reset_remote
        ),
        (1, 1, 1)
    );
    assert_eq!(
        (
            server.streams_completed,
            server.streams_reset_local,
            server.streams_reset_remote
        ),
        (1, 1, 1)
    );
}

// ----- moved from core.rs ------------------------------------------------------

#[test]
fn a_reset_arriving_after_both_fins_is_ignored_and_data_stays_readable() {
    let mut pair = Pair::default_pair();
    pair.connect();
    let id = pair.client.open(pair.now).unwrap().unwrap();
    pair.client.write(pair.now, id, b"hello").unwrap();
    pair.client.finish(pair.now, id).unwrap();
    pair.drive();
    let sid = pair.server.accept().unwrap();
    pair.server.write(pair.now, sid, b"bye").unwrap();
    pair.server.finish(pair.now, sid).unwrap();
    // The client resets before the server's FIN reaches it; the RESET
    // reaches a server that has exchanged both FINs: a closed stream.
    pair.client.reset(pair.now, id, ErrorCode::CANCEL);
    pair.drive();
    assert_eq!(
        read_available(&mut pair.server, pair.now, sid),
        (b"hello".to_vec(), true)
    );
}

#[test]
fn data_after_both_fins_is_dropped_without_a_reset() {
    let mut pair = Pair::default_pair();
    pair.connect();
    let id = pair.client.open(pair.now).unwrap().unwrap();
    pair.client.write(pair.now, id, b"hello").unwrap();
    pair.client.finish(pair.now, id).unwrap();
    pair.drive();
    let sid = pair.server.accept().unwrap();
    pair.server.finish(pair.now, sid).unwrap();
    pair.drive();
    let resets = count_frames(&mut pair.to_client, |f| matches!(f, Frame::Reset(_)));
    inject(&mut pair.to_server, frames::data(id.get(), b"again", false));
    pair.drive();
    assert_eq!(resets.get(), 0);
    assert!(pair.server.error().is_none());
    assert_eq!(
        read_available(&mut pair.server, pair.now, sid),
        (b"hello".to_vec(), true)
    );
}

#[test]
fn resetting_a_closed_stream_sends_no_reset() {
    let mut pair = Pair::default_pair();
    pair.connect();
    let id = pair.client.open(pair.now).unwrap().unwrap();
    pair.client.write(pair.now, id, b"hello").unwrap();
    pair.client.finish(pair.now, id).unwrap();
    pair.drive();
    let sid = pair.server.accept().unwrap();
    pair.server.write(pair.now, sid, b"bye").unwrap();
    pair.server.finish(pair.now, sid).unwrap();
    pair.drive();
    // Both FINs exchanged; the client has not read "bye" yet.
    let resets = count_frames(&mut pair.to_server, |f| matches!(f, Frame::Reset(_)));
    pair.client.reset(pair.now, id, ErrorCode::CANCEL);
    pair.drive();
    assert_eq!(resets.get(), 0);
    assert_eq!(
        pair.client.read(pair.now, id, 10),
        Err(StreamError::Reset {
            code: ErrorCode::CANCEL,
            initiator: Initiator::Local
        })
    );
    assert_eq!(
        read_available(&mut pair.server, pair.now, sid),
        (b"hello".to_vec(), true)
    );
}

#[test]
fn no_stream_window_update_is_sent_after_the_peers_fin() {
    let mut frames = vec![frames::settings()];
    frames.extend((0..9).map(|_| frames::data_len(1, 16 * 1024)));
    let mut raw = Raw::server(Config::default(), &frames);
    let sid = raw.conn.accept().unwrap();
    // Reading more than half the stream window makes an update due...
    assert_eq!(
        read_available(&mut raw.conn, raw.now, sid).0.len(),
        9 * 16 * 1024
    );
    // ...but the FIN arrives before it is written.
    raw.feed(&[frames::data(1, b"", true)]);
    let stream_updates: Vec<Frame> = raw
        .sent()
        .into_iter()
        .filter(|f| matches!(f, Frame::WindowUpdate(w) if w.stream == sid))
        .collect();
    assert_eq!(stream_updates, []);
}

// ----- one direction at a time (SPEC §8.7.1) ------------------------------

/// A connected pair with stream `id` (client) / `sid` (server) open both
/// ways, each side having read the other's first bytes.
fn pair_with_stream() -> (Pair, StreamId, StreamId) {
    let mut pair = Pair::default_pair();
    pair.connect();
    let id = pair.client.open(pair.now).unwrap().unwrap();
    pair.client.write(pair.now, id, b"request").unwrap();
    pair.drive();
    let sid = pair.server.accept().unwrap();
    assert_eq!(
        read_available(&mut pair.server, pair.now, sid).0,
        b"request"
    );
    (pair, id, sid)
}

fn is_reset(frame: &Frame, scope: ResetScope) -> bool {
    matches!(frame, Frame::Reset(r) if r.scope == scope)
}

#[test]
fn a_send_reset_aborts_only_the_writing() {
    let (mut pair, id, sid) = pair_with_stream();
    let sends = count_frames(&mut pair.to_server, |f| is_reset(f, ResetScope::Send));
    let code = ErrorCode(0x61);
    pair.client.reset_send(pair.now, id, code);
    pair.drive();
    assert_eq!(sends.get(), 1, "one RESET SEND");
    assert_eq!(
        pair.client.write(pair.now, id, b"more"),
        Err(StreamError::Reset {
            code,
            initiator: Initiator::Local
        })
    );
    assert_eq!(
        try_read_available(&mut pair.server, pair.now, sid).1,
        Err(StreamError::Reset {
            code,
            initiator: Initiator::Remote
        })
    );
    // The server's direction goes on, to its end.
    let reply = pattern(100_000, 7);
    assert_eq!(
        pair.server.write(pair.now, sid, &reply).unwrap(),
        reply.len()
    );
    pair.server.finish(pair.now, sid).unwrap();
    pair.drive();
    assert_eq!(
        read_available(&mut pair.client, pair.now, id),
        (reply, true)
    );
    pair.client.release(pair.now, id);
    pair.server.release(pair.now, sid);
    pair.drive();
    assert_eq!(pair.client.stats().open_streams, 0);
    assert_eq!(pair.server.stats().open_streams, 0);
}

#[test]
fn a_stop_ends_the_peers_writing_and_keeps_ours() {
    let (mut pair, id, sid) = pair_with_stream();
    let receives = count_frames(&mut pair.to_client, |f| is_reset(f, ResetScope::Receive));
    let code = ErrorCode(0x62);
    pair.server.stop(pair.now, sid, code);
    // Bytes the client sends before it hears of the stop cross the RESET:
    // counted, released at once and dropped (SPEC §8.7.1, §9.7).
    let late = pattern(40_000, 9);
    assert_eq!(pair.client.write(pair.now, id, &late).unwrap(), late.len());
    pair.drive();
    assert_eq!(receives.get(), 1, "one RESET RECEIVE");
    assert!(pair.server.error().is_none(), "{:?}", pair.server.error());
    assert_eq!(
        pair.server.stats().recv_buffered,
        0,
        "the late bytes are held"
    );
    let stopped = StreamError::Reset {
        code,
        initiator: Initiator::Remote,
    };
    assert_eq!(pair.client.write(pair.now, id, b"more"), Err(stopped));
    assert_eq!(pair.client.send_reset(id), Some((code, Initiator::Remote)));
    assert_eq!(
        try_read_available(&mut pair.server, pair.now, sid).1,
        Err(StreamError::Reset {
            code,
            initiator: Initiator::Local
        })
    );
    // The server's direction goes on, to its end.
    let reply = pattern(100_000, 8);
    assert_eq!(
        pair.server.write(pair.now, sid, &reply).unwrap(),
        reply.len()
    );
    pair.server.finish(pair.now, sid).unwrap();
    pair.drive();
    assert_eq!(
        read_available(&mut pair.client, pair.now, id),
        (reply, true)
    );
    pair.client.release(pair.now, id);
    pair.server.release(pair.now, sid);
    pair.drive();
    assert_eq!(pair.client.stats().open_streams, 0);
    assert_eq!(pair.server.stats().open_streams, 0);
}

/// A reset of both directions after one was reset already covers only
/// the other: one RESET per direction (SPEC §6.6).
#[test]
fn a_full_reset_after_a_stop_covers_only_the_writing() {
    let (mut pair, id, sid) = pair_with_stream();
    let resets = count_frames(&mut pair.to_client, |f| matches!(f, Frame::Reset(_)));
    pair.server.stop(pair.now, sid, ErrorCode(0x63));
    pair.drive();
    pair.server.reset(pair.now, sid, ErrorCode(0x64));
    pair.drive();
    assert_eq!(resets.get(), 2);
    assert_eq!(
        try_read_available(&mut pair.client, pair.now, id).1,
        Err(StreamError::Reset {
            code: ErrorCode(0x64),
            initiator: Initiator::Remote
        })
    );
}

/// A peer that did not announce DIRECTIONAL_RESET never sees the flags: a
/// stop stays local (arriving bytes are dropped and their credit returned)
/// and a send reset aborts both directions.
#[test]
fn a_peer_without_directional_reset_gets_resets_of_both_directions() {
    let mut raw = Raw::server(
        Config::default(),
        &[frames::settings(), frames::data(1, b"hi", false)],
    );
    let sid = raw.conn.accept().unwrap();
    raw.sent();
    raw.conn.stop(raw.now, sid, ErrorCode(0x65));
    assert!(
        !raw.sent().iter().any(|f| matches!(f, Frame::Reset(_))),
        "a stop told a peer that cannot hear it"
    );
    raw.feed(&[frames::data_len(1, 4000)]);
    assert!(raw.conn.error().is_none(), "{:?}", raw.conn.error());
    assert_eq!(raw.conn.stats().recv_buffered, 0);
    raw.conn.reset_send(raw.now, sid, ErrorCode(0x66));
    let resets: Vec<Frame> = raw
        .sent()
        .into_iter()
        .filter(|f| matches!(f, Frame::Reset(_)))
        .collect();
    assert_eq!(
        resets,
        [Frame::Reset(Reset::both(frames::id(1), ErrorCode(0x66)))]
    );
}

/// With DIRECTIONAL_RESET announced, the raw peer sees the flags.
#[test]
fn a_peer_with_directional_reset_gets_one_reset_per_direction() {
    let settings = Frame::Settings(Settings {
        ack: false,
        values: SettingsValues {
            extensions: Some(DIRECTIONAL_RESET),
            ..SettingsValues::default()
        },
    });
    let mut raw = Raw::server(
        Config::default(),
        &[settings, frames::data(1, b"hi", false)],
    );
    let sid = raw.conn.accept().unwrap();
    raw.sent();
    raw.conn.stop(raw.now, sid, ErrorCode(0x67));
    raw.conn.reset_send(raw.now, sid, ErrorCode(0x68));
    let resets: Vec<Frame> = raw
        .sent()
        .into_iter()
        .filter(|f| matches!(f, Frame::Reset(_)))
        .collect();
    let scoped = |code, scope| {
        Frame::Reset(Reset {
            stream: frames::id(1),
            code: ErrorCode(code),
            scope,
        })
    };
    assert_eq!(
        resets,
        [
            scoped(0x68, ResetScope::Send),
            scoped(0x67, ResetScope::Receive)
        ]
    );
    // The peer's RESET SEND for a direction this side already stopped
    // changes nothing (SPEC §6.6), and the stream, reset both ways and let
    // go of, is forgotten.
    raw.feed(&[Frame::Reset(Reset {
        stream: frames::id(1),
        code: ErrorCode(0x69),
        scope: ResetScope::Send,
    })]);
    assert!(raw.conn.error().is_none(), "{:?}", raw.conn.error());
    raw.conn.release(raw.now, sid);
    assert_eq!(raw.conn.stats().open_streams, 0);
}

/// Letting go of a stream whose writing was reset must still end the
/// peer's direction: nobody reads it any more. (Without it the peer's bytes
/// piled up in a stream nobody held, its writer stalled on credit that
/// never came back, and the stream was never forgotten; found by
/// tests/soak.rs.)
#[test]
fn letting_go_after_a_send_reset_stops_the_peer() {
    let (mut pair, id, sid) = pair_with_stream();
    pair.client.reset_send(pair.now, id, ErrorCode(0x6a));
    pair.drive();
    pair.client.release(pair.now, id);
    pair.drive();
    assert_eq!(
        pair.server.write(pair.now, sid, b"reply"),
        Err(StreamError::Reset {
            code: ErrorCode::CANCEL,
            initiator: Initiator::Remote
        })
    );
    assert_eq!(pair.client.stats().open_streams, 0);
    assert_eq!(pair.client.stats().recv_buffered, 0);
    pair.server.release(pair.now, sid);
    pair.drive();
    assert_eq!(pair.server.stats().open_streams, 0);
    // Each side counted the stream once, by its first reset.
    let ended =
        |s: ConnectionStats| s.streams_completed + s.streams_reset_local + s.streams_reset_remote;
    assert_eq!(ended(pair.client.stats()), 1);
    assert_eq!(ended(pair.server.stats()), 1);
}
