//! Two sans-IO endpoints joined by an in-memory pipe under virtual time:
//! deterministic, fast, no sockets.

#![allow(dead_code)]

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use creditmux::config::Config;
use creditmux::conn::{Connection, Side, TransmitBuf};
use creditmux::frame::{Decoded, Frame, FrameDecoder, PREFACE_LEN};

/// Decides whether a frame in flight is delivered.
pub type Filter = Box<dyn FnMut(&Frame) -> bool>;

/// One direction of the pipe.
pub struct Wire {
    pub inflight: BytesMut,
    /// Delivered to the receiver but not yet consumed (a partial frame).
    received: BytesMut,
    pub filter: Option<Filter>,
    decoder: FrameDecoder,
    raw: BytesMut,
    preface_left: usize,
    pub frames_dropped: u64,
}

impl Wire {
    fn new() -> Wire {
        Wire {
            inflight: BytesMut::new(),
            received: BytesMut::new(),
            filter: None,
            decoder: FrameDecoder::new(16 * 1024 * 1024 - 1),
            raw: BytesMut::new(),
            preface_left: PREFACE_LEN,
            frames_dropped: 0,
        }
    }

    /// Up to `max` bytes taken off the front of what is in flight, as a
    /// receiver reading the transport straight into its own buffer would
    /// (`Connection::direct_payload`); `None` while delivered input waits
    /// to be handled or nothing is in flight.
    #[allow(dead_code)]
    pub fn take_direct(&mut self, max: usize) -> Option<bytes::Bytes> {
        if !self.received.is_empty() || self.inflight.is_empty() || max == 0 {
            return None;
        }
        let n = max.min(self.inflight.len());
        Some(self.inflight.split_to(n).freeze())
    }

    fn push(&mut self, bytes: &[u8]) {
        let mut bytes = bytes;
        if self.preface_left > 0 {
            let n = self.preface_left.min(bytes.len());
            self.inflight.extend_from_slice(&bytes[..n]);
            self.preface_left -= n;
            bytes = &bytes[n..];
        }
        // Frames are tracked even without a filter, so one can be installed
        // at any point without losing frame alignment.
        self.raw.extend_from_slice(bytes);
        let Some(filter) = self.filter.as_mut() else {
            while let Ok(Some(_)) = self.decoder.decode_next(&mut self.raw) {}
            self.inflight.extend_from_slice(bytes);
            return;
        };
        loop {
            let decoded = match self.decoder.decode_next(&mut self.raw) {
                Ok(Some(decoded)) => decoded,
                Ok(None) => break,
                Err(e) => panic!("the pipe carried an invalid frame: {e}"),
            };
            if let Decoded::Frame(frame) = decoded {
                if filter(&frame) {
                    frame.encode(&mut self.inflight);
                } else {
                    self.frames_dropped += 1;
                }
            }
        }
    }
}

pub struct Pair {
    pub client: Connection,
    pub server: Connection,
    pub now: Instant,
    pub to_server: Wire,
    pub to_client: Wire,
    /// Bytes moved per direction and step; models a small pipe.
    pub chunk: usize,
    buf: TransmitBuf,
}

impl Pair {
    pub fn new(client: Config, server: Config) -> Pair {
        let now = Instant::now();
        Pair {
            client: Connection::new(Side::Client, client, now),
            server: Connection::new(Side::Server, server, now),
            now,
            to_server: Wire::new(),
            to_client: Wire::new(),
            chunk: 64 * 1024,
            buf: TransmitBuf::new(),
        }
    }

    pub fn default_pair() -> Pair {
        Pair::new(Config::default(), Config::default())
    }

    /// A connected pair whose server grants 1 KiB per stream and 4 KiB
    /// per connection: a few client writes use up either credit.
    pub fn with_small_server_windows() -> Pair {
        let server = Config::builder()
            .stream_window(1024)
            .connection_window(4096)
            .build()
            .unwrap();
        let mut pair = Pair::new(Config::default(), server);
        pair.connect();
        pair
    }

    /// Moves bytes once in each direction. Returns true if anything moved.
    pub fn step(&mut self) -> bool {
        let now = self.now;
        let mut moved = false;
        for client_sends in [true, false] {
            let (from, wire) = if client_sends {
                (&mut self.client, &mut self.to_server)
            } else {
                (&mut self.server, &mut self.to_client)
            };
            from.poll_transmit(now, &mut self.buf, self.chunk);
            if !self.buf.is_empty() {
                let bytes = self.buf.take_contiguous();
                wire.push(&bytes);
            }
        }
        for to_server in [true, false] {
            moved |= self.deliver_one_way(to_server);
        }
        moved
    }

    /// Moves one chunk of what is in flight to the server (or the client),
    /// with nothing transmitted meanwhile: the receiver announces no credit
    /// while it arrives. Returns true if anything moved.
    pub fn deliver_one_way(&mut self, to_server: bool) -> bool {
        let (to, wire) = if to_server {
            (&mut self.server, &mut self.to_server)
        } else {
            (&mut self.client, &mut self.to_client)
        };
        if wire.inflight.is_empty() {
            return false;
        }
        let n = wire.inflight.len().min(self.chunk);
        let piece = wire.inflight.split_to(n);
        wire.received.extend_from_slice(&piece);
        to.handle_input(self.now, &mut wire.received);
        true
    }

    /// Steps until nothing moves. Panics on livelock.
    pub fn drive(&mut self) {
        for _ in 0..1_000_000 {
            if !self.step() {
                return;
            }
        }
        panic!("pair did not settle: livelock");
    }

    /// Advances virtual time to the earliest timer of either side (at most
    /// `limit` ahead) and runs it. Returns false if no timer is armed before `limit`.
    pub fn advance(&mut self, limit: Instant) -> bool {
        let next = [self.client.poll_timeout(), self.server.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
        match next {
            Some(at) if at <= limit => {
                self.now = self.now.max(at);
                self.client.handle_timeout(self.now);
                self.server.handle_timeout(self.now);
                true
            }
            _ => {
                self.now = limit;
                false
            }
        }
    }

    /// Drives and runs timers for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            self.drive();
            if !self.advance(end) {
                self.drive();
                return;
            }
        }
    }

    /// Completes the handshake.
    pub fn connect(&mut self) {
        self.drive();
        assert!(self.client.is_established(), "client not established");
        assert!(self.server.is_established(), "server not established");
    }
}

/// Counts the frames matching `which` that go through `wire` from now on.
pub fn count_frames(wire: &mut Wire, which: fn(&Frame) -> bool) -> Rc<Cell<usize>> {
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

/// Puts `frame` on `wire` as if its sender had written it.
pub fn inject(wire: &mut Wire, frame: Frame) {
    frame.encode(&mut wire.inflight);
}
