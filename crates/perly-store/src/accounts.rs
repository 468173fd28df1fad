//! Accounts: workspaces, their users, browser sessions and API keys — the
//! [`Accounts`] part of the store, a supertrait of [`crate::Store`] so an
//! `Arc<dyn Store>` reaches it. Passwords and keys are hashed by
//! [`crate::auth`] before they get here; cookie tokens and keys are stored
//! only as SHA-256 hashes.
//!
//! Most methods are scoped to one workspace. The documented exceptions are
//! the lookups where the credential itself names the workspace (a user's
//! email at sign-in, a session's cookie token, an API key, a pending
//! choice of workspace) and the sign-in throttle, which counts failures per
//! (email, client IP), per client IP and per email whatever the workspace.
//!
//! Sessions end at the first of two limits ([`SessionPolicy`]): a fixed
//! lifetime from sign-in and an idle timeout since the last request seen.
//! A session's `last_seen_at` and an API key's `last_used_at` are written at
//! most once a minute ([`TOUCH_EVERY_SECS`]), so reads do not become writes.

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use perly_domain::ids::{ApiKeyId, UserId, WorkspaceId};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::auth::{api_key_hash, new_api_key};
use crate::db::Dialect;
use crate::model::{ApiKey, ApiScope, Role, Session, User, Workspace};
use crate::sql::{ms, params, parse, time, SqlStore};
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
    /// Users with this email in any workspace: signing in checks the
    /// password against each and, when it opens several, asks which
    /// workspace, so this is not scoped by one.
    async fn users_by_email(&self, email: &str) -> Result<Vec<User>>;
    async fn list_users(&self, ws: WorkspaceId) -> Result<Vec<User>>;
    async fn set_user_role(&self, ws: WorkspaceId, id: UserId, role: Role) -> Result<()>;
    /// Removes a user and signs them out everywhere.
    async fn remove_user(&self, ws: WorkspaceId, id: UserId) -> Result<()>;
    /// Starts a session; returns the cookie token (shown once, stored
    /// hashed). Purges expired sessions of every workspace on the way.
    /// `checked_hash` is the password hash the sign-in verified: when the
    /// password changed since, nothing is started (`Conflict`), so a
    /// sign-in racing a password change cannot outlive it.
    async fn create_session(
        &self,
        ws: WorkspaceId,
        user: UserId,
        checked_hash: &str,
        now: DateTime<Utc>,
        policy: &SessionPolicy,
    ) -> Result<String>;
    /// The live session of a cookie token (neither past its lifetime nor
    /// idle too long), noting that it was seen. The token names the workspace.
    async fn session(&self, token: &str, now: DateTime<Utc>, policy: &SessionPolicy) -> Result<Option<Session>>;
    async fn delete_session(&self, token: &str) -> Result<()>;
    /// The live sessions of a user, newest first; `current` marks the one
    /// of this cookie token.
    async fn user_sessions(
        &self,
        ws: WorkspaceId,
        user: UserId,
        current: &str,
        now: DateTime<Utc>,
        policy: &SessionPolicy,
    ) -> Result<Vec<SessionSummary>>;
    /// Ends every session of a user but the one of this cookie token, and
    /// their pending choices of workspace; returns how many sessions ended.
    async fn end_other_sessions(&self, ws: WorkspaceId, user: UserId, keep: &str) -> Result<u64>;
    /// Sets a user's password hash and, in the same transaction, ends every
    /// other session of theirs (as [`Accounts::end_other_sessions`]);
    /// returns how many sessions ended.
    async fn change_password(&self, ws: WorkspaceId, user: UserId, password_hash: &str, keep: &str) -> Result<u64>;
    /// Deletes the sessions, of every workspace, past their lifetime or idle
    /// timeout; returns how many.
    async fn purge_sessions(&self, now: DateTime<Utc>, policy: &SessionPolicy) -> Result<u64>;
    /// Creates a key; the plaintext is returned once and only its hash is kept.
    async fn create_api_key(&self, ws: WorkspaceId, new: &NewApiKey, now: DateTime<Utc>) -> Result<(ApiKey, String)>;
    async fn list_api_keys(&self, ws: WorkspaceId) -> Result<Vec<ApiKey>>;
    async fn revoke_api_key(&self, ws: WorkspaceId, id: ApiKeyId, now: DateTime<Utc>) -> Result<()>;
    /// The workspace and scope of a presented key, if the key is live (not
    /// revoked, not expired), noting that it was used. The key itself names
    /// the workspace, so this lookup is not scoped by one.
    async fn authenticate_api_key(&self, plaintext: &str, now: DateTime<Utc>) -> Result<Option<KeyAuth>>;

    // Sign-in throttling: failures counted per (email, client IP), per
    // client IP and per email, across workspaces, in the database so every
    // process shares them.
    /// Starts a sign-in attempt for `email` from `ip`. It counts as a
    /// failure from now on, unless [`Accounts::signin_succeeded`] says
    /// otherwise: so guesses sent at once are counted before their passwords
    /// are checked. Refused, and not counted, while the pair or the IP has
    /// its limit of failures within the window, or the email its own limit
    /// within its own window. Purges older failures.
    async fn start_signin(
        &self,
        email: &str,
        ip: &str,
        now: DateTime<Utc>,
        limits: &SigninLimits,
    ) -> Result<SigninAttempt>;
    /// The attempt's password was right: it no longer counts. With
    /// `clear_pair`, the earlier failures for its (email, IP) no longer
    /// count towards that pair's limit; they still count towards the
    /// per-IP and per-email limits until they age out.
    async fn signin_succeeded(&self, attempt: &str, email: &str, ip: &str, clear_pair: bool) -> Result<()>;

    // Choosing a workspace when one password opened several accounts.
    /// Keeps the accounts a password matched until `now + ttl`; returns the
    /// cookie token (stored hashed) and the CSRF token of the choice form.
    /// Purges expired choices on the way.
    /// Each account comes with the password hash the sign-in verified; when
    /// one changed since, nothing is kept (`Conflict`).
    async fn create_signin_choice(
        &self,
        users: &[(UserId, &str)],
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> Result<(String, String)>;
    /// The pending choice of a cookie token, if not expired.
    async fn signin_choice(&self, token: &str, now: DateTime<Utc>) -> Result<Option<SigninChoice>>;
    /// As [`Accounts::signin_choice`], and deletes it: a choice is used once.
    async fn take_signin_choice(&self, token: &str, now: DateTime<Utc>) -> Result<Option<SigninChoice>>;
}

/// `last_seen_at` and `last_used_at` are written when older than this, not
/// on every request.
pub const TOUCH_EVERY_SECS: i64 = 60;

/// How long sessions last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionPolicy {
    /// From sign-in, whatever happens.
    pub max_age: Duration,
    /// Without a request.
    pub idle: Duration,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        Self {
            max_age: Duration::days(7),
            idle: Duration::hours(12),
        }
    }
}

/// What [`Accounts::start_signin`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SigninAttempt {
    /// Go on and check the password; the id names the attempt.
    Allowed(String),
    /// Too many failures: refused until then.
    Locked { until: DateTime<Utc>, by: LockedBy },
}

/// Which limit refused a sign-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LockedBy {
    /// The (email, client IP) pair or the client IP: this network.
    Address,
    /// The email, whatever the address: failures spread over many
    /// addresses. Also locks the account's owner out until they age out.
    Email,
}

/// When sign-ins are refused (see [`Accounts::start_signin`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SigninLimits {
    /// Failures allowed per (email, client IP) within the window.
    pub per_email_ip: u32,
    /// Failures allowed per client IP, whatever the email, within the window.
    pub per_ip: u32,
    pub window: Duration,
    /// Failures allowed per email, whatever the client IP, within `email_window`.
    pub per_email: u32,
    pub email_window: Duration,
}

impl Default for SigninLimits {
    fn default() -> Self {
        Self {
            per_email_ip: 10,
            per_ip: 50,
            window: Duration::minutes(15),
            per_email: 100,
            email_window: Duration::hours(1),
        }
    }
}

/// A live session of a user, for the account page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSummary {
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    /// The session of the request asking.
    pub current: bool,
}

/// A key to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewApiKey {
    pub label: String,
    pub scope: ApiScope,
    pub expires_at: Option<DateTime<Utc>>,
}

impl NewApiKey {
    /// A full-access key that never expires (what `perly apikey create` makes by default).
    pub fn full(label: &str) -> Self {
        Self {
            label: label.to_owned(),
            scope: ApiScope::Full,
            expires_at: None,
        }
    }
}

/// Who a live API key acts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyAuth {
    pub workspace: WorkspaceId,
    pub key: ApiKeyId,
    pub scope: ApiScope,
}

/// A sign-in waiting for its workspace: the accounts the password matched.
#[derive(Debug, Clone, PartialEq)]
pub struct SigninChoice {
    pub csrf_token: String,
    pub expires_at: DateTime<Utc>,
    /// The accounts still present, oldest workspace first.
    pub accounts: Vec<(User, Workspace)>,
}

/// Locks the user's row while its password hash is still `checked_hash`
/// (PostgreSQL: `FOR UPDATE`, so a password change waits for this
/// transaction or this one sees the new hash; SQLite has one writer), or
/// answers `Conflict`: the password changed after it was checked.
async fn lock_unchanged_password(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    dialect: crate::db::Dialect,
    ws: WorkspaceId,
    user: UserId,
    checked_hash: &str,
) -> Result<()> {
    let sql = format!(
        "SELECT id FROM users WHERE workspace_id = $1 AND id = $2 AND password_hash = $3{}",
        dialect.for_update()
    );
    let found: Option<String> = sqlx::query_scalar(&sql)
        .bind(ws.to_string())
        .bind(user.to_string())
        .bind(checked_hash.to_owned())
        .fetch_optional(&mut **tx)
        .await?;
    match found {
        Some(_) => Ok(()),
        None => Err(Error::Conflict("the password changed while signing in".into())),
    }
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
        scope: parse("api key scope", &row.try_get::<String, _>("scope")?)?,
        expires_at: row.try_get::<Option<i64>, _>("expires_at")?.map(time),
        last_used_at: row.try_get::<Option<i64>, _>("last_used_at")?.map(time),
    })
}

const API_KEY_COLUMNS: &str = "id, label, prefix, created_at, revoked_at, scope, expires_at, last_used_at";

/// When failures matching `condition` stop refusing sign-ins, if more than
/// `limit` of them (the attempt being made is one) fall within `window`:
/// when the newest but `limit` leaves it.
async fn locked_by(
    conn: &mut sqlx::AnyConnection,
    condition: &str,
    binds: &[&str],
    limit: u32,
    now: DateTime<Utc>,
    window: Duration,
) -> Result<Option<DateTime<Utc>>> {
    let since = binds.len() + 1;
    let sql = format!(
        "SELECT failed_at FROM signin_failures WHERE {condition} AND failed_at > ${since} \
         ORDER BY failed_at DESC LIMIT 1 OFFSET ${}",
        since + 1
    );
    let mut query = sqlx::query(&sql);
    for b in binds {
        query = query.bind((*b).to_owned());
    }
    let row = query
        .bind(ms(now - window))
        .bind(i64::from(limit))
        .fetch_optional(conn)
        .await?;
    Ok(match row {
        Some(r) => Some(time(r.try_get("failed_at")?) + window),
        None => None,
    })
}

/// Deletes a user's sessions but `keep`'s, and the pending choices of
/// workspace that offer the user (made with a password that may be the old one).
async fn end_other_sessions_in(
    conn: &mut sqlx::AnyConnection,
    ws: WorkspaceId,
    user: UserId,
    keep: &str,
) -> Result<u64> {
    let done = sqlx::query("DELETE FROM sessions WHERE workspace_id = $1 AND user_id = $2 AND token_hash <> $3")
        .bind(ws.to_string())
        .bind(user.to_string())
        .bind(api_key_hash(keep))
        .execute(&mut *conn)
        .await?;
    // user_ids is a comma-separated list of UUIDs: a match is that user.
    sqlx::query("DELETE FROM signin_choices WHERE user_ids LIKE $1")
        .bind(format!("%{user}%"))
        .execute(&mut *conn)
        .await?;
    Ok(done.rows_affected())
}

impl SqlStore {
    async fn signin_choice_of(&self, token: &str, now: DateTime<Utc>, take: bool) -> Result<Option<SigninChoice>> {
        let hash = api_key_hash(token);
        let row = if take {
            sqlx::query("DELETE FROM signin_choices WHERE token_hash = $1 RETURNING user_ids, csrf_token, expires_at")
                .bind(hash)
                .fetch_optional(&self.pools.write)
                .await?
        } else {
            sqlx::query("SELECT user_ids, csrf_token, expires_at FROM signin_choices WHERE token_hash = $1")
                .bind(hash)
                .fetch_optional(&self.pools.read)
                .await?
        };
        let Some(row) = row else { return Ok(None) };
        let expires_at = time(row.try_get("expires_at")?);
        if expires_at <= now {
            return Ok(None);
        }
        let ids: Vec<String> = row
            .try_get::<String, _>("user_ids")?
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        if ids.is_empty() {
            return Ok(None);
        }
        let sql = format!(
            "SELECT u.id, u.workspace_id, u.email, u.password_hash, u.role, u.created_at, \
             w.name AS ws_name, w.slug AS ws_slug, w.created_at AS ws_created_at \
             FROM users u JOIN workspaces w ON w.id = u.workspace_id WHERE u.id IN ({}) \
             ORDER BY w.created_at, w.id",
            params(1, ids.len())
        );
        let mut query = sqlx::query(&sql);
        for id in ids {
            query = query.bind(id);
        }
        let accounts = query
            .fetch_all(&self.pools.read)
            .await?
            .iter()
            .map(|row| {
                let user = user_from(row)?;
                let workspace = Workspace {
                    id: user.workspace_id,
                    name: row.try_get("ws_name")?,
                    slug: row.try_get("ws_slug")?,
                    created_at: time(row.try_get("ws_created_at")?),
                };
                Ok((user, workspace))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(SigninChoice {
            csrf_token: row.try_get("csrf_token")?,
            expires_at,
            accounts,
        }))
    }
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

    async fn create_api_key(&self, ws: WorkspaceId, new: &NewApiKey, now: DateTime<Utc>) -> Result<(ApiKey, String)> {
        let (plaintext, prefix) = new_api_key();
        let key = ApiKey {
            id: ApiKeyId::new(),
            label: new.label.clone(),
            prefix,
            created_at: now,
            revoked_at: None,
            scope: new.scope,
            expires_at: new.expires_at,
            last_used_at: None,
        };
        sqlx::query(
            "INSERT INTO api_keys (id, workspace_id, label, prefix, key_hash, created_at, scope, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(key.id.to_string())
        .bind(ws.to_string())
        .bind(key.label.clone())
        .bind(key.prefix.clone())
        .bind(api_key_hash(&plaintext))
        .bind(ms(now))
        .bind(key.scope.as_str())
        .bind(key.expires_at.map(ms))
        .execute(&self.pools.write)
        .await?;
        Ok((key, plaintext))
    }

    async fn list_api_keys(&self, ws: WorkspaceId) -> Result<Vec<ApiKey>> {
        sqlx::query(&format!(
            "SELECT {API_KEY_COLUMNS} FROM api_keys WHERE workspace_id = $1 ORDER BY created_at DESC"
        ))
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

    async fn authenticate_api_key(&self, plaintext: &str, now: DateTime<Utc>) -> Result<Option<KeyAuth>> {
        let row = sqlx::query(
            "SELECT id, workspace_id, scope, last_used_at FROM api_keys \
             WHERE key_hash = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $2)",
        )
        .bind(api_key_hash(plaintext))
        .bind(ms(now))
        .fetch_optional(&self.pools.read)
        .await?;
        let Some(r) = row else { return Ok(None) };
        let auth = KeyAuth {
            workspace: parse("workspace id", &r.try_get::<String, _>("workspace_id")?)?,
            key: parse("api key id", &r.try_get::<String, _>("id")?)?,
            scope: parse("api key scope", &r.try_get::<String, _>("scope")?)?,
        };
        let stale = ms(now - Duration::seconds(TOUCH_EVERY_SECS));
        if r.try_get::<Option<i64>, _>("last_used_at")?.is_none_or(|t| t <= stale) {
            let touched = sqlx::query(
                "UPDATE api_keys SET last_used_at = $2 WHERE id = $1 AND (last_used_at IS NULL OR last_used_at <= $3)",
            )
            .bind(auth.key.to_string())
            .bind(ms(now))
            .bind(stale)
            .execute(&self.pools.write)
            .await;
            // The key was checked by the read; a busy writer must not refuse it.
            if let Err(e) = touched {
                tracing::warn!(key_id = %auth.key, error = %e, "could not record when an API key was used");
            }
        }
        Ok(Some(auth))
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
        checked_hash: &str,
        now: DateTime<Utc>,
        policy: &SessionPolicy,
    ) -> Result<String> {
        self.purge_sessions(now, policy).await?;
        let token = crate::auth::random_token(32);
        let mut tx = self.pools.write.begin().await?;
        lock_unchanged_password(&mut tx, self.dialect(), ws, user, checked_hash).await?;
        sqlx::query(
            "INSERT INTO sessions (token_hash, workspace_id, user_id, csrf_token, created_at, expires_at, last_seen_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $5)",
        )
        .bind(api_key_hash(&token))
        .bind(ws.to_string())
        .bind(user.to_string())
        .bind(crate::auth::random_token(32))
        .bind(ms(now))
        .bind(ms(now + policy.max_age))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(token)
    }

    async fn session(&self, token: &str, now: DateTime<Utc>, policy: &SessionPolicy) -> Result<Option<Session>> {
        let hash = api_key_hash(token);
        let row = sqlx::query(
            "SELECT s.csrf_token, s.expires_at, s.last_seen_at, u.id, u.workspace_id, u.email, u.password_hash, \
             u.role, u.created_at, w.name AS ws_name, w.slug AS ws_slug, w.created_at AS ws_created_at \
             FROM sessions s JOIN users u ON u.id = s.user_id AND u.workspace_id = s.workspace_id \
             JOIN workspaces w ON w.id = s.workspace_id \
             WHERE s.token_hash = $1 AND s.expires_at > $2 AND s.last_seen_at > $3",
        )
        .bind(hash.clone())
        .bind(ms(now))
        .bind(ms(now - policy.idle))
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
        let mut last_seen_at = time(row.try_get("last_seen_at")?);
        if last_seen_at <= now - Duration::seconds(TOUCH_EVERY_SECS) {
            let touched =
                sqlx::query("UPDATE sessions SET last_seen_at = $2 WHERE token_hash = $1 AND last_seen_at < $2")
                    .bind(hash)
                    .bind(ms(now))
                    .execute(&self.pools.write)
                    .await;
            // The session was checked by the read; a busy writer must not sign anyone out.
            match touched {
                Ok(_) => last_seen_at = now,
                Err(e) => tracing::warn!(error = %e, "could not record that a session was seen"),
            }
        }
        Ok(Some(Session {
            user,
            workspace,
            csrf_token: row.try_get("csrf_token")?,
            expires_at: time(row.try_get("expires_at")?),
            last_seen_at,
        }))
    }

    async fn delete_session(&self, token: &str) -> Result<()> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(api_key_hash(token))
            .execute(&self.pools.write)
            .await?;
        Ok(())
    }

    async fn user_sessions(
        &self,
        ws: WorkspaceId,
        user: UserId,
        current: &str,
        now: DateTime<Utc>,
        policy: &SessionPolicy,
    ) -> Result<Vec<SessionSummary>> {
        let current = api_key_hash(current);
        sqlx::query(
            "SELECT token_hash, created_at, last_seen_at FROM sessions \
             WHERE workspace_id = $1 AND user_id = $2 AND expires_at > $3 AND last_seen_at > $4 \
             ORDER BY last_seen_at DESC, created_at DESC",
        )
        .bind(ws.to_string())
        .bind(user.to_string())
        .bind(ms(now))
        .bind(ms(now - policy.idle))
        .fetch_all(&self.pools.read)
        .await?
        .iter()
        .map(|r| {
            Ok(SessionSummary {
                created_at: time(r.try_get("created_at")?),
                last_seen_at: time(r.try_get("last_seen_at")?),
                current: r.try_get::<String, _>("token_hash")? == current,
            })
        })
        .collect()
    }

    async fn end_other_sessions(&self, ws: WorkspaceId, user: UserId, keep: &str) -> Result<u64> {
        let mut tx = self.pools.write.begin().await?;
        let ended = end_other_sessions_in(&mut tx, ws, user, keep).await?;
        tx.commit().await?;
        Ok(ended)
    }

    async fn change_password(&self, ws: WorkspaceId, user: UserId, password_hash: &str, keep: &str) -> Result<u64> {
        let mut tx = self.pools.write.begin().await?;
        let done = sqlx::query("UPDATE users SET password_hash = $3 WHERE workspace_id = $1 AND id = $2")
            .bind(ws.to_string())
            .bind(user.to_string())
            .bind(password_hash.to_owned())
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(Error::NotFound);
        }
        let ended = end_other_sessions_in(&mut tx, ws, user, keep).await?;
        tx.commit().await?;
        Ok(ended)
    }

    async fn purge_sessions(&self, now: DateTime<Utc>, policy: &SessionPolicy) -> Result<u64> {
        let done = sqlx::query("DELETE FROM sessions WHERE expires_at <= $1 OR last_seen_at <= $2")
            .bind(ms(now))
            .bind(ms(now - policy.idle))
            .execute(&self.pools.write)
            .await?;
        Ok(done.rows_affected())
    }

    async fn start_signin(
        &self,
        email: &str,
        ip: &str,
        now: DateTime<Utc>,
        limits: &SigninLimits,
    ) -> Result<SigninAttempt> {
        let id = crate::auth::random_token(16);
        let mut tx = self.pools.write.begin().await?;
        if self.dialect() == Dialect::Postgres {
            // Attempts from one IP count one after the other: each must see
            // the others' rows (SQLite's one writer does this by itself).
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
                .bind(format!("perly-signin:{ip}"))
                .execute(&mut *tx)
                .await?;
            // And attempts at one email, from any IP (always taken second,
            // and in the two-key space, so no two attempts wait on each other
            // in opposite orders).
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext('perly-signin-email'), hashtext($1))")
                .bind(email.to_owned())
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("DELETE FROM signin_failures WHERE failed_at <= $1")
            .bind(ms(now - limits.window.max(limits.email_window)))
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO signin_failures (id, email, ip, failed_at) VALUES ($1, $2, $3, $4)")
            .bind(id.clone())
            .bind(email.to_owned())
            .bind(ip.to_owned())
            .bind(ms(now))
            .execute(&mut *tx)
            .await?;
        let pair = "email = $1 AND ip = $2 AND pair_cleared = 0";
        let pair = locked_by(&mut tx, pair, &[email, ip], limits.per_email_ip, now, limits.window).await?;
        let any = locked_by(&mut tx, "ip = $1", &[ip], limits.per_ip, now, limits.window).await?;
        let address = pair.max(any).map(|until| (until, LockedBy::Address));
        let per_email = locked_by(
            &mut tx,
            "email = $1",
            &[email],
            limits.per_email,
            now,
            limits.email_window,
        )
        .await?
        .map(|until| (until, LockedBy::Email));
        let attempt = match address.max(per_email) {
            Some((until, by)) => {
                // A refused attempt checks no password, so it is no failure.
                sqlx::query("DELETE FROM signin_failures WHERE id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                SigninAttempt::Locked { until, by }
            }
            None => SigninAttempt::Allowed(id),
        };
        tx.commit().await?;
        Ok(attempt)
    }

    async fn signin_succeeded(&self, attempt: &str, email: &str, ip: &str, clear_pair: bool) -> Result<()> {
        let mut tx = self.pools.write.begin().await?;
        sqlx::query("DELETE FROM signin_failures WHERE id = $1")
            .bind(attempt.to_owned())
            .execute(&mut *tx)
            .await?;
        if clear_pair {
            // Only the pair's count forgets them: the IP's and the email's do not.
            sqlx::query("UPDATE signin_failures SET pair_cleared = 1 WHERE email = $1 AND ip = $2")
                .bind(email.to_owned())
                .bind(ip.to_owned())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn create_signin_choice(
        &self,
        users: &[(UserId, &str)],
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> Result<(String, String)> {
        let token = crate::auth::random_token(32);
        let csrf = crate::auth::random_token(32);
        let ids: Vec<String> = users.iter().map(|(id, _)| id.to_string()).collect();
        let mut tx = self.pools.write.begin().await?;
        for (user, checked_hash) in users {
            let ws: Option<String> = sqlx::query_scalar("SELECT workspace_id FROM users WHERE id = $1")
                .bind(user.to_string())
                .fetch_optional(&mut *tx)
                .await?;
            let ws: WorkspaceId = parse("workspace id", &ws.ok_or(Error::NotFound)?)?;
            lock_unchanged_password(&mut tx, self.dialect(), ws, *user, checked_hash).await?;
        }
        sqlx::query("DELETE FROM signin_choices WHERE expires_at <= $1")
            .bind(ms(now))
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO signin_choices (token_hash, user_ids, csrf_token, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(api_key_hash(&token))
        .bind(ids.join(","))
        .bind(csrf.clone())
        .bind(ms(now))
        .bind(ms(now + ttl))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok((token, csrf))
    }

    async fn signin_choice(&self, token: &str, now: DateTime<Utc>) -> Result<Option<SigninChoice>> {
        self.signin_choice_of(token, now, false).await
    }

    async fn take_signin_choice(&self, token: &str, now: DateTime<Utc>) -> Result<Option<SigninChoice>> {
        self.signin_choice_of(token, now, true).await
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
