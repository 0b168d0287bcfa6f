//! The public session: one multiplexed connection.

use std::future::poll_fn;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::config::Config;
use crate::conn::{Connection, Side};
use crate::driver::backend::{SessionBackend, SessionImp};
use crate::driver::mux::MuxSession;
use crate::driver::{Driver, Shared, now};
use crate::error::{ConnectionError, OpenError};
use crate::frame::ErrorCode;
use crate::stats::SessionStats;
use crate::stream::Stream;

/// One multiplexed connection. Cheap to clone; every clone controls the
/// same connection.
///
/// A background task (spawned on the current tokio runtime) drives the
/// transport. It ends when the connection ends; no task outlives it.
///
/// **Ending a session.** [`close`](Session::close) sends GOAWAY, lets the
/// open streams finish (streams still open at the drain timeout are reset
/// with CANCEL, and the peer is told), writes and flushes everything, shuts
/// the transport down, and returns what happened. A program that awaited
/// `shutdown()` on its streams and then `close()` has handed every byte to
/// the transport, in order, before it exits.
///
/// **Dropping** the last `Session` handle starts the same graceful close,
/// but nobody waits for it: it runs on the background task for as long as
/// the runtime does. If the runtime shuts down first (a `main` that
/// returns, a dropped `Runtime`), the task is dropped and bytes not yet
/// written are lost. Await [`close`](Session::close) (or
/// [`closed`](Session::closed)) when that matters.
pub struct Session {
    imp: SessionImp,
}

/// What [`Session::close`] saw happen.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CloseReport {
    /// How the connection ended: [`ConnectionError::LocallyClosed`] when
    /// this side's close ended it, [`ConnectionError::ClosedByPeer`] with
    /// NO_ERROR when the peer's graceful shutdown did.
    pub cause: ConnectionError,
    /// Streams that ended with both sides' FIN, over the connection's
    /// life: everything either side wrote on them was sent. `None` where
    /// the engine does not count them (native QUIC).
    pub streams_completed: Option<u64>,
    /// Streams that ended with a RESET, from either side, over the
    /// connection's life. `None` where the engine does not count them.
    pub streams_reset: Option<u64>,
    /// Of `streams_reset`: streams still open at the drain deadline,
    /// reset with CANCEL by this close. `None` where not counted.
    pub streams_cancelled_at_drain: Option<u64>,
}

impl Session {
    /// Runs the client side of the handshake over `io` and returns once
    /// both sides' settings are exchanged. Client streams have odd ids.
    pub async fn client<T>(io: T, config: Config) -> Result<Session, ConnectionError>
    where
        T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        Session::start(io, config, Side::Client, None).await
    }

    /// Runs the server side of the handshake over `io`. Server streams have
    /// even ids.
    pub async fn server<T>(io: T, config: Config) -> Result<Session, ConnectionError>
    where
        T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        Session::start(io, config, Side::Server, None).await
    }

    /// The handshake over `io`, for `side`; `peer` is the transport's
    /// remote address where it has one (it goes in the session's span).
    pub(crate) async fn start<T>(
        io: T,
        config: Config,
        side: Side,
        peer: Option<std::net::SocketAddr>,
    ) -> Result<Session, ConnectionError>
    where
        T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        // Every event of the driver task (input handled, timers, what it
        // writes) is in this span; the core's events name the stream.
        let span = tracing::debug_span!("session", side = ?side, peer = tracing::field::Empty);
        if let Some(peer) = peer {
            span.record("peer", tracing::field::display(peer));
        }
        let conn = Connection::new(side, config, now());
        let (read, write) = tokio::io::split(io);
        let shared = Arc::new(Shared::new(conn, Box::pin(read), Box::pin(write)));
        tokio::spawn(tracing::Instrument::instrument(
            Driver::new(shared.clone()),
            span,
        ));
        let session = Session {
            imp: SessionImp::Mux(MuxSession(shared.clone())),
        };
        poll_fn(|cx| {
            let mut inner = shared.lock();
            // Established first: a quick peer may have opened streams,
            // written, and closed by the time this runs; its streams wait
            // in the backlog, and `accept` tells how the connection ended.
            if inner.conn.is_established() {
                return Poll::Ready(Ok(()));
            }
            if let Some(err) = inner.conn.error() {
                return Poll::Ready(Err(err.clone()));
            }
            inner.wait_conn(cx.waker());
            Poll::Pending
        })
        .await?;
        Ok(session)
    }

    /// A session of another engine (native QUIC).
    #[cfg(feature = "quic")]
    pub(crate) fn from_imp(imp: SessionImp) -> Session {
        Session { imp }
    }

    /// Opens a stream. Waits while the peer's stream-count limit is
    /// reached (probing it, SPEC §11), and fails if the connection is
    /// closing or closed.
    pub async fn open(&self) -> Result<Stream, OpenError> {
        self.imp.open().await
    }

    /// Waits for the next stream the peer opens. `Ok(None)` once no more
    /// streams will come because the connection was closed gracefully (a
    /// GOAWAY with NO_ERROR); `Err` if it ended with an error.
    pub async fn accept(&self) -> Result<Option<Stream>, ConnectionError> {
        self.imp.accept().await
    }

    /// Sends a PING and waits for its acknowledgement; returns the round
    /// trip time. Concurrent calls share one PING in flight.
    pub async fn ping(&self) -> Result<Duration, ConnectionError> {
        self.imp.ping().await
    }

    /// Closes the connection and waits until it has ended.
    ///
    /// Sends GOAWAY with `code`. With NO_ERROR, no new streams start and
    /// the open ones finish: the connection ends once every stream is
    /// closed (both FINs, or a RESET) and everything owed is written, or at
    /// the drain timeout, when the streams still open are reset with CANCEL
    /// (SPEC §13.2). With another code the connection ends as soon as the
    /// GOAWAY is written (§13.3). Then the transport is flushed and shut
    /// down, and this returns.
    ///
    /// `Ok` when the connection ended by this close or by the peer's
    /// graceful shutdown (what each stream came to is in the report);
    /// `Err` with the cause when it failed first (a protocol error, a
    /// timeout, the transport). Calling it again returns the same outcome.
    pub async fn close(&self, code: ErrorCode) -> Result<CloseReport, ConnectionError> {
        self.imp.close(code, b"").await
    }

    /// [`close`](Session::close), with `reason` as the GOAWAY's debug data
    /// (native QUIC: the close reason), for the peer's logs. At most 1 KiB
    /// of it goes out.
    pub async fn close_with_reason(
        &self,
        code: ErrorCode,
        reason: &str,
    ) -> Result<CloseReport, ConnectionError> {
        self.imp.close(code, reason.as_bytes()).await
    }

    /// Waits until the connection has ended and the transport is shut down
    /// (or given up on); returns why it ended.
    pub async fn closed(&self) -> ConnectionError {
        self.imp.closed().await
    }

    /// Why the connection ended, once it has.
    pub fn error(&self) -> Option<ConnectionError> {
        self.imp.error()
    }

    /// Connection-level counters: bytes, frames, windows, blocked time,
    /// probes, queue depths, RTT, resets and GOAWAYs by code, how streams
    /// ended. In native QUIC mode some come from quinn and the ones quinn
    /// does not report are `None`; see [`SessionStats`] and
    /// [`quic`](crate::quic#native-mode).
    pub fn stats(&self) -> SessionStats {
        self.imp.stats()
    }

    /// Which end of the connection this is.
    pub fn side(&self) -> Side {
        self.imp.side()
    }
}

impl Clone for Session {
    fn clone(&self) -> Session {
        Session {
            imp: self.imp.clone_handle(),
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.imp.drop_handle();
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mode = match &self.imp {
            SessionImp::Mux(_) => "byte stream",
            #[cfg(feature = "quic")]
            SessionImp::Native(_) => "native QUIC",
        };
        f.debug_struct("Session")
            .field("mode", &mode)
            .field("side", &self.side())
            .field("error", &self.error())
            .finish_non_exhaustive()
    }
}
