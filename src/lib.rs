//! creditmux: stream multiplexing with credit-based flow control.

pub mod frame;
