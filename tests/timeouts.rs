//! SPEC §12, timeouts: every byte is liveness, but a frame must complete
//! within the frame timeout (§12.2), so a peer cannot hold a connection
//! by trickling one frame forever. One real core, a hand-made peer,
//! virtual time.

mod support;

use std::time::Duration;

use bytes::BytesMut;
use creditmux::config::Config;
use creditmux::conn::invariants::InvariantChecker;
use creditmux::conn::{Connection, ReadOutcome, Side, TransmitBuf};
use creditmux::error::ConnectionError;
use creditmux::frame::*;
use support::conn::{pattern, read_available};
use support::frames;
use support::pair::{Pair, count_frames};
use support::raw::Raw;

/// DATA on stream 1 with a 4096-byte payload, encoded.
fn big_frame() -> Vec<u8> {
    let mut bytes = BytesMut::new();
    frames::data(1, &[7u8; 4096], false).encode(&mut bytes);
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

// ----- moved from core.rs ------------------------------------------------------

#[test]
fn withheld_window_updates_are_healed_by_probes_with_backoff() {
    let mut pair = Pair::default_pair();
    pair.connect();
    // From now on the server's WINDOW_UPDATEs are lost, except answers that
    // the filter lets through after the first few probes.
    let dropped_until_probe = std::rc::Rc::new(std::cell::Cell::new(0u32));
    let counter = dropped_until_probe.clone();
    pair.to_client.filter = Some(Box::new(move |frame| match frame {
        Frame::WindowUpdate(_) => {
            counter.set(counter.get() + 1);
            false
        }
        _ => true,
    }));
    let id = pair.client.open(pair.now).unwrap().unwrap();
    let data = pattern(4 * Config::default().stream_window() as usize, 9);
    let mut written = 0;
    let mut received = Vec::new();
    let mut sid = None;
    let start = pair.now;
    let mut probe_times = Vec::new();
    let mut last_probes = 0;
    for _ in 0..200 {
        // The writer keeps writing until its buffer is full.
        loop {
            let n = pair.client.write(pair.now, id, &data[written..]).unwrap();
            written += n;
            pair.drive();
            if n == 0 || written == data.len() {
                break;
            }
        }
        sid = sid.or_else(|| pair.server.accept());
        if let Some(s) = sid {
            received.extend(read_available(&mut pair.server, pair.now, s).0);
        }
        if received.len() == data.len() {
            break;
        }
        // Nothing moves until a probe fires; answers are withheld too, so
        // let every third answer through to let the transfer complete.
        if pair.client.stats().probes_sent > last_probes {
            last_probes = pair.client.stats().probes_sent;
            probe_times.push(pair.now - start);
        }
        if probe_times.len() >= 6 {
            pair.to_client.filter = None;
        }
        let limit = pair.now + Duration::from_secs(60);
        pair.advance(limit);
    }
    assert_eq!(
        received.len(),
        data.len(),
        "transfer completed through probes"
    );
    assert!(received == data, "bytes arrived intact and in order");
    assert!(pair.client.stats().probes_sent >= 6);
    assert!(pair.server.stats().probes_answered >= 6);
    // Backoff: 1, 2, 4, 8, 16, 16 s between probes (SPEC §10).
    let gaps: Vec<u64> = probe_times
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs())
        .collect();
    assert_eq!(
        &gaps[..4],
        &[2, 4, 8, 16],
        "gaps {gaps:?} (first probe at {:?})",
        probe_times[0]
    );
    assert_eq!(
        probe_times[0],
        Duration::from_secs(1),
        "probe times {probe_times:?}"
    );
}

#[test]
fn a_silent_peer_is_declared_dead_after_the_idle_timeout() {
    let now = std::time::Instant::now();
    let mut client = Connection::new(Side::Client, Config::default(), now);
    let mut server = Connection::new(Side::Server, Config::default(), now);
    let mut buf = TransmitBuf::new();
    server.poll_transmit(now, &mut buf, 1 << 20);
    let mut bytes = BytesMut::from(&buf.take_contiguous()[..]);
    client.handle_input(now, &mut bytes);
    client.poll_transmit(now, &mut buf, 1 << 20);
    // The server never answers again (not even the SETTINGS ack).
    let mut t = now;
    for _ in 0..100 {
        let Some(at) = client.poll_timeout() else {
            break;
        };
        t = at;
        client.handle_timeout(t);
        client.poll_transmit(t, &mut buf, 1 << 20);
        if client.is_finished() {
            break;
        }
    }
    assert_eq!(client.error(), Some(&ConnectionError::HandshakeTimeout));
    assert_eq!(t - now, Duration::from_secs(10));

    // Established, then silent: keepalive PING at 15 s, dead at 30 s.
    let mut pair = Pair::default_pair();
    pair.connect();
    let start = pair.now;
    pair.to_client.filter = Some(Box::new(|_| false));
    pair.run_for(Duration::from_secs(31));
    assert_eq!(pair.client.error(), Some(&ConnectionError::IdleTimeout));
    let _ = start;
}

#[test]
fn ping_measures_the_round_trip() {
    let mut pair = Pair::default_pair();
    pair.connect();
    pair.client.ping(pair.now);
    pair.step();
    pair.now += Duration::from_millis(5);
    pair.drive();
    assert_eq!(pair.client.pings_completed(), 1);
    assert_eq!(pair.client.rtt(), Some(Duration::from_millis(5)));
}

#[test]
fn a_peer_blocked_on_credit_keeps_a_half_closed_stream_alive() {
    let client = Config::builder()
        .stream_window(16 * 1024)
        .connection_window(64 * 1024)
        .build()
        .unwrap();
    let mut pair = Pair::new(client, Config::default());
    pair.connect();
    let id = pair.client.open(pair.now).unwrap().unwrap();
    pair.client.finish(pair.now, id).unwrap();
    pair.drive();
    let sid = pair.server.accept().unwrap();
    // The client never reads: the server blocks and only sends BLOCKED.
    pair.server.write(pair.now, sid, &[7u8; 32 * 1024]).unwrap();
    pair.run_for(Duration::from_secs(120));
    assert!(pair.server.stats().probes_sent >= 5);
    assert!(matches!(
        pair.client.read(pair.now, id, 1),
        Ok(ReadOutcome::Data(_))
    ));
    assert!(pair.server.write(pair.now, sid, b"x").is_ok());
}

#[test]
fn data_for_a_stream_nobody_reads_keeps_it_half_closed_alive() {
    let mut pair = Pair::default_pair();
    pair.connect();
    let id = pair.client.open(pair.now).unwrap().unwrap();
    pair.client.finish(pair.now, id).unwrap();
    pair.drive();
    let sid = pair.server.accept().unwrap();
    pair.client.stop_reading(pair.now, id);
    for _ in 0..4 {
        pair.server.write(pair.now, sid, b"tick").unwrap();
        pair.run_for(Duration::from_secs(30));
    }
    assert!(pair.server.write(pair.now, sid, b"still open").is_ok());
}

#[test]
fn a_blocked_stream_keeps_probing_after_the_peer_finishes() {
    let server = Config::builder()
        .stream_window(16 * 1024)
        .connection_window(64 * 1024)
        .build()
        .unwrap();
    let mut pair = Pair::new(Config::default(), server);
    pair.connect();
    let id = pair.client.open(pair.now).unwrap().unwrap();
    pair.client.write(pair.now, id, &[1u8; 32 * 1024]).unwrap();
    pair.drive();
    let sid = pair.server.accept().unwrap();
    // The server finishes its side and never reads: the client stays
    // blocked on stream credit in half-closed(remote).
    pair.server.finish(pair.now, sid).unwrap();
    pair.drive();
    assert_eq!(
        read_available(&mut pair.client, pair.now, id),
        (vec![], true)
    );
    pair.run_for(Duration::from_secs(3));
    assert!(pair.client.stream_stats(id).unwrap().probes_sent >= 1);
}

#[test]
fn a_stream_waiting_for_connection_credit_probes_the_connection() {
    let mut pair = Pair::with_small_server_windows();
    let probes = count_frames(&mut pair.to_server, |f| {
        matches!(
            f,
            Frame::Blocked(Blocked {
                on: BlockedOn::Connection,
                ..
            })
        )
    });
    // Four streams use all the connection credit; the fifth waits for it.
    for _ in 0..5 {
        let id = pair.client.open(pair.now).unwrap().unwrap();
        pair.client.write(pair.now, id, &[1u8; 1024]).unwrap();
    }
    pair.drive();
    pair.run_for(Duration::from_millis(1500));
    assert_eq!(probes.get(), 1);
}

/// Found by fuzz target `session` (`session-conn-stall-join`), a fault of
/// the invariant check, not of the engine: the connection is one scope
/// (SPEC §11.1), so a stream that joins a connection wait already in
/// backoff does not start a new blocked period, and the probe keeps its
/// backoff (§11.2). The check had timed each stream's wait on the
/// connection separately and demanded a probe within one interval of the
/// second stream's arrival.
#[test]
fn a_stream_joining_a_connection_wait_keeps_the_probes_backoff() {
    let mut pair = Pair::with_small_server_windows();
    let probes = count_frames(&mut pair.to_server, |f| {
        matches!(
            f,
            Frame::Blocked(Blocked {
                on: BlockedOn::Connection,
                ..
            })
        )
    });
    let mut checker = InvariantChecker::new();
    let mut ids = Vec::new();
    let mut run = |pair: &mut Pair, ids: &[StreamId], d: Duration| {
        let end = pair.now + d;
        while pair.now < end {
            pair.run_for(Duration::from_millis(100));
            checker
                .check(&pair.client, pair.now, ids.iter().copied(), true)
                .unwrap();
        }
    };
    // Four streams take the whole connection credit; a fifth, with stream
    // credit, waits for more: probes after 1, 3 and 7 s.
    for n in 0..5u8 {
        let id = pair.client.open(pair.now).unwrap().unwrap();
        pair.client.write(pair.now, id, &[n; 1024]).unwrap();
        ids.push(id);
        pair.drive();
    }
    run(&mut pair, &ids, Duration::from_millis(7500));
    assert_eq!(probes.get(), 3);
    // A second joins the wait: the next probe is still due at 15 s.
    let second = pair.client.open(pair.now).unwrap().unwrap();
    pair.client.write(pair.now, second, &[2u8; 1024]).unwrap();
    ids.push(second);
    pair.drive();
    run(&mut pair, &ids, Duration::from_secs(7));
    assert_eq!(probes.get(), 3, "a new blocked period began");
    run(&mut pair, &ids, Duration::from_secs(1));
    assert_eq!(probes.get(), 4);
}

#[test]
fn the_connection_probe_stops_when_no_stream_waits_for_connection_credit() {
    let mut pair = Pair::with_small_server_windows();
    let mut last = None;
    for _ in 0..5 {
        let id = pair.client.open(pair.now).unwrap().unwrap();
        pair.client.write(pair.now, id, &[1u8; 1024]).unwrap();
        last = Some(id);
    }
    pair.drive();
    pair.client
        .reset(pair.now, last.unwrap(), ErrorCode::CANCEL);
    pair.drive();
    pair.run_for(Duration::from_secs(3));
    assert_eq!(pair.client.stats().probes_sent, 0);
}

/// Every command takes the time: a write that finds the stream credit used
/// up after a quiet spell (no input, no timer due, so the core heard of no
/// time since) starts the probe interval at the write (SPEC §11.1), not at
/// the last time the core was told. Before commands took `now`, the probe
/// went out at once and the blocked time counted the quiet spell.
#[test]
fn a_write_after_a_quiet_spell_probes_one_interval_after_the_write() {
    let server = Config::builder()
        .stream_window(16 * 1024)
        .keepalive_interval(None)
        .build()
        .unwrap();
    let client = Config::builder().keepalive_interval(None).build().unwrap();
    let mut pair = Pair::new(client, server);
    pair.connect();
    let id = pair.client.open(pair.now).unwrap().unwrap();
    // Exactly the stream credit: it is used up with nothing left waiting.
    pair.client.write(pair.now, id, &[1u8; 16 * 1024]).unwrap();
    pair.drive();
    assert_eq!(pair.client.stream_stats(id).unwrap().send_window, 0);
    let quiet = Duration::from_secs(10);
    assert!(
        pair.client
            .poll_timeout()
            .is_none_or(|at| at > pair.now + quiet),
        "a timer would have told the core the time during the quiet spell"
    );
    let probes = count_frames(
        &mut pair.to_server,
        |f| matches!(f, Frame::Blocked(b) if matches!(b.on, BlockedOn::Stream(_))),
    );
    pair.now += quiet;
    pair.client.write(pair.now, id, b"one more").unwrap();
    pair.drive();
    assert_eq!(
        probes.get(),
        0,
        "BLOCKED went out before a probe interval passed"
    );
    let interval = pair.client.config().probe_interval();
    pair.run_for(interval / 2);
    assert_eq!(
        probes.get(),
        0,
        "BLOCKED went out before a probe interval passed"
    );
    let blocked = pair.client.stream_stats(id).unwrap().blocked_on_stream;
    assert!(
        blocked <= interval,
        "blocked for {blocked:?}, counting the quiet spell"
    );
    pair.run_for(interval);
    assert_eq!(
        probes.get(),
        1,
        "no BLOCKED one probe interval after the write"
    );
}

/// A server core whose client announced a connection window of `window`
/// bytes, past the handshake.
fn server_with_peer_connection_window(window: u32) -> Raw {
    let mut raw = Raw::server(
        Config::default(),
        &[Frame::Settings(Settings {
            ack: false,
            values: SettingsValues {
                connection_window: Some(window),
                ..Default::default()
            },
        })],
    );
    raw.sent();
    raw.feed(&[Frame::Settings(Settings {
        ack: true,
        values: SettingsValues::default(),
    })]);
    assert!(raw.conn.is_established());
    raw
}

/// Found by fuzz target `session` from an empty corpus
/// (`session/conn-wait-before-transmit`): a stream opened after the
/// connection credit ran out sits in the DATA queue for its opening frame,
/// and its data waits on the connection credit from the write (SPEC
/// §11.1). The core started the connection probe only when a transmit moved
/// the stream to the connection-credit queue, so with no transmit (a
/// transport that takes nothing) no BLOCKED was ever scheduled; and a
/// running probe, left by a stream reset since, was ended while the new
/// stream waited.
#[test]
fn data_waiting_on_connection_credit_before_its_first_transmit_is_probed() {
    for reset_the_first in [false, true] {
        let mut raw = server_with_peer_connection_window(1024);
        let mut checker = InvariantChecker::new();
        let first = raw.conn.open(raw.now).unwrap().unwrap();
        // The first stream takes the whole connection credit, or, if it
        // is reset later, waits on it with more to send.
        let len = if reset_the_first { 2048 } else { 1024 };
        raw.conn.write(raw.now, first, &pattern(len, 1)).unwrap();
        raw.sent();
        assert_eq!(raw.conn.stats().send_window, 0);
        let second = raw.conn.open(raw.now).unwrap().unwrap();
        if reset_the_first {
            raw.conn.reset(raw.now, first, ErrorCode::CANCEL);
        }
        raw.conn.write(raw.now, second, &pattern(100, 2)).unwrap();
        // Nothing is transmitted from here on.
        let ids = [first, second];
        let interval = raw.conn.config().probe_interval();
        let end = raw.now + interval * 3;
        while raw.now < end {
            raw.run_for(Duration::from_millis(100));
            checker
                .check(&raw.conn, raw.now, ids, true)
                .unwrap_or_else(|v| panic!("reset_the_first={reset_the_first}: {v}"));
        }
        assert!(raw.conn.stats().probes_sent >= 1);
        // The next transmit sends the BLOCKED the probe scheduled.
        let sent = raw.sent();
        assert!(
            sent.iter().any(|f| matches!(
                f,
                Frame::Blocked(Blocked {
                    on: BlockedOn::Connection,
                    ..
                })
            )),
            "no connection BLOCKED in {sent:?}"
        );
    }
}
