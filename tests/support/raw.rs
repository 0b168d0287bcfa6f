//! One real server core fed hand-made client frames under virtual time:
//! the shape of the conformance tests that play a peer frame by frame.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use bytes::BytesMut;
use creditmux::config::Config;
use creditmux::conn::{Connection, Side, TransmitBuf};
use creditmux::frame::{
    Decoded, Frame, FrameDecoder, PREFACE_LEN, Settings, SettingsValues, encode_preface,
};

/// One real server core fed hand-made client frames under virtual time.
pub struct Raw {
    pub conn: Connection,
    pub now: Instant,
    decoder: FrameDecoder,
    preface_seen: bool,
    tx: BytesMut,
    /// Fed but not consumed by the core: the start of a partial frame.
    rx: BytesMut,
}

impl Raw {
    /// A server that has read the client's preface and then `frames`.
    pub fn server(config: Config, frames: &[Frame]) -> Raw {
        let now = Instant::now();
        let mut raw = Raw {
            conn: Connection::new(Side::Server, config, now),
            now,
            decoder: FrameDecoder::new((1 << 24) - 1),
            preface_seen: false,
            tx: BytesMut::new(),
            rx: BytesMut::new(),
        };
        raw.feed_bytes(&encode_preface());
        raw.feed(frames);
        raw
    }

    /// A server past the handshake: it has read the client's preface and
    /// SETTINGS, written its own, and read their acknowledgement.
    pub fn established(config: Config) -> Raw {
        let mut raw = Raw::server(config, &[Frame::Settings(Settings::default())]);
        raw.sent();
        raw.feed(&[Frame::Settings(Settings {
            ack: true,
            values: SettingsValues::default(),
        })]);
        assert!(raw.conn.is_established(), "{:?}", raw.conn.error());
        raw
    }

    pub fn feed(&mut self, frames: &[Frame]) {
        let mut input = BytesMut::new();
        for f in frames {
            f.encode(&mut input);
        }
        self.feed_bytes(&input);
    }

    /// Delivers `bytes`; a partial frame at the end waits for the rest.
    pub fn feed_bytes(&mut self, bytes: &[u8]) {
        self.rx.extend_from_slice(bytes);
        self.conn.handle_input(self.now, &mut self.rx);
    }

    /// Every frame the core writes now.
    pub fn sent(&mut self) -> Vec<Frame> {
        let mut buf = TransmitBuf::new();
        self.conn.poll_transmit(self.now, &mut buf, 1 << 20);
        self.tx.extend_from_slice(&buf.take_contiguous());
        if !self.preface_seen && self.tx.len() >= PREFACE_LEN {
            let _ = self.tx.split_to(PREFACE_LEN);
            self.preface_seen = true;
        }
        let mut frames = Vec::new();
        while let Ok(Some(decoded)) = self.decoder.decode_next(&mut self.tx) {
            if let Decoded::Frame(f) = decoded {
                frames.push(f);
            }
        }
        frames
    }

    /// Runs the core's timers until `d` of virtual time has passed.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while let Some(at) = self.conn.poll_timeout().filter(|&at| at <= end) {
            self.now = self.now.max(at);
            self.conn.handle_timeout(self.now);
        }
        self.now = end;
    }
}

/// A default server core that has read the client's preface and then
/// `frames` (its own SETTINGS not written yet).
pub fn server_after(frames: &[Frame]) -> Connection {
    let now = Instant::now();
    let mut server = Connection::new(Side::Server, Config::default(), now);
    let mut input = BytesMut::from(&encode_preface()[..]);
    for f in frames {
        f.encode(&mut input);
    }
    server.handle_input(now, &mut input);
    server
}
