pub mod choppy;
pub mod conn;
pub mod control_pair;
pub mod delay;
pub mod frames;
pub mod pair;
pub mod proxy;
pub mod raw;
pub mod repr;
pub mod sessions;
pub mod sim;
pub mod wire_peer;

#[cfg(feature = "tls")]
#[path = "../../examples/support/certs.rs"]
pub mod certs;
