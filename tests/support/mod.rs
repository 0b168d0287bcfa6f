pub mod conn;
pub mod control_pair;
pub mod frames;
pub mod pair;
pub mod proxy;
pub mod raw;
pub mod repr;
pub mod wire_peer;
