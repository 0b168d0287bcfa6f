//! The output buffer `poll_transmit` fills: small frames are packed into one
//! contiguous chunk, large DATA payloads are passed by reference, so a
//! vectored write sends them without copying.

use std::collections::VecDeque;

use bytes::{Buf, Bytes, BytesMut};

/// Payloads at or below this size are copied next to their header; larger
/// ones become their own chunk (one reference count, no copy).
const INLINE_PAYLOAD: usize = 1024;

/// Bytes waiting for the transport, as a queue of chunks.
#[derive(Debug, Default)]
pub struct TransmitBuf {
    chunks: VecDeque<Bytes>,
    scratch: BytesMut,
    len: usize,
}

impl TransmitBuf {
    /// An empty buffer.
    pub fn new() -> TransmitBuf {
        TransmitBuf::default()
    }

    /// Total bytes waiting.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends small bytes (a header, a control frame).
    pub(crate) fn put_slice(&mut self, bytes: &[u8]) {
        self.scratch.extend_from_slice(bytes);
        self.len += bytes.len();
    }

    /// Appends a payload, by reference when it is large.
    pub(crate) fn put_bytes(&mut self, bytes: Bytes) {
        if bytes.len() <= INLINE_PAYLOAD {
            self.put_slice(&bytes);
            return;
        }
        self.seal();
        self.len += bytes.len();
        self.chunks.push_back(bytes);
    }

    /// Moves the packed small bytes into the chunk queue.
    fn seal(&mut self) {
        if !self.scratch.is_empty() {
            if self.scratch.capacity() - self.scratch.len() < 64 {
                // Leave the old allocation to the chunk; start a fresh one
                // sized for a typical burst of control frames and headers.
                let chunk =
                    std::mem::replace(&mut self.scratch, BytesMut::with_capacity(16 * 1024));
                self.chunks.push_back(chunk.freeze());
            } else {
                self.chunks.push_back(self.scratch.split().freeze());
            }
        }
    }

    /// The chunks to write, in order, for a vectored write. Call
    /// [`TransmitBuf::advance`] with the number of bytes written.
    pub fn chunks(&mut self) -> impl Iterator<Item = &[u8]> {
        self.seal();
        self.chunks.iter().map(|c| c.as_ref())
    }

    /// Drops `n` written bytes from the front.
    pub fn advance(&mut self, mut n: usize) {
        debug_assert!(n <= self.len);
        self.len -= n.min(self.len);
        while n > 0 {
            let Some(front) = self.chunks.front_mut() else {
                // Written bytes came from the scratch area.
                let k = n.min(self.scratch.len());
                self.scratch.advance(k);
                return;
            };
            if front.len() > n {
                front.advance(n);
                return;
            }
            n -= front.len();
            self.chunks.pop_front();
        }
    }

    /// Takes everything as one contiguous buffer (copies; for tests and
    /// transports without vectored writes).
    pub fn take_contiguous(&mut self) -> Bytes {
        self.seal();
        if self.chunks.len() == 1 {
            self.len = 0;
            return self.chunks.pop_front().unwrap_or_default();
        }
        let mut out = BytesMut::with_capacity(self.len);
        for chunk in self.chunks.drain(..) {
            out.extend_from_slice(&chunk);
        }
        self.len = 0;
        out.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_and_large_pieces_come_out_in_order() {
        let mut buf = TransmitBuf::new();
        buf.put_slice(b"ab");
        buf.put_bytes(Bytes::from(vec![7u8; 2000]));
        buf.put_slice(b"cd");
        assert_eq!(buf.len(), 2004);
        let sizes: Vec<usize> = buf.chunks().map(|c| c.len()).collect();
        assert_eq!(sizes, [2, 2000, 2]);
        buf.advance(3);
        assert_eq!(buf.len(), 2001);
        let all = buf.take_contiguous();
        assert_eq!(all.len(), 2001);
        assert_eq!(&all[1999..], b"cd");
    }
}
