//! Signing in and out. A session is a random token in an HttpOnly,
//! SameSite=Lax cookie (Secure over https), stored hashed with its CSRF
//! token. The sign-in form is protected by a double-submit CSRF cookie, and
//! repeated failures for one account are throttled.

use std::collections::HashMap;
use std::sync::Mutex;

use askama::Template;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use chrono::{DateTime, Duration, Utc};
use perly_store::auth::{random_token, verify_password};
use perly_store::{Role, Session};

use super::{cookie, render, set_cookie, Flash, Nav, UiError};
use crate::AppState;

pub const SESSION_COOKIE: &str = "perly_session";
const LOGIN_CSRF_COOKIE: &str = "perly_login_csrf";
const SESSION_DAYS: i64 = 7;
/// Failed attempts allowed per account within [`THROTTLE_WINDOW_MINUTES`].
pub const MAX_FAILURES: usize = 5;
const THROTTLE_WINDOW_MINUTES: i64 = 15;
/// An argon2 hash of a random password, verified against when the email is
/// unknown so timing does not tell which accounts exist.
const UNKNOWN_USER_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$3Qm9r3dDqY2ZVKf8Yx6Zf3H3kq0b6m5oV8i5QfQ9Y0w";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/login", get(show).post(create))
        .route("/logout", post(delete))
}

/// Failed sign-ins per account (per process).
#[derive(Default)]
pub struct LoginThrottle {
    failures: Mutex<HashMap<String, Vec<DateTime<Utc>>>>,
}

impl LoginThrottle {
    /// Minutes until the account may try again, if it is locked.
    pub fn locked_for(&self, email: &str, now: DateTime<Utc>) -> Option<i64> {
        let mut map = self.failures.lock().ok()?;
        let list = map.get_mut(email)?;
        list.retain(|t| *t > now - Duration::minutes(THROTTLE_WINDOW_MINUTES));
        if list.len() < MAX_FAILURES {
            return None;
        }
        let oldest = list.iter().min().copied()?;
        Some(((oldest + Duration::minutes(THROTTLE_WINDOW_MINUTES) - now).num_seconds() / 60 + 1).max(1))
    }

    pub fn record_failure(&self, email: &str, now: DateTime<Utc>) {
        if let Ok(mut map) = self.failures.lock() {
            map.entry(email.to_owned()).or_default().push(now);
        }
    }

    pub fn clear(&self, email: &str) {
        if let Ok(mut map) = self.failures.lock() {
            map.remove(email);
        }
    }
}

/// The signed-in user of a page request.
pub struct CurrentUser {
    pub session: Session,
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
        let Some(token) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(UiError::SignIn { next });
        };
        match state.store.session(&token, state.now()).await? {
            Some(session) => Ok(Self { session }),
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
        _ => "/customers".to_owned(),
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
    let flash = super::take_flash(headers);
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
    resp.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(LOGIN_CSRF_COOKIE, &csrf, "/login", 3600, state.secure_cookies()),
    );
    resp
}

async fn show(State(state): State<AppState>, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
    if let Some(token) = cookie(&headers, SESSION_COOKIE) {
        if let Ok(Some(_)) = state.store.session(&token, state.now()).await {
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
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let email = form.get("email").map(|e| e.trim().to_lowercase()).unwrap_or_default();
    let next = safe_next(form.get("next"));
    let sent = form.get("csrf").cloned().unwrap_or_default();
    let expected = cookie(&headers, LOGIN_CSRF_COOKIE).unwrap_or_default();
    if expected.is_empty() || !constant_time_eq(sent.as_bytes(), expected.as_bytes()) {
        let msg = "This sign-in form expired. Please try again.".to_owned();
        return login_page(&state, StatusCode::FORBIDDEN, email, next, Some(msg), &headers);
    }
    let now = state.now();
    if let Some(minutes) = state.throttle.locked_for(&email, now) {
        let msg = format!("Too many failed attempts for this account. Try again in {minutes} minutes.");
        return login_page(&state, StatusCode::TOO_MANY_REQUESTS, email, next, Some(msg), &headers);
    }
    let password = form.get("password").cloned().unwrap_or_default();
    let users = match state.store.users_by_email(&email).await {
        Ok(u) => u,
        Err(e) => return UiError::from(e).into_response(),
    };
    if users.is_empty() {
        // Hash anyway, so the answer takes as long as for a real account.
        let _ = verify_password(&password, UNKNOWN_USER_HASH);
    }
    let Some(user) = users.into_iter().find(|u| verify_password(&password, &u.password_hash)) else {
        state.throttle.record_failure(&email, now);
        return login_page(
            &state,
            StatusCode::UNAUTHORIZED,
            email,
            next,
            Some("Wrong email or password.".to_owned()),
            &headers,
        );
    };
    state.throttle.clear(&email);
    let token = match state
        .store
        .create_session(user.workspace_id, user.id, now, Duration::days(SESSION_DAYS))
        .await
    {
        Ok(t) => t,
        Err(e) => return UiError::from(e).into_response(),
    };
    let mut resp = Redirect::to(&next).into_response();
    let secure = state.secure_cookies();
    resp.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, &token, "/", SESSION_DAYS * 86_400, secure),
    );
    resp.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(LOGIN_CSRF_COOKIE, "", "/login", 0, secure),
    );
    resp
}

async fn delete(
    State(state): State<AppState>,
    user: CurrentUser,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, UiError> {
    user.check_csrf(&form)?;
    if let Some(token) = cookie(&headers, SESSION_COOKIE) {
        state.store.delete_session(&token).await?;
    }
    let mut resp = Redirect::to("/login").into_response();
    resp.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, "", "/", 0, state.secure_cookies()),
    );
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_throttle_locks_after_five_failures_and_reopens_after_the_window() {
        let t = LoginThrottle::default();
        let now = Utc::now();
        for i in 0..MAX_FAILURES {
            assert_eq!(t.locked_for("a@b.co", now), None, "attempt {i}");
            t.record_failure("a@b.co", now);
        }
        assert!(t.locked_for("a@b.co", now).is_some());
        assert_eq!(t.locked_for("other@b.co", now), None);
        assert_eq!(t.locked_for("a@b.co", now + Duration::minutes(16)), None);
    }

    #[test]
    fn only_local_paths_are_followed() {
        assert_eq!(safe_next(Some(&"/alerts".to_owned())), "/alerts");
        assert_eq!(safe_next(Some(&"//evil.example".to_owned())), "/customers");
        assert_eq!(safe_next(Some(&"https://evil.example".to_owned())), "/customers");
        assert_eq!(safe_next(None), "/customers");
        assert_eq!(safe_next(Some(&"/\t/evil.example".to_owned())), "/customers");
        assert_eq!(safe_next(Some(&"/\\evil.example".to_owned())), "/customers");
        assert_eq!(safe_next(Some(&"/a\r\nSet-Cookie: x".to_owned())), "/customers");
    }
}
