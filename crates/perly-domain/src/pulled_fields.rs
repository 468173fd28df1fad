//! The fields a Salesforce sync asks for, object by object, and what Perly
//! goes without when the connected user cannot read one (field-level
//! security hides it: the object's describe does not list it, and a query
//! naming it is refused with `INVALID_FIELD`).
//!
//! A field is *essential* when the object cannot be synced without it: the
//! bookkeeping columns (`Id`, `IsDeleted`, the `SystemModstamp` watermark),
//! the lookups that tie a record to its account (`Contact.AccountId`,
//! `Opportunity.AccountId`, …), what tells a won deal from a lost one, and
//! the picked external id field (without it customers would be matched on
//! the Account Id and come in twice). Any other field is optional: the sync
//! leaves it out of the query and says what goes missing.

use serde::{Deserialize, Serialize};

use crate::salesforce::SyncSettings;

/// One field the sync asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WantedField {
    /// The API name; a parent's field is dotted (`Owner.Email`).
    pub name: String,
    /// Without it the object cannot be synced.
    pub essential: bool,
    /// What goes missing without it, in the admin's words: "contacts show
    /// no phone".
    pub effect: String,
}

/// A field the sync wanted but the connected user cannot read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HiddenField {
    /// The object queried: `Contact`.
    pub object: String,
    /// The field as Perly asks for it: `Phone`, or `Owner.Email`.
    pub field: String,
    /// What Perly goes without: "contacts show no phone".
    pub effect: String,
    /// The object cannot be synced without it (it is reported failed).
    pub essential: bool,
}

impl HiddenField {
    pub fn new(object: &str, wanted: &WantedField) -> Self {
        Self {
            object: object.to_owned(),
            field: wanted.name.clone(),
            effect: wanted.effect.clone(),
            essential: wanted.essential,
        }
    }

    /// `Contact.Phone`.
    pub fn qualified(&self) -> String {
        format!("{}.{}", self.object, self.field)
    }

    /// "Contact.Phone hidden: contacts show no phone".
    pub fn line(&self) -> String {
        format!("{} hidden: {}", self.qualified(), self.effect)
    }
}

/// The columns every object is read with: bookkeeping, all essential.
pub const BOOKKEEPING: [&str; 3] = ["Id", "IsDeleted", "SystemModstamp"];

fn essential(name: &str, effect: &str) -> WantedField {
    WantedField {
        name: name.to_owned(),
        essential: true,
        effect: effect.to_owned(),
    }
}

fn optional(name: &str, effect: &str) -> WantedField {
    WantedField {
        name: name.to_owned(),
        essential: false,
        effect: effect.to_owned(),
    }
}

/// What the pull asks for on `object`, in query order: the bookkeeping
/// columns, Perly's own list, then (Account, Contact) the fields picked in
/// the sync settings. Empty for an object the sync does not pull.
pub fn wanted_fields(object: &str, settings: &SyncSettings) -> Vec<WantedField> {
    let noun = match object {
        "Account" => "accounts",
        "Contact" => "contacts",
        "AccountContactRole" => "account contact roles",
        "Opportunity" => "opportunities",
        "OpportunityContactRole" => "opportunity contact roles",
        "Task" => "tasks",
        "Event" => "events",
        _ => return Vec::new(),
    };
    let mut out = vec![
        essential("Id", &format!("{noun} cannot be told apart")),
        essential("IsDeleted", &format!("deleted {noun} cannot be told from live ones")),
        essential(
            "SystemModstamp",
            &format!("changed {noun} cannot be found (it is the sync's watermark)"),
        ),
    ];
    let own: Vec<WantedField> = match object {
        "Account" => vec![
            optional("Name", "customers are named by their Account Id"),
            optional("ParentId", "parent accounts unknown: the customer hierarchy is flat"),
            optional("OwnerId", "customers have no owner"),
            optional("Owner.Email", "customers have no owner"),
            optional("Type", "account type unknown"),
            optional("Industry", "industry unknown"),
            optional("AnnualRevenue", "annual revenue unknown"),
            optional("NumberOfEmployees", "company size unknown"),
        ],
        "Contact" => vec![
            essential("AccountId", "contacts cannot be tied to their accounts"),
            optional("FirstName", "contacts show no first name"),
            optional("LastName", "contacts show no last name"),
            optional("Email", "contacts show no e-mail"),
            optional("Title", "contacts show no title"),
            optional("Phone", "contacts show no phone"),
        ],
        "AccountContactRole" => vec![
            essential("AccountId", "contact roles cannot be tied to their accounts"),
            essential("ContactId", "contact roles cannot be tied to their contacts"),
            optional("Role", "contacts' roles at their accounts unknown"),
            optional("IsPrimary", "primary contacts unknown"),
        ],
        "Opportunity" => vec![
            essential("AccountId", "opportunities cannot be tied to their accounts"),
            optional("Name", "opportunities show no name"),
            optional("StageName", "opportunity stages unknown"),
            optional("Amount", "renewal value unknown"),
            optional(
                "CloseDate",
                "close dates unknown: renewals due soon or overdue are not seen",
            ),
            essential("IsClosed", "open opportunities cannot be told from closed ones"),
            essential("IsWon", "won opportunities cannot be told from lost ones"),
            optional("Type", "renewals cannot be told from new business"),
            optional("Probability", "win probability unknown"),
        ],
        "OpportunityContactRole" => vec![
            essential(
                "OpportunityId",
                "opportunity contact roles cannot be tied to their opportunities",
            ),
            essential(
                "Opportunity.AccountId",
                "opportunity contact roles cannot be tied to their accounts",
            ),
            essential(
                "ContactId",
                "opportunity contact roles cannot be tied to their contacts",
            ),
            optional("Role", "contacts' roles in deals unknown"),
            optional("IsPrimary", "deals' primary contacts unknown"),
        ],
        "Task" => vec![
            essential("WhatId", "tasks cannot be tied to their accounts"),
            optional("Subject", "tasks show no subject"),
            optional("ActivityDate", "tasks are dated when they were created, not when due"),
            optional("TaskSubtype", "calls and e-mails are told apart by the task type alone"),
            optional("Type", "calls and e-mails are told apart by the task subtype alone"),
            essential("CreatedDate", "tasks cannot be dated"),
        ],
        "Event" => vec![
            essential("WhatId", "events cannot be tied to their accounts"),
            optional("Subject", "meetings show no subject"),
            optional(
                "ActivityDateTime",
                "meetings are dated when they were created, not when held",
            ),
            optional("EventSubtype", "event subtype unknown"),
            optional("Type", "event type unknown"),
            essential("CreatedDate", "events cannot be dated"),
        ],
        _ => Vec::new(),
    };
    out.extend(own);
    let picked: Vec<WantedField> = match object {
        "Account" => settings
            .external_id_field
            .iter()
            .map(|f| {
                essential(
                    f,
                    "customers cannot be matched on their external id (the picked match field)",
                )
            })
            .chain(
                settings
                    .account_fields
                    .iter()
                    .map(|f| optional(f, "a field picked in the sync settings is not pulled")),
            )
            .collect(),
        "Contact" => settings
            .contact_fields
            .iter()
            .map(|f| optional(f, "a field picked in the sync settings is not pulled"))
            .collect(),
        _ => Vec::new(),
    };
    for f in picked {
        match out.iter_mut().find(|o| o.name.eq_ignore_ascii_case(&f.name)) {
            // Picked as the match field: whatever it was, it is essential now.
            Some(o) => o.essential |= f.essential,
            None => out.push(f),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(object: &str, settings: &SyncSettings) -> Vec<String> {
        wanted_fields(object, settings).into_iter().map(|f| f.name).collect()
    }

    #[test]
    fn every_pulled_object_starts_with_the_bookkeeping_columns() {
        for object in [
            "Account",
            "Contact",
            "AccountContactRole",
            "Opportunity",
            "OpportunityContactRole",
            "Task",
            "Event",
        ] {
            let wanted = wanted_fields(object, &SyncSettings::default());
            let first: Vec<(&str, bool)> = wanted.iter().take(3).map(|f| (f.name.as_str(), f.essential)).collect();
            assert_eq!(
                first,
                [("Id", true), ("IsDeleted", true), ("SystemModstamp", true)],
                "{object}"
            );
            assert!(wanted.iter().all(|f| !f.effect.is_empty()), "{object}");
        }
        assert!(wanted_fields("Lead", &SyncSettings::default()).is_empty());
    }

    #[test]
    fn account_lookups_are_essential_and_descriptive_fields_are_not() {
        let need = |object: &str, field: &str| {
            wanted_fields(object, &SyncSettings::default())
                .into_iter()
                .find(|f| f.name == field)
                .map(|f| f.essential)
        };
        assert_eq!(need("Contact", "AccountId"), Some(true));
        assert_eq!(need("Opportunity", "AccountId"), Some(true));
        assert_eq!(need("OpportunityContactRole", "Opportunity.AccountId"), Some(true));
        assert_eq!(need("Contact", "Phone"), Some(false));
        assert_eq!(need("Opportunity", "Amount"), Some(false));
        assert_eq!(need("Opportunity", "Probability"), Some(false));
        assert_eq!(need("Account", "AnnualRevenue"), Some(false));
    }

    #[test]
    fn picked_fields_follow_perlys_own_and_the_match_field_is_essential() {
        let settings = SyncSettings {
            external_id_field: Some("Customer_Id__c".into()),
            account_fields: vec!["Region__c".into(), "name".into(), "customer_id__c".into()],
            contact_fields: vec!["Pronouns__c".into()],
            ..SyncSettings::default()
        };
        let account = wanted_fields("Account", &settings);
        let tail: Vec<(&str, bool)> = account
            .iter()
            .skip(11)
            .map(|f| (f.name.as_str(), f.essential))
            .collect();
        assert_eq!(tail, [("Customer_Id__c", true), ("Region__c", false)]);
        assert_eq!(
            names("Contact", &settings).last().map(String::as_str),
            Some("Pronouns__c")
        );
        let hidden = HiddenField::new("Opportunity", &wanted_fields("Opportunity", &settings)[6]);
        assert_eq!(hidden.line(), "Opportunity.Amount hidden: renewal value unknown");
    }
}
