//! creditmux over QUIC (quinn), in two modes.
//!
//! - **Framed** ([`Mode::Framed`]; ALPN [`ALPN`],
//!   `creditmux/1`): the creditmux protocol runs unchanged over **one**
//!   QUIC bidirectional stream, with QUIC as a secure transport over UDP.
//!   The client opens the stream and writes the preface at once (QUIC
//!   streams become visible to the peer with their first byte); the server
//!   accepts it. creditmux's own credit, ordering and stream semantics stay
//!   exactly as over TCP, so a lost UDP packet still delays every creditmux
//!   stream behind it (head-of-line blocking, as over TCP).
//! - **Native** ([`Mode::Native`]; ALPN
//!   [`NATIVE_ALPN`], `creditmux-native/1`): every creditmux stream is its
//!   own QUIC stream, so a lost packet delays only the streams whose bytes
//!   it carried. QUIC's flow control carries the credit, set from the same
//!   [`Config`] by [`transport_config`]: the stream window is
//!   MAX_STREAM_DATA, the connection window MAX_DATA, the incoming stream
//!   limit MAX_STREAMS. PING and GOAWAY travel on one control stream per
//!   side. proto/SPEC.md §18 defines the mapping.
//!
//! Both give a [`Session`] with the same API as over TCP: `open`, `accept`,
//! `ping`, `close`, [`Stream`](crate::Stream) with `AsyncRead`/`AsyncWrite`
//! and zero-copy `send`/`recv`, the same errors and drop semantics.
//!
//! # Native mode
//!
//! Differences an application can see:
//!
//! - A stream reaches the peer's `accept` with its first byte (or FIN), not
//!   at `open`: write first on a stream you open.
//! - [`Session::stats`] takes transport bytes (UDP payload), frames (QUIC
//!   frames), probes sent (QUIC `*_BLOCKED` frames sent) and the smoothed
//!   RTT from quinn; the windows, buffered bytes, queue depths, blocked
//!   time and how streams ended stay inside quinn and read `None`. Stream
//!   stats carry the byte counts only (the rest `None`).
//! - Buffering: quinn bounds the bytes written and not yet acknowledged
//!   over all streams by the connection window, in place of the per-stream
//!   `send_buffer`; `write_timeout` has no equivalent (QUIC's idle timeout
//!   and loss recovery cover a stalled path).
//! - `finish()` after the peer stopped the stream returns `Ok`; the reset
//!   shows on the next write.
//! - The two modes do not interoperate: a framed endpoint rejects a native
//!   peer (and the other way round) with a typed ALPN error.
//!
//! # Setup
//!
//! Every function takes the [`Mode`]. [`client_endpoint`] /
//! [`server_endpoint`] bind a quinn [`Endpoint`] from the application's
//! rustls config (with the mode's ALPN put first; see [`tls`](crate::tls)
//! for the config helpers and the ring provider) and the transport
//! parameters of [`transport_config`]. [`connect`] / [`accept`] then give
//! one [`Session`] per QUIC connection; [`accept_incoming`] does it for
//! one `quinn::Incoming` (a task per client), and [`client`] / [`server`]
//! over a [`Connection`] the application set up itself (with
//! [`client_config`] / [`server_config`]). Failures are the crate-wide
//! [`ConnectError`] and [`AcceptError`]. Before a process exits,
//! [`Endpoint::wait_idle`] gives closing connections a chance to tell
//! their peers.
//!
//! ```no_run
//! # async fn run(server_tls: std::sync::Arc<rustls::ServerConfig>,
//! #              client_tls: std::sync::Arc<rustls::ClientConfig>)
//! #     -> Result<(), Box<dyn std::error::Error>> {
//! use creditmux::{quic, Config};
//!
//! let config = Config::default();
//! let mode = quic::Mode::Native;
//! let server = quic::server_endpoint("127.0.0.1:0".parse()?, server_tls, mode, &config)?;
//! let addr = server.local_addr()?;
//! let server_config = config.clone();
//! tokio::spawn(async move {
//!     while let Ok(Some((session, _peer))) =
//!         quic::accept(&server, mode, server_config.clone()).await
//!     {
//!         // serve `session`
//! #       drop(session);
//!     }
//! });
//! let client = quic::client_endpoint("127.0.0.1:0".parse()?, client_tls, mode, &config)?;
//! let session = quic::connect(&client, addr, "localhost", mode, config).await?;
//! # drop(session);
//! # Ok(())
//! # }
//! ```

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{Connection, Endpoint, RecvStream, SendStream, VarInt};
use rustls::AlertDescription;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::tls::{TlsError, check_alpn, client_with_alpn, server_with_alpn};
use crate::config::Config;
pub use crate::conn::Side;
use crate::driver::backend::SessionImp;
use crate::driver::native::{self, NativeSession};
use crate::session::Session;

pub use super::error::{AcceptError, ConnectError};

pub use super::tls::ALPN;

/// The ALPN identifier of native mode: creditmux wire protocol version 1
/// mapped onto QUIC streams (SPEC §18). Distinct from [`ALPN`], so a
/// native peer and a framed peer fail the TLS handshake with a clear
/// error instead of misreading each other's streams.
pub const NATIVE_ALPN: &[u8] = b"creditmux-native/1";

/// Why a QUIC config or endpoint could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The rustls config cannot run QUIC: TLS 1.3 is not enabled, no
    /// cipher suite supports QUIC, or (server) `max_early_data_size` is
    /// neither 0 nor `u32::MAX`.
    #[error("the TLS config cannot be used for QUIC: {0}")]
    Tls(#[source] rustls::Error),
    /// The crypto provider lacks TLS13_AES_128_GCM_SHA256, which QUIC's
    /// Initial packets need.
    #[error("the TLS config has no TLS13_AES_128_GCM_SHA256 suite, which QUIC requires")]
    NoInitialCipherSuite,
    /// Binding the UDP socket failed.
    #[error("cannot bind the UDP socket: {0}")]
    Bind(#[source] io::Error),
}

/// Which of the two mappings of creditmux onto QUIC a connection uses.
/// The two do not interoperate; each has its own ALPN identifier, so a
/// mismatch fails the TLS handshake with a typed error.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// The creditmux protocol unchanged over one QUIC bidirectional
    /// stream; ALPN [`ALPN`].
    Framed,
    /// Every creditmux stream its own QUIC stream, QUIC flow control as
    /// the credit (SPEC §18); ALPN [`NATIVE_ALPN`].
    Native,
}

impl Mode {
    /// The ALPN identifier of this mode.
    pub fn alpn(self) -> &'static [u8] {
        match self {
            Mode::Framed => ALPN,
            Mode::Native => NATIVE_ALPN,
        }
    }
}

/// A quinn client config for `mode` from `tls` (with the mode's ALPN put
/// first), with the transport parameters of [`transport_config`].
///
/// Checks up front what quinn would otherwise only find (and panic on)
/// when the first connection starts: TLS 1.3 enabled and a QUIC-capable
/// suite present.
pub fn client_config(
    tls: Arc<rustls::ClientConfig>,
    mode: Mode,
    config: &Config,
) -> Result<quinn::ClientConfig, ConfigError> {
    let mut quic = quinn::ClientConfig::new(quic_client_crypto(tls, mode.alpn())?);
    quic.transport_config(Arc::new(transport_config(mode, Side::Client, config)));
    Ok(quic)
}

/// A quinn server config for `mode` from `tls` (with the mode's ALPN put
/// first), with the transport parameters of [`transport_config`].
///
/// Checks up front what quinn would otherwise only find (and panic on)
/// when the first connection arrives: TLS 1.3 enabled, a QUIC-capable
/// suite present, and `max_early_data_size` 0 or `u32::MAX`.
pub fn server_config(
    tls: Arc<rustls::ServerConfig>,
    mode: Mode,
    config: &Config,
) -> Result<quinn::ServerConfig, ConfigError> {
    let mut quic = quinn::ServerConfig::with_crypto(quic_server_crypto(tls, mode.alpn())?);
    quic.transport_config(Arc::new(transport_config(mode, Side::Server, config)));
    Ok(quic)
}

/// The QUIC transport parameters of `mode` for a connection's `side`.
///
/// **Framed**: the peer may open exactly the one stream the protocol uses
/// (a bidirectional stream, client to server) and nothing else, and
/// unread datagrams are not buffered. That stream's receive window and
/// the connection's are the largest creditmux connection window
/// ([`Config::max_connection_window`], SPEC §18.1): QUIC's flow control
/// then never holds back what creditmux's credit allows on a long path,
/// and a peer cannot make a framed connection hold more than that window
/// in quinn besides the session's own bounds.
///
/// **Native**: the parameters carry `config` (SPEC §18.2), the same on
/// both sides:
///
/// | creditmux | QUIC |
/// |---|---|
/// | `stream_window` | initial MAX_STREAM_DATA (`stream_receive_window`) |
/// | `connection_window` | initial MAX_DATA (`receive_window`), and the send window (bytes in flight or buffered, all streams) |
/// | `max_incoming_streams` | MAX_STREAMS (bidirectional) |
/// | one control stream per side | MAX_STREAMS (unidirectional) = 1 |
/// | `keepalive_interval` | keep-alive PING interval |
/// | `keepalive_interval + keepalive_timeout` | idle timeout (none without keepalive) |
///
/// Unread QUIC datagrams are not buffered (creditmux does not use them).
pub fn transport_config(mode: Mode, side: Side, config: &Config) -> quinn::TransportConfig {
    let mut transport = quinn::TransportConfig::default();
    match mode {
        Mode::Framed => {
            let server = side == Side::Server;
            transport
                .max_concurrent_bidi_streams(VarInt::from_u32(u32::from(server)))
                .max_concurrent_uni_streams(VarInt::from_u32(0))
                .receive_window(VarInt::from_u32(config.max_connection_window()))
                .stream_receive_window(VarInt::from_u32(config.max_connection_window()))
                .send_window(u64::from(config.max_connection_window()))
                .datagram_receive_buffer_size(None);
        }
        Mode::Native => {
            transport
                .stream_receive_window(VarInt::from_u32(config.stream_window()))
                .receive_window(VarInt::from_u32(config.connection_window()))
                .send_window(u64::from(config.connection_window()))
                .max_concurrent_bidi_streams(VarInt::from_u32(config.max_incoming_streams()))
                .max_concurrent_uni_streams(VarInt::from_u32(1))
                .datagram_receive_buffer_size(None)
                .keep_alive_interval(config.keepalive_interval())
                .max_idle_timeout(config.keepalive_interval().and_then(|interval| {
                    quinn::IdleTimeout::try_from(interval + config.keepalive_timeout()).ok()
                }));
        }
    }
    transport
}

fn quic_client_crypto(
    tls: Arc<rustls::ClientConfig>,
    alpn: &[u8],
) -> Result<Arc<QuicClientConfig>, ConfigError> {
    let tls = client_with_alpn(tls, alpn);
    rustls::quic::ClientConnection::new(
        tls.clone(),
        rustls::quic::Version::V1,
        ServerName::try_from("localhost").expect("a valid DNS name"),
        Vec::new(),
    )
    .map_err(ConfigError::Tls)?;
    QuicClientConfig::try_from(tls)
        .map(Arc::new)
        .map_err(|_| ConfigError::NoInitialCipherSuite)
}

fn quic_server_crypto(
    tls: Arc<rustls::ServerConfig>,
    alpn: &[u8],
) -> Result<Arc<QuicServerConfig>, ConfigError> {
    let tls = server_with_alpn(tls, alpn);
    rustls::quic::ServerConnection::new(tls.clone(), rustls::quic::Version::V1, Vec::new())
        .map_err(ConfigError::Tls)?;
    QuicServerConfig::try_from(tls)
        .map(Arc::new)
        .map_err(|_| ConfigError::NoInitialCipherSuite)
}

/// A client endpoint bound to `bind` (`0.0.0.0:0` or `[::]:0` for any)
/// whose default client config is [`client_config`]`(tls, mode, config)`.
pub fn client_endpoint(
    bind: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    mode: Mode,
    config: &Config,
) -> Result<Endpoint, ConfigError> {
    let quic = client_config(tls, mode, config)?;
    let mut endpoint = Endpoint::client(bind).map_err(ConfigError::Bind)?;
    endpoint.set_default_client_config(quic);
    Ok(endpoint)
}

/// A server endpoint bound to `bind` with the server config
/// [`server_config`]`(tls, mode, config)`.
pub fn server_endpoint(
    bind: SocketAddr,
    tls: Arc<rustls::ServerConfig>,
    mode: Mode,
    config: &Config,
) -> Result<Endpoint, ConfigError> {
    Endpoint::server(server_config(tls, mode, config)?, bind).map_err(ConfigError::Bind)
}

/// Connects to `addr` with the endpoint's default client config (build the
/// endpoint with [`client_endpoint`] for the same `mode`), then runs
/// [`client`] on the connection.
///
/// The QUIC handshake is bounded by [`Config::handshake_timeout`], the
/// creditmux handshake after it by the same timeout again.
pub async fn connect(
    endpoint: &Endpoint,
    addr: SocketAddr,
    server_name: &str,
    mode: Mode,
    config: Config,
) -> Result<Session, ConnectError> {
    let connection = quic_handshake(endpoint, addr, server_name, &config).await?;
    client(connection, mode, config).await
}

/// The QUIC handshake of a client, bounded by the handshake timeout.
async fn quic_handshake(
    endpoint: &Endpoint,
    addr: SocketAddr,
    server_name: &str,
    config: &Config,
) -> Result<Connection, ConnectError> {
    let connecting = endpoint
        .connect(addr, server_name)
        .map_err(|err| match err {
            quinn::ConnectError::InvalidServerName(name) => ConnectError::InvalidServerName(name),
            other => ConnectError::Start(other),
        })?;
    let timeout = config.handshake_timeout();
    tokio::time::timeout(timeout, connecting)
        .await
        .map_err(|_| ConnectError::Timeout(timeout))?
        .map_err(|err| match tls_failure(&err) {
            Some(tls) => ConnectError::Tls(tls),
            None => ConnectError::Connection(err),
        })
}

/// Runs creditmux as the client over an established QUIC connection,
/// after checking that ALPN settled on `mode`'s:
///
/// - framed: opens one bidirectional stream and runs the client handshake
///   on it (the preface is its first byte, which is what makes the stream
///   visible to the server);
/// - native: opens this side's control stream and waits for the server's
///   (SPEC §18.3). The connection's flow-control limits are the transport
///   parameters it was set up with; [`client_config`] sets them from a
///   [`Config`].
///
/// Bounded by [`Config::handshake_timeout`]. The session owns the
/// connection from here on and closes it when the session ends.
pub async fn client(
    connection: Connection,
    mode: Mode,
    config: Config,
) -> Result<Session, ConnectError> {
    check_alpn_or_close(&connection, mode.alpn())?;
    match mode {
        Mode::Framed => {
            let timeout = config.handshake_timeout();
            let (send, recv) = tokio::time::timeout(timeout, connection.open_bi())
                .await
                .map_err(|_| ConnectError::Timeout(timeout))?
                .map_err(ConnectError::Connection)?;
            let peer = Some(connection.remote_address());
            let io = FramedIo::new(connection, send, recv, config.drain_timeout());
            Session::start(io, config, Side::Client, peer)
                .await
                .map_err(ConnectError::Handshake)
        }
        Mode::Native => native::start(connection, config, Side::Client)
            .await
            .map(native_session)
            .map_err(ConnectError::Handshake),
    }
}

/// Waits for the next connection on `endpoint` (built with
/// [`server_endpoint`] for the same `mode`) and runs [`server`] on it.
/// `Ok(None)` once the endpoint is closed.
///
/// The QUIC handshake is bounded by [`Config::handshake_timeout`], and so
/// is what [`server`] does after it. Everything runs inline, so a slow
/// client delays the next accept; a server that must not let one client
/// hold up others takes `endpoint.accept()` itself and runs
/// [`accept_incoming`] for each on its own task.
pub async fn accept(
    endpoint: &Endpoint,
    mode: Mode,
    config: Config,
) -> Result<Option<(Session, SocketAddr)>, AcceptError> {
    let Some(incoming) = endpoint.accept().await else {
        return Ok(None);
    };
    let peer = incoming.remote_address();
    Ok(Some((accept_incoming(incoming, mode, config).await?, peer)))
}

/// Completes the QUIC handshake of `incoming`, then runs [`server`].
pub async fn accept_incoming(
    incoming: quinn::Incoming,
    mode: Mode,
    config: Config,
) -> Result<Session, AcceptError> {
    let connection = handshake_incoming(incoming, &config).await?;
    server(connection, mode, config).await
}

/// The QUIC handshake of a server, bounded by the handshake timeout.
async fn handshake_incoming(
    incoming: quinn::Incoming,
    config: &Config,
) -> Result<Connection, AcceptError> {
    let peer = incoming.remote_address();
    let failed = |err: quinn::ConnectionError| match tls_failure(&err) {
        Some(source) => AcceptError::Tls { peer, source },
        None => AcceptError::Connection { peer, source: err },
    };
    // The client's first flight is processed here already, so a TLS
    // failure (no common ALPN, say) can surface before the handshake
    // future exists.
    let connecting = incoming.accept().map_err(failed)?;
    tokio::time::timeout(config.handshake_timeout(), connecting)
        .await
        .map_err(|_| AcceptError::Timeout { peer })?
        .map_err(failed)
}

/// Runs creditmux as the server over an established QUIC connection,
/// after checking that ALPN settled on `mode`'s (a connection that fails
/// the check is closed with the TLS `no_application_protocol` code):
///
/// - framed: accepts the client's bidirectional stream and runs the server
///   handshake on it;
/// - native: exchanges control streams with the client (SPEC §18.3).
///
/// Bounded by [`Config::handshake_timeout`]. The session owns the
/// connection from here on and closes it when the session ends.
pub async fn server(
    connection: Connection,
    mode: Mode,
    config: Config,
) -> Result<Session, AcceptError> {
    let peer = connection.remote_address();
    check_alpn_or_close(&connection, mode.alpn())
        .map_err(|source| AcceptError::Tls { peer, source })?;
    match mode {
        Mode::Framed => {
            let (send, recv) =
                tokio::time::timeout(config.handshake_timeout(), connection.accept_bi())
                    .await
                    .map_err(|_| AcceptError::Timeout { peer })?
                    .map_err(|source| AcceptError::Connection { peer, source })?;
            let io = FramedIo::new(connection, send, recv, config.drain_timeout());
            Session::start(io, config, Side::Server, Some(peer))
                .await
                .map_err(|source| AcceptError::Handshake { peer, source })
        }
        Mode::Native => native::start(connection, config, Side::Server)
            .await
            .map(native_session)
            .map_err(|source| AcceptError::Handshake { peer, source }),
    }
}

/// The application error code a connection is closed with when ALPN did
/// not settle on `creditmux/1`: 0x100 + the TLS alert
/// no_application_protocol, the code TLS itself would use (RFC 9001 §4.8).
const NO_APPLICATION_PROTOCOL: u32 = 0x100 | 120;

/// Checks that the handshake settled on `alpn`; if not, closes the
/// connection with [`NO_APPLICATION_PROTOCOL`] so the peer learns why.
fn check_alpn_or_close(connection: &Connection, alpn: &[u8]) -> Result<(), TlsError> {
    let negotiated = connection
        .handshake_data()
        .and_then(|data| data.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|data| data.protocol);
    check_alpn(negotiated.as_deref(), alpn).inspect_err(|_| {
        connection.close(
            VarInt::from_u32(NO_APPLICATION_PROTOCOL),
            b"another creditmux ALPN required",
        );
    })
}

/// The TLS failure behind a failed QUIC handshake, if that is what it was.
/// QUIC carries TLS alerts as transport error codes 0x100 + alert
/// (RFC 9001 §4.8): raised here, or received from the peer.
fn tls_failure(err: &quinn::ConnectionError) -> Option<TlsError> {
    let alert = |code: quinn::TransportErrorCode| {
        let code = u64::from(code);
        (code & !0xff == 0x100).then(|| AlertDescription::from(code as u8))
    };
    match err {
        quinn::ConnectionError::TransportError(local) => {
            let alert = alert(local.code)?;
            // This side raised it. quinn keeps only the alert and rustls'
            // message; a certificate this side rejected shows in either
            // (some certificate errors use non-certificate alerts, such as
            // decrypt_error for a bad signature).
            let rejected_certificate = matches!(
                TlsError::from_peer_alert(alert),
                TlsError::CertificateRejectedByPeer { .. }
            ) || local.reason.starts_with("invalid peer certificate");
            Some(if rejected_certificate {
                let reason = &local.reason;
                TlsError::InvalidPeerCertificate {
                    reason: reason
                        .strip_prefix("invalid peer certificate: ")
                        .unwrap_or(reason)
                        .to_string(),
                    error: None,
                }
            } else if alert == AlertDescription::NoApplicationProtocol {
                TlsError::Alpn { negotiated: None }
            } else {
                TlsError::Other {
                    reason: local.reason.clone(),
                }
            })
        }
        quinn::ConnectionError::ConnectionClosed(close) => {
            Some(TlsError::from_peer_alert(alert(close.error_code)?))
        }
        quinn::ConnectionError::ApplicationClosed(close)
            if close.error_code == VarInt::from_u32(NO_APPLICATION_PROTOCOL) =>
        {
            Some(TlsError::Alpn { negotiated: None })
        }
        _ => None,
    }
}

/// One QUIC bidirectional stream as the byte stream a session runs over.
///
/// Owns the connection: shutting it down finishes the send side, waits
/// until the peer has acknowledged every byte, reads the peer's side to its
/// end (a lingering close, so neither peer's last bytes are cut off by a
/// CONNECTION_CLOSE), then closes the connection. That close sequence is
/// bounded by the drain timeout, after which the connection is closed
/// regardless.
struct FramedIo {
    connection: Connection,
    send: SendStream,
    recv: RecvStream,
    linger: Duration,
    closing: Option<Closing>,
}

struct Closing {
    acked: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl FramedIo {
    fn new(connection: Connection, send: SendStream, recv: RecvStream, linger: Duration) -> Self {
        FramedIo {
            connection,
            send,
            recv,
            linger,
            closing: None,
        }
    }

    /// Reads and discards the peer's bytes until its FIN or an error.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let mut scratch = [0u8; 4096];
        loop {
            let mut buf = ReadBuf::new(&mut scratch);
            match ready!(Pin::new(&mut self.recv).poll_read(cx, &mut buf)) {
                Ok(()) if buf.filled().is_empty() => return Poll::Ready(()),
                Ok(()) => {}
                Err(_) => return Poll::Ready(()),
            }
        }
    }
}

impl AsyncRead for FramedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.recv).poll_read(cx, buf)
    }
}

impl AsyncWrite for FramedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        AsyncWrite::poll_write(Pin::new(&mut self.send), cx, buf)
    }

    /// quinn takes one slice per call; take as many as it accepts now, so
    /// the driver's batched writes stay batched.
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let mut written = 0;
        for buf in bufs.iter().filter(|b| !b.is_empty()) {
            match AsyncWrite::poll_write(Pin::new(&mut self.send), cx, buf) {
                Poll::Ready(Ok(n)) => {
                    written += n;
                    if n < buf.len() {
                        break;
                    }
                }
                Poll::Ready(Err(err)) if written == 0 => return Poll::Ready(Err(err)),
                // Report what was taken; the error comes back on the next write.
                Poll::Ready(Err(_)) => break,
                Poll::Pending if written == 0 => return Poll::Pending,
                Poll::Pending => break,
            }
        }
        Poll::Ready(Ok(written))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // quinn sends what it was given without being asked.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let closing = this.closing.get_or_insert_with(|| {
            // Already finished, reset or lost: nothing more to send.
            let _ = this.send.finish();
            let stopped = this.send.stopped();
            Closing {
                acked: Some(Box::pin(async move {
                    let _ = stopped.await;
                })),
                deadline: Box::pin(tokio::time::sleep(this.linger)),
            }
        });
        if closing.deadline.as_mut().poll(cx).is_pending() {
            if let Some(acked) = closing.acked.as_mut() {
                ready!(acked.as_mut().poll(cx));
                closing.acked = None;
            }
            ready!(this.poll_drain(cx));
        }
        this.connection
            .close(VarInt::from_u32(0), b"creditmux session ended");
        Poll::Ready(Ok(()))
    }
}

/// The session over a native-mode connection whose control plane started.
fn native_session(shared: Arc<native::Shared>) -> Session {
    Session::from_imp(SessionImp::Native(NativeSession(shared)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpn_close_code_is_the_tls_alert_code() {
        assert_eq!(
            NO_APPLICATION_PROTOCOL,
            0x100 | u32::from(u8::from(AlertDescription::NoApplicationProtocol))
        );
    }
}
