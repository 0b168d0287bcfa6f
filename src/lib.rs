pub mod config;
pub mod conn;
pub mod error;
pub mod flow;
pub mod frame;
