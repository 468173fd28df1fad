//! The server-rendered web app: sign-in, the portfolio at `/`, customers, a customer's profile with
//! its score chart, the alert feed and settings. Pages are askama templates
//! (HTML is never built by hand), forms carry a CSRF token and answer POST
//! with a 303 and a flash message, and errors render as pages.

pub mod account;
pub mod alerts;
pub mod channel_rules;
pub mod channels;
pub mod chart;
pub mod customers;
pub mod oauth;
pub mod portfolio;
pub mod salesforce;
pub mod salesforce_rules;
pub mod session;
pub mod settings;

use askama::Template;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/static/app.css", get(stylesheet))
        .merge(session::router())
        .merge(portfolio::router())
        .merge(customers::router())
        .merge(alerts::router())
        .merge(settings::router())
        .merge(account::router())
        .merge(oauth::router())
        .merge(salesforce::router())
        .merge(salesforce_rules::router())
        .merge(channels::router())
}

async fn stylesheet() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../../static/app.css"),
    )
}

/// The signed-in header of every page.
pub struct Nav {
    pub section: &'static str,
    pub email: String,
    pub workspace: String,
    pub is_admin: bool,
    pub csrf: String,
}

/// A one-time message shown after a redirect.
pub struct Flash {
    pub kind: &'static str,
    pub text: String,
}

/// A message shown once. Over https it is a `__Host-` cookie too, so a
/// sibling domain cannot plant text that the page shows as Perly's.
const FLASH_COOKIE: CookieName = CookieName("perly_flash");

/// One of Perly's cookies, all of the whole site (`Path=/`), by its name
/// over plain http. Over https the name takes the `__Host-` prefix, which
/// browsers hold to Secure, `Path=/` and no `Domain`, so neither a
/// plain-http page nor a sibling domain can plant or overwrite it.
#[derive(Debug, Clone, Copy)]
pub struct CookieName(pub &'static str);

impl CookieName {
    /// The name sent and read: prefixed when served over https (and then
    /// only that name is read).
    pub fn name(&self, https: bool) -> String {
        if https {
            format!("__Host-{}", self.0)
        } else {
            self.0.to_owned()
        }
    }

    /// This cookie from the request.
    pub fn read(&self, state: &AppState, headers: &HeaderMap) -> Option<String> {
        cookie(headers, &self.name(state.secure_cookies()))
    }

    /// A `Set-Cookie` for this cookie (Secure over https, see [`set_cookie`]).
    pub fn set(&self, state: &AppState, value: &str, max_age: i64) -> HeaderValue {
        let https = state.secure_cookies();
        set_cookie(&self.name(https), value, max_age, https)
    }
}

/// Reads a cookie from request headers.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// A `Set-Cookie` value for the whole site. `secure` when served over https.
fn set_cookie(name: &str, value: &str, max_age: i64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("invalid=; Max-Age=0"))
}

/// Takes the flash message of the request, if any (the page clears it).
pub fn take_flash(state: &AppState, headers: &HeaderMap) -> Option<Flash> {
    let raw = FLASH_COOKIE.read(state, headers)?;
    let decoded: String = form_urlencoded::parse(format!("f={raw}").as_bytes())
        .map(|(_, v)| v.into_owned())
        .next()?;
    let (kind, text) = decoded.split_once('|')?;
    let kind = match kind {
        "error" => "error",
        _ => "info",
    };
    Some(Flash {
        kind,
        text: text.to_owned(),
    })
}

/// A 303 to `to` that leaves a flash message for the next page.
pub fn redirect_with_flash(state: &AppState, to: &str, kind: &str, text: &str) -> Response {
    let value: String = form_urlencoded::byte_serialize(format!("{kind}|{text}").as_bytes()).collect();
    let mut resp = Redirect::to(to).into_response();
    resp.headers_mut()
        .append(header::SET_COOKIE, FLASH_COOKIE.set(state, &value, 60));
    resp
}

/// Renders a page; clears the flash cookie when one was shown.
pub fn render<T: Template>(state: &AppState, status: StatusCode, page: &T, had_flash: bool) -> Response {
    match page.render() {
        Ok(html) => {
            let mut resp = (status, Html(html)).into_response();
            resp.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            if had_flash {
                resp.headers_mut()
                    .append(header::SET_COOKIE, FLASH_COOKIE.set(state, "", 0));
            }
            resp
        }
        Err(e) => {
            tracing::error!(error = %e, "template failed");
            UiError::Internal.into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "message.html")]
pub struct MessagePage {
    pub nav: Option<Nav>,
    pub flash: Option<Flash>,
    pub heading: String,
    pub text: String,
}

/// Errors of the web app, rendered as pages.
#[derive(Debug)]
pub enum UiError {
    /// Not signed in: go to the sign-in page, then back to `next`.
    SignIn {
        next: String,
    },
    NotFound,
    Forbidden(&'static str),
    BadRequest(String),
    TooManyAttempts {
        minutes: i64,
    },
    Internal,
    /// The database cannot be reached: 503 with `Retry-After`.
    Unavailable,
}

impl From<perly_store::Error> for UiError {
    fn from(e: perly_store::Error) -> Self {
        match e {
            perly_store::Error::NotFound => Self::NotFound,
            perly_store::Error::Invalid(m) => Self::BadRequest(m),
            perly_store::Error::Unreachable(source) => {
                tracing::warn!(error = %source, "database unreachable on a page; answering 503");
                Self::Unavailable
            }
            other => {
                tracing::error!(error = %other, "store error on a page");
                Self::Internal
            }
        }
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let retry_after = matches!(self, Self::Unavailable);
        let (status, heading, text) = match self {
            Self::SignIn { next } => {
                let next: String = form_urlencoded::byte_serialize(next.as_bytes()).collect();
                return Redirect::to(&format!("/login?next={next}")).into_response();
            }
            Self::NotFound => (
                StatusCode::NOT_FOUND,
                "Page not found",
                "There is nothing at this address, or it belongs to another workspace.".to_owned(),
            ),
            Self::Forbidden(why) => (StatusCode::FORBIDDEN, "Not allowed", why.to_owned()),
            Self::BadRequest(why) => (StatusCode::BAD_REQUEST, "That did not work", why),
            Self::TooManyAttempts { minutes } => (
                StatusCode::TOO_MANY_REQUESTS,
                "Too many attempts",
                format!("Too many failed sign-in attempts for this account. Try again in {minutes} minutes."),
            ),
            Self::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "Something went wrong on our side. Try again in a moment.".to_owned(),
            ),
            Self::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Temporarily unavailable",
                "Perly cannot reach its database right now. Try again in a few seconds.".to_owned(),
            ),
        };
        let page = MessagePage {
            nav: None,
            flash: None,
            heading: heading.to_owned(),
            text,
        };
        let mut response = match page.render() {
            Ok(html) => (status, Html(html)).into_response(),
            Err(_) => (status, heading).into_response(),
        };
        if retry_after {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(crate::error::DATABASE_RETRY_AFTER),
            );
        }
        response
    }
}

pub use perly_domain::customer::path_segment;

/// Human date-time for pages (UTC).
pub fn when(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}
