//! Signing in and out. A session is a random token in an HttpOnly,
//! SameSite=Lax cookie (Secure, and named `__Host-perly_session`, when
//! served over https), stored hashed with its CSRF token; it ends 7 days
//! after sign-in or after the idle timeout, whichever comes first. The
//! sign-in form is protected by a double-submit CSRF cookie.
//!
//! Signing in: the password is checked against every account with that
//! email (in whatever workspaces), never just the first that matches, and
//! always against at least [`perly_store::auth::MIN_PASSWORD_CHECKS`] hashes so the time does
//! not tell how many accounts there are. None: a failure, counted per
//! (email, client IP), per client IP and per email in the database
//! ([`perly_store::Accounts::start_signin`]: an attempt counts from its
//! start, so guesses sent at once cannot outrun the count); past a limit,
//! sign-ins answer 429 with `Retry-After` until failures age out. One:
//! signed in. Several: a short-lived, single-use choice (a cookie token
//! stored hashed, a CSRF token in the form) lists only the workspaces the
//! password opened, and the session is for the one chosen.
//!
//! A success never clears the per-IP or per-email count, and clears the
//! (email, IP) count only when the password opened *every* account with
//! that email: otherwise signing in to an account an attacker made (another
//! workspace admin can add anyone's email to their workspace with a
//! password of their choosing) would wipe the failures of guessing at the
//! victim's.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use chrono::Duration;
use chrono::{DateTime, Utc};
use perly_store::auth::{random_token, verify_each};
use perly_store::{LockedBy, Role, Session, SigninAttempt, User};

use super::{redirect_with_flash, render, CookieName, Flash, Nav, UiError};
use crate::client_ip::ClientIp;
use crate::AppState;

pub const SESSION_COOKIE: CookieName = CookieName("perly_session");
/// The sign-in form's CSRF token (a `__Host-` cookie over https, so a
/// sibling domain cannot plant it: no login CSRF).
const LOGIN_CSRF_COOKIE: CookieName = CookieName("perly_login_csrf");
/// The pending choice of workspace (see the module docs).
const CHOICE_COOKIE: CookieName = CookieName("perly_signin_choice");
/// How long the choice of workspace waits.
const CHOICE_MINUTES: i64 = 5;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/login", get(show).post(create))
        .route("/login/workspace", get(show_choice).post(choose))
        .route("/logout", post(delete))
}

/// The signed-in user of a page request.
pub struct CurrentUser {
    pub session: Session,
    /// The session's cookie token (to tell this session from the user's others).
    pub token: String,
}

impl CurrentUser {
    pub fn is_admin(&self) -> bool {
        self.session.user.role == Role::Admin
    }

    pub fn require_admin(&self) -> Result<(), UiError> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(UiError::Forbidden(
                "Only admins can change settings. Ask an admin of your workspace.",
            ))
        }
    }

    pub fn nav(&self, section: &'static str) -> Nav {
        Nav {
            section,
            email: self.session.user.email.clone(),
            workspace: self.session.workspace.name.clone(),
            is_admin: self.is_admin(),
            csrf: self.session.csrf_token.clone(),
        }
    }

    /// Checks a settings form: its CSRF token, then that the user is an admin.
    pub fn check_admin_form(&self, form: &HashMap<String, String>) -> Result<(), UiError> {
        self.check_csrf(form)?;
        self.require_admin()
    }

    /// The id of another user of the workspace named in a path (`None` when it
    /// is the signed-in user: nobody changes their own role or removes themselves).
    pub fn other_user(&self, id: &str) -> Result<Option<perly_domain::ids::UserId>, UiError> {
        let id: perly_domain::ids::UserId = id.parse().map_err(|_| UiError::NotFound)?;
        Ok((id != self.session.user.id).then_some(id))
    }

    /// Refuses a form whose CSRF token is missing or wrong.
    pub fn check_csrf(&self, form: &HashMap<String, String>) -> Result<(), UiError> {
        let sent = form.get("csrf").map(String::as_str).unwrap_or_default();
        if constant_time_eq(sent.as_bytes(), self.session.csrf_token.as_bytes()) {
            Ok(())
        } else {
            Err(UiError::Forbidden(
                "This form expired or did not come from Perly. Reload the page and try again.",
            ))
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = UiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let next = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| "/".into());
        let Some(token) = SESSION_COOKIE.read(state, &parts.headers) else {
            return Err(UiError::SignIn { next });
        };
        match state
            .store
            .session(&token, state.now(), &state.security.sessions)
            .await?
        {
            Some(session) => Ok(Self { session, token }),
            None => Err(UiError::SignIn { next }),
        }
    }
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    nav: Option<Nav>,
    flash: Option<Flash>,
    csrf: String,
    next: String,
    email: String,
    error: Option<String>,
}

/// Only local paths are followed after signing in.
fn safe_next(next: Option<&String>) -> String {
    match next {
        // A local path only: browsers drop tabs and newlines and read `\` as
        // `/`, so `/\t/evil.example` would otherwise leave the site.
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.chars().any(|c| c.is_control() || c == '\\') => {
            n.clone()
        }
        _ => "/".to_owned(),
    }
}

fn login_page(
    state: &AppState,
    status: StatusCode,
    email: String,
    next: String,
    error: Option<String>,
    headers: &HeaderMap,
) -> Response {
    let csrf = random_token(24);
    let flash = super::take_flash(state, headers);
    let had_flash = flash.is_some();
    let mut resp = render(
        state,
        status,
        &LoginPage {
            nav: None,
            flash,
            csrf: csrf.clone(),
            next,
            email,
            error,
        },
        had_flash,
    );
    resp.headers_mut()
        .append(header::SET_COOKIE, LOGIN_CSRF_COOKIE.set(state, &csrf, 3600));
    resp
}

async fn show(State(state): State<AppState>, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
    if let Some(token) = SESSION_COOKIE.read(&state, &headers) {
        if let Ok(Some(_)) = state.store.session(&token, state.now(), &state.security.sessions).await {
            return Redirect::to(&safe_next(q.get("next"))).into_response();
        }
    }
    login_page(
        &state,
        StatusCode::OK,
        String::new(),
        safe_next(q.get("next")),
        None,
        &headers,
    )
}

async fn create(
    State(state): State<AppState>,
    client: ClientIp,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    // No address is longer (RFC 5321 allows 254); the throttle stores what is typed.
    let email: String = form
        .get("email")
        .map(|e| e.trim().to_lowercase())
        .unwrap_or_default()
        .chars()
        .take(320)
        .collect();
    let next = safe_next(form.get("next"));
    let sent = form.get("csrf").cloned().unwrap_or_default();
    let expected = LOGIN_CSRF_COOKIE.read(&state, &headers).unwrap_or_default();
    if expected.is_empty() || !constant_time_eq(sent.as_bytes(), expected.as_bytes()) {
        let msg = "This sign-in form expired. Please try again.".to_owned();
        return login_page(&state, StatusCode::FORBIDDEN, email, next, Some(msg), &headers);
    }
    let now = state.now();
    let ip = client.key();
    let limits = state.security.signin;
    let attempt = match state.store.start_signin(&email, &ip, now, &limits).await {
        Ok(SigninAttempt::Allowed(attempt)) => attempt,
        Ok(SigninAttempt::Locked { until, by }) => {
            let (secs, msg) = locked(&ip, until, by, now);
            let mut resp = login_page(&state, StatusCode::TOO_MANY_REQUESTS, email, next, Some(msg), &headers);
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
            return resp;
        }
        Err(e) => return UiError::from(e).into_response(),
    };
    let password = form.get("password").cloned().unwrap_or_default();
    let users = match state.store.users_by_email(&email).await {
        Ok(u) => u,
        Err(e) => return UiError::from(e).into_response(),
    };
    let (users, matched) = match check_password(users, password).await {
        Ok(m) => m,
        Err(e) => return e.into_response(),
    };
    if matched.is_empty() {
        // The attempt stays counted as a failure.
        return login_page(
            &state,
            StatusCode::UNAUTHORIZED,
            email,
            next,
            Some("Wrong email or password.".to_owned()),
            &headers,
        );
    }
    // Only a password that opens every account with this email proves
    // nothing is being guessed: see the module docs.
    let clear_pair = matched.len() == users.len();
    if let Err(e) = state.store.signin_succeeded(&attempt, &email, &ip, clear_pair).await {
        return UiError::from(e).into_response();
    }
    match matched.as_slice() {
        [user] => start_session(&state, user, &next).await,
        _ => {
            let ids: Vec<_> = matched.iter().map(|u| (u.id, u.password_hash.as_str())).collect();
            let (token, csrf) = match state
                .store
                .create_signin_choice(&ids, now, Duration::minutes(CHOICE_MINUTES))
                .await
            {
                Ok(t) => t,
                Err(perly_store::Error::Conflict(_)) => return password_changed(&state, email, next, &headers),
                Err(e) => return UiError::from(e).into_response(),
            };
            let workspaces = match state.store.signin_choice(&token, now).await {
                Ok(Some(choice)) => choice.accounts.into_iter().map(|(_, w)| w).collect(),
                Ok(None) => Vec::new(),
                Err(e) => return UiError::from(e).into_response(),
            };
            let mut resp = choice_page(&state, csrf, next, workspaces);
            let cookies = resp.headers_mut();
            cookies.append(
                header::SET_COOKIE,
                CHOICE_COOKIE.set(&state, &token, CHOICE_MINUTES * 60),
            );
            cookies.append(header::SET_COOKIE, LOGIN_CSRF_COOKIE.set(&state, "", 0));
            resp
        }
    }
}

/// Seconds until a lock ends, and what the sign-in page says about it.
pub(super) fn locked(ip: &str, until: DateTime<Utc>, by: LockedBy, now: DateTime<Utc>) -> (i64, String) {
    let secs = (until - now).num_seconds().max(1);
    let minutes = (secs + 59) / 60;
    let plural = if minutes == 1 { "" } else { "s" };
    let msg = match by {
        LockedBy::Address => {
            tracing::warn!(client_ip = %ip, "sign-in refused: too many failures from this address");
            format!(
                "Too many failed sign-ins from your network. For your security, sign-in is paused; \
                 try again in {minutes} minute{plural}."
            )
        }
        LockedBy::Email => {
            tracing::warn!(client_ip = %ip, "sign-in refused: too many failures for this email from any address");
            format!(
                "Too many failed sign-ins for this email address. For your security, sign-in to it is \
                 paused; try again in {minutes} minute{plural}."
            )
        }
    };
    (secs, msg)
}

/// Checks the password against every account, off the async threads (argon2
/// is slow on purpose), and against at least [`perly_store::auth::MIN_PASSWORD_CHECKS`] hashes
/// in all so the time does not tell whether there are 0, 1, 2 or 3 of them.
/// Returns the accounts and those it opens.
async fn check_password(users: Vec<User>, password: String) -> Result<(Vec<User>, Vec<User>), UiError> {
    tokio::task::spawn_blocking(move || {
        let hashes: Vec<&str> = users.iter().map(|u| u.password_hash.as_str()).collect();
        let opened = verify_each(&password, &hashes);
        let matched = users
            .iter()
            .zip(opened)
            .filter(|(_, opened)| *opened)
            .map(|(u, _)| u.clone())
            .collect();
        (users, matched)
    })
    .await
    .map_err(|e| {
        tracing::error!(error = %e, "password check failed");
        UiError::Internal
    })
}

/// The password changed between its check and the session: sign in again.
fn password_changed(state: &AppState, email: String, next: String, headers: &HeaderMap) -> Response {
    login_page(
        state,
        StatusCode::UNAUTHORIZED,
        email,
        next,
        Some("Your password was just changed: sign in with the new one.".to_owned()),
        headers,
    )
}

/// Signs `user` in and goes to `next`.
async fn start_session(state: &AppState, user: &User, next: &str) -> Response {
    let policy = state.security.sessions;
    let token = match state
        .store
        .create_session(user.workspace_id, user.id, &user.password_hash, state.now(), &policy)
        .await
    {
        Ok(t) => t,
        Err(perly_store::Error::Conflict(_)) => {
            return password_changed(state, user.email.clone(), next.to_owned(), &HeaderMap::new())
        }
        Err(e) => return UiError::from(e).into_response(),
    };
    let mut resp = Redirect::to(next).into_response();
    let cookies = resp.headers_mut();
    cookies.append(
        header::SET_COOKIE,
        SESSION_COOKIE.set(state, &token, policy.max_age.num_seconds()),
    );
    cookies.append(header::SET_COOKIE, LOGIN_CSRF_COOKIE.set(state, "", 0));
    cookies.append(header::SET_COOKIE, CHOICE_COOKIE.set(state, "", 0));
    resp
}

/// A workspace offered by the choice page.
pub struct WorkspaceOption {
    pub id: String,
    pub name: String,
}

#[derive(Template)]
#[template(path = "login_workspace.html")]
struct ChoicePage {
    nav: Option<Nav>,
    flash: Option<Flash>,
    csrf: String,
    next: String,
    workspaces: Vec<WorkspaceOption>,
}

fn choice_page(state: &AppState, csrf: String, next: String, workspaces: Vec<perly_store::Workspace>) -> Response {
    let page = ChoicePage {
        nav: None,
        flash: None,
        csrf,
        next,
        workspaces: workspaces
            .into_iter()
            .map(|w| WorkspaceOption {
                id: w.id.to_string(),
                name: w.name,
            })
            .collect(),
    };
    render(state, StatusCode::OK, &page, false)
}

/// The choice page again (a reload), while the choice is pending.
async fn show_choice(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, UiError> {
    let choice = match CHOICE_COOKIE.read(&state, &headers) {
        Some(token) => state.store.signin_choice(&token, state.now()).await?,
        None => None,
    };
    Ok(match choice {
        Some(c) => choice_page(
            &state,
            c.csrf_token,
            safe_next(q.get("next")),
            c.accounts.into_iter().map(|(_, w)| w).collect(),
        ),
        None => Redirect::to("/login").into_response(),
    })
}

/// Signs in to the chosen workspace: once, with the form's CSRF token, and
/// only to a workspace the password opened.
async fn choose(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, UiError> {
    let expired = || redirect_with_flash(&state, "/login", "error", "That sign-in expired. Please sign in again.");
    let Some(token) = CHOICE_COOKIE.read(&state, &headers) else {
        return Ok(expired());
    };
    let Some(choice) = state.store.take_signin_choice(&token, state.now()).await? else {
        return Ok(expired());
    };
    let sent = form.get("csrf").map(String::as_str).unwrap_or_default();
    if !constant_time_eq(sent.as_bytes(), choice.csrf_token.as_bytes()) {
        return Err(UiError::Forbidden(
            "This form expired or did not come from Perly. Sign in again.",
        ));
    }
    let chosen = form.get("workspace").map(String::as_str).unwrap_or_default();
    let Some((user, _)) = choice.accounts.iter().find(|(_, w)| w.id.to_string() == chosen) else {
        return Err(UiError::Forbidden(
            "That workspace was not one of those offered. Sign in again.",
        ));
    };
    Ok(start_session(&state, user, &safe_next(form.get("next"))).await)
}

async fn delete(
    State(state): State<AppState>,
    user: CurrentUser,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, UiError> {
    user.check_csrf(&form)?;
    state.store.delete_session(&user.token).await?;
    let mut resp = Redirect::to("/login").into_response();
    resp.headers_mut()
        .append(header::SET_COOKIE, SESSION_COOKIE.set(&state, "", 0));
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed() {
        assert_eq!(safe_next(Some(&"/alerts".to_owned())), "/alerts");
        assert_eq!(safe_next(Some(&"//evil.example".to_owned())), "/");
        assert_eq!(safe_next(Some(&"https://evil.example".to_owned())), "/");
        assert_eq!(safe_next(None), "/");
        assert_eq!(safe_next(Some(&"/\t/evil.example".to_owned())), "/");
        assert_eq!(safe_next(Some(&"/\\evil.example".to_owned())), "/");
        assert_eq!(safe_next(Some(&"/a\r\nSet-Cookie: x".to_owned())), "/");
    }
}
