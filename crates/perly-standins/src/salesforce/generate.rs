//! The generated org: every record's values are a pure function of the
//! seed, the sizes in [`OrgSpec`] and the record's index, so nothing is
//! stored for them and a run is reproducible.
//!
//! Relations follow from the indexes: contact `c` belongs to account
//! `c / contacts_per_account`, opportunity `o` to `o / opportunities_per_account`,
//! and so on; account `i` with `i % 10 >= 7` is a child of account
//! `i - i % 10` (a small hierarchy). Dates spread over the two years before
//! the spec's anchor; every generated `SystemModstamp` is at or before it.

use chrono::{DateTime, NaiveDate, Utc};

use super::catalog::Kind;
use super::ids;
use super::OrgSpec;

const DAY_MS: i64 = 86_400_000;

/// Users of the org: index 0 is the admin every OAuth login signs in as;
/// the others own records. (first, last, alias, active)
pub(crate) const USERS: &[(&str, &str, &str, bool)] = &[
    ("Avery", "Admin", "aadmin", true),
    ("Maya", "Patel", "mpatel", true),
    ("Jonas", "Berg", "jberg", true),
    ("Priya", "Raman", "praman", true),
    ("Diego", "Alvarez", "dalvarez", true),
    ("Hannah", "Kim", "hkim", false),
];

const DOMAIN: &str = "acme-cs.example.com";

const NAME_A: &[&str] = &[
    "Northwind",
    "Bluebird",
    "Granite",
    "Silverline",
    "Redwood",
    "Lumen",
    "Harbor",
    "Summit",
    "Vertex",
    "Cobalt",
    "Juniper",
    "Atlas",
    "Beacon",
    "Cascade",
    "Driftwood",
    "Ember",
    "Falcon",
    "Glacier",
    "Horizon",
    "Ironclad",
    "Keystone",
    "Lakeside",
    "Meridian",
    "Nimbus",
    "Orchid",
    "Pioneer",
    "Quarry",
    "Riverbend",
    "Sequoia",
    "Tidewater",
    "Umbra",
    "Willow",
];
const NAME_B: &[&str] = &[
    "Analytics",
    "Logistics",
    "Health",
    "Foods",
    "Robotics",
    "Energy",
    "Media",
    "Systems",
    "Labs",
    "Capital",
    "Networks",
    "Retail",
    "Motors",
    "Pharma",
    "Studios",
    "Telecom",
    "Biotech",
    "Outfitters",
    "Software",
    "Partners",
    "Dynamics",
    "Holdings",
    "Airlines",
    "Apparel",
    "Foundry",
    "Insurance",
    "Learning",
    "Marine",
    "Solar",
    "Textiles",
    "Ventures",
    "Works",
];
const FIRST: &[&str] = &[
    "Olivia",
    "Liam",
    "Emma",
    "Noah",
    "Ava",
    "Oliver",
    "Sophia",
    "Elijah",
    "Isabella",
    "James",
    "Mia",
    "William",
    "Amelia",
    "Benjamin",
    "Harper",
    "Lucas",
    "Evelyn",
    "Henry",
    "Abigail",
    "Alexander",
    "Emily",
    "Sebastian",
    "Ella",
    "Mateo",
    "Aisha",
    "Kenji",
    "Fatima",
    "Ravi",
    "Ingrid",
    "Tomas",
];
const LAST: &[&str] = &[
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Perez",
    "Thompson",
    "White",
    "Harris",
    "Sanchez",
    "Clark",
    "Nakamura",
    "Okafor",
    "Lindqvist",
];
const TITLES: &[&str] = &[
    "CEO",
    "CFO",
    "CTO",
    "VP Operations",
    "Director of IT",
    "Head of Customer Success",
    "Procurement Manager",
    "Product Manager",
    "Engineering Manager",
    "Operations Analyst",
];
const DEAL_NAMES: &[&str] = &[
    "Platform",
    "Expansion",
    "Renewal",
    "Add-on Seats",
    "Pilot",
    "Enterprise Upgrade",
];

/// Everything a generator needs: sizes, seed, the org's pod and anchor.
#[derive(Debug, Clone)]
pub(crate) struct Gen {
    pub(crate) spec: OrgSpec,
    pub(crate) pod: &'static str,
    pub(crate) sandbox: bool,
    pub(crate) org_id: String,
    pub(crate) org_name: String,
    anchor_ms: i64,
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The calendar day of a dateTime.
pub(crate) fn date_of(ms: i64) -> NaiveDate {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .date_naive()
}

/// The default probability (%) of a stage, as in a fresh org.
pub(crate) fn probability(stage: &str) -> f64 {
    match stage {
        "Prospecting" | "Qualification" => 10.0,
        "Needs Analysis" => 20.0,
        "Value Proposition" => 50.0,
        "Id. Decision Makers" => 60.0,
        "Perception Analysis" => 70.0,
        "Proposal/Price Quote" => 75.0,
        "Negotiation/Review" => 90.0,
        "Closed Won" => 100.0,
        _ => 0.0,
    }
}

/// The forecast category of a stage, as in a fresh org.
pub(crate) fn forecast(stage: &str) -> &'static str {
    match stage {
        "Prospecting" | "Qualification" | "Needs Analysis" | "Value Proposition" => "Pipeline",
        "Id. Decision Makers" | "Perception Analysis" | "Proposal/Price Quote" => "Best Case",
        "Negotiation/Review" => "Commit",
        "Closed Won" => "Closed",
        _ => "Omitted",
    }
}

pub(crate) fn task_subject(subtype: &str) -> &'static str {
    match subtype {
        "Call" => "Call",
        "Email" => "Email: Quarterly check-in",
        _ => "Follow up on renewal",
    }
}

pub(crate) fn task_type(subtype: &str) -> &'static str {
    match subtype {
        "Call" => "Call",
        "Email" => "Email",
        _ => "Other",
    }
}

impl Gen {
    pub(crate) fn new(spec: OrgSpec, sandbox: bool) -> Gen {
        let pod = if sandbox { "8a" } else { "5e" };
        Gen {
            anchor_ms: spec.anchor.timestamp_millis(),
            spec,
            pod,
            sandbox,
            org_id: ids::make("00D", pod, 1),
            org_name: "Acme Customer Success".into(),
        }
    }

    /// How many records of `kind` are generated.
    pub(crate) fn count(&self, kind: Kind) -> u64 {
        let s = &self.spec;
        let contacts = s.accounts * s.contacts_per_account;
        match kind {
            Kind::User => self.users(),
            Kind::Organization | Kind::UserPermissionAccess => 1,
            Kind::Account => s.accounts,
            Kind::Contact => contacts,
            Kind::AccountContactRole if s.contacts_per_account > 0 => s.accounts,
            Kind::Opportunity => s.accounts * s.opportunities_per_account,
            Kind::OpportunityContactRole if s.contacts_per_account > 0 => s.accounts * s.opportunities_per_account,
            Kind::Task => s.accounts * s.tasks_per_account,
            Kind::Event => s.accounts * s.events_per_account,
            _ => 0,
        }
    }

    pub(crate) fn h(&self, salt: u64, i: u64) -> u64 {
        splitmix(self.spec.seed ^ splitmix(salt.wrapping_mul(0x1000_0000_01B3) ^ splitmix(i)))
    }

    pub(crate) fn pick(&self, salt: u64, i: u64, list: &[&'static str]) -> &'static str {
        // The modulus is below the list's length.
        list[(self.h(salt, i) % list.len() as u64) as usize]
    }

    pub(crate) fn id(&self, prefix: &str, i: u64) -> String {
        ids::make(prefix, self.pod, i + 1)
    }

    pub(crate) fn user_id(&self, i: u64) -> String {
        self.id("005", i)
    }

    pub(crate) fn account_id(&self, i: u64) -> String {
        self.id("001", i)
    }

    pub(crate) fn contact_id(&self, i: u64) -> String {
        self.id("003", i)
    }

    pub(crate) fn opportunity_id(&self, i: u64) -> String {
        self.id("006", i)
    }

    /// The anchor, in milliseconds.
    pub(crate) fn anchor_ms(&self) -> i64 {
        self.anchor_ms
    }

    /// Users: the admin and the record owners ([`OrgSpec::owners`], or the
    /// default ones).
    pub(crate) fn users(&self) -> u64 {
        if self.spec.owners.is_empty() {
            USERS.len() as u64
        } else {
            1 + self.spec.owners.len() as u64
        }
    }

    /// Within the two years before the anchor (leaving its last month);
    /// Tasks and Events within [`OrgSpec::activity_days`] before it when set.
    pub(crate) fn created_ms(&self, kind: Kind, i: u64) -> i64 {
        if matches!(kind, Kind::Task | Kind::Event) && self.spec.activity_days > 0 {
            let span = (self.spec.activity_days * DAY_MS as u64).max(1);
            #[allow(clippy::cast_possible_wrap)]
            let offset = (self.h(kind as u64 * 1000 + 1, i) % span) as i64;
            return self.anchor_ms - span as i64 + offset / 1000 * 1000;
        }
        let span = (700 * DAY_MS) as u64;
        // Below 700 days in milliseconds: fits.
        #[allow(clippy::cast_possible_wrap)]
        let offset = (self.h(kind as u64 * 1000 + 1, i) % span) as i64;
        self.anchor_ms - 730 * DAY_MS + offset / 1000 * 1000
    }

    /// Between creation and the anchor.
    pub(crate) fn modstamp_ms(&self, kind: Kind, i: u64) -> i64 {
        let created = self.created_ms(kind, i);
        let room = (self.anchor_ms - created).max(1) as u64;
        #[allow(clippy::cast_possible_wrap)]
        let offset = (self.h(kind as u64 * 1000 + 2, i) % room) as i64;
        created + offset / 1000 * 1000
    }

    /// (first, last, alias, active, email when given).
    fn user(&self, i: u64) -> (&str, &str, &str, bool, Option<&str>) {
        match self.spec.owners.get((i as usize).wrapping_sub(1)) {
            Some(o) if i > 0 => (&o.first_name, &o.last_name, &o.alias, true, Some(o.email.as_str())),
            _ => {
                let (first, last, alias, active) = USERS[(i as usize).min(USERS.len() - 1)];
                (first, last, alias, active, None)
            }
        }
    }

    pub(crate) fn username(&self, i: u64) -> String {
        let (first, last, _, _, _) = self.user(i);
        let base = if i == 0 {
            format!("admin@{DOMAIN}")
        } else {
            format!("{}.{}@{DOMAIN}", first.to_lowercase(), last.to_lowercase())
        };
        // Sandbox copies append the sandbox name to every username.
        if self.sandbox {
            format!("{base}.staging")
        } else {
            base
        }
    }

    pub(crate) fn user_first(&self, i: u64) -> String {
        self.user(i).0.to_owned()
    }

    pub(crate) fn user_last(&self, i: u64) -> String {
        self.user(i).1.to_owned()
    }

    pub(crate) fn user_name(&self, i: u64) -> String {
        format!("{} {}", self.user(i).0, self.user(i).1)
    }

    pub(crate) fn user_alias(&self, i: u64) -> String {
        self.user(i).2.to_owned()
    }

    pub(crate) fn user_active(&self, i: u64) -> bool {
        self.user(i).3
    }

    pub(crate) fn user_email(&self, i: u64) -> String {
        let (first, last, _, _, email) = self.user(i);
        if let Some(email) = email {
            email.to_owned()
        } else if i == 0 {
            format!("admin@{DOMAIN}")
        } else {
            format!("{}.{}@{DOMAIN}", first.to_lowercase(), last.to_lowercase())
        }
    }

    /// One of the record-owning users (not the admin).
    pub(crate) fn owner_id(&self, salt: u64, i: u64) -> String {
        self.user_id(1 + self.h(salt, i) % (self.users() - 1).max(1))
    }

    /// Account `i`'s given fields, when [`OrgSpec::named_accounts`] has them.
    fn named(&self, i: u64) -> Option<&super::NamedAccount> {
        self.spec.named_accounts.get(usize::try_from(i).ok()?)
    }

    /// The owner of account `i`: the named account's owner (matched by
    /// email among [`OrgSpec::owners`]) or one of the owners.
    pub(crate) fn account_owner_id(&self, i: u64) -> String {
        let given = self.named(i).and_then(|a| a.owner_email.as_deref()).and_then(|email| {
            self.spec
                .owners
                .iter()
                .position(|o| o.email.eq_ignore_ascii_case(email))
        });
        match given {
            Some(k) => self.user_id(1 + k as u64),
            None => self.owner_id(14, i),
        }
    }

    /// The product's own id for account `i` (`Customer_Id__c`).
    pub(crate) fn account_customer_id(&self, i: u64) -> String {
        match self.named(i) {
            Some(a) => a.customer_id.clone(),
            None => format!("cust-{:06}", i + 1),
        }
    }

    fn name_parts(&self, i: u64) -> (&'static str, &'static str, u64) {
        let a = NAME_A[(i % NAME_A.len() as u64) as usize];
        let b = NAME_B[((i / NAME_A.len() as u64) % NAME_B.len() as u64) as usize];
        (a, b, i / (NAME_A.len() * NAME_B.len()) as u64)
    }

    pub(crate) fn account_name(&self, i: u64) -> String {
        if let Some(a) = self.named(i) {
            return a.name.clone();
        }
        match self.name_parts(i) {
            (a, b, 0) => format!("{a} {b}"),
            (a, b, n) => format!("{a} {b} {}", n + 1),
        }
    }

    fn account_domain(&self, i: u64) -> String {
        if let Some(a) = self.named(i) {
            let slug: String = a.name.chars().filter(char::is_ascii_alphanumeric).collect();
            return format!("{}.example.com", slug.to_lowercase());
        }
        match self.name_parts(i) {
            (a, b, 0) => format!("{}{}.example.com", a.to_lowercase(), b.to_lowercase()),
            (a, b, n) => format!("{}{}{}.example.com", a.to_lowercase(), b.to_lowercase(), n + 1),
        }
    }

    pub(crate) fn account_website(&self, i: u64) -> String {
        format!("https://www.{}", self.account_domain(i))
    }

    /// Generated accounts form a small hierarchy; named ones stand alone.
    pub(crate) fn account_parent(&self, i: u64) -> Option<u64> {
        (i % 10 >= 7 && self.named(i).is_none()).then(|| i - i % 10)
    }

    pub(crate) fn account_revenue(&self, i: u64) -> f64 {
        ((self.h(17, i) % 990 + 10) * 100_000) as f64
    }

    pub(crate) fn account_employees(&self, i: u64) -> i64 {
        // Below 5000.
        (self.h(18, i) % 4990 + 10) as i64
    }

    pub(crate) fn sla_date(&self, i: u64) -> NaiveDate {
        let offset = (self.h(19, i) % 730) as i64;
        date_of(self.anchor_ms - 365 * DAY_MS + offset * DAY_MS)
    }

    pub(crate) fn phone(&self, salt: u64, i: u64) -> String {
        let h = self.h(salt, i);
        format!("({:03}) 555-{:04}", 200 + h % 700, (h / 1000) % 10_000)
    }

    pub(crate) fn contact_account(&self, c: u64) -> u64 {
        c / self.spec.contacts_per_account.max(1)
    }

    pub(crate) fn first_contact(&self, account: u64) -> u64 {
        account * self.spec.contacts_per_account
    }

    pub(crate) fn first_name(&self, c: u64) -> &'static str {
        self.pick(22, c, FIRST)
    }

    pub(crate) fn last_name(&self, c: u64) -> &'static str {
        self.pick(23, c, LAST)
    }

    pub(crate) fn title(&self, c: u64) -> &'static str {
        self.pick(24, c, TITLES)
    }

    pub(crate) fn contact_email(&self, c: u64) -> String {
        format!(
            "{}.{}{}@{}",
            self.first_name(c).to_lowercase(),
            self.last_name(c).to_lowercase(),
            c,
            self.account_domain(self.contact_account(c))
        )
    }

    /// Every contact but an account's first reports to the first.
    pub(crate) fn contact_reports_to(&self, c: u64) -> Option<u64> {
        let first = self.first_contact(self.contact_account(c));
        (c != first).then_some(first)
    }

    pub(crate) fn opportunity_account(&self, o: u64) -> u64 {
        o / self.spec.opportunities_per_account.max(1)
    }

    pub(crate) fn opportunity_name(&self, o: u64) -> String {
        format!(
            "{} - {}",
            self.account_name(self.opportunity_account(o)),
            self.pick(42, o, DEAL_NAMES)
        )
    }

    pub(crate) fn stage(&self, o: u64) -> &'static str {
        self.pick(43, o, super::catalog::STAGES)
    }

    pub(crate) fn amount(&self, o: u64) -> f64 {
        ((self.h(44, o) % 500 + 5) * 1000) as f64
    }

    pub(crate) fn close_date(&self, o: u64) -> NaiveDate {
        let offset = (self.h(45, o) % 180) as i64;
        date_of(self.created_ms(Kind::Opportunity, o) + offset * DAY_MS)
    }

    /// A contact of `account` (none when accounts have no contacts).
    pub(crate) fn activity_who(&self, account: u64, i: u64) -> Option<String> {
        let per = self.spec.contacts_per_account;
        (per > 0).then(|| self.contact_id(self.first_contact(account) + self.h(63, i) % per))
    }

    pub(crate) fn task_account(&self, t: u64) -> u64 {
        t / self.spec.tasks_per_account.max(1)
    }

    pub(crate) fn task_subtype(&self, t: u64) -> &'static str {
        self.pick(64, t, &["Call", "Email", "Task"])
    }

    /// Never after the anchor.
    pub(crate) fn task_date(&self, t: u64) -> NaiveDate {
        let offset = (self.h(65, t) % 14) as i64;
        date_of((self.created_ms(Kind::Task, t) + offset * DAY_MS).min(self.anchor_ms))
    }

    pub(crate) fn task_status(&self, t: u64) -> &'static str {
        if self.h(66, t) % 10 < 8 {
            "Completed"
        } else {
            self.pick(
                67,
                t,
                &["Not Started", "In Progress", "Waiting on someone else", "Deferred"],
            )
        }
    }

    pub(crate) fn task_completed_ms(&self, t: u64) -> i64 {
        // Below a day.
        #[allow(clippy::cast_possible_wrap)]
        let offset = (self.h(68, t) % DAY_MS as u64) as i64;
        (self.created_ms(Kind::Task, t) + offset).min(self.anchor_ms)
    }

    pub(crate) fn event_account(&self, e: u64) -> u64 {
        e / self.spec.events_per_account.max(1)
    }

    pub(crate) fn event_start_ms(&self, e: u64) -> i64 {
        let created = self.created_ms(Kind::Event, e);
        #[allow(clippy::cast_possible_wrap)]
        let hours = (self.h(72, e) % (30 * 24)) as i64;
        (created - created % 3_600_000 + hours * 3_600_000).min(self.anchor_ms - self.anchor_ms % 3_600_000)
    }

    pub(crate) fn event_minutes(&self, e: u64) -> i64 {
        if self.h(73, e).is_multiple_of(2) {
            30
        } else {
            60
        }
    }
}
