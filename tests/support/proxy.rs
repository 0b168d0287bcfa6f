//! A fault-injecting TCP proxy on loopback: it carries one connection
//! between a client and a server and, per direction, delays bytes, cuts
//! them into small or random pieces, withholds WINDOW_UPDATEs that answer
//! no BLOCKED, stalls, or cuts the connection mid-frame. Deterministic
//! for a given seed (the pieces; timing is the machine's).
//!
//! Its queues are bounded: a direction holds at most `QUEUE` reads in
//! flight, and then stops reading, as a slow link would.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use creditmux::frame::{Decoded, Frame, FrameDecoder, PREFACE_LEN, StreamId};
use rand::{Rng, SeedableRng, rngs::StdRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, Notify, mpsc};
use tokio::time::Instant;

/// Reads in flight per direction.
const QUEUE: usize = 256;

/// How a direction hands its bytes on.
#[derive(Copy, Clone, Debug)]
pub enum Pieces {
    /// As they were read.
    AsRead,
    /// One byte per write.
    Bytes,
    /// Writes of 1..=max bytes, chosen by the seed.
    Random(usize),
}

/// What happens to one direction.
#[derive(Clone, Debug)]
pub struct Faults {
    /// Added to every byte's trip.
    pub delay: Duration,
    pub pieces: Pieces,
    /// Drop every WINDOW_UPDATE in this direction that is not the first
    /// one for its scope after a BLOCKED for that scope went the other
    /// way (the probe's answer, SPEC §11.3): withheld updates.
    pub withhold_updates: bool,
    /// After this many bytes, hold everything for this long.
    pub stall: Option<(u64, Duration)>,
    /// After this many bytes, cut the connection (both directions).
    pub cut_after: Option<u64>,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            delay: Duration::ZERO,
            pieces: Pieces::AsRead,
            withhold_updates: false,
            stall: None,
            cut_after: None,
        }
    }
}

/// Faults for each direction.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    pub seed: u64,
    pub to_server: Faults,
    pub to_client: Faults,
}

/// BLOCKED scopes seen going one way, each allowing one WINDOW_UPDATE
/// back.
#[derive(Default)]
struct Answers {
    /// Index 0: seen toward the server (answers go toward the client).
    owed: [Vec<StreamId>; 2],
}

/// What the proxy saw, for the test to check.
#[derive(Debug, Default, Clone)]
pub struct Seen {
    pub updates_dropped: u64,
    pub updates_passed: u64,
    pub blocked: u64,
}

pub struct Proxy {
    pub addr: SocketAddr,
    pub seen: Arc<std::sync::Mutex<Seen>>,
}

impl Proxy {
    /// Listens on loopback; the first connection to it is carried to
    /// `target` under `plan`.
    pub async fn start(target: SocketAddr, plan: Plan) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(std::sync::Mutex::new(Seen::default()));
        let seen2 = seen.clone();
        tokio::spawn(async move {
            let (client, _) = listener.accept().await.unwrap();
            let server = TcpStream::connect(target).await.unwrap();
            client.set_nodelay(true).unwrap();
            server.set_nodelay(true).unwrap();
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            // Withholding updates one way needs the BLOCKED frames of the
            // other way: both are parsed then.
            let parse = plan.to_server.withhold_updates || plan.to_client.withhold_updates;
            let shared = Arc::new(Shared {
                answers: Mutex::new(Answers::default()),
                cut: Notify::new(),
                is_cut: AtomicBool::new(false),
                seen: seen2,
            });
            let up = tokio::spawn(pump(
                cr,
                sw,
                plan.to_server.clone(),
                plan.seed,
                0,
                parse,
                shared.clone(),
            ));
            let down = tokio::spawn(pump(
                sr,
                cw,
                plan.to_client.clone(),
                plan.seed ^ 0x5555,
                1,
                parse,
                shared,
            ));
            let _ = tokio::join!(up, down);
        });
        Proxy { addr, seen }
    }
}

/// State both directions share.
struct Shared {
    answers: Mutex<Answers>,
    cut: Notify,
    is_cut: AtomicBool,
    seen: Arc<std::sync::Mutex<Seen>>,
}

/// One direction: read, filter, cut, then hand to the writer task that
/// delays and splits. `dir`: 0 toward the server, 1 toward the client.
async fn pump(
    mut src: OwnedReadHalf,
    dst: OwnedWriteHalf,
    faults: Faults,
    seed: u64,
    dir: usize,
    parse: bool,
    shared: Arc<Shared>,
) {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>(QUEUE);
    let writer = tokio::spawn(write_out(dst, rx, faults.clone(), seed));
    let mut filter = parse.then(|| {
        (
            FrameDecoder::new((1 << 24) - 1),
            BytesMut::new(),
            PREFACE_LEN,
        )
    });
    let mut total = 0u64;
    let mut stalled = false;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = tokio::select! {
            read = src.read(&mut buf) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            },
            () = shared.cut.notified() => break,
        };
        if shared.is_cut.load(Ordering::SeqCst) {
            break;
        }
        let mut out = buf[..n].to_vec();
        if let Some((decoder, pending, preface)) = &mut filter {
            let drop_updates = faults.withhold_updates;
            out = filter_frames(&out, decoder, pending, preface, dir, drop_updates, &shared).await;
        }
        if let Some(limit) = faults.cut_after
            && total + out.len() as u64 >= limit
        {
            out.truncate((limit - total) as usize);
            let _ = tx.send((Instant::now() + faults.delay, out)).await;
            shared.is_cut.store(true, Ordering::SeqCst);
            shared.cut.notify_waiters();
            break;
        }
        total += out.len() as u64;
        if let Some((after, hold)) = faults.stall
            && !stalled
            && total >= after
        {
            stalled = true;
            let _ = tx.send((Instant::now() + faults.delay, out)).await;
            tokio::time::sleep(hold).await;
            continue;
        }
        if tx.send((Instant::now() + faults.delay, out)).await.is_err() {
            break;
        }
    }
    drop(tx);
    let _ = writer.await;
}

async fn write_out(
    mut dst: OwnedWriteHalf,
    mut rx: mpsc::Receiver<(Instant, Vec<u8>)>,
    faults: Faults,
    seed: u64,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    while let Some((due, bytes)) = rx.recv().await {
        tokio::time::sleep_until(due).await;
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let n = match faults.pieces {
                Pieces::AsRead => rest.len(),
                Pieces::Bytes => 1,
                Pieces::Random(max) => rng.random_range(1..=max.max(1)).min(rest.len()),
            };
            if dst.write_all(&rest[..n]).await.is_err() {
                return;
            }
            rest = &rest[n..];
        }
    }
    // The end of the source, or a cut (the peer then sees the connection
    // end, possibly mid-frame).
    let _ = dst.shutdown().await;
}

/// Passes the frames in `input` on, re-encoded, and records this
/// direction's BLOCKED frames for the other one; with `drop_updates`,
/// drops the WINDOW_UPDATEs that answer no BLOCKED.
async fn filter_frames(
    input: &[u8],
    decoder: &mut FrameDecoder,
    pending: &mut BytesMut,
    preface: &mut usize,
    dir: usize,
    drop_updates: bool,
    shared: &Shared,
) -> Vec<u8> {
    let seen = &shared.seen;
    let mut out = BytesMut::new();
    let mut input = input;
    if *preface > 0 {
        let n = (*preface).min(input.len());
        out.extend_from_slice(&input[..n]);
        *preface -= n;
        input = &input[n..];
    }
    pending.extend_from_slice(input);
    let mut answers = shared.answers.lock().await;
    while let Ok(Some(decoded)) = decoder.decode_next(pending) {
        let Decoded::Frame(frame) = decoded else {
            continue;
        };
        match &frame {
            Frame::WindowUpdate(u) if drop_updates => {
                // An answer is owed for this scope if a BLOCKED for it
                // went the other way (dir ^ 1 recorded it).
                let owed = &mut answers.owed[dir ^ 1];
                if let Some(at) = owed.iter().position(|s| *s == u.stream) {
                    owed.swap_remove(at);
                    seen.lock().unwrap().updates_passed += 1;
                } else {
                    seen.lock().unwrap().updates_dropped += 1;
                    continue;
                }
            }
            Frame::Blocked(b) => {
                let scope = match b.on {
                    creditmux::frame::BlockedOn::Stream(id) => id,
                    _ => StreamId::CONNECTION,
                };
                answers.owed[dir].push(scope);
                seen.lock().unwrap().blocked += 1;
            }
            _ => {}
        }
        frame.encode(&mut out);
    }
    out.to_vec()
}
