//! Settings > Notifications: the Slack and Discord channels of a workspace
//! and the OAuth flows that connect them. The list shows each channel's
//! status (active, paused, broken with the vendor's reason), its rules in
//! the words of the product page ("Customer at risk only · High, Critical"),
//! quiet hours, what is waiting and when it last delivered; a channel's page
//! edits its name and rules, dry-runs rules over the last 30 days, pauses,
//! sends a test message, shows the delivery log, reconnects and removes.
//!
//! Connecting: `POST /integrations/{slack,discord}/connect` stores a
//! single-use state bound to the admin (10 minutes) and sends the browser to
//! the vendor; `…/callback` redeems the state, exchanges the code for a
//! webhook and creates the channel (or gives a broken one its new webhook).
//! Checking names, webhooks and rules, and the dry run itself, live in
//! [`crate::channels`], shared with the JSON API. Webhook URLs are never
//! shown back, only their hint; OAuth codes and states are never logged.

use std::collections::{BTreeSet, HashMap};

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use chrono::{NaiveTime, Weekday};
use perly_delivery::oauth::{InstallError, Installed};
use perly_domain::alerts::AlertKind;
use perly_domain::channels::{parse_time_of_day, ChannelRules, Platform, QuietHours};
use perly_domain::ids::ChannelId;
use perly_domain::risk::RiskLevel;
use perly_store::{Channel, ChannelUpdate, NewChannel};

use super::customers::{delta_text, risk_words};
use super::session::CurrentUser;
use super::{path_segment, redirect_with_flash, render, take_flash, when, Flash, MessagePage, Nav, UiError};
use crate::channels::{check_name, check_rules, check_webhook, dry_run, pasted};
use crate::AppState;

/// How long a started OAuth connection may take.
const OAUTH_STATE_MINUTES: i64 = 10;
/// Days a dry run looks back.
const DRY_RUN_DAYS: i64 = 30;
/// Lines of the delivery log shown.
const LOG_LINES: usize = 100;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/settings/notifications", get(list).post(create))
        .route("/settings/notifications/{id}", get(show).post(update))
        .route("/settings/notifications/{id}/dry-run", post(dry_run_form))
        .route("/settings/notifications/{id}/pause", post(pause))
        .route("/settings/notifications/{id}/resume", post(resume))
        .route("/settings/notifications/{id}/test", post(test))
        .route("/settings/notifications/{id}/reconnect", post(reconnect))
        .route("/settings/notifications/{id}/remove", post(delete))
        .route(
            "/integrations/slack/connect",
            get(
                |s: State<AppState>, u: CurrentUser, q: Query<HashMap<String, String>>| {
                    connect_page(s, u, q, Platform::Slack)
                },
            )
            .post(|s: State<AppState>, u: CurrentUser, f: Form<HashMap<String, String>>| {
                connect(s, u, f, Platform::Slack)
            }),
        )
        .route(
            "/integrations/discord/connect",
            get(
                |s: State<AppState>, u: CurrentUser, q: Query<HashMap<String, String>>| {
                    connect_page(s, u, q, Platform::Discord)
                },
            )
            .post(|s: State<AppState>, u: CurrentUser, f: Form<HashMap<String, String>>| {
                connect(s, u, f, Platform::Discord)
            }),
        )
        .route(
            "/integrations/slack/callback",
            get(
                |s: State<AppState>, u: CurrentUser, q: Query<HashMap<String, String>>| {
                    callback(s, u, q, Platform::Slack)
                },
            ),
        )
        .route(
            "/integrations/discord/callback",
            get(
                |s: State<AppState>, u: CurrentUser, q: Query<HashMap<String, String>>| {
                    callback(s, u, q, Platform::Discord)
                },
            ),
        )
}

// ---------- words ----------

/// Alert kinds as the product page's table writes them in a list.
fn kind_short(k: AlertKind) -> &'static str {
    match k {
        AlertKind::ExpansionSignal => "Expansion",
        AlertKind::UpsellOpportunity => "Upsell",
        other => other.label(),
    }
}

/// "All events", "Customer at risk only", "Expansion, Upsell".
pub fn events_summary(kinds: &BTreeSet<AlertKind>) -> String {
    if AlertKind::ALL.iter().all(|k| kinds.contains(k)) {
        return "All events".to_owned();
    }
    match kinds.len() {
        0 => "No events".to_owned(),
        1 => kinds.iter().map(|k| format!("{} only", k.label())).collect::<String>(),
        _ => AlertKind::ALL
            .iter()
            .filter(|k| kinds.contains(k))
            .map(|k| kind_short(*k))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// "All levels", "High, Critical".
pub fn levels_summary(min: Option<RiskLevel>) -> String {
    match min {
        None | Some(RiskLevel::Low) => "All levels".to_owned(),
        Some(min) => RiskLevel::ALL
            .iter()
            .filter(|r| **r >= min)
            .map(|r| r.label())
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// "Customer at risk only · High, Critical", plus the minimum score change when set.
pub fn rules_summary(rules: &ChannelRules) -> String {
    let mut s = format!(
        "{} · {}",
        events_summary(&rules.event_kinds),
        levels_summary(rules.min_risk)
    );
    if let Some(d) = rules.min_score_delta.filter(|d| *d > 0) {
        s.push_str(&format!(" · score changes of {d}+ points"));
    }
    s
}

const WEEK: [Weekday; 7] = [
    Weekday::Mon,
    Weekday::Tue,
    Weekday::Wed,
    Weekday::Thu,
    Weekday::Fri,
    Weekday::Sat,
    Weekday::Sun,
];

/// "Mon–Fri", "Every day", "Mon, Wed, Fri".
fn days_summary(days: &[Weekday]) -> String {
    let idx: Vec<usize> = WEEK
        .iter()
        .enumerate()
        .filter(|(_, d)| days.contains(d))
        .map(|(i, _)| i)
        .collect();
    match idx.as_slice() {
        [] => "no days".to_owned(),
        [_, _, _, _, _, _, _] => "Every day".to_owned(),
        [first, .., last] if idx.len() >= 3 && last - first + 1 == idx.len() => {
            format!("{}–{}", WEEK[*first], WEEK[*last])
        }
        _ => idx.iter().map(|i| WEEK[*i].to_string()).collect::<Vec<_>>().join(", "),
    }
}

fn hhmm(t: NaiveTime) -> String {
    if t == NaiveTime::from_hms_opt(23, 59, 59).unwrap_or_default() {
        "24:00".to_owned()
    } else {
        t.format("%H:%M").to_string()
    }
}

/// "Off", or "Mon–Fri 09:00–18:00 Europe/Paris".
pub fn quiet_summary(q: Option<&QuietHours>) -> String {
    match q {
        None => "Off".to_owned(),
        Some(q) => format!(
            "{} {}–{} {}",
            days_summary(&q.business_days),
            hhmm(q.opens),
            hhmm(q.closes),
            q.time_zone
        ),
    }
}

fn status_words(c: &Channel) -> &'static str {
    match c.status() {
        "broken" => "Broken",
        "paused" => "Paused",
        _ => "Active",
    }
}

/// The shape a pasted webhook URL must have, for hints.
fn webhook_shape(state: &AppState, p: Platform) -> String {
    let base = state.integrations.webhook_base(p).trim_end_matches('/');
    match p {
        Platform::Slack => format!("{base}/services/T…/B…/…"),
        Platform::Discord => format!("{base}/api/webhooks/{{id}}/{{token}}"),
    }
}

fn env_prefix(p: Platform) -> &'static str {
    match p {
        Platform::Slack => "PERLY_SLACK",
        Platform::Discord => "PERLY_DISCORD",
    }
}

// ---------- the rules form ----------

pub struct CheckBox {
    pub key: String,
    pub label: &'static str,
    pub checked: bool,
}

pub struct Choice {
    pub value: &'static str,
    pub label: &'static str,
    pub selected: bool,
}

/// What the rules form shows: the saved rules, or what the user typed.
pub struct RulesForm {
    pub name: String,
    pub kinds: Vec<CheckBox>,
    pub risks: Vec<Choice>,
    pub min_score_delta: String,
    pub quiet_hours: bool,
    pub time_zone: String,
    pub days: Vec<CheckBox>,
    pub opens: String,
    pub closes: String,
}

fn kind_key(k: AlertKind) -> String {
    format!("kind_{}", k.as_str())
}

fn day_key(d: Weekday) -> String {
    format!("day_{}", d.to_string().to_lowercase())
}

fn risk_choices(selected: &str) -> Vec<Choice> {
    std::iter::once(Choice {
        value: "",
        label: "All levels",
        selected: selected.is_empty(),
    })
    .chain(RiskLevel::ALL.iter().map(|r| Choice {
        value: r.as_str(),
        label: r.label(),
        selected: selected == r.as_str(),
    }))
    .collect()
}

fn kind_boxes(checked: impl Fn(AlertKind) -> bool) -> Vec<CheckBox> {
    AlertKind::ALL
        .iter()
        .map(|k| CheckBox {
            key: kind_key(*k),
            label: k.label(),
            checked: checked(*k),
        })
        .collect()
}

fn day_boxes(checked: impl Fn(Weekday) -> bool) -> Vec<CheckBox> {
    const NAMES: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    WEEK.iter()
        .zip(NAMES)
        .map(|(d, label)| CheckBox {
            key: day_key(*d),
            label,
            checked: checked(*d),
        })
        .collect()
}

impl RulesForm {
    /// The saved channel. Quiet hours that are off show a working-week default.
    pub fn of(name: &str, rules: &ChannelRules) -> Self {
        let q = rules.quiet_hours.as_ref();
        let business: Vec<Weekday> = q.map_or_else(|| WEEK[..5].to_vec(), |q| q.business_days.clone());
        Self {
            name: name.to_owned(),
            kinds: kind_boxes(|k| rules.event_kinds.contains(&k)),
            risks: risk_choices(rules.min_risk.map(RiskLevel::as_str).unwrap_or_default()),
            min_score_delta: rules.min_score_delta.map(|d| d.to_string()).unwrap_or_default(),
            quiet_hours: q.is_some(),
            time_zone: q.map_or_else(|| "UTC".to_owned(), |q| q.time_zone.clone()),
            days: day_boxes(|d| business.contains(&d)),
            opens: q.map_or_else(|| "09:00".to_owned(), |q| hhmm(q.opens)),
            closes: q.map_or_else(|| "18:00".to_owned(), |q| hhmm(q.closes)),
        }
    }

    /// What the user sent, as typed.
    pub fn typed(form: &HashMap<String, String>) -> Self {
        let text = |k: &str| form.get(k).cloned().unwrap_or_default();
        Self {
            name: text("name"),
            kinds: kind_boxes(|k| is_on(form, &kind_key(k))),
            risks: risk_choices(text("min_risk").trim()),
            min_score_delta: text("min_score_delta"),
            quiet_hours: is_on(form, "quiet_hours"),
            time_zone: text("time_zone"),
            days: day_boxes(|d| is_on(form, &day_key(d))),
            opens: text("opens"),
            closes: text("closes"),
        }
    }
}

fn is_on(form: &HashMap<String, String>, key: &str) -> bool {
    form.get(key).is_some_and(|v| !v.is_empty())
}

/// Form field errors, keyed by the name of the form field they belong to.
pub type FieldErrors = HashMap<String, String>;

fn time_error(raw: &str) -> String {
    format!("`{raw}` is not a time of day: use HH:MM, hours 00–23 and minutes 00–59 (or 24:00)")
}

/// Reads the rules form (`kind_*`, `min_risk`, `min_score_delta`,
/// `quiet_hours`, `time_zone`, `day_*`, `opens`, `closes`) into rules, or
/// says what is wrong with each field. Quiet-hours fields count only when
/// `quiet_hours` is ticked.
pub fn parse_rules(form: &HashMap<String, String>) -> Result<ChannelRules, FieldErrors> {
    let mut errors = FieldErrors::new();
    let text = |k: &str| form.get(k).map(|v| v.trim().to_owned()).unwrap_or_default();

    let event_kinds: BTreeSet<AlertKind> = AlertKind::ALL
        .into_iter()
        .filter(|k| is_on(form, &kind_key(*k)))
        .collect();
    if event_kinds.is_empty() {
        errors.insert(
            "event_kinds".into(),
            "Nothing would be sent: choose at least one alert kind.".into(),
        );
    }

    let min_risk = match text("min_risk").as_str() {
        "" => None,
        raw => match raw.parse::<RiskLevel>() {
            Ok(r) => Some(r),
            Err(_) => {
                errors.insert(
                    "min_risk".into(),
                    "Choose All levels, Low, Medium, High or Critical.".into(),
                );
                None
            }
        },
    };

    let min_score_delta = match text("min_score_delta").as_str() {
        "" => None,
        raw => match raw.parse::<u32>() {
            Ok(d) if d <= 100 => Some(d),
            _ => {
                errors.insert(
                    "min_score_delta".into(),
                    "Enter a whole number of points from 0 to 100, or leave it empty for any change.".into(),
                );
                None
            }
        },
    };

    let quiet_hours = if is_on(form, "quiet_hours") {
        let business_days: Vec<Weekday> = WEEK.into_iter().filter(|d| is_on(form, &day_key(*d))).collect();
        if business_days.is_empty() {
            errors.insert("business_days".into(), "Choose at least one business day.".into());
        }
        let mut time = |key: &str| {
            let raw = text(key);
            let t = parse_time_of_day(&raw);
            if t.is_none() {
                errors.insert(key.to_owned(), time_error(&raw));
            }
            t
        };
        let (opens, closes) = (time("opens"), time("closes"));
        if let (Some(o), Some(c)) = (opens, closes) {
            if o >= c {
                errors.insert("closes".into(), "Closing time must be after opening time.".into());
            }
        }
        let time_zone = text("time_zone");
        let q = QuietHours {
            time_zone,
            business_days,
            opens: opens.unwrap_or_default(),
            closes: closes.unwrap_or_default(),
        };
        if q.time_zone.is_empty() {
            errors.insert(
                "time_zone".into(),
                "Enter a time zone of the tz database, e.g. Europe/Paris.".into(),
            );
        } else {
            // The domain knows the tz database; ask it about the zone alone.
            let zone_only = QuietHours {
                time_zone: q.time_zone.clone(),
                business_days: vec![Weekday::Mon],
                opens: NaiveTime::MIN,
                closes: NaiveTime::from_hms_opt(23, 59, 59).unwrap_or_default(),
            };
            let probe = ChannelRules {
                quiet_hours: Some(zone_only),
                ..ChannelRules::everything()
            };
            if let Err(e) = probe.validate() {
                errors.insert("time_zone".into(), e.message);
            }
        }
        Some(q)
    } else {
        None
    };

    if !errors.is_empty() {
        return Err(errors);
    }
    let rules = ChannelRules {
        event_kinds,
        min_risk,
        min_score_delta,
        quiet_hours,
    };
    // Whatever else the domain refuses, at the form field it belongs to.
    check_rules(&rules, "").map_err(|e| {
        let field = match e.field.as_str() {
            "quiet_hours.time_zone" => "time_zone",
            "quiet_hours.business_days" => "business_days",
            "quiet_hours.opens" => "opens",
            "quiet_hours.closes" => "closes",
            "min_score_delta" => "min_score_delta",
            "min_risk" => "min_risk",
            _ => "event_kinds",
        };
        HashMap::from([(field.to_owned(), e.message)])
    })?;
    Ok(rules)
}

// ---------- pages ----------

/// A page whose forms may redirect to the configured vendors' OAuth pages:
/// browsers check `form-action` against that redirect too.
fn allow_oauth_redirects(state: &AppState, mut resp: Response) -> Response {
    let origins: Vec<String> = Platform::ALL
        .iter()
        .filter_map(|p| state.integrations.oauth(*p))
        .filter_map(|c| reqwest::Url::parse(&c.base_url).ok())
        .map(|u| u.origin())
        .filter(|o| o.is_tuple())
        .map(|o| o.ascii_serialization())
        .collect();
    if origins.is_empty() {
        return resp;
    }
    let policy = crate::CONTENT_SECURITY_POLICY.replace(
        "form-action 'self'",
        &format!("form-action 'self' {}", origins.join(" ")),
    );
    if let Ok(v) = HeaderValue::from_str(&policy) {
        resp.headers_mut().insert(header::CONTENT_SECURITY_POLICY, v);
    }
    resp
}

pub struct Row {
    pub id: String,
    pub platform: &'static str,
    pub platform_key: &'static str,
    pub name: String,
    pub status: &'static str,
    pub status_words: &'static str,
    pub broken_reason: String,
    /// Reconnect by OAuth (else on the channel's page, with a new webhook URL).
    pub reconnect_oauth: bool,
    pub rules: String,
    pub quiet: String,
    pub pending: i64,
    pub last_sent: String,
    pub webhook_hint: String,
}

fn reconnects_by_oauth(state: &AppState, c: &Channel) -> bool {
    c.source == "oauth" && state.integrations.oauth(c.platform).is_some()
}

fn row(state: &AppState, c: &Channel) -> Row {
    Row {
        id: c.id.to_string(),
        platform: c.platform.label(),
        platform_key: c.platform.as_str(),
        name: c.name.clone(),
        status: c.status(),
        status_words: status_words(c),
        broken_reason: c.broken_reason.clone().unwrap_or_default(),
        reconnect_oauth: reconnects_by_oauth(state, c),
        rules: rules_summary(&c.rules),
        quiet: quiet_summary(c.rules.quiet_hours.as_ref()),
        pending: c.pending,
        last_sent: c.last_sent_at.map_or_else(|| "Never".to_owned(), when),
        webhook_hint: c.webhook_hint.clone(),
    }
}

pub struct Connect {
    pub key: &'static str,
    pub label: &'static str,
    pub configured: bool,
    pub env: &'static str,
}

fn connects(state: &AppState) -> Vec<Connect> {
    Platform::ALL
        .iter()
        .map(|p| Connect {
            key: p.as_str(),
            label: p.label(),
            configured: state.integrations.oauth(*p).is_some(),
            env: env_prefix(*p),
        })
        .collect()
}

pub struct NewForm {
    pub platforms: Vec<Choice>,
    pub name: String,
    pub webhook_url: String,
}

#[derive(Template)]
#[template(path = "settings_notifications.html")]
struct ListPage {
    nav: Option<Nav>,
    flash: Option<Flash>,
    tab: &'static str,
    can_edit: bool,
    csrf: String,
    rows: Vec<Row>,
    connects: Vec<Connect>,
    form: NewForm,
    errors: FieldErrors,
    slack_shape: String,
    discord_shape: String,
}

async fn list_page(
    state: &AppState,
    user: &CurrentUser,
    form: NewForm,
    errors: FieldErrors,
    flash: Option<Flash>,
) -> Result<ListPage, UiError> {
    let channels = state.store.list_channels(user.session.workspace.id).await?;
    Ok(ListPage {
        nav: Some(user.nav("settings")),
        flash,
        tab: "notifications",
        can_edit: user.is_admin(),
        csrf: user.session.csrf_token.clone(),
        rows: channels.iter().map(|c| row(state, c)).collect(),
        connects: connects(state),
        form,
        errors,
        slack_shape: webhook_shape(state, Platform::Slack),
        discord_shape: webhook_shape(state, Platform::Discord),
    })
}

fn platform_choices(selected: &str) -> Vec<Choice> {
    Platform::ALL
        .iter()
        .map(|p| Choice {
            value: p.as_str(),
            label: p.label(),
            selected: selected == p.as_str(),
        })
        .collect()
}

async fn list(State(state): State<AppState>, user: CurrentUser, headers: HeaderMap) -> Result<Response, UiError> {
    let flash = take_flash(&headers);
    let had = flash.is_some();
    let form = NewForm {
        platforms: platform_choices("slack"),
        name: String::new(),
        webhook_url: String::new(),
    };
    let page = list_page(&state, &user, form, FieldErrors::new(), flash).await?;
    Ok(allow_oauth_redirects(
        &state,
        render(&state, StatusCode::OK, &page, had),
    ))
}

/// Adds a channel from a pasted webhook URL (every event, every level).
async fn create(
    State(state): State<AppState>,
    user: CurrentUser,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, UiError> {
    user.check_admin_form(&form)?;
    let text = |k: &str| form.get(k).cloned().unwrap_or_default();
    let (platform_raw, name, webhook_url) = (text("platform"), text("name"), text("webhook_url"));
    let mut errors = FieldErrors::new();
    let new: Option<NewChannel> = match platform_raw.parse::<Platform>() {
        Err(_) => {
            errors.insert("platform".into(), "Choose Slack or Discord.".into());
            None
        }
        Ok(platform) => {
            // Every field is checked, so each error shows at once.
            if let Err(e) = check_name(&name, "name") {
                errors.insert("name".into(), e.message);
            }
            if let Err(e) = check_webhook(&state, platform, &webhook_url, "webhook_url") {
                errors.insert("webhook_url".into(), e.message);
            }
            match pasted(&state, platform, &name, &webhook_url, ChannelRules::everything()) {
                Ok(new) if errors.is_empty() => Some(new),
                Ok(_) => None,
                Err(e) => {
                    errors.entry(e.field).or_insert(e.message);
                    None
                }
            }
        }
    };
    let Some(new) = new else {
        let keep = NewForm {
            platforms: platform_choices(&platform_raw),
            name,
            webhook_url,
        };
        let flash = Some(Flash {
            kind: "error",
            text: "Nothing was saved: fix the fields marked below.".into(),
        });
        let page = list_page(&state, &user, keep, errors, flash).await?;
        return Ok(allow_oauth_redirects(
            &state,
            render(&state, StatusCode::UNPROCESSABLE_ENTITY, &page, false),
        ));
    };
    let channel = state
        .store
        .create_channel(user.session.workspace.id, &new, state.now())
        .await?;
    Ok(redirect_with_flash(
        &state,
        &channel_path(&channel),
        "info",
        &format!("Added {}. Alerts are active.", channel.name),
    ))
}

fn channel_path(c: &Channel) -> String {
    format!("/settings/notifications/{}", c.id)
}

async fn load(state: &AppState, user: &CurrentUser, id: &str) -> Result<Channel, UiError> {
    let id: ChannelId = id.parse().map_err(|_| UiError::NotFound)?;
    state
        .store
        .get_channel(user.session.workspace.id, id)
        .await?
        .ok_or(UiError::NotFound)
}

pub struct ChannelView {
    pub row: Row,
    pub source: &'static str,
    pub created: String,
    pub enabled: bool,
    pub broken: bool,
    pub webhook_shape: String,
}

pub struct LogRow {
    pub time: String,
    pub outcome: String,
    pub status: String,
    pub latency_ms: i64,
    pub answer: String,
    pub alerts: String,
}

pub struct DryRow {
    pub time: String,
    pub customer: String,
    pub customer_path: String,
    pub kind: &'static str,
    pub risk: &'static str,
    pub risk_label: &'static str,
    pub score: i64,
    pub delta: String,
    pub delta_class: &'static str,
}

pub struct DryView {
    pub sentence: String,
    pub detail: String,
    pub rows: Vec<DryRow>,
}

#[derive(Template)]
#[template(path = "settings_channel.html")]
struct ShowPage {
    nav: Option<Nav>,
    flash: Option<Flash>,
    tab: &'static str,
    can_edit: bool,
    csrf: String,
    c: ChannelView,
    form: RulesForm,
    errors: FieldErrors,
    dry: Option<DryView>,
    log: Vec<LogRow>,
    /// A typed reconnect webhook URL, shown back only when it was refused.
    new_webhook_url: String,
}

/// What the channel page shows besides the channel itself.
struct Shown {
    form: RulesForm,
    errors: FieldErrors,
    dry: Option<DryView>,
    new_webhook_url: String,
    flash: Option<Flash>,
}

impl Shown {
    fn saved(c: &Channel, flash: Option<Flash>) -> Self {
        Self {
            form: RulesForm::of(&c.name, &c.rules),
            errors: FieldErrors::new(),
            dry: None,
            new_webhook_url: String::new(),
            flash,
        }
    }
}

fn refused() -> Option<Flash> {
    Some(Flash {
        kind: "error",
        text: "Nothing was saved: fix the fields marked below.".into(),
    })
}

async fn show_page(
    state: &AppState,
    user: &CurrentUser,
    c: &Channel,
    status: StatusCode,
    shown: Shown,
    had_flash: bool,
) -> Result<Response, UiError> {
    let log = state
        .store
        .delivery_log(user.session.workspace.id, c.id, LOG_LINES)
        .await?;
    let page = ShowPage {
        nav: Some(user.nav("settings")),
        flash: shown.flash,
        tab: "notifications",
        can_edit: user.is_admin(),
        csrf: user.session.csrf_token.clone(),
        c: ChannelView {
            row: row(state, c),
            source: if c.source == "oauth" {
                "connected with OAuth"
            } else {
                "added by webhook URL"
            },
            created: when(c.created_at),
            enabled: c.enabled,
            broken: c.broken_reason.is_some(),
            webhook_shape: webhook_shape(state, c.platform),
        },
        form: shown.form,
        errors: shown.errors,
        dry: shown.dry,
        log: log
            .iter()
            .map(|a| LogRow {
                time: when(a.at),
                outcome: a.outcome.clone(),
                status: a.status.map_or_else(|| "no answer".to_owned(), |s| s.to_string()),
                latency_ms: a.latency_ms,
                answer: a.answer.clone(),
                alerts: if a.alerts == 0 {
                    "test message".to_owned()
                } else {
                    a.alerts.to_string()
                },
            })
            .collect(),
        new_webhook_url: shown.new_webhook_url,
    };
    Ok(allow_oauth_redirects(state, render(state, status, &page, had_flash)))
}

async fn show(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, UiError> {
    let c = load(&state, &user, &id).await?;
    let flash = take_flash(&headers);
    let had = flash.is_some();
    show_page(&state, &user, &c, StatusCode::OK, Shown::saved(&c, flash), had).await
}

/// Reads name and rules together; nothing is saved unless both are right.
fn parse_channel_form(form: &HashMap<String, String>) -> Result<(String, ChannelRules), FieldErrors> {
    let name = check_name(form.get("name").map(String::as_str).unwrap_or_default(), "name");
    let rules = parse_rules(form);
    match (name, rules) {
        (Ok(n), Ok(r)) => Ok((n, r)),
        (name, rules) => {
            let mut errors = rules.err().unwrap_or_default();
            if let Err(e) = name {
                errors.insert("name".into(), e.message);
            }
            Err(errors)
        }
    }
}

/// Saves the name and rules.
async fn update(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, UiError> {
    user.check_admin_form(&form)?;
    let c = load(&state, &user, &id).await?;
    let (name, rules) = match parse_channel_form(&form) {
        Ok(v) => v,
        Err(errors) => {
            let shown = Shown {
                form: RulesForm::typed(&form),
                errors,
                dry: None,
                new_webhook_url: String::new(),
                flash: refused(),
            };
            return show_page(&state, &user, &c, StatusCode::UNPROCESSABLE_ENTITY, shown, false).await;
        }
    };
    let update = ChannelUpdate {
        name: Some(name),
        rules: Some(rules),
        ..ChannelUpdate::default()
    };
    let c = state
        .store
        .update_channel(user.session.workspace.id, c.id, &update, state.now())
        .await?;
    Ok(redirect_with_flash(
        &state,
        &channel_path(&c),
        "info",
        &format!("Saved {}: {}.", c.name, rules_summary(&c.rules)),
    ))
}

fn plural(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// Runs the rules in the form (saved or not) over the last 30 days' alerts
/// and shows the page again with what they would have sent. Saves nothing.
async fn dry_run_form(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, UiError> {
    user.check_admin_form(&form)?;
    let c = load(&state, &user, &id).await?;
    let rules = match parse_rules(&form) {
        Ok(r) => r,
        Err(errors) => {
            let shown = Shown {
                form: RulesForm::typed(&form),
                errors,
                dry: None,
                new_webhook_url: String::new(),
                flash: Some(Flash {
                    kind: "error",
                    text: "The dry run needs valid rules: fix the fields marked below.".into(),
                }),
            };
            return show_page(&state, &user, &c, StatusCode::UNPROCESSABLE_ENTITY, shown, false).await;
        }
    };
    let ws = user.session.workspace.id;
    let result = dry_run(&state, ws, &rules, DRY_RUN_DAYS, state.now()).await?;
    let mut detail = format!(
        "{} looked at; {} would have waited for business hours.",
        plural(result.considered, "alert", "alerts"),
        plural(result.held, "of them", "of them"),
    );
    if result.alerts.len() < result.matched {
        detail.push_str(&format!(" The newest {} are listed.", result.alerts.len()));
    }
    let dry = DryView {
        sentence: format!(
            "With these rules this channel would have received {} in the last {} days.",
            plural(result.matched, "alert", "alerts"),
            result.days
        ),
        detail,
        rows: result
            .alerts
            .iter()
            .map(|a| {
                let (risk, risk_label) = risk_words(Some(a.risk_level));
                let (delta, delta_class) = delta_text(Some(a.delta));
                DryRow {
                    time: when(a.occurred_at),
                    customer: a.customer_name.clone(),
                    customer_path: path_segment(&a.customer_external_id),
                    kind: a.kind.label(),
                    risk,
                    risk_label,
                    score: a.score,
                    delta,
                    delta_class,
                }
            })
            .collect(),
    };
    let shown = Shown {
        form: RulesForm::typed(&form),
        errors: FieldErrors::new(),
        dry: Some(dry),
        new_webhook_url: String::new(),
        flash: None,
    };
    show_page(&state, &user, &c, StatusCode::OK, shown, false).await
}

async fn set_enabled(
    state: &AppState,
    user: &CurrentUser,
    id: &str,
    form: &HashMap<String, String>,
    enabled: bool,
) -> Result<Response, UiError> {
    user.check_admin_form(form)?;
    let c = load(state, user, id).await?;
    let update = ChannelUpdate {
        enabled: Some(enabled),
        ..ChannelUpdate::default()
    };
    let c = state
        .store
        .update_channel(user.session.workspace.id, c.id, &update, state.now())
        .await?;
    let text = if enabled {
        state.deliver.notify_one();
        format!("Resumed {}. Alerts are active.", c.name)
    } else {
        format!("Paused {}: it receives nothing until you resume it.", c.name)
    };
    Ok(redirect_with_flash(state, &channel_path(&c), "info", &text))
}

async fn pause(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, UiError> {
    set_enabled(&state, &user, &id, &form, false).await
}

async fn resume(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, UiError> {
    set_enabled(&state, &user, &id, &form, true).await
}

/// Queues a test message; it shows in the delivery log once sent.
async fn test(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, UiError> {
    user.check_admin_form(&form)?;
    let c = load(&state, &user, &id).await?;
    state
        .store
        .enqueue_test_message(user.session.workspace.id, c.id, state.now())
        .await?;
    state.deliver.notify_one();
    let text = match c.status() {
        "broken" => "Test message queued. It goes out once the channel is reconnected.",
        "paused" => "Test message queued. It goes out once the channel is resumed.",
        _ => "Test message queued. It shows in the delivery log below once sent.",
    };
    Ok(redirect_with_flash(&state, &channel_path(&c), "info", text))
}

/// Gives a channel a new pasted webhook URL (clears the broken mark).
async fn reconnect(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, UiError> {
    user.check_admin_form(&form)?;
    let c = load(&state, &user, &id).await?;
    let typed = form.get("webhook_url").cloned().unwrap_or_default();
    let webhook_url = match check_webhook(&state, c.platform, &typed, "webhook_url") {
        Ok(u) => u,
        Err(e) => {
            let shown = Shown {
                errors: HashMap::from([("webhook_url".to_owned(), e.message)]),
                new_webhook_url: typed,
                flash: refused(),
                ..Shown::saved(&c, None)
            };
            return show_page(&state, &user, &c, StatusCode::UNPROCESSABLE_ENTITY, shown, false).await;
        }
    };
    let update = ChannelUpdate {
        webhook_url: Some(webhook_url),
        ..ChannelUpdate::default()
    };
    let c = state
        .store
        .update_channel(user.session.workspace.id, c.id, &update, state.now())
        .await?;
    state.deliver.notify_one();
    Ok(redirect_with_flash(
        &state,
        &channel_path(&c),
        "info",
        &format!("Reconnected {}. Alerts are active.", c.name),
    ))
}

/// Removes a channel with its queued alerts and delivery log (after a tick in `confirm`).
async fn delete(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, UiError> {
    user.check_admin_form(&form)?;
    let c = load(&state, &user, &id).await?;
    if !is_on(&form, "confirm") {
        return Ok(redirect_with_flash(
            &state,
            &channel_path(&c),
            "error",
            &format!("Nothing was removed: tick “Yes, remove {}” first.", c.name),
        ));
    }
    state.store.delete_channel(user.session.workspace.id, c.id).await?;
    Ok(redirect_with_flash(
        &state,
        "/settings/notifications",
        "info",
        &format!("Removed {} with its queued alerts and delivery log.", c.name),
    ))
}

// ---------- OAuth ----------

fn redirect_uri(state: &AppState, p: Platform) -> String {
    format!(
        "{}/integrations/{}/callback",
        state.public_url.trim_end_matches('/'),
        p.as_str()
    )
}

fn not_configured(p: Platform) -> String {
    InstallError::NotConfigured(p.label(), &env_prefix(p)["PERLY_".len()..]).to_string()
}

#[derive(Template)]
#[template(path = "settings_connect.html")]
struct ConnectPage {
    nav: Option<Nav>,
    flash: Option<Flash>,
    tab: &'static str,
    can_edit: bool,
    csrf: String,
    key: &'static str,
    label: &'static str,
    configured: bool,
    env: &'static str,
    channel_id: String,
    channel_name: String,
}

/// `GET …/connect`: a page with the button, so links to it work.
async fn connect_page(
    State(state): State<AppState>,
    user: CurrentUser,
    Query(q): Query<HashMap<String, String>>,
    p: Platform,
) -> Result<Response, UiError> {
    let channel = match q.get("channel_id").filter(|v| !v.is_empty()) {
        Some(id) => Some(load(&state, &user, id).await?).filter(|c| c.platform == p),
        None => None,
    };
    let page = ConnectPage {
        nav: Some(user.nav("settings")),
        flash: None,
        tab: "notifications",
        can_edit: user.is_admin(),
        csrf: user.session.csrf_token.clone(),
        key: p.as_str(),
        label: p.label(),
        configured: state.integrations.oauth(p).is_some(),
        env: env_prefix(p),
        channel_id: channel.as_ref().map(|c| c.id.to_string()).unwrap_or_default(),
        channel_name: channel.map(|c| c.name).unwrap_or_default(),
    };
    Ok(allow_oauth_redirects(
        &state,
        render(&state, StatusCode::OK, &page, false),
    ))
}

/// `POST …/connect`: starts the flow and sends the browser to the vendor.
async fn connect(
    State(state): State<AppState>,
    user: CurrentUser,
    Form(form): Form<HashMap<String, String>>,
    p: Platform,
) -> Result<Response, UiError> {
    user.check_admin_form(&form)?;
    let Some(client) = state.integrations.oauth(p) else {
        return Ok(redirect_with_flash(
            &state,
            "/settings/notifications",
            "error",
            &format!("{} Or add the channel by webhook URL below.", not_configured(p)),
        ));
    };
    let channel_id = match form.get("channel_id").map(|v| v.trim()).filter(|v| !v.is_empty()) {
        Some(id) => {
            let c = load(&state, &user, id).await?;
            if c.platform != p {
                return Err(UiError::NotFound);
            }
            Some(c.id.to_string())
        }
        None => None,
    };
    let ws = user.session.workspace.id;
    let now = state.now();
    let oauth_state = state
        .store
        .create_oauth_state(
            ws,
            user.session.user.id,
            p.as_str(),
            &serde_json::json!({ "channel_id": channel_id }),
            now,
            chrono::Duration::minutes(OAUTH_STATE_MINUTES),
        )
        .await?;
    let uri = redirect_uri(&state, p);
    let url = match p {
        Platform::Slack => perly_delivery::slack::oauth::authorize_url(client, &uri, &oauth_state),
        Platform::Discord => perly_delivery::discord::oauth::authorize_url(client, &uri, &oauth_state),
    };
    let location = HeaderValue::from_str(&url).map_err(|_| {
        tracing::error!(
            provider = p.as_str(),
            "the OAuth authorize URL is not a valid header value"
        );
        UiError::Internal
    })?;
    let mut resp = StatusCode::SEE_OTHER.into_response();
    resp.headers_mut().insert(header::LOCATION, location);
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// What the callback page says when the state is unknown, used or expired.
const EXPIRED: &str = "This connection link expired or was already used. Start again from Settings > Notifications.";

fn callback_message(state: &AppState, user: &CurrentUser, text: &str) -> Response {
    let page = MessagePage {
        nav: Some(user.nav("settings")),
        flash: None,
        heading: "Connection not completed".to_owned(),
        text: text.to_owned(),
    };
    render(state, StatusCode::BAD_REQUEST, &page, false)
}

/// A flash-sized vendor message (the flash travels in a cookie).
fn short(text: &str) -> String {
    const MAX: usize = 400;
    if text.chars().count() <= MAX {
        text.to_owned()
    } else {
        let cut: String = text.chars().take(MAX).collect();
        format!("{cut}…")
    }
}

/// `GET …/callback?code=&state=` (or `?error=…&state=`): redeems the state
/// once, exchanges the code, stores the channel. Nothing is stored on any
/// failure. Neither the code nor the state is ever logged.
async fn callback(
    State(state): State<AppState>,
    user: CurrentUser,
    Query(q): Query<HashMap<String, String>>,
    p: Platform,
) -> Result<Response, UiError> {
    user.require_admin()?;
    let ws = user.session.workspace.id;
    let sent_state = q.get("state").map(String::as_str).unwrap_or_default();
    if sent_state.is_empty() {
        return Ok(callback_message(&state, &user, EXPIRED));
    }
    let Some(flow) = state
        .store
        .take_oauth_state(ws, user.session.user.id, p.as_str(), sent_state, state.now())
        .await?
    else {
        return Ok(callback_message(&state, &user, EXPIRED));
    };
    let list = "/settings/notifications";
    if let Some(error) = q.get("error") {
        let text = if error == "access_denied" {
            format!(
                "{} connection cancelled: you did not allow access. Nothing was saved.",
                p.label()
            )
        } else {
            // Only a plain error code is repeated back.
            let code = Some(error.as_str())
                .filter(|e| e.len() <= 64 && e.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
                .map(|e| format!(" ({e})"))
                .unwrap_or_default();
            format!("{} did not connect{code}. Nothing was saved.", p.label())
        };
        return Ok(redirect_with_flash(&state, list, "error", &text));
    }
    let Some(code) = q.get("code").filter(|c| !c.is_empty()) else {
        return Ok(redirect_with_flash(
            &state,
            list,
            "error",
            &format!("{} sent no authorization code back. Nothing was saved.", p.label()),
        ));
    };
    let Some(client) = state.integrations.oauth(p) else {
        return Ok(redirect_with_flash(&state, list, "error", &not_configured(p)));
    };
    let uri = redirect_uri(&state, p);
    let http = &state.integrations.http;
    let installed = match p {
        Platform::Slack => perly_delivery::slack::oauth::exchange(http, client, code, &uri).await,
        Platform::Discord => perly_delivery::discord::oauth::exchange(http, client, code, &uri).await,
    };
    let installed: Installed = match installed {
        Ok(i) => i,
        Err(e) => {
            tracing::warn!(provider = p.as_str(), error = %e, "OAuth install failed");
            return Ok(redirect_with_flash(
                &state,
                list,
                "error",
                &short(&format!("{e}. Nothing was saved.")),
            ));
        }
    };
    let reconnecting: Option<ChannelId> = flow
        .data
        .get("channel_id")
        .and_then(|v| v.as_str())
        .and_then(|s| s.parse().ok());
    let now = state.now();
    let existing = match reconnecting {
        Some(id) => state.store.get_channel(ws, id).await?.filter(|c| c.platform == p),
        None => None,
    };
    let channel = match existing {
        Some(c) => {
            let update = ChannelUpdate {
                webhook_url: Some(installed.webhook_url),
                details: Some(installed.details),
                ..ChannelUpdate::default()
            };
            state.store.update_channel(ws, c.id, &update, now).await?
        }
        // A new channel (or one removed while its reconnect was under way).
        None => {
            let name = check_name(&installed.channel_name, "name").unwrap_or_else(|_| format!("{} channel", p.label()));
            let new = NewChannel {
                platform: p,
                name,
                webhook_url: installed.webhook_url,
                source: "oauth",
                details: installed.details,
                rules: ChannelRules::everything(),
            };
            state.store.create_channel(ws, &new, now).await?
        }
    };
    state.deliver.notify_one();
    tracing::info!(channel_id = %channel.id, provider = p.as_str(), "channel connected with OAuth");
    Ok(redirect_with_flash(
        &state,
        &channel_path(&channel),
        "info",
        &format!("Connected {}. Alerts are active.", channel.name),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use AlertKind::*;

    fn kinds(k: &[AlertKind]) -> BTreeSet<AlertKind> {
        k.iter().copied().collect()
    }

    fn form(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn the_seed_table_reads_as_on_the_product_page() {
        assert_eq!(rules_summary(&ChannelRules::everything()), "All events · All levels");
        let escalations = ChannelRules {
            event_kinds: kinds(&[CustomerAtRisk]),
            min_risk: Some(RiskLevel::High),
            ..ChannelRules::everything()
        };
        assert_eq!(rules_summary(&escalations), "Customer at risk only · High, Critical");
        let revenue = ChannelRules {
            event_kinds: kinds(&[ExpansionSignal, UpsellOpportunity]),
            ..ChannelRules::everything()
        };
        assert_eq!(rules_summary(&revenue), "Expansion, Upsell · All levels");
        let billing = ChannelRules {
            event_kinds: kinds(&[BillingRetryFailed]),
            ..ChannelRules::everything()
        };
        assert_eq!(rules_summary(&billing), "Billing retry failed only · All levels");
        let drops = ChannelRules {
            min_score_delta: Some(15),
            min_risk: Some(RiskLevel::Critical),
            ..ChannelRules::everything()
        };
        assert_eq!(
            rules_summary(&drops),
            "All events · Critical · score changes of 15+ points"
        );
    }

    #[test]
    fn quiet_hours_read_as_days_hours_and_zone() {
        let q = QuietHours {
            time_zone: "Europe/Paris".into(),
            business_days: vec![Weekday::Mon, Weekday::Tue, Weekday::Wed, Weekday::Thu, Weekday::Fri],
            opens: NaiveTime::from_hms_opt(9, 0, 0).expect("time"),
            closes: NaiveTime::from_hms_opt(23, 59, 59).expect("time"),
        };
        assert_eq!(quiet_summary(Some(&q)), "Mon–Fri 09:00–24:00 Europe/Paris");
        assert_eq!(quiet_summary(None), "Off");
        assert_eq!(
            days_summary(&[Weekday::Mon, Weekday::Wed, Weekday::Fri]),
            "Mon, Wed, Fri"
        );
        assert_eq!(days_summary(&WEEK), "Every day");
        assert_eq!(days_summary(&[Weekday::Sat, Weekday::Sun]), "Sat, Sun");
    }

    #[test]
    fn the_rules_form_becomes_rules() {
        let f = form(&[
            ("kind_customer_at_risk", "on"),
            ("min_risk", "high"),
            ("min_score_delta", "15"),
            ("quiet_hours", "on"),
            ("time_zone", "Europe/Paris"),
            ("day_mon", "on"),
            ("day_fri", "on"),
            ("opens", "09:00"),
            ("closes", "24:00"),
        ]);
        let rules = parse_rules(&f).expect("valid");
        assert_eq!(rules.event_kinds, kinds(&[CustomerAtRisk]));
        assert_eq!(rules.min_risk, Some(RiskLevel::High));
        assert_eq!(rules.min_score_delta, Some(15));
        let q = rules.quiet_hours.expect("quiet hours");
        assert_eq!(q.business_days, vec![Weekday::Mon, Weekday::Fri]);
        assert_eq!(hhmm(q.closes), "24:00");
        // And back: the saved rules fill the same fields.
        let shown = RulesForm::of("#x", &parse_rules(&f).expect("valid"));
        assert!(shown
            .kinds
            .iter()
            .any(|k| k.key == "kind_customer_at_risk" && k.checked));
        assert!(shown.risks.iter().any(|r| r.value == "high" && r.selected));
        assert_eq!((shown.opens.as_str(), shown.closes.as_str()), ("09:00", "24:00"));
    }

    #[test]
    fn quiet_hours_fields_count_only_when_ticked() {
        let f = form(&[
            ("kind_expansion_signal", "on"),
            ("time_zone", "Mars/Olympus"),
            ("opens", "25:00"),
        ]);
        let rules = parse_rules(&f).expect("valid");
        assert_eq!(rules.quiet_hours, None);
        assert_eq!(rules.min_risk, None);
    }

    #[test]
    fn each_bad_field_gets_its_own_error() {
        let f = form(&[
            ("min_risk", "severe"),
            ("min_score_delta", "-3"),
            ("quiet_hours", "on"),
            ("time_zone", "Mars/Olympus"),
            ("opens", "25:00"),
            ("closes", "18:00"),
        ]);
        let errors = parse_rules(&f).expect_err("invalid");
        assert!(errors["event_kinds"].contains("choose at least one alert kind"));
        assert!(errors["time_zone"].contains("Mars/Olympus"));
        assert!(errors["opens"].contains("25:00"));
        assert!(errors.contains_key("min_risk"));
        assert!(errors.contains_key("min_score_delta"));
        assert!(errors.contains_key("business_days"));
        assert!(!errors.contains_key("closes"));
    }

    #[test]
    fn closing_must_follow_opening() {
        let f = form(&[
            ("kind_health_score_drop", "on"),
            ("quiet_hours", "on"),
            ("time_zone", "America/New_York"),
            ("day_tue", "on"),
            ("opens", "18:00"),
            ("closes", "09:00"),
        ]);
        let errors = parse_rules(&f).expect_err("invalid");
        assert_eq!(errors.keys().collect::<Vec<_>>(), vec!["closes"]);
    }

    #[test]
    fn a_name_error_comes_with_the_rules_errors() {
        let errors = parse_channel_form(&form(&[("name", "  ")])).expect_err("invalid");
        assert!(errors.contains_key("name"));
        assert!(errors.contains_key("event_kinds"));
    }
}
