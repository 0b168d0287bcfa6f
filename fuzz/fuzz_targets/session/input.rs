//! The fuzzer's input: the peer's SETTINGS and a list of operations, with
//! mirror types that `session.rs` turns into mostly well-formed frames.

use arbitrary::Arbitrary;
use creditmux::frame::{
    DIRECTIONAL_RESET, ErrorCode, MAX_CREDIT, PRIORITY_UPDATES, ResetScope, SettingsValues,
};

#[derive(Arbitrary, Debug)]
pub(super) struct Input {
    pub(super) settings: PeerSettings,
    /// Withhold the SETTINGS acknowledgement: the handshake stays open.
    pub(super) withhold_ack: bool,
    pub(super) ops: Vec<Op>,
}

/// The peer's SETTINGS, kept small so the SUT runs out of credit often.
/// `None`: the parameter is absent (its default applies).
#[derive(Arbitrary, Debug)]
pub(super) struct PeerSettings {
    /// 1 KiB ..= 9 KiB.
    pub(super) stream_window: Option<u16>,
    /// 1 KiB ..= 65 KiB.
    pub(super) connection_window: Option<u16>,
    /// 1 KiB ..= 3 KiB.
    pub(super) max_frame_payload: Option<u16>,
    /// 0 ..= 11.
    pub(super) max_streams: Option<u8>,
    /// The peer announces DIRECTIONAL_RESET (SPEC §7.1): the SUT may send
    /// RESET SEND and RECEIVE. PRIORITY_UPDATES is drawn from this and
    /// `max_frame_payload` (see `priority_updates`), so that every mix of
    /// the two bits is reached and older inputs decode as before.
    pub(super) directional_reset: bool,
}

impl PeerSettings {
    /// The peer announces PRIORITY_UPDATES (SPEC §6.10).
    pub(super) fn priority_updates(&self) -> bool {
        self.max_frame_payload
            .map_or(self.directional_reset, |v| v % 2 == 0)
    }

    pub(super) fn values(&self) -> SettingsValues {
        SettingsValues {
            initial_stream_window: self.stream_window.map(|v| 1024 + u32::from(v) % 8193),
            connection_window: self.connection_window.map(|v| 1024 + u32::from(v)),
            max_frame_payload: self.max_frame_payload.map(|v| 1024 + u32::from(v) % 2049),
            max_streams: self.max_streams.map(|v| u32::from(v) % 12),
            extensions: Some(
                if self.directional_reset {
                    DIRECTIONAL_RESET
                } else {
                    0
                } | if self.priority_updates() {
                    PRIORITY_UPDATES
                } else {
                    0
                },
            ),
        }
    }
}

#[derive(Arbitrary, Debug)]
pub(super) enum Op {
    /// The peer sends a frame. Pending bytes are delivered, except that a
    /// `hold` of 128 or more keeps back `(hold - 128) % 24` trailing bytes for
    /// a later delivery: frames arrive split at arbitrary points.
    Peer {
        frame: PeerFrame,
        hold: u8,
    },
    /// Raw bytes from the peer (at most 64), delivered at once.
    Garbage(Vec<u8>),
    /// The transport ends.
    Eof,
    Accept,
    Open,
    Write {
        h: u8,
        len: u16,
    },
    WriteBytes {
        h: u8,
        len: u16,
    },
    Finish(u8),
    Read {
        h: u8,
        max: u16,
    },
    Reset {
        h: u8,
        code: Code,
    },
    Release(u8),
    StopReading(u8),
    Ping,
    Close {
        code: Code,
        debug_len: u16,
    },
    /// Advance the clock by this many milliseconds, then `handle_timeout`.
    AdvanceMillis(u16),
    /// Advance the clock by this many seconds, then `handle_timeout`.
    AdvanceSecs(u8),
    /// Advance to the SUT's next deadline, then `handle_timeout`.
    ToTimeout,
    /// One `poll_transmit` with this budget, then drain `poll_event`.
    Transmit {
        max: u16,
    },
    /// `poll_transmit` until it adds nothing, then drain `poll_event`.
    TransmitAll {
        max: u16,
    },
    /// A write the way the tokio driver writes when nothing else waits:
    /// straight from the caller's buffer in frames of its own, reserved
    /// before the transport takes them; the transport takes `taken`
    /// (modulo the frame count + 1) whole frames and the rest is given
    /// back. A large write that finds no credit waits for it instead.
    DirectWrite {
        h: u8,
        len: u16,
        taken: u8,
    },
    /// Abort only the writing (`reset_send`, SPEC §8.7.1).
    ResetSend {
        h: u8,
        code: Code,
    },
    /// Stop reading and tell the peer (`stop`, SPEC §8.7.1).
    Stop {
        h: u8,
        code: Code,
    },
}

#[derive(Arbitrary, Debug)]
pub(super) enum PeerFrame {
    Data {
        stream: StreamSel,
        len: u16,
        fin: bool,
        /// Clamp the payload to the credit the SUT announced.
        within_credit: bool,
    },
    /// `None`: the connection.
    WindowUpdate {
        stream: Option<StreamSel>,
        limit: Credit,
    },
    MaxStreams(Credit),
    Blocked {
        on: BlockedSel,
        limit: Credit,
    },
    Reset {
        stream: StreamSel,
        code: Code,
        scope: Scope,
    },
    /// `echo`: acknowledge the SUT's latest PING with its payload.
    Ping {
        ack: bool,
        echo: bool,
        payload: [u8; 8],
    },
    GoAway {
        last: Option<StreamSel>,
        code: Code,
        debug_len: u8,
    },
    /// A SETTINGS acknowledgement, or a second SETTINGS (a violation).
    Settings {
        ack: bool,
    },
    /// A frame of an unknown type (9..=255), skipped by the receiver; type
    /// 8 is a PRIORITY_UPDATE on a held stream (urgency, flag and stream
    /// drawn from `len`).
    Unknown {
        kind: u8,
        len: u8,
    },
}

/// How the peer picks a stream id.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub(super) enum StreamSel {
    /// One the application holds.
    Held(u8),
    /// The peer's next unused id (opens a stream).
    NewPeer,
    /// A peer id a little beyond the next one (skips some).
    SkipPeer(u8),
    /// The SUT's id with this index (possibly not opened yet).
    Server(u8),
    /// Any id (0 becomes 1 where an id is required).
    Raw(u32),
}

#[derive(Arbitrary, Debug)]
pub(super) enum BlockedSel {
    Connection,
    StreamCount,
    Stream(StreamSel),
}

/// A credit value relative to what the relevant side knows.
#[derive(Arbitrary, Debug)]
pub(super) enum Credit {
    /// The current value again (a duplicate).
    Same,
    /// The current value plus this much.
    Plus(u16),
    /// Any value up to MAX_CREDIT.
    Absolute(u64),
}

/// Which directions a peer RESET aborts.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub(super) enum Scope {
    Both,
    Send,
    Receive,
}

impl Scope {
    pub(super) fn get(self) -> ResetScope {
        match self {
            Scope::Both => ResetScope::Both,
            Scope::Send => ResetScope::Send,
            Scope::Receive => ResetScope::Receive,
        }
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
pub(super) enum Code {
    NoError,
    Cancel,
    Refused,
    Internal,
    Other(u32),
}

impl Code {
    pub(super) fn get(self) -> ErrorCode {
        match self {
            Code::NoError => ErrorCode::NO_ERROR,
            Code::Cancel => ErrorCode::CANCEL,
            Code::Refused => ErrorCode::REFUSED_STREAM,
            Code::Internal => ErrorCode::INTERNAL_ERROR,
            Code::Other(c) => ErrorCode(c),
        }
    }
}

impl Credit {
    pub(super) fn value(&self, current: u64) -> u64 {
        match self {
            Credit::Same => current,
            Credit::Plus(n) => (current + u64::from(*n)).min(MAX_CREDIT),
            Credit::Absolute(v) => v & MAX_CREDIT,
        }
    }
}
