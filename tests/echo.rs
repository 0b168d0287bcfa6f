//! The echo tools end to end: the shared echo logic in process, the example
//! binaries as separate processes, and a corrupting server that the client
//! must catch.

#[path = "../examples/support/echo.rs"]
mod echo;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use creditmux::{Config, Session};
use echo::{ClientOptions, Mode, Progress};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn connected_pair(config: Config) -> (Session, Session) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server_config = config.clone();
    let server = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        Session::server(socket, server_config).await.unwrap()
    });
    let client = Session::client(TcpStream::connect(addr).await.unwrap(), config)
        .await
        .unwrap();
    (client, server.await.unwrap())
}

fn options(mode: Mode, streams: usize) -> ClientOptions {
    ClientOptions {
        streams,
        size: 256 * 1024,
        mode,
        message_size: 100,
        requests: 50,
        duration: None,
        rate: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_logic_verifies_many_streams_in_process() {
    let (client, server) = connected_pair(Config::default()).await;
    let serving = tokio::spawn(echo::serve(server));
    for (mode, streams) in [(Mode::Bulk, 40), (Mode::Rr, 20)] {
        let summary = echo::run_client(
            &client,
            &options(mode, streams),
            Arc::new(Progress::default()),
        )
        .await;
        assert!(summary.verified, "{mode:?}: {summary:?}");
        assert_eq!(summary.mismatches, 0);
        let expected = match mode {
            Mode::Bulk => 256 * 1024 * streams as u64,
            Mode::Rr => 100 * 50 * streams as u64,
        };
        assert_eq!(summary.bytes_verified, expected);
        assert!(summary.latency.count > 0);
    }
    client.close(creditmux::ErrorCode::NO_ERROR).await.unwrap();
    let stats = serving.await.unwrap();
    assert_eq!(stats.streams, 60);
    assert_eq!(stats.errors, 0);
}

/// Echoes every stream but flips one byte of each at position 1000.
async fn serve_corrupted(session: Session) {
    while let Ok(Some(stream)) = session.accept().await {
        tokio::spawn(async move {
            let (mut r, mut w) = stream.split();
            let mut buf = vec![0u8; 4096];
            let mut offset = 0usize;
            loop {
                let n = match r.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if (offset..offset + n).contains(&1000) {
                    buf[1000 - offset] ^= 0x40;
                }
                offset += n;
                if w.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
            let _ = w.shutdown().await;
        });
    }
}

#[tokio::test]
async fn a_flipped_byte_fails_verification() {
    let (client, server) = connected_pair(Config::default()).await;
    tokio::spawn(serve_corrupted(server));
    let summary = echo::run_client(
        &client,
        &options(Mode::Bulk, 2),
        Arc::new(Progress::default()),
    )
    .await;
    assert!(!summary.verified);
    assert!(summary.mismatches >= 1);
    assert!(
        summary.errors.iter().any(|e| e.contains("byte 1000")),
        "{:?}",
        summary.errors
    );
}

#[test]
fn pattern_detects_swapped_blocks_and_shifts() {
    let mut a = vec![0u8; 1 << 18];
    echo::fill_pattern(7, 0, &mut a);
    assert_eq!(echo::check_pattern(7, 0, &a), None);
    // Another stream's bytes, a shifted copy and swapped 64 KiB blocks all differ.
    assert!(echo::check_pattern(8, 0, &a).is_some());
    assert!(echo::check_pattern(7, 1, &a[..4096]).is_some());
    let mut swapped = a.clone();
    swapped[..1 << 16].copy_from_slice(&a[1 << 16..2 << 16]);
    assert_eq!(echo::check_pattern(7, 0, &swapped), Some(0));
    for offset in [0u64, 65535, 65536, 1 << 24] {
        let mut one = [0u8; 1];
        echo::fill_pattern(3, offset, &mut one);
        assert_eq!(one[0], echo::pattern_byte(3, offset));
    }
}

// ----- the example binaries as separate processes -------------------------

/// Builds (if stale) and locates an example binary of the profile this
/// test runs in.
fn example(name: &str) -> PathBuf {
    // target/<profile>/deps/echo-<hash> -> target/<profile>/examples/<name>
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet", "--example", name]);
    if profile_dir.ends_with("release") {
        cmd.arg("--release");
    }
    let status = cmd.status().unwrap();
    assert!(status.success(), "building example {name}");
    profile_dir.join("examples").join(name)
}

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_client_binary_verifies_against_the_server_binary() {
    let server_bin = example("echo_server");
    let client_bin = example("echo_client");
    let mut server = Child(
        Command::new(&server_bin)
            .args(["--listen", "127.0.0.1:0"])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // The server logs its address: "... echo server listening (tcp) local=127.0.0.1:PORT".
    let mut lines = BufReader::new(server.0.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("server log ended").unwrap();
        if let Some(rest) = line.split("local=").nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let output = Command::new(&client_bin)
        .args([
            "--connect",
            &addr,
            "--streams",
            "8",
            "--size",
            "256k",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "client failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(summary["verified"], true);
    assert_eq!(summary["bytes_verified"], 8 * 256 * 1024);
    assert_eq!(summary["streams"], 8);

    // Ctrl-C: the server drains and exits cleanly.
    let pid = server.0.id().to_string();
    Command::new("kill").args(["-INT", &pid]).status().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = server.0.try_wait().unwrap() {
            assert!(status.success(), "server exit status {status}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "server did not exit on SIGINT"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_client_binary_runs_standalone_and_fails_cleanly_without_a_server() {
    let client_bin = example("echo_client");
    let output = Command::new(&client_bin)
        .args(["--streams", "4", "--size", "64k", "--json"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(summary["verified"], true);

    // Nothing listens on port 1: one clear line, exit status 1, no panic.
    let output = Command::new(&client_bin)
        .args(["--connect", "127.0.0.1:1"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot connect to 127.0.0.1:1"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

#[test]
fn the_client_binary_exits_nonzero_on_a_corrupted_echo() {
    let client_bin = example("echo_client");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    rt.spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(session) = Session::server(socket, Config::default()).await {
                    serve_corrupted(session).await;
                }
            });
        }
    });
    let output = Command::new(&client_bin)
        .args([
            "--connect",
            &addr,
            "--streams",
            "2",
            "--size",
            "64k",
            "--json",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(summary["verified"], false);
    assert!(summary["mismatches"].as_u64().unwrap() >= 1);
}

/// Starts the server binary with `args` and returns it with the address
/// it logged ("... echo server listening (...) local=127.0.0.1:PORT").
fn spawn_server(args: &[&str]) -> (Child, String) {
    let mut server = Child(
        Command::new(example("echo_server"))
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut lines = BufReader::new(server.0.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("server log ended").unwrap();
        if let Some(rest) = line.split("local=").nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (server, addr)
}

/// The server binary over `transport` with a self-signed certificate it
/// writes to a file; the client binary trusts that file (`--ca`), echoes
/// and verifies. Then a client without `--ca` is refused with one clear
/// line.
fn binaries_verify_over(transport: &str) {
    let ca = std::env::temp_dir().join(format!(
        "creditmux-echo-ca-{}-{transport}.pem",
        std::process::id()
    ));
    let ca_arg = ca.to_str().unwrap();
    let (_server, addr) = spawn_server(&[
        "--listen",
        "127.0.0.1:0",
        "--transport",
        transport,
        "--write-ca",
        ca_arg,
    ]);
    let output = Command::new(example("echo_client"))
        .args([
            "--transport",
            transport,
            "--connect",
            &addr,
            "--ca",
            ca_arg,
            "--streams",
            "8",
            "--size",
            "256k",
            "--json",
        ])
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&ca);
    assert!(
        output.status.success(),
        "client failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(summary["verified"], true, "{summary}");
    assert_eq!(summary["bytes_verified"], 8 * 256 * 1024);

    let output = Command::new(example("echo_client"))
        .args(["--transport", transport, "--connect", &addr])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("needs --ca FILE"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

#[test]
fn the_client_binary_verifies_against_the_server_binary_over_tls() {
    binaries_verify_over("tls");
}

#[test]
fn the_client_binary_verifies_against_the_server_binary_over_quic_framed() {
    binaries_verify_over("quic-framed");
}

/// The one-command path over each secure transport: an embedded server
/// with a self-signed certificate generated on start.
#[test]
fn the_client_binary_verifies_standalone_over_tls_and_both_quic_modes() {
    for transport in ["tls", "quic", "quic-framed"] {
        let output = Command::new(example("echo_client"))
            .args([
                "--transport",
                transport,
                "--streams",
                "4",
                "--size",
                "64k",
                "--json",
            ])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{transport}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(summary["verified"], true, "{transport}: {summary}");
    }
}

#[test]
fn the_client_binary_verifies_against_the_server_binary_over_native_quic() {
    binaries_verify_over("quic");
}

/// A native-QUIC client against a framed-QUIC server: the modes have
/// different ALPN identifiers, so the client fails with one clear line.
#[test]
fn a_native_client_against_a_framed_server_fails_with_one_line() {
    let ca = std::env::temp_dir().join(format!("creditmux-mode-ca-{}.pem", std::process::id()));
    let ca_arg = ca.to_str().unwrap();
    let (_server, addr) = spawn_server(&[
        "--listen",
        "127.0.0.1:0",
        "--transport",
        "quic-framed",
        "--write-ca",
        ca_arg,
    ]);
    let output = Command::new(example("echo_client"))
        .args(["--transport", "quic", "--connect", &addr, "--ca", ca_arg])
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&ca);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("ALPN"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

/// Starts the server binary with `args`; returns it, its address, and every
/// log line it writes after that, as they come.
fn spawn_server_logged(
    args: &[&str],
) -> (Child, String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let mut server = Child(
        Command::new(example("echo_server"))
            .args(args)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut lines = BufReader::new(server.0.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("server log ended").unwrap();
        if let Some(rest) = line.split("local=").nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    (server, addr, log)
}

/// The number after `key=` in a log line.
fn field(line: &str, key: &str) -> u64 {
    let at = line
        .find(&format!(" {key}="))
        .unwrap_or_else(|| panic!("no {key} in {line}"));
    line[at + key.len() + 2..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number for {key} in {line}"))
}

/// SIGINT or SIGTERM to the server binary in the middle of transfers: it
/// drains and exits 0, and what each side reports is the truth. Every
/// stream the server logs as echoed arrived whole at the client (with its
/// FIN) and was verified there; every other stream fails at the client
/// with an error; no byte arrives corrupted. `ECHO_SIGNAL_LOOPS` sets the
/// rounds (default 12), half with one 8 MiB stream per worker, half with
/// workers opening stream after stream.
#[test]
fn a_signal_during_transfers_drains_and_reports_the_truth() {
    let rounds: usize = std::env::var("ECHO_SIGNAL_LOOPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    let client_bin = example("echo_client");
    for round in 0..rounds {
        let (mut server, addr, log) = spawn_server_logged(&["--listen", "127.0.0.1:0"]);
        let continuous = round % 2 == 1;
        let mut args = vec!["--connect", &addr, "--streams", "4", "--json"];
        if continuous {
            args.extend(["--size", "256k", "--duration", "10s"]);
        } else {
            args.extend(["--size", "8MiB"]);
        }
        let client = Command::new(&client_bin)
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(20 + 37 * (round as u64 % 5)));
        let signal = if round % 3 == 2 { "-TERM" } else { "-INT" };
        let pid = server.0.id().to_string();
        Command::new("kill").args([signal, &pid]).status().unwrap();
        let output = client.wait_with_output().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = server.0.try_wait().unwrap() {
                break status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "round {round}: server did not exit"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(status.success(), "round {round}: server exit {status}");
        // The log thread sees the end of the pipe shortly after the exit.
        std::thread::sleep(Duration::from_millis(50));
        let stdout = String::from_utf8_lossy(&output.stdout);
        let summary: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!(
                "round {round}: client output {stdout:?} ({e}); stderr {}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
        let log = log.lock().unwrap().clone();
        let closed: Vec<&String> = log
            .iter()
            .filter(|l| l.contains("connection closed"))
            .collect();
        assert_eq!(closed.len(), 1, "round {round}: {log:#?}");
        let line = closed[0];
        let echoed = field(line, "echoed");
        let not_echoed = field(line, "not_echoed");
        let accepted = field(line, "streams");
        assert_eq!(echoed + not_echoed, accepted, "round {round}: {line}");
        assert_eq!(summary["mismatches"], 0, "round {round}: {summary}");
        // Streams the client verified to their end (bulk: one per round).
        let verified_streams = summary["operations"].as_u64().unwrap();
        assert_eq!(
            echoed, verified_streams,
            "round {round}: the server says {echoed} streams were echoed, the client verified \
             {verified_streams}: {line} / {summary}"
        );
        let errors = summary["errors"].as_array().unwrap();
        if summary["verified"] == true {
            assert_eq!(output.status.code(), Some(0));
            assert_eq!(not_echoed, 0, "round {round}: {line}");
        } else {
            assert_eq!(output.status.code(), Some(1), "round {round}");
            assert!(!errors.is_empty(), "round {round}: failed without a reason");
        }
    }
}
