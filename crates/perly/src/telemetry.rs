//! Structured logs with `tracing`; the filter comes from `RUST_LOG` or the
//! `log` setting. Secrets never reach a log line: they are `SecretString`s.

use tracing_subscriber::EnvFilter;

pub fn init(default_filter: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .try_init();
}
