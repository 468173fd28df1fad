//! The delivery worker's Prometheus metrics: messages posted by platform
//! and outcome, the alerts they carried, post latency, lease expiries.
//! Per platform, not per channel: channels are made by users without
//! bound, and a series per channel would grow with them (the outbox gauges
//! of `perly::metrics` give the largest backlog of any one channel).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use perly_domain::channels::Platform;
use perly_store::AckOutcome;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `slack` or `discord`.
    pub platform: &'static str,
    /// `sent`, `retry`, `dead` (refused, kept as a dead letter), `broken`
    /// (the webhook is gone), `storm_wait` (a claim given back because the
    /// channel's storm window was full).
    pub outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PlatformLabels {
    pub platform: &'static str,
}

/// Seconds: a webhook post takes tens of milliseconds to the timeout (10 s).
const POST_BUCKETS: [f64; 10] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

fn post_histogram() -> Histogram {
    Histogram::new(POST_BUCKETS)
}

#[derive(Debug)]
pub struct DeliveryMetrics {
    pub messages: Family<OutcomeLabels, Counter>,
    pub alerts: Family<PlatformLabels, Counter>,
    pub post_seconds: Family<PlatformLabels, Histogram, fn() -> Histogram>,
    pub lease_expiries: Counter,
}

impl Default for DeliveryMetrics {
    fn default() -> Self {
        Self {
            messages: Family::default(),
            alerts: Family::default(),
            post_seconds: Family::new_with_constructor(post_histogram),
            lease_expiries: Counter::default(),
        }
    }
}

/// Every outcome label.
pub const OUTCOMES: [&str; 5] = ["sent", "retry", "dead", "broken", "storm_wait"];

/// The label of an acknowledged attempt's outcome.
pub fn outcome_label(o: &AckOutcome) -> &'static str {
    match o {
        AckOutcome::Sent => "sent",
        AckOutcome::Retry => "retry",
        AckOutcome::Dead => "dead",
        AckOutcome::Broken(_) => "broken",
    }
}

impl DeliveryMetrics {
    /// Registers the metrics, every platform and outcome starting at 0.
    pub fn register(&self, registry: &mut Registry) {
        for platform in Platform::ALL {
            for outcome in OUTCOMES {
                self.messages
                    .get_or_create(&OutcomeLabels {
                        platform: platform.as_str(),
                        outcome,
                    })
                    .inc_by(0);
            }
            self.alerts
                .get_or_create(&PlatformLabels {
                    platform: platform.as_str(),
                })
                .inc_by(0);
        }
        registry.register(
            "perly_delivery_messages",
            "Slack and Discord messages by platform and outcome (sent, retry, dead, broken, storm_wait)",
            self.messages.clone(),
        );
        registry.register(
            "perly_delivery_alerts",
            "Alerts (and test messages) carried by messages the platform accepted; a storm digest counts every alert it stood for",
            self.alerts.clone(),
        );
        registry.register_with_unit(
            "perly_delivery_post_duration",
            "How long webhook posts took, by platform",
            Unit::Seconds,
            self.post_seconds.clone(),
        );
        registry.register(
            "perly_delivery_lease_expiries",
            "Channel leases that ran out while this process was posting or acknowledging",
            self.lease_expiries.clone(),
        );
    }

    pub(crate) fn message(&self, platform: Platform, outcome: &'static str) {
        self.messages
            .get_or_create(&OutcomeLabels {
                platform: platform.as_str(),
                outcome,
            })
            .inc();
    }

    pub(crate) fn delivered(&self, platform: Platform, alerts: usize) {
        self.alerts
            .get_or_create(&PlatformLabels {
                platform: platform.as_str(),
            })
            .inc_by(alerts as u64);
    }

    pub(crate) fn posted(&self, platform: Platform, seconds: f64) {
        self.post_seconds
            .get_or_create(&PlatformLabels {
                platform: platform.as_str(),
            })
            .observe(seconds);
    }
}
