//! creditmux echo server: echoes every stream of every connection.
//!
//! ```sh
//! cargo run --release --example echo_server -- --listen 127.0.0.1:7878
//! cargo run --release --example echo_server -- --transport tls --write-ca /tmp/echo-ca.pem
//! cargo run --release --example echo_server -- --transport quic-framed --cert cert.pem --key key.pem
//! ```
//!
//! TLS and QUIC use `--cert`/`--key` (PEM) if given, otherwise a
//! self-signed certificate for localhost, 127.0.0.1 and ::1 generated on
//! start; `--write-ca FILE` saves it for the client's `--ca`.
//!
//! Ctrl-C or SIGTERM sends GOAWAY on every connection and waits until each
//! has drained (open streams finish; those still open at the drain timeout
//! are reset with CANCEL) and its transport is flushed and shut down, then
//! exits. A second signal exits at once. Each connection logs one line with
//! how many streams were echoed to their end and how many were not.

#[path = "support/certs.rs"]
mod certs;
#[path = "support/cli.rs"]
mod cli;
#[path = "support/echo.rs"]
mod echo;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use cli::Transport;
use creditmux::{Config, ErrorCode, Session, quic, tcp, tls};
use tokio::sync::watch;

/// Echo every creditmux stream back to its sender.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7878")]
    listen: String,
    /// Transport to accept.
    #[arg(long, value_enum, default_value_t = Transport::Tcp)]
    transport: Transport,
    /// Streams each client may have open at once.
    #[arg(long, default_value_t = 1024)]
    max_streams: u32,
    /// Per-stream receive window (bytes; suffixes k, M, G).
    #[arg(long, value_parser = echo::parse_size)]
    stream_window: Option<u64>,
    /// Connection receive window (bytes; suffixes k, M, G).
    #[arg(long, value_parser = echo::parse_size)]
    connection_window: Option<u64>,
    /// Certificate chain (PEM, leaf first) for tls, quic and quic-framed;
    /// without it a self-signed certificate is generated on start.
    #[arg(long, requires = "key")]
    cert: Option<PathBuf>,
    /// Private key (PEM) for --cert.
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
    /// Write the generated self-signed certificate (PEM) here, for the
    /// client's --ca.
    #[arg(long, conflicts_with = "cert")]
    write_ca: Option<PathBuf>,
}

fn config(args: &Args) -> Result<Config, String> {
    let mut builder = Config::builder()
        .max_incoming_streams(args.max_streams)
        .accept_backlog(args.max_streams.max(1));
    if let Some(w) = args.stream_window {
        builder = builder.stream_window(u32::try_from(w).map_err(|_| "stream window too large")?);
    }
    if let Some(w) = args.connection_window {
        builder =
            builder.connection_window(u32::try_from(w).map_err(|_| "connection window too large")?);
    }
    builder
        .build()
        .map_err(|e| format!("invalid configuration: {e}"))
}

#[tokio::main]
async fn main() -> ExitCode {
    cli::init_logging("info");
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("echo_server: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let config = config(&args)?;
    let addr: SocketAddr = args
        .listen
        .parse()
        .map_err(|e| format!("bad address {:?}: {e}", args.listen))?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    let mut listener = Listener::bind(&args, addr, config).await?;
    let mut signals = Signals::new()?;
    tracing::info!(local = %listener.local_addr()?, "echo server listening ({})", listener.name());
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Some((peer, handshake)) = accepted else { break };
                connections.spawn(handle_connection(handshake, peer, shutdown_rx.clone()));
                while connections.try_join_next().is_some() {}
            }
            signal = signals.next() => {
                tracing::info!(%signal, open = connections.len(), "shutting down: GOAWAY to every connection");
                let _ = shutdown_tx.send(true);
                break;
            }
        }
    }
    // Every connection drains and closes (bounded by its drain timeout);
    // a second signal cuts that short.
    let drained = async { while connections.join_next().await.is_some() {} };
    tokio::select! {
        () = drained => {}
        signal = signals.next() => {
            tracing::warn!(%signal, open = connections.len(), "second signal: exiting without waiting for the drain");
            return Ok(());
        }
    }
    listener.finish().await;
    Ok(())
}

/// SIGINT (Ctrl-C) and, on Unix, SIGTERM.
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> Result<Signals, String> {
        Ok(Signals {
            #[cfg(unix)]
            term: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .map_err(|e| format!("cannot watch SIGTERM: {e}"))?,
        })
    }

    async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => "SIGINT",
                _ = self.term.recv() => "SIGTERM",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}

/// A connection whose handshakes run on its own task.
type Handshake = std::pin::Pin<Box<dyn Future<Output = Result<Session, String>> + Send>>;

/// The listening side of each transport.
enum Listener {
    Tcp(tcp::Listener),
    Tls(tls::Listener),
    Quic(quinn::Endpoint, quic::Mode, Config),
}

impl Listener {
    async fn bind(args: &Args, addr: SocketAddr, config: Config) -> Result<Listener, String> {
        let listen_error = |e: std::io::Error| format!("cannot listen on {addr}: {e}");
        Ok(match args.transport {
            Transport::Tcp => Listener::Tcp(
                tcp::Listener::bind(addr, config)
                    .await
                    .map_err(listen_error)?,
            ),
            Transport::Tls => {
                let tls_config = server_tls(args)?;
                Listener::Tls(
                    tls::Listener::bind(addr, tls_config, config)
                        .await
                        .map_err(listen_error)?,
                )
            }
            Transport::QuicFramed | Transport::Quic => {
                let mode = if args.transport == Transport::Quic {
                    quic::Mode::Native
                } else {
                    quic::Mode::Framed
                };
                let endpoint = quic::server_endpoint(addr, server_tls(args)?, mode, &config)
                    .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
                Listener::Quic(endpoint, mode, config)
            }
        })
    }

    fn name(&self) -> &'static str {
        match self {
            Listener::Tcp(_) => "tcp",
            Listener::Tls(_) => "tls",
            Listener::Quic(_, quic::Mode::Framed, _) => "quic-framed",
            Listener::Quic(_, quic::Mode::Native, _) => "quic",
        }
    }

    fn local_addr(&self) -> Result<SocketAddr, String> {
        match self {
            Listener::Tcp(l) => l.local_addr(),
            Listener::Tls(l) => l.local_addr(),
            Listener::Quic(endpoint, ..) => endpoint.local_addr(),
        }
        .map_err(|e| e.to_string())
    }

    /// The next connection, with its handshakes still to run; `None` once
    /// the listener is closed.
    async fn accept(&mut self) -> Option<(SocketAddr, Handshake)> {
        loop {
            let accepted: std::io::Result<(SocketAddr, Handshake)> =
                match self {
                    Listener::Tcp(l) => l.accept_incoming().await.map(|incoming| {
                        let peer = incoming.peer_addr();
                        let handshake: Handshake = Box::pin(async move {
                            incoming.handshake().await.map_err(|e| e.to_string())
                        });
                        (peer, handshake)
                    }),
                    Listener::Tls(l) => l.accept_incoming().await.map(|incoming| {
                        let peer = incoming.peer_addr();
                        let handshake: Handshake = Box::pin(async move {
                            incoming.handshake().await.map_err(|e| e.to_string())
                        });
                        (peer, handshake)
                    }),
                    Listener::Quic(endpoint, mode, config) => {
                        let incoming = endpoint.accept().await?;
                        let peer = incoming.remote_address();
                        let (mode, config) = (*mode, config.clone());
                        let handshake: Handshake = Box::pin(async move {
                            quic::accept_incoming(incoming, mode, config)
                                .await
                                .map_err(|e| e.to_string())
                        });
                        Ok((peer, handshake))
                    }
                };
            match accepted {
                Ok(pair) => return Some(pair),
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    // Out of file descriptors and the like: don't spin.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    /// Lets closing QUIC connections tell their peers before exiting.
    async fn finish(self) {
        if let Listener::Quic(endpoint, ..) = self {
            let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle()).await;
        }
    }
}

/// The server's TLS config: --cert/--key, or a self-signed certificate.
fn server_tls(args: &Args) -> Result<Arc<rustls::ServerConfig>, String> {
    let identity = match (&args.cert, &args.key) {
        (Some(cert), Some(key)) => certs::Identity::from_pem_files(cert, key)?,
        _ => {
            let identity = certs::Identity::self_signed();
            if let (Some(path), Some(pem)) = (&args.write_ca, &identity.cert_pem) {
                std::fs::write(path, pem)
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                tracing::info!(path = %path.display(), "self-signed certificate written; pass it to the client's --ca");
            } else {
                tracing::info!(
                    "using a self-signed certificate for localhost, 127.0.0.1 and ::1 (--write-ca FILE saves it for clients)"
                );
            }
            identity
        }
    };
    identity.server_config()
}

async fn handle_connection(
    handshake: Handshake,
    peer: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) {
    let started = Instant::now();
    let session = match handshake.await {
        Ok(session) => session,
        Err(e) => {
            tracing::warn!(%peer, error = %e, "handshake failed");
            return;
        }
    };
    let serving = echo::serve(session.clone());
    tokio::pin!(serving);
    let (stats, cause) = tokio::select! {
        stats = &mut serving => {
            // The peer ended it (or it failed): wait until it is over.
            let cause = session.closed().await;
            (stats, cause)
        }
        _ = shutdown.changed() => {
            // GOAWAY: no new streams; open ones finish (or are reset at the
            // drain deadline), the transport is flushed and shut down.
            let (stats, closed) = tokio::join!(serving, session.close(ErrorCode::NO_ERROR));
            let cause = match closed {
                Ok(report) => report.cause,
                Err(err) => err,
            };
            (stats, cause)
        }
    };
    let session_stats = session.stats();
    let failed = (!cause.is_graceful()).then(|| cause.to_string());
    tracing::info!(
        %peer,
        streams = stats.streams,
        echoed = stats.completed,
        not_echoed = stats.errors,
        bytes = stats.bytes,
        reset_by_us = session_stats.streams_reset_local,
        reset_by_peer = session_stats.streams_reset_remote,
        cancelled_at_drain = session_stats.streams_cancelled_at_drain,
        blocked_on_connection_ms = session_stats.blocked_on_connection.map(|d| d.as_millis() as u64),
        blocked_on_streams_ms = session_stats.blocked_on_streams.map(|d| d.as_millis() as u64),
        windows_grown = session_stats.windows_grown,
        windows_shrunk = session_stats.windows_shrunk,
        duration_ms = started.elapsed().as_millis() as u64,
        ended = %cause,
        error = failed.as_deref().or(stats.last_error.as_deref()).unwrap_or("none"),
        "connection closed"
    );
}
