//! Settings > Notifications: the Slack and Discord channels of a workspace. The list shows each channel's
//! status (active, paused, broken with the vendor's reason), its rules in
//! the words of the product page ("Customer at risk only · High, Critical"),
//! quiet hours, what is waiting and when it last delivered; a channel's page
//! edits its name and rules, dry-runs rules over the last 30 days, pauses,
//! sends a test message, shows the delivery log, reconnects and removes.
//!
//! Connecting with OAuth is in [`super::oauth`]. Checking names, webhooks and rules, and the dry run itself, live in
//! [`crate::channels`], shared with the JSON API. Webhook URLs are never
//! shown back, only their hint; OAuth codes and states are never logged.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Form, Router};
use perly_domain::channels::{ChannelRules, Platform};
use perly_domain::ids::ChannelId;
use perly_store::{Channel, ChannelUpdate, NewChannel};

use super::customers::{delta_text, risk_words};
use super::session::CurrentUser;
use super::{path_segment, redirect_with_flash, render, take_flash, when, Flash, Nav, UiError};
use crate::channels::{check_name, check_webhook, dry_run, pasted};
use crate::AppState;

use super::channel_rules::*;

/// How long a started OAuth connection may take.
pub(super) const OAUTH_STATE_MINUTES: i64 = 10;
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
}

// ---------- pages ----------

/// A page whose forms may redirect to the configured vendors' OAuth pages:
/// browsers check `form-action` against that redirect too.
pub(super) fn allow_oauth_redirects(state: &AppState, resp: Response) -> Response {
    let origins: Vec<String> = Platform::ALL
        .iter()
        .filter_map(|p| state.integrations.oauth(*p))
        .filter_map(|c| origin_of(&c.base_url))
        .collect();
    allow_form_targets(resp, &origins)
}

/// `scheme://host[:port]` of a URL, if it has one.
pub(super) fn origin_of(url: &str) -> Option<String> {
    let o = reqwest::Url::parse(url).ok()?.origin();
    o.is_tuple().then(|| o.ascii_serialization())
}

/// Lets a page's forms lead to these origins too (a connect button answers
/// with a redirect to the vendor, which `form-action 'self'` would block).
pub(super) fn allow_form_targets(mut resp: Response, origins: &[String]) -> Response {
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
    /// "10 messages per 10 minutes".
    pub storm: String,
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
        status: c.status.as_str(),
        status_words: status_words(c),
        broken_reason: c.broken_reason.clone().unwrap_or_default(),
        reconnect_oauth: reconnects_by_oauth(state, c),
        rules: rules_summary(&c.rules),
        quiet: quiet_summary(c.rules.quiet_hours.as_ref()),
        storm: storm_summary(&c.rules.storm_guard),
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
    let flash = take_flash(&state, &headers);
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

pub(super) fn channel_path(c: &Channel) -> String {
    format!("/settings/notifications/{}", c.id)
}

pub(super) async fn load(state: &AppState, user: &CurrentUser, id: &str) -> Result<Channel, UiError> {
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

pub(super) fn refused() -> Option<Flash> {
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
                alerts: if a.storm_digest {
                    format!(
                        "{} (storm digest: delivered as one message)",
                        perly_domain::money::count(a.alerts.max(0) as u64)
                    )
                } else if a.alerts == 0 {
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
    let flash = take_flash(&state, &headers);
    let had = flash.is_some();
    show_page(&state, &user, &c, StatusCode::OK, Shown::saved(&c, flash), had).await
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
                let (delta, delta_class) = delta_text(a.delta);
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
    let text = match c.status.as_str() {
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
