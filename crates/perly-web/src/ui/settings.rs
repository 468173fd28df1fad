//! `/settings/*`: scoring (weights, thresholds, risk bands and alert
//! thresholds, with a preview of how many customers would change band), API
//! keys (create with a scope and an optional expiry, shown once; when each
//! was last used; revoke), users (add with a password that meets
//! [`check_new_password`], change role, remove) and the
//! integrations page (its Slack and Discord cards count channels; the
//! channels themselves are in [`super::channels`]). Members see settings;
//! only admins change them. A form with errors is shown again with the error
//! next to each field and what the user typed, and nothing is changed.

use std::collections::{BTreeMap, HashMap};

use askama::Template;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use perly_domain::ids::ApiKeyId;
use perly_domain::risk::RiskLevel;
use perly_domain::scorecard::{MeasureKind, Scorecard};
use perly_store::auth::{check_new_password, hash_password};
use perly_store::model::ApiScope;
use perly_store::{NewApiKey, Role};

use super::customers::measure_name;
use super::session::CurrentUser;
use super::{redirect_with_flash, render, take_flash, when, Flash, Nav, UiError};
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/settings", get(|| async { Redirect::to("/settings/scoring") }))
        .route("/settings/scoring", get(scoring).post(update_scoring))
        .route("/settings/api-keys", get(keys).post(create_key))
        .route("/settings/api-keys/{id}/revoke", post(revoke_key))
        .route("/settings/users", get(users).post(create_user))
        .route("/settings/users/{id}/role", post(update_role))
        .route("/settings/users/{id}/remove", post(delete_user))
        .route("/settings/integrations", get(integrations))
}

// ---------- scoring ----------

pub struct MeasureRow {
    pub key: &'static str,
    pub key_weight: String,
    pub key_bad: String,
    pub key_good: String,
    pub label: &'static str,
    pub unit: &'static str,
    pub weight: String,
    pub bad: String,
    pub good: String,
}

pub struct Field {
    pub key: String,
    pub label: &'static str,
    pub hint: &'static str,
    pub value: String,
}

#[derive(Template)]
#[template(path = "settings_scoring.html")]
struct ScoringPage {
    nav: Option<Nav>,
    flash: Option<Flash>,
    tab: &'static str,
    can_edit: bool,
    csrf: String,
    measures: Vec<MeasureRow>,
    bands: Vec<Field>,
    thresholds: Vec<Field>,
    errors: HashMap<String, String>,
    preview: Option<String>,
}

fn unit(m: MeasureKind) -> &'static str {
    match m {
        MeasureKind::UsageTrend => "ratio of daily active users, last 30 days / prior 30",
        MeasureKind::SeatUtilisation => "seats used / purchased",
        MeasureKind::FeatureAdoption => "features used in 30 days",
        MeasureKind::BillingHealth => "failed payments in 30 days",
        MeasureKind::SupportLoad => "open tickets, weighted by priority",
        MeasureKind::RelationshipRecency => "days since last CRM activity",
        MeasureKind::Nps => "latest NPS answer, 0–10",
        MeasureKind::RenewalOutlook => "CRM opportunities: 0 renewal lost … 1 renewal or expansion won",
    }
}

const BAND_FIELDS: [(&str, &str, &str); 4] = [
    (
        "band_low",
        "Low risk from score",
        "Scores at or above are low risk (default 75).",
    ),
    ("band_medium", "Medium risk from score", "Default 50."),
    (
        "band_high",
        "High risk from score",
        "Below this is critical (default 25).",
    ),
    (
        "hysteresis",
        "Band margin (points)",
        "A score must pass a band edge by this much to leave the band (default 2).",
    ),
];

const THRESHOLD_FIELDS: [(&str, &str, &str); 5] = [
    (
        "drop_points",
        "Health score drop (points)",
        "Alert when the score is this far below its 7-day high.",
    ),
    (
        "expansion_seat_ratio",
        "Expansion: seat use",
        "Share of seats used, e.g. 0.8 for 80%…",
    ),
    ("expansion_days", "Expansion: for days", "…held for this many days."),
    (
        "expansion_usage_growth",
        "Expansion: usage growth",
        "Daily active users up by this share, e.g. 0.25.",
    ),
    (
        "upsell_limit_ratio",
        "Upsell: plan limit used",
        "Share of a plan limit, e.g. 0.95.",
    ),
];

fn scorecard_form(card: &Scorecard) -> HashMap<String, String> {
    let mut f = HashMap::new();
    let defaults = Scorecard::default();
    for kind in MeasureKind::ALL {
        // A measure the saved card predates shows with weight 0 and the
        // default thresholds, so the form still saves.
        let m = card.measures.get(&kind).copied().or_else(|| {
            defaults
                .measures
                .get(&kind)
                .map(|d| perly_domain::scorecard::MeasureConfig { weight: 0.0, ..*d })
        });
        let Some(m) = m else { continue };
        f.insert(format!("{}_weight", kind.as_str()), m.weight.to_string());
        f.insert(format!("{}_bad", kind.as_str()), m.bad.to_string());
        f.insert(format!("{}_good", kind.as_str()), m.good.to_string());
    }
    let b = &card.risk_bands;
    let a = &card.alerts;
    for (k, v) in [
        ("band_low", b.low),
        ("band_medium", b.medium),
        ("band_high", b.high),
        ("hysteresis", b.hysteresis),
        ("drop_points", a.drop_points),
        ("expansion_seat_ratio", a.expansion_seat_ratio),
        ("expansion_days", f64::from(a.expansion_days)),
        ("expansion_usage_growth", a.expansion_usage_growth),
        ("upsell_limit_ratio", a.upsell_limit_ratio),
    ] {
        f.insert(k.to_owned(), v.to_string());
    }
    f
}

/// Reads the form into a scorecard; errors are keyed by form field.
fn parse_scorecard(base: &Scorecard, form: &HashMap<String, String>) -> Result<Scorecard, HashMap<String, String>> {
    let mut errors = HashMap::new();
    let mut num = |key: &str| -> f64 {
        let raw = form.get(key).map(|s| s.trim()).unwrap_or_default();
        match raw.parse::<f64>() {
            Ok(v) if v.is_finite() => v,
            _ => {
                errors.insert(key.to_owned(), "Enter a number".to_owned());
                0.0
            }
        }
    };
    let mut card = base.clone();
    for kind in MeasureKind::ALL {
        let k = kind.as_str();
        let weight = num(&format!("{k}_weight"));
        let bad = num(&format!("{k}_bad"));
        let good = num(&format!("{k}_good"));
        card.measures
            .insert(kind, perly_domain::scorecard::MeasureConfig { weight, bad, good });
    }
    card.risk_bands.low = num("band_low");
    card.risk_bands.medium = num("band_medium");
    card.risk_bands.high = num("band_high");
    card.risk_bands.hysteresis = num("hysteresis");
    card.alerts.drop_points = num("drop_points");
    card.alerts.expansion_seat_ratio = num("expansion_seat_ratio");
    let days = num("expansion_days");
    card.alerts.expansion_days = if days.fract() == 0.0 && (0.0..=u32::MAX as f64).contains(&days) {
        days as u32
    } else {
        0
    };
    card.alerts.expansion_usage_growth = num("expansion_usage_growth");
    card.alerts.upsell_limit_ratio = num("upsell_limit_ratio");
    if !errors.is_empty() {
        return Err(errors);
    }
    card.validate().map_err(|e| {
        // Map the domain's field path to the form field it came from.
        let field = match e.field.as_str() {
            "risk_bands" => "band_low".to_owned(),
            "measures" => "usage_trend_weight".to_owned(),
            f if f.starts_with("measures.") => {
                let rest = f.trim_start_matches("measures.");
                rest.replacen('.', "_", 1)
            }
            f if f.starts_with("alerts.") => f.trim_start_matches("alerts.").to_owned(),
            other => other.to_owned(),
        };
        HashMap::from([(field, e.message)])
    })?;
    Ok(card)
}

fn scoring_page(
    user: &CurrentUser,
    values: &HashMap<String, String>,
    errors: HashMap<String, String>,
    preview: Option<String>,
    flash: Option<Flash>,
) -> ScoringPage {
    let v = |k: &str| values.get(k).cloned().unwrap_or_default();
    ScoringPage {
        nav: Some(user.nav("settings")),
        flash,
        tab: "scoring",
        can_edit: user.is_admin(),
        csrf: user.session.csrf_token.clone(),
        measures: MeasureKind::ALL
            .iter()
            .map(|m| {
                let k = m.as_str();
                MeasureRow {
                    key: k,
                    key_weight: format!("{k}_weight"),
                    key_bad: format!("{k}_bad"),
                    key_good: format!("{k}_good"),
                    label: measure_name(*m),
                    unit: unit(*m),
                    weight: v(&format!("{k}_weight")),
                    bad: v(&format!("{k}_bad")),
                    good: v(&format!("{k}_good")),
                }
            })
            .collect(),
        bands: BAND_FIELDS
            .iter()
            .map(|(k, label, hint)| Field {
                key: (*k).to_owned(),
                label,
                hint,
                value: v(k),
            })
            .collect(),
        thresholds: THRESHOLD_FIELDS
            .iter()
            .map(|(k, label, hint)| Field {
                key: (*k).to_owned(),
                label,
                hint,
                value: v(k),
            })
            .collect(),
        errors,
        preview,
    }
}

async fn scoring(State(state): State<AppState>, user: CurrentUser, headers: HeaderMap) -> Result<Response, UiError> {
    let card = state.store.scorecard(user.session.workspace.id).await?;
    let flash = take_flash(&state, &headers);
    let had = flash.is_some();
    let page = scoring_page(&user, &scorecard_form(&card), HashMap::new(), None, flash);
    Ok(render(&state, StatusCode::OK, &page, had))
}

/// "With these bands, N of M scored customers would change risk level …"
async fn band_preview(state: &AppState, user: &CurrentUser, card: &Scorecard) -> Result<String, UiError> {
    let buckets = state.store.score_buckets(user.session.workspace.id).await?;
    let total: i64 = buckets.iter().map(|b| b.customers).sum();
    let mut moves: BTreeMap<RiskLevel, i64> = BTreeMap::new();
    let mut changed = 0;
    for b in &buckets {
        let new = card.risk_bands.level(b.score as f64);
        if b.risk_level != Some(new) {
            changed += b.customers;
            *moves.entry(new).or_default() += b.customers;
        }
    }
    let detail = moves
        .iter()
        .map(|(r, n)| format!("{n} to {}", r.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    Ok(if changed == 0 {
        format!("With these bands, none of the {total} scored customers would change risk level.")
    } else {
        format!("With these bands, {changed} of {total} scored customers would change risk level ({detail}).")
    })
}

async fn update_scoring(
    State(state): State<AppState>,
    user: CurrentUser,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, UiError> {
    user.check_admin_form(&form)?;
    let ws = user.session.workspace.id;
    let current = state.store.scorecard(ws).await?;
    let card = match parse_scorecard(&current, &form) {
        Ok(c) => c,
        Err(errors) => {
            let page = scoring_page(
                &user,
                &form,
                errors,
                None,
                Some(Flash {
                    kind: "error",
                    text: "Nothing was saved: fix the fields marked below.".into(),
                }),
            );
            return Ok(render(&state, StatusCode::UNPROCESSABLE_ENTITY, &page, false));
        }
    };
    if form.get("action").map(String::as_str) == Some("preview") {
        let preview = band_preview(&state, &user, &card).await?;
        let page = scoring_page(&user, &form, HashMap::new(), Some(preview), None);
        return Ok(render(&state, StatusCode::OK, &page, false));
    }
    state.store.set_scorecard(ws, &card, state.now()).await?;
    state.rescore.notify_one();
    Ok(redirect_with_flash(
        &state,
        "/settings/scoring",
        "info",
        "Scoring saved. Every customer is being rescored with it.",
    ))
}

// ---------- API keys ----------

pub struct KeyRow {
    pub id: String,
    pub label: String,
    pub prefix: String,
    pub scope: &'static str,
    pub created: String,
    pub last_used: String,
    pub expires: String,
    pub status: String,
    pub live: bool,
}

/// What the create form holds (kept when it comes back with errors).
#[derive(Default)]
pub struct KeyForm {
    pub label: String,
    pub scope: String,
    pub expires_in_days: String,
}

#[derive(Template)]
#[template(path = "settings_keys.html")]
struct KeysPage {
    nav: Option<Nav>,
    flash: Option<Flash>,
    tab: &'static str,
    can_edit: bool,
    csrf: String,
    keys: Vec<KeyRow>,
    new_key: Option<String>,
    form: KeyForm,
    label_error: Option<String>,
    expiry_error: Option<String>,
}

/// The longest expiry the form offers (ten years).
const MAX_KEY_DAYS: i64 = 3_650;

async fn keys_page(
    state: &AppState,
    user: &CurrentUser,
    new_key: Option<String>,
    form: KeyForm,
    errors: (Option<String>, Option<String>),
    flash: Option<Flash>,
) -> Result<KeysPage, UiError> {
    let keys = state.store.list_api_keys(user.session.workspace.id).await?;
    let now = state.now();
    Ok(KeysPage {
        nav: Some(user.nav("settings")),
        flash,
        tab: "api-keys",
        can_edit: user.is_admin(),
        csrf: user.session.csrf_token.clone(),
        keys: keys
            .iter()
            .map(|k| {
                let expired = k.expires_at.is_some_and(|t| t <= now);
                KeyRow {
                    id: k.id.to_string(),
                    label: k.label.clone(),
                    prefix: k.prefix.clone(),
                    scope: k.scope.as_str(),
                    created: when(k.created_at),
                    last_used: k.last_used_at.map_or("never".into(), when),
                    expires: k.expires_at.map_or("never".into(), when),
                    status: match (k.revoked_at, expired) {
                        (Some(t), _) => format!("revoked {}", when(t)),
                        (None, true) => "expired".into(),
                        (None, false) => "active".into(),
                    },
                    live: k.revoked_at.is_none() && !expired,
                }
            })
            .collect(),
        new_key,
        form: KeyForm {
            scope: if form.scope.is_empty() {
                "full".into()
            } else {
                form.scope
            },
            ..form
        },
        label_error: errors.0,
        expiry_error: errors.1,
    })
}

async fn keys(State(state): State<AppState>, user: CurrentUser, headers: HeaderMap) -> Result<Response, UiError> {
    let flash = take_flash(&state, &headers);
    let had = flash.is_some();
    let page = keys_page(&state, &user, None, KeyForm::default(), (None, None), flash).await?;
    Ok(render(&state, StatusCode::OK, &page, had))
}

async fn create_key(
    State(state): State<AppState>,
    user: CurrentUser,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, UiError> {
    user.check_admin_form(&form)?;
    let field = |name: &str| form.get(name).map(|v| v.trim().to_owned()).unwrap_or_default();
    let typed = KeyForm {
        label: field("label"),
        scope: field("scope"),
        expires_in_days: field("expires_in_days"),
    };
    let label_error = if typed.label.is_empty() {
        Some("Give the key a label, e.g. “billing sync”.")
    } else if typed.label.chars().count() > 100 {
        Some("Keep the label under 100 characters.")
    } else {
        None
    };
    let scope: ApiScope = if typed.scope.is_empty() {
        ApiScope::Full
    } else {
        typed
            .scope
            .parse()
            .map_err(|_| UiError::BadRequest("Choose the key's access: full or ingest.".into()))?
    };
    let days = match typed.expires_in_days.as_str() {
        "" => Ok(None),
        d => match d.parse::<i64>() {
            Ok(n) if (1..=MAX_KEY_DAYS).contains(&n) => Ok(Some(n)),
            _ => Err(format!(
                "Enter a number of days from 1 to {MAX_KEY_DAYS}, or leave it empty."
            )),
        },
    };
    let expiry_error = days.as_ref().err().cloned();
    if label_error.is_some() || expiry_error.is_some() {
        let errors = (label_error.map(str::to_owned), expiry_error);
        let page = keys_page(&state, &user, None, typed, errors, None).await?;
        return Ok(render(&state, StatusCode::UNPROCESSABLE_ENTITY, &page, false));
    }
    let now = state.now();
    let new = NewApiKey {
        label: typed.label,
        scope,
        expires_at: days.ok().flatten().map(|d| now + chrono::Duration::days(d)),
    };
    let (_, plaintext) = state.store.create_api_key(user.session.workspace.id, &new, now).await?;
    // The key is shown in this answer only: never stored, never put in a cookie.
    let flash = Some(Flash {
        kind: "info",
        text: "API key created.".into(),
    });
    let page = keys_page(&state, &user, Some(plaintext), KeyForm::default(), (None, None), flash).await?;
    Ok(render(&state, StatusCode::CREATED, &page, false))
}

async fn revoke_key(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, UiError> {
    user.check_admin_form(&form)?;
    let id: ApiKeyId = id.parse().map_err(|_| UiError::NotFound)?;
    state
        .store
        .revoke_api_key(user.session.workspace.id, id, state.now())
        .await?;
    Ok(redirect_with_flash(
        &state,
        "/settings/api-keys",
        "info",
        "API key revoked: requests with it are now refused.",
    ))
}

// ---------- users ----------

pub struct UserRow {
    pub id: String,
    pub email: String,
    pub role: &'static str,
    pub is_me: bool,
}

pub struct NewUser {
    pub email: String,
    pub role: String,
}

#[derive(Template)]
#[template(path = "settings_users.html")]
struct UsersPage {
    nav: Option<Nav>,
    flash: Option<Flash>,
    tab: &'static str,
    can_edit: bool,
    csrf: String,
    users: Vec<UserRow>,
    form: NewUser,
    errors: HashMap<String, String>,
}

async fn users_page(
    state: &AppState,
    user: &CurrentUser,
    form: NewUser,
    errors: HashMap<String, String>,
    flash: Option<Flash>,
) -> Result<UsersPage, UiError> {
    let list = state.store.list_users(user.session.workspace.id).await?;
    Ok(UsersPage {
        nav: Some(user.nav("settings")),
        flash,
        tab: "users",
        can_edit: user.is_admin(),
        csrf: user.session.csrf_token.clone(),
        users: list
            .iter()
            .map(|u| UserRow {
                id: u.id.to_string(),
                email: u.email.clone(),
                role: u.role.as_str(),
                is_me: u.id == user.session.user.id,
            })
            .collect(),
        form,
        errors,
    })
}

async fn users(State(state): State<AppState>, user: CurrentUser, headers: HeaderMap) -> Result<Response, UiError> {
    let flash = take_flash(&state, &headers);
    let had = flash.is_some();
    let page = users_page(
        &state,
        &user,
        NewUser {
            email: String::new(),
            role: "member".into(),
        },
        HashMap::new(),
        flash,
    )
    .await?;
    Ok(render(&state, StatusCode::OK, &page, had))
}

async fn create_user(
    State(state): State<AppState>,
    user: CurrentUser,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, UiError> {
    user.check_admin_form(&form)?;
    let email = form.get("email").map(|e| e.trim().to_lowercase()).unwrap_or_default();
    let role_text = form.get("role").cloned().unwrap_or_default();
    let password = form.get("password").cloned().unwrap_or_default();
    let mut errors = HashMap::new();
    if !perly_domain::customer::is_email(&email) {
        errors.insert(
            "email".to_owned(),
            "Enter an email address, like ana@example.com".to_owned(),
        );
    }
    let role: Option<Role> = role_text.parse().ok();
    if let Err(weak) = check_new_password(&password) {
        errors.insert("password".to_owned(), weak.to_string());
    }
    let keep = NewUser {
        email: email.clone(),
        role: role_text.clone(),
    };
    if let (true, Some(role)) = (errors.is_empty(), role) {
        let hash = hash_password(&password).map_err(|_| UiError::Internal)?;
        match state
            .store
            .add_user(user.session.workspace.id, &email, &hash, role, state.now())
            .await
        {
            Ok(_) => {
                return Ok(redirect_with_flash(
                    &state,
                    "/settings/users",
                    "info",
                    &format!("{email} can now sign in."),
                ))
            }
            Err(perly_store::Error::Conflict(_)) => {
                errors.insert(
                    "email".to_owned(),
                    "This person is already a user of this workspace".to_owned(),
                );
            }
            Err(e) => return Err(e.into()),
        }
    } else if role.is_none() {
        errors.insert("role".to_owned(), "Choose admin or member".to_owned());
    }
    let page = users_page(&state, &user, keep, errors, None).await?;
    Ok(render(&state, StatusCode::UNPROCESSABLE_ENTITY, &page, false))
}

async fn update_role(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, UiError> {
    user.check_admin_form(&form)?;
    let Some(id) = user.other_user(&id)? else {
        return Ok(redirect_with_flash(
            &state,
            "/settings/users",
            "error",
            "You cannot change your own role.",
        ));
    };
    let role: Role = form
        .get("role")
        .and_then(|r| r.parse().ok())
        .ok_or(UiError::BadRequest("Choose admin or member.".into()))?;
    state.store.set_user_role(user.session.workspace.id, id, role).await?;
    Ok(redirect_with_flash(&state, "/settings/users", "info", "Role changed."))
}

async fn delete_user(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, UiError> {
    user.check_admin_form(&form)?;
    let Some(id) = user.other_user(&id)? else {
        return Ok(redirect_with_flash(
            &state,
            "/settings/users",
            "error",
            "You cannot remove yourself.",
        ));
    };
    state.store.remove_user(user.session.workspace.id, id).await?;
    Ok(redirect_with_flash(
        &state,
        "/settings/users",
        "info",
        "User removed and signed out.",
    ))
}

// ---------- integrations ----------

/// A vendor card: how many channels it has and whether any is broken.
pub struct VendorCard {
    pub connected: String,
    pub broken: usize,
}

fn vendor_card(channels: &[perly_store::Channel], platform: perly_domain::channels::Platform) -> VendorCard {
    let mine: Vec<_> = channels.iter().filter(|c| c.platform == platform).collect();
    VendorCard {
        connected: match mine.len() {
            0 => "No channels connected yet.".to_owned(),
            1 => "1 channel connected.".to_owned(),
            n => format!("{n} channels connected."),
        },
        broken: mine.iter().filter(|c| c.broken_reason.is_some()).count(),
    }
}

#[derive(Template)]
#[template(path = "settings_integrations.html")]
struct IntegrationsPage {
    nav: Option<Nav>,
    flash: Option<Flash>,
    tab: &'static str,
    can_edit: bool,
    slack: VendorCard,
    discord: VendorCard,
    salesforce: String,
}

async fn integrations(State(state): State<AppState>, user: CurrentUser) -> Result<Response, UiError> {
    use perly_domain::channels::Platform;
    let channels = state.store.list_channels(user.session.workspace.id).await?;
    let salesforce = match state.store.salesforce_connection(user.session.workspace.id).await? {
        None => "Not connected.".to_owned(),
        Some(c) if c.broken_reason.is_some() => format!("{}: connection broken, reconnect needed.", c.org_name),
        Some(c) => format!(
            "Connected to {} ({}) as {}.",
            c.org_name,
            c.environment.label(),
            c.username
        ),
    };
    let page = IntegrationsPage {
        salesforce,
        nav: Some(user.nav("settings")),
        flash: None,
        tab: "integrations",
        can_edit: user.is_admin(),
        slack: vendor_card(&channels, Platform::Slack),
        discord: vendor_card(&channels, Platform::Discord),
    };
    Ok(render(&state, StatusCode::OK, &page, false))
}
