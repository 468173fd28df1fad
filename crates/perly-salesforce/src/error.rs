//! The one error type of this crate. Each variant is a decision for the
//! caller: reconnect ([`Error::ConnectionBroken`]), back off until the daily
//! window moves ([`Error::LimitExceeded`], [`Error::OverBudget`]), retry soon
//! ([`Error::is_transient`]), or give up and keep the reason
//! ([`Error::Api`]). Salesforce error bodies are parsed here, once, from the
//! two shapes Salesforce uses: REST's `[{"message","errorCode","fields"}]`
//! and OAuth's `{"error","error_description"}`.

use serde::Deserialize;

use crate::limits::ApiUsage;

/// Shorthand used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong talking to Salesforce.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The OAuth endpoint refused a request (bad code, wrong redirect URI,
    /// PKCE mismatch, …). `error` is the OAuth error code.
    #[error("Salesforce refused the OAuth request: {error}{}", description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    OAuth { error: String, description: Option<String> },
    /// The refresh token was refused (`invalid_grant`: revoked, expired, user
    /// deactivated, app uninstalled). Nothing works until an admin reconnects.
    #[error("the Salesforce connection must be reconnected: {0}")]
    ConnectionBroken(String),
    /// Salesforce still answered 401 with a freshly refreshed access token.
    #[error("Salesforce rejected the session even after a token refresh")]
    SessionExpired,
    /// The org's API request limit is used up (403 `REQUEST_LIMIT_EXCEEDED`).
    /// Never retried here; wait for the rolling 24 h window to move.
    #[error("the Salesforce org's API request limit is exceeded: {message}")]
    LimitExceeded { message: String },
    /// Perly's own share of the org's daily API calls is used up; no request
    /// was sent.
    #[error("Perly's share of the Salesforce API limit is used up ({usage} used, Perly may use {allowed})")]
    OverBudget { usage: ApiUsage, allowed: u64 },
    /// Any other error answer, with Salesforce's `errorCode`, message and the
    /// fields it names.
    #[error("Salesforce answered {status} {code}: {message}")]
    Api {
        status: u16,
        code: String,
        message: String,
        fields: Vec<String>,
    },
    /// A Bulk API job ended `Failed` or `Aborted`.
    #[error("Salesforce bulk job {id} ended {state}: {message}")]
    JobFailed { id: String, state: String, message: String },
    /// Bulk query results asked for before the job completed (412).
    #[error("the Salesforce bulk job has not completed yet")]
    NotReady,
    /// Salesforce could not be reached, or the connection broke mid-answer.
    #[error("could not reach Salesforce")]
    Transport(#[source] reqwest::Error),
    /// The host is not one Perly sends anything to: not a Salesforce host
    /// (see [`crate::hosts`]), or an address on a private network (see
    /// [`perly_net`]). Nothing was sent there; retrying cannot help.
    #[error("{0}")]
    Refused(String),
    /// Salesforce answered with something this client cannot read.
    #[error("Salesforce answered unexpectedly: {0}")]
    Protocol(String),
}

/// Error codes that mean "try again in a moment".
const TRANSIENT_CODES: &[&str] = &[
    "UNABLE_TO_LOCK_ROW",
    "SERVER_UNAVAILABLE",
    "REQUEST_RUNNING_TOO_LONG",
    "QUERY_TIMEOUT",
    "TXN_SECURITY_METERING_ERROR",
];

impl Error {
    /// Whether the same request may succeed if simply sent again later
    /// (network trouble, 5xx, row locks, …). Limits, budget refusals and
    /// broken connections are *not* transient: retrying soon cannot help.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Transport(_) | Error::NotReady => true,
            Error::Api { status, code, .. } => *status >= 500 || *status == 429 || is_transient_code(code),
            _ => false,
        }
    }

    /// Salesforce's error code, when the answer carried one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Api { code, .. } => Some(code),
            Error::OAuth { error, .. } => Some(error),
            _ => None,
        }
    }

    /// Whether Salesforce said the record or resource does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Api { status: 404, .. }) || self.code() == Some("NOT_FOUND")
    }

    /// Whether Salesforce said the thing being created already exists
    /// (`DUPLICATE_VALUE`, `DUPLICATE_DEVELOPER_NAME`, …).
    pub fn is_duplicate(&self) -> bool {
        matches!(self, Error::Api { code, .. } if code.starts_with("DUPLICATE"))
    }
}

/// Whether a per-record status code (composite results) is worth retrying.
pub fn is_transient_code(code: &str) -> bool {
    TRANSIENT_CODES.contains(&code)
}

/// One entry of a REST error body.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ApiErrorBody {
    pub message: String,
    #[serde(rename = "errorCode")]
    pub error_code: String,
    #[serde(default)]
    pub fields: Vec<String>,
}

/// Parses a REST error body: usually an array of one, sometimes (some Bulk
/// and Chatter answers) a bare object. `None` when it is neither.
pub fn parse_api_errors(body: &str) -> Option<Vec<ApiErrorBody>> {
    if let Ok(list) = serde_json::from_str::<Vec<ApiErrorBody>>(body) {
        return Some(list);
    }
    serde_json::from_str::<ApiErrorBody>(body).ok().map(|one| vec![one])
}

/// An OAuth error body.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct OAuthErrorBody {
    pub error: String,
    #[serde(default)]
    pub error_description: Option<String>,
}

/// Parses `{"error","error_description"}`; Salesforce sometimes answers the
/// form-encoded `error=…&error_description=…` instead, which is read too.
pub fn parse_oauth_error(body: &str) -> Option<OAuthErrorBody> {
    if let Ok(e) = serde_json::from_str::<OAuthErrorBody>(body) {
        return Some(e);
    }
    let mut error = None;
    let mut description = None;
    for (k, v) in url::form_urlencoded::parse(body.trim().as_bytes()) {
        match &*k {
            "error" => error = Some(v.into_owned()),
            "error_description" => description = Some(v.into_owned()),
            _ => {}
        }
    }
    error.map(|error| OAuthErrorBody {
        error,
        error_description: description,
    })
}

/// A failed request as an [`Error`]: [`Error::Refused`] when Perly's own
/// guard stopped it, [`Error::Transport`] (transient) otherwise, a failed
/// name lookup included.
pub(crate) fn transport(e: reqwest::Error) -> Error {
    match perly_net::refusal(&e) {
        None | Some(perly_net::Refused::Lookup { .. }) => Error::Transport(e),
        Some(r) => Error::Refused(r.to_string()),
    }
}

impl From<perly_net::Refused> for Error {
    fn from(r: perly_net::Refused) -> Self {
        Error::Refused(r.to_string())
    }
}

impl From<crate::hosts::HostError> for Error {
    fn from(e: crate::hosts::HostError) -> Self {
        Error::Refused(e.0)
    }
}

/// A body read with a cap (`what` names the request for the message).
pub(crate) fn body_error(what: &str, e: perly_net::BodyError) -> Error {
    match e {
        perly_net::BodyError::Transport(e) => transport(e),
        too_large => Error::Protocol(format!("{what}: {too_large}")),
    }
}

/// How an error answer (not 401: the client handles that itself) becomes an
/// [`Error`].
pub(crate) fn from_response(status: u16, body: &str) -> Error {
    let first = parse_api_errors(body).and_then(|list| list.into_iter().next());
    match (status, first) {
        (403, Some(e)) if e.error_code == "REQUEST_LIMIT_EXCEEDED" => Error::LimitExceeded {
            message: snippet(&e.message),
        },
        (412, _) => Error::NotReady,
        (_, Some(e)) => Error::Api {
            status,
            code: snippet(&e.error_code),
            message: snippet(&e.message),
            fields: e.fields.iter().map(|f| snippet(f)).collect(),
        },
        (_, None) => Error::Api {
            status,
            code: format!("HTTP_{status}"),
            message: snippet(body),
            fields: Vec::new(),
        },
    }
}

/// Vendor text fit to show an admin: control characters (line breaks,
/// escapes) become spaces, runs of spaces one, and at most 200 characters
/// are kept (bodies can be whole HTML pages).
pub fn snippet(body: &str) -> String {
    const MAX: usize = 200;
    let mut out = String::with_capacity(body.len().min(MAX * 4));
    let mut kept = 0;
    for word in body.split(|c: char| c.is_whitespace() || c.is_control()) {
        if word.is_empty() {
            continue;
        }
        if kept > 0 {
            if kept == MAX {
                out.push('…');
                return out;
            }
            out.push(' ');
            kept += 1;
        }
        for c in word.chars() {
            if kept == MAX {
                out.push('…');
                return out;
            }
            out.push(c);
            kept += 1;
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    use crate::fixtures::spec;

    #[test]
    fn invalid_field_error_file_becomes_an_api_error() {
        let e = from_response(400, &spec("rest/error_400_invalid_field_doc.json"));
        match e {
            Error::Api {
                status,
                code,
                message,
                fields,
            } => {
                assert_eq!(status, 400);
                assert_eq!(code, "INVALID_FIELD");
                assert_eq!(message, "The Id field should not be specified in the sobject data.");
                assert!(fields.is_empty());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn request_limit_error_file_becomes_limit_exceeded() {
        let e = from_response(403, &spec("rest/error_403_request_limit_exceeded.json"));
        assert!(matches!(&e, Error::LimitExceeded { message } if message == "TotalRequests Limit exceeded."));
        assert!(!e.is_transient());
    }

    #[test]
    fn not_found_error_file_is_not_found() {
        let e = from_response(404, &spec("rest/error_404_not_found.json"));
        assert!(e.is_not_found());
        assert_eq!(e.code(), Some("NOT_FOUND"));
    }

    #[test]
    fn invalid_session_error_file_parses() {
        let list = parse_api_errors(&spec("rest/error_401_invalid_session_id.json")).unwrap();
        assert_eq!(list[0].error_code, "INVALID_SESSION_ID");
        assert_eq!(list[0].message, "Session expired or invalid");
    }

    #[test]
    fn job_not_complete_error_file_is_not_ready() {
        let e = from_response(412, &spec("bulk2/query_results_error_412_job_not_complete_doc.json"));
        assert!(matches!(e, Error::NotReady));
    }

    #[test]
    fn token_error_file_parses() {
        let e = parse_oauth_error(&spec("oauth/token_error_invalid_grant_expired.json")).unwrap();
        assert_eq!(e.error, "invalid_grant");
        assert_eq!(e.error_description.as_deref(), Some("expired access/refresh token"));
    }

    #[test]
    fn revoke_error_file_parses_without_a_description() {
        let e = parse_oauth_error(&spec("oauth/revoke_error_invalid_token.json")).unwrap();
        assert_eq!(e.error, "invalid_token");
        assert_eq!(e.error_description, None);
    }

    #[test]
    fn form_encoded_oauth_errors_parse() {
        let e = parse_oauth_error("error=invalid_grant&error_description=authentication+failure").unwrap();
        assert_eq!(e.error, "invalid_grant");
        assert_eq!(e.error_description.as_deref(), Some("authentication failure"));
    }

    #[test]
    fn a_bare_error_object_parses() {
        let list = parse_api_errors(r#"{"errorCode":"X","message":"m"}"#).unwrap();
        assert_eq!(list[0].error_code, "X");
    }

    #[test]
    fn unreadable_error_bodies_keep_the_status_and_a_snippet() {
        let e = from_response(503, "<html>maintenance</html>");
        assert!(
            matches!(&e, Error::Api { status: 503, code, message, .. } if code == "HTTP_503" && message == "<html>maintenance</html>")
        );
        assert!(e.is_transient());
    }

    #[test]
    fn row_locks_and_5xx_are_transient_but_bad_requests_are_not() {
        let lock = Error::Api {
            status: 400,
            code: "UNABLE_TO_LOCK_ROW".into(),
            message: String::new(),
            fields: vec![],
        };
        assert!(lock.is_transient());
        let bad = from_response(400, &spec("rest/error_400_invalid_field_doc.json"));
        assert!(!bad.is_transient());
        assert!(!Error::SessionExpired.is_transient());
        assert!(!Error::ConnectionBroken("x".into()).is_transient());
    }

    #[test]
    fn duplicates_are_recognised() {
        let e = from_response(
            400,
            r#"[{"message":"dup","errorCode":"DUPLICATE_DEVELOPER_NAME","fields":[]}]"#,
        );
        assert!(e.is_duplicate());
    }

    #[test]
    fn long_bodies_are_cut() {
        let s = snippet(&"é".repeat(500));
        assert_eq!(s.chars().count(), 201);
        assert_eq!(snippet(&"a ".repeat(300)).chars().count(), 201);
    }

    #[test]
    fn vendor_text_loses_control_characters() {
        assert_eq!(
            snippet("  line one\r\nline\ttwo \u{1b}[31mred\u{7}  "),
            "line one line two [31mred"
        );
        let e = from_response(
            400,
            "[{\"message\":\"bad\\nthing\\u0000here\",\"errorCode\":\"X\\r\",\"fields\":[]}]",
        );
        assert!(
            matches!(&e, Error::Api { code, message, .. } if code == "X" && message == "bad thing here"),
            "{e:?}"
        );
    }
}
