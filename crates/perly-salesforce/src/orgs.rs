//! Connected orgs: one [`Client`] per workspace, built from the stored
//! connection and its decrypted refresh token, kept while the connection
//! stays the same so its access token is reused across calls. The stored
//! login and instance hosts are checked against [`crate::hosts`] before a
//! client is made: a row naming any other host is [`OrgError::Corrupt`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};
use perly_domain::ids::WorkspaceId;
use perly_net::Outbound;
use perly_store::{SalesforceConnection, Store};
use secrecy::SecretString;
use url::Url;

use crate::client::{Client, Connection};
use crate::hosts::{check_instance, LoginHosts};
use crate::limits::Budget;
use crate::oauth::OAuthApp;

/// Why there is no client for a workspace.
#[derive(Debug, thiserror::Error)]
pub enum OrgError {
    #[error("Salesforce is not configured on this server (PERLY_SALESFORCE__CLIENT_ID and __CLIENT_SECRET)")]
    NotConfigured,
    #[error("Salesforce is not connected")]
    NotConnected,
    #[error("the Salesforce connection is broken: {0}")]
    Broken(String),
    #[error("the stored Salesforce connection is unusable: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Store(#[from] perly_store::Error),
}

/// What settings say when Salesforce refused Perly's refresh token.
pub fn broken_reason(refusal: &str) -> String {
    format!("Salesforce refused Perly's refresh token ({refusal}); reconnect Salesforce")
}

/// Saves the org's API use as `client` last read it from `Sforce-Limit-Info`
/// (shown in settings; the budget reads it back). Nothing when no answer
/// carried the header yet.
pub async fn record_usage(
    store: &dyn Store,
    ws: WorkspaceId,
    client: &Client,
    now: DateTime<Utc>,
) -> perly_store::Result<()> {
    match client.usage() {
        Some(u) => {
            store
                .record_salesforce_usage(ws, Some((u.used, u.max)), None, now)
                .await
        }
        None => Ok(()),
    }
}

/// The OAuth app, login hosts and HTTP client every org shares, and the
/// clients made so far.
pub struct Orgs {
    store: Arc<dyn Store>,
    http: Outbound,
    app: Option<OAuthApp>,
    hosts: LoginHosts,
    clients: Mutex<HashMap<WorkspaceId, (DateTime<Utc>, Client)>>,
}

impl Orgs {
    /// `app` is `None` when no client id and secret are configured.
    pub fn new(store: Arc<dyn Store>, http: Outbound, app: Option<OAuthApp>, hosts: LoginHosts) -> Self {
        Self {
            store,
            http,
            app,
            hosts,
            clients: Mutex::new(HashMap::new()),
        }
    }

    pub fn app(&self) -> Option<&OAuthApp> {
        self.app.as_ref()
    }

    pub fn http(&self) -> &Outbound {
        &self.http
    }

    /// The configured login hosts.
    pub fn hosts(&self) -> &LoginHosts {
        &self.hosts
    }

    /// A stored connection's login and instance URLs, once they pass
    /// [`crate::hosts`].
    pub fn checked_urls(&self, conn: &SalesforceConnection) -> Result<(Url, Url), OrgError> {
        let url = |s: &str| Url::parse(s).map_err(|e| OrgError::Corrupt(format!("{s}: {e}")));
        let login = url(&conn.login_url)?;
        let instance = url(&conn.instance_url)?;
        self.hosts
            .check_login(&login)
            .and_then(|()| check_instance(&instance, &login))
            .map_err(|e| OrgError::Corrupt(format!("{e}; reconnect Salesforce")))?;
        Ok((login, instance))
    }

    /// The client for `conn` (the workspace's stored connection). A refresh
    /// token no configured key decrypts marks the connection broken (at
    /// `now`) with the reason, instead of failing every call after it.
    pub async fn client(
        &self,
        ws: WorkspaceId,
        conn: &SalesforceConnection,
        now: DateTime<Utc>,
    ) -> Result<Client, OrgError> {
        let app = self.app.clone().ok_or(OrgError::NotConfigured)?;
        if let Some(reason) = &conn.broken_reason {
            return Err(OrgError::Broken(reason.clone()));
        }
        if let Some((at, client)) = self.clients.lock().unwrap_or_else(PoisonError::into_inner).get(&ws) {
            if *at == conn.connected_at {
                return Ok(client.clone());
            }
        }
        let token = match self.store.salesforce_refresh_token(ws).await {
            Ok(Some(token)) => token,
            Ok(None) => return Err(OrgError::NotConnected),
            Err(perly_store::Error::Undecryptable(_)) => {
                let reason = perly_store::secrets::UNDECRYPTABLE_REFRESH_TOKEN;
                tracing::warn!(workspace_id = %ws, "salesforce refresh token could not be decrypted; connection marked broken");
                self.store.mark_salesforce_broken(ws, reason, now).await?;
                return Err(OrgError::Broken(reason.to_owned()));
            }
            Err(e) => return Err(e.into()),
        };
        let (login_url, instance_url) = self.checked_urls(conn)?;
        let connection = Connection {
            login_url,
            instance_url,
            refresh_token: SecretString::from(token),
        };
        let budget = Budget::new(f64::from(conn.settings.api_share_percent) / 100.0);
        let client = Client::new(self.http.clone(), app, connection, budget);
        self.remember(ws, conn.connected_at, client.clone());
        Ok(client)
    }

    /// Keeps `client` (e.g. seeded with the access token of a code
    /// exchange) for the connection made at `connected_at`.
    pub fn remember(&self, ws: WorkspaceId, connected_at: DateTime<Utc>, client: Client) {
        self.clients
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(ws, (connected_at, client));
    }

    /// Drops the workspace's client (disconnected or broken).
    pub fn forget(&self, ws: WorkspaceId) {
        self.clients.lock().unwrap_or_else(PoisonError::into_inner).remove(&ws);
    }

    /// The workspace's connection and its client, or why there is none.
    pub async fn connected(
        &self,
        ws: WorkspaceId,
        now: DateTime<Utc>,
    ) -> Result<(SalesforceConnection, Client), OrgError> {
        let conn = self
            .store
            .salesforce_connection(ws)
            .await?
            .ok_or(OrgError::NotConnected)?;
        let client = self.client(ws, &conn, now).await?;
        Ok((conn, client))
    }
}
