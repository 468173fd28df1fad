//! Field-level security: which of the fields Perly wants the connected user
//! can read. Salesforce's describe of an object lists only the fields the
//! user can see, and a query naming any other field is refused as a whole
//! (`INVALID_FIELD`, "No such column 'Phone' on entity 'Contact'…"). So the
//! pull and the permission check read the describe first and ask only for
//! what it lists: [`plan`] (pure) splits the wanted fields
//! ([`perly_domain::pulled_fields::wanted_fields`]) into the readable ones
//! and the [`HiddenField`]s, and [`Describes`] fetches each describe once.
//!
//! A parent's field (`Owner.Email`, `Opportunity.AccountId`) is readable
//! when the object's describe lists a lookup with that relationship name and
//! the describe of an object it points to lists the field.

use std::collections::HashMap;

use perly_domain::pulled_fields::{HiddenField, WantedField};

use crate::client::Client;
use crate::error::{Error, Result};
use crate::rest::SObjectDescribe;

/// One object's query, once its describe was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPlan {
    /// The readable wanted fields, in the wanted order.
    pub fields: Vec<String>,
    /// The wanted fields the user cannot read, essential ones included.
    pub hidden: Vec<HiddenField>,
}

impl FieldPlan {
    /// Hidden fields the object cannot be synced without.
    pub fn essential_hidden(&self) -> Vec<HiddenField> {
        self.hidden.iter().filter(|h| h.essential).cloned().collect()
    }
}

/// Whether the describes list `name` on `object` (dotted: through a lookup
/// with that relationship name). `describe` answers `None` for an object
/// whose describe was not read or cannot be.
pub fn readable<'a>(object: &str, name: &str, describe: &dyn Fn(&str) -> Option<&'a SObjectDescribe>) -> bool {
    let Some(d) = describe(object) else {
        return false;
    };
    match name.split_once('.') {
        None => d.field(name).is_some(),
        Some((relationship, rest)) => d
            .fields
            .iter()
            .filter(|f| {
                f.relationship_name
                    .as_deref()
                    .is_some_and(|r| r.eq_ignore_ascii_case(relationship))
            })
            .any(|f| f.reference_to.iter().any(|target| readable(target, rest, describe))),
    }
}

/// Splits `wanted` on `object` into what to query and what is hidden.
pub fn plan<'a>(
    object: &str,
    wanted: &[WantedField],
    describe: &dyn Fn(&str) -> Option<&'a SObjectDescribe>,
) -> FieldPlan {
    let mut out = FieldPlan {
        fields: Vec::new(),
        hidden: Vec::new(),
    };
    for w in wanted {
        if readable(object, &w.name, describe) {
            out.fields.push(w.name.clone());
        } else {
            out.hidden.push(HiddenField::new(object, w));
        }
    }
    out
}

/// The objects the lookups of `wanted`'s dotted fields point to, as the
/// object's describe names them (first hop only: Perly's dotted fields go
/// one parent up).
pub fn parents(describe: &SObjectDescribe, wanted: &[WantedField]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for w in wanted {
        let Some((relationship, _)) = w.name.split_once('.') else {
            continue;
        };
        for f in &describe.fields {
            if f.relationship_name
                .as_deref()
                .is_some_and(|r| r.eq_ignore_ascii_case(relationship))
            {
                for target in &f.reference_to {
                    if !out.contains(target) {
                        out.push(target.clone());
                    }
                }
            }
        }
    }
    out
}

/// Whether Salesforce refused a call on an object because it is not there
/// for this user: no read access, or not enabled in the org.
pub fn refuses_object(e: &Error) -> bool {
    matches!(
        e.code(),
        Some("INVALID_TYPE" | "INSUFFICIENT_ACCESS" | "INSUFFICIENT_ACCESS_OR_READONLY" | "INVALID_TYPE_FOR_OPERATION")
    )
}

/// Whether a describe's error says the user cannot read the object: as
/// [`refuses_object`], or the describe is not found.
fn describe_unreadable(e: &Error) -> bool {
    e.is_not_found() || refuses_object(e)
}

/// Describes read once each (per sync run, per permission check).
#[derive(Debug, Default)]
pub struct Describes {
    /// `None`: the user cannot read the object.
    read: HashMap<String, Option<SObjectDescribe>>,
}

impl Describes {
    /// Reads `object`'s describe unless already read; `Ok(false)` when the
    /// user cannot read the object (Salesforce says it is not there, or
    /// that it is not queryable).
    pub async fn fetch(&mut self, client: &Client, object: &str) -> Result<bool> {
        if let Some(d) = self.read.get(object) {
            return Ok(d.is_some());
        }
        let d = match client.describe(object).await {
            Ok(d) if d.queryable => Some(d),
            Ok(_) => None,
            Err(e) if describe_unreadable(&e) => None,
            Err(e) => return Err(e),
        };
        let readable = d.is_some();
        self.read.insert(object.to_owned(), d);
        Ok(readable)
    }

    /// `object`'s describe, if read and readable.
    pub fn get(&self, object: &str) -> Option<&SObjectDescribe> {
        self.read.get(object).and_then(Option::as_ref)
    }

    /// Reads again next time (the org's fields changed under a query).
    pub fn forget(&mut self) {
        self.read.clear();
    }

    /// The plan for `object`; `Ok(None)` when the user cannot read it.
    pub async fn plan(&mut self, client: &Client, object: &str, wanted: &[WantedField]) -> Result<Option<FieldPlan>> {
        if !self.fetch(client, object).await? {
            return Ok(None);
        }
        let targets = self
            .read
            .get(object)
            .and_then(Option::as_ref)
            .map(|d| parents(d, wanted))
            .unwrap_or_default();
        for target in targets {
            self.fetch(client, &target).await?;
        }
        let read = &self.read;
        let describe = |name: &str| read.get(name).and_then(Option::as_ref);
        Ok(Some(plan(object, wanted, &describe)))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use perly_domain::pulled_fields::wanted_fields;
    use perly_domain::salesforce::SyncSettings;

    use super::*;
    use crate::fixtures::spec;
    use crate::rest::FieldDescribe;

    fn account() -> SObjectDescribe {
        serde_json::from_str(&spec("describe/account_describe_excerpt.json")).unwrap()
    }

    fn describe_of(name: &str, fields: &[&str]) -> SObjectDescribe {
        let template = account().field("Name").unwrap().clone();
        SObjectDescribe {
            name: name.into(),
            label: name.into(),
            queryable: true,
            createable: true,
            updateable: true,
            fields: fields
                .iter()
                .map(|f| FieldDescribe {
                    name: (*f).into(),
                    ..template.clone()
                })
                .collect(),
        }
    }

    #[test]
    fn hidden_fields_are_left_out_and_named_with_what_they_feed() {
        let wanted = wanted_fields("Contact", &SyncSettings::default());
        let contact = describe_of(
            "Contact",
            &[
                "Id",
                "IsDeleted",
                "SystemModstamp",
                "AccountId",
                "FirstName",
                "LastName",
                "Email",
                "Title",
            ],
        );
        let describe = |n: &str| (n == "Contact").then_some(&contact);
        let p = plan("Contact", &wanted, &describe);
        assert_eq!(
            p.fields,
            [
                "Id",
                "IsDeleted",
                "SystemModstamp",
                "AccountId",
                "FirstName",
                "LastName",
                "Email",
                "Title"
            ]
        );
        let lines: Vec<String> = p.hidden.iter().map(HiddenField::line).collect();
        assert_eq!(lines, ["Contact.Phone hidden: contacts show no phone"]);
        assert!(p.essential_hidden().is_empty());
    }

    #[test]
    fn a_hidden_account_lookup_is_essential() {
        let wanted = wanted_fields("Opportunity", &SyncSettings::default());
        let opp = describe_of(
            "Opportunity",
            &[
                "Id",
                "IsDeleted",
                "SystemModstamp",
                "Name",
                "StageName",
                "IsClosed",
                "IsWon",
            ],
        );
        let describe = |n: &str| (n == "Opportunity").then_some(&opp);
        let p = plan("Opportunity", &wanted, &describe);
        let essential: Vec<String> = p.essential_hidden().iter().map(HiddenField::qualified).collect();
        assert_eq!(essential, ["Opportunity.AccountId"]);
        let optional: Vec<&str> = p
            .hidden
            .iter()
            .filter(|h| !h.essential)
            .map(|h| h.field.as_str())
            .collect();
        assert_eq!(optional, ["Amount", "CloseDate", "Type", "Probability"]);
    }

    #[test]
    fn parent_fields_need_the_lookup_and_the_parents_field() {
        // The recorded Account describe: OwnerId → User, relationship Owner.
        let account = account();
        let wanted = [WantedField {
            name: "Owner.Email".into(),
            essential: false,
            effect: "customers have no owner".into(),
        }];
        assert_eq!(parents(&account, &wanted), ["User"]);
        let user = describe_of("User", &["Id", "Email"]);
        let both = |n: &str| match n {
            "Account" => Some(&account),
            "User" => Some(&user),
            _ => None,
        };
        assert!(readable("Account", "owner.email", &both));
        assert!(!readable("Account", "Owner.Phone", &both));
        let no_user = |n: &str| (n == "Account").then_some(&account);
        assert!(!readable("Account", "Owner.Email", &no_user));
        let mut hidden_lookup = account.clone();
        hidden_lookup.fields.retain(|f| f.name != "OwnerId");
        let no_lookup = |n: &str| match n {
            "Account" => Some(&hidden_lookup),
            "User" => Some(&user),
            _ => None,
        };
        assert!(!readable("Account", "Owner.Email", &no_lookup));
        assert!(parents(&hidden_lookup, &wanted).is_empty());
    }
}
