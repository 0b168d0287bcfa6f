//! The Sim's longer phases: a transfer of twice the connection window
//! (property 3) and a client that breaks the server's credit (property 5).

#![allow(dead_code)]

use creditmux::frame::Frame;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::TestCaseResult;

use super::*;

#[derive(Copy, Clone, Debug)]
pub enum Drain {
    /// Finish, read to the end, then release.
    ReadToEnd,
    /// Drop the handle with whatever is unread.
    Release,
    /// Reset with CANCEL, then release.
    Reset,
}

pub fn drain_strategy() -> impl Strategy<Value = Vec<Drain>> {
    proptest::collection::vec(
        prop_oneof![
            2 => Just(Drain::ReadToEnd),
            1 => Just(Drain::Release),
            1 => Just(Drain::Reset),
        ],
        1..=8,
    )
}

impl Sim {
    /// Moves `2 * window` bytes from `from` to its peer over fresh streams,
    /// as many as the peer's window ratio and stream limit allow, reading
    /// as they arrive. Fails if the transfer stalls.
    pub fn transfer_twice_the_window(&mut self, from: usize) -> TestCaseResult {
        let to = 1 - from;
        // Frame splitting was exercised before; here the point is the
        // credit, and 100-byte deliveries of megabytes cost seconds.
        self.pair.chunk = self.pair.chunk.max(64 * 1024);
        let window = u64::from(self.configs[to].connection_window());
        let per_window = window / u64::from(self.configs[to].stream_window());
        let want = per_window.clamp(1, u64::from(self.configs[to].max_incoming_streams()));
        let mut ids = Vec::new();
        for _ in 0..want {
            match self.open(from)? {
                Some(id) => ids.push(id),
                None => break,
            }
        }
        prop_assert!(
            !ids.is_empty(),
            "side {} cannot open a stream after the drain",
            from
        );
        let total = 2 * window;
        let share = total.div_ceil(ids.len() as u64);
        let mut idle_rounds = 0;
        for _ in 0..STALL_STEPS {
            let mut progress = false;
            for &id in &ids {
                let left = share - self.model(from, id).written;
                if left > 0 {
                    let len = (left as usize).min(256 * 1024);
                    progress |= self.write(from, id, len)? > 0;
                }
            }
            progress |= self.step()?;
            self.accept_all()?;
            let mut got = 0;
            for &id in &ids {
                if self.streams[to].contains_key(&id) {
                    let before = self.model(to, id).read;
                    prop_assert!(!self.read_all(to, id)?, "stream {} ended early", id);
                    progress |= self.model(to, id).read > before;
                    got += self.model(to, id).read;
                }
            }
            if got >= share * ids.len() as u64 {
                let mut pending = Vec::new();
                for &id in &ids {
                    for who in [from, to] {
                        self.finish(who, id)?;
                        pending.push((who, id));
                    }
                }
                return self.read_until_ended(pending);
            }
            idle_rounds = if progress { 0 } else { idle_rounds + 1 };
            prop_assert!(
                idle_rounds <= 2,
                "a transfer of twice the connection window stalled after {} of {} bytes; \
                 sender {:?}; receiver {:?}",
                got,
                total,
                self.conn(from).stats(),
                self.conn(to).stats()
            );
        }
        fail("transfer did not finish".into())
    }
}

impl Sim {
    /// Plays a client that breaks the server's credit: after the pair
    /// settles, DATA frames the client's core never wrote go onto the wire
    /// to the server, on the client stream `pick` chooses, `overshoot`
    /// bytes beyond the credit left for it (the lower of its stream credit,
    /// while the server still counts it, and the connection credit). The
    /// payload is the client's pattern at the server's offset, so bytes
    /// within credit that the server delivers read as the client's; frame
    /// sizes come from `sizes`, cycled.
    pub fn inject_credit_violation(
        &mut self,
        pick: &Index,
        overshoot: u64,
        sizes: &[u32],
    ) -> TestCaseResult {
        self.drive()?;
        if self.opened[CLIENT].is_empty() || self.pair.server.is_finished() {
            return Ok(());
        }
        let id = self.opened[CLIENT][pick.index(self.opened[CLIENT].len())];
        let server = &self.pair.server;
        let conn_left = server.stats().recv_window;
        let (offset, left) = match server.stream_stats(id) {
            Some(s) => (s.bytes_received, conn_left.min(s.recv_window)),
            None => (0, conn_left),
        };
        let total = left + overshoot;
        let max_frame = u64::from(self.configs[SERVER].max_frame_payload());
        let mut wire = bytes::BytesMut::new();
        let mut sent = 0u64;
        let mut i = 0;
        while sent < total {
            let size = u64::from(sizes[i % sizes.len()]).clamp(1, max_frame);
            i += 1;
            let n = size.min(total - sent);
            Frame::Data(creditmux::frame::Data {
                stream: id,
                fin: false,
                payload: pattern(key(id, CLIENT), offset + sent, n as usize).into(),
            })
            .encode(&mut wire);
            sent += n;
        }
        self.pair.to_server.inflight.extend_from_slice(&wire);
        // The server may read the bytes within credit as the client's.
        self.model(CLIENT, id).injected = offset + total;
        self.violated = true;
        Ok(())
    }
}
