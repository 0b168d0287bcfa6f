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
    let data = pattern(1 << 20, 9);
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
    // 17 frames of 16 KiB = 272 KiB > 256 KiB stream window.
    let frames: Vec<Frame> = std::iter::once(settings())
        .chain((0..17).map(|_| data(1, 16 * 1024)))
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
