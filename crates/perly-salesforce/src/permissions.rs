//! Whether the connected user can do everything Perly needs, said in words
//! an admin can act on. [`check`] reads the global describe (object access),
//! the describe of each object Perly reads (which of the fields the sync
//! wants field-level security hides, see [`crate::field_access`]; the
//! Account one also says whether Perly's fields exist and are writable) and,
//! when they are not, `UserPermissionAccess` (the running user's effective
//! system permissions, API v41.0+) for "Customize Application". The
//! decision itself is the pure [`evaluate`].

use perly_domain::pulled_fields::{wanted_fields, HiddenField};
use perly_domain::salesforce::SyncSettings;
use serde::Deserialize;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::field_access::Describes;
use crate::fields::{OBJECT, PERLY_FIELDS};
use crate::rest::{SObjectDescribe, SObjectSummary};

/// One thing an admin must grant before Perly can work fully.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingPermission {
    /// What is missing: "Read access to Opportunity".
    pub what: String,
    /// What Perly needs it for.
    pub why: String,
    /// What an admin does about it.
    pub grant: String,
}

/// Everything missing; empty means Perly has what it needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PermissionReport {
    pub missing: Vec<MissingPermission>,
    /// The fields the sync wants that the connected user cannot read (each
    /// is in `missing` too, with what to grant).
    pub hidden_fields: Vec<HiddenField>,
}

impl PermissionReport {
    pub fn is_complete(&self) -> bool {
        self.missing.is_empty()
    }
}

/// Objects Perly reads, with why (plural label for the admin's wording).
const READS: &[(&str, &str, &str)] = &[
    (
        "Account",
        "accounts",
        "Perly reads accounts to know your customers and their hierarchy",
    ),
    (
        "Contact",
        "contacts",
        "Perly reads contacts to know who works at each customer",
    ),
    (
        "Opportunity",
        "opportunities",
        "Perly reads opportunities for renewal and expansion signals",
    ),
    (
        "Task",
        "tasks",
        "Perly reads tasks to see how often each customer is contacted",
    ),
    (
        "Event",
        "events",
        "Perly reads events to see meetings with each customer",
    ),
    (
        "AccountContactRole",
        "account contact roles",
        "Perly reads account contact roles to find each customer's decision makers",
    ),
    (
        "OpportunityContactRole",
        "opportunity contact roles",
        "Perly reads opportunity contact roles to find who is involved in renewals",
    ),
];

/// Objects Perly creates records of, with why.
const CREATES: &[(&str, &str, &str)] = &[
    (
        "Task",
        "tasks",
        "Perly creates follow-up tasks for account owners when a customer's risk rises",
    ),
    (
        "FeedItem",
        "Chatter posts",
        "Perly posts alerts to the account's Chatter feed",
    ),
];

/// Error codes meaning the API is off for the org or the user.
const API_DISABLED: &[&str] = &["API_DISABLED_FOR_ORG", "API_CURRENTLY_DISABLED"];

fn api_disabled() -> MissingPermission {
    MissingPermission {
        what: "API access".into(),
        why: "Perly talks to Salesforce only through its API".into(),
        grant: "Use an edition with API access (Enterprise, Unlimited, Performance or Developer), then in Setup give the connected user's profile or a permission set the \"API Enabled\" permission".into(),
    }
}

/// The running user's system permissions that matter to Perly.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UserPermissions {
    #[serde(default)]
    pub permissions_customize_application: bool,
    #[serde(default)]
    pub permissions_modify_all_data: bool,
}

/// What an admin grants for a hidden field, and what Perly goes without.
fn hidden_field(h: &HiddenField) -> MissingPermission {
    let plural = READS
        .iter()
        .find(|(name, _, _)| *name == h.object)
        .map_or(h.object.as_str(), |(_, plural, _)| plural);
    MissingPermission {
        what: format!("Read access to {}", h.qualified()),
        why: if h.essential {
            format!("Perly cannot sync {plural} without it: {}", h.effect)
        } else {
            format!("without it, {}", h.effect)
        },
        grant: match h.field.split_once('.') {
            None => format!(
                "In Setup › Object Manager › {} › Fields & Relationships › {}, click Set Field-Level Security and make it Visible for the connected user's profile, or give Read on it in a permission set assigned to the user",
                h.object, h.field
            ),
            Some((lookup, field)) => format!(
                "In Setup › Object Manager, make the {lookup} lookup of {} and the {field} field of the object it points to Visible for the connected user (Set Field-Level Security on each, or Read in a permission set assigned to the user)",
                h.object
            ),
        },
    }
}

/// Decides what is missing from what Salesforce said. `account` is the
/// Account describe (`None` if it could not be read); `user` the
/// `UserPermissionAccess` row (only needed when Perly's fields are not all
/// present and writable); `hidden` the fields the sync wants that the
/// describes do not list.
pub fn evaluate(
    global: &[SObjectSummary],
    account: Option<&SObjectDescribe>,
    user: Option<UserPermissions>,
    hidden: &[HiddenField],
) -> PermissionReport {
    let mut missing = Vec::new();
    let find = |name: &str| global.iter().find(|s| s.name == name);
    for (name, plural, why) in READS {
        let readable = find(name).is_some_and(|s| s.queryable && s.retrieveable);
        if !readable {
            missing.push(MissingPermission {
                what: format!("Read access to {name}"),
                why: (*why).into(),
                grant: format!(
                    "In Setup, give the connected user's profile or a permission set Read on {}",
                    capitalise(plural)
                ),
            });
        }
    }
    for (name, plural, why) in CREATES {
        if !find(name).is_some_and(|s| s.createable) {
            missing.push(MissingPermission {
                what: format!("Create access to {name}"),
                why: (*why).into(),
                grant: if *name == "FeedItem" {
                    "Turn on Chatter (Setup → Chatter Settings) and make sure the connected user can post to feeds"
                        .into()
                } else {
                    format!(
                        "In Setup, give the connected user's profile or a permission set Create on {}",
                        capitalise(plural)
                    )
                },
            });
        }
    }
    let writable = account.is_some_and(|d| {
        PERLY_FIELDS
            .iter()
            .all(|f| d.field(f.api_name).is_some_and(|fd| fd.updateable))
    });
    if !writable && !user.is_some_and(|u| u.permissions_customize_application) {
        missing.push(MissingPermission {
            what: "Permission to add Perly's fields to Account".into(),
            why: "Perly writes the health score, risk level and last update time into three custom fields on Account (Perly Health Score, Perly Risk Level, Perly Last Updated)".into(),
            grant: "Either give the connected user \"Customize Application\", \"Manage Profiles and Permission Sets\" and \"Assign Permission Sets\" (the System Administrator profile has them) so Perly can create the fields, or create the three fields yourself and give the connected user Edit access to them".into(),
        });
    }
    missing.extend(hidden.iter().map(hidden_field));
    PermissionReport {
        missing,
        hidden_fields: hidden.to_vec(),
    }
}

fn capitalise(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Checks the connected user's access, with the fields `settings` picks;
/// see the module docs.
pub async fn check(client: &Client, settings: &SyncSettings) -> Result<PermissionReport> {
    let global = match client.describe_global().await {
        Ok(global) => global,
        Err(Error::Api { code, .. }) if API_DISABLED.contains(&code.as_str()) => {
            return Ok(PermissionReport {
                missing: vec![api_disabled()],
                hidden_fields: Vec::new(),
            })
        }
        Err(e) => return Err(e),
    };
    let mut describes = Describes::default();
    let mut hidden = Vec::new();
    for (name, _, _) in READS {
        // An object the user cannot read is reported as such; its fields are not.
        let readable = global.iter().any(|s| s.name == *name && s.queryable && s.retrieveable);
        if !readable {
            continue;
        }
        if let Some(plan) = describes.plan(client, name, &wanted_fields(name, settings)).await? {
            hidden.extend(plan.hidden);
        }
    }
    describes.fetch(client, OBJECT).await?;
    let account = describes.get(OBJECT).cloned();
    let writable = account.as_ref().is_some_and(|d| {
        PERLY_FIELDS
            .iter()
            .all(|f| d.field(f.api_name).is_some_and(|fd| fd.updateable))
    });
    let user = if writable {
        None
    } else {
        let rows: Vec<UserPermissions> = client
            .query("SELECT PermissionsCustomizeApplication, PermissionsModifyAllData FROM UserPermissionAccess")
            .await?;
        rows.into_iter().next()
    };
    Ok(evaluate(&global, account.as_ref(), user, &hidden))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::fixtures::spec;

    fn summary(name: &str, read: bool, create: bool) -> SObjectSummary {
        SObjectSummary {
            name: name.into(),
            label: name.into(),
            queryable: read,
            createable: create,
            updateable: create,
            retrieveable: read,
            custom: false,
        }
    }

    fn everything() -> Vec<SObjectSummary> {
        READS
            .iter()
            .map(|(n, _, _)| summary(n, true, true))
            .chain([summary("FeedItem", true, true)])
            .collect()
    }

    fn account_with_perly_fields(updateable: bool) -> SObjectDescribe {
        let mut d: SObjectDescribe = serde_json::from_str(&spec("describe/account_describe_excerpt.json")).unwrap();
        let template = d.field("SLAExpirationDate__c").unwrap().clone();
        for f in &PERLY_FIELDS {
            let mut fd = template.clone();
            fd.name = f.api_name.into();
            fd.updateable = updateable;
            d.fields.push(fd);
        }
        d
    }

    fn admin() -> UserPermissions {
        UserPermissions {
            permissions_customize_application: true,
            permissions_modify_all_data: true,
        }
    }

    #[test]
    fn nothing_is_missing_for_a_full_user_with_writable_fields() {
        let r = evaluate(&everything(), Some(&account_with_perly_fields(true)), None, &[]);
        assert!(r.is_complete(), "{r:?}");
    }

    #[test]
    fn an_admin_without_the_fields_yet_is_complete() {
        let account: SObjectDescribe = serde_json::from_str(&spec("describe/account_describe_excerpt.json")).unwrap();
        let r = evaluate(&everything(), Some(&account), Some(admin()), &[]);
        assert!(r.is_complete(), "{r:?}");
    }

    #[test]
    fn unreadable_opportunities_are_named_in_plain_words() {
        let mut global = everything();
        global.retain(|s| s.name != "Opportunity");
        global.push(summary("Opportunity", false, false));
        let r = evaluate(&global, Some(&account_with_perly_fields(true)), None, &[]);
        assert_eq!(
            r.missing,
            vec![MissingPermission {
                what: "Read access to Opportunity".into(),
                why: "Perly reads opportunities for renewal and expansion signals".into(),
                grant: "In Setup, give the connected user's profile or a permission set Read on Opportunities".into(),
            }]
        );
    }

    #[test]
    fn objects_missing_from_the_describe_count_as_unreadable() {
        let global: Vec<_> = everything()
            .into_iter()
            .filter(|s| s.name != "AccountContactRole" && s.name != "FeedItem")
            .collect();
        let r = evaluate(&global, Some(&account_with_perly_fields(true)), None, &[]);
        let whats: Vec<_> = r.missing.iter().map(|m| m.what.as_str()).collect();
        assert_eq!(
            whats,
            ["Read access to AccountContactRole", "Create access to FeedItem"]
        );
    }

    #[test]
    fn read_only_fields_without_customize_application_are_missing() {
        let r = evaluate(
            &everything(),
            Some(&account_with_perly_fields(false)),
            Some(UserPermissions::default()),
            &[],
        );
        assert_eq!(r.missing.len(), 1);
        assert_eq!(r.missing[0].what, "Permission to add Perly's fields to Account");
        let r = evaluate(
            &everything(),
            Some(&account_with_perly_fields(false)),
            Some(admin()),
            &[],
        );
        assert!(r.is_complete());
    }

    #[test]
    fn hidden_fields_are_named_with_what_they_feed_and_how_to_grant_them() {
        let hidden = [
            HiddenField {
                object: "Contact".into(),
                field: "Phone".into(),
                effect: "contacts show no phone".into(),
                essential: false,
            },
            HiddenField {
                object: "Opportunity".into(),
                field: "AccountId".into(),
                effect: "opportunities cannot be tied to their accounts".into(),
                essential: true,
            },
        ];
        let r = evaluate(&everything(), Some(&account_with_perly_fields(true)), None, &hidden);
        assert!(!r.is_complete());
        assert_eq!(r.hidden_fields, hidden);
        assert_eq!(
            r.missing[0],
            MissingPermission {
                what: "Read access to Contact.Phone".into(),
                why: "without it, contacts show no phone".into(),
                grant: "In Setup › Object Manager › Contact › Fields & Relationships › Phone, click Set Field-Level Security and make it Visible for the connected user's profile, or give Read on it in a permission set assigned to the user".into(),
            }
        );
        assert_eq!(r.missing[1].what, "Read access to Opportunity.AccountId");
        assert_eq!(
            r.missing[1].why,
            "Perly cannot sync opportunities without it: opportunities cannot be tied to their accounts"
        );
    }

    #[test]
    fn task_creation_is_checked() {
        let mut global = everything();
        for s in &mut global {
            if s.name == "Task" {
                s.createable = false;
            }
        }
        let r = evaluate(&global, Some(&account_with_perly_fields(true)), None, &[]);
        assert_eq!(r.missing[0].what, "Create access to Task");
        assert!(r.missing[0].grant.ends_with("Create on Tasks"));
    }
}
