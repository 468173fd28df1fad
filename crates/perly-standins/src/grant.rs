//! What the OAuth servers share: authorization codes (issued on consent,
//! single use, expiring after ten minutes unless the vendor says otherwise), reading client credentials from
//! HTTP Basic or from form fields, building the redirect back to the client,
//! and random ids and secrets.
//!
//! The code store is pure over `now` so its expiry can be tested without
//! waiting; handlers pass `tokio::time::Instant::now()`.

use std::collections::HashMap;
use std::time::Duration;

use axum::http::{header, HeaderMap};
use base64::Engine;
use rand::distributions::Alphanumeric;
use rand::Rng;
use tokio::time::Instant;

/// Both vendors: "a temporary authorization code, which expires after ten
/// minutes" (Slack installing-with-oauth; Discord uses the same lifetime).
pub(crate) const CODE_LIFETIME: Duration = Duration::from_secs(600);

/// Why a code cannot be exchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CodeError {
    Unknown,
    Expired,
    Used,
}

struct Issued<T> {
    grant: T,
    issued_at: Instant,
    used: bool,
}

/// Codes handed out on consent, each remembering what was granted.
pub(crate) struct Codes<T> {
    issued: HashMap<String, Issued<T>>,
}

impl<T> Default for Codes<T> {
    fn default() -> Self {
        Self { issued: HashMap::new() }
    }
}

impl<T: Clone> Codes<T> {
    pub(crate) fn issue(&mut self, code: String, grant: T, now: Instant) {
        self.issued.insert(
            code,
            Issued {
                grant,
                issued_at: now,
                used: false,
            },
        );
    }

    /// What `code` granted, if it can still be exchanged.
    pub(crate) fn peek(&self, code: &str, now: Instant) -> Result<T, CodeError> {
        self.peek_within(code, now, CODE_LIFETIME)
    }

    /// Like [`Codes::peek`] for a vendor whose codes live `lifetime`
    /// (Salesforce: 15 minutes).
    pub(crate) fn peek_within(&self, code: &str, now: Instant, lifetime: Duration) -> Result<T, CodeError> {
        let issued = self.issued.get(code).ok_or(CodeError::Unknown)?;
        if issued.used {
            return Err(CodeError::Used);
        }
        if now.saturating_duration_since(issued.issued_at) >= lifetime {
            return Err(CodeError::Expired);
        }
        Ok(issued.grant.clone())
    }

    /// Marks `code` used; exchanges after this fail with [`CodeError::Used`].
    pub(crate) fn consume(&mut self, code: &str) {
        if let Some(issued) = self.issued.get_mut(code) {
            issued.used = true;
        }
    }
}

/// Client id and secret as sent: HTTP Basic wins over form fields.
pub(crate) fn client_credentials(
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> (Option<String>, Option<String>) {
    if let Some((id, secret)) = basic_auth(headers) {
        return (Some(id), Some(secret));
    }
    (form.get("client_id").cloned(), form.get("client_secret").cloned())
}

fn basic_auth(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((id.to_owned(), secret.to_owned()))
}

/// `redirect_uri` with `pairs` appended to its query; `None` if it is not an
/// absolute URL.
pub(crate) fn redirect_to(redirect_uri: &str, pairs: &[(&str, &str)]) -> Option<String> {
    let mut url = url::Url::parse(redirect_uri).ok()?;
    {
        let mut query = url.query_pairs_mut();
        for (k, v) in pairs {
            query.append_pair(k, v);
        }
    }
    Some(url.to_string())
}

/// The media type of a request, lower-cased, without parameters.
pub(crate) fn media_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let essence = value.split(';').next().unwrap_or_default().trim();
    Some(essence.to_ascii_lowercase())
}

/// Parses an `application/x-www-form-urlencoded` body (last value wins).
pub(crate) fn parse_form(body: &[u8]) -> HashMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

/// `n` random ASCII letters and digits.
pub(crate) fn random_alnum(n: usize) -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(n)
        .map(char::from)
        .collect()
}

/// `n` random upper-case letters and digits (Slack ids: `B0…`, `C0…`).
pub(crate) fn random_upper(n: usize) -> String {
    const SET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut rng = rand::thread_rng();
    (0..n).map(|_| char::from(SET[rng.gen_range(0..SET.len())])).collect()
}

/// `n` random decimal digits, the first not zero.
pub(crate) fn random_digits(n: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..n)
        .map(|i| {
            let low = if i == 0 { 1 } else { 0 };
            char::from(b'0' + rng.gen_range(low..10u8))
        })
        .collect()
}

/// `n` random characters of the URL-safe base64 alphabet (Discord tokens).
pub(crate) fn random_token(n: usize) -> String {
    const SET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut rng = rand::thread_rng();
    (0..n).map(|_| char::from(SET[rng.gen_range(0..SET.len())])).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_single_use_and_expire_after_ten_minutes() {
        let t0 = Instant::now();
        let mut codes = Codes::default();
        codes.issue("a".into(), 1, t0);
        codes.issue("b".into(), 2, t0);
        assert_eq!(codes.peek("a", t0 + Duration::from_secs(599)), Ok(1));
        codes.consume("a");
        assert_eq!(codes.peek("a", t0), Err(CodeError::Used));
        assert_eq!(codes.peek("b", t0 + CODE_LIFETIME), Err(CodeError::Expired));
        assert_eq!(codes.peek("zzz", t0), Err(CodeError::Unknown));
    }

    #[test]
    fn basic_auth_wins_over_form_fields() {
        let mut headers = HeaderMap::new();
        let encoded = base64::engine::general_purpose::STANDARD.encode("id-1:s3cret");
        headers.insert(
            header::AUTHORIZATION,
            format!("Basic {encoded}").parse().expect("header value"),
        );
        let form = HashMap::from([("client_id".to_owned(), "other".to_owned())]);
        assert_eq!(
            client_credentials(&headers, &form),
            (Some("id-1".into()), Some("s3cret".into()))
        );
        assert_eq!(
            client_credentials(&HeaderMap::new(), &form),
            (Some("other".into()), None)
        );
    }

    #[test]
    fn redirects_keep_the_existing_query() {
        let url = redirect_to("https://app.example/cb?x=1", &[("code", "a b"), ("state", "s")]);
        assert_eq!(url.as_deref(), Some("https://app.example/cb?x=1&code=a+b&state=s"));
    }
}
