//! yamux 0.13 as a peer. Its `Connection` is a poll-based state machine
//! without handles, so one task owns it: it drives the socket, hands out
//! outbound streams on request and passes inbound streams on. Streams speak
//! futures-io and are adapted to tokio with `tokio_util::compat`.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::Arc;
use std::task::Poll;

use tokio::net::TcpStream;
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio_util::compat::{FuturesAsyncReadCompatExt, TokioAsyncReadCompatExt};
use yamux::{Config, Connection, Mode};

use crate::harness::{BoxFut, Res};
use crate::transports::{BoxStream, Client, Limits, Server, s};

enum Command {
    Open(oneshot::Sender<Res<yamux::Stream>>),
    Close(oneshot::Sender<()>),
}

fn config(limits: Limits) -> Config {
    let mut config = Config::default();
    config.set_max_num_streams(limits.max_streams as usize);
    config
}

/// Owns the connection until it ends.
async fn drive(
    mut conn: Connection<tokio_util::compat::Compat<TcpStream>>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    inbound: mpsc::UnboundedSender<yamux::Stream>,
) {
    let mut opening: VecDeque<oneshot::Sender<Res<yamux::Stream>>> = VecDeque::new();
    let mut closing: Option<oneshot::Sender<()>> = None;
    let mut commands_open = true;
    poll_fn(|cx| {
        while commands_open {
            match commands.poll_recv(cx) {
                Poll::Ready(Some(Command::Open(reply))) => opening.push_back(reply),
                Poll::Ready(Some(Command::Close(reply))) => closing = Some(reply),
                Poll::Ready(None) => commands_open = false,
                Poll::Pending => break,
            }
        }
        if closing.is_some() {
            if conn.poll_close(cx).is_ready() {
                if let Some(reply) = closing.take() {
                    let _ = reply.send(());
                }
                return Poll::Ready(());
            }
            return Poll::Pending;
        }
        while !opening.is_empty() {
            match conn.poll_new_outbound(cx) {
                Poll::Ready(result) => {
                    if let Some(reply) = opening.pop_front() {
                        let _ = reply.send(result.map_err(s));
                    }
                }
                Poll::Pending => break,
            }
        }
        loop {
            match conn.poll_next_inbound(cx) {
                Poll::Ready(Some(Ok(stream))) => {
                    let _ = inbound.send(stream);
                }
                Poll::Ready(Some(Err(_))) | Poll::Ready(None) => return Poll::Ready(()),
                Poll::Pending => return Poll::Pending,
            }
        }
    })
    .await
}

struct YamuxServer {
    inbound: Mutex<mpsc::UnboundedReceiver<yamux::Stream>>,
    _commands: mpsc::UnboundedSender<Command>,
}

impl Server for YamuxServer {
    fn accept(&self) -> BoxFut<'_, Res<Option<BoxStream>>> {
        Box::pin(async move {
            let stream = self.inbound.lock().await.recv().await;
            Ok(stream.map(|st| Box::new(st.compat()) as BoxStream))
        })
    }
}

struct YamuxClient {
    commands: mpsc::UnboundedSender<Command>,
}

impl Client for YamuxClient {
    fn open(&self) -> BoxFut<'_, Res<BoxStream>> {
        Box::pin(async move {
            let (tx, rx) = oneshot::channel();
            self.commands
                .send(Command::Open(tx))
                .map_err(|_| "yamux connection ended".to_string())?;
            let stream = rx
                .await
                .map_err(|_| "yamux connection ended".to_string())??;
            Ok(Box::new(stream.compat()) as BoxStream)
        })
    }

    fn close(&self) -> BoxFut<'_, ()> {
        Box::pin(async move {
            let (tx, rx) = oneshot::channel();
            if self.commands.send(Command::Close(tx)).is_ok() {
                let _ = tokio::time::timeout(std::time::Duration::from_secs(1), rx).await;
            }
        })
    }
}

fn start(
    socket: TcpStream,
    limits: Limits,
    mode: Mode,
) -> (
    mpsc::UnboundedSender<Command>,
    mpsc::UnboundedReceiver<yamux::Stream>,
) {
    let conn = Connection::new(socket.compat(), config(limits), mode);
    let (commands_tx, commands_rx) = mpsc::unbounded_channel();
    let (inbound_tx, inbound_rx) = mpsc::unbounded_channel();
    tokio::spawn(drive(conn, commands_rx, inbound_tx));
    (commands_tx, inbound_rx)
}

pub fn server(socket: TcpStream, limits: Limits) -> Arc<dyn Server> {
    let (commands, inbound) = start(socket, limits, Mode::Server);
    Arc::new(YamuxServer {
        inbound: Mutex::new(inbound),
        _commands: commands,
    })
}

pub fn client(socket: TcpStream, limits: Limits) -> Arc<dyn Client> {
    let (commands, _inbound) = start(socket, limits, Mode::Client);
    Arc::new(YamuxClient { commands })
}
