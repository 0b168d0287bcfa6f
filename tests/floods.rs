//! SPEC §16.1, flood limits: every event a peer can trigger without making
//! progress is counted, and a conformant sender stays within half of every
//! limit.

mod support;

use std::time::Duration;

use creditmux::config::{Config, ConfigError, FloodLimits};
use creditmux::error::{Initiator, StreamError};
use creditmux::frame::*;
use support::conn::violation_code;
use support::frames;
use support::pair::{Pair, count_frames};
use support::raw::Raw;

/// A server with stream 1 opened by the client, reset by it and released
/// by the server's application: a closed and forgotten id.
fn server_with_forgotten_stream(config: Config) -> Raw {
    let mut raw = Raw::server(config, &[frames::settings(), frames::data_len(1, 1)]);
    let sid = raw.conn.accept().unwrap();
    raw.feed(&[frames::reset(1, ErrorCode::CANCEL)]);
    raw.conn.release(raw.now, sid);
    assert_eq!(raw.conn.stats().open_streams, 0);
    raw
}

#[test]
fn more_than_ten_goaways_are_a_flood() {
    // Stream 1 stays open, so the graceful GOAWAYs do not end the connection.
    let mut frames = vec![frames::settings(), frames::data_len(1, 1)];
    frames.extend((0..10).map(|_| frames::goaway(0, ErrorCode::NO_ERROR)));
    let mut raw = Raw::server(Config::default(), &frames);
    assert!(raw.conn.error().is_none(), "{:?}", raw.conn.error());
    raw.feed(&[frames::goaway(0, ErrorCode::NO_ERROR)]);
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
    let mut frames = vec![frames::settings()];
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
        &[client_settings, frames::data(1, b"", false)],
    );
    let sid = raw.conn.accept().unwrap();
    raw.conn.write(raw.now, sid, &[5u8; 2000]).unwrap();
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
    raw.feed(&vec![frames::data_len(1, 1); 1500]);
    assert!(raw.conn.error().is_none(), "{:?}", raw.conn.error());
    // Empty DATA without FIN does nothing, wherever it lands.
    raw.feed(&vec![frames::data_len(1, 0); 101]);
    assert_eq!(
        violation_code(&raw.conn),
        Some(ErrorCode::ENHANCE_YOUR_CALM)
    );

    // On a stream the peer reset but the application still holds.
    let mut raw = Raw::server(
        Config::default(),
        &[frames::settings(), frames::data_len(1, 1)],
    );
    let _sid = raw.conn.accept().unwrap();
    raw.feed(&[frames::reset(1, ErrorCode::CANCEL)]);
    raw.feed(&vec![frames::data_len(1, 0); 100]);
    assert!(raw.conn.error().is_none(), "{:?}", raw.conn.error());
    raw.feed(&[frames::data_len(1, 0)]);
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
        on: BlockedOn::Stream(frames::id(1)),
        limit: 0,
    });
    let reset = frames::reset(1, ErrorCode::CANCEL);
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

#[test]
fn pings_stay_within_half_the_peers_flood_limit() {
    let mut pair = Pair::default_pair();
    pair.connect();
    // A fast round trip: a new PING as soon as the last one is answered.
    for _ in 0..200 {
        pair.client.ping(pair.now);
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
        pair.client.write(pair.now, id, &[1u8; 2000]).unwrap();
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
            pair.client.finish(pair.now, id).unwrap();
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
            pair.client.read(pair.now, id, 10),
            Err(StreamError::Reset {
                code: ErrorCode::STREAM_TIMEOUT,
                initiator: Initiator::Local
            })
        );
    }
}
