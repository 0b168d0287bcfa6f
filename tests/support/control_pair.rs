//! Two native-QUIC control planes (`conn::control`) joined in memory
//! under virtual time, standing in for QUIC: the control streams are byte
//! pipes, FinishControl ends one, Close ends the connection for both.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use creditmux::config::Config;
use creditmux::conn::Side;
use creditmux::conn::control::{Action, ControlPlane, TransportEnd};
use creditmux::frame::ErrorCode;

pub struct ControlPair {
    pub client: ControlPlane,
    pub server: ControlPlane,
    pub now: Instant,
    /// Bytes on their way: [to the server, to the client].
    wires: [BytesMut; 2],
    /// Delivered, not yet consumed (a partial frame).
    inputs: [BytesMut; 2],
    /// Each side's control stream was finished: [client's, server's].
    finished: [bool; 2],
    /// The connection was closed: by whom, with what.
    pub closed: Option<(Side, ErrorCode, Bytes)>,
    /// Refuse actions seen: [client's, server's].
    pub refused: [Vec<creditmux::frame::StreamId>; 2],
    /// Prioritize actions seen (the peer's requests): [client's, server's].
    pub prioritized: [Vec<(creditmux::frame::StreamId, creditmux::Priority)>; 2],
}

impl ControlPair {
    pub fn new(client: Config, server: Config) -> ControlPair {
        let now = Instant::now();
        ControlPair {
            client: ControlPlane::new(Side::Client, client, now),
            server: ControlPlane::new(Side::Server, server, now),
            now,
            wires: [BytesMut::new(), BytesMut::new()],
            inputs: [BytesMut::new(), BytesMut::new()],
            finished: [false, false],
            closed: None,
            refused: [Vec::new(), Vec::new()],
            prioritized: [Vec::new(), Vec::new()],
        }
    }

    pub fn default_pair() -> ControlPair {
        ControlPair::new(Config::default(), Config::default())
    }

    fn plane(&mut self, side: usize) -> &mut ControlPlane {
        if side == 0 {
            &mut self.client
        } else {
            &mut self.server
        }
    }

    /// Sends what each side owes, delivers it, and carries out actions.
    /// Returns true if anything moved.
    pub fn step(&mut self) -> bool {
        let now = self.now;
        let mut moved = false;
        for from in 0..2 {
            let mut out = BytesMut::new();
            self.plane(from).poll_transmit(now, &mut out);
            if !out.is_empty() && !self.finished[from] {
                self.wires[from].extend_from_slice(&out);
                moved = true;
            }
        }
        for to in 0..2 {
            let from = 1 - to;
            if !self.wires[from].is_empty() {
                let bytes = self.wires[from].split();
                self.inputs[to].extend_from_slice(&bytes);
                let mut input = std::mem::take(&mut self.inputs[to]);
                self.plane(to).handle_input(now, &mut input);
                self.inputs[to] = input;
                moved = true;
            }
        }
        for side in 0..2 {
            while let Some(action) = self.plane(side).poll_action(true) {
                moved = true;
                match action {
                    Action::FinishControl => {
                        self.finished[side] = true;
                        let leftover = self.inputs[1 - side].len();
                        self.plane(1 - side)
                            .handle_control_end(now, false, leftover);
                    }
                    Action::Close { code, reason } => {
                        if self.closed.is_none() {
                            let who = if side == 0 {
                                Side::Client
                            } else {
                                Side::Server
                            };
                            self.closed = Some((who, code, reason.clone()));
                            self.plane(side)
                                .handle_transport_end(TransportEnd::ClosedLocally);
                            let text = String::from_utf8_lossy(&reason).into_owned();
                            self.plane(1 - side)
                                .handle_transport_end(TransportEnd::ClosedByPeer {
                                    code,
                                    reason: text,
                                });
                        }
                    }
                    Action::Refuse { above } => self.refused[side].push(above),
                    Action::Prioritize { stream, priority } => {
                        self.prioritized[side].push((stream, priority))
                    }
                }
            }
        }
        moved
    }

    /// Steps until nothing moves.
    pub fn drive(&mut self) {
        for _ in 0..10_000 {
            if !self.step() {
                return;
            }
        }
        panic!("the control pair did not settle");
    }

    /// Advances to the earliest timer (at most `limit` ahead), runs it on
    /// both, and drives. False if none was due before `limit`.
    pub fn advance(&mut self, limit: Duration) -> bool {
        let end = self.now + limit;
        let next = [self.client.poll_timeout(), self.server.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
        match next {
            Some(at) if at <= end => {
                self.now = self.now.max(at);
                let now = self.now;
                self.client.handle_timeout(now);
                self.server.handle_timeout(now);
                self.drive();
                true
            }
            _ => {
                self.now = end;
                false
            }
        }
    }

    /// Runs timers and drives for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        self.drive();
        while self.advance(end.saturating_duration_since(self.now)) {}
        self.now = self.now.max(end);
    }

    /// Raw bytes from one side's control stream to the other's input, as a
    /// peer that is not this implementation would write them.
    pub fn inject(&mut self, to_server: bool, bytes: &[u8]) {
        let to = usize::from(to_server);
        self.wires[1 - to].extend_from_slice(bytes);
    }
}
