//! Protocol behaviour of the sans-IO core end to end: two endpoints in
//! memory under virtual time carry streams, credit, resets and a graceful
//! close (SPEC §8-§10, §13). Rules of one area are tested in the file of
//! that area: flow_control, reset, goaway, timeouts, floods, violations,
//! payloads.

mod support;

use creditmux::config::Config;
use creditmux::conn::{Connection, ReadOutcome};
use creditmux::error::{ConnectionError, Initiator, OpenError, StreamError};
use creditmux::frame::*;
use support::conn::{pattern, read_available};
use support::pair::Pair;

#[test]
fn handshake_completes_on_both_sides() {
    let mut pair = Pair::default_pair();
    pair.connect();
    assert!(pair.client.error().is_none());
}

#[test]
fn a_stream_carries_bytes_and_fin_both_ways() {
    let mut pair = Pair::default_pair();
    pair.connect();
    let id = pair.client.open(pair.now).unwrap().unwrap();
    assert_eq!(id.get(), 1);
    let request = pattern(100_000, 1);
    let mut written = 0;
    let mut received = Vec::new();
    let mut server_id = None;
    while written < request.len() || server_id.is_none() {
        written += pair
            .client
            .write(pair.now, id, &request[written..])
            .unwrap();
        if written == request.len() {
            pair.client.finish(pair.now, id).unwrap();
        }
        pair.step();
        if server_id.is_none() {
            server_id = pair.server.accept();
        }
        if let Some(sid) = server_id {
            received.extend(read_available(&mut pair.server, pair.now, sid).0);
        }
    }
    pair.drive();
    let sid = server_id.unwrap();
    let (rest, fin) = read_available(&mut pair.server, pair.now, sid);
    received.extend(rest);
    assert!(fin);
    assert_eq!(received, request);
    // And back.
    pair.server.write(pair.now, sid, b"reply").unwrap();
    pair.server.finish(pair.now, sid).unwrap();
    pair.drive();
    assert_eq!(
        read_available(&mut pair.client, pair.now, id),
        (b"reply".to_vec(), true)
    );
    pair.client.release(pair.now, id);
    pair.server.release(pair.now, sid);
    pair.drive();
    assert_eq!(pair.client.stats().open_streams, 0);
    assert_eq!(pair.server.stats().open_streams, 0);
}

#[test]
fn an_opened_stream_is_announced_even_without_data() {
    let mut pair = Pair::default_pair();
    pair.connect();
    let id = pair.client.open(pair.now).unwrap().unwrap();
    pair.drive();
    assert_eq!(pair.server.accept(), Some(id));
}

#[test]
fn open_waits_at_the_stream_limit_and_proceeds_when_a_stream_closes() {
    let server = Config::builder().max_incoming_streams(2).build().unwrap();
    let mut pair = Pair::new(Config::default(), server);
    pair.connect();
    let a = pair.client.open(pair.now).unwrap().unwrap();
    let _b = pair.client.open(pair.now).unwrap().unwrap();
    assert_eq!(pair.client.open(pair.now), Ok(None), "third open waits");
    pair.drive();
    let sa = pair.server.accept().unwrap();
    // Close stream a fully on both sides.
    pair.client.finish(pair.now, a).unwrap();
    pair.server.finish(pair.now, sa).unwrap();
    pair.drive();
    assert_eq!(
        read_available(&mut pair.client, pair.now, a),
        (vec![], true)
    );
    assert_eq!(
        read_available(&mut pair.server, pair.now, sa),
        (vec![], true)
    );
    pair.client.release(pair.now, a);
    pair.server.release(pair.now, sa);
    pair.drive();
    let c = pair.client.open(pair.now).unwrap();
    assert!(c.is_some(), "a closed stream returned its stream credit");
}

#[test]
fn a_slow_stream_cannot_stall_another() {
    let config = Config::builder()
        .stream_window(16 * 1024)
        .connection_window(64 * 1024)
        .build()
        .unwrap();
    let mut pair = Pair::new(config.clone(), config);
    pair.connect();
    let slow = pair.client.open(pair.now).unwrap().unwrap();
    let fast = pair.client.open(pair.now).unwrap().unwrap();
    let big = vec![7u8; 200_000];
    pair.client.write(pair.now, slow, &big).unwrap();
    pair.drive();
    let s_slow = pair.server.accept().unwrap();
    let s_fast = pair.server.accept().unwrap();
    // Move 4 MiB on the fast stream; never read the slow one.
    let total = 4 << 20;
    let mut sent = 0;
    let mut got = 0;
    while got < total {
        if sent < total {
            sent += pair
                .client
                .write(pair.now, fast, &big[..(total - sent).min(big.len())])
                .unwrap();
        }
        pair.step();
        got += read_available(&mut pair.server, pair.now, s_fast).0.len();
        let buffered = pair.server.stream_stats(s_slow).unwrap().recv_buffered;
        assert!(
            buffered <= 16 * 1024,
            "slow stream buffered {buffered} bytes beyond its window"
        );
    }
    assert_eq!(got, total);
}

#[test]
fn reset_returns_all_connection_credit() {
    let config = Config::builder()
        .stream_window(64 * 1024)
        .connection_window(256 * 1024)
        .build()
        .unwrap();
    let mut pair = Pair::new(config.clone(), config);
    pair.connect();
    for round in 0..20 {
        let id = pair.client.open(pair.now).unwrap().unwrap();
        pair.client.write(pair.now, id, &vec![1u8; 60_000]).unwrap();
        pair.drive();
        let sid = pair.server.accept().unwrap();
        if round % 2 == 0 {
            pair.client.reset(pair.now, id, ErrorCode::CANCEL);
        } else {
            pair.server.reset(pair.now, sid, ErrorCode::CANCEL);
        }
        pair.client.release(pair.now, id);
        pair.server.release(pair.now, sid);
        pair.drive();
    }
    let stats = pair.server.stats();
    assert_eq!(stats.open_streams, 0);
    // Credit conservation: nothing is held for the reset streams, and the
    // client may use at least half the connection window right away.
    assert_eq!(stats.recv_buffered, 0);
    assert!(pair.client.stats().send_window >= 128 * 1024);
    let id = pair.client.open(pair.now).unwrap().unwrap();
    let total = 1 << 20;
    let mut written = 0;
    let mut got = 0;
    let mut sid = None;
    while got < total {
        written += pair
            .client
            .write(pair.now, id, &vec![2u8; total - written])
            .unwrap();
        pair.drive();
        sid = sid.or_else(|| pair.server.accept());
        got += read_available(&mut pair.server, pair.now, sid.unwrap())
            .0
            .len();
    }
    assert_eq!(got, total);
}

#[test]
fn a_reset_fails_both_sides_with_who_did_it() {
    let mut pair = Pair::default_pair();
    pair.connect();
    let id = pair.client.open(pair.now).unwrap().unwrap();
    pair.client.write(pair.now, id, b"x").unwrap();
    pair.drive();
    let sid = pair.server.accept().unwrap();
    pair.server.reset(pair.now, sid, ErrorCode(0x77));
    pair.drive();
    let err = pair.client.read(pair.now, id, 10).unwrap_err();
    assert_eq!(
        err,
        StreamError::Reset {
            code: ErrorCode(0x77),
            initiator: Initiator::Remote
        }
    );
    assert_eq!(
        pair.server.write(pair.now, sid, b"y").unwrap_err(),
        StreamError::Reset {
            code: ErrorCode(0x77),
            initiator: Initiator::Local
        }
    );
}

#[test]
fn both_peers_fill_each_others_windows_and_control_still_flows() {
    let config = Config::builder()
        .stream_window(16 * 1024)
        .connection_window(64 * 1024)
        .send_buffer(64 * 1024)
        .build()
        .unwrap();
    let mut pair = Pair::new(config.clone(), config);
    pair.connect();
    let mut client_streams = Vec::new();
    let mut server_streams = Vec::new();
    for _ in 0..3 {
        let c = pair.client.open(pair.now).unwrap().unwrap();
        pair.client
            .write(pair.now, c, &vec![1u8; 64 * 1024])
            .unwrap();
        client_streams.push(c);
    }
    pair.drive();
    while let Some(s) = pair.server.accept() {
        pair.server
            .write(pair.now, s, &vec![2u8; 64 * 1024])
            .unwrap();
        server_streams.push(s);
    }
    let s4 = pair.server.open(pair.now).unwrap().unwrap();
    pair.server
        .write(pair.now, s4, &vec![3u8; 64 * 1024])
        .unwrap();
    pair.drive();
    // Nobody reads. PING still round-trips.
    pair.client.ping(pair.now);
    pair.drive();
    assert_eq!(pair.client.pings_completed(), 1);
    // RESET still gets through and returns credit.
    pair.client
        .reset(pair.now, client_streams[0], ErrorCode::CANCEL);
    pair.drive();
    assert!(matches!(
        pair.server.read(pair.now, server_streams[0], 10),
        Err(StreamError::Reset { .. })
    ));
    // A new stream still opens and transfers.
    let fresh = pair.client.open(pair.now).unwrap().unwrap();
    pair.client.write(pair.now, fresh, b"still alive").unwrap();
    pair.client.finish(pair.now, fresh).unwrap();
    pair.drive();
    let mut accepted = None;
    while let Some(s) = pair.server.accept() {
        accepted = Some(s);
    }
    let sfresh = accepted.expect("the new stream arrived");
    assert_eq!(
        read_available(&mut pair.server, pair.now, sfresh),
        (b"still alive".to_vec(), true)
    );
    // Close still completes.
    pair.client
        .close(pair.now, ErrorCode::ENHANCE_YOUR_CALM, b"bye");
    pair.drive();
    assert!(pair.client.is_finished());
    assert!(matches!(
        pair.server.error(),
        Some(ConnectionError::ClosedByPeer {
            code: ErrorCode::ENHANCE_YOUR_CALM,
            ..
        })
    ));
}

#[test]
fn graceful_close_lets_streams_finish_then_ends_both_sides() {
    let mut pair = Pair::default_pair();
    pair.connect();
    let id = pair.client.open(pair.now).unwrap().unwrap();
    pair.client.write(pair.now, id, b"request").unwrap();
    pair.drive();
    let sid = pair.server.accept().unwrap();
    pair.server.close(pair.now, ErrorCode::NO_ERROR, b"");
    pair.drive();
    assert_eq!(pair.client.open(pair.now), Err(OpenError::GoingAway));
    // The stream in flight completes.
    assert_eq!(
        read_available(&mut pair.server, pair.now, sid).0,
        b"request"
    );
    pair.server.write(pair.now, sid, b"response").unwrap();
    pair.server.finish(pair.now, sid).unwrap();
    pair.client.finish(pair.now, id).unwrap();
    pair.drive();
    assert_eq!(
        read_available(&mut pair.client, pair.now, id),
        (b"response".to_vec(), true)
    );
    assert_eq!(
        read_available(&mut pair.server, pair.now, sid),
        (vec![], true)
    );
    pair.client.release(pair.now, id);
    pair.server.release(pair.now, sid);
    pair.drive();
    assert!(pair.server.is_finished());
    assert!(pair.client.is_finished());
}

// ----- regressions: the minimal cases the properties found ------------------

fn tiny_config(max_incoming_streams: u32) -> Config {
    Config::builder()
        .stream_window(1024)
        .connection_window(4096)
        .max_frame_payload(1024)
        .send_buffer(1024)
        .max_incoming_streams(max_incoming_streams)
        .build()
        .expect("valid config")
}

fn read_to_end(conn: &mut Connection, now: std::time::Instant, id: StreamId) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        match conn.read(now, id, usize::MAX) {
            Ok(ReadOutcome::Data(bytes)) => out.extend_from_slice(&bytes),
            Ok(ReadOutcome::Finished) => return out,
            other => panic!("stream {id} did not finish: {other:?}"),
        }
    }
}

/// Property 3 found it: a stream reset while it waited in the DATA queue
/// (finished, then released before its FIN went out) was never forgotten,
/// so the connection kept it, and a peer stream in that state would have
/// kept its stream-count credit, forever.
#[test]
fn a_stream_reset_while_queued_for_sending_is_forgotten_once_released() {
    let mut pair = Pair::new(tiny_config(1), tiny_config(1));
    pair.connect();
    let id = pair.server.open(pair.now).unwrap().unwrap();
    assert_eq!(pair.server.write(pair.now, id, &[7; 1024]).unwrap(), 1024);
    pair.drive();
    pair.server.finish(pair.now, id).unwrap();
    // Nothing received from the client yet: release resets with CANCEL.
    pair.server.release(pair.now, id);
    pair.drive();
    let cid = pair.client.accept().expect("the stream arrived");
    pair.client.release(pair.now, cid);
    pair.drive();
    assert_eq!(pair.server.stats().open_streams, 0);
    assert_eq!(pair.client.stats().open_streams, 0);
}

/// Property 3 found it: a stream opened and reset before its first frame
/// went out had used stream-count credit the peer never learned of, so with
/// MAX_STREAMS 1 the opener could never open a stream again.
#[test]
fn a_stream_reset_before_it_was_announced_returns_its_stream_credit() {
    let mut pair = Pair::new(tiny_config(1), tiny_config(1));
    pair.connect();
    let id = pair.client.open(pair.now).unwrap().unwrap();
    pair.client.reset(pair.now, id, ErrorCode::CANCEL);
    pair.client.release(pair.now, id);
    pair.drive();
    let sid = pair.server.accept().expect("the id was announced");
    assert_eq!(
        pair.server.read(pair.now, sid, 1),
        Err(StreamError::Reset {
            code: ErrorCode::CANCEL,
            initiator: Initiator::Remote
        })
    );
    pair.server.release(pair.now, sid);
    pair.drive();
    let again = pair.client.open(pair.now).unwrap();
    assert!(again.is_some(), "stream-count credit came back");
    assert!(pair.client.error().is_none() && pair.server.error().is_none());
}

/// Property 1 found it: the opening frame of a stream opened just before a
/// graceful close went out behind the GOAWAY (control frames first); the
/// peer, with no stream of its own, closed at once and the stream was lost.
#[test]
fn a_graceful_close_lets_a_stream_opened_just_before_it_complete() {
    let mut pair = Pair::default_pair();
    pair.connect();
    let id = pair.server.open(pair.now).unwrap().unwrap();
    pair.server.write(pair.now, id, b"last words").unwrap();
    pair.server.finish(pair.now, id).unwrap();
    pair.server.close(pair.now, ErrorCode::NO_ERROR, b"");
    pair.drive();
    assert_eq!(pair.client.error(), None);
    let cid = pair.client.accept().expect("the stream arrived");
    assert_eq!(read_to_end(&mut pair.client, pair.now, cid), b"last words");
    pair.client.write(pair.now, cid, b"ack").unwrap();
    pair.client.finish(pair.now, cid).unwrap();
    pair.client.release(pair.now, cid);
    pair.drive();
    assert_eq!(read_to_end(&mut pair.server, pair.now, id), b"ack");
    pair.server.release(pair.now, id);
    pair.drive();
    assert_eq!(
        pair.server.error(),
        Some(&ConnectionError::LocallyClosed {
            code: ErrorCode::NO_ERROR
        })
    );
    assert!(matches!(
        pair.client.error(),
        Some(ConnectionError::ClosedByPeer {
            code: ErrorCode::NO_ERROR,
            ..
        })
    ));
}

/// Property 1 found it: after this side's graceful GOAWAY the peer closed
/// the transport once its streams were done (SPEC §13.2), but a closed
/// stream this side's application still held made that end of input read
/// as an abrupt `TransportClosed`.
#[test]
fn end_of_input_after_a_graceful_goaway_completes_the_shutdown() {
    let mut pair = Pair::default_pair();
    pair.connect();
    let id = pair.client.open(pair.now).unwrap().unwrap();
    pair.client.finish(pair.now, id).unwrap();
    pair.drive();
    let sid = pair.server.accept().unwrap();
    pair.server.finish(pair.now, sid).unwrap();
    pair.drive();
    assert_eq!(read_to_end(&mut pair.server, pair.now, sid), b"");
    pair.server.release(pair.now, sid);
    assert_eq!(read_to_end(&mut pair.client, pair.now, id), b"");
    // The client's application still holds its closed stream: that does
    // not hold the close up (SPEC §13.2 counts closed streams, not
    // released ones), and the end of input that follows changes nothing.
    pair.client.close(pair.now, ErrorCode::NO_ERROR, b"");
    pair.drive();
    assert!(pair.server.is_finished(), "the server drained at once");
    assert!(pair.client.is_finished(), "the client drained at once");
    pair.client.handle_eof(pair.now);
    assert_eq!(
        pair.client.error(),
        Some(&ConnectionError::LocallyClosed {
            code: ErrorCode::NO_ERROR
        })
    );
}
