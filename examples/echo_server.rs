//! creditmux echo server: echoes every stream of every connection.
//!
//! ```sh
//! cargo run --release --example echo_server -- --listen 127.0.0.1:7878
//! ```
//!
//! Ctrl-C sends GOAWAY on every connection and waits for open streams to
//! finish (bounded by the drain timeout) before exiting.

#[path = "support/echo.rs"]
mod echo;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, ValueEnum};
use creditmux::{Config, ErrorCode, Session};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Transports the echo tools speak.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum Transport {
    /// creditmux over plain TCP.
    Tcp,
    /// creditmux over TLS 1.3 over TCP.
    Tls,
    /// Each creditmux stream is a QUIC stream.
    Quic,
    /// creditmux framing over one QUIC stream.
    QuicFramed,
}

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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
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
    if args.transport != Transport::Tcp {
        return Err(format!(
            "transport {:?} is not available in this build yet; use --transport tcp",
            args.transport
        ));
    }
    let config = config(&args)?;
    let addr: SocketAddr = args
        .listen
        .parse()
        .map_err(|e| format!("bad address {:?}: {e}", args.listen))?;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    tracing::info!(%local, "echo server listening (tcp)");
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (socket, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        continue;
                    }
                };
                let _ = socket.set_nodelay(true);
                let config = config.clone();
                let shutdown = shutdown_rx.clone();
                connections.spawn(handle_connection(socket, peer, config, shutdown));
                while connections.try_join_next().is_some() {}
            }
            _ = tokio::signal::ctrl_c() => {
                tracing::info!(open = connections.len(), "shutting down: GOAWAY to every connection");
                let _ = shutdown_tx.send(true);
                break;
            }
        }
    }
    while connections.join_next().await.is_some() {}
    Ok(())
}

async fn handle_connection(
    socket: tokio::net::TcpStream,
    peer: SocketAddr,
    config: Config,
    mut shutdown: watch::Receiver<bool>,
) {
    let started = Instant::now();
    let session = match Session::server(socket, config).await {
        Ok(session) => session,
        Err(e) => {
            tracing::warn!(%peer, error = %e, "handshake failed");
            return;
        }
    };
    let serving = echo::serve(session.clone());
    tokio::pin!(serving);
    let stats = tokio::select! {
        stats = &mut serving => stats,
        _ = shutdown.changed() => {
            // GOAWAY: no new streams; open ones finish, then the session ends.
            let closer = session.clone();
            tokio::spawn(async move { closer.close(ErrorCode::NO_ERROR).await });
            serving.await
        }
    };
    let error = session
        .error()
        .filter(|e| !e.is_graceful())
        .map(|e| e.to_string())
        .or(stats.last_error);
    tracing::info!(
        %peer,
        streams = stats.streams,
        bytes = stats.bytes,
        stream_errors = stats.errors,
        duration_ms = started.elapsed().as_millis() as u64,
        error = error.as_deref().unwrap_or("none"),
        "connection closed"
    );
}
