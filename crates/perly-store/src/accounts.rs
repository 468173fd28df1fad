//! Accounts: workspaces, their users, browser sessions and API keys — the
//! [`Accounts`] part of the store, a supertrait of [`crate::Store`] so an
//! `Arc<dyn Store>` reaches it. Passwords and keys are hashed by
//! [`crate::auth`] before they get here; cookie tokens and keys are stored
//! only as SHA-256 hashes.
//!
//! Most methods are scoped to one workspace. The documented exceptions are
//! the lookups where the credential itself names the workspace: a user's
//! email at sign-in, a session's cookie token and an API key.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use perly_domain::ids::{ApiKeyId, UserId, WorkspaceId};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::auth::{api_key_hash, new_api_key};
use crate::model::{ApiKey, Role, Session, User, Workspace};
use crate::sql::{ms, parse, time, SqlStore};
use crate::{Error, Result};

/// Workspaces, users, sessions and API keys.
#[async_trait]
pub trait Accounts: Send + Sync + 'static {
    async fn create_workspace(&self, name: &str, now: DateTime<Utc>) -> Result<Workspace>;
    /// Finds a workspace by id, slug or exact name.
    async fn find_workspace(&self, key: &str) -> Result<Option<Workspace>>;
    async fn list_workspaces(&self) -> Result<Vec<Workspace>>;
    async fn add_user(
        &self,
        ws: WorkspaceId,
        email: &str,
        password_hash: &str,
        role: Role,
        now: DateTime<Utc>,
    ) -> Result<User>;
    async fn find_user(&self, ws: WorkspaceId, id: UserId) -> Result<Option<User>>;
    /// Users with this email in any workspace: signing in picks the workspace
    /// by the password that matches, so this is not scoped by one.
    async fn users_by_email(&self, email: &str) -> Result<Vec<User>>;
    async fn list_users(&self, ws: WorkspaceId) -> Result<Vec<User>>;
    async fn set_user_role(&self, ws: WorkspaceId, id: UserId, role: Role) -> Result<()>;
    /// Removes a user and signs them out everywhere.
    async fn remove_user(&self, ws: WorkspaceId, id: UserId) -> Result<()>;
    /// Starts a session; returns the cookie token (shown once, stored hashed).
    async fn create_session(
        &self,
        ws: WorkspaceId,
        user: UserId,
        now: DateTime<Utc>,
        ttl: chrono::Duration,
    ) -> Result<String>;
    /// The live session of a cookie token. The token names the workspace.
    async fn session(&self, token: &str, now: DateTime<Utc>) -> Result<Option<Session>>;
    async fn delete_session(&self, token: &str) -> Result<()>;
    /// Creates a key; the plaintext is returned once and only its hash is kept.
    async fn create_api_key(&self, ws: WorkspaceId, label: &str, now: DateTime<Utc>) -> Result<(ApiKey, String)>;
    async fn list_api_keys(&self, ws: WorkspaceId) -> Result<Vec<ApiKey>>;
    async fn revoke_api_key(&self, ws: WorkspaceId, id: ApiKeyId, now: DateTime<Utc>) -> Result<()>;
    /// The workspace a presented key belongs to, if the key is live. The key
    /// itself names the workspace, so this is the one lookup not scoped by one.
    async fn authenticate_api_key(&self, plaintext: &str) -> Result<Option<(WorkspaceId, ApiKeyId)>>;
}

fn slugify(name: &str) -> String {
    let mut slug = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
    }
    let slug = slug.trim_end_matches('-').to_owned();
    if slug.is_empty() {
        "workspace".to_owned()
    } else {
        slug
    }
}

fn workspace_from(row: &AnyRow) -> Result<Workspace> {
    Ok(Workspace {
        id: parse("workspace id", &row.try_get::<String, _>("id")?)?,
        name: row.try_get("name")?,
        slug: row.try_get("slug")?,
        created_at: time(row.try_get("created_at")?),
    })
}

fn user_from(row: &AnyRow) -> Result<User> {
    Ok(User {
        id: parse("user id", &row.try_get::<String, _>("id")?)?,
        workspace_id: parse("workspace id", &row.try_get::<String, _>("workspace_id")?)?,
        email: row.try_get("email")?,
        password_hash: row.try_get("password_hash")?,
        role: parse("role", &row.try_get::<String, _>("role")?)?,
        created_at: time(row.try_get("created_at")?),
    })
}

fn api_key_from(row: &AnyRow) -> Result<ApiKey> {
    Ok(ApiKey {
        id: parse("api key id", &row.try_get::<String, _>("id")?)?,
        label: row.try_get("label")?,
        prefix: row.try_get("prefix")?,
        created_at: time(row.try_get("created_at")?),
        revoked_at: row.try_get::<Option<i64>, _>("revoked_at")?.map(time),
    })
}

#[async_trait]
impl Accounts for SqlStore {
    async fn create_workspace(&self, name: &str, now: DateTime<Utc>) -> Result<Workspace> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(Error::Invalid("workspace name must be 1 to 100 characters".into()));
        }
        let base = slugify(name);
        let mut tx = self.pools.write.begin().await?;
        let taken: Vec<String> = sqlx::query("SELECT slug FROM workspaces WHERE slug = $1 OR slug LIKE $2")
            .bind(base.clone())
            .bind(format!("{base}-%"))
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| r.try_get("slug"))
            .collect::<Result<_, _>>()?;
        let slug = (1..)
            .map(|n| if n == 1 { base.clone() } else { format!("{base}-{n}") })
            .find(|s| !taken.contains(s))
            .unwrap_or(base);
        let ws = Workspace {
            id: WorkspaceId::new(),
            name: name.to_owned(),
            slug,
            created_at: now,
        };
        sqlx::query("INSERT INTO workspaces (id, name, slug, created_at) VALUES ($1, $2, $3, $4)")
            .bind(ws.id.to_string())
            .bind(ws.name.clone())
            .bind(ws.slug.clone())
            .bind(ms(now))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(ws)
    }

    async fn find_workspace(&self, key: &str) -> Result<Option<Workspace>> {
        let row = sqlx::query(
            "SELECT id, name, slug, created_at FROM workspaces WHERE id = $1 OR slug = $1 OR name = $1 ORDER BY created_at LIMIT 1",
        )
        .bind(key.to_owned())
        .fetch_optional(&self.pools.read)
        .await?;
        row.as_ref().map(workspace_from).transpose()
    }

    async fn list_workspaces(&self) -> Result<Vec<Workspace>> {
        sqlx::query("SELECT id, name, slug, created_at FROM workspaces ORDER BY created_at")
            .fetch_all(&self.pools.read)
            .await?
            .iter()
            .map(workspace_from)
            .collect()
    }

    async fn add_user(
        &self,
        ws: WorkspaceId,
        email: &str,
        password_hash: &str,
        role: Role,
        now: DateTime<Utc>,
    ) -> Result<User> {
        let user = User {
            id: UserId::new(),
            workspace_id: ws,
            email: email.trim().to_lowercase(),
            password_hash: password_hash.to_owned(),
            role,
            created_at: now,
        };
        sqlx::query("INSERT INTO users (id, workspace_id, email, password_hash, role, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(user.id.to_string())
            .bind(ws.to_string())
            .bind(user.email.clone())
            .bind(user.password_hash.clone())
            .bind(role.as_str())
            .bind(ms(now))
            .execute(&self.pools.write)
            .await
            .map_err(|e| match Error::from(e) {
                Error::Conflict(_) => Error::Conflict(format!("a user with email {} already exists", user.email)),
                other => other,
            })?;
        Ok(user)
    }

    async fn find_user(&self, ws: WorkspaceId, id: UserId) -> Result<Option<User>> {
        let row = sqlx::query("SELECT * FROM users WHERE workspace_id = $1 AND id = $2")
            .bind(ws.to_string())
            .bind(id.to_string())
            .fetch_optional(&self.pools.read)
            .await?;
        row.as_ref().map(user_from).transpose()
    }

    async fn create_api_key(&self, ws: WorkspaceId, label: &str, now: DateTime<Utc>) -> Result<(ApiKey, String)> {
        let (plaintext, prefix) = new_api_key();
        let key = ApiKey {
            id: ApiKeyId::new(),
            label: label.to_owned(),
            prefix,
            created_at: now,
            revoked_at: None,
        };
        sqlx::query(
            "INSERT INTO api_keys (id, workspace_id, label, prefix, key_hash, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(key.id.to_string())
        .bind(ws.to_string())
        .bind(key.label.clone())
        .bind(key.prefix.clone())
        .bind(api_key_hash(&plaintext))
        .bind(ms(now))
        .execute(&self.pools.write)
        .await?;
        Ok((key, plaintext))
    }

    async fn list_api_keys(&self, ws: WorkspaceId) -> Result<Vec<ApiKey>> {
        sqlx::query("SELECT * FROM api_keys WHERE workspace_id = $1 ORDER BY created_at DESC")
            .bind(ws.to_string())
            .fetch_all(&self.pools.read)
            .await?
            .iter()
            .map(api_key_from)
            .collect()
    }

    async fn revoke_api_key(&self, ws: WorkspaceId, id: ApiKeyId, now: DateTime<Utc>) -> Result<()> {
        let done = sqlx::query(
            "UPDATE api_keys SET revoked_at = $3 WHERE workspace_id = $1 AND id = $2 AND revoked_at IS NULL",
        )
        .bind(ws.to_string())
        .bind(id.to_string())
        .bind(ms(now))
        .execute(&self.pools.write)
        .await?;
        if done.rows_affected() == 0 {
            return Err(Error::NotFound);
        }
        Ok(())
    }

    async fn authenticate_api_key(&self, plaintext: &str) -> Result<Option<(WorkspaceId, ApiKeyId)>> {
        let row = sqlx::query("SELECT id, workspace_id FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL")
            .bind(api_key_hash(plaintext))
            .fetch_optional(&self.pools.read)
            .await?;
        match row {
            None => Ok(None),
            Some(r) => Ok(Some((
                parse("workspace id", &r.try_get::<String, _>("workspace_id")?)?,
                parse("api key id", &r.try_get::<String, _>("id")?)?,
            ))),
        }
    }
    async fn users_by_email(&self, email: &str) -> Result<Vec<User>> {
        sqlx::query("SELECT * FROM users WHERE email = $1 ORDER BY created_at")
            .bind(email.trim().to_lowercase())
            .fetch_all(&self.pools.read)
            .await?
            .iter()
            .map(user_from)
            .collect()
    }

    async fn list_users(&self, ws: WorkspaceId) -> Result<Vec<User>> {
        sqlx::query("SELECT * FROM users WHERE workspace_id = $1 ORDER BY email")
            .bind(ws.to_string())
            .fetch_all(&self.pools.read)
            .await?
            .iter()
            .map(user_from)
            .collect()
    }

    async fn set_user_role(&self, ws: WorkspaceId, id: UserId, role: Role) -> Result<()> {
        let done = sqlx::query("UPDATE users SET role = $3 WHERE workspace_id = $1 AND id = $2")
            .bind(ws.to_string())
            .bind(id.to_string())
            .bind(role.as_str())
            .execute(&self.pools.write)
            .await?;
        if done.rows_affected() == 0 {
            return Err(Error::NotFound);
        }
        Ok(())
    }

    async fn remove_user(&self, ws: WorkspaceId, id: UserId) -> Result<()> {
        let mut tx = self.pools.write.begin().await?;
        sqlx::query("DELETE FROM sessions WHERE workspace_id = $1 AND user_id = $2")
            .bind(ws.to_string())
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        let done = sqlx::query("DELETE FROM users WHERE workspace_id = $1 AND id = $2")
            .bind(ws.to_string())
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(Error::NotFound);
        }
        tx.commit().await?;
        Ok(())
    }

    async fn create_session(
        &self,
        ws: WorkspaceId,
        user: UserId,
        now: DateTime<Utc>,
        ttl: chrono::Duration,
    ) -> Result<String> {
        let token = crate::auth::random_token(32);
        sqlx::query(
            "INSERT INTO sessions (token_hash, workspace_id, user_id, csrf_token, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(api_key_hash(&token))
        .bind(ws.to_string())
        .bind(user.to_string())
        .bind(crate::auth::random_token(32))
        .bind(ms(now))
        .bind(ms(now + ttl))
        .execute(&self.pools.write)
        .await?;
        Ok(token)
    }

    async fn session(&self, token: &str, now: DateTime<Utc>) -> Result<Option<Session>> {
        let row = sqlx::query(
            "SELECT s.csrf_token, s.expires_at, u.id, u.workspace_id, u.email, u.password_hash, u.role, u.created_at, \
             w.name AS ws_name, w.slug AS ws_slug, w.created_at AS ws_created_at \
             FROM sessions s JOIN users u ON u.id = s.user_id AND u.workspace_id = s.workspace_id \
             JOIN workspaces w ON w.id = s.workspace_id WHERE s.token_hash = $1 AND s.expires_at > $2",
        )
        .bind(api_key_hash(token))
        .bind(ms(now))
        .fetch_optional(&self.pools.read)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let user = user_from(&row)?;
        let workspace = Workspace {
            id: user.workspace_id,
            name: row.try_get("ws_name")?,
            slug: row.try_get("ws_slug")?,
            created_at: time(row.try_get("ws_created_at")?),
        };
        Ok(Some(Session {
            user,
            workspace,
            csrf_token: row.try_get("csrf_token")?,
            expires_at: time(row.try_get("expires_at")?),
        }))
    }

    async fn delete_session(&self, token: &str) -> Result<()> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(api_key_hash(token))
            .execute(&self.pools.write)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_url_safe() {
        assert_eq!(slugify("Acme Corp!"), "acme-corp");
        assert_eq!(slugify("***"), "workspace");
    }
}
