//! creditmux echo client: a load tool that verifies every echoed byte.
//!
//! Without `--connect` it starts an echo server inside the process on an
//! ephemeral loopback port, so one command shows a verified result:
//!
//! ```sh
//! cargo run --release --example echo_client
//! cargo run --release --example echo_client -- --connect 127.0.0.1:7878 --streams 100 --size 8MiB
//! cargo run --release --example echo_client -- --mode rr --message-size 64 --requests 10000 --json
//! cargo run --release --example echo_client -- --transport tls
//! cargo run --release --example echo_client -- --transport quic-framed --connect 127.0.0.1:7878 --ca /tmp/echo-ca.pem
//! ```
//!
//! Over tls, quic and quic-framed the embedded server uses a self-signed
//! certificate generated on start, which the client trusts; against a
//! separate server, `--ca FILE` (PEM) names what to trust and
//! `--server-name` the name to check (default: the host of `--connect`).
//!
//! Exit status: 0 when every byte came back intact, 1 otherwise.

#[path = "support/certs.rs"]
mod certs;
#[path = "support/cli.rs"]
mod cli;
#[path = "support/echo.rs"]
mod echo;

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use cli::Transport;
use creditmux::{Config, Session, quic, tcp, tls};
use echo::{ClientOptions, Mode, Progress, Summary};

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum CliMode {
    /// Each stream sends --size bytes and reads them back.
    Bulk,
    /// Request/response: --message-size bytes, --requests times per stream.
    Rr,
}

/// Send data over creditmux streams, verify every echoed byte, report
/// throughput, latency percentiles and flow-control counters.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Args {
    /// Echo server to use; without it, an embedded server on a loopback
    /// port of this process.
    #[arg(long)]
    connect: Option<String>,
    /// Transport to use.
    #[arg(long, value_enum, default_value_t = Transport::Tcp)]
    transport: Transport,
    /// Concurrent streams.
    #[arg(long, default_value_t = 16)]
    streams: usize,
    /// Bytes per stream in bulk mode (suffixes k, M, G: 64k, 8MiB).
    #[arg(long, default_value = "4MiB", value_parser = echo::parse_size)]
    size: u64,
    /// bulk or rr (request/response).
    #[arg(long, value_enum, default_value_t = CliMode::Bulk)]
    mode: CliMode,
    /// Request size in rr mode.
    #[arg(long, default_value = "64", value_parser = echo::parse_size)]
    message_size: u64,
    /// Requests per stream in rr mode.
    #[arg(long, default_value_t = 1000)]
    requests: u64,
    /// Run for this long (10s, 500ms, 2m) instead of a fixed amount.
    #[arg(long, value_parser = echo::parse_duration)]
    duration: Option<Duration>,
    /// Limit to this many requests (rr) or streams (bulk) per second.
    #[arg(long)]
    rate: Option<f64>,
    /// Print a JSON summary instead of text.
    #[arg(long)]
    json: bool,
    /// Never show a progress bar.
    #[arg(long)]
    no_progress: bool,
    /// Give up connecting after this long.
    #[arg(long, default_value = "10s", value_parser = echo::parse_duration)]
    connect_timeout: Duration,
    /// CA certificates (PEM) to trust for tls, quic and quic-framed with
    /// --connect.
    #[arg(long, requires = "connect")]
    ca: Option<PathBuf>,
    /// Name the server's certificate must be valid for; default: the host
    /// part of --connect.
    #[arg(long, requires = "connect")]
    server_name: Option<String>,
}

#[tokio::main]
async fn main() -> ExitCode {
    cli::init_logging("warn");
    let args = Args::parse();
    match run(args).await {
        Ok(summary) if summary.verified => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("echo_client: {e}");
            ExitCode::FAILURE
        }
    }
}

fn config(streams: usize) -> Result<Config, String> {
    let streams = u32::try_from(streams.max(100)).map_err(|_| "too many streams")?;
    Config::builder()
        .max_incoming_streams(streams)
        .accept_backlog(streams)
        .build()
        .map_err(|e| format!("invalid configuration: {e}"))
}

async fn run(args: Args) -> Result<Summary, String> {
    if args.streams == 0 {
        return Err("--streams must be at least 1".into());
    }
    let message_size =
        usize::try_from(args.message_size).map_err(|_| "--message-size too large")?;
    if args.mode == CliMode::Rr && message_size == 0 {
        return Err("--message-size must be at least 1".into());
    }
    let config = config(args.streams)?;
    let (addr, embedded, client_tls) = match &args.connect {
        Some(addr) => {
            let client_tls = match (&args.ca, args.transport) {
                (_, Transport::Tcp) => None,
                (Some(ca), _) => Some(certs::client_config_from_pem(ca)?),
                (None, _) => {
                    return Err(format!(
                        "--transport {} to a separate server needs --ca FILE (the server's \
                         certificate or its CA, PEM; echo_server --write-ca FILE saves its \
                         self-signed one)",
                        transport_name(args.transport)
                    ));
                }
            };
            (addr.clone(), None, client_tls)
        }
        None => {
            let (addr, task, client_tls) = embedded_server(args.transport, config.clone()).await?;
            (addr.to_string(), Some(task), client_tls)
        }
    };
    let (session, endpoint) = tokio::time::timeout(
        args.connect_timeout,
        connect(&args, &addr, client_tls, config),
    )
    .await
    .map_err(|_| format!("connecting to {addr} timed out"))??;

    let opts = ClientOptions {
        streams: args.streams,
        size: args.size,
        mode: match args.mode {
            CliMode::Bulk => Mode::Bulk,
            CliMode::Rr => Mode::Rr,
        },
        message_size,
        requests: args.requests,
        duration: args.duration,
        rate: args.rate,
    };
    let progress = Arc::new(Progress::default());
    let bar = (!args.no_progress && !args.json && std::io::stderr().is_terminal()).then(|| {
        let total = match (opts.mode, opts.duration) {
            (_, Some(_)) => None,
            (Mode::Bulk, None) => Some(opts.size * opts.streams as u64),
            (Mode::Rr, None) => {
                Some(opts.requests * opts.message_size as u64 * opts.streams as u64)
            }
        };
        let bar = match total {
            Some(t) => indicatif::ProgressBar::new(t),
            None => indicatif::ProgressBar::new_spinner(),
        };
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bytes}/{total_bytes} verified ({bytes_per_sec})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let bar2 = bar.clone();
        let progress = progress.clone();
        tokio::spawn(async move {
            loop {
                bar2.set_position(progress.bytes_verified.load(Ordering::Relaxed));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        bar
    });
    let summary = echo::run_client(&session, &opts, progress).await;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let _ = session.close(creditmux::ErrorCode::NO_ERROR).await;
    if let Some(task) = embedded {
        let _ = task.await;
    }
    if let Some(endpoint) = endpoint {
        // Let the QUIC close reach the server before the process exits.
        let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle()).await;
    }
    // A reader that went away (`| head -1`) is no reason to panic or to
    // change the verdict: the exit status still says whether it verified.
    let mut out = std::io::stdout().lock();
    let _ = if args.json {
        let json = serde_json::to_string(&summary).map_err(|e| e.to_string())?;
        writeln!(out, "{json}")
    } else {
        print_summary(&mut out, &summary, &addr, args.connect.is_none())
    };
    Ok(summary)
}

fn transport_name(transport: Transport) -> &'static str {
    match transport {
        Transport::Tcp => "tcp",
        Transport::Tls => "tls",
        Transport::Quic => "quic",
        Transport::QuicFramed => "quic-framed",
    }
}

/// Starts an echo server for one connection on a loopback port of this
/// process; over tls, quic and quic-framed with a fresh self-signed certificate,
/// which the returned client config trusts.
async fn embedded_server(
    transport: Transport,
    config: Config,
) -> Result<
    (
        SocketAddr,
        tokio::task::JoinHandle<()>,
        Option<Arc<rustls::ClientConfig>>,
    ),
    String,
> {
    let start_error = |e: &dyn std::fmt::Display| format!("cannot start the embedded server: {e}");
    let loopback: SocketAddr = "127.0.0.1:0".parse().expect("a valid address");
    let identity = (transport != Transport::Tcp).then(certs::Identity::self_signed);
    let client_tls = identity.as_ref().map(certs::Identity::client_config);
    let server_tls = identity
        .as_ref()
        .map(certs::Identity::server_config)
        .transpose()?;
    let (addr, task) = match (transport, server_tls) {
        (Transport::Tls, Some(server_tls)) => {
            let listener = tls::Listener::bind(loopback, server_tls, config.clone())
                .await
                .map_err(|e| start_error(&e))?;
            let addr = listener.local_addr().map_err(|e| start_error(&e))?;
            let task = tokio::spawn(async move {
                if let Ok((session, _)) = listener.accept().await {
                    echo::serve(session).await;
                }
            });
            (addr, task)
        }
        (Transport::QuicFramed | Transport::Quic, Some(server_tls)) => {
            let mode = if transport == Transport::Quic {
                quic::Mode::Native
            } else {
                quic::Mode::Framed
            };
            let endpoint = quic::server_endpoint(loopback, server_tls, mode, &config)
                .map_err(|e| start_error(&e))?;
            let addr = endpoint.local_addr().map_err(|e| start_error(&e))?;
            let task = tokio::spawn(async move {
                let accepted = quic::accept(&endpoint, mode, config).await;
                if let Ok(Some((session, _))) = accepted {
                    echo::serve(session).await;
                }
                let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle()).await;
            });
            (addr, task)
        }
        _ => {
            let listener = tcp::Listener::bind(loopback, config)
                .await
                .map_err(|e| start_error(&e))?;
            let addr = listener.local_addr().map_err(|e| start_error(&e))?;
            let task = tokio::spawn(async move {
                if let Ok((session, _)) = listener.accept().await {
                    echo::serve(session).await;
                }
            });
            (addr, task)
        }
    };
    Ok((addr, task, client_tls))
}

/// The host part of `host:port`, `[v6]:port` or `v4:port`.
fn host_of(addr: &str) -> &str {
    match addr.rsplit_once(':') {
        Some((host, _port)) => host.trim_start_matches('[').trim_end_matches(']'),
        None => addr,
    }
}

/// Connects over the chosen transport; returns the session and, for QUIC,
/// the endpoint to wait on before exiting.
async fn connect(
    args: &Args,
    addr: &str,
    client_tls: Option<Arc<rustls::ClientConfig>>,
    config: Config,
) -> Result<(Session, Option<quinn::Endpoint>), String> {
    let server_name = args
        .server_name
        .clone()
        .unwrap_or_else(|| host_of(addr).to_string());
    let connect_error = |e: &dyn std::fmt::Display| format!("cannot connect to {addr}: {e}");
    let handshake_error = |e: &dyn std::fmt::Display| format!("handshake with {addr} failed: {e}");
    match (args.transport, client_tls) {
        (Transport::Tls, Some(client_tls)) => {
            let session = tls::connect(addr, &server_name, client_tls, config)
                .await
                .map_err(|e| match e {
                    tls::ConnectError::Connect(e) => connect_error(&e),
                    e => handshake_error(&e),
                })?;
            Ok((session, None))
        }
        (Transport::QuicFramed | Transport::Quic, Some(client_tls)) => {
            let remote = tokio::net::lookup_host(addr)
                .await
                .map_err(|e| connect_error(&e))?
                .next()
                .ok_or_else(|| connect_error(&"no address"))?;
            let bind: SocketAddr = if remote.is_ipv4() {
                "0.0.0.0:0"
            } else {
                "[::]:0"
            }
            .parse()
            .expect("a valid address");
            let mode = if args.transport == Transport::Quic {
                quic::Mode::Native
            } else {
                quic::Mode::Framed
            };
            let endpoint = quic::client_endpoint(bind, client_tls, mode, &config)
                .map_err(|e| connect_error(&e))?;
            let session_result = quic::connect(&endpoint, remote, &server_name, mode, config).await;
            let session = session_result.map_err(|e| handshake_error(&e))?;
            Ok((session, Some(endpoint)))
        }
        _ => {
            let session = tcp::connect(addr, config).await.map_err(|e| match e {
                tcp::ConnectError::Connect(e) => connect_error(&e),
                e => handshake_error(&e),
            })?;
            Ok((session, None))
        }
    }
}

fn print_summary(
    out: &mut impl Write,
    s: &Summary,
    addr: &str,
    embedded: bool,
) -> std::io::Result<()> {
    let verdict = if s.verified { "VERIFIED" } else { "FAILED" };
    let server = if embedded {
        format!("embedded server at {addr}")
    } else {
        addr.to_string()
    };
    writeln!(
        out,
        "{verdict}: {} bytes echoed intact over {} streams ({:?} mode, {server})",
        s.bytes_verified, s.streams, s.mode
    )?;
    writeln!(
        out,
        "  throughput  {:.1} MiB/s ({} bytes in {:.3} s, {} {})",
        s.throughput_mib_s,
        s.bytes_verified,
        s.elapsed_secs,
        s.operations,
        if s.mode == Mode::Rr {
            "requests"
        } else {
            "streams"
        }
    )?;
    let l = &s.latency;
    writeln!(
        out,
        "  latency     p50 {} µs  p90 {} µs  p99 {} µs  p99.9 {} µs  max {} µs",
        l.p50_us, l.p90_us, l.p99_us, l.p999_us, l.max_us
    )?;
    let c = &s.session;
    // "n/a": the session's engine does not know it (native QUIC), or no
    // PING completed yet (the round trips).
    let known = |v: Option<u64>, unit: &str| v.map_or("n/a".to_string(), |v| format!("{v}{unit}"));
    writeln!(
        out,
        "  session     zero-window events {}  probes sent {} / answered {}  blocked on connection {}, on streams {}  rtt {} (smoothed {})",
        known(c.zero_window_events, ""),
        c.probes_sent,
        known(c.probes_answered, ""),
        known(c.blocked_on_connection_ms, " ms"),
        known(c.blocked_on_streams_ms, " ms"),
        known(c.rtt_us, " µs"),
        known(c.smoothed_rtt_us, " µs"),
    )?;
    writeln!(
        out,
        "  windows     grown {}  shrunk {}  connection receive window at the end {}",
        known(c.windows_grown, ""),
        known(c.windows_shrunk, ""),
        known(c.recv_window.map(|w| w / 1024), " KiB"),
    )?;
    if s.mismatches > 0 {
        writeln!(out, "  mismatches  {}", s.mismatches)?;
    }
    for e in &s.errors {
        writeln!(out, "  error       {e}")?;
    }
    Ok(())
}
