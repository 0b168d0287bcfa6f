//! SPEC §18.3-§18.6, the native-QUIC control plane, as a sans-IO state
//! machine: two planes joined in memory under virtual time
//! (`support/control_pair.rs`), QUIC itself stood in for by byte pipes.

mod support;

use std::time::Duration;

use bytes::BytesMut;
use creditmux::config::Config;
use creditmux::conn::Side;
use creditmux::error::{ConnectionError, OpenError};
use creditmux::frame::{ErrorCode, Frame, GoAway, Ping, StreamId, encode_preface};
use support::control_pair::ControlPair;

fn frame_bytes(frames: &[Frame]) -> Vec<u8> {
    let mut out = BytesMut::new();
    for f in frames {
        f.encode(&mut out);
    }
    out.to_vec()
}

fn id(n: u32) -> StreamId {
    StreamId::new(n).unwrap()
}

fn violation(plane_error: Option<&ConnectionError>) -> Option<ErrorCode> {
    match plane_error {
        Some(ConnectionError::ProtocolViolation { code, .. }) => Some(*code),
        Some(ConnectionError::Frame(e)) => Some(e.code()),
        _ => None,
    }
}

#[test]
fn the_prefaces_complete_the_handshake() {
    let mut pair = ControlPair::default_pair();
    assert!(!pair.client.is_established());
    pair.drive();
    assert!(pair.client.is_established() && pair.server.is_established());
    assert_eq!(pair.client.check_open(), Ok(()));
}

#[test]
fn a_missing_preface_ends_the_handshake_with_settings_timeout() {
    let mut pair = ControlPair::default_pair();
    // Only the server ever speaks: the client's bytes are lost.
    let mut out = BytesMut::new();
    pair.client.poll_transmit(pair.now, &mut out);
    pair.run_for(Config::default().handshake_timeout() + Duration::from_millis(1));
    let closed = pair.closed.clone().expect("closed");
    assert_eq!(
        (closed.0, closed.1),
        (Side::Server, ErrorCode::SETTINGS_TIMEOUT)
    );
    assert_eq!(
        pair.server.error(),
        Some(&ConnectionError::HandshakeTimeout)
    );
}

#[test]
fn ping_measures_the_round_trip_and_an_unanswered_one_is_an_idle_timeout() {
    let mut pair = ControlPair::default_pair();
    pair.drive();
    pair.client.ping(pair.now);
    assert!(pair.client.ping_in_flight());
    pair.drive();
    assert_eq!(pair.client.pings_completed(), 1);
    assert!(pair.client.rtt().is_some());

    // The server stops answering: its bytes no longer arrive.
    let mut pair = ControlPair::default_pair();
    pair.drive();
    pair.client.ping(pair.now);
    let mut out = BytesMut::new();
    pair.client.poll_transmit(pair.now, &mut out);
    let timeout = Config::default().keepalive_timeout();
    pair.now += timeout;
    let now = pair.now;
    pair.client.handle_timeout(now);
    assert_eq!(pair.client.cause(), Some(&ConnectionError::IdleTimeout));
    pair.drive();
    assert_eq!(
        pair.closed.clone().map(|c| c.1),
        Some(ErrorCode::IDLE_TIMEOUT)
    );
}

#[test]
fn a_graceful_close_drains_both_sides_then_closes_with_code_0() {
    let mut pair = ControlPair::default_pair();
    pair.drive();
    pair.client.stream_accepted(id(2));
    pair.client.set_open_streams(pair.now, 1);
    pair.server.set_open_streams(pair.now, 1);
    pair.client.close(pair.now, ErrorCode::NO_ERROR, b"");
    pair.drive();
    assert_eq!(pair.server.check_open(), Err(OpenError::GoingAway));
    assert_eq!(
        pair.refused[1],
        vec![id(2)],
        "the server's streams above 2 are refused"
    );
    assert!(pair.closed.is_none(), "a stream still open holds the close");
    pair.client.set_open_streams(pair.now, 0);
    pair.server.set_open_streams(pair.now, 0);
    pair.drive();
    let closed = pair.closed.clone().expect("closed");
    assert_eq!(closed.1, ErrorCode::NO_ERROR);
    assert_eq!(
        pair.client.error(),
        Some(&ConnectionError::LocallyClosed {
            code: ErrorCode::NO_ERROR
        })
    );
    assert!(matches!(
        pair.server.error(),
        Some(ConnectionError::ClosedByPeer {
            code: ErrorCode::NO_ERROR,
            ..
        })
    ));
}

#[test]
fn the_drain_timeout_closes_with_code_0_and_says_so() {
    let mut pair = ControlPair::default_pair();
    pair.drive();
    pair.client.set_open_streams(pair.now, 1);
    pair.client.close(pair.now, ErrorCode::NO_ERROR, b"");
    pair.run_for(Config::default().drain_timeout() + Duration::from_millis(1));
    let (_, code, reason) = pair.closed.clone().expect("closed at the drain timeout");
    assert_eq!(code, ErrorCode::NO_ERROR);
    assert_eq!(&reason[..], b"drain timeout");
}

#[test]
fn a_close_with_an_error_code_closes_at_once_with_it() {
    let mut pair = ControlPair::default_pair();
    pair.drive();
    pair.server.close(pair.now, ErrorCode::CANCEL, b"bye");
    pair.drive();
    assert_eq!(pair.closed.clone().map(|c| c.1), Some(ErrorCode::CANCEL));
    assert!(matches!(
        pair.client.error(),
        Some(ConnectionError::ClosedByPeer {
            code: ErrorCode::CANCEL,
            ..
        })
    ));
}

/// SPEC §16.1 in native mode too: the ten-GOAWAY limit of the byte-stream
/// engine (both use `conn::goaway`).
#[test]
fn more_than_ten_goaways_are_a_flood() {
    let mut pair = ControlPair::default_pair();
    pair.drive();
    pair.server.set_open_streams(pair.now, 1);
    let goaway = Frame::GoAway(GoAway {
        last_stream: id(9),
        code: ErrorCode::NO_ERROR,
        debug: bytes::Bytes::new(),
    });
    pair.inject(true, &frame_bytes(&vec![goaway.clone(); 10]));
    pair.step();
    assert!(pair.server.error().is_none() && pair.server.cause().is_some_and(|c| c.is_graceful()));
    pair.inject(true, &frame_bytes(&[goaway]));
    pair.step();
    assert_eq!(
        violation(pair.server.cause()),
        Some(ErrorCode::ENHANCE_YOUR_CALM)
    );
}

#[test]
fn floods_and_forbidden_frames_end_the_connection_with_their_codes() {
    // 101 PINGs in a second.
    let mut pair = ControlPair::default_pair();
    pair.drive();
    let ping = Frame::Ping(Ping {
        ack: false,
        payload: [1; 8],
    });
    pair.inject(true, &frame_bytes(&vec![ping; 101]));
    pair.step();
    assert_eq!(
        violation(pair.server.cause()),
        Some(ErrorCode::ENHANCE_YOUR_CALM)
    );

    // DATA on the control stream.
    let mut pair = ControlPair::default_pair();
    pair.drive();
    let data = support::frames::data(1, b"x", false);
    pair.inject(true, &frame_bytes(&[data]));
    pair.step();
    assert_eq!(
        violation(pair.server.cause()),
        Some(ErrorCode::PROTOCOL_ERROR)
    );
}

#[test]
fn a_bad_preface_and_another_version_are_refused() {
    let mut pair = ControlPair::default_pair();
    let mut out = BytesMut::new();
    pair.client.poll_transmit(pair.now, &mut out);
    pair.inject(true, b"HTTP/1.1");
    pair.step();
    assert_eq!(
        pair.closed.clone().map(|c| c.1),
        Some(ErrorCode::PROTOCOL_ERROR)
    );

    let mut pair = ControlPair::default_pair();
    let mut preface = encode_preface().to_vec();
    preface[7] = 9;
    let mut out = BytesMut::new();
    pair.client.poll_transmit(pair.now, &mut out);
    pair.inject(true, &preface);
    pair.step();
    let (_, code, reason) = pair.closed.clone().expect("closed");
    assert_eq!(code, ErrorCode::VERSION_MISMATCH);
    assert_eq!(&reason[..], b"supported: 1");
}

#[test]
fn a_control_stream_finished_before_any_goaway_is_a_protocol_error() {
    let mut pair = ControlPair::default_pair();
    pair.drive();
    let now = pair.now;
    pair.server.handle_control_end(now, false, 0);
    assert_eq!(
        violation(pair.server.cause()),
        Some(ErrorCode::PROTOCOL_ERROR)
    );
}

#[test]
fn streams_the_peer_opens_after_this_sides_goaway_are_refused_and_counted() {
    let mut pair = ControlPair::default_pair();
    pair.drive();
    assert!(!pair.server.late_stream(pair.now), "no GOAWAY yet");
    pair.server.set_open_streams(pair.now, 1);
    pair.server.close(pair.now, ErrorCode::NO_ERROR, b"");
    for _ in 0..1000 {
        assert!(pair.server.late_stream(pair.now));
    }
    assert!(pair.server.cause().is_some_and(|c| c.is_graceful()));
    assert!(pair.server.late_stream(pair.now));
    assert_eq!(
        violation(pair.server.cause()),
        Some(ErrorCode::ENHANCE_YOUR_CALM)
    );
}

// ----- PRIORITY_UPDATE (SPEC §6.10, §18.3) ----------------------------------

fn urgent() -> creditmux::Priority {
    creditmux::Priority::new(0, false)
}

#[test]
fn priority_requests_reach_the_peer_after_both_settings() {
    let mut pair = ControlPair::default_pair();
    pair.drive();
    let now = pair.now;
    // Coalesced: the newest request for a stream wins; a forgotten one
    // (its stream gone, or the peer done sending on it) does not go.
    pair.client
        .request_priority(now, id(4), creditmux::Priority::new(6, true))
        .unwrap();
    pair.client.request_priority(now, id(4), urgent()).unwrap();
    pair.client.request_priority(now, id(1), urgent()).unwrap();
    pair.client.request_priority(now, id(3), urgent()).unwrap();
    pair.client.forget_request(id(3));
    // Stream 0 is the connection (found by the control fuzz target).
    assert_eq!(
        pair.client
            .request_priority(now, StreamId::CONNECTION, urgent()),
        Err(creditmux::PriorityRequestError::Finished)
    );
    pair.drive();
    assert_eq!(
        pair.prioritized[1],
        vec![(id(4), urgent()), (id(1), urgent())]
    );
    assert!(pair.server.error().is_none() && pair.server.cause().is_none());
}

#[test]
fn the_handshake_needs_the_peers_settings_after_its_preface() {
    let mut pair = ControlPair::default_pair();
    // The client's preface alone: not established, and requests wait for
    // nothing (the peer's extensions are not known).
    let mut out = BytesMut::new();
    pair.client.poll_transmit(pair.now, &mut out);
    pair.inject(true, &encode_preface());
    pair.step();
    assert!(!pair.server.is_established());
    let now = pair.now;
    assert_eq!(
        pair.server.request_priority(now, id(1), urgent()),
        Err(creditmux::PriorityRequestError::Unsupported)
    );
    // A peer that announces no extension: established, no requests.
    let settings = Frame::Settings(creditmux::frame::Settings::default());
    pair.inject(true, &frame_bytes(&[settings]));
    pair.step();
    assert!(pair.server.is_established());
    assert_eq!(
        pair.server.request_priority(now, id(1), urgent()),
        Err(creditmux::PriorityRequestError::Unsupported)
    );
    // Without SETTINGS the handshake times out.
    let mut pair = ControlPair::default_pair();
    let mut out = BytesMut::new();
    pair.client.poll_transmit(pair.now, &mut out);
    pair.inject(true, &encode_preface());
    pair.run_for(Config::default().handshake_timeout() + Duration::from_millis(1));
    assert_eq!(
        pair.server.error(),
        Some(&ConnectionError::HandshakeTimeout)
    );
}

#[test]
fn anything_but_settings_first_and_settings_later_are_protocol_errors() {
    let settings = Frame::Settings(creditmux::frame::Settings::default());
    let ping = Frame::Ping(Ping {
        ack: false,
        payload: [2; 8],
    });
    for frames in [
        vec![ping, settings.clone()],
        vec![settings.clone(), settings],
    ] {
        let mut pair = ControlPair::default_pair();
        let mut out = BytesMut::new();
        pair.client.poll_transmit(pair.now, &mut out);
        let mut bytes = encode_preface().to_vec();
        bytes.extend(frame_bytes(&frames));
        pair.inject(true, &bytes);
        pair.step();
        assert_eq!(
            violation(pair.server.cause()),
            Some(ErrorCode::PROTOCOL_ERROR),
            "{frames:?}"
        );
    }
}

#[test]
fn priority_requests_are_paced_on_the_control_stream_too() {
    let mut pair = ControlPair::default_pair();
    pair.drive();
    let now = pair.now;
    for n in 0..600 {
        pair.client
            .request_priority(now, id(2 * n + 1), urgent())
            .unwrap();
    }
    pair.drive();
    // The burst first; the rest as the budget refills (SPEC §6.10), and
    // meanwhile the plane does not ask to transmit (the driver sleeps).
    assert_eq!(pair.prioritized[1].len(), 250);
    assert!(!pair.client.wants_transmit());
    pair.run_for(Duration::from_millis(1000));
    let after_a_second = pair.prioritized[1].len();
    assert!(
        (250..=500).contains(&after_a_second),
        "{after_a_second} within the first second"
    );
    pair.run_for(Duration::from_secs(2));
    assert_eq!(pair.prioritized[1].len(), 600);
}

#[test]
fn a_flood_of_priority_updates_is_enhance_your_calm() {
    let mut pair = ControlPair::default_pair();
    pair.drive();
    let update = Frame::PriorityUpdate(creditmux::frame::PriorityUpdate {
        stream: id(1),
        urgency: 2,
        incremental: true,
    });
    pair.inject(true, &frame_bytes(&vec![update; 1001]));
    pair.step();
    assert_eq!(
        violation(pair.server.cause()),
        Some(ErrorCode::ENHANCE_YOUR_CALM)
    );
}
