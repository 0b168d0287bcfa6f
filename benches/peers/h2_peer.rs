//! h2 0.4 as a peer: each stream is one HTTP/2 request (client to server
//! body) and its response (server to client body), over cleartext TCP
//! (h2c, prior knowledge). Received bytes release flow-control credit only
//! when the application reads them, as with the other implementations.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use h2::client::{ResponseFuture, SendRequest};
use h2::{RecvStream, SendStream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{Mutex, mpsc};

use crate::harness::{BoxFut, Res};
use crate::transports::{BoxStream, Client, Limits, Server, s};

/// The "large windows" variant: 1 MiB per stream, 16 MiB per connection.
const LARGE_STREAM_WINDOW: u32 = 1 << 20;
const LARGE_CONNECTION_WINDOW: u32 = 16 << 20;

fn io_err(e: h2::Error) -> io::Error {
    io::Error::other(e)
}

enum Recv {
    /// Client side, before the response head has arrived.
    Head(ResponseFuture),
    Body(RecvStream),
}

/// One h2 stream as a tokio byte stream.
struct H2Stream {
    send: SendStream<Bytes>,
    recv: Recv,
    leftover: Bytes,
    finished: bool,
}

impl AsyncRead for H2Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.leftover.is_empty() {
                let n = this.leftover.len().min(buf.remaining());
                buf.put_slice(&this.leftover[..n]);
                this.leftover.advance(n);
                return Poll::Ready(Ok(()));
            }
            match &mut this.recv {
                Recv::Head(response) => {
                    let response = ready!(Pin::new(response).poll(cx)).map_err(io_err)?;
                    this.recv = Recv::Body(response.into_body());
                }
                Recv::Body(body) => match ready!(body.poll_data(cx)) {
                    None => return Poll::Ready(Ok(())),
                    Some(Err(e)) => return Poll::Ready(Err(io_err(e))),
                    Some(Ok(data)) => {
                        // Read by the application: give the credit back.
                        let _ = body.flow_control().release_capacity(data.len());
                        this.leftover = data;
                    }
                },
            }
        }
    }
}

impl AsyncWrite for H2Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        // Wait for window credit instead of buffering without bound.
        this.send.reserve_capacity(buf.len());
        loop {
            let capacity = this.send.capacity();
            if capacity > 0 {
                let n = capacity.min(buf.len());
                this.send
                    .send_data(Bytes::copy_from_slice(&buf[..n]), false)
                    .map_err(io_err)?;
                return Poll::Ready(Ok(n));
            }
            match ready!(this.send.poll_capacity(cx)) {
                None => return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
                Some(Err(e)) => return Poll::Ready(Err(io_err(e))),
                Some(Ok(_)) => {}
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The connection task writes whatever is queued.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.finished {
            this.finished = true;
            this.send.send_data(Bytes::new(), true).map_err(io_err)?;
        }
        Poll::Ready(Ok(()))
    }
}

struct H2Server {
    inbound: Mutex<mpsc::UnboundedReceiver<H2Stream>>,
}

impl Server for H2Server {
    fn accept(&self) -> BoxFut<'_, Res<Option<BoxStream>>> {
        Box::pin(async move {
            let stream = self.inbound.lock().await.recv().await;
            Ok(stream.map(|st| Box::new(st) as BoxStream))
        })
    }
}

pub async fn server(socket: TcpStream, limits: Limits, large: bool) -> Res<Arc<dyn Server>> {
    let mut builder = h2::server::Builder::new();
    builder.max_concurrent_streams(limits.max_streams);
    if large {
        builder
            .initial_window_size(LARGE_STREAM_WINDOW)
            .initial_connection_window_size(LARGE_CONNECTION_WINDOW);
    }
    let mut conn = builder.handshake::<_, Bytes>(socket).await.map_err(s)?;
    let (tx, rx) = mpsc::unbounded_channel();
    // Accepting drives the connection; answer each request with a response
    // head at once so that both directions are open.
    tokio::spawn(async move {
        while let Some(Ok((request, mut respond))) = conn.accept().await {
            let Ok(send) = respond.send_response(http::Response::new(()), false) else {
                continue;
            };
            let _ = tx.send(H2Stream {
                send,
                recv: Recv::Body(request.into_body()),
                leftover: Bytes::new(),
                finished: false,
            });
        }
    });
    Ok(Arc::new(H2Server {
        inbound: Mutex::new(rx),
    }))
}

struct H2Client {
    send_request: SendRequest<Bytes>,
}

impl Client for H2Client {
    fn open(&self) -> BoxFut<'_, Res<BoxStream>> {
        Box::pin(async move {
            let mut send_request = self.send_request.clone().ready().await.map_err(s)?;
            let request = http::Request::post("http://127.0.0.1/stream")
                .body(())
                .map_err(s)?;
            let (response, send) = send_request.send_request(request, false).map_err(s)?;
            Ok(Box::new(H2Stream {
                send,
                recv: Recv::Head(response),
                leftover: Bytes::new(),
                finished: false,
            }) as BoxStream)
        })
    }

    fn close(&self) -> BoxFut<'_, ()> {
        Box::pin(async {})
    }
}

pub async fn client(socket: TcpStream, large: bool) -> Res<Arc<dyn Client>> {
    let mut builder = h2::client::Builder::new();
    if large {
        builder
            .initial_window_size(LARGE_STREAM_WINDOW)
            .initial_connection_window_size(LARGE_CONNECTION_WINDOW);
    }
    let (send_request, conn) = builder.handshake::<_, Bytes>(socket).await.map_err(s)?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(Arc::new(H2Client { send_request }))
}
