//! A delay path on loopback: a TCP proxy that carries every connection it
//! accepts to a target over a simulated link with a fixed one-way delay,
//! a bandwidth cap and a bounded queue, one link per direction. The tests
//! (through tests/support) and the peer benchmark (benches/peers, which
//! includes this file by path) both use it.
//!
//! Why a cap: the proxy ends TCP on both sides, so a sender's TCP sees a
//! loopback peer that takes whatever it is handed. With a delay alone,
//! raw TCP would run at loopback speed while a windowed multiplexer waits
//! a round trip per window. A rate and a bounded queue make the path bound
//! every implementation alike.
//!
//! The model, per direction: a chunk the proxy reads joins the link's
//! queue, leaves once the chunks ahead of it have left, takes
//! `len / rate` to leave, and is delivered `delay` after it left
//! ([`Pacer`]). The end of the stream travels the same way, behind the
//! bytes before it. All connections share the direction's link (its rate
//! and its room), so N TCP connections get the same path as N streams
//! over one connection.
//!
//! Bounded: a direction holds at most [`Link::room`] bytes (those waiting
//! to leave plus those on their way, one bandwidth-delay product of them
//! at full rate). A reader reads only when a whole read fits in that
//! room, so once it is full, backpressure reaches the sender through TCP.
//! Every queue follows from the room: each queued chunk holds at least
//! one byte of it.
//!
//! Not modelled: loss, reordering, jitter. TCP's own acknowledgements run
//! over the loopback hops on either side, so only the carried bytes see
//! the delay. A destination that stops reading keeps its chunks, and
//! their share of the room, until its socket takes them (a real link
//! would hand them to the receiver's kernel regardless).
//!
//! Errors (connecting to the target, reading, writing) end that
//! connection: both sockets are reset. They never panic.

#![allow(dead_code)]

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

/// The largest read, in bytes: 0.5 ms at 1 Gbit/s, so the pacing stays
/// fine-grained.
const READ_CHUNK: usize = 64 * 1024;

/// The smallest queue, in bytes, so that a read always fits.
const MIN_QUEUE: usize = READ_CHUNK;

/// One direction of the path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Link {
    /// Added to every byte's trip, after it has left the queue.
    pub delay: Duration,
    /// The rate at which bytes leave the queue, in bits per second.
    pub bits_per_second: u64,
    /// Bytes that may wait to leave, beyond those on their way (the
    /// bottleneck's buffer).
    pub queue: usize,
}

impl Link {
    /// A link with a queue of one bandwidth-delay product (at least
    /// 64 KiB).
    pub fn new(delay: Duration, bits_per_second: u64) -> Link {
        let mut link = Link {
            delay,
            bits_per_second: bits_per_second.max(1),
            queue: 0,
        };
        link.queue = link.bdp().max(MIN_QUEUE);
        link
    }

    /// The bytes on their way at full rate: rate × delay.
    pub fn bdp(&self) -> usize {
        (self.bits_per_second as u128 * self.delay.as_nanos() / 8 / 1_000_000_000) as usize
    }

    /// The most bytes the proxy holds in this direction: those on their
    /// way plus the queue.
    pub fn room(&self) -> usize {
        self.bdp() + self.queue.max(MIN_QUEUE)
    }

    /// The time `len` bytes take to leave the queue at the link's rate
    /// (rounded up, so the rate is never exceeded).
    pub fn send_time(&self, len: usize) -> Duration {
        let nanos = (len as u128 * 8 * 1_000_000_000).div_ceil(self.bits_per_second as u128);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

/// When the link delivers each chunk. Pure arithmetic on the times it is
/// given, so it can be checked without sockets.
#[derive(Debug)]
pub struct Pacer {
    link: Link,
    /// When the last chunk finished leaving the queue.
    free_at: Option<Instant>,
}

impl Pacer {
    pub fn new(link: Link) -> Pacer {
        Pacer {
            link,
            free_at: None,
        }
    }

    /// Queues a chunk of `len` bytes (0: the end of the stream) that
    /// arrived at the proxy at `now`, and returns when it is delivered.
    /// It starts leaving when the link is free (or now, if it is idle),
    /// leaves `len / rate` later, and is delivered `delay` after that.
    /// The delay is not part of the link's busy time: chunks on their
    /// way overlap, as bytes in flight on a wire do.
    pub fn delivery(&mut self, now: Instant, len: usize) -> Instant {
        let start = self.free_at.map_or(now, |free| free.max(now));
        let left = start + self.link.send_time(len);
        self.free_at = Some(left);
        left + self.link.delay
    }
}

/// A direction's link, shared by every connection the proxy carries.
struct Direction {
    link: Link,
    pacer: Mutex<Pacer>,
    /// One permit per byte the direction may hold.
    room: Arc<Semaphore>,
}

impl Direction {
    fn new(link: Link) -> Arc<Direction> {
        Arc::new(Direction {
            link,
            pacer: Mutex::new(Pacer::new(link)),
            room: Arc::new(Semaphore::new(link.room())),
        })
    }

    fn delivery(&self, len: usize) -> Instant {
        let mut pacer = self.pacer.lock().unwrap_or_else(PoisonError::into_inner);
        pacer.delivery(Instant::now(), len)
    }
}

/// A listening delay proxy. Dropping it stops it and ends every
/// connection it carries.
pub struct DelayProxy {
    addr: SocketAddr,
    accepting: JoinHandle<()>,
}

impl DelayProxy {
    /// Listens on loopback and carries every connection to `target` over
    /// `link` (the same parameters each way) on the current runtime.
    pub async fn start(target: SocketAddr, link: Link) -> io::Result<DelayProxy> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let accepting = tokio::spawn(accept(
            listener,
            target,
            Direction::new(link),
            Direction::new(link),
        ));
        Ok(DelayProxy { addr, accepting })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        // The accept task owns the connections' tasks: they end with it.
        self.accepting.abort();
    }
}

/// Accepts connections and carries each on its own task. An accept error
/// stops accepting; the connections already carried go on.
async fn accept(
    listener: TcpListener,
    target: SocketAddr,
    to_target: Arc<Direction>,
    to_client: Arc<Direction>,
) {
    let mut carried = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((client, _)) => {
                    carried.spawn(carry(client, target, to_target.clone(), to_client.clone()));
                }
                Err(_) => break,
            },
            // Reap finished connections so the set holds live ones only.
            Some(_) = carried.join_next() => {}
        }
    }
    while carried.join_next().await.is_some() {}
}

/// Carries one connection until both directions have ended, or resets
/// both sockets on the first error.
async fn carry(
    client: TcpStream,
    target: SocketAddr,
    to_target: Arc<Direction>,
    to_client: Arc<Direction>,
) {
    let server = match TcpStream::connect(target).await {
        Ok(server) => server,
        Err(_) => {
            reset(&client);
            return;
        }
    };
    // The proxy writes whole chunks when they are due; Nagle would hold
    // back the small ones.
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let carried = tokio::try_join!(
        forward(&mut client_read, &mut server_write, &to_target),
        forward(&mut server_read, &mut client_write, &to_client),
    );
    if carried.is_err() {
        reset(client_read.as_ref());
        reset(server_read.as_ref());
        // Dropped, a write half would shut down (send an orderly end)
        // before the reset; forgotten, the socket just closes with the
        // read half.
        client_write.forget();
        server_write.forget();
    }
}

/// Makes closing `socket` send a reset instead of an orderly end, so
/// that the peer sees an error and not a clean end of stream.
fn reset(socket: &TcpStream) {
    // A zero linger never blocks on close (the deprecation is about
    // non-zero lingers blocking the thread).
    #[allow(deprecated)]
    let _ = socket.set_linger(Some(Duration::ZERO));
}

/// A chunk on its way, holding its bytes' share of the direction's room
/// until it is written (or dropped).
struct Segment {
    delivery: Instant,
    /// Empty: the end of the stream.
    bytes: Vec<u8>,
    _room: OwnedSemaphorePermit,
}

/// One direction of one connection: a reader that takes bytes in while
/// they fit in the room and stamps each chunk with its delivery time, and
/// a writer that writes each chunk when it is due. Returns once the end
/// of the stream has been delivered; an error ends both at once (queued
/// chunks are dropped and give their room back).
async fn forward(
    src: &mut OwnedReadHalf,
    dst: &mut OwnedWriteHalf,
    direction: &Direction,
) -> io::Result<()> {
    let read_size = READ_CHUNK.min(direction.link.room());
    // Every queued chunk holds at least one byte of room, except the
    // final end of stream: the room bounds the channel.
    let (queue, mut queued) = mpsc::channel::<Segment>(direction.link.room() + 1);
    let read = async move {
        loop {
            let mut room = direction
                .room
                .clone()
                .acquire_many_owned(read_size as u32)
                .await
                .map_err(io::Error::other)?;
            let mut bytes = vec![0u8; read_size];
            let n = src.read(&mut bytes).await?;
            bytes.truncate(n);
            // The room the bytes do not take goes back now.
            drop(room.split(read_size - n));
            let segment = Segment {
                delivery: direction.delivery(n),
                bytes,
                _room: room,
            };
            // The writer is gone only after an error, which ends this
            // future anyway.
            if queue.send(segment).await.is_err() || n == 0 {
                return Ok::<_, io::Error>(());
            }
        }
    };
    let write = async move {
        while let Some(segment) = queued.recv().await {
            tokio::time::sleep_until(segment.delivery).await;
            if segment.bytes.is_empty() {
                return dst.shutdown().await;
            }
            dst.write_all(&segment.bytes).await?;
        }
        Ok(())
    };
    tokio::try_join!(read, write).map(drop)
}
