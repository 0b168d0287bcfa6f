//! The public session: one multiplexed connection.

use std::future::poll_fn;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::config::Config;
use crate::conn::{Connection, ConnectionStats, Side};
use crate::driver::{Driver, Shared, now};
use crate::error::{ConnectionError, OpenError};
use crate::frame::ErrorCode;
use crate::stream::Stream;
#[cfg(feature = "quic")]
use crate::transport::native;

/// One multiplexed connection. Cheap to clone; every clone controls the
/// same connection.
///
/// A background task (spawned on the current tokio runtime) drives the
/// transport. It ends when the connection ends; no task outlives it.
///
/// **Dropping** the last `Session` handle starts a graceful close: a GOAWAY
/// is sent, no new streams are accepted or opened, streams already open
/// keep working until they finish or the drain timeout passes, then the
/// transport is shut down.
pub struct Session {
    imp: Imp,
}

/// The engine behind a session.
enum Imp {
    /// The creditmux core over a byte stream (TCP, TLS, QUIC framed).
    Mux(Arc<Shared>),
    /// Native QUIC: one QUIC stream per creditmux stream.
    #[cfg(feature = "quic")]
    Native(Arc<native::Shared>),
}

impl Session {
    /// Runs the client side of the handshake over `io` and returns once
    /// both sides' settings are exchanged. Client streams have odd ids.
    pub async fn client<T>(io: T, config: Config) -> Result<Session, ConnectionError>
    where
        T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        Session::start(io, config, Side::Client).await
    }

    /// Runs the server side of the handshake over `io`. Server streams have
    /// even ids.
    pub async fn server<T>(io: T, config: Config) -> Result<Session, ConnectionError>
    where
        T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        Session::start(io, config, Side::Server).await
    }

    async fn start<T>(io: T, config: Config, side: Side) -> Result<Session, ConnectionError>
    where
        T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let conn = Connection::new(side, config, now());
        let (read, write) = tokio::io::split(io);
        let shared = Arc::new(Shared::new(conn, Box::pin(read), Box::pin(write)));
        tokio::spawn(Driver::new(shared.clone()));
        let session = Session {
            imp: Imp::Mux(shared.clone()),
        };
        poll_fn(|cx| {
            let mut inner = shared.lock();
            if let Some(err) = inner.conn.error() {
                return Poll::Ready(Err(err.clone()));
            }
            if inner.conn.is_established() {
                return Poll::Ready(Ok(()));
            }
            inner.wait_conn(cx.waker());
            Poll::Pending
        })
        .await?;
        Ok(session)
    }

    /// Opens a stream. Waits while the peer's stream-count limit is
    /// reached, and fails if the connection is closing or closed.
    pub async fn open(&self) -> Result<Stream, OpenError> {
        let shared = match &self.imp {
            Imp::Mux(shared) => shared,
            #[cfg(feature = "quic")]
            Imp::Native(native) => return native.open().await.map(Stream::native),
        };
        poll_fn(|cx| {
            let mut inner = shared.lock();
            match inner.conn.open(now()) {
                Ok(Some(id)) => {
                    inner.after_command();
                    Poll::Ready(Ok(Stream::new(id, shared.clone())))
                }
                Ok(None) => {
                    inner.after_command();
                    inner.wait_conn(cx.waker());
                    Poll::Pending
                }
                Err(err) => Poll::Ready(Err(err)),
            }
        })
        .await
    }

    /// Waits for the next stream the peer opens. `Ok(None)` once no more
    /// streams will come because the connection was closed gracefully (a
    /// GOAWAY with NO_ERROR); `Err` if it ended with an error.
    pub async fn accept(&self) -> Result<Option<Stream>, ConnectionError> {
        let shared = match &self.imp {
            Imp::Mux(shared) => shared,
            #[cfg(feature = "quic")]
            Imp::Native(native) => return Ok(native.accept().await?.map(Stream::native)),
        };
        poll_fn(|cx| {
            let mut inner = shared.lock();
            if let Some(id) = inner.conn.accept() {
                return Poll::Ready(Ok(Some(Stream::new(id, shared.clone()))));
            }
            if inner.conn.accept_finished() || inner.driver_done {
                return Poll::Ready(match inner.conn.error() {
                    Some(err) if !err.is_graceful() => Err(err.clone()),
                    _ => Ok(None),
                });
            }
            inner.wait_conn(cx.waker());
            Poll::Pending
        })
        .await
    }

    /// Sends a PING and waits for its acknowledgement; returns the round
    /// trip time. Concurrent calls share one PING in flight.
    pub async fn ping(&self) -> Result<Duration, ConnectionError> {
        let shared = match &self.imp {
            Imp::Mux(shared) => shared,
            #[cfg(feature = "quic")]
            Imp::Native(native) => return native.ping().await,
        };
        let target = {
            let mut inner = shared.lock();
            if !inner.conn.ping_in_flight() {
                inner.conn.ping();
            }
            inner.after_command();
            inner.conn.pings_completed() + 1
        };
        poll_fn(|cx| {
            let mut inner = shared.lock();
            if inner.conn.pings_completed() >= target {
                return Poll::Ready(Ok(inner.conn.rtt().unwrap_or_default()));
            }
            if let Some(err) = inner.conn.error() {
                return Poll::Ready(Err(err.clone()));
            }
            inner.wait_conn(cx.waker());
            Poll::Pending
        })
        .await
    }

    /// Closes the connection: sends GOAWAY with `code`, lets open streams
    /// finish (up to the drain timeout) when `code` is NO_ERROR, then shuts
    /// the transport down. Returns once the connection has ended; `Ok` if
    /// this side's close ended it, otherwise the error that did.
    pub async fn close(&self, code: ErrorCode) -> Result<(), ConnectionError> {
        let shared = match &self.imp {
            Imp::Mux(shared) => shared,
            #[cfg(feature = "quic")]
            Imp::Native(native) => return native.close(code).await,
        };
        {
            let mut inner = shared.lock();
            inner.conn.close(now(), code, b"");
            inner.after_command();
        }
        self.closed().await;
        let inner = shared.lock();
        match inner.conn.error() {
            Some(ConnectionError::LocallyClosed { .. }) | None => Ok(()),
            Some(err) => Err(err.clone()),
        }
    }

    /// Waits until the connection has ended and the transport is shut down.
    pub async fn closed(&self) {
        let shared = match &self.imp {
            Imp::Mux(shared) => shared,
            #[cfg(feature = "quic")]
            Imp::Native(native) => return native.closed().await,
        };
        poll_fn(|cx| {
            let mut inner = shared.lock();
            if inner.driver_done {
                return Poll::Ready(());
            }
            inner.wait_conn(cx.waker());
            Poll::Pending
        })
        .await
    }

    /// Why the connection ended, once it has.
    pub fn error(&self) -> Option<ConnectionError> {
        match &self.imp {
            Imp::Mux(shared) => shared.lock().conn.error().cloned(),
            #[cfg(feature = "quic")]
            Imp::Native(native) => native.error(),
        }
    }

    /// Connection-level counters: bytes, frames, windows, blocked time,
    /// probes, queue depths, RTT. In native QUIC mode some come from quinn
    /// and some are not available (zero); see
    /// [`quic`](crate::quic#native-mode) for which.
    pub fn stats(&self) -> ConnectionStats {
        match &self.imp {
            Imp::Mux(shared) => shared.lock().conn.stats(),
            #[cfg(feature = "quic")]
            Imp::Native(native) => native.stats(),
        }
    }

    /// A session over a native QUIC connection whose handshake is done.
    #[cfg(feature = "quic")]
    pub(crate) fn native(shared: Arc<native::Shared>) -> Session {
        Session {
            imp: Imp::Native(shared),
        }
    }
}

impl Clone for Session {
    fn clone(&self) -> Session {
        let imp = match &self.imp {
            Imp::Mux(shared) => {
                shared.lock().session_handles += 1;
                Imp::Mux(shared.clone())
            }
            #[cfg(feature = "quic")]
            Imp::Native(native) => {
                native.add_handle();
                Imp::Native(native.clone())
            }
        };
        Session { imp }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let shared = match &self.imp {
            Imp::Mux(shared) => shared,
            #[cfg(feature = "quic")]
            Imp::Native(native) => return native.drop_handle(),
        };
        let mut inner = shared.lock();
        inner.session_handles -= 1;
        if inner.session_handles == 0 && !inner.conn.is_finished() {
            inner.conn.close(now(), ErrorCode::NO_ERROR, b"");
            inner.after_command();
        }
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (mode, side) = match &self.imp {
            Imp::Mux(shared) => ("framed", shared.lock().conn.side()),
            #[cfg(feature = "quic")]
            Imp::Native(native) => ("native QUIC", native.side()),
        };
        f.debug_struct("Session")
            .field("mode", &mode)
            .field("side", &side)
            .field("error", &self.error())
            .finish_non_exhaustive()
    }
}
