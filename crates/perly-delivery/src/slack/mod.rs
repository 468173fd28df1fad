//! Slack: incoming-webhook payloads.

pub mod message;
