//! Discord: execute-webhook payloads and the OAuth2 `webhook.incoming` install.

pub mod message;
pub mod oauth;
