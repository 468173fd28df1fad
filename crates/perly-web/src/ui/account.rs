//! `/settings/account`: the signed-in user's own account, for members and
//! admins alike. Changing the password takes the current one and the new
//! one twice; a wrong current password is a failed sign-in, counted and
//! throttled exactly like one ([`perly_store::Accounts::start_signin`]),
//! so a stolen session cannot guess its way to the password. A new password
//! meets [`perly_store::auth::check_new_password`]. On success every other
//! session of the user ends; this one stays. The page also lists the user's
//! other live sessions (when each began and was last seen) and signs them
//! all out on request.

use std::collections::HashMap;

use askama::Template;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Form, Router};
use perly_store::auth::{check_new_password, hash_password, verify_password};
use perly_store::SigninAttempt;

use super::session::{locked, CurrentUser};
use super::{redirect_with_flash, render, take_flash, when, Flash, Nav, UiError};
use crate::client_ip::ClientIp;
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/settings/account", get(show))
        .route("/settings/account/password", post(update_password))
        .route("/settings/account/sessions/end-others", post(end_other_sessions))
}

/// Another live session of the user.
pub struct SessionRow {
    pub created: String,
    pub last_seen: String,
}

#[derive(Template)]
#[template(path = "settings_account.html")]
struct AccountPage {
    nav: Option<Nav>,
    flash: Option<Flash>,
    tab: &'static str,
    /// Everyone changes their own account (the settings nav's member note stays hidden).
    can_edit: bool,
    csrf: String,
    email: String,
    others: Vec<SessionRow>,
    errors: HashMap<String, String>,
}

async fn page(
    state: &AppState,
    user: &CurrentUser,
    errors: HashMap<String, String>,
    flash: Option<Flash>,
) -> Result<AccountPage, UiError> {
    let me = &user.session.user;
    let sessions = state
        .store
        .user_sessions(
            me.workspace_id,
            me.id,
            &user.token,
            state.now(),
            &state.security.sessions,
        )
        .await?;
    Ok(AccountPage {
        nav: Some(user.nav("settings")),
        flash,
        tab: "account",
        can_edit: true,
        csrf: user.session.csrf_token.clone(),
        email: me.email.clone(),
        others: sessions
            .iter()
            .filter(|s| !s.current)
            .map(|s| SessionRow {
                created: when(s.created_at),
                last_seen: when(s.last_seen_at),
            })
            .collect(),
        errors,
    })
}

async fn show(State(state): State<AppState>, user: CurrentUser, headers: HeaderMap) -> Result<Response, UiError> {
    let flash = take_flash(&state, &headers);
    let had = flash.is_some();
    let page = page(&state, &user, HashMap::new(), flash).await?;
    Ok(render(&state, StatusCode::OK, &page, had))
}

/// Runs argon2 off the async threads.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, UiError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| {
        tracing::error!(error = %e, "password work failed");
        UiError::Internal
    })
}

async fn update_password(
    State(state): State<AppState>,
    user: CurrentUser,
    client: ClientIp,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, UiError> {
    user.check_csrf(&form)?;
    let field = |name: &str| form.get(name).cloned().unwrap_or_default();
    let (current, new, again) = (
        field("current_password"),
        field("new_password"),
        field("confirm_password"),
    );
    let mut errors = HashMap::new();
    if current.is_empty() {
        errors.insert("current_password".to_owned(), "Enter your current password".to_owned());
    }
    if let Err(weak) = check_new_password(&new) {
        errors.insert("new_password".to_owned(), weak.to_string());
    } else if new == current {
        errors.insert(
            "new_password".to_owned(),
            "Choose a password other than your current one".to_owned(),
        );
    } else if new != again {
        errors.insert(
            "confirm_password".to_owned(),
            "The two new passwords differ: type the same one twice".to_owned(),
        );
    }
    if !errors.is_empty() {
        let page = page(&state, &user, errors, None).await?;
        return Ok(render(&state, StatusCode::UNPROCESSABLE_ENTITY, &page, false));
    }

    // The current password is checked as a sign-in would be: counted first.
    let me = user.session.user.clone();
    let (now, ip) = (state.now(), client.key());
    let attempt = match state
        .store
        .start_signin(&me.email, &ip, now, &state.security.signin)
        .await?
    {
        SigninAttempt::Allowed(attempt) => attempt,
        SigninAttempt::Locked { until, by } => {
            let (secs, msg) = locked(&ip, until, by, now);
            let flash = Some(Flash {
                kind: "error",
                text: msg,
            });
            let page = page(&state, &user, HashMap::new(), flash).await?;
            let mut resp = render(&state, StatusCode::TOO_MANY_REQUESTS, &page, false);
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
            return Ok(resp);
        }
    };
    let stored = me.password_hash.clone();
    if !blocking(move || verify_password(&current, &stored)).await? {
        // The attempt stays counted as a failure.
        tracing::warn!(user_id = %me.id, "password change refused: wrong current password");
        let errors = HashMap::from([(
            "current_password".to_owned(),
            "That is not your current password".to_owned(),
        )]);
        let page = page(&state, &user, errors, None).await?;
        return Ok(render(&state, StatusCode::UNPROCESSABLE_ENTITY, &page, false));
    }
    state.store.signin_succeeded(&attempt, &me.email, &ip, false).await?;
    let hash = blocking(move || hash_password(&new))
        .await?
        .map_err(|_| UiError::Internal)?;
    let ended = state
        .store
        .change_password(me.workspace_id, me.id, &hash, &user.token)
        .await?;
    tracing::info!(user_id = %me.id, sessions_ended = ended, "password changed");
    Ok(redirect_with_flash(
        &state,
        "/settings/account",
        "info",
        &format!("Password changed. {}", signed_out(ended)),
    ))
}

async fn end_other_sessions(
    State(state): State<AppState>,
    user: CurrentUser,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, UiError> {
    user.check_csrf(&form)?;
    let me = &user.session.user;
    let ended = state
        .store
        .end_other_sessions(me.workspace_id, me.id, &user.token)
        .await?;
    Ok(redirect_with_flash(
        &state,
        "/settings/account",
        "info",
        &signed_out(ended),
    ))
}

fn signed_out(sessions: u64) -> String {
    match sessions {
        0 => "You had no other sessions.".to_owned(),
        1 => "Your 1 other session was signed out.".to_owned(),
        n => format!("Your {n} other sessions were signed out."),
    }
}
