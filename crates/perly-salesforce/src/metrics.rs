//! The Salesforce workers' Prometheus metrics: rows pulled per object, sync
//! runs by outcome, score pushes and automation actions by outcome. No
//! label names an org, a workspace or a record: objects come from the
//! fixed list Perly syncs ([`perly_store::SYNC_OBJECTS`]). The API budget,
//! which is the org's figure, is read from the database at scrape time
//! (`perly::metrics`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ObjectLabels {
    /// `Account`, `Contact`, … (one of the synced objects), or `other`.
    pub object: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabels {
    /// `task` or `chatter`.
    pub kind: &'static str,
    /// `done`, `retry` or `dead`.
    pub outcome: &'static str,
}

#[derive(Debug, Default)]
pub struct SalesforceMetrics {
    pub rows_pulled: Family<ObjectLabels, Counter>,
    pub syncs: Family<OutcomeLabels, Counter>,
    pub pushes: Family<OutcomeLabels, Counter>,
    pub actions: Family<ActionLabels, Counter>,
}

impl SalesforceMetrics {
    /// Registers the metrics, every object and outcome starting at 0.
    pub fn register(&self, registry: &mut Registry) {
        for object in perly_store::SYNC_OBJECTS {
            self.rows_pulled.get_or_create(&ObjectLabels { object }).inc_by(0);
        }
        for outcome in ["succeeded", "failed", "postponed", "broken", "lease_lost", "error"] {
            self.syncs.get_or_create(&OutcomeLabels { outcome }).inc_by(0);
        }
        for outcome in ["written", "retry", "given_up"] {
            self.pushes.get_or_create(&OutcomeLabels { outcome }).inc_by(0);
        }
        for kind in ["task", "chatter"] {
            for outcome in ["done", "retry", "dead"] {
                self.actions.get_or_create(&ActionLabels { kind, outcome }).inc_by(0);
            }
        }
        registry.register(
            "perly_salesforce_rows_pulled",
            "Rows pulled from Salesforce by sync runs, by object",
            self.rows_pulled.clone(),
        );
        registry.register(
            "perly_salesforce_syncs",
            "Salesforce sync runs ended, by outcome (succeeded, failed, postponed, broken, lease_lost, error: the outcome could not be recorded)",
            self.syncs.clone(),
        );
        registry.register(
            "perly_salesforce_rows_pushed",
            "Account score pushes to Salesforce, by outcome (written, retry, given_up)",
            self.pushes.clone(),
        );
        registry.register(
            "perly_salesforce_actions",
            "Salesforce Tasks and Chatter posts written for alerts, by kind and outcome (done, retry, dead)",
            self.actions.clone(),
        );
    }

    pub(crate) fn pulled(&self, object: &str, rows: u64) {
        let object = perly_store::SYNC_OBJECTS
            .iter()
            .copied()
            .find(|o| *o == object)
            .unwrap_or("other");
        self.rows_pulled.get_or_create(&ObjectLabels { object }).inc_by(rows);
    }

    pub(crate) fn action(&self, kind: &'static str, outcome: &'static str) {
        self.actions.get_or_create(&ActionLabels { kind, outcome }).inc();
    }

    pub(crate) fn count(family: &Family<OutcomeLabels, Counter>, outcome: &'static str, n: u64) {
        if n > 0 {
            family.get_or_create(&OutcomeLabels { outcome }).inc_by(n);
        }
    }
}
