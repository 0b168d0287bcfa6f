//! Direct writes and reads: an application task writes its stream's DATA
//! frames to the transport itself, from its own buffer, and reads the
//! transport itself when its stream has nothing buffered.
//!
//! The queued path copies each write into the stream's send buffer, wakes
//! the driver task, and the driver writes the copy. When nothing else is
//! waiting to go out, that copy and that task hop buy nothing: the frames
//! the driver would write next are exactly these. So the writing task
//! frames the bytes (the core decides how many and accounts for them, see
//! `Connection::direct_allowance`) and hands header and payload slices to
//! one vectored write, without waiting: a transport that would block makes
//! it fall back to the send buffer. Bytes the transport took only part of
//! are copied into the writer's buffer, which the driver empties before
//! anything else, so frames are never interleaved.
//!
//! A flush (or a shutdown) waits for exactly one thing: the driver's next
//! write turn. With the writer free, the flushing task takes that turn
//! itself (`transmit_direct`): every stream's owed frames, in the order the
//! driver would write them, then the transport's flush.
//!
//! On the read side the hop is the driver task waking the stream's task
//! for every message. The transport's read side is registered with one
//! waker whoever polls it (`ReadWake`), which wakes the last task that
//! found its stream empty and then the driver. Woken first, that task
//! reads and handles the input itself, exactly as the driver would, and
//! usually finds its bytes; the driver's turn after it finds the transport
//! drained. Every read goes through the shared `Reader`, so input is fed
//! to the core in order whoever reads it.

use std::io::IoSlice;
use std::task::{Context, Poll, Waker};

use tokio::io::ReadBuf;

use bytes::Bytes;

use super::shared::{Inner, Shared, Writer};
use crate::error::ConnectionError;
use crate::frame::{Data, HEADER_LEN, StreamId};

/// Frames per direct write (two slices each).
const MAX_FRAMES: usize = 32;
/// Bytes per direct write.
const MAX_BYTES: usize = 256 * 1024;

impl Shared {
    /// Writes the front of `data` as DATA frames of stream `id`, if the
    /// core allows it now and the writer is free. Returns the bytes taken;
    /// 0 means the caller queues them instead. The caller holds no lock.
    ///
    /// Lock order (see `shared.rs`): the writer first, never waited for,
    /// then the core for a moment to reserve the credit
    /// (`Connection::commit_direct`); the write itself (TLS encryption
    /// included) happens holding only the writer; then the core again to
    /// give back what the transport did not take (`rollback_direct`).
    /// Holding the writer is what keeps every other frame off the wire
    /// meanwhile, so the reservation is exact.
    pub(crate) fn write_direct(&self, id: StreamId, data: &[u8]) -> usize {
        if !self.direct_writes {
            return 0;
        }
        let Some(mut writer) = self.try_writer() else {
            return 0;
        };
        if !writer.tx.is_empty() {
            return 0;
        }
        let plan = {
            let mut inner = self.lock_for("write_direct: reserve");
            if inner.driver_done {
                return 0;
            }
            let allowance = inner.conn.direct_allowance(id).min(data.len());
            if allowance == 0 {
                return 0;
            }
            let max_frame = inner.conn.peer_max_frame_payload();
            let plan = Plan::new(id, &data[..allowance.min(MAX_BYTES)], max_frame);
            inner.conn.commit_direct(id, plan.bytes(), plan.frames);
            plan
        };

        // The driver's waker stays registered with the transport: a write
        // that would block is not retried here (see `handoff`).
        let mut cx = Context::from_waker(Waker::noop());
        let outcome = {
            let mut slices = [IoSlice::new(&[]); 2 * MAX_FRAMES];
            let count = plan.slices(&mut slices);
            match writer
                .io
                .as_mut()
                .poll_write_vectored(&mut cx, &slices[..count])
            {
                Poll::Ready(Ok(n)) => Ok(n),
                Poll::Pending => Ok(0),
                Poll::Ready(Err(err)) => Err(err),
            }
        };
        let written = *outcome.as_ref().unwrap_or(&0);
        writer.written += written as u64;
        let (bytes, frames) = plan.commit(written, &mut writer);
        // Transports that buffer (TLS) send on flush.
        let flushed =
            written > 0 && matches!(writer.io.as_mut().poll_flush(&mut cx), Poll::Ready(Ok(())));

        let mut inner = self.lock_for("write_direct: commit");
        inner
            .conn
            .rollback_direct(id, plan.bytes() - bytes, plan.frames - frames);
        if let Err(err) = outcome {
            // The driver sees the failed connection and ends it.
            inner.conn.handle_transport_error(ConnectionError::io(&err));
            inner.dispatch();
            inner.wake_driver();
            return 0;
        }
        if written == 0 {
            return 0;
        }
        if flushed {
            inner.note_flushed(writer.written);
        }
        if !writer.tx.is_empty() || !flushed {
            Self::handoff(&mut inner, &mut writer);
        }
        bytes
    }

    /// Writes what the core owes (every stream's frames, in the order the
    /// driver would write them) from the calling task, if the writer is
    /// free and holds nothing: the driver's write turn without the hop to
    /// the driver task. A flush waits on exactly that turn, so a task that
    /// flushes (or finishes) takes it itself. The caller holds no lock;
    /// the locks are taken as in `write_direct`: the writer, the core for
    /// `poll_transmit`, the write holding only the writer, then the core
    /// to record the flush. A transport that would block, or a flush that
    /// cannot complete now, is left to the driver (see `handoff`).
    pub(crate) fn transmit_direct(&self) {
        if !self.direct_writes {
            return;
        }
        let Some(mut writer) = self.try_writer() else {
            return;
        };
        if !writer.tx.is_empty() {
            return;
        }
        // The driver's waker stays registered with the transport: a write
        // or flush that would block is left to the driver (see `handoff`).
        let mut cx = Context::from_waker(Waker::noop());
        let outcome = self.write_turn(&mut writer, &mut cx, super::now());
        let mut inner = self.lock_for("transmit_direct: done");
        // A write error is left to the driver with its bytes too: it
        // writes again, meets the error, and ends the connection its way
        // (reading the input already on its way first, which may say why,
        // SPEC §13.3). So is a connection the transmit ended (a drained
        // graceful close), which the driver shuts down.
        if outcome.is_err()
            || !writer.tx.is_empty()
            || writer.flush_pending
            || inner.conn.is_finished()
        {
            Self::handoff(&mut inner, &mut writer);
        } else {
            // A deadline the transmit set (a PING written, a probe).
            inner.after_task_change();
        }
    }

    /// Leaves the rest of a direct write to the driver, which writes with
    /// its own waker registered.
    fn handoff(inner: &mut Inner, writer: &mut Writer) {
        writer.flush_pending = true;
        writer.progress_at = super::now();
        inner.owe_driver_turn();
    }

    /// Reads the transport from the calling task, for a stream that found
    /// nothing buffered, and feeds what came to the core. True if input
    /// (or the end) was handled: the caller looks at its stream again.
    /// False if the reader is busy or closed, or nothing has arrived; then
    /// `waker` is woken at the next readiness, with the driver.
    ///
    /// The caller holds no lock: the read (TLS decryption included) holds
    /// only the reader, and the core is locked after it to handle the
    /// input exactly as the driver would (the driver's order: reader, then
    /// core). The driver is then woken for what it must write, and owed a
    /// turn for deadlines the input set and for the transport's end.
    pub(crate) fn read_direct(&self, waker: &Waker) -> bool {
        let Some(mut reader) = self.try_reader() else {
            return false;
        };
        if reader.closed {
            return false;
        }
        match reader.poll_fill(&self.read_waker) {
            Poll::Pending => {
                self.read_wake.set_app(waker);
                false
            }
            Poll::Ready(read) => {
                let mut inner = self.lock_for("read_direct: feed");
                reader.feed(&mut inner, super::now(), read);
                if !reader.closed {
                    drop(inner);
                    // Once more, until the transport is empty (after a short
                    // read that costs no system call): the shared waker is
                    // then registered again, and the driver's turn for this
                    // readiness finds nothing to do (`Driver::idle_wake`).
                    let again = reader.poll_fill(&self.read_waker);
                    inner = self.lock_for("read_direct: feed again");
                    if let Poll::Ready(read) = again {
                        reader.feed(&mut inner, super::now(), read);
                    }
                }
                // The driver writes what the input made owed, and re-arms
                // its timer if the input set an earlier deadline (or learns
                // that the read buffer is in use again).
                if reader.closed || std::mem::take(&mut reader.reallocated) {
                    inner.owe_driver_turn();
                } else {
                    inner.after_task_change();
                }
                true
            }
        }
    }
}

/// Smallest payload rest worth a read of its own into the caller's buffer:
/// below it, one read of the transport for several frames costs less than
/// the copy it saves.
pub(crate) const DIRECT_PAYLOAD_MIN: usize = 16 * 1024;

impl Shared {
    /// Reads up to `want` bytes of the DATA payload in progress for stream
    /// `id` (the core allowed that many, `Connection::direct_payload`, under
    /// a lock the caller has since released) from the transport straight
    /// into `buf`, if no earlier input waits in the read buffer.
    ///
    /// `Some(n)`: the read was made and handled; `n` bytes were placed in
    /// `buf` (0 if the transport ended or failed, the bytes broke the
    /// peer's credit, or the stream stopped taking them meanwhile: the
    /// caller looks at its stream again and finds why). `None`: the caller
    /// goes the usual way (the read side may have registered the shared
    /// waker, as the usual way does).
    ///
    /// The read holds only the reader; the core is locked after it to
    /// account for the bytes, the reader still held so nothing else reads
    /// in between (the driver's order: reader, then core).
    pub(crate) fn read_payload_direct(
        &self,
        id: StreamId,
        want: usize,
        buf: &mut ReadBuf<'_>,
    ) -> Option<usize> {
        let want = want.min(buf.remaining());
        if want < DIRECT_PAYLOAD_MIN {
            return None;
        }
        let mut reader = self.try_reader()?;
        if reader.closed || !reader.buf.is_empty() {
            return None;
        }
        // Another reader may have fed input since the caller looked,
        // moving the decoder into (or past) the payload: ask again with
        // the reader held, so the count holds until the commit. Reading
        // past the rest of the payload would take bytes of the frames
        // after it off the transport, which the commit refuses: they
        // would be lost and the input misread from there on.
        let want = {
            let inner = self.lock_for("read_payload_direct: look again");
            inner.conn.direct_payload(id).min(want)
        };
        if want < DIRECT_PAYLOAD_MIN {
            return None;
        }
        let mut cx = Context::from_waker(&self.read_waker);
        // Zeroes the caller's bytes only where they were never
        // initialised (`read` into a slice: never).
        let mut dst = ReadBuf::new(buf.initialize_unfilled_to(want));
        let poll = reader.io.as_mut().poll_read(&mut cx, &mut dst);
        if poll.is_ready() {
            reader.read_around();
        }
        let read = match poll {
            Poll::Pending => return None,
            Poll::Ready(Ok(())) if !dst.filled().is_empty() => dst.filled().len(),
            Poll::Ready(end) => {
                // The end of the transport, or its failure: handled as
                // the driver would, which then ends the connection.
                let mut inner = self.lock_for("read_payload_direct: end");
                reader.feed(&mut inner, super::now(), end.map(|()| 0));
                inner.owe_driver_turn();
                return Some(0);
            }
        };
        let mut inner = self.lock_for("read_payload_direct: commit");
        let delivered = inner.conn.commit_direct_payload(super::now(), id, read);
        reader.missing = inner.conn.input_missing(reader.buf.len());
        inner.dispatch();
        inner.after_task_change();
        drop(inner);
        drop(reader);
        if !delivered {
            return Some(0);
        }
        buf.advance(read);
        Some(read)
    }
}

/// The frames one direct write carries.
struct Plan<'a> {
    headers: [[u8; HEADER_LEN]; MAX_FRAMES],
    payloads: [&'a [u8]; MAX_FRAMES],
    frames: usize,
}

impl<'a> Plan<'a> {
    fn new(id: StreamId, data: &'a [u8], max_frame: usize) -> Plan<'a> {
        let mut plan = Plan {
            headers: [[0; HEADER_LEN]; MAX_FRAMES],
            payloads: [&[]; MAX_FRAMES],
            frames: 0,
        };
        for payload in data.chunks(max_frame.max(1)).take(MAX_FRAMES) {
            plan.headers[plan.frames] = Data::header_for(id, payload.len(), false).encode();
            plan.payloads[plan.frames] = payload;
            plan.frames += 1;
        }
        plan
    }

    /// Payload bytes of all the frames.
    fn bytes(&self) -> usize {
        self.payloads[..self.frames].iter().map(|p| p.len()).sum()
    }

    /// Fills `slices` with header, payload, header, ...; returns the count.
    fn slices<'s>(&'s self, slices: &mut [IoSlice<'s>]) -> usize {
        for i in 0..self.frames {
            slices[2 * i] = IoSlice::new(&self.headers[i]);
            slices[2 * i + 1] = IoSlice::new(self.payloads[i]);
        }
        2 * self.frames
    }

    /// The transport took `written` bytes: every frame it began is sent,
    /// its unwritten rest copied into the writer's buffer; frames it did
    /// not begin are not. Returns the payload bytes and frames sent.
    fn commit(&self, mut written: usize, writer: &mut Writer) -> (usize, usize) {
        let mut bytes = 0;
        let mut frames = 0;
        for i in 0..self.frames {
            if written == 0 {
                break;
            }
            let header = &self.headers[i][..];
            let payload = self.payloads[i];
            frames += 1;
            bytes += payload.len();
            if written >= header.len() + payload.len() {
                written -= header.len() + payload.len();
                continue;
            }
            if written < header.len() {
                writer.tx.put_slice(&header[written..]);
                writer.tx.put_bytes(Bytes::copy_from_slice(payload));
            } else {
                let from = written - header.len();
                writer
                    .tx
                    .put_bytes(Bytes::copy_from_slice(&payload[from..]));
            }
            break;
        }
        (bytes, frames)
    }
}
