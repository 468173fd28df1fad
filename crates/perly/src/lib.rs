//! The `perly` binary's library: configuration, telemetry, wiring of the
//! server and its workers, the demo and the benchmarks. `main.rs` only parses
//! the command line and calls in here, so integration tests start exactly
//! what the binary starts.

pub mod bench;
pub mod cli;
pub mod config;
pub mod demo;
pub mod metrics;
pub mod rescore;
pub mod server;
pub mod standin;
pub mod telemetry;
