//! Slack and Discord delivery. So far it holds the pure message renderers:
//! [`message::AlertMessage`] is what an alert says (the same content on both
//! platforms), and [`slack::message`] and [`discord::message`] turn it into
//! each platform's webhook payload: colour by risk, the customer linked to its
//! profile, score and delta, top signals, suggested action, kind and time,
//! within every documented length limit and with customer text escaped so it
//! pings no one.

pub mod discord;
pub mod message;
pub mod slack;
