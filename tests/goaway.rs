//! SPEC §13, GOAWAY and shutdown: a graceful close lets every stream end
//! and says how each did, on the wire and in the counters.

mod support;

use std::time::Duration;

use creditmux::config::Config;
use creditmux::error::{ConnectionError, Initiator, OpenError, StreamError};
use creditmux::frame::*;
use support::conn::{pattern, read_available, try_read_available};
use support::frames;
use support::pair::{Pair, count_frames, inject};
use support::raw::Raw;

/// SPEC §13.2: streams still open at the drain deadline are reset with
/// CANCEL, and the RESETs reach the peer before the connection ends.
#[test]
fn the_drain_deadline_resets_open_streams_with_cancel_on_the_wire() {
    let mut pair = Pair::default_pair();
    pair.connect();
    let cid = pair.client.open(pair.now).unwrap().unwrap();
    pair.client.write(pair.now, cid, b"half a request").unwrap();
    pair.drive();
    let sid = pair.server.accept().unwrap();
    pair.client.close(pair.now, ErrorCode::NO_ERROR, b"");
    pair.drive();
    // Neither side finishes the stream; the client's drain timeout passes.
    pair.run_for(Config::default().drain_timeout() + Duration::from_millis(1));
    assert_eq!(
        pair.client.error(),
        Some(&ConnectionError::LocallyClosed {
            code: ErrorCode::NO_ERROR
        })
    );
    let (got, end) = try_read_available(&mut pair.server, pair.now, sid);
    assert!(got.is_empty(), "a RESET discards what was not read");
    assert_eq!(
        end,
        Err(StreamError::Reset {
            code: ErrorCode::CANCEL,
            initiator: Initiator::Remote
        }),
        "the server learns the stream was cancelled, not that the connection broke"
    );
    let stats = pair.client.stats();
    assert_eq!(stats.streams_cancelled_at_drain, 1);
    assert_eq!(stats.streams_reset_local, 1);
}

/// SPEC §13.2: the connection ends when its streams are closed and what
/// was owed for them is written, not earlier: bytes and a FIN queued
/// behind the peer's credit still go out.
#[test]
fn a_graceful_close_waits_for_bytes_and_a_fin_queued_behind_credit() {
    let config = Config::builder()
        .stream_window(16 * 1024)
        .connection_window(64 * 1024)
        .send_buffer(256 * 1024)
        .build()
        .unwrap();
    let mut pair = Pair::new(config.clone(), config);
    pair.connect();
    let cid = pair.client.open(pair.now).unwrap().unwrap();
    let body = pattern(200_000, 5);
    assert_eq!(pair.client.write(pair.now, cid, &body).unwrap(), body.len());
    pair.client.finish(pair.now, cid).unwrap();
    pair.drive();
    let sid = pair.server.accept().unwrap();
    pair.server.finish(pair.now, sid).unwrap();
    pair.client.close(pair.now, ErrorCode::NO_ERROR, b"");
    let mut got = Vec::new();
    loop {
        pair.step();
        let (bytes, finished) = read_available(&mut pair.server, pair.now, sid);
        got.extend_from_slice(&bytes);
        if finished {
            break;
        }
        assert!(
            !pair.client.is_finished(),
            "the client ended with {} of {} bytes delivered",
            got.len(),
            body.len()
        );
    }
    assert!(got == body);
    pair.drive();
    assert!(pair.client.is_finished() && pair.server.is_finished());
    assert!(
        pair.client
            .error()
            .is_some_and(ConnectionError::is_graceful)
    );
    assert!(
        pair.server
            .error()
            .is_some_and(ConnectionError::is_graceful)
    );
    assert_eq!(pair.client.stats().streams_completed, 1);
}

/// SPEC §16.1: refusing streams the peer opened while this side's GOAWAY
/// was in flight is no flood, however many the peer's credit allowed; the
/// stream that was already running finishes.
#[test]
fn refusals_during_a_goaway_are_not_charged_to_the_reset_budget() {
    let server = Config::builder()
        .max_incoming_streams(1024)
        .accept_backlog(1024)
        .build()
        .unwrap();
    let mut pair = Pair::new(Config::default(), server);
    pair.connect();
    let running = pair.client.open(pair.now).unwrap().unwrap();
    pair.client.write(pair.now, running, b"in flight").unwrap();
    pair.drive();
    let sid = pair.server.accept().unwrap();
    pair.server.close(pair.now, ErrorCode::NO_ERROR, b"");
    // Before the GOAWAY arrives the client opens 250 more (it may: the
    // server advertised 1024).
    let late: Vec<_> = (0..250)
        .map(|_| pair.client.open(pair.now).unwrap().unwrap())
        .collect();
    for &id in &late {
        pair.client.write(pair.now, id, b"x").unwrap();
    }
    pair.drive();
    assert!(pair.server.error().is_none(), "{:?}", pair.server.error());
    assert!(pair.client.error().is_none(), "{:?}", pair.client.error());
    for &id in &late {
        let (_, end) = try_read_available(&mut pair.client, pair.now, id);
        assert_eq!(
            end,
            Err(StreamError::Reset {
                code: ErrorCode::REFUSED_STREAM,
                initiator: Initiator::Remote
            })
        );
        pair.client.release(pair.now, id);
    }
    assert_eq!(pair.client.open(pair.now), Err(OpenError::GoingAway));
    // The running stream completes both ways.
    assert_eq!(
        read_available(&mut pair.server, pair.now, sid).0,
        b"in flight"
    );
    pair.client.finish(pair.now, running).unwrap();
    pair.server.write(pair.now, sid, b"done").unwrap();
    pair.server.finish(pair.now, sid).unwrap();
    pair.drive();
    assert_eq!(
        read_available(&mut pair.client, pair.now, running),
        (b"done".to_vec(), true)
    );
    assert_eq!(
        read_available(&mut pair.server, pair.now, sid),
        (vec![], true)
    );
    pair.drive();
    assert!(
        pair.server
            .error()
            .is_some_and(ConnectionError::is_graceful)
    );
}

/// SPEC §13.1/§13.2: the sender of GOAWAY must not open streams after
/// it; one it opens anyway is refused, so it learns the stream was not
/// processed.
#[test]
fn a_stream_the_goaway_sender_opens_after_its_goaway_is_refused() {
    // Stream 1 opened before the client's GOAWAY keeps the server from
    // draining at once; stream 3 comes after it.
    let mut raw = Raw::server(
        Config::default(),
        &[
            frames::settings(),
            frames::data(1, b"in time", false),
            frames::goaway(0, ErrorCode::NO_ERROR),
            frames::data(3, b"too late", false),
        ],
    );
    assert_eq!(raw.conn.accept(), Some(frames::id(1)));
    assert_eq!(raw.conn.accept(), None);
    let refused = raw.sent().into_iter().any(|f| {
        matches!(f, Frame::Reset(r) if r.stream == frames::id(3) && r.code == ErrorCode::REFUSED_STREAM)
    });
    assert!(refused, "no RESET REFUSED_STREAM for stream 3");
}

// ----- moved from core.rs ------------------------------------------------------

#[test]
fn goaway_debug_data_fits_the_peers_max_frame_payload() {
    // Before the peer's SETTINGS: at most 1024 bytes of payload (SPEC §4.2).
    let mut raw = Raw::server(Config::default(), &[]);
    raw.conn.close(raw.now, ErrorCode::NO_ERROR, &[b'x'; 3000]);
    let sent = raw.sent();
    let debug_len = sent
        .iter()
        .find_map(|f| match f {
            Frame::GoAway(g) => Some(g.debug.len()),
            _ => None,
        })
        .expect("a GOAWAY");
    assert_eq!(debug_len, 1024 - 8);
    // After it: the peer's limit, and never more than the 1024 bytes a
    // receiver keeps (SPEC §6.8).
    let mut raw = Raw::server(Config::default(), &[frames::settings()]);
    raw.conn.close(raw.now, ErrorCode::NO_ERROR, &[b'x'; 3000]);
    let debug_len = raw
        .sent()
        .iter()
        .find_map(|f| match f {
            Frame::GoAway(g) => Some(g.debug.len()),
            _ => None,
        })
        .expect("a GOAWAY");
    assert_eq!(debug_len, 1024);
}

#[test]
fn repeated_closes_send_one_goaway_and_last_stream_id_never_rises() {
    let mut raw = Raw::server(
        Config::default(),
        &[frames::settings(), frames::data_len(1, 1)],
    );
    let _sid = raw.conn.accept().unwrap();
    let mut sent = Vec::new();
    for _ in 0..10 {
        raw.conn.close(raw.now, ErrorCode::NO_ERROR, b"");
        sent.extend(raw.sent());
    }
    // Stream 3 arrives after the GOAWAY: refused, not processed.
    raw.feed(&[frames::data_len(3, 1)]);
    sent.extend(raw.sent());
    raw.conn.close(raw.now, ErrorCode::INTERNAL_ERROR, b"");
    sent.extend(raw.sent());
    assert_eq!(
        frames::goaways(&sent),
        [(1, ErrorCode::NO_ERROR), (1, ErrorCode::INTERNAL_ERROR)]
    );
}

#[test]
fn no_max_streams_is_sent_after_goaway() {
    let server = Config::builder().max_incoming_streams(2).build().unwrap();
    let mut pair = Pair::new(Config::default(), server);
    pair.connect();
    let a = pair.client.open(pair.now).unwrap().unwrap();
    let _b = pair.client.open(pair.now).unwrap().unwrap();
    pair.drive();
    let sa = pair.server.accept().unwrap();
    let _sb = pair.server.accept().unwrap();
    pair.server.close(pair.now, ErrorCode::NO_ERROR, b"");
    pair.drive();
    let updates = count_frames(&mut pair.to_client, |f| matches!(f, Frame::MaxStreams(_)));
    // Stream a ends on both sides; b keeps the connection draining.
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
    assert_eq!(pair.server.stats().open_streams, 1);
    assert_eq!(updates.get(), 0);
}

#[test]
fn pending_opens_stop_probing_after_goaway() {
    let server = Config::builder().max_incoming_streams(1).build().unwrap();
    let mut pair = Pair::new(Config::default(), server);
    pair.connect();
    let _a = pair.client.open(pair.now).unwrap().unwrap();
    assert_eq!(pair.client.open(pair.now), Ok(None));
    pair.drive();
    pair.server.close(pair.now, ErrorCode::NO_ERROR, b"");
    pair.drive();
    assert_eq!(pair.client.open(pair.now), Err(OpenError::GoingAway));
    pair.run_for(Duration::from_secs(3));
    assert_eq!(pair.client.stats().probes_sent, 0);
}

#[test]
fn an_error_goaway_fails_streams_above_last_stream_id_as_refused() {
    let mut pair = Pair::default_pair();
    pair.connect();
    let a = pair.client.open(pair.now).unwrap().unwrap();
    let b = pair.client.open(pair.now).unwrap().unwrap();
    pair.drive();
    inject(
        &mut pair.to_client,
        frames::goaway(a.get(), ErrorCode::INTERNAL_ERROR),
    );
    pair.drive();
    assert_eq!(
        pair.client.read(pair.now, b, 10),
        Err(StreamError::Reset {
            code: ErrorCode::REFUSED_STREAM,
            initiator: Initiator::Remote
        })
    );
    assert!(matches!(
        pair.client.read(pair.now, a, 10),
        Err(StreamError::ConnectionLost(ConnectionError::ClosedByPeer {
            code: ErrorCode::INTERNAL_ERROR,
            ..
        }))
    ));
}

#[test]
fn streams_refused_by_goaway_stop_probing() {
    let mut pair = Pair::with_small_server_windows();
    let a = pair.client.open(pair.now).unwrap().unwrap();
    let b = pair.client.open(pair.now).unwrap().unwrap();
    pair.client.write(pair.now, b, &[1u8; 2000]).unwrap();
    pair.drive();
    inject(
        &mut pair.to_client,
        frames::goaway(a.get(), ErrorCode::NO_ERROR),
    );
    pair.drive();
    assert!(matches!(
        pair.client.read(pair.now, b, 10),
        Err(StreamError::Reset {
            code: ErrorCode::REFUSED_STREAM,
            ..
        })
    ));
    pair.run_for(Duration::from_secs(3));
    assert_eq!(pair.client.stats().probes_sent, 0);
}

/// SPEC §13.2: a graceful GOAWAY waits for the first frame of every stream
/// opened before it, also of one whose reading was already stopped (its
/// writing goes on). Found by fuzz target `session`: the GOAWAY was held
/// only for streams with no reset at all, so the stopped stream's opening
/// DATA followed it.
#[test]
fn a_goaway_waits_for_a_stopped_streams_opening_data() {
    let mut pair = Pair::default_pair();
    pair.connect();
    let id = pair.client.open(pair.now).unwrap().unwrap();
    pair.client.stop(pair.now, id, ErrorCode::CANCEL);
    pair.client.write(pair.now, id, b"request").unwrap();
    pair.client.finish(pair.now, id).unwrap();
    pair.client.close(pair.now, ErrorCode::NO_ERROR, b"");
    let seen = std::rc::Rc::new(std::cell::RefCell::new(Vec::<&str>::new()));
    let log = seen.clone();
    pair.to_server.filter = Some(Box::new(move |f: &Frame| {
        log.borrow_mut().push(match f {
            Frame::Data(d) if !d.payload.is_empty() => "DATA",
            Frame::GoAway(_) => "GOAWAY",
            _ => "other",
        });
        true
    }));
    pair.drive();
    let order: Vec<&str> = seen
        .borrow()
        .iter()
        .copied()
        .filter(|k| *k != "other")
        .collect();
    assert_eq!(order, ["DATA", "GOAWAY"]);
    let sid = pair.server.accept().expect("the stream reached the server");
    assert_eq!(
        read_available(&mut pair.server, pair.now, sid),
        (b"request".to_vec(), true)
    );
}
