//! The HTTP edge's Prometheus metrics: request latency by route template
//! and status class, and ingested rows by result. The binary registers
//! them with the rest (`perly::metrics`) and serves them on its metrics
//! listener, never on this app's.
//!
//! Label values are bounded by construction: `&'static str`s from fixed
//! sets (methods, status classes, row results), and the route is the
//! router's matched template (`/api/v1/customers/{external_id}`), never the
//! path a client sent; a request no route matched is `unmatched`.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// Latency buckets (seconds): Prometheus' defaults.
pub const LATENCY_BUCKETS: [f64; 11] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: &'static str,
    /// The matched route template, or `unmatched`.
    pub route: String,
    /// `1xx` … `5xx`.
    pub status: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IngestLabels {
    /// `event` or `customer`.
    pub kind: &'static str,
    /// Events: `accepted`, `duplicate`, `rejected`; customers: `created`,
    /// `updated`, `rejected`.
    pub result: &'static str,
}

/// Every (kind, result) of ingested rows.
pub const INGEST_RESULTS: [(&str, &str); 6] = [
    ("event", "accepted"),
    ("event", "duplicate"),
    ("event", "rejected"),
    ("customer", "created"),
    ("customer", "updated"),
    ("customer", "rejected"),
];

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// The web app's metrics; one per server, shared by its handlers.
#[derive(Debug)]
pub struct WebMetrics {
    pub requests: Family<RequestLabels, Histogram, fn() -> Histogram>,
    pub ingest_rows: Family<IngestLabels, Counter>,
}

impl Default for WebMetrics {
    fn default() -> Self {
        Self {
            requests: Family::new_with_constructor(latency_histogram),
            ingest_rows: Family::default(),
        }
    }
}

impl WebMetrics {
    /// Registers the metrics, every row result starting at 0.
    pub fn register(&self, registry: &mut Registry) {
        for (kind, result) in INGEST_RESULTS {
            self.ingest_rows.get_or_create(&IngestLabels { kind, result }).inc_by(0);
        }
        registry.register_with_unit(
            "perly_http_request_duration",
            "HTTP requests by method, matched route template and status class, and how long they took",
            Unit::Seconds,
            self.requests.clone(),
        );
        registry.register(
            "perly_ingest_rows",
            "Rows sent to POST /api/v1/events (kind event) and POST /api/v1/customers (kind customer), by result",
            self.ingest_rows.clone(),
        );
    }

    /// Counts `n` ingested rows of `kind` with `result`.
    pub fn ingested(&self, kind: &'static str, result: &'static str, n: usize) {
        if n > 0 {
            self.ingest_rows
                .get_or_create(&IngestLabels { kind, result })
                .inc_by(n as u64);
        }
    }
}

/// A method as a label: the standard ones by name, anything else `other`.
fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// Middleware timing each request (until its response head is ready).
pub async fn track(State(metrics): State<Arc<WebMetrics>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(req.method());
    let route = match req.extensions().get::<MatchedPath>() {
        Some(p) => p.as_str().to_owned(),
        None => "unmatched".to_owned(),
    };
    let response = next.run(req).await;
    let labels = RequestLabels {
        method,
        route,
        status: status_class(response.status().as_u16()),
    };
    metrics
        .requests
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_come_from_fixed_sets() {
        assert_eq!(status_class(204), "2xx");
        assert_eq!(status_class(429), "4xx");
        assert_eq!(status_class(503), "5xx");
        assert_eq!(method_label(&Method::GET), "GET");
        let odd = Method::from_bytes(b"BREW").expect("a method");
        assert_eq!(method_label(&odd), "other");
    }
}
