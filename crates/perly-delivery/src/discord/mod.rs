//! Discord: execute-webhook payloads.

pub mod message;
