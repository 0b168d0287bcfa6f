//! The implementations under comparison, behind one small interface: a
//! server side that accepts streams and a client side that opens them.
//! Every stream is a tokio `AsyncRead + AsyncWrite`, so every scenario is
//! written once (scenarios.rs) and run against each implementation.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::mpsc::SyncSender;
use std::time::Duration;

use creditmux::{Config, ErrorCode, Priority, Session};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};

use crate::harness::{BoxFut, Res};
use crate::{h2_peer, quinn_peer, yamux_peer};

/// A byte stream of any implementation.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}
pub type BoxStream = Box<dyn Io>;

/// The accepting side of one connection.
pub trait Server: Send + Sync {
    /// The next stream the client opened; `None` once the client has
    /// closed the connection.
    fn accept(&self) -> BoxFut<'_, Res<Option<BoxStream>>>;
}

/// The opening side of one connection.
pub trait Client: Send + Sync {
    /// Opens a stream. Some implementations announce it to the server only
    /// with its first bytes; every scenario writes first.
    fn open(&self) -> BoxFut<'_, Res<BoxStream>>;
    /// Opens a stream that goes ahead of the connection's other streams
    /// where the implementation has stream priorities (creditmux: urgency
    /// 0, not incremental); elsewhere [`open`](Client::open).
    fn open_urgent(&self) -> BoxFut<'_, Res<BoxStream>> {
        self.open()
    }
    /// Closes the connection (not measured).
    fn close(&self) -> BoxFut<'_, ()>;
}

/// The accepting side of many connections to one address (the sessions
/// scenario).
pub trait Listener: Send + Sync {
    /// The accepting side of the next connection.
    fn accept(&self) -> BoxFut<'_, Res<Arc<dyn Server>>>;
}

/// The opening side of many connections to one address.
pub trait Connector: Send + Sync {
    /// A new connection's opening side.
    fn connect(&self) -> BoxFut<'_, Res<Arc<dyn Client>>>;
}

/// Settings every implementation gets alike.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Concurrent streams the server side allows (idle and many need
    /// many); creditmux also lets that many wait for `accept()`, as the
    /// peers do (their accept queues are bounded by the stream limit
    /// alone), rather than refuse those beyond its default backlog of 256.
    pub max_streams: u32,
    /// creditmux only: a fixed connection window of this many bytes
    /// (stream windows a quarter of it, no tuning) instead of the default
    /// tuned ones; less in flight, so less for an urgent frame to wait
    /// behind.
    pub window_cap: Option<u32>,
}

impl Limits {
    /// `builder` with the stream limit and, if set, the window cap.
    fn apply(self, builder: creditmux::config::ConfigBuilder) -> creditmux::config::ConfigBuilder {
        let builder = builder
            .max_incoming_streams(self.max_streams)
            .accept_backlog(self.max_streams);
        match self.window_cap {
            Some(cap) => builder
                .connection_window(cap)
                .stream_window(cap / 4)
                .max_stream_window(0)
                .max_connection_window(0),
            None => builder,
        }
    }
}

/// An implementation under comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// One TCP connection per stream: the baseline.
    Tcp,
    /// creditmux over one TCP connection, default configuration.
    Creditmux,
    /// creditmux over one TCP connection with receive-window tuning off
    /// (SPEC §9.8.1): the initial windows stay. Only measured through the
    /// delay proxy: on loopback the round trip is below the tuning's floor
    /// and it is `Creditmux`.
    CreditmuxFixed,
    /// yamux 0.13 over one TCP connection, default configuration.
    Yamux,
    /// h2 0.4 over one TCP connection (h2c), default windows (64 KiB).
    H2,
    /// h2 0.4 with 1 MiB stream and 16 MiB connection windows.
    H2Large,
    /// quinn 0.11 over loopback UDP, default configuration.
    Quinn,
    /// One TLS 1.3 connection per stream (tokio-rustls, with the rustls
    /// configs of `CreditmuxTls`): the baseline of creditmux over TLS, as
    /// `Tcp` is of creditmux over TCP.
    Tls,
    /// creditmux over TLS 1.3 over TCP (rustls, ring).
    CreditmuxTls,
    /// creditmux native QUIC mode: one quinn stream per stream, QUIC flow
    /// control set from the default Config.
    CreditmuxQuic,
    /// creditmux framed over one quinn stream.
    CreditmuxQuicFramed,
}

impl Kind {
    pub const ALL: [Kind; 11] = [
        Kind::Tcp,
        Kind::Creditmux,
        Kind::CreditmuxFixed,
        Kind::Yamux,
        Kind::H2,
        Kind::H2Large,
        Kind::Quinn,
        Kind::Tls,
        Kind::CreditmuxTls,
        Kind::CreditmuxQuic,
        Kind::CreditmuxQuicFramed,
    ];

    /// The name used by `--impl` and in the JSON lines.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Tcp => "tcp",
            Kind::Creditmux => "creditmux",
            Kind::CreditmuxFixed => "creditmux-fixed",
            Kind::Yamux => "yamux",
            Kind::H2 => "h2",
            Kind::H2Large => "h2-large",
            Kind::Quinn => "quinn",
            Kind::Tls => "tls",
            Kind::CreditmuxTls => "creditmux-tls",
            Kind::CreditmuxQuic => "creditmux-quic",
            Kind::CreditmuxQuicFramed => "creditmux-quic-framed",
        }
    }

    /// The name used in the tables.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Tcp => "raw TCP",
            Kind::Creditmux => "creditmux",
            Kind::CreditmuxFixed => "creditmux, fixed windows",
            Kind::Yamux => "yamux 0.13",
            Kind::H2 => "h2 0.4",
            Kind::H2Large => "h2 0.4 large windows",
            Kind::Quinn => "quinn 0.11",
            Kind::Tls => "raw TLS",
            Kind::CreditmuxTls => "creditmux over TLS",
            Kind::CreditmuxQuic => "creditmux native QUIC",
            Kind::CreditmuxQuicFramed => "creditmux framed QUIC",
        }
    }

    /// A multiplexer other than creditmux.
    pub fn is_peer(self) -> bool {
        matches!(self, Kind::Yamux | Kind::H2 | Kind::H2Large | Kind::Quinn)
    }

    /// The creditmux configuration of this kind: the default one, with
    /// the stream limit every implementation gets, and for
    /// `CreditmuxFixed` no window tuning.
    fn creditmux_config(self, limits: Limits) -> Config {
        let mut builder = limits.apply(Config::builder());
        if self == Kind::CreditmuxFixed {
            builder = builder.max_stream_window(0).max_connection_window(0);
        }
        builder.build().expect("a valid creditmux config")
    }

    /// creditmux over any transport: its streams take a send priority.
    pub fn has_priorities(self) -> bool {
        matches!(
            self,
            Kind::Creditmux
                | Kind::CreditmuxFixed
                | Kind::CreditmuxTls
                | Kind::CreditmuxQuic
                | Kind::CreditmuxQuicFramed
        )
    }

    /// Measured only through the delay proxy (see `CreditmuxFixed`).
    pub fn only_delayed(self) -> bool {
        self == Kind::CreditmuxFixed
    }

    /// Runs over UDP (QUIC), so a TCP path such as the delay proxy
    /// cannot carry it.
    pub fn over_udp(self) -> bool {
        matches!(
            self,
            Kind::Quinn | Kind::CreditmuxQuic | Kind::CreditmuxQuicFramed
        )
    }

    /// Binds on loopback, sends the address through `addr_tx`, accepts the
    /// client's connection and returns its accepting side.
    pub async fn serve(
        self,
        limits: Limits,
        addr_tx: SyncSender<SocketAddr>,
    ) -> Res<Arc<dyn Server>> {
        self.listen(limits, addr_tx).await?.accept().await
    }

    /// Connects to `addr` and returns the opening side.
    pub async fn connect(self, limits: Limits, addr: SocketAddr) -> Res<Arc<dyn Client>> {
        self.connector(limits, addr).await?.connect().await
    }

    /// Binds on loopback, sends the address through `addr_tx` and returns
    /// the listener. One listening socket or QUIC endpoint serves every
    /// connection, as it would in a server.
    pub async fn listen(
        self,
        limits: Limits,
        addr_tx: SyncSender<SocketAddr>,
    ) -> Res<Arc<dyn Listener>> {
        match self {
            Kind::Quinn => return quinn_peer::listen(limits, addr_tx).await,
            Kind::CreditmuxTls | Kind::CreditmuxQuic | Kind::CreditmuxQuicFramed => {
                return secure::listen(self, creditmux_config(limits), addr_tx).await;
            }
            _ => {}
        }
        let listener = bind_loopback()?;
        addr_tx.send(listener.local_addr().map_err(s)?).map_err(s)?;
        Ok(match self {
            Kind::Tcp => Single::listener(Arc::new(TcpServer { listener })),
            Kind::Tls => Single::listener(secure::raw_server(listener)?),
            _ => Arc::new(SocketListener {
                kind: self,
                limits,
                listener,
            }),
        })
    }

    /// The opening side of connections to `addr`: a QUIC client endpoint
    /// or a TLS client config is shared by all of them, as it would be in
    /// a client.
    pub async fn connector(self, limits: Limits, addr: SocketAddr) -> Res<Arc<dyn Connector>> {
        Ok(match self {
            Kind::Tcp => Arc::new(Shared(Arc::new(TcpClient { addr }))),
            Kind::Tls => Arc::new(Shared(secure::raw_client(addr)?)),
            Kind::Quinn => quinn_peer::connector(limits, addr).await?,
            Kind::CreditmuxTls | Kind::CreditmuxQuic | Kind::CreditmuxQuicFramed => {
                secure::connector(self, creditmux_config(limits), addr)?
            }
            _ => Arc::new(SocketConnector {
                kind: self,
                limits,
                addr,
            }),
        })
    }
}

/// The accept queue of the bench's TCP listeners (the kernel caps it at
/// `net.core.somaxconn`): many's 1,000 raw TCP streams connect at once,
/// and with tokio's default of 1,024 some found the queue full and waited
/// for a SYN retransmit or were reset.
const LISTEN_BACKLOG: u32 = 4096;

/// A TCP listener on a free loopback port, with [`LISTEN_BACKLOG`].
fn bind_loopback() -> Res<TcpListener> {
    let socket = tokio::net::TcpSocket::new_v4().map_err(s)?;
    socket
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .map_err(s)?;
    socket.listen(LISTEN_BACKLOG).map_err(s)
}

/// The listener of an implementation whose streams are connections of
/// their own (raw TCP, raw TLS): one server takes the streams of every
/// connection. The first accept returns it; later ones wait forever.
struct Single(std::sync::Mutex<Option<Arc<dyn Server>>>);

impl Single {
    fn listener(server: Arc<dyn Server>) -> Arc<dyn Listener> {
        Arc::new(Single(std::sync::Mutex::new(Some(server))))
    }
}

impl Listener for Single {
    fn accept(&self) -> BoxFut<'_, Res<Arc<dyn Server>>> {
        let server = self.0.lock().map(|mut s| s.take()).unwrap_or(None);
        Box::pin(async move {
            match server {
                Some(server) => Ok(server),
                None => std::future::pending().await,
            }
        })
    }
}

/// The connector of an implementation whose streams are connections of
/// their own: every "connection" is the one client, whose streams each
/// connect.
struct Shared(Arc<dyn Client>);

impl Connector for Shared {
    fn connect(&self) -> BoxFut<'_, Res<Arc<dyn Client>>> {
        let client = self.0.clone();
        Box::pin(async move { Ok(client) })
    }
}

/// A multiplexer over TCP: a connection per accept.
struct SocketListener {
    kind: Kind,
    limits: Limits,
    listener: TcpListener,
}

impl Listener for SocketListener {
    fn accept(&self) -> BoxFut<'_, Res<Arc<dyn Server>>> {
        Box::pin(async move {
            let (socket, _) = self.listener.accept().await.map_err(s)?;
            socket.set_nodelay(true).map_err(s)?;
            let (kind, limits) = (self.kind, self.limits);
            match kind {
                Kind::Creditmux | Kind::CreditmuxFixed => {
                    let session = Session::server(socket, kind.creditmux_config(limits))
                        .await
                        .map_err(s)?;
                    Ok(Arc::new(CreditmuxServer {
                        session,
                        _endpoint: None,
                    }) as Arc<dyn Server>)
                }
                Kind::Yamux => Ok(yamux_peer::server(socket, limits)),
                Kind::H2 => h2_peer::server(socket, limits, false).await,
                Kind::H2Large => h2_peer::server(socket, limits, true).await,
                _ => unreachable!(),
            }
        })
    }
}

/// A multiplexer over TCP: a connection per connect.
struct SocketConnector {
    kind: Kind,
    limits: Limits,
    addr: SocketAddr,
}

impl Connector for SocketConnector {
    fn connect(&self) -> BoxFut<'_, Res<Arc<dyn Client>>> {
        Box::pin(async move {
            let socket = TcpStream::connect(self.addr).await.map_err(s)?;
            socket.set_nodelay(true).map_err(s)?;
            let (kind, limits) = (self.kind, self.limits);
            match kind {
                Kind::Creditmux | Kind::CreditmuxFixed => {
                    let session = Session::client(socket, kind.creditmux_config(limits))
                        .await
                        .map_err(s)?;
                    Ok(Arc::new(CreditmuxClient {
                        session,
                        endpoint: None,
                    }) as Arc<dyn Client>)
                }
                Kind::Yamux => Ok(yamux_peer::client(socket, limits)),
                Kind::H2 => h2_peer::client(socket, false).await,
                Kind::H2Large => h2_peer::client(socket, true).await,
                _ => unreachable!(),
            }
        })
    }
}

/// Any error as a message.
pub fn s<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

// ----- raw TCP: one connection per stream ----------------------------------

struct TcpServer {
    listener: TcpListener,
}

impl Server for TcpServer {
    fn accept(&self) -> BoxFut<'_, Res<Option<BoxStream>>> {
        Box::pin(async move {
            let (socket, _) = self.listener.accept().await.map_err(s)?;
            socket.set_nodelay(true).map_err(s)?;
            Ok(Some(Box::new(socket) as BoxStream))
        })
    }
}

struct TcpClient {
    addr: SocketAddr,
}

impl Client for TcpClient {
    fn open(&self) -> BoxFut<'_, Res<BoxStream>> {
        Box::pin(async move {
            let socket = TcpStream::connect(self.addr).await.map_err(s)?;
            socket.set_nodelay(true).map_err(s)?;
            Ok(Box::new(socket) as BoxStream)
        })
    }

    fn close(&self) -> BoxFut<'_, ()> {
        Box::pin(async {})
    }
}

// ----- creditmux ------------------------------------------------------------

/// The default configuration, with the stream limit every implementation
/// gets.
fn creditmux_config(limits: Limits) -> Config {
    limits
        .apply(Config::builder())
        .build()
        .expect("a valid creditmux config")
}

/// How long a creditmux client's close waits for the session to close,
/// and then for its QUIC endpoint to go idle (the close is not measured,
/// but counts toward the measurement's timeout). It returns at once over
/// TCP and TLS; over native QUIC, with streams the server holds open
/// (idle) or never reads (hol), it did not return within a second (its
/// drain deadline is 5 s).
const CLOSE_WAIT: Duration = Duration::from_millis(500);

/// The priority of [`Client::open_urgent`]'s streams.
const URGENT: Priority = Priority::new(Priority::MOST_URGENT, false);

struct CreditmuxServer {
    session: Session,
    /// QUIC: the endpoint must outlive the connection.
    _endpoint: Option<quinn::Endpoint>,
}

impl Server for CreditmuxServer {
    fn accept(&self) -> BoxFut<'_, Res<Option<BoxStream>>> {
        Box::pin(async move {
            let stream = self.session.accept().await.map_err(s)?;
            Ok(stream.map(|st| Box::new(st) as BoxStream))
        })
    }
}

struct CreditmuxClient {
    session: Session,
    endpoint: Option<quinn::Endpoint>,
}

impl Client for CreditmuxClient {
    fn open(&self) -> BoxFut<'_, Res<BoxStream>> {
        Box::pin(async move {
            let stream = self.session.open().await.map_err(s)?;
            Ok(Box::new(stream) as BoxStream)
        })
    }

    fn open_urgent(&self) -> BoxFut<'_, Res<BoxStream>> {
        Box::pin(async move {
            let mut stream = self.session.open().await.map_err(s)?;
            stream.set_priority(URGENT);
            Ok(Box::new(stream) as BoxStream)
        })
    }

    fn close(&self) -> BoxFut<'_, ()> {
        Box::pin(async move {
            let close = self.session.close(ErrorCode::NO_ERROR);
            let _ = tokio::time::timeout(CLOSE_WAIT, close).await;
            if let Some(endpoint) = &self.endpoint {
                let _ = tokio::time::timeout(CLOSE_WAIT, endpoint.wait_idle()).await;
            }
        })
    }
}

/// creditmux over TLS and over QUIC (both modes), and raw TLS, with the
/// self-signed certificate the quinn peer uses.
mod secure {
    use super::*;
    use creditmux::{quic, tls};
    use rustls::pki_types::{PrivateKeyDer, ServerName};
    use tokio::sync::{Mutex, mpsc};
    use tokio_rustls::{TlsAcceptor, TlsConnector};

    fn server_tls() -> Res<Arc<rustls::ServerConfig>> {
        let (cert, key) = quinn_peer::certificate();
        tls::server_config(vec![cert.clone()], PrivateKeyDer::Pkcs8(key.clone_key())).map_err(s)
    }

    fn client_tls() -> Res<Arc<rustls::ClientConfig>> {
        let (cert, _) = quinn_peer::certificate();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.clone()).map_err(s)?;
        Ok(tls::client_config(roots))
    }

    /// Raw TLS, server side: every TCP connection to `listener` is one
    /// stream. Each TLS handshake runs on a task of its own, as a TLS
    /// server's would, so that one handshake does not hold up the accepts
    /// behind it.
    pub fn raw_server(listener: TcpListener) -> Res<Arc<dyn Server>> {
        let acceptor = TlsAcceptor::from(server_tls()?);
        let (tx, rx) = mpsc::unbounded_channel::<Res<BoxStream>>();
        tokio::spawn(async move {
            loop {
                let socket = match listener.accept().await {
                    Ok((socket, _)) => socket,
                    Err(e) => {
                        let _ = tx.send(Err(s(e)));
                        return;
                    }
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    let stream = async {
                        socket.set_nodelay(true).map_err(s)?;
                        let tls = acceptor.accept(socket).await.map_err(s)?;
                        Ok(Box::new(tls) as BoxStream)
                    };
                    let _ = tx.send(stream.await);
                });
            }
        });
        Ok(Arc::new(RawTlsServer {
            inbound: Mutex::new(rx),
        }))
    }

    struct RawTlsServer {
        inbound: Mutex<mpsc::UnboundedReceiver<Res<BoxStream>>>,
    }

    impl Server for RawTlsServer {
        fn accept(&self) -> BoxFut<'_, Res<Option<BoxStream>>> {
            Box::pin(async move {
                match self.inbound.lock().await.recv().await {
                    Some(stream) => stream.map(Some),
                    None => Ok(None),
                }
            })
        }
    }

    /// Raw TLS, client side: each stream a TCP connection to `addr` with
    /// its own TLS handshake. The client config is shared, as a client
    /// would share it, so later handshakes may resume an earlier session.
    pub fn raw_client(addr: SocketAddr) -> Res<Arc<dyn Client>> {
        Ok(Arc::new(RawTlsClient {
            addr,
            connector: TlsConnector::from(client_tls()?),
        }))
    }

    struct RawTlsClient {
        addr: SocketAddr,
        connector: TlsConnector,
    }

    impl Client for RawTlsClient {
        fn open(&self) -> BoxFut<'_, Res<BoxStream>> {
            Box::pin(async move {
                let socket = TcpStream::connect(self.addr).await.map_err(s)?;
                socket.set_nodelay(true).map_err(s)?;
                let name = ServerName::try_from("localhost").map_err(s)?;
                let tls = self.connector.connect(name, socket).await.map_err(s)?;
                Ok(Box::new(tls) as BoxStream)
            })
        }

        fn close(&self) -> BoxFut<'_, ()> {
            Box::pin(async {})
        }
    }

    /// creditmux over TLS or QUIC: one TLS listener or QUIC endpoint for
    /// every connection.
    pub async fn listen(
        kind: Kind,
        config: Config,
        addr_tx: SyncSender<SocketAddr>,
    ) -> Res<Arc<dyn Listener>> {
        let loopback: SocketAddr = "127.0.0.1:0".parse().map_err(s)?;
        let listener = match kind {
            Kind::CreditmuxTls => {
                let listener = tls::Listener::bind(loopback, server_tls()?, config)
                    .await
                    .map_err(s)?;
                addr_tx.send(listener.local_addr().map_err(s)?).map_err(s)?;
                SecureListener::Tls(listener)
            }
            _ => {
                let mode = quic_mode(kind);
                let endpoint =
                    quic::server_endpoint(loopback, server_tls()?, mode, &config).map_err(s)?;
                addr_tx.send(endpoint.local_addr().map_err(s)?).map_err(s)?;
                SecureListener::Quic {
                    endpoint,
                    mode,
                    config,
                }
            }
        };
        Ok(Arc::new(listener))
    }

    enum SecureListener {
        Tls(tls::Listener),
        Quic {
            endpoint: quinn::Endpoint,
            mode: quic::Mode,
            config: Config,
        },
    }

    impl Listener for SecureListener {
        fn accept(&self) -> BoxFut<'_, Res<Arc<dyn Server>>> {
            Box::pin(async move {
                let (session, endpoint) = match self {
                    SecureListener::Tls(listener) => (listener.accept().await.map_err(s)?.0, None),
                    SecureListener::Quic {
                        endpoint,
                        mode,
                        config,
                    } => {
                        let accepted = quic::accept(endpoint, *mode, config.clone())
                            .await
                            .map_err(s)?;
                        let session = accepted.ok_or("endpoint closed")?.0;
                        (session, Some(endpoint.clone()))
                    }
                };
                Ok(Arc::new(CreditmuxServer {
                    session,
                    _endpoint: endpoint,
                }) as Arc<dyn Server>)
            })
        }
    }

    /// creditmux over TLS or QUIC: one TLS client config or QUIC client
    /// endpoint for every connection.
    pub fn connector(kind: Kind, config: Config, addr: SocketAddr) -> Res<Arc<dyn Connector>> {
        let loopback: SocketAddr = "127.0.0.1:0".parse().map_err(s)?;
        let (endpoint, tls) = match kind {
            Kind::CreditmuxTls => (None, Some(client_tls()?)),
            _ => {
                let endpoint =
                    quic::client_endpoint(loopback, client_tls()?, quic_mode(kind), &config)
                        .map_err(s)?;
                (Some(endpoint), None)
            }
        };
        Ok(Arc::new(SecureConnector {
            kind,
            config,
            addr,
            endpoint,
            tls,
        }))
    }

    struct SecureConnector {
        kind: Kind,
        config: Config,
        addr: SocketAddr,
        /// QUIC.
        endpoint: Option<quinn::Endpoint>,
        /// TLS.
        tls: Option<Arc<rustls::ClientConfig>>,
    }

    impl Connector for SecureConnector {
        fn connect(&self) -> BoxFut<'_, Res<Arc<dyn Client>>> {
            Box::pin(async move {
                let config = self.config.clone();
                let session = match (&self.endpoint, &self.tls) {
                    (Some(endpoint), _) => {
                        let mode = quic_mode(self.kind);
                        quic::connect(endpoint, self.addr, "localhost", mode, config).await
                    }
                    (None, Some(tls)) => {
                        tls::connect(self.addr, "localhost", tls.clone(), config).await
                    }
                    (None, None) => unreachable!(),
                }
                .map_err(s)?;
                Ok(Arc::new(CreditmuxClient {
                    session,
                    endpoint: self.endpoint.clone(),
                }) as Arc<dyn Client>)
            })
        }
    }
}

/// The QUIC mode of a creditmux-over-QUIC kind.
fn quic_mode(kind: Kind) -> creditmux::quic::Mode {
    if kind == Kind::CreditmuxQuic {
        creditmux::quic::Mode::Native
    } else {
        creditmux::quic::Mode::Framed
    }
}
