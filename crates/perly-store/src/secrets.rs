//! Secrets at rest: the generic `secrets` table (the Salesforce refresh
//! token lives there) and the rotation of every sealed value in the store.
//!
//! Three places hold values sealed with the store's [`SecretCipher`]:
//! `channels.webhook` (bound to workspace and channel id), `secrets.ciphertext`
//! (bound to workspace and name) and `oauth_states.data` (bound to workspace
//! and state hash, base64 text). [`Secrets::rotate_secrets`] walks them for
//! one workspace in keyset pages of `batch` rows: each value is opened with
//! any key of the ring and, unless already sealed under the current key,
//! sealed again and written back only if nobody changed it meanwhile (a
//! compare-and-swap on the old bytes, so a running server's writes win).
//! A value no key opens is reported and left as it is.
//!
//! A value that cannot be opened where it is used marks its owner broken
//! with a reason from this module ([`UNDECRYPTABLE_WEBHOOK`],
//! [`UNDECRYPTABLE_REFRESH_TOKEN`]); rotation clears exactly those reasons
//! once the value opens again (the old key was added back), so such an
//! owner needs no reconnect.
//!
//! [`SecretCipher`]: crate::cipher::SecretCipher

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use perly_domain::ids::WorkspaceId;
use sqlx::Row;

use crate::sql::{corrupt, ms, secret_context, SqlStore};
use crate::{Error, Result};

/// A channel's broken reason when its webhook cannot be decrypted.
pub const UNDECRYPTABLE_WEBHOOK: &str = "webhook could not be decrypted: the secret key changed; reconnect the \
     channel, or add the old key to PERLY_PREVIOUS_SECRET_KEYS and run `perly secrets rotate`";

/// The Salesforce connection's broken reason when its refresh token cannot be decrypted.
pub const UNDECRYPTABLE_REFRESH_TOKEN: &str = "the Salesforce refresh token could not be decrypted: the secret key \
     changed; reconnect Salesforce, or add the old key to PERLY_PREVIOUS_SECRET_KEYS and run `perly secrets rotate`";

/// The name of the Salesforce refresh token in the `secrets` table.
pub(crate) const REFRESH_TOKEN: &str = "salesforce/refresh_token";

/// What a rotation pass over one workspace did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rotation {
    /// Sealed again under the current key.
    pub rotated: u64,
    /// Already under the current key.
    pub current: u64,
    /// Changed by someone else between reading and writing; left to them
    /// (a second run picks it up if it still needs it).
    pub raced: u64,
    /// Channels and Salesforce connections broken for an undecryptable
    /// value whose value opens now: the broken mark was cleared.
    pub repaired: u64,
    /// Values no configured key opens: kept as they are.
    pub undecryptable: Vec<SealedValue>,
}

/// Where a sealed value lives (never what it holds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedValue {
    /// `channel webhook`, `secret` or `oauth state`.
    pub kind: &'static str,
    /// The channel id, the secret's name or the state's hash.
    pub id: String,
}

/// Secrets at rest, as the rest of Perly uses them.
#[async_trait]
pub trait Secrets: Send + Sync {
    /// Seals `plaintext` under the current key and stores it by name.
    async fn put_secret(&self, ws: WorkspaceId, name: &str, plaintext: &str, now: DateTime<Utc>) -> Result<()>;
    /// The named secret; [`Error::Undecryptable`] when no configured key opens it.
    async fn get_secret(&self, ws: WorkspaceId, name: &str) -> Result<Option<String>>;
    /// Seals every value of the workspace under the current key, `batch`
    /// rows per transaction. `now` decides which OAuth states are still live
    /// (used or expired ones are never opened again, so they are left alone).
    async fn rotate_secrets(&self, ws: WorkspaceId, batch: usize, now: DateTime<Utc>) -> Result<Rotation>;
}

/// The three places that hold sealed values.
#[derive(Clone, Copy)]
enum Place {
    Webhooks,
    Table,
    OAuthStates,
}

impl Place {
    fn kind(self) -> &'static str {
        match self {
            Self::Webhooks => "channel webhook",
            Self::Table => "secret",
            Self::OAuthStates => "oauth state",
        }
    }

    /// (table, key column, value column): a value column of text holds base64.
    fn columns(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Self::Webhooks => ("channels", "id", "webhook"),
            Self::Table => ("secrets", "name", "ciphertext"),
            Self::OAuthStates => ("oauth_states", "state_hash", "data"),
        }
    }

    fn context(self, ws: WorkspaceId, key: &str) -> String {
        match self {
            Self::Webhooks => crate::channels::webhook_context(ws, key),
            Self::Table => secret_context(ws, key),
            Self::OAuthStates => crate::channels::state_context(ws, key),
        }
    }
}

/// A stored value as read: bytes, or base64 text.
#[derive(Clone)]
enum Stored {
    Bytes(Vec<u8>),
    Text(String),
}

impl Stored {
    fn sealed(&self) -> Result<Vec<u8>> {
        use base64::Engine;
        match self {
            Self::Bytes(b) => Ok(b.clone()),
            Self::Text(t) => base64::engine::general_purpose::STANDARD
                .decode(t)
                .map_err(|e| corrupt("oauth state", e)),
        }
    }
}

struct Rewrite {
    key: String,
    old: Stored,
    new: Option<Vec<u8>>,
}

impl SqlStore {
    async fn rotate_place(
        &self,
        ws: WorkspaceId,
        place: Place,
        batch: usize,
        now: DateTime<Utc>,
        out: &mut Rotation,
    ) -> Result<()> {
        let (table, key_col, value_col) = place.columns();
        let live = match place {
            Place::OAuthStates => " AND used_at IS NULL AND expires_at > $4",
            _ => "",
        };
        let select = format!(
            "SELECT {key_col} AS k, {value_col} AS v FROM {table} \
             WHERE workspace_id = $1 AND {key_col} > $2{live} ORDER BY {key_col} LIMIT $3"
        );
        let mut after = String::new();
        loop {
            let mut q = sqlx::query(&select)
                .bind(ws.to_string())
                .bind(after.clone())
                .bind(batch.clamp(1, 10_000) as i64);
            if let Place::OAuthStates = place {
                q = q.bind(ms(now));
            }
            let rows = q.fetch_all(&self.pools.read).await?;
            let Some(last) = rows.last() else { break };
            after = last.try_get("k")?;
            let mut rewrites = Vec::new();
            for r in &rows {
                let key: String = r.try_get("k")?;
                let old = match place {
                    Place::OAuthStates => Stored::Text(r.try_get("v")?),
                    _ => Stored::Bytes(r.try_get("v")?),
                };
                let opened = old
                    .sealed()
                    .ok()
                    .and_then(|sealed| self.cipher.open(&place.context(ws, &key), &sealed).ok());
                match opened {
                    None => out.undecryptable.push(SealedValue {
                        kind: place.kind(),
                        id: key,
                    }),
                    Some(o) if o.current => {
                        out.current += 1;
                        rewrites.push(Rewrite { key, old, new: None });
                    }
                    Some(o) => {
                        let new = self.cipher.encrypt(&place.context(ws, &key), &o.plaintext);
                        rewrites.push(Rewrite {
                            key,
                            old,
                            new: Some(new),
                        });
                    }
                }
            }
            self.write_rotated(ws, place, &rewrites, out).await?;
        }
        Ok(())
    }

    /// Writes one batch in one transaction: each new value only over the
    /// value it was made from; and clears broken marks whose value opens.
    async fn write_rotated(
        &self,
        ws: WorkspaceId,
        place: Place,
        rewrites: &[Rewrite],
        out: &mut Rotation,
    ) -> Result<()> {
        let (table, key_col, value_col) = place.columns();
        let update = format!(
            "UPDATE {table} SET {value_col} = $3 WHERE workspace_id = $1 AND {key_col} = $2 AND {value_col} = $4"
        );
        let mut tx = self.pools.write.begin().await?;
        for w in rewrites {
            if let Some(new) = &w.new {
                let q = sqlx::query(&update).bind(ws.to_string()).bind(w.key.clone());
                let q = match &w.old {
                    Stored::Bytes(old) => q.bind(new.clone()).bind(old.clone()),
                    Stored::Text(old) => {
                        use base64::Engine;
                        q.bind(base64::engine::general_purpose::STANDARD.encode(new))
                            .bind(old.clone())
                    }
                };
                if q.execute(&mut *tx).await?.rows_affected() == 1 {
                    out.rotated += 1;
                } else {
                    out.raced += 1;
                    continue;
                }
            }
            let ws_s = ws.to_string();
            let repair = match place {
                Place::Webhooks => Some(
                    sqlx::query(
                        "UPDATE channels SET broken_reason = NULL, broken_at = NULL, next_attempt_at = 0 \
                         WHERE workspace_id = $1 AND id = $2 AND broken_reason = $3",
                    )
                    .bind(ws_s)
                    .bind(w.key.clone())
                    .bind(UNDECRYPTABLE_WEBHOOK),
                ),
                Place::Table if w.key == REFRESH_TOKEN => Some(
                    sqlx::query(
                        "UPDATE salesforce_connections SET broken_reason = NULL, broken_at = NULL \
                         WHERE workspace_id = $1 AND broken_reason = $2",
                    )
                    .bind(ws_s)
                    .bind(UNDECRYPTABLE_REFRESH_TOKEN),
                ),
                _ => None,
            };
            if let Some(q) = repair {
                out.repaired += q.execute(&mut *tx).await?.rows_affected();
            }
        }
        tx.commit().await?;
        Ok(())
    }
}

#[async_trait]
impl Secrets for SqlStore {
    async fn put_secret(&self, ws: WorkspaceId, name: &str, plaintext: &str, now: DateTime<Utc>) -> Result<()> {
        let sealed = self.cipher.encrypt(&secret_context(ws, name), plaintext);
        sqlx::query(
            "INSERT INTO secrets (workspace_id, name, ciphertext, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (workspace_id, name) DO UPDATE SET ciphertext = excluded.ciphertext, updated_at = excluded.updated_at",
        )
        .bind(ws.to_string())
        .bind(name.to_owned())
        .bind(sealed)
        .bind(ms(now))
        .execute(&self.pools.write)
        .await?;
        Ok(())
    }

    async fn get_secret(&self, ws: WorkspaceId, name: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT ciphertext FROM secrets WHERE workspace_id = $1 AND name = $2")
            .bind(ws.to_string())
            .bind(name.to_owned())
            .fetch_optional(&self.pools.read)
            .await?;
        match row {
            None => Ok(None),
            Some(r) => {
                let data: Vec<u8> = r.try_get("ciphertext")?;
                self.cipher
                    .decrypt(&secret_context(ws, name), &data)
                    .map(Some)
                    .map_err(|_| Error::Undecryptable(format!("secret {name}")))
            }
        }
    }

    async fn rotate_secrets(&self, ws: WorkspaceId, batch: usize, now: DateTime<Utc>) -> Result<Rotation> {
        let mut out = Rotation::default();
        for place in [Place::Webhooks, Place::Table, Place::OAuthStates] {
            self.rotate_place(ws, place, batch, now, &mut out).await?;
        }
        Ok(out)
    }
}
