//! Perly's integration tests: one binary, the real server on port 0 with a
//! fresh database (a temp SQLite file, or a new PostgreSQL database when
//! `PERLY_TEST_DATABASE_URL` is a postgres URL).

mod alerts;
mod api_keys;
mod backlog;
mod backup;
mod bad_input;
mod browser;
mod cli;
mod commands;
mod crash;
mod database_outage;
mod delivery;
mod demo;
mod helpers;
mod history;
mod ingest;
mod ingest_crash;
mod ingest_limits;
mod isolation;
mod migrate;
mod notifications;
mod oauth;
mod observability;
mod openapi;
mod outbound;
mod planner;
mod portfolio;
mod rescoring;
mod salesforce;
mod salesforce_crash;
mod salesforce_fields;
mod salesforce_push;
mod scoring;
mod secrets;
mod signin;
mod upgrade;
mod wakeups;
mod web;
