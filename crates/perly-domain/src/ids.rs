//! Typed ids. Every row id is a UUIDv7 (time-ordered, so indexes stay compact);
//! the newtypes keep a customer id from being passed where a workspace id belongs.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh time-ordered id.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    };
}

id_type!(
    /// One Perly customer (a company using Perly).
    WorkspaceId
);
id_type!(
    /// One account of a workspace's customers.
    CustomerId
);
id_type!(
    /// One detected alert.
    AlertId
);
id_type!(
    /// A person who signs in to a workspace.
    UserId
);
id_type!(
    /// An ingestion API key.
    ApiKeyId
);
id_type!(
    /// A Slack or Discord channel that receives alerts.
    ChannelId
);
id_type!(
    /// One outbox row: an alert (or a test message) on its way to a channel.
    DeliveryId
);
id_type!(
    /// One Salesforce sync run.
    SyncId
);
id_type!(
    /// One import: a backfill, a first Salesforce sync or a scorecard change.
    ImportId
);
id_type!(
    /// One summary message of an import for a channel.
    NoticeId
);
id_type!(
    /// One Salesforce automation rule.
    RuleId
);
id_type!(
    /// One Salesforce automation action (a Task or a Chatter post for an alert).
    ActionId
);
