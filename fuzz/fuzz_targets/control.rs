//! Stateful fuzzing of the native-QUIC control plane (`conn::control`):
//! the fuzzer plays the peer's control stream (mostly well-formed frames,
//! split anywhere, sometimes garbage), the QUIC glue's stream events, the
//! application and the clock. Checked after every operation:
//!
//! - nothing panics; `poll_action` runs dry;
//! - what the plane writes is a valid preface, then its SETTINGS (only
//!   EXTENSIONS, announcing PRIORITY_UPDATES), then whole PING, GOAWAY
//!   and PRIORITY_UPDATE frames only (SPEC §18.3), at most two GOAWAYs,
//!   never one with a higher last_stream_id than before (§13.2), a
//!   PRIORITY_UPDATE only for a stream the application asked for, only to
//!   a peer that announced them and at most 500 in any second (§6.10),
//!   and nothing after its Close action (§18.6);
//! - it asks to close the connection at most once, and to finish its
//!   control stream at most once, only after a GOAWAY went either way
//!   (§18.3), and not while stream handles are open unless it is closing;
//! - a PING acknowledgement echoes a PING the peer sent (unless raw garbage
//!   went in, which may decode as anything);
//! - after `handle_timeout(now)` no timer is still due (no busy loop);
//! - once the end is known it never changes.

#![no_main]

use std::collections::{HashSet, VecDeque};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use bytes::{Bytes, BytesMut};
use creditmux::config::Config;
use creditmux::conn::Side;
use creditmux::conn::control::{Action, ControlPlane, TransportEnd};
use creditmux::error::ConnectionError;
use creditmux::frame::{
    Decoded, EXTENSIONS, ErrorCode, Frame, FrameDecoder, GoAway, PREFACE_LEN, PRIORITY_UPDATES,
    Ping, PriorityUpdate, Settings, SettingsValues, StreamId, encode_preface,
};
use creditmux::{Priority, PriorityRequestError};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum PeerFrame {
    Ping {
        ack: bool,
        echo: bool,
        payload: [u8; 8],
    },
    GoAway {
        last: u16,
        code: u32,
        debug_len: u8,
    },
    /// A frame type other than PING and GOAWAY (forbidden here), or unknown.
    Other {
        kind: u8,
        len: u8,
    },
}

#[derive(Arbitrary, Debug)]
enum Op {
    /// The peer's preface (or a broken one), then frames, all split after
    /// `hold` bytes of the whole.
    Peer {
        frames: Vec<PeerFrame>,
        hold: u8,
    },
    Garbage(Vec<u8>),
    ControlEnd {
        reset: bool,
    },
    Accepted(u16),
    PeerReset,
    LateStream,
    OpenStreams(u8),
    TransportEnd {
        code: Option<u32>,
        timed_out: bool,
    },
    Ping,
    Close {
        code: u32,
    },
    AdvanceMillis(u16),
    AdvanceSecs(u8),
    ToTimeout,
    Transmit,
}

#[derive(Arbitrary, Debug)]
struct Input {
    server: bool,
    /// Send the peer's preface and SETTINGS (announcing PRIORITY_UPDATES)
    /// first (else it is left to the ops).
    preface: bool,
    ops: Vec<Op>,
}

fn config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(Config::default)
}

struct Harness {
    plane: ControlPlane,
    now: Instant,
    pending: BytesMut,
    input: BytesMut,
    out: BytesMut,
    out_decoder: FrameDecoder,
    preface_left: usize,
    peer_pings: Vec<[u8; 8]>,
    last_ping: Option<[u8; 8]>,
    goaways_out: u32,
    last_goaway: Option<StreamId>,
    closed: bool,
    finished: bool,
    open: u64,
    peer_goaway: bool,
    /// Raw garbage went in: it may have decoded as frames the harness does
    /// not know of, so checks that rely on what the peer said are off.
    garbage: bool,
    end: Option<ConnectionError>,
    /// The plane wrote its SETTINGS (right after the preface).
    settings_out: bool,
    /// The peer's SETTINGS announced PRIORITY_UPDATES.
    peer_priority_updates: bool,
    /// Streams the application asked the peer about.
    requested: HashSet<StreamId>,
    /// When the plane's latest PRIORITY_UPDATEs went out (at most 500).
    requests_out: VecDeque<Instant>,
}

impl Harness {
    fn transmit(&mut self) {
        let mut out = BytesMut::new();
        self.plane.poll_transmit(self.now, &mut out);
        assert!(
            out.is_empty() || !self.closed || self.preface_left > 0,
            "the plane wrote {} bytes after its Close action",
            out.len()
        );
        let mut bytes = &out[..];
        if self.preface_left > 0 {
            let n = self.preface_left.min(bytes.len());
            let start = PREFACE_LEN - self.preface_left;
            assert_eq!(
                bytes[..n],
                encode_preface()[start..start + n],
                "not the preface"
            );
            self.preface_left -= n;
            bytes = &bytes[n..];
        }
        self.out.extend_from_slice(bytes);
        loop {
            let decoded = self.out_decoder.decode_next(&mut self.out);
            if let Ok(Some(_)) = decoded
                && !self.settings_out
            {
                // SPEC §18.3: SETTINGS first, carrying EXTENSIONS only.
                let Ok(Some(Decoded::Frame(Frame::Settings(s)))) = &decoded else {
                    panic!("the plane's first frame is {decoded:?}, not SETTINGS");
                };
                assert!(!s.ack);
                let only_extensions = SettingsValues {
                    extensions: Some(PRIORITY_UPDATES),
                    ..SettingsValues::default()
                };
                assert_eq!(s.values, only_extensions);
                self.settings_out = true;
                continue;
            }
            match decoded {
                Ok(Some(Decoded::Frame(Frame::PriorityUpdate(p)))) => {
                    assert!(
                        self.garbage || self.peer_priority_updates,
                        "PRIORITY_UPDATE to a peer that did not announce them"
                    );
                    assert!(
                        self.requested.contains(&p.stream),
                        "PRIORITY_UPDATE on {} that nobody asked for",
                        p.stream
                    );
                    let now = self.now;
                    while self
                        .requests_out
                        .front()
                        .is_some_and(|&at| at + Duration::from_secs(1) <= now)
                    {
                        self.requests_out.pop_front();
                    }
                    assert!(self.requests_out.len() < 500, "over 500 in 1 s");
                    self.requests_out.push_back(now);
                }
                Ok(Some(Decoded::Frame(Frame::Ping(p)))) if p.ack => {
                    assert!(
                        self.garbage || self.peer_pings.contains(&p.payload),
                        "ACK of no PING"
                    )
                }
                Ok(Some(Decoded::Frame(Frame::Ping(p)))) => self.last_ping = Some(p.payload),
                Ok(Some(Decoded::Frame(Frame::GoAway(g)))) => {
                    self.goaways_out += 1;
                    assert!(self.goaways_out <= 2, "more than two GOAWAYs");
                    assert!(
                        self.last_goaway.is_none_or(|l| g.last_stream <= l),
                        "last_stream_id rose"
                    );
                    self.last_goaway = Some(g.last_stream);
                }
                Ok(Some(other)) => panic!("the plane wrote {other:?} on its control stream"),
                Ok(None) => break,
                Err(e) => panic!("the plane wrote an invalid frame: {e}"),
            }
        }
        assert!(self.out.is_empty(), "a partial frame");
    }

    fn actions(&mut self) {
        for _ in 0..100 {
            match self.plane.poll_action(true) {
                None => return,
                Some(Action::Close { .. }) => {
                    assert!(!self.closed, "closed twice");
                    self.closed = true;
                }
                Some(Action::FinishControl) => {
                    assert!(!self.finished, "finished twice");
                    assert!(
                        self.garbage || self.goaways_out > 0 || self.peer_goaway,
                        "finished without a GOAWAY either way"
                    );
                    assert!(self.open == 0, "finished with {} streams open", self.open);
                    self.finished = true;
                }
                Some(Action::Refuse { .. }) | Some(Action::Prioritize { .. }) => {}
            }
        }
        panic!("poll_action never runs dry");
    }

    fn timeout(&mut self) {
        self.plane.handle_timeout(self.now);
        if let Some(at) = self.plane.poll_timeout() {
            assert!(at > self.now, "a timer is still due after handle_timeout");
        }
    }

    fn check(&mut self) {
        self.actions();
        let _ = self.plane.take_changed();
        match (&self.end, self.plane.error()) {
            (None, Some(e)) => self.end = Some(e.clone()),
            (Some(first), now) => assert_eq!(Some(first), now, "the end changed"),
            (None, None) => {}
        }
    }
}

fuzz_target!(|input: Input| {
    static BASE: OnceLock<Instant> = OnceLock::new();
    let now = *BASE.get_or_init(Instant::now);
    let side = if input.server {
        Side::Server
    } else {
        Side::Client
    };
    let mut h = Harness {
        plane: ControlPlane::new(side, config().clone(), now),
        now,
        pending: BytesMut::new(),
        input: BytesMut::new(),
        out: BytesMut::new(),
        out_decoder: FrameDecoder::new(1 << 20),
        preface_left: PREFACE_LEN,
        peer_pings: Vec::new(),
        last_ping: None,
        goaways_out: 0,
        last_goaway: None,
        closed: false,
        finished: false,
        open: 0,
        peer_goaway: false,
        garbage: false,
        end: None,
        settings_out: false,
        peer_priority_updates: false,
        requested: HashSet::new(),
        requests_out: VecDeque::new(),
    };
    h.transmit();
    if input.preface {
        h.pending.extend_from_slice(&encode_preface());
        let values = SettingsValues {
            extensions: Some(PRIORITY_UPDATES),
            ..SettingsValues::default()
        };
        Frame::Settings(Settings { ack: false, values }).encode(&mut h.pending);
        h.peer_priority_updates = values.get(EXTENSIONS) & PRIORITY_UPDATES != 0;
    }
    for op in input.ops {
        match op {
            Op::Peer { frames, hold } => {
                for f in frames.into_iter().take(64) {
                    let frame = match f {
                        PeerFrame::Ping { ack, echo, payload } => {
                            let payload = match h.last_ping {
                                Some(p) if ack && echo => p,
                                _ => payload,
                            };
                            if !ack {
                                h.peer_pings.push(payload);
                            }
                            Frame::Ping(Ping { ack, payload })
                        }
                        PeerFrame::GoAway {
                            last,
                            code,
                            debug_len,
                        } => {
                            h.peer_goaway = true;
                            Frame::GoAway(GoAway {
                                last_stream: StreamId::new(u32::from(last))
                                    .unwrap_or(StreamId::CONNECTION),
                                code: ErrorCode(code % 16),
                                debug: Bytes::from(vec![b'd'; usize::from(debug_len)]),
                            })
                        }
                        PeerFrame::Other { kind, len } if kind % 12 == 8 && len % 2 == 0 => {
                            // A well-formed PRIORITY_UPDATE (SPEC §18.3).
                            Frame::PriorityUpdate(PriorityUpdate {
                                stream: StreamId::new(u32::from(len) / 2 + 1)
                                    .unwrap_or(StreamId::CONNECTION),
                                urgency: len % 8,
                                incremental: len & 8 != 0,
                            })
                        }
                        PeerFrame::Other { kind, len } => {
                            // Not PING (5) or GOAWAY (6): those are above.
                            let kind = match kind % 12 {
                                k @ (5 | 6) => k + 2,
                                k => k,
                            };
                            let header = creditmux::frame::Header {
                                len: u32::from(len),
                                kind,
                                flags: 0,
                                stream: StreamId::CONNECTION,
                            };
                            h.pending.extend_from_slice(&header.encode());
                            h.pending.extend_from_slice(&vec![0; usize::from(len)]);
                            continue;
                        }
                    };
                    frame.encode(&mut h.pending);
                }
                let n = h.pending.len().saturating_sub(usize::from(hold % 16));
                let piece = h.pending.split_to(n);
                h.input.extend_from_slice(&piece);
                h.plane.handle_input(h.now, &mut h.input);
            }
            Op::Garbage(mut bytes) => {
                bytes.truncate(64);
                h.garbage = true;
                h.input.extend_from_slice(&bytes);
                h.plane.handle_input(h.now, &mut h.input);
            }
            Op::ControlEnd { reset } => {
                let leftover = h.input.len() + h.pending.len();
                h.plane.handle_control_end(h.now, reset, leftover);
            }
            Op::Accepted(id) => {
                if let Some(id) = StreamId::new(u32::from(id)) {
                    h.plane.stream_accepted(id);
                    // Now and then the application asks the peer for a
                    // priority on it, or lets go of its request (decided
                    // from the id, so inputs decode as before).
                    if id.get() % 3 == 0 {
                        let asked = h.plane.request_priority(h.now, id, Priority::new(1, false));
                        if asked.is_ok() {
                            h.requested.insert(id);
                        } else if !h.garbage && h.plane.is_established() {
                            assert!(
                                asked == Err(PriorityRequestError::Finished)
                                    || !h.peer_priority_updates,
                                "a request refused: {asked:?}"
                            );
                        }
                    } else if let Some(asked) = StreamId::new(id.get() - 1)
                        && id.get() % 3 == 1
                    {
                        // Forgotten: it must not go out from now on.
                        h.plane.forget_request(asked);
                        h.requested.remove(&asked);
                    }
                }
            }
            Op::PeerReset => h.plane.stream_reset_by_peer(h.now),
            Op::LateStream => {
                let refused = h.plane.late_stream(h.now);
                assert!(!refused || h.goaways_out > 0 || h.plane.goaway_sent());
            }
            Op::OpenStreams(n) => {
                h.open = u64::from(n % 4);
                h.plane.set_open_streams(h.now, h.open);
            }
            Op::TransportEnd { code, timed_out } => {
                let end = match (code, timed_out) {
                    (_, true) => TransportEnd::TimedOut,
                    (Some(code), _) => TransportEnd::ClosedByPeer {
                        code: ErrorCode(code),
                        reason: String::new(),
                    },
                    (None, _) => TransportEnd::ClosedLocally,
                };
                h.plane.handle_transport_end(end);
                assert!(h.plane.error().is_some());
            }
            Op::Ping => h.plane.ping(h.now),
            Op::Close { code } => h.plane.close(h.now, ErrorCode(code % 16), b"bye"),
            Op::AdvanceMillis(ms) => {
                h.now += Duration::from_millis(u64::from(ms));
                h.timeout();
            }
            Op::AdvanceSecs(s) => {
                h.now += Duration::from_secs(u64::from(s));
                h.timeout();
            }
            Op::ToTimeout => {
                if let Some(at) = h.plane.poll_timeout() {
                    h.now = h.now.max(at);
                }
                h.timeout();
            }
            Op::Transmit => h.transmit(),
        }
        h.check();
    }
    h.transmit();
    h.check();
});
