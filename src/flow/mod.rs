//! Credit as checked value types (SPEC §9).
//!
//! Integers only: no frames, no time, no I/O. The same two types serve the
//! stream level, the connection level and the stream-count credit, because
//! all three are absolute, monotonic limits.

mod credit;

pub use credit::{CreditError, RecvCredit, SendCredit};
