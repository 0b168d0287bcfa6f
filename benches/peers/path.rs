//! The delay path for the delay scenario: the proxy of
//! tests/support/delay.rs on its own thread and current-thread runtime,
//! so that its timers are not held up by either side's work.

use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::delay::{DelayProxy, Link};
use crate::harness::{Res, runtime};
use crate::transports::s;

/// A running delay proxy; dropping it stops the proxy and ends every
/// connection it carries.
pub struct PathThread {
    addr: SocketAddr,
    /// Dropping it ends the proxy's thread.
    _stop: oneshot::Sender<()>,
}

impl PathThread {
    /// Starts a proxy to `target` over `link` (each way) and waits until
    /// it listens.
    pub fn start(target: SocketAddr, link: Link) -> Res<PathThread> {
        let (addr_tx, addr_rx) = mpsc::sync_channel::<Res<SocketAddr>>(1);
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("peers-delay".into())
            .spawn(move || {
                let rt = runtime();
                rt.block_on(async move {
                    match DelayProxy::start(target, link).await {
                        Ok(proxy) => {
                            let _ = addr_tx.send(Ok(proxy.addr()));
                            // Ends when the PathThread is dropped.
                            let _ = stopped.await;
                        }
                        Err(e) => {
                            let _ = addr_tx.send(Err(format!("delay proxy: {e}")));
                        }
                    }
                });
                rt.shutdown_timeout(Duration::from_secs(1));
            })
            .map_err(s)?;
        let addr = addr_rx
            .recv_timeout(Duration::from_secs(5))
            .map_err(|_| "the delay proxy did not start".to_string())??;
        Ok(PathThread { addr, _stop: stop })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}
