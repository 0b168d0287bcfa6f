//! Stream helpers the scenarios share: writing, sinking, echoing,
//! finishing with an acknowledgement, joining tasks.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

use crate::harness::Res;
use crate::transports::{BoxStream, s};

/// The largest write, and the size of the sinks' read buffers.
pub(super) const CHUNK: usize = 256 * 1024;
/// What bulk streams write: any prefix of it.
pub(super) static PAYLOAD: [u8; CHUNK] = [0xab; CHUNK];
/// The byte every request/response request is made of: a server in
/// [`echo_or_sink`] tells a request stream from a bulk one by it.
pub(super) const REQUEST_BYTE: u8 = 0x5a;

/// Writes `total` bytes in writes of `write` bytes (at most [`CHUNK`]),
/// then flushes.
pub(super) async fn write_bytes(stream: &mut BoxStream, total: usize, write: usize) -> Res<()> {
    let write = write.clamp(1, CHUNK);
    let mut sent = 0;
    while sent < total {
        let n = write.min(total - sent);
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

/// Echoes a stream whose first byte is [`REQUEST_BYTE`]; [`sink_yielding`]
/// any other.
pub(super) async fn echo_or_sink(stream: &mut BoxStream) -> Res<()> {
    let mut buf = vec![0u8; CHUNK];
    let n = stream.read(&mut buf).await.map_err(s)?;
    if n > 0 && buf[0] == REQUEST_BYTE {
        stream.write_all(&buf[..n]).await.map_err(s)?;
        stream.flush().await.map_err(s)?;
        return echo(stream).await;
    }
    while n != 0 && stream.read(&mut buf).await.map_err(s)? != 0 {
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
    join_each(tasks).await.map(drop)
}

/// Waits for every task; their values in order, or the first error.
pub(super) async fn join_each<T>(tasks: Vec<JoinHandle<Res<T>>>) -> Res<Vec<T>> {
    let mut values = Vec::with_capacity(tasks.len());
    let mut first_error = None;
    for task in tasks {
        match task.await.map_err(s).and_then(|r| r) {
            Ok(value) => values.push(value),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    first_error.map_or(Ok(values), Err)
}

pub(super) fn mib_per_s(bytes: usize, elapsed: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / elapsed.as_secs_f64()
}
