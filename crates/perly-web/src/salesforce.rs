//! Salesforce steps the settings pages and the API share: where an org type
//! logs in, starting and completing the OAuth web-server flow with PKCE,
//! the permission check, and disconnecting.
//!
//! Completing a connection takes, in order: the state (single use, bound to
//! the admin), the code exchange at the login host the flow started on, the
//! org (`Organization.IsSandbox` must match the chosen type) and the user,
//! the permission check, and only then one store write. Anything that fails
//! before that write revokes the new token, so nothing is half-saved.

use std::sync::Arc;

use perly_domain::ids::{UserId, WorkspaceId};
use perly_domain::salesforce::Environment;
use perly_domain::FieldError;
use perly_salesforce::client::{Client, Connection};
use perly_salesforce::error::snippet;
use perly_salesforce::limits::Budget;
use perly_salesforce::oauth::{self, Pkce};
use perly_salesforce::orgs::Orgs;
use perly_salesforce::permissions::{self, PermissionReport};
use perly_store::{NewSalesforceConnection, SalesforceConnection};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use tokio::sync::Notify;
use url::Url;

use crate::AppState;

/// The OAuth provider name for states.
pub const PROVIDER: &str = "salesforce";
/// How long a started connect flow may take.
pub const STATE_MINUTES: i64 = 10;

/// Salesforce wiring: the orgs' clients (with the login hosts from
/// configuration, `orgs.hosts()`), and the sync worker's wake-up.
#[derive(Clone)]
pub struct SalesforceSetup {
    pub orgs: Arc<Orgs>,
    pub wake_sync: Arc<Notify>,
    /// The outbox worker (score pushes, Tasks, Chatter posts).
    pub wake_outbox: Arc<Notify>,
    /// The Account field a new connection matches customers on, when the
    /// server sets one (`sync.external_id_field`); applied before the first
    /// sync if the org has that field.
    pub default_external_id_field: Option<String>,
}

/// Why a connection could not be made (or used), in words for the admin.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("Salesforce is not configured on this server: set PERLY_SALESFORCE__CLIENT_ID and PERLY_SALESFORCE__CLIENT_SECRET")]
    NotConfigured,
    #[error("{}", .0.message)]
    Invalid(FieldError),
    #[error("Salesforce access was refused on the consent screen ({0}); nothing was connected")]
    Denied(String),
    #[error("this Salesforce sign-in link has expired or was already used; start again from Settings › Integrations")]
    BadState,
    #[error("Salesforce said: {0}")]
    Vendor(String),
    /// A host Perly does not talk to (not Salesforce's, or on a private
    /// network); nothing was sent there.
    #[error("{0}; nothing was connected")]
    Refused(String),
    #[error("{0}; nothing was connected")]
    WrongOrgType(String),
    #[error("Salesforce did not hand out a refresh token: allow the refresh_token scope on the connected app")]
    NoRefreshToken,
    #[error("Salesforce is not connected")]
    NotConnected,
    #[error(transparent)]
    Store(#[from] perly_store::Error),
}

impl From<perly_salesforce::error::Error> for ConnectError {
    fn from(e: perly_salesforce::error::Error) -> Self {
        match e {
            perly_salesforce::error::Error::Refused(why) => Self::Refused(why),
            other => Self::Vendor(other.to_string()),
        }
    }
}

/// The login host for an org type: the configured Production or Sandbox
/// login URL, or an admin's My Domain, which must be an https host under
/// Salesforce's domains (`https://acme.my.salesforce.com`) or exactly a
/// configured login URL (see [`perly_salesforce::hosts`]).
pub fn login_url(setup: &SalesforceSetup, env: Environment, my_domain: Option<&str>) -> Result<Url, ConnectError> {
    let bad = |m: &str| ConnectError::Invalid(FieldError::new("invalid_field", "my_domain_url", m));
    let hosts = setup.orgs.hosts();
    let url = match env {
        Environment::Production => hosts.production().clone(),
        Environment::Sandbox => hosts.sandbox().clone(),
        Environment::MyDomain => {
            let raw = my_domain
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .ok_or_else(|| bad("enter your org's My Domain login URL, like https://acme.my.salesforce.com"))?;
            hosts
                .my_domain(raw)
                .map_err(|e| bad(&format!("the My Domain URL is refused: {e}")))?
        }
    };
    let trimmed = url.as_str().trim_end_matches('/').to_owned();
    Url::parse(&trimmed).map_err(|_| bad("the configured Salesforce login URL is not a URL"))
}

/// Starts a connect flow: the URL of Salesforce's consent page.
pub async fn start(
    state: &AppState,
    ws: WorkspaceId,
    user: UserId,
    env: Environment,
    my_domain: Option<&str>,
) -> Result<Url, ConnectError> {
    let setup = &state.salesforce;
    let app = setup.orgs.app().ok_or(ConnectError::NotConfigured)?;
    let login = login_url(setup, env, my_domain)?;
    let pkce = Pkce::new();
    let data = json!({
        "environment": env.as_str(),
        "login_url": login.as_str().trim_end_matches('/'),
        "verifier": pkce.verifier().expose_secret(),
    });
    let oauth_state = state
        .store
        .create_oauth_state(
            ws,
            user,
            PROVIDER,
            &data,
            state.now(),
            chrono::Duration::minutes(STATE_MINUTES),
        )
        .await?;
    Ok(oauth::authorize_url(&login, app, &oauth_state, pkce.challenge()))
}

/// Completes a connect flow from the callback's query.
pub async fn finish(
    state: &AppState,
    ws: WorkspaceId,
    user: UserId,
    query: &std::collections::HashMap<String, String>,
) -> Result<(SalesforceConnection, PermissionReport), ConnectError> {
    let setup = &state.salesforce;
    let app = setup.orgs.app().ok_or(ConnectError::NotConfigured)?.clone();
    let given_state = query.get("state").map(String::as_str).unwrap_or_default();
    // The state is redeemed first, so a refusal also uses it up.
    let flow = state
        .store
        .take_oauth_state(ws, user, PROVIDER, given_state, state.now())
        .await?
        .ok_or(ConnectError::BadState)?;
    if let Some(error) = query.get("error") {
        let error = snippet(error);
        let description = query
            .get("error_description")
            .map_or_else(|| error.clone(), |d| snippet(d));
        return Err(if error == "access_denied" {
            ConnectError::Denied(description)
        } else {
            ConnectError::Vendor(format!("{error}: {description}"))
        });
    }
    let code = query
        .get("code")
        .filter(|c| !c.is_empty())
        .ok_or_else(|| ConnectError::Vendor("the callback carried no authorization code".into()))?;
    let field = |k: &str| flow.data.get(k).and_then(|v| v.as_str()).unwrap_or_default().to_owned();
    let env = Environment::parse(&field("environment")).map_err(ConnectError::Invalid)?;
    let login = Url::parse(&field("login_url")).map_err(|_| ConnectError::BadState)?;
    // Checked when the flow started; checked again, in case the
    // configuration changed since.
    setup
        .orgs
        .hosts()
        .check_login(&login)
        .map_err(|e| ConnectError::Refused(e.0))?;
    let verifier = SecretString::from(field("verifier"));
    // A reconnect keeps the fields the admin picked: the check covers them.
    let settings = state
        .store
        .salesforce_connection(ws)
        .await?
        .map(|c| c.settings)
        .unwrap_or_default();
    let http = setup.orgs.http();
    let grant = oauth::exchange_code(http, &login, &app, code, &verifier).await?;
    let Some(refresh_token) = grant.refresh_token.clone() else {
        revoke_quietly(http, &login, &grant.access_token).await;
        return Err(ConnectError::NoRefreshToken);
    };
    let client = Client::new(
        http.clone(),
        app,
        Connection {
            login_url: login.clone(),
            instance_url: grant.instance_url.clone(),
            refresh_token: refresh_token.clone(),
        },
        Budget::default(),
    )
    .with_access_token(grant.access_token.clone());
    let checked = async {
        let report = permissions::check(&client, &settings).await?;
        let org = client.organization().await?;
        let who = client.userinfo().await?;
        Ok::<_, perly_salesforce::error::Error>((report, org, who))
    }
    .await;
    let (report, org, who) = match checked {
        Ok(v) => v,
        Err(e) => {
            revoke_quietly(http, &login, &refresh_token).await;
            return Err(e.into());
        }
    };
    if let Err(why) = env.admits(org.is_sandbox) {
        revoke_quietly(http, &login, &refresh_token).await;
        return Err(ConnectError::WrongOrgType(why));
    }
    let new = NewSalesforceConnection {
        environment: env,
        login_url: login.as_str().trim_end_matches('/').to_owned(),
        instance_url: grant.instance_url.as_str().trim_end_matches('/').to_owned(),
        org_id: org.id.clone(),
        org_name: org.name.clone(),
        user_id: who.user_id.clone(),
        username: who.username.clone(),
        refresh_token: refresh_token.expose_secret().to_owned(),
        permissions: report_json(&report),
    };
    let now = state.now();
    let conn = state.store.save_salesforce_connection(ws, &new, now).await?;
    // Perly's fields: made now when missing, left alone when present. A
    // failure is kept on the connection (settings show it) and retried
    // before the first push; the connection itself stands.
    if let Err(e) = perly_salesforce::outbox::ensure_fields(state.store.as_ref(), ws, &client, now).await {
        tracing::warn!(workspace_id = %ws, error = %e, "could not make Perly's fields in Salesforce yet");
    }
    // An org never synced into this workspace (a reconnect keeps what its
    // admin chose) gets the server's match field before its first sync.
    if conn.watermarks.is_empty() && conn.settings.external_id_field.is_none() {
        if let Some(field) = &setup.default_external_id_field {
            match_customers_on(state, ws, &client, &conn.settings, field, now).await?;
        }
    }
    let conn = state.store.salesforce_connection(ws).await?.unwrap_or(conn);
    setup.orgs.remember(ws, conn.connected_at, client);
    state.store.request_salesforce_sync(ws, now).await?;
    setup.wake_sync.notify_one();
    Ok((conn, report))
}

/// Sets the server's default external id field on a new connection, when
/// the org's Account has it (the describe says); otherwise the connection
/// keeps matching on the Account Id, which the settings page shows.
async fn match_customers_on(
    state: &AppState,
    ws: WorkspaceId,
    client: &Client,
    settings: &perly_domain::salesforce::SyncSettings,
    field: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), ConnectError> {
    let has_field = match client.describe("Account").await {
        Ok(d) => d.fields.iter().any(|f| f.name.eq_ignore_ascii_case(field)),
        Err(e) => {
            tracing::warn!(workspace_id = %ws, error = %e, "could not read the Account fields");
            false
        }
    };
    if !has_field {
        tracing::warn!(workspace_id = %ws, field, "the org's Account has no such field: customers are matched on the Account Id");
        return Ok(());
    }
    let settings = perly_domain::salesforce::SyncSettings {
        external_id_field: Some(field.to_owned()),
        ..settings.clone()
    };
    state.store.update_salesforce_settings(ws, &settings, now).await?;
    Ok(())
}

async fn revoke_quietly(http: &perly_net::Outbound, login: &Url, token: &SecretString) {
    if let Err(e) = oauth::revoke(http, login, token).await {
        tracing::warn!(error = %e, "could not revoke a Salesforce token");
    }
}

/// A permission report as stored and shown: each missing item in words,
/// and the fields the sync wants that the connected user cannot read.
pub fn report_json(report: &PermissionReport) -> serde_json::Value {
    json!({
        "complete": report.is_complete(),
        "missing": report.missing.iter().map(|m| json!({"what": m.what, "why": m.why, "grant": m.grant})).collect::<Vec<_>>(),
        "hidden_fields": report.hidden_fields,
    })
}

/// Runs the permission check again and stores it.
pub async fn recheck(state: &AppState, ws: WorkspaceId) -> Result<serde_json::Value, ConnectError> {
    let (conn, client) = connected(state, ws).await?;
    let report = report_json(&permissions::check(&client, &conn.settings).await?);
    state
        .store
        .record_salesforce_checks(ws, Some(&report), None, state.now())
        .await?;
    Ok(report)
}

/// The workspace's connection and client.
pub async fn connected(state: &AppState, ws: WorkspaceId) -> Result<(SalesforceConnection, Client), ConnectError> {
    use perly_salesforce::orgs::OrgError;
    state
        .salesforce
        .orgs
        .connected(ws, state.now())
        .await
        .map_err(|e| match e {
            OrgError::NotConfigured => ConnectError::NotConfigured,
            OrgError::NotConnected => ConnectError::NotConnected,
            OrgError::Store(e) => ConnectError::Store(e),
            other => ConnectError::Vendor(other.to_string()),
        })
}

/// Disconnects: revokes the refresh token at the login host that issued it
/// (a broken or already revoked token is fine), then forgets the connection.
pub async fn disconnect(state: &AppState, ws: WorkspaceId) -> Result<(), ConnectError> {
    let Some(conn) = state.store.salesforce_connection(ws).await? else {
        return Err(ConnectError::NotConnected);
    };
    // A token no configured key decrypts cannot be revoked; the rest goes.
    let token = match state.store.salesforce_refresh_token(ws).await {
        Err(perly_store::Error::Undecryptable(_)) => None,
        other => other?,
    };
    // Revoked only at a login host Perly still trusts.
    let login = Url::parse(&conn.login_url)
        .ok()
        .filter(|u| state.salesforce.orgs.hosts().check_login(u).is_ok());
    if let (Some(token), Some(login)) = (token, login) {
        revoke_quietly(state.salesforce.orgs.http(), &login, &SecretString::from(token)).await;
    }
    state.store.delete_salesforce_connection(ws, state.now()).await?;
    state.salesforce.orgs.forget(ws);
    Ok(())
}
