//! `perly demo`: a workspace of made-up but realistic customers, seeded
//! deterministically. Seeding replays 90 days one day at a time through the
//! real ingest and rescoring code with a simulated clock, so score history and
//! alerts are what Perly itself produced; every alert kind occurs. Before
//! those 90 days come [`PRIOR_DAYS`] days of ordinary use, ingested but not
//! scored, so the first score already rests on every measure's full window
//! (usage trend compares 30 days with the 30 before): charts start at each
//! customer's usual level, and nothing alerts on the first day. After that
//! the server runs on the wall clock and a trickle of live events keeps scores
//! moving. Running it again reuses the data folder.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use anyhow::Context;
use chrono::{DateTime, Datelike, Duration, TimeZone, Utc, Weekday};
use perly_domain::customer::CustomerInput;
use perly_domain::event::{ActivityType, Event, EventKind, TicketPriority};
use perly_domain::ids::WorkspaceId;
use perly_domain::scorecard::Scorecard;
use perly_store::auth::{hash_password, random_token};
use perly_store::cipher::SecretKey;
use perly_store::{IngestMode, Role, Store};
use perly_web::SystemClock;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use secrecy::{ExposeSecret, SecretString};

use perly_standins::salesforce::{NamedAccount, OrgSpec, OrgUser, SalesforceStandin};
use perly_standins::{DiscordStandin, OAuthApp, SlackStandin};

use crate::config::Settings;
use crate::rescore::Rescorer;

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Folder for the demo database and its secret key.
    #[arg(long, default_value = "data")]
    pub data_dir: std::path::PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Number of demo customers (at least 200 by default).
    #[arg(long, default_value_t = 240)]
    pub customers: usize,
    /// Do not generate live events.
    #[arg(long)]
    pub no_live: bool,
}

pub const DEMO_WORKSPACE: &str = "Perly Demo";
pub const DEMO_EMAIL: &str = "demo@perly.dev";
pub const DEMO_PASSWORD: &str = "perly-demo-password";
const DAYS: i64 = 90;
/// Days of history before the first scored day: usage trend needs 44 days
/// of usage, feature adoption and support load 60.
pub const PRIOR_DAYS: i64 = 63;
const SEED: u64 = 20_261_124;
const FEATURES: [&str; 8] = [
    "dashboards",
    "reports",
    "alerts",
    "exports",
    "integrations",
    "api",
    "sso",
    "audit_log",
];

/// The demo's account owners: (first name, last name); their email is
/// `{first}@example.com`, lowercased.
const OWNERS: [(&str, &str); 5] = [
    ("Ana", "Silva"),
    ("Ben", "Brooks"),
    ("Chloe", "Martin"),
    ("Dev", "Shah"),
    ("Emma", "Novak"),
];

/// The Account field of the demo's Salesforce org that holds each
/// customer's external id: connecting the org in the demo matches on it.
pub const CUSTOMER_ID_FIELD: &str = "Customer_Id__c";

/// How a demo customer behaves over the 90 days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Archetype {
    Steady,
    /// Usage fades, CRM goes quiet, a low NPS: high risk by the end.
    Declining,
    /// Everything goes wrong: usage collapses, payments and retries fail,
    /// urgent tickets pile up, the champion stops answering: critical.
    Churning,
    Growing,
    NearLimit,
    BillingTrouble,
    SupportHeavy,
    New,
}

/// A demo customer.
#[derive(Debug, Clone)]
pub struct Profile {
    pub input: CustomerInput,
    pub users: u32,
    pub archetype: Archetype,
    /// Day the customer starts sending events (0 is the first scored day;
    /// customers other than new ones start [`PRIOR_DAYS`] before it).
    pub start_day: i64,
    /// Day its NPS response comes in.
    pub nps_day: i64,
    /// Day offset of its monthly payment.
    pub pay_day: i64,
}

fn archetype(i: usize) -> Archetype {
    match i % 20 {
        0..=6 => Archetype::Steady,
        7 => Archetype::Churning,
        8..=10 => Archetype::Declining,
        11 | 12 => Archetype::Growing,
        13 | 14 => Archetype::NearLimit,
        15 | 16 => Archetype::BillingTrouble,
        17 | 18 => Archetype::SupportHeavy,
        _ => Archetype::New,
    }
}

/// The demo customers, always the same for the same count.
pub fn profiles(count: usize) -> Vec<Profile> {
    const FIRST: [&str; 24] = [
        "Acme",
        "Globex",
        "Initech",
        "Umbrella",
        "Hooli",
        "Vandelay",
        "Stark",
        "Wayne",
        "Wonka",
        "Tyrell",
        "Soylent",
        "Cyberdyne",
        "Aperture",
        "Gringotts",
        "Monarch",
        "Oscorp",
        "Pied Piper",
        "Massive Dynamic",
        "Dunder Mifflin",
        "Prestige",
        "Sterling",
        "Bluth",
        "Nakatomi",
        "Zorg",
    ];
    const SECOND: [&str; 12] = [
        "Corp",
        "Labs",
        "Inc",
        "Group",
        "Systems",
        "Analytics",
        "Health",
        "Logistics",
        "Foods",
        "Media",
        "Energy",
        "Robotics",
    ];
    let mut rng = StdRng::seed_from_u64(SEED);
    (0..count)
        .map(|i| {
            let base = format!(
                "{} {}",
                FIRST[i % FIRST.len()],
                SECOND[(i / FIRST.len()) % SECOND.len()]
            );
            let name = if i >= FIRST.len() * SECOND.len() {
                format!("{base} {}", i / (FIRST.len() * SECOND.len()) + 1)
            } else {
                base
            };
            let external_id = name.to_lowercase().replace(' ', "-");
            let archetype = archetype(i);
            // At least 8 users: in smaller accounts chance alone moves daily usage
            // by a quarter (an expansion signal) from one month to the next.
            let users = rng.gen_range(8..=30);
            let plan = match archetype {
                Archetype::NearLimit => "pro",
                _ => ["starter", "pro", "pro", "enterprise"][rng.gen_range(0..4)],
            };
            // Most accounts bought room to grow; growing ones fill theirs
            // within a month or so (see `day_events`).
            let seats = match archetype {
                Archetype::Growing => users + users / 2 + 2,
                _ => users + users / 2 + rng.gen_range(2..=8),
            };
            Profile {
                input: CustomerInput {
                    external_id,
                    name,
                    plan: Some(plan.to_owned()),
                    mrr: Some(f64::from(seats) * 45.0),
                    seats_purchased: Some(seats),
                    owner_email: Some(format!("{}@example.com", OWNERS[i % OWNERS.len()].0.to_lowercase())),
                    parent_external_id: None,
                },
                users,
                archetype,
                start_day: if archetype == Archetype::New { 75 } else { -PRIOR_DAYS },
                nps_day: rng.gen_range(10..85),
                pay_day: rng.gen_range(0..28),
            }
        })
        .collect()
}

/// The demo's Salesforce org (Production and its Sandbox): the demo's own
/// customers as Accounts, with their external ids in [`CUSTOMER_ID_FIELD`],
/// the same owners, contacts, opportunities, and Tasks and Events of the
/// last six weeks before `now`. Connecting it enriches the customers.
pub fn salesforce_org(count: usize, now: DateTime<Utc>) -> OrgSpec {
    OrgSpec {
        accounts: count as u64,
        anchor: now,
        named_accounts: profiles(count)
            .into_iter()
            .map(|p| NamedAccount {
                name: p.input.name,
                customer_id: p.input.external_id,
                owner_email: p.input.owner_email,
            })
            .collect(),
        owners: OWNERS
            .iter()
            .map(|(first, last)| OrgUser {
                first_name: (*first).to_owned(),
                last_name: (*last).to_owned(),
                alias: format!("{}{}", &first[..1], last)
                    .to_lowercase()
                    .chars()
                    .take(8)
                    .collect(),
                email: format!("{}@example.com", first.to_lowercase()),
            })
            .collect(),
        activity_days: 42,
        ..OrgSpec::default()
    }
}

/// The demo scorecard: defaults plus two premium features.
pub fn scorecard() -> Scorecard {
    let mut card = Scorecard::default();
    card.premium_features.insert("sso".into(), "enterprise".into());
    card.premium_features.insert("audit_log".into(), "enterprise".into());
    card
}

fn at(day_start: DateTime<Utc>, rng: &mut StdRng) -> DateTime<Utc> {
    day_start + Duration::minutes(rng.gen_range(8 * 60..18 * 60))
}

/// The events of customer `p` on day `d` (0 = 89 days ago, the first scored
/// day; negative days are the prior history) starting at `day_start`.
pub fn day_events(p: &Profile, d: i64, day_start: DateTime<Utc>, rng: &mut StdRng) -> Vec<Event> {
    let mut out = Vec::new();
    if d < p.start_day {
        return out;
    }
    let cid = p.input.external_id.clone();
    let push = |kind: EventKind, when: DateTime<Utc>, out: &mut Vec<Event>| {
        let n = out.len();
        out.push(Event {
            id: format!("demo-{cid}-{d}-{n}"),
            customer_id: cid.clone(),
            occurred_at: when,
            kind,
        });
    };
    let weekend = matches!(day_start.weekday(), Weekday::Sat | Weekday::Sun);
    let mut p_active = if weekend { 0.15 } else { 0.75 };
    let mut users = p.users;
    match p.archetype {
        Archetype::Declining if d >= 45 => p_active *= (1.0 - (d - 45) as f64 / 30.0).max(0.12),
        Archetype::Churning if d >= 20 => p_active *= (1.0 - (d - 20) as f64 / 35.0).max(0.03),
        Archetype::Growing => users = p.users + (p.users as i64 * d.max(0) / 45) as u32,
        _ => {}
    }
    let seats = p.input.seats_purchased.unwrap_or(users);
    let users = users.min(seats);

    for u in 0..users {
        if rng.gen_bool(p_active) {
            let when = at(day_start, rng);
            push(
                EventKind::UserActive {
                    user_id: format!("u{u}"),
                },
                when,
                &mut out,
            );
            let feature = FEATURES[rng.gen_range(0..5)];
            push(
                EventKind::FeatureUsed {
                    feature: feature.into(),
                    user_id: Some(format!("u{u}")),
                },
                when,
                &mut out,
            );
        }
    }

    // Weekly seat counts; a churning account gives up seats as it goes.
    if d.rem_euclid(7) == 0 {
        let seats_used = match p.archetype {
            Archetype::Churning if d >= 30 => {
                (f64::from(users) * (1.0 - (d - 30) as f64 / 60.0).max(0.2)).round() as u32
            }
            _ => users,
        };
        push(
            EventKind::SeatsChanged {
                seats_used,
                seats_purchased: None,
            },
            at(day_start, rng),
            &mut out,
        );
    }
    // Monthly payment.
    if d.rem_euclid(30) == p.pay_day % 30 {
        let amount = p.input.mrr.unwrap_or(100.0);
        let failing =
            (p.archetype == Archetype::BillingTrouble && d >= 60) || (p.archetype == Archetype::Churning && d >= 40);
        let kind = if failing {
            EventKind::PaymentFailed {
                amount,
                reason: Some("card_declined".into()),
            }
        } else {
            EventKind::PaymentSucceeded { amount }
        };
        push(kind, at(day_start, rng), &mut out);
    }
    match p.archetype {
        Archetype::BillingTrouble if d >= 62 && (d - 62) % 9 == 0 => {
            let attempt = ((d - 62) / 9 + 1) as u32;
            let amount = p.input.mrr.unwrap_or(100.0);
            push(
                EventKind::BillingRetryFailed {
                    amount,
                    attempt,
                    next_retry_at: Some(day_start + Duration::days(9)),
                },
                at(day_start, rng),
                &mut out,
            );
        }
        // Every 9 days up to the day before the last: the last day is only
        // as far as the clock has gone (just after midnight it has no
        // events), and a churning account's newest failed retry must be in
        // the data whatever time the demo starts.
        Archetype::Churning if d >= DAYS - 47 && (d - (DAYS - 47)) % 9 == 0 => {
            let attempt = ((d - (DAYS - 47)) / 9 + 1) as u32;
            let amount = p.input.mrr.unwrap_or(100.0);
            push(
                EventKind::BillingRetryFailed {
                    amount,
                    attempt,
                    next_retry_at: Some(day_start + Duration::days(9)),
                },
                at(day_start, rng),
                &mut out,
            );
        }
        Archetype::Churning if d >= 30 && rng.gen_bool(0.3) => {
            push(
                EventKind::TicketOpened {
                    ticket_id: format!("c-{d}"),
                    priority: TicketPriority::Urgent,
                },
                at(day_start, rng),
                &mut out,
            );
        }
        Archetype::NearLimit => {
            let used = 55_000.0 + 45_000.0 * (d.max(0) as f64 / 80.0).min(1.0) - rng.gen_range(0.0..2_000.0);
            push(
                EventKind::UsageMeasured {
                    metric: "api_calls".into(),
                    value: used.round(),
                    limit: Some(100_000.0),
                },
                at(day_start, rng),
                &mut out,
            );
            if d >= 50 && rng.gen_bool(0.3) {
                push(
                    EventKind::FeatureUsed {
                        feature: "sso".into(),
                        user_id: Some("u0".into()),
                    },
                    at(day_start, rng),
                    &mut out,
                );
            }
        }
        Archetype::SupportHeavy if d >= 55 && rng.gen_bool(0.35) => {
            let priority = if rng.gen_bool(0.5) {
                TicketPriority::Urgent
            } else {
                TicketPriority::High
            };
            push(
                EventKind::TicketOpened {
                    ticket_id: format!("t-{d}"),
                    priority,
                },
                at(day_start, rng),
                &mut out,
            );
        }
        _ => {}
    }
    // Ordinary support: a ticket now and then, closed a few days later.
    if rng.gen_bool(0.04) {
        push(
            EventKind::TicketOpened {
                ticket_id: format!("n-{d}"),
                priority: TicketPriority::Normal,
            },
            at(day_start, rng),
            &mut out,
        );
    }
    if rng.gen_bool(0.04) {
        push(
            EventKind::TicketClosed {
                ticket_id: format!("n-{}", d - 3),
            },
            at(day_start, rng),
            &mut out,
        );
    }
    // CRM touches every couple of weeks, fading for declining accounts.
    let quiet = (p.archetype == Archetype::Declining && d >= 40) || (p.archetype == Archetype::Churning && d >= 10);
    if !quiet && rng.gen_bool(0.08) {
        let kind = [ActivityType::Call, ActivityType::Email, ActivityType::Meeting][rng.gen_range(0..3)];
        push(
            EventKind::CrmActivity {
                activity_type: kind,
                subject: Some("Check-in".into()),
            },
            at(day_start, rng),
            &mut out,
        );
    }
    if d == p.nps_day {
        let score = match p.archetype {
            Archetype::Churning => rng.gen_range(0..=2),
            Archetype::Declining | Archetype::SupportHeavy => rng.gen_range(1..=5),
            Archetype::Growing => rng.gen_range(9..=10),
            _ => rng.gen_range(6..=10),
        };
        push(EventKind::NpsResponse { score }, at(day_start, rng), &mut out);
    }
    out
}

/// Midnight (UTC) of the first scored day of a demo seeded at `now`: the
/// charts' 90 days start here.
pub fn first_scored_day(now: DateTime<Utc>) -> DateTime<Utc> {
    let first_day = now - Duration::days(DAYS - 1);
    Utc.with_ymd_and_hms(first_day.year(), first_day.month(), first_day.day(), 0, 0, 0)
        .single()
        .unwrap_or(first_day)
}

/// Creates the demo workspace's customers and replays their history ending
/// at `now`: [`PRIOR_DAYS`] days of events, then 90 days rescored after
/// each simulated day.
pub async fn seed(store: &Arc<dyn Store>, ws: WorkspaceId, count: usize, now: DateTime<Utc>) -> anyhow::Result<()> {
    store.set_scorecard(ws, &scorecard(), now).await?;
    let people = profiles(count);
    let first_midnight = first_scored_day(now);
    let rows: Vec<CustomerInput> = people.iter().map(|p| p.input.clone()).collect();
    for chunk in rows.chunks(1000) {
        store
            .upsert_customers(ws, chunk, first_midnight - Duration::days(PRIOR_DAYS))
            .await?;
    }
    let rescorer = Rescorer::new(store.clone(), 500);
    let mut rng = StdRng::seed_from_u64(SEED + 1);
    for d in -PRIOR_DAYS..DAYS {
        let day_start = first_midnight + Duration::days(d);
        let day_end = (day_start + Duration::hours(23) + Duration::minutes(59)).min(now);
        let events: Vec<Event> = people
            .iter()
            .flat_map(|p| day_events(p, d, day_start, &mut rng))
            .filter(|e| e.occurred_at <= day_end)
            .collect();
        for chunk in events.chunks(1000) {
            store.ingest_events(ws, chunk, IngestMode::Live, day_end).await?;
        }
        // The prior history is only read: scores start on day 0.
        if d >= 0 {
            rescorer.run_once(day_end).await?;
        }
    }
    Ok(())
}

/// Live events for a few customers, stamped `now`.
fn live_events(people: &[Profile], now: DateTime<Utc>, rng: &mut StdRng) -> Vec<Event> {
    let mut out = Vec::new();
    let token = random_token(6);
    for n in 0..4 {
        let Some(p) = people.get(rng.gen_range(0..people.len().max(1))) else {
            break;
        };
        let user = format!("u{}", rng.gen_range(0..p.users));
        let kind = match rng.gen_range(0..40) {
            0 => EventKind::TicketOpened {
                ticket_id: format!("live-{token}"),
                priority: TicketPriority::Urgent,
            },
            1 => EventKind::PaymentFailed {
                amount: p.input.mrr.unwrap_or(100.0),
                reason: Some("card_declined".into()),
            },
            2 => EventKind::BillingRetryFailed {
                amount: p.input.mrr.unwrap_or(100.0),
                attempt: 1,
                next_retry_at: None,
            },
            3 => EventKind::NpsResponse {
                score: rng.gen_range(0..=10),
            },
            4..=20 => EventKind::FeatureUsed {
                feature: FEATURES[rng.gen_range(0..5)].into(),
                user_id: Some(user),
            },
            _ => EventKind::UserActive { user_id: user },
        };
        out.push(Event {
            id: format!("live-{token}-{n}"),
            customer_id: p.input.external_id.clone(),
            occurred_at: now,
            kind,
        });
    }
    out
}

/// Writes a file only its owner can read.
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

/// The demo's keys, kept in its data folder: `secret.key` (the current key)
/// and `secret.key.previous` (keys it replaced, one a line, kept until
/// everything they encrypted has been encrypted again).
///
/// A folder made by an older Perly holds 32 random bytes as URL-safe
/// base64, a valid key as it is; what that version encrypted opens with the
/// key's legacy derivation and is re-encrypted when the demo starts. Any
/// other text found in `secret.key` becomes a previous key, and a new key
/// is made.
pub fn demo_keys(dir: &Path) -> anyhow::Result<(SecretString, Vec<SecretString>)> {
    let path = dir.join("secret.key");
    let previous_path = dir.join("secret.key.previous");
    let mut previous: Vec<String> = std::fs::read_to_string(&previous_path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect();
    let found = std::fs::read_to_string(&path).unwrap_or_default();
    let found = found.trim();
    if !found.is_empty() {
        if SecretKey::parse(found).is_ok() {
            return Ok((SecretString::from(found.to_owned()), strings(previous)));
        }
        // Kept before the key is replaced, so a crash in between loses nothing.
        previous.push(found.to_owned());
        write_private(&previous_path, &(previous.join("\n") + "\n"))?;
    }
    let key = SecretKey::generate().to_hex();
    write_private(&path, key.expose_secret())?;
    Ok((key, strings(previous)))
}

fn strings(v: Vec<String>) -> Vec<SecretString> {
    v.into_iter().map(SecretString::from).collect()
}

/// Opens the demo database with the data folder's keys, re-encrypts what an
/// older key encrypted, and forgets the previous keys once nothing needs them.
pub async fn open_store(settings: &mut Settings, dir: &Path) -> anyhow::Result<Arc<dyn Store>> {
    let (key, previous) = demo_keys(dir)?;
    settings.secret_key = Some(key);
    settings.previous_secret_keys = previous;
    let store = crate::server::open_store(settings, crate::cli::cipher(settings, true)?).await?;
    let mut rotated = 0;
    let mut unreadable = 0;
    for (_, r) in crate::cli::rotate_all(&store, 500).await? {
        rotated += r.rotated;
        unreadable += r.undecryptable.len();
    }
    if rotated > 0 {
        println!("Re-encrypted {rotated} stored secrets with the demo's current key");
    }
    let previous_path = dir.join("secret.key.previous");
    if unreadable == 0 && previous_path.exists() {
        std::fs::remove_file(&previous_path).with_context(|| format!("cannot remove {}", previous_path.display()))?;
    }
    Ok(store)
}

/// The OAuth app the demo's stand-ins accept.
fn demo_app(vendor: &str) -> OAuthApp {
    OAuthApp {
        client_id: format!("perly-demo-{vendor}"),
        client_secret: format!("perly-demo-{vendor}-secret"),
    }
}

/// Points the Slack and Discord settings (endpoints and OAuth client) at
/// stand-ins that accept these OAuth apps: the demo, the benchmarks and the
/// tests all wire them this way.
pub fn point_at_standins(
    settings: &mut Settings,
    slack: &SlackStandin,
    slack_app: &OAuthApp,
    discord: &DiscordStandin,
    discord_app: &OAuthApp,
) {
    settings.slack.base_url = slack.base_url();
    settings.slack.hooks_url = Some(slack.hooks_url());
    settings.slack.client_id = Some(slack_app.client_id.clone());
    settings.slack.client_secret = Some(SecretString::from(slack_app.client_secret.clone()));
    settings.discord.base_url = discord.base_url();
    settings.discord.client_id = Some(discord_app.client_id.clone());
    settings.discord.client_secret = Some(SecretString::from(discord_app.client_secret.clone()));
}

/// Starts the Slack and Discord stand-ins beside the demo (on the next two
/// ports), keeping their webhooks in the data folder so a re-run's stored
/// channels keep working, and points the settings at them.
async fn start_standins(
    settings: &mut Settings,
    args: &DemoArgs,
) -> anyhow::Result<(SlackStandin, DiscordStandin, SalesforceStandin)> {
    let addr: std::net::SocketAddr = args
        .listen
        .parse()
        .with_context(|| format!("--listen {} is not an address like 127.0.0.1:8080", args.listen))?;
    let next = |n: u16| {
        let port = if addr.port() == 0 {
            0
        } else {
            addr.port().saturating_add(n)
        };
        std::net::SocketAddr::new(addr.ip(), port).to_string()
    };
    let slack = SlackStandin::start_saved(&next(1), demo_app("slack"), args.data_dir.join("slack-standin.json"))
        .await
        .with_context(|| format!("cannot start the Slack stand-in on {}", next(1)))?;
    let discord = DiscordStandin::start_saved(
        &next(2),
        demo_app("discord"),
        args.data_dir.join("discord-standin.json"),
    )
    .await
    .with_context(|| format!("cannot start the Discord stand-in on {}", next(2)))?;
    point_at_standins(settings, &slack, &demo_app("slack"), &discord, &demo_app("discord"));
    // The stand-ins listen on this machine: let Perly reach them.
    settings.outbound.allow_private_networks = true;
    // The demo's customers as an org (Production) and its Sandbox; a new
    // connection matches customers on the field holding their ids.
    let org = salesforce_org(args.customers, Utc::now());
    settings.sync.external_id_field = Some(CUSTOMER_ID_FIELD.to_owned());
    let salesforce = SalesforceStandin::start(&next(3), &next(4), org, vec![demo_app("salesforce")])
        .await
        .with_context(|| format!("cannot start the Salesforce stand-in on {} and {}", next(3), next(4)))?;
    settings.salesforce.login_url = Some(salesforce.login_url());
    settings.salesforce.sandbox_login_url = Some(salesforce.sandbox_login_url());
    settings.salesforce.client_id = Some(demo_app("salesforce").client_id);
    settings.salesforce.client_secret = Some(SecretString::from(demo_app("salesforce").client_secret));
    Ok((slack, discord, salesforce))
}

/// The four Slack channels of the product page, connected in the demo
/// workspace (Discord is left for the newcomer to connect with OAuth).
pub async fn seed_channels(
    store: &Arc<dyn Store>,
    ws: WorkspaceId,
    slack: &SlackStandin,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    use perly_domain::alerts::AlertKind::*;
    use perly_domain::channels::{ChannelRules, Platform};
    let only = |kinds: &[perly_domain::alerts::AlertKind], min_risk| ChannelRules {
        event_kinds: kinds.iter().copied().collect(),
        min_risk,
        ..ChannelRules::everything()
    };
    let table = [
        ("#customer-health", ChannelRules::everything()),
        (
            "#cs-escalations",
            only(&[CustomerAtRisk], Some(perly_domain::risk::RiskLevel::High)),
        ),
        ("#revenue-signals", only(&[ExpansionSignal, UpsellOpportunity], None)),
        ("#billing-alerts", only(&[BillingRetryFailed], None)),
    ];
    for (name, rules) in table {
        let new = perly_store::NewChannel {
            platform: Platform::Slack,
            name: name.into(),
            webhook_url: slack.create_webhook(name),
            source: "pasted",
            details: serde_json::json!({}),
            rules,
        };
        store.create_channel(ws, &new, now).await?;
    }
    Ok(())
}

/// A data folder made by an older demo may hold the demo user with an
/// older password (before passwords needed 12 characters): the login the
/// demo prints must work, so it is set again.
pub async fn reset_demo_password(store: &dyn Store, ws: perly_domain::ids::WorkspaceId) -> anyhow::Result<()> {
    let users = store.users_by_email(DEMO_EMAIL).await?;
    for user in users.iter().filter(|u| u.workspace_id == ws) {
        if !perly_store::auth::verify_password(DEMO_PASSWORD, &user.password_hash) {
            let hash = hash_password(DEMO_PASSWORD).map_err(|e| anyhow::anyhow!(e))?;
            store.change_password(ws, user.id, &hash, "").await?;
        }
    }
    Ok(())
}

pub async fn run(mut settings: Settings, args: DemoArgs) -> anyhow::Result<()> {
    crate::telemetry::init("warn,perly=info", settings.log_format);
    std::fs::create_dir_all(&args.data_dir).with_context(|| format!("cannot create {}", args.data_dir.display()))?;
    settings.database_url = format!("sqlite://{}/demo.db", args.data_dir.display());
    settings.listen = args.listen.clone();
    settings.public_url = format!("http://{}", args.listen);
    let (slack, discord, salesforce) = start_standins(&mut settings, &args).await?;
    let store = open_store(&mut settings, &args.data_dir).await?;
    let ws = match store.find_workspace(DEMO_WORKSPACE).await? {
        Some(ws) => {
            println!("Reusing the demo workspace in {}", args.data_dir.display());
            reset_demo_password(store.as_ref(), ws.id).await?;
            ws
        }
        None => {
            println!(
                "Seeding {} customers with 90 days of history (takes a few seconds)…",
                args.customers
            );
            let ws = store.create_workspace(DEMO_WORKSPACE, Utc::now()).await?;
            let hash = hash_password(DEMO_PASSWORD).map_err(|e| anyhow::anyhow!(e))?;
            store
                .add_user(ws.id, DEMO_EMAIL, &hash, Role::Admin, Utc::now())
                .await?;
            seed(&store, ws.id, args.customers, Utc::now()).await?;
            seed_channels(&store, ws.id, &slack, Utc::now()).await?;
            ws
        }
    };
    let (_, api_key) = store
        .create_api_key(ws.id, &perly_store::NewApiKey::full("demo"), Utc::now())
        .await?;
    let running = crate::server::start(&settings, store.clone(), Arc::new(SystemClock)).await?;
    let url = format!("http://{}", running.addr);
    println!();
    println!("Perly demo is running at {url}");
    println!("  login:    {DEMO_EMAIL} / {DEMO_PASSWORD} (lands on the portfolio, {url}/)");
    println!("  API key:  {api_key}");
    println!("  try:      curl -H 'Authorization: Bearer {api_key}' {url}/api/v1/customers?limit=5");
    println!("  OpenAPI:  {url}/api/v1/openapi.json");
    if let Some(addr) = running.metrics_addr {
        println!("  metrics:  http://{addr}/metrics (PERLY_METRICS__LISTEN)");
    }
    println!("  alerts:   {url}/settings/notifications (four Slack channels; Connect Discord to try OAuth)");
    println!(
        "  Slack:    {} (local stand-in: messages as Slack shows them)",
        slack.base_url()
    );
    println!("  Discord:  {} (local stand-in)", discord.base_url());
    println!(
        "  Salesforce: {url}/settings/salesforce → Connect (local stand-in org of these {} customers at {}; sign in as {} / {})",
        args.customers,
        salesforce.login_url(),
        salesforce.production().admin_username(),
        perly_standins::salesforce::ADMIN_PASSWORD
    );
    println!(
        "Press Ctrl-C to stop; running it again reuses {}.",
        args.data_dir.display()
    );
    let live = if args.no_live {
        None
    } else {
        let people = profiles(args.customers);
        let store = store.clone();
        let wake = running.state.rescore.clone();
        let cancel = running.cancel.clone();
        Some(tokio::spawn(async move {
            let mut rng = StdRng::from_entropy();
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(StdDuration::from_secs(2)) => {}
                }
                let events = live_events(&people, Utc::now(), &mut rng);
                match store.ingest_events(ws.id, &events, IngestMode::Live, Utc::now()).await {
                    Ok(_) => wake.notify_one(),
                    Err(e) => tracing::warn!(error = %e, "live demo events failed"),
                }
            }
        }))
    };
    tokio::signal::ctrl_c().await.ok();
    println!("Stopping…");
    running.stop().await;
    if let Some(live) = live {
        let _ = live.await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_login_meets_the_password_rules() {
        assert_eq!(perly_store::auth::check_new_password(DEMO_PASSWORD), Ok(()));
    }

    #[test]
    fn a_new_data_folder_gets_a_valid_key_that_is_kept() {
        let dir = tempfile::tempdir().expect("dir");
        let (key, previous) = demo_keys(dir.path()).expect("keys");
        assert!(SecretKey::parse(key.expose_secret()).is_ok());
        assert!(previous.is_empty());
        let (again, _) = demo_keys(dir.path()).expect("keys");
        assert_eq!(again.expose_secret(), key.expose_secret());
    }

    #[test]
    fn an_older_demo_key_is_kept_and_an_invalid_one_becomes_a_previous_key() {
        let dir = tempfile::tempdir().expect("dir");
        // What the previous version wrote: 32 random bytes, URL-safe base64.
        let old = perly_store::auth::random_token(32);
        std::fs::write(dir.path().join("secret.key"), &old).expect("write");
        let (key, previous) = demo_keys(dir.path()).expect("keys");
        assert_eq!(key.expose_secret(), old);
        assert!(previous.is_empty());

        std::fs::write(dir.path().join("secret.key"), "a hand-written passphrase\n").expect("write");
        let (key, previous) = demo_keys(dir.path()).expect("keys");
        assert!(SecretKey::parse(key.expose_secret()).is_ok());
        let previous: Vec<&str> = previous.iter().map(|k| k.expose_secret()).collect();
        assert_eq!(previous, ["a hand-written passphrase"]);
        let (again, kept) = demo_keys(dir.path()).expect("keys");
        assert_eq!(again.expose_secret(), key.expose_secret(), "the new key was saved");
        assert_eq!(kept.len(), 1, "the old one stays until the store is rotated");
    }

    #[test]
    fn profiles_are_deterministic_and_unique() {
        let a = profiles(240);
        let b = profiles(240);
        assert_eq!(a.len(), 240);
        assert!(a.iter().zip(&b).all(|(x, y)| x.input == y.input));
        let mut ids: Vec<_> = a.iter().map(|p| p.input.external_id.clone()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 240);
    }
}
