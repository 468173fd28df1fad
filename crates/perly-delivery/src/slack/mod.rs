//! Slack: incoming-webhook payloads and the OAuth v2 install.

pub mod message;
pub mod oauth;
