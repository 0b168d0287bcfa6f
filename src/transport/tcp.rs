//! creditmux over plain TCP.
//!
//! [`connect`] dials, sets `TCP_NODELAY` and runs the client handshake;
//! [`Listener`] accepts connections and runs the server handshake on each.
//! Both bound the TCP connect and the creditmux handshake by
//! [`Config::handshake_timeout`].
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use creditmux::{tcp, Config};
//!
//! let listener = tcp::Listener::bind("127.0.0.1:0", Config::default()).await?;
//! let addr = listener.local_addr()?;
//! tokio::spawn(async move {
//!     while let Ok((session, _peer)) = listener.accept().await {
//!         // serve `session`
//! #       drop(session);
//!     }
//! });
//! let session = tcp::connect(addr, Config::default()).await?;
//! # drop(session);
//! # Ok(())
//! # }
//! ```

use std::future::Future;
use std::io;
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};

use crate::config::Config;
use crate::conn::Side;
use crate::session::Session;

pub use super::error::{AcceptError, ConnectError};

/// Connects to `addr` over TCP, sets `TCP_NODELAY` (creditmux batches its
/// own writes, so Nagle only adds latency) and runs the client handshake.
///
/// Every resolved address is tried in turn, as [`TcpStream::connect`]
/// does; the whole attempt is bounded by [`Config::handshake_timeout`],
/// and the creditmux handshake after it by the same timeout again.
pub async fn connect(addr: impl ToSocketAddrs, config: Config) -> Result<Session, ConnectError> {
    let timeout = config.handshake_timeout();
    let socket = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| ConnectError::Timeout(timeout))?
        .map_err(ConnectError::Connect)?;
    // Best effort: a socket that refuses the option still works.
    let _ = socket.set_nodelay(true);
    let peer = socket.peer_addr().ok();
    Session::start(socket, config, Side::Client, peer)
        .await
        .map_err(ConnectError::Handshake)
}

/// Accepts TCP connections and runs the creditmux server handshake on
/// each.
#[derive(Debug)]
pub struct Listener {
    listener: TcpListener,
    config: Config,
}

impl Listener {
    /// Binds a TCP listener to `addr`; every session it accepts uses
    /// `config`.
    pub async fn bind(addr: impl ToSocketAddrs, config: Config) -> io::Result<Listener> {
        Ok(Listener::from_tcp(TcpListener::bind(addr).await?, config))
    }

    /// Wraps a TCP listener that is already bound.
    pub fn from_tcp(listener: TcpListener, config: Config) -> Listener {
        Listener { listener, config }
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Waits for the next connection and runs its handshake; returns the
    /// session and the peer's address.
    ///
    /// The handshake runs inline, so a slow peer delays the next accept by
    /// up to [`Config::handshake_timeout`]. A server that must not let one
    /// client hold up others uses [`Listener::accept_incoming`] and runs
    /// each [`Incoming::handshake`] on its own task.
    ///
    /// An `Err` concerns either the listening socket
    /// ([`AcceptError::Listener`]) or one connection
    /// ([`AcceptError::Handshake`]); in both cases the listener can be
    /// used again.
    pub async fn accept(&self) -> Result<(Session, SocketAddr), AcceptError> {
        let incoming = self
            .accept_incoming()
            .await
            .map_err(AcceptError::Listener)?;
        let peer = incoming.peer_addr();
        Ok((incoming.handshake().await?, peer))
    }

    /// Waits for the next TCP connection without running the handshake.
    pub async fn accept_incoming(&self) -> io::Result<Incoming> {
        let (socket, peer) = self.listener.accept().await?;
        let _ = socket.set_nodelay(true);
        Ok(Incoming {
            socket,
            peer,
            config: self.config.clone(),
        })
    }
}

/// An accepted TCP connection whose creditmux handshake has not run yet.
#[derive(Debug)]
pub struct Incoming {
    socket: TcpStream,
    peer: SocketAddr,
    config: Config,
}

impl Incoming {
    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// The socket, the peer's address and the session config, for a
    /// transport that adds its own handshake first (TLS).
    #[cfg(feature = "tls")]
    pub(crate) fn into_parts(self) -> (TcpStream, SocketAddr, Config) {
        (self.socket, self.peer, self.config)
    }

    /// Runs the server handshake, bounded by
    /// [`Config::handshake_timeout`].
    pub fn handshake(self) -> impl Future<Output = Result<Session, AcceptError>> + Send + 'static {
        let Incoming {
            socket,
            peer,
            config,
        } = self;
        async move {
            Session::start(socket, config, Side::Server, Some(peer))
                .await
                .map_err(|source| AcceptError::Handshake { peer, source })
        }
    }
}
