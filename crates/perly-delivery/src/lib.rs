//! Slack and Discord delivery.
//!
//! - [`message`] is what an alert says, whatever the platform; [`slack::message`]
//!   and [`discord::message`] turn one alert (or a digest of several) into each
//!   platform's webhook payload: colour by risk, the customer linked to its
//!   profile, score and delta, top signals, suggested action, kind and time,
//!   within every documented length limit and with customer text escaped so
//!   it pings no one. All pure.
//! - [`slack::oauth`] and [`discord::oauth`] install a webhook with OAuth;
//!   [`webhook`] checks a pasted webhook URL against the configured vendor host.
//! - [`notice`] is a message that is not one alert (a storm digest, an import
//!   summary), rendered by `slack::message::render_notice` and
//!   `discord::message::render_notice`.
//! - [`worker`] drains the delivery outbox: claim a channel, render, post,
//!   acknowledge, keeping the channel's lease while a post is in flight;
//!   [`retry`] says what an answer means and how long to wait, [`pacing`]
//!   keeps each webhook within its platform's rate limit, [`storm`] within
//!   the channel's storm guard (and writes the storm digest); [`metrics`]
//!   counts what it does for `/metrics`.

pub mod discord;
pub mod message;
pub mod metrics;
pub mod notice;
pub mod oauth;
pub mod pacing;
pub mod retry;
pub mod slack;
pub mod storm;
pub mod webhook;
pub mod worker;
