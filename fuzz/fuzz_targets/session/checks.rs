//! The checks: the SUT's output decoded and held against what the peer
//! granted and the application wrote, and the invariants of its state.

use super::*;

impl Harness {
    // ----- SUT -> peer ---------------------------------------------------------

    /// One `poll_transmit`; returns the number of bytes it added.
    pub(super) fn transmit(&mut self, max: usize) -> usize {
        let wanted = self.conn.wants_transmit();
        self.ended_before_transmit = self.conn.error().is_some();
        let finished = self.conn.is_finished();
        self.conn.poll_transmit(self.now, &mut self.tx, max);
        let out = self.tx.take_contiguous();
        assert!(
            wanted || out.is_empty(),
            "wants_transmit() was false, but poll_transmit produced {} bytes",
            out.len()
        );
        if out.is_empty() && max > 0 {
            assert!(
                !self.conn.wants_transmit(),
                "poll_transmit added nothing, yet wants_transmit() stays true \
                 (finished before: {finished})"
            );
        }
        self.on_output(&out);
        out.len()
    }

    pub(super) fn on_output(&mut self, mut bytes: &[u8]) {
        if self.preface_left > 0 {
            let n = self.preface_left.min(bytes.len());
            let start = PREFACE_LEN - self.preface_left;
            assert_eq!(
                bytes[..n],
                encode_preface()[start..start + n],
                "the SUT's output does not start with the preface"
            );
            self.preface_left -= n;
            bytes = &bytes[n..];
        }
        self.out_raw.extend_from_slice(bytes);
        loop {
            match self.out_decoder.decode_next(&mut self.out_raw) {
                Ok(Some(Decoded::Frame(frame))) => self.on_sut_frame(frame),
                Ok(Some(Decoded::Ignored(header))) => {
                    panic!("the SUT sent a frame of unknown type: {header:?}")
                }
                Ok(None) => break,
                Err(e) => panic!("the SUT sent an invalid frame: {e:?} ({e})"),
            }
        }
        assert!(
            self.out_raw.is_empty(),
            "poll_transmit left a partial frame ({} bytes)",
            self.out_raw.len()
        );
    }

    fn on_sut_frame(&mut self, frame: Frame) {
        let l = &mut self.ledger;
        // After garbage the SUT may have decoded frames the peer's ledger
        // does not know of (or misread the peer's later ones): checks that
        // depend on what the peer said are off; those about what the SUT
        // itself did stay.
        let exact = !l.peer_garbage;
        if l.sut_goaway_error {
            panic!("the SUT sent {frame:?} after a GOAWAY with an error (SPEC §13.3)");
        }
        match frame {
            Frame::Settings(s) if !s.ack => {
                assert!(!l.sut_settings_seen, "the SUT sent SETTINGS twice");
                l.sut_settings_seen = true;
                let v = s.values;
                assert_eq!(v.get(INITIAL_STREAM_WINDOW), STREAM_WINDOW);
                assert_eq!(v.get(CONNECTION_WINDOW), CONN_WINDOW);
                assert_eq!(v.get(MAX_FRAME_PAYLOAD), MAX_FRAME);
                assert_eq!(v.get(MAX_STREAMS), MAX_INCOMING);
            }
            Frame::Settings(_) => {}
            Frame::WindowUpdate(u) if u.stream.is_connection() => {
                l.sut_conn_limit = l.sut_conn_limit.max(u.limit);
            }
            Frame::WindowUpdate(u) => {
                // SPEC §8.4: no WINDOW_UPDATE on a closed stream, nor once
                // the peer has finished sending.
                assert!(
                    !l.sut_recv_reset.contains(&u.stream)
                        && !(exact && l.peer_reset_sut_recv.contains(&u.stream)),
                    "WINDOW_UPDATE on {}, whose receiving direction was reset",
                    u.stream
                );
                assert!(
                    !exact || !l.peer_fin.contains(&u.stream),
                    "WINDOW_UPDATE on {} after the peer's FIN (half-closed(remote))",
                    u.stream
                );
                let g = l
                    .sut_stream_limit
                    .entry(u.stream)
                    .or_insert(u64::from(STREAM_WINDOW));
                *g = (*g).max(u.limit);
            }
            Frame::MaxStreams(m) => l.sut_streams_limit = l.sut_streams_limit.max(m.count),
            Frame::Blocked(b) => {
                // SPEC §8.4: no BLOCKED once this side finished or the
                // stream closed.
                if let BlockedOn::Stream(id) = b.on {
                    assert!(
                        !l.sut_send_reset.contains(&id)
                            && !(exact && l.peer_reset_sut_send.contains(&id))
                            && !l.sut_fin.contains(&id),
                        "BLOCKED on {id}, whose sending direction was finished or reset"
                    );
                }
                // SPEC §11.1: the probe names the limit the SUT is stuck at,
                // which the peer must have granted.
                let known = match b.on {
                    BlockedOn::Connection => l.granted_conn,
                    BlockedOn::StreamCount => l.granted_streams,
                    BlockedOn::Stream(id) => l
                        .granted_stream
                        .get(&id)
                        .copied()
                        .unwrap_or(l.peer_stream_window),
                };
                assert!(
                    !exact || b.limit <= known,
                    "BLOCKED {:?} at {} above the granted limit {known}",
                    b.on,
                    b.limit
                );
            }
            Frame::Reset(r) => {
                // SPEC §6.6: at most one RESET covers each direction.
                if r.scope != ResetScope::Receive {
                    assert!(
                        l.sut_send_reset.insert(r.stream),
                        "a second RESET of the sending direction of {}",
                        r.stream
                    );
                }
                if r.scope != ResetScope::Send {
                    assert!(
                        l.sut_recv_reset.insert(r.stream),
                        "a second RESET of the receiving direction of {}",
                        r.stream
                    );
                }
                // SPEC §6.6: the flags only to a peer that announced them.
                assert!(
                    r.scope == ResetScope::Both || l.peer_directional_reset,
                    "RESET {:?} on {} to a peer without DIRECTIONAL_RESET",
                    r.scope,
                    r.stream
                );
            }
            Frame::Ping(p) if p.ack => {
                assert!(
                    !exact || l.peer_pings.contains(&p.payload),
                    "PING ack {:?} echoes no PING of the peer",
                    p.payload
                );
            }
            Frame::Ping(p) => l.sut_last_ping = Some(p.payload),
            Frame::GoAway(g) => {
                l.sut_goaway = true;
                if g.code != ErrorCode::NO_ERROR {
                    l.sut_goaway_error = true;
                }
            }
            Frame::Data(data) => self.on_sut_data(data),
            Frame::PriorityUpdate(p) => {
                let id = p.stream;
                // SPEC §6.10: only to a peer that announced it...
                assert!(
                    l.peer_priority_updates,
                    "PRIORITY_UPDATE on {id} to a peer without PRIORITY_UPDATES"
                );
                // ...on a stream the peer knows...
                let opened = if id.is_client_initiated() {
                    !exact || id.index() < l.peer_next_index
                } else {
                    id.index() < l.sut_announced
                };
                assert!(opened, "PRIORITY_UPDATE on {id} before it was opened");
                // ...whose data the SUT still receives...
                assert!(
                    !l.sut_recv_reset.contains(&id)
                        && !(exact && l.peer_reset_sut_recv.contains(&id))
                        && !(exact && l.peer_fin.contains(&id)),
                    "PRIORITY_UPDATE on {id}, whose receiving direction ended"
                );
                // ...and at most 500 in any 1 s.
                let now = self.now;
                let sent = &mut l.sut_priority_sent;
                while sent
                    .front()
                    .is_some_and(|&at| at + Duration::from_secs(1) <= now)
                {
                    sent.pop_front();
                }
                assert!(sent.len() < 500, "more than 500 PRIORITY_UPDATE in 1 s");
                sent.push_back(now);
            }
        }
    }

    fn on_sut_data(&mut self, data: Data) {
        let id = data.stream;
        let n = data.payload.len() as u64;
        let l = &mut self.ledger;
        let exact = !l.peer_garbage;
        assert!(
            !self.ended_before_transmit,
            "DATA on {id} after the connection ended"
        );
        assert!(
            !l.sut_fin.contains(&id) && !l.sut_send_reset.contains(&id),
            "DATA on {id} after the SUT's FIN or RESET"
        );
        assert!(
            n <= u64::from(l.peer_max_frame),
            "DATA payload {n} above the peer's MAX_FRAME_PAYLOAD"
        );
        if is_server_id(id) {
            if !l.sut_stream_sent.contains_key(&id) {
                // The frame that opens the stream (SPEC §8.2, §9.6).
                // SPEC §13.2: the sender of GOAWAY does not open streams.
                // The one exception is a stream allocated before and reset
                // before it went out: its empty opening frame (with the
                // RESET behind it) returns the stream-count credit.
                assert!(
                    !l.sut_goaway || (n == 0 && !data.fin),
                    "the SUT opened {id} after sending GOAWAY (SPEC §13.2)"
                );
                // SPEC §8.2 rule 3: in increasing order. A gap is allowed:
                // it implicitly opens and closes the skipped ids (one the
                // SUT allocated may have been reset before it went out).
                assert!(
                    id.index() >= l.sut_announced,
                    "the SUT opened {id} out of order"
                );
                assert!(
                    !exact || id.index() < l.granted_streams,
                    "the SUT opened {id} beyond MAX_STREAMS {}",
                    l.granted_streams
                );
                assert!(
                    self.opened.contains(&id),
                    "DATA on {id}, which open() never returned"
                );
                l.sut_announced = id.index() + 1;
            }
        } else {
            assert!(
                !exact || id.index() < l.peer_next_index,
                "DATA on peer stream {id}, which the peer never opened"
            );
        }
        let sent = l.sut_stream_sent.entry(id).or_insert(0);
        let off = *sent;
        *sent += n;
        let stream_limit = l
            .granted_stream
            .get(&id)
            .copied()
            .unwrap_or(l.peer_stream_window);
        assert!(
            !exact || *sent <= stream_limit,
            "DATA on {id} up to offset {} beyond the granted stream limit {stream_limit}",
            *sent
        );
        l.sut_conn_sent += n;
        assert!(
            !exact || l.sut_conn_sent <= l.granted_conn,
            "DATA up to connection offset {} beyond the granted limit {}",
            l.sut_conn_sent,
            l.granted_conn
        );
        let written = self.written.get(&id).copied().unwrap_or(0);
        assert!(
            off + n <= written,
            "DATA on {id} up to {} but the application wrote {written}",
            off + n
        );
        assert!(
            data.payload == pattern_bytes(id, false, off, n as usize),
            "DATA on {id} at offset {off} carries bytes the application did not write there"
        );
        assert!(
            !exact || !l.peer_reset_sut_send.contains(&id),
            "DATA on {id} after the peer reset it"
        );
        if data.fin {
            l.sut_fin.insert(id);
        }
    }

    pub(super) fn drain_events(&mut self) {
        for _ in 0..100_000 {
            match self.conn.poll_event() {
                None => return,
                Some(Event::Stream(_) | Event::Connection) => {}
            }
        }
        panic!("poll_event never returns None");
    }

    pub(super) fn timeout(&mut self) {
        self.conn.handle_timeout(self.now);
        if let Some(at) = self.conn.poll_timeout() {
            assert!(
                at > self.now,
                "a timer is still due after handle_timeout: the driver would spin"
            );
        }
    }

    // ----- invariants ---------------------------------------------------------

    pub(super) fn check(&mut self) {
        let stats = self.conn.stats();
        match (&self.first_error, self.conn.error()) {
            (None, None) => {}
            (None, Some(err)) => {
                self.check_error_cause(err);
                self.first_error = Some((err.clone(), stats.frames_received));
            }
            (Some((first, frames)), now) => {
                assert_eq!(Some(first), now, "the connection error changed");
                assert_eq!(
                    stats.frames_received, *frames,
                    "input was processed after the connection ended"
                );
            }
        }
        if self.conn.is_finished() {
            assert_eq!(
                self.conn.poll_timeout(),
                None,
                "a finished connection keeps a timer armed"
            );
        }
        assert_eq!(
            stats.transport_bytes_received, self.received,
            "transport_bytes_received differs from the bytes delivered"
        );
        // Every DATA byte the SUT counts as sent is on the wire: written by
        // poll_transmit, or directly and not given back.
        assert_eq!(
            stats.data_bytes_sent, self.ledger.sut_conn_sent,
            "data_bytes_sent differs from the DATA bytes on the wire"
        );

        // The protocol's invariants (windows, conservation, the peer's
        // stream limit, control reserve, probes), as proto/model has them:
        // one checker, shared with the property tests. Garbage may decode
        // as frames on ids the test never saw: then the streams found are
        // a subset and the sums are lower bounds.
        let exact = !self.ledger.peer_garbage;
        let ids: Vec<StreamId> = self.ids.iter().copied().collect();
        if let Err(violation) = self.checker.check(&self.conn, self.now, ids, exact) {
            panic!("{violation}");
        }
        let mut known = 0u64;
        let mut local_streams = 0u64;
        let mut send_buffered = 0u64;
        for &id in &self.ids {
            let Some(s) = self.conn.stream_stats(id) else {
                continue;
            };
            known += 1;
            if !id.is_client_initiated() {
                local_streams += 1;
            }
            send_buffered += s.send_buffered;
        }
        assert!(
            stats.open_streams == known || (!exact && stats.open_streams > known),
            "open_streams is {}, the test finds {known} streams",
            stats.open_streams
        );
        assert!(stats.open_streams <= u64::from(MAX_INCOMING) + local_streams);
        assert!(
            stats.accept_backlog <= u64::from(BACKLOG),
            "accept backlog {} above {BACKLOG}",
            stats.accept_backlog
        );
        // SPEC §16.3: the memory bound follows from the configuration.
        let bound = config().max_buffered_bytes(local_streams);
        assert!(
            stats.recv_buffered + send_buffered <= bound,
            "{} + {send_buffered} bytes buffered, bound {bound}",
            stats.recv_buffered
        );
    }

    /// The SUT may blame the peer only for what the peer did.
    fn check_error_cause(&self, err: &ConnectionError) {
        let l = &self.ledger;
        match err {
            ConnectionError::ProtocolViolation { code, reason } => {
                if *code == ErrorCode::FLOW_CONTROL_ERROR {
                    assert!(
                        l.peer_over_credit || l.peer_garbage,
                        "FLOW_CONTROL_ERROR ({reason}) though the peer kept within the announced credit"
                    );
                }
                if *code == ErrorCode::STREAM_LIMIT_ERROR {
                    assert!(
                        l.peer_over_streams || l.peer_garbage,
                        "STREAM_LIMIT_ERROR ({reason}) though the peer kept within MAX_STREAMS"
                    );
                }
            }
            ConnectionError::Frame(e) => {
                assert!(l.peer_garbage, "frame error {e:?} on well-formed frames");
            }
            ConnectionError::Preface(e) => {
                assert!(l.peer_garbage, "preface error {e:?} on a valid preface");
            }
            _ => {}
        }
    }
}
