//! A hand-made peer on the far end of an in-memory pipe: it writes frames
//! and reads the frames a real `Session` writes, so tests can see the
//! wire under tokio's paused clock.

#![allow(dead_code)]

use bytes::BytesMut;
use creditmux::frame::{
    Decoded, Frame, FrameDecoder, PREFACE_LEN, Settings, SettingsValues, encode_preface,
};
use creditmux::{Config, Session};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

pub struct WirePeer {
    pub io: DuplexStream,
    rx: BytesMut,
    decoder: FrameDecoder,
    preface_left: usize,
}

impl WirePeer {
    /// A `Session::server` with `config` on one end of a pipe and this peer,
    /// as its client, on the other, past the handshake; `values` are the
    /// peer's SETTINGS (its grants to the server).
    pub async fn with_server(config: Config, values: SettingsValues) -> (WirePeer, Session) {
        let (near, far) = tokio::io::duplex(1 << 20);
        let server = tokio::spawn(Session::server(far, config));
        let mut peer = WirePeer {
            io: near,
            rx: BytesMut::new(),
            decoder: FrameDecoder::new((1 << 24) - 1),
            preface_left: PREFACE_LEN,
        };
        let mut hello = BytesMut::from(&encode_preface()[..]);
        Frame::Settings(Settings { ack: false, values }).encode(&mut hello);
        peer.io.write_all(&hello).await.unwrap();
        // SPEC §4.1: acknowledged once received.
        peer.until(|f| matches!(f, Frame::Settings(s) if !s.ack))
            .await;
        peer.send(&[Frame::Settings(Settings {
            ack: true,
            values: SettingsValues::default(),
        })])
        .await;
        let session = server.await.unwrap().expect("handshake");
        (peer, session)
    }

    pub async fn send(&mut self, frames: &[Frame]) {
        let mut bytes = BytesMut::new();
        for f in frames {
            f.encode(&mut bytes);
        }
        self.io.write_all(&bytes).await.unwrap();
    }

    /// The next frame the session wrote; `None` at the end of the pipe.
    pub async fn next_frame(&mut self) -> Option<Frame> {
        loop {
            if self.preface_left > 0 && !self.rx.is_empty() {
                let n = self.preface_left.min(self.rx.len());
                let _ = self.rx.split_to(n);
                self.preface_left -= n;
            }
            if self.preface_left == 0 {
                match self
                    .decoder
                    .decode_next(&mut self.rx)
                    .expect("a valid frame")
                {
                    Some(Decoded::Frame(frame)) => return Some(frame),
                    Some(Decoded::Ignored(_)) => continue,
                    None => {}
                }
            }
            let mut buf = [0u8; 64 * 1024];
            let n = self.io.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                return None;
            }
            self.rx.extend_from_slice(&buf[..n]);
        }
    }

    /// Frames until one matches `want`; returns it and the ones before.
    pub async fn until(&mut self, want: impl Fn(&Frame) -> bool) -> (Frame, Vec<Frame>) {
        let mut before = Vec::new();
        loop {
            let frame = self
                .next_frame()
                .await
                .unwrap_or_else(|| panic!("the pipe ended; frames: {before:?}"));
            if want(&frame) {
                return (frame, before);
            }
            before.push(frame);
        }
    }
}
