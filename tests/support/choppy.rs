//! A pipe that cuts writes anywhere: vectored (so streams write their
//! frames directly, see `driver/direct.rs`), a few bytes at a time, and
//! would block every seventh call.

#![allow(dead_code)]

use creditmux::{Config, Session};

/// A pipe that writes vectored (so streams write their frames directly,
/// see `driver/direct.rs`) but takes a few bytes at a time, cutting frames
/// anywhere, and would block every seventh call.
pub struct Choppy {
    pub io: tokio::io::DuplexStream,
    pub calls: usize,
}

impl tokio::io::AsyncRead for Choppy {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Choppy {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.poll_write_vectored(cx, &[std::io::IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.calls += 1;
        if self.calls.is_multiple_of(7) {
            cx.waker().wake_by_ref();
            return std::task::Poll::Pending;
        }
        // 1, 6, 11, ... 4096 bytes: within a header, within a payload, across
        // several frames.
        let limit = [1, 6, 11, 700, 4096, 20_000][self.calls % 6];
        let mut chunk = Vec::with_capacity(limit);
        for buf in bufs {
            let take = buf.len().min(limit - chunk.len());
            chunk.extend_from_slice(&buf[..take]);
            if chunk.len() == limit {
                break;
            }
        }
        std::pin::Pin::new(&mut self.io).poll_write(cx, &chunk)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// A session pair over the two ends of a pipe, each wrapped in `Choppy`,
/// `pipe` bytes of buffer each way.
pub async fn choppy_pair(pipe: usize, config: Config) -> (Session, Session) {
    let (a, b) = tokio::io::duplex(pipe);
    let server = tokio::spawn(Session::server(Choppy { io: b, calls: 0 }, config.clone()));
    let client = Session::client(Choppy { io: a, calls: 0 }, config)
        .await
        .unwrap();
    (client, server.await.unwrap().unwrap())
}
