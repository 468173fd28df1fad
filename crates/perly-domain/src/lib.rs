//! Perly's pure logic. Nothing in this crate touches the database, the network
//! or the clock: every function that needs the time takes `now`.
//!
//! Data moves through it like this: raw JSON rows are parsed into [`event::Event`]s
//! and [`customer::CustomerInput`]s (with errors that name the field), events are
//! folded into a per-customer [`rollup::Rollup`] (idempotent and order-independent),
//! [`scoring::score`] turns a rollup into a 0–100 [`scoring::Score`] with signals and a
//! suggested action, and [`alerts::detect`] compares the new score with the
//! customer's [`alerts::AlertState`] to decide which of the five alert kinds fire.

pub mod alerts;
pub mod channels;
pub mod customer;
pub mod event;
pub mod field_error;
pub mod ids;
pub mod imports;
pub mod money;
pub mod pulled_fields;
pub mod replay;
pub mod risk;
pub mod rollup;
pub mod salesforce;
pub mod scorecard;
pub mod scoring;

pub use field_error::FieldError;

#[cfg(test)]
mod properties;
