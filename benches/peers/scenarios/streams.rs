//! Stream helpers the scenarios share: writing, sinking, echoing,
//! finishing with an acknowledgement, joining tasks.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

use crate::harness::Res;
use crate::transports::{BoxStream, s};

pub(super) const CHUNK: usize = 256 * 1024;
pub(super) static PAYLOAD: [u8; CHUNK] = [0xab; CHUNK];

pub(super) async fn write_bytes(stream: &mut BoxStream, total: usize) -> Res<()> {
    let mut sent = 0;
    while sent < total {
        let n = CHUNK.min(total - sent);
        stream.write_all(&PAYLOAD[..n]).await.map_err(s)?;
        sent += n;
    }
    stream.flush().await.map_err(s)
}

/// Reads to the end, answers "k", finishes.
pub(super) async fn sink(stream: &mut BoxStream) -> Res<()> {
    let mut buf = vec![0u8; CHUNK];
    loop {
        if stream.read(&mut buf).await.map_err(s)? == 0 {
            break;
        }
    }
    ack(stream).await
}

/// [`sink`], yielding after each read: with bytes left to read a reader
/// would otherwise keep the thread, which the echoed stream shares, for up
/// to tokio's cooperative budget.
pub(super) async fn sink_yielding(stream: &mut BoxStream) -> Res<()> {
    let mut buf = vec![0u8; CHUNK];
    while stream.read(&mut buf).await.map_err(s)? != 0 {
        tokio::task::yield_now().await;
    }
    ack(stream).await
}

/// Answers "k" and finishes.
async fn ack(stream: &mut BoxStream) -> Res<()> {
    stream.write_all(b"k").await.map_err(s)?;
    stream.flush().await.map_err(s)?;
    stream.shutdown().await.map_err(s)
}

pub(super) async fn echo(stream: &mut BoxStream) -> Res<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = stream.read(&mut buf).await.map_err(s)?;
        if n == 0 {
            return stream.shutdown().await.map_err(s);
        }
        stream.write_all(&buf[..n]).await.map_err(s)?;
        stream.flush().await.map_err(s)?;
    }
}

/// Finishes the write side and expects "k" and the end of the stream.
pub(super) async fn finish_and_ack(stream: &mut BoxStream) -> Res<()> {
    stream.shutdown().await.map_err(s)?;
    let mut ack = Vec::new();
    stream.read_to_end(&mut ack).await.map_err(s)?;
    if ack != b"k" {
        return Err(format!("expected the ack \"k\", got {} bytes", ack.len()));
    }
    Ok(())
}

pub(super) async fn join_all(tasks: Vec<JoinHandle<Res<()>>>) -> Res<()> {
    let mut first_error = None;
    for task in tasks {
        let result = task.await.map_err(s).and_then(|r| r);
        if let Err(e) = result {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

pub(super) fn mib_per_s(bytes: usize, elapsed: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / elapsed.as_secs_f64()
}
