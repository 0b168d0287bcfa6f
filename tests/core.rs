//! Protocol behaviour of the sans-IO core, two endpoints in memory under
//! virtual time.

mod support;

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use creditmux::config::Config;
use creditmux::conn::{Connection, ReadOutcome, Side, TransmitBuf};
use creditmux::error::{ConnectionError, Initiator, OpenError, StreamError};
use creditmux::frame::*;
use support::pair::Pair;
use support::raw::Raw;

fn read_available(conn: &mut Connection, id: StreamId) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    loop {
        match conn.read(id, usize::MAX) {
            Ok(ReadOutcome::Data(b)) => out.extend_from_slice(&b),
            Ok(ReadOutcome::Finished) => return (out, true),
            Ok(ReadOutcome::Blocked) => return (out, false),
            Err(e) => panic!("read failed: {e}"),
        }
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

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
        written += pair.client.write(id, &request[written..]).unwrap();
        if written == request.len() {
            pair.client.finish(id).unwrap();
        }
        pair.step();
        if server_id.is_none() {
            server_id = pair.server.accept();
        }
        if let Some(sid) = server_id {
            received.extend(read_available(&mut pair.server, sid).0);
        }
    }
    pair.drive();
    let sid = server_id.unwrap();
    let (rest, fin) = read_available(&mut pair.server, sid);
    received.extend(rest);
    assert!(fin);
    assert_eq!(received, request);
    // And back.
    pair.server.write(sid, b"reply").unwrap();
    pair.server.finish(sid).unwrap();
    pair.drive();
    assert_eq!(
        read_available(&mut pair.client, id),
        (b"reply".to_vec(), true)
    );
    pair.client.release(id);
    pair.server.release(sid);
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
    pair.client.finish(a).unwrap();
    pair.server.finish(sa).unwrap();
    pair.drive();
    assert_eq!(read_available(&mut pair.client, a), (vec![], true));
    assert_eq!(read_available(&mut pair.server, sa), (vec![], true));
    pair.client.release(a);
    pair.server.release(sa);
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
    pair.client.write(slow, &big).unwrap();
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
                .write(fast, &big[..(total - sent).min(big.len())])
                .unwrap();
        }
        pair.step();
        got += read_available(&mut pair.server, s_fast).0.len();
        let buffered = pair.server.stream_stats(s_slow).unwrap().recv_buffered;
        assert!(
            buffered <= 16 * 1024,
            "slow stream buffered {buffered} bytes beyond its window"
        );
    }
    assert_eq!(got, total);
}

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
            let n = pair.client.write(id, &data[written..]).unwrap();
            written += n;
            pair.drive();
            if n == 0 || written == data.len() {
                break;
            }
        }
        sid = sid.or_else(|| pair.server.accept());
        if let Some(s) = sid {
            received.extend(read_available(&mut pair.server, s).0);
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
    pair.client.ping();
    pair.step();
    pair.now += Duration::from_millis(5);
    pair.drive();
    assert_eq!(pair.client.pings_completed(), 1);
    assert_eq!(pair.client.rtt(), Some(Duration::from_millis(5)));
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
        pair.client.write(id, &vec![1u8; 60_000]).unwrap();
        pair.drive();
        let sid = pair.server.accept().unwrap();
        if round % 2 == 0 {
            pair.client.reset(id, ErrorCode::CANCEL);
        } else {
            pair.server.reset(sid, ErrorCode::CANCEL);
        }
        pair.client.release(id);
        pair.server.release(sid);
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
        written += pair.client.write(id, &vec![2u8; total - written]).unwrap();
        pair.drive();
        sid = sid.or_else(|| pair.server.accept());
        got += read_available(&mut pair.server, sid.unwrap()).0.len();
    }
    assert_eq!(got, total);
}

#[test]
fn a_reset_fails_both_sides_with_who_did_it() {
    let mut pair = Pair::default_pair();
    pair.connect();
    let id = pair.client.open(pair.now).unwrap().unwrap();
    pair.client.write(id, b"x").unwrap();
    pair.drive();
    let sid = pair.server.accept().unwrap();
    pair.server.reset(sid, ErrorCode(0x77));
    pair.drive();
    let err = pair.client.read(id, 10).unwrap_err();
    assert_eq!(
        err,
        StreamError::Reset {
            code: ErrorCode(0x77),
            initiator: Initiator::Remote
        }
    );
    assert_eq!(
        pair.server.write(sid, b"y").unwrap_err(),
        StreamError::Reset {
            code: ErrorCode(0x77),
            initiator: Initiator::Local
        }
    );
}

/// Raw frames from a hand-made client against a real server core.
fn server_after(frames: &[Frame]) -> Connection {
    let now = std::time::Instant::now();
    let mut server = Connection::new(Side::Server, Config::default(), now);
    let mut input = BytesMut::from(&encode_preface()[..]);
    for f in frames {
        f.encode(&mut input);
    }
    server.handle_input(now, &mut input);
    server
}

fn settings() -> Frame {
    Frame::Settings(Settings::default())
}

fn data(stream: u32, len: usize) -> Frame {
    Frame::Data(Data {
        stream: StreamId::new(stream).unwrap(),
        fin: false,
        payload: Bytes::from(vec![0u8; len]),
    })
}

fn violation_code(conn: &Connection) -> Option<ErrorCode> {
    match conn.error() {
        Some(ConnectionError::ProtocolViolation { code, .. }) => Some(*code),
        Some(ConnectionError::Frame(e)) => Some(e.code()),
        other => panic!("expected a violation, got {other:?}"),
    }
}

#[test]
fn protocol_violations_end_the_connection_with_the_specified_code() {
    let ping = Frame::Ping(Ping {
        ack: false,
        payload: [0; 8],
    });
    let cases: Vec<(Vec<Frame>, ErrorCode)> = vec![
        (vec![ping.clone()], ErrorCode::PROTOCOL_ERROR),
        (vec![settings(), settings()], ErrorCode::PROTOCOL_ERROR),
        (vec![settings(), data(2, 1)], ErrorCode::PROTOCOL_ERROR),
        (
            vec![settings(), data(1, 256 * 1024 + 1)],
            ErrorCode::FRAME_SIZE_ERROR,
        ),
        (
            vec![settings(), data(201, 1)],
            ErrorCode::STREAM_LIMIT_ERROR,
        ),
        (
            vec![
                settings(),
                Frame::Reset(Reset {
                    stream: StreamId::new(5).unwrap(),
                    code: ErrorCode::CANCEL,
                }),
            ],
            ErrorCode::PROTOCOL_ERROR,
        ),
        (
            vec![
                settings(),
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
            std::iter::once(settings())
                .chain(std::iter::repeat_n(ping, 101))
                .collect(),
            ErrorCode::ENHANCE_YOUR_CALM,
        ),
    ];
    for (frames, code) in cases {
        let server = server_after(&frames);
        assert_eq!(violation_code(&server), Some(code), "frames {frames:?}");
        assert!(server.is_finished());
    }
}

#[test]
fn data_beyond_stream_credit_is_a_flow_control_error() {
    // One 16 KiB frame more than the default stream window holds.
    let frames_in_window = Config::default().stream_window() as usize / (16 * 1024);
    let frames: Vec<Frame> = std::iter::once(settings())
        .chain((0..=frames_in_window).map(|_| data(1, 16 * 1024)))
        .collect();
    let server = server_after(&frames);
    assert_eq!(violation_code(&server), Some(ErrorCode::FLOW_CONTROL_ERROR));
}

#[test]
fn a_violation_sends_goaway_with_the_code() {
    let mut server = server_after(&[settings(), data(2, 1)]);
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
        pair.client.write(c, &vec![1u8; 64 * 1024]).unwrap();
        client_streams.push(c);
    }
    pair.drive();
    while let Some(s) = pair.server.accept() {
        pair.server.write(s, &vec![2u8; 64 * 1024]).unwrap();
        server_streams.push(s);
    }
    let s4 = pair.server.open(pair.now).unwrap().unwrap();
    pair.server.write(s4, &vec![3u8; 64 * 1024]).unwrap();
    pair.drive();
    // Nobody reads. PING still round-trips.
    pair.client.ping();
    pair.drive();
    assert_eq!(pair.client.pings_completed(), 1);
    // RESET still gets through and returns credit.
    pair.client.reset(client_streams[0], ErrorCode::CANCEL);
    pair.drive();
    assert!(matches!(
        pair.server.read(server_streams[0], 10),
        Err(StreamError::Reset { .. })
    ));
    // A new stream still opens and transfers.
    let fresh = pair.client.open(pair.now).unwrap().unwrap();
    pair.client.write(fresh, b"still alive").unwrap();
    pair.client.finish(fresh).unwrap();
    pair.drive();
    let mut accepted = None;
    while let Some(s) = pair.server.accept() {
        accepted = Some(s);
    }
    let sfresh = accepted.expect("the new stream arrived");
    assert_eq!(
        read_available(&mut pair.server, sfresh),
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
    pair.client.write(id, b"request").unwrap();
    pair.drive();
    let sid = pair.server.accept().unwrap();
    pair.server.close(pair.now, ErrorCode::NO_ERROR, b"");
    pair.drive();
    assert_eq!(pair.client.open(pair.now), Err(OpenError::GoingAway));
    // The stream in flight completes.
    assert_eq!(read_available(&mut pair.server, sid).0, b"request");
    pair.server.write(sid, b"response").unwrap();
    pair.server.finish(sid).unwrap();
    pair.client.finish(id).unwrap();
    pair.drive();
    assert_eq!(
        read_available(&mut pair.client, id),
        (b"response".to_vec(), true)
    );
    assert_eq!(read_available(&mut pair.server, sid), (vec![], true));
    pair.client.release(id);
    pair.server.release(sid);
    pair.drive();
    assert!(pair.server.is_finished());
    assert!(pair.client.is_finished());
}

// ----- conformance to SPEC.md: raw frames against one core ---------------

use std::cell::Cell;
use std::rc::Rc;
use std::time::Instant;

use creditmux::config::{ConfigError, FloodLimits};

fn id(n: u32) -> StreamId {
    StreamId::new(n).unwrap()
}

fn data_frame(stream: u32, payload: &[u8], fin: bool) -> Frame {
    Frame::Data(Data {
        stream: id(stream),
        fin,
        payload: Bytes::copy_from_slice(payload),
    })
}

fn reset_frame(stream: u32, code: ErrorCode) -> Frame {
    Frame::Reset(Reset {
        stream: id(stream),
        code,
    })
}

fn goaway_frame(last: u32, code: ErrorCode) -> Frame {
    Frame::GoAway(GoAway {
        last_stream: StreamId::new(last).unwrap_or(StreamId::CONNECTION),
        code,
        debug: Bytes::new(),
    })
}

fn goaways(frames: &[Frame]) -> Vec<(u32, ErrorCode)> {
    frames
        .iter()
        .filter_map(|f| match f {
            Frame::GoAway(g) => Some((g.last_stream.get(), g.code)),
            _ => None,
        })
        .collect()
}

/// A server with stream 1 opened by the client, reset by it and released
/// by the server's application: a closed and forgotten id.
fn server_with_forgotten_stream(config: Config) -> Raw {
    let mut raw = Raw::server(config, &[settings(), data(1, 1)]);
    let sid = raw.conn.accept().unwrap();
    raw.feed(&[reset_frame(1, ErrorCode::CANCEL)]);
    raw.conn.release(sid);
    assert_eq!(raw.conn.stats().open_streams, 0);
    raw
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
    let mut raw = Raw::server(Config::default(), &[settings()]);
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
    let mut raw = Raw::server(Config::default(), &[settings(), data(1, 1)]);
    let _sid = raw.conn.accept().unwrap();
    let mut sent = Vec::new();
    for _ in 0..10 {
        raw.conn.close(raw.now, ErrorCode::NO_ERROR, b"");
        sent.extend(raw.sent());
    }
    // Stream 3 arrives after the GOAWAY: refused, not processed.
    raw.feed(&[data(3, 1)]);
    sent.extend(raw.sent());
    raw.conn.close(raw.now, ErrorCode::INTERNAL_ERROR, b"");
    sent.extend(raw.sent());
    assert_eq!(
        goaways(&sent),
        [(1, ErrorCode::NO_ERROR), (1, ErrorCode::INTERNAL_ERROR)]
    );
}

#[test]
fn more_than_ten_goaways_are_a_flood() {
    // Stream 1 stays open, so the graceful GOAWAYs do not end the connection.
    let mut frames = vec![settings(), data(1, 1)];
    frames.extend((0..10).map(|_| goaway_frame(0, ErrorCode::NO_ERROR)));
    let mut raw = Raw::server(Config::default(), &frames);
    assert!(raw.conn.error().is_none(), "{:?}", raw.conn.error());
    raw.feed(&[goaway_frame(0, ErrorCode::NO_ERROR)]);
    assert_eq!(
        violation_code(&raw.conn),
        Some(ErrorCode::ENHANCE_YOUR_CALM)
    );
}

#[test]
fn unmatched_ping_acks_count_toward_the_ping_limit() {
    let ack = Frame::Ping(Ping {
        ack: true,
        payload: [9; 8],
    });
    let mut frames = vec![settings()];
    frames.extend(std::iter::repeat_n(ack.clone(), 100));
    let mut raw = Raw::server(Config::default(), &frames);
    assert!(raw.conn.error().is_none());
    raw.feed(&[ack]);
    assert_eq!(
        violation_code(&raw.conn),
        Some(ErrorCode::ENHANCE_YOUR_CALM)
    );
}

#[test]
fn useless_window_updates_while_blocked_are_counted_beyond_one_answer_per_probe() {
    // The client grants 1024 bytes of connection credit and a large stream
    // window, so the server blocks on the connection credit.
    let client_settings = Frame::Settings(Settings {
        ack: false,
        values: SettingsValues {
            initial_stream_window: Some(1 << 20),
            connection_window: Some(1024),
            ..SettingsValues::default()
        },
    });
    let mut raw = Raw::server(
        Config::default(),
        &[client_settings, data_frame(1, b"", false)],
    );
    let sid = raw.conn.accept().unwrap();
    raw.conn.write(sid, &[5u8; 2000]).unwrap();
    raw.sent();
    raw.run_for(Duration::from_millis(1500));
    let probes: Vec<Frame> = raw
        .sent()
        .into_iter()
        .filter(|f| matches!(f, Frame::Blocked(_)))
        .collect();
    assert_eq!(
        probes,
        [Frame::Blocked(Blocked {
            on: BlockedOn::Connection,
            limit: 1024
        })]
    );
    let same_limit = Frame::WindowUpdate(WindowUpdate {
        stream: StreamId::CONNECTION,
        limit: 1024,
    });
    // One answer to the probe, then 1000 more: exactly the limit.
    raw.feed(&vec![same_limit.clone(); 1001]);
    assert!(raw.conn.error().is_none(), "{:?}", raw.conn.error());
    raw.feed(&[same_limit]);
    assert_eq!(
        violation_code(&raw.conn),
        Some(ErrorCode::ENHANCE_YOUR_CALM)
    );
}

#[test]
fn non_empty_data_on_closed_streams_is_not_a_flood_but_empty_data_is() {
    // 1500 DATA frames with a payload on a forgotten id: bounded by credit.
    let mut raw = server_with_forgotten_stream(Config::default());
    raw.feed(&vec![data(1, 1); 1500]);
    assert!(raw.conn.error().is_none(), "{:?}", raw.conn.error());
    // Empty DATA without FIN does nothing, wherever it lands.
    raw.feed(&vec![data(1, 0); 101]);
    assert_eq!(
        violation_code(&raw.conn),
        Some(ErrorCode::ENHANCE_YOUR_CALM)
    );

    // On a stream the peer reset but the application still holds.
    let mut raw = Raw::server(Config::default(), &[settings(), data(1, 1)]);
    let _sid = raw.conn.accept().unwrap();
    raw.feed(&[reset_frame(1, ErrorCode::CANCEL)]);
    raw.feed(&vec![data(1, 0); 100]);
    assert!(raw.conn.error().is_none(), "{:?}", raw.conn.error());
    raw.feed(&[data(1, 0)]);
    assert_eq!(
        violation_code(&raw.conn),
        Some(ErrorCode::ENHANCE_YOUR_CALM)
    );
}

#[test]
fn blocked_and_reset_on_closed_streams_count_toward_the_stray_limit() {
    // Raised BLOCKED and RESET limits leave the closed-id limit to decide.
    let config = Config::builder()
        .flood(FloodLimits {
            blocked: 100_000,
            resets: 100_000,
            ..FloodLimits::default()
        })
        .build()
        .unwrap();
    let blocked = Frame::Blocked(Blocked {
        on: BlockedOn::Stream(id(1)),
        limit: 0,
    });
    let reset = reset_frame(1, ErrorCode::CANCEL);
    for frame in [blocked, reset] {
        let mut raw = server_with_forgotten_stream(config.clone());
        // The RESET that closed stream 1 came before the forgetting.
        raw.feed(&vec![frame.clone(); 1000]);
        assert!(raw.conn.error().is_none(), "{frame:?}");
        raw.feed(std::slice::from_ref(&frame));
        assert_eq!(
            violation_code(&raw.conn),
            Some(ErrorCode::ENHANCE_YOUR_CALM),
            "{frame:?}"
        );
    }
}

#[test]
fn no_stream_window_update_is_sent_after_the_peers_fin() {
    let mut frames = vec![settings()];
    frames.extend((0..9).map(|_| data(1, 16 * 1024)));
    let mut raw = Raw::server(Config::default(), &frames);
    let sid = raw.conn.accept().unwrap();
    // Reading more than half the stream window makes an update due...
    assert_eq!(read_available(&mut raw.conn, sid).0.len(), 9 * 16 * 1024);
    // ...but the FIN arrives before it is written.
    raw.feed(&[data_frame(1, b"", true)]);
    let stream_updates: Vec<Frame> = raw
        .sent()
        .into_iter()
        .filter(|f| matches!(f, Frame::WindowUpdate(w) if w.stream == sid))
        .collect();
    assert_eq!(stream_updates, []);
}

#[test]
fn flood_limits_below_the_spec_minimums_are_refused() {
    let err = Config::builder()
        .flood(FloodLimits {
            pings: 10,
            ..FloodLimits::default()
        })
        .build()
        .unwrap_err();
    assert!(matches!(
        err,
        ConfigError::OutOfRange {
            name: "flood.pings",
            min: 100,
            ..
        }
    ));
    let raised = FloodLimits {
        stray_frames: 5000,
        ..FloodLimits::default()
    };
    assert!(Config::builder().flood(raised).build().is_ok());
}

// ----- conformance to SPEC.md: two cores --------------------------------

/// Counts the frames matching `which` that go through `wire` from now on.
fn count_frames(wire: &mut support::pair::Wire, which: fn(&Frame) -> bool) -> Rc<Cell<usize>> {
    let count = Rc::new(Cell::new(0));
    let seen = count.clone();
    wire.filter = Some(Box::new(move |f| {
        if which(f) {
            seen.set(seen.get() + 1);
        }
        true
    }));
    count
}

fn inject(wire: &mut support::pair::Wire, frame: Frame) {
    frame.encode(&mut wire.inflight);
}

#[test]
fn pings_stay_within_half_the_peers_flood_limit() {
    let mut pair = Pair::default_pair();
    pair.connect();
    // A fast round trip: a new PING as soon as the last one is answered.
    for _ in 0..200 {
        pair.client.ping();
        pair.drive();
    }
    assert!(pair.server.error().is_none(), "{:?}", pair.server.error());
    assert!(pair.client.error().is_none(), "{:?}", pair.client.error());
    assert_eq!(pair.client.pings_completed(), 50);
    assert!(pair.client.ping_in_flight(), "the 51st PING waits");
    pair.run_for(Duration::from_secs(1));
    assert_eq!(pair.client.pings_completed(), 51);
}

#[test]
fn blocked_probes_stay_within_half_the_peers_flood_limit() {
    let server = Config::builder()
        .stream_window(1024)
        .connection_window(1 << 20)
        .max_incoming_streams(400)
        .accept_backlog(512)
        .build()
        .unwrap();
    let mut pair = Pair::new(Config::default(), server);
    pair.connect();
    let probes = count_frames(&mut pair.to_server, |f| matches!(f, Frame::Blocked(_)));
    // 300 streams block on stream credit at once; the server never reads.
    for _ in 0..300 {
        let id = pair.client.open(pair.now).unwrap().unwrap();
        pair.client.write(id, &[1u8; 2000]).unwrap();
    }
    pair.drive();
    let end = pair.now + Duration::from_secs(30);
    let mut times = Vec::new();
    loop {
        pair.drive();
        while times.len() < probes.get() {
            times.push(pair.now);
        }
        if !pair.advance(end) {
            break;
        }
    }
    assert!(pair.server.error().is_none(), "{:?}", pair.server.error());
    assert!(pair.client.error().is_none(), "{:?}", pair.client.error());
    assert!(
        times.len() >= 300,
        "every stream was probed: {}",
        times.len()
    );
    for w in times.windows(51) {
        assert!(
            w[50] - w[0] >= Duration::from_secs(1),
            "51 BLOCKED within 1 s"
        );
    }
}

#[test]
fn half_close_timeouts_do_not_count_toward_the_own_reset_limit() {
    let server = Config::builder()
        .max_incoming_streams(300)
        .accept_backlog(512)
        .flood(FloodLimits {
            resets: 1000,
            ..FloodLimits::default()
        })
        .build()
        .unwrap();
    let mut pair = Pair::new(Config::default(), server);
    pair.connect();
    let ids: Vec<StreamId> = (0..250)
        .map(|_| {
            let id = pair.client.open(pair.now).unwrap().unwrap();
            pair.client.finish(id).unwrap();
            id
        })
        .collect();
    pair.drive();
    // The server never answers on them: all 250 time out together.
    pair.run_for(Duration::from_secs(61));
    assert!(pair.client.error().is_none(), "{:?}", pair.client.error());
    assert!(pair.server.error().is_none(), "{:?}", pair.server.error());
    for id in ids {
        assert_eq!(
            pair.client.read(id, 10),
            Err(StreamError::Reset {
                code: ErrorCode::STREAM_TIMEOUT,
                initiator: Initiator::Local
            })
        );
    }
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
    pair.client.finish(id).unwrap();
    pair.drive();
    let sid = pair.server.accept().unwrap();
    // The client never reads: the server blocks and only sends BLOCKED.
    pair.server.write(sid, &[7u8; 32 * 1024]).unwrap();
    pair.run_for(Duration::from_secs(120));
    assert!(pair.server.stats().probes_sent >= 5);
    assert!(matches!(pair.client.read(id, 1), Ok(ReadOutcome::Data(_))));
    assert!(pair.server.write(sid, b"x").is_ok());
}

#[test]
fn data_for_a_stream_nobody_reads_keeps_it_half_closed_alive() {
    let mut pair = Pair::default_pair();
    pair.connect();
    let id = pair.client.open(pair.now).unwrap().unwrap();
    pair.client.finish(id).unwrap();
    pair.drive();
    let sid = pair.server.accept().unwrap();
    pair.client.stop_reading(id);
    for _ in 0..4 {
        pair.server.write(sid, b"tick").unwrap();
        pair.run_for(Duration::from_secs(30));
    }
    assert!(pair.server.write(sid, b"still open").is_ok());
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
    pair.client.write(id, &[1u8; 32 * 1024]).unwrap();
    pair.drive();
    let sid = pair.server.accept().unwrap();
    // The server finishes its side and never reads: the client stays
    // blocked on stream credit in half-closed(remote).
    pair.server.finish(sid).unwrap();
    pair.drive();
    assert_eq!(read_available(&mut pair.client, id), (vec![], true));
    pair.run_for(Duration::from_secs(3));
    assert!(pair.client.stream_stats(id).unwrap().probes_sent >= 1);
}

#[test]
fn a_reset_arriving_after_both_fins_is_ignored_and_data_stays_readable() {
    let mut pair = Pair::default_pair();
    pair.connect();
    let id = pair.client.open(pair.now).unwrap().unwrap();
    pair.client.write(id, b"hello").unwrap();
    pair.client.finish(id).unwrap();
    pair.drive();
    let sid = pair.server.accept().unwrap();
    pair.server.write(sid, b"bye").unwrap();
    pair.server.finish(sid).unwrap();
    // The client resets before the server's FIN reaches it; the RESET
    // reaches a server that has exchanged both FINs: a closed stream.
    pair.client.reset(id, ErrorCode::CANCEL);
    pair.drive();
    assert_eq!(
        read_available(&mut pair.server, sid),
        (b"hello".to_vec(), true)
    );
}

#[test]
fn data_after_both_fins_is_dropped_without_a_reset() {
    let mut pair = Pair::default_pair();
    pair.connect();
    let id = pair.client.open(pair.now).unwrap().unwrap();
    pair.client.write(id, b"hello").unwrap();
    pair.client.finish(id).unwrap();
    pair.drive();
    let sid = pair.server.accept().unwrap();
    pair.server.finish(sid).unwrap();
    pair.drive();
    let resets = count_frames(&mut pair.to_client, |f| matches!(f, Frame::Reset(_)));
    inject(&mut pair.to_server, data_frame(id.get(), b"again", false));
    pair.drive();
    assert_eq!(resets.get(), 0);
    assert!(pair.server.error().is_none());
    assert_eq!(
        read_available(&mut pair.server, sid),
        (b"hello".to_vec(), true)
    );
}

#[test]
fn resetting_a_closed_stream_sends_no_reset() {
    let mut pair = Pair::default_pair();
    pair.connect();
    let id = pair.client.open(pair.now).unwrap().unwrap();
    pair.client.write(id, b"hello").unwrap();
    pair.client.finish(id).unwrap();
    pair.drive();
    let sid = pair.server.accept().unwrap();
    pair.server.write(sid, b"bye").unwrap();
    pair.server.finish(sid).unwrap();
    pair.drive();
    // Both FINs exchanged; the client has not read "bye" yet.
    let resets = count_frames(&mut pair.to_server, |f| matches!(f, Frame::Reset(_)));
    pair.client.reset(id, ErrorCode::CANCEL);
    pair.drive();
    assert_eq!(resets.get(), 0);
    assert_eq!(
        pair.client.read(id, 10),
        Err(StreamError::Reset {
            code: ErrorCode::CANCEL,
            initiator: Initiator::Local
        })
    );
    assert_eq!(
        read_available(&mut pair.server, sid),
        (b"hello".to_vec(), true)
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
    pair.client.finish(a).unwrap();
    pair.server.finish(sa).unwrap();
    pair.drive();
    assert_eq!(read_available(&mut pair.client, a), (vec![], true));
    assert_eq!(read_available(&mut pair.server, sa), (vec![], true));
    pair.client.release(a);
    pair.server.release(sa);
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
        goaway_frame(a.get(), ErrorCode::INTERNAL_ERROR),
    );
    pair.drive();
    assert_eq!(
        pair.client.read(b, 10),
        Err(StreamError::Reset {
            code: ErrorCode::REFUSED_STREAM,
            initiator: Initiator::Remote
        })
    );
    assert!(matches!(
        pair.client.read(a, 10),
        Err(StreamError::ConnectionLost(ConnectionError::ClosedByPeer {
            code: ErrorCode::INTERNAL_ERROR,
            ..
        }))
    ));
}

#[test]
fn streams_refused_by_goaway_stop_probing() {
    let server = Config::builder()
        .stream_window(1024)
        .connection_window(4096)
        .build()
        .unwrap();
    let mut pair = Pair::new(Config::default(), server);
    pair.connect();
    let a = pair.client.open(pair.now).unwrap().unwrap();
    let b = pair.client.open(pair.now).unwrap().unwrap();
    pair.client.write(b, &[1u8; 2000]).unwrap();
    pair.drive();
    inject(
        &mut pair.to_client,
        goaway_frame(a.get(), ErrorCode::NO_ERROR),
    );
    pair.drive();
    assert!(matches!(
        pair.client.read(b, 10),
        Err(StreamError::Reset {
            code: ErrorCode::REFUSED_STREAM,
            ..
        })
    ));
    pair.run_for(Duration::from_secs(3));
    assert_eq!(pair.client.stats().probes_sent, 0);
}

#[test]
fn a_stream_waiting_for_connection_credit_probes_the_connection() {
    let server = Config::builder()
        .stream_window(1024)
        .connection_window(4096)
        .build()
        .unwrap();
    let mut pair = Pair::new(Config::default(), server);
    pair.connect();
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
        pair.client.write(id, &[1u8; 1024]).unwrap();
    }
    pair.drive();
    pair.run_for(Duration::from_millis(1500));
    assert_eq!(probes.get(), 1);
}

#[test]
fn the_connection_probe_stops_when_no_stream_waits_for_connection_credit() {
    let server = Config::builder()
        .stream_window(1024)
        .connection_window(4096)
        .build()
        .unwrap();
    let mut pair = Pair::new(Config::default(), server);
    pair.connect();
    let mut last = None;
    for _ in 0..5 {
        let id = pair.client.open(pair.now).unwrap().unwrap();
        pair.client.write(id, &[1u8; 1024]).unwrap();
        last = Some(id);
    }
    pair.drive();
    pair.client.reset(last.unwrap(), ErrorCode::CANCEL);
    pair.drive();
    pair.run_for(Duration::from_secs(3));
    assert_eq!(pair.client.stats().probes_sent, 0);
}

// ----- regressions found by the `session` fuzz target ------------------------

/// A server core past the handshake with a hand-made client (default
/// settings), its own preface and SETTINGS already written.
fn fuzz_server(config: Config) -> (Connection, std::time::Instant) {
    let now = std::time::Instant::now();
    let mut server = Connection::new(Side::Server, config, now);
    let mut buf = TransmitBuf::new();
    server.poll_transmit(now, &mut buf, 1 << 20);
    let mut input = BytesMut::from(&encode_preface()[..]);
    settings().encode(&mut input);
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
    data(1, 1024).encode(&mut input);
    server.handle_input(now, &mut input);
    let sid = server.accept().unwrap();
    drain_transmit(&mut server, now);
    server.ping();
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
        server.read(sid, usize::MAX),
        Ok(ReadOutcome::Data(_))
    ));
    server.release(sid);
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
    settings().encode(&mut wire);
    data(1, 100).encode(&mut wire);
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
    let mut server = server_after(&[settings(), data(1, 10)]);
    let id = server.accept().expect("stream 1");
    assert_eq!(read_available(&mut server, id).0.len(), 10);
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
    let (first, finished) = read_available(&mut server, id);
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
    assert!(matches!(server.read(id, 1 << 20), Ok(ReadOutcome::Blocked)));
    assert!(server.commit_direct_payload(now, id, len - 21_000));
    assert!(matches!(
        server.read(id, 1 << 20),
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
        data(1, len).encode(&mut input);
        server.handle_input(now, &mut input);
        rest -= read_available(&mut server, id).0.len();
    }
    assert!(server.error().is_none());
    // 5000 bytes announced where 1000 are left: refused on the header's
    // length, with only 10 bytes of the frame here.
    server.handle_input(now, &mut data_start(1, 5000, false, 10));
    assert_eq!(violation_code(&server), Some(ErrorCode::FLOW_CONTROL_ERROR));
    assert_eq!(read_available_or_error(&mut server, id), 0);
}

/// Bytes readable from `id` before the stream reports an error.
fn read_available_or_error(conn: &mut Connection, id: StreamId) -> usize {
    let mut n = 0;
    while let Ok(ReadOutcome::Data(b)) = conn.read(id, usize::MAX) {
        n += b.len();
    }
    n
}
