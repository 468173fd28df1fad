//! The command line: `serve`, `migrate [--status]`, `backup`, `demo`, `config print`,
//! `workspace create`, `user add`, `apikey create`, `secrets generate`,
//! `secrets rotate`, `bench` and the hidden `standin`. Wrong arguments get clap's short message and exit code 2;
//! failures print `error: …` and exit 1.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use chrono::Utc;
use clap::{Parser, Subcommand};
use perly_store::auth::{hash_password, random_token};
use perly_store::cipher::{Keyring, KeyringError, SecretCipher, SecretKey};
use perly_store::model::ApiScope;
use perly_store::{NewApiKey, Role, Store};
use perly_web::SystemClock;
use secrecy::ExposeSecret;

use crate::config::Settings;

#[derive(Debug, Parser)]
#[command(name = "perly", version, about = "Customer health scores, churn risk and alerts")]
pub struct Cli {
    /// TOML configuration file (environment variables PERLY_… override it).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server and its workers.
    Serve,
    /// Apply database migrations and exit.
    Migrate {
        /// List applied and pending migrations instead (changes nothing);
        /// exit 1 when Perly would refuse to migrate the database.
        #[arg(long)]
        status: bool,
    },
    /// Copy a live SQLite database to FILE, consistently (PostgreSQL: use pg_dump).
    Backup {
        /// Where the copy goes; refused when it exists, unless --force.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Replace FILE if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Run a demo on SQLite with a seeded workspace and live events.
    Demo(crate::demo::DemoArgs),
    /// Configuration commands.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Workspace administration.
    Workspace {
        #[command(subcommand)]
        command: WorkspaceCommand,
    },
    /// User administration.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// API key administration.
    Apikey {
        #[command(subcommand)]
        command: ApikeyCommand,
    },
    /// The secret key that encrypts secrets at rest.
    Secrets {
        #[command(subcommand)]
        command: SecretsCommand,
    },
    /// Benchmarks (figures go in BENCHMARKS.md).
    Bench(crate::bench::BenchArgs),
    /// A vendor stand-in on its own (for benchmarks and peer comparisons).
    Standin(crate::standin::StandinArgs),
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration (secrets redacted).
    Print,
}

#[derive(Debug, Subcommand)]
pub enum WorkspaceCommand {
    /// Create a workspace.
    Create { name: String },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user; the password is read from stdin, or generated and printed.
    Add {
        #[arg(long)]
        workspace: String,
        #[arg(long)]
        email: String,
        #[arg(long, value_parser = ["admin", "member"])]
        role: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ApikeyCommand {
    /// Create an API key for a workspace; it is printed once.
    Create {
        #[arg(long)]
        workspace: String,
        #[arg(long, default_value = "cli")]
        label: String,
        /// `full`: the whole API; `ingest`: only POST /api/v1/customers and POST /api/v1/events.
        #[arg(long, default_value = "full", value_parser = ["full", "ingest"])]
        scope: String,
        /// The key stops working this many days from now.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=3650), conflicts_with = "expires_at")]
        expires_in_days: Option<u32>,
        /// The key stops working at this time (RFC 3339, or a date: midnight UTC).
        #[arg(long, value_name = "TIME")]
        expires_at: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Print a new random key for PERLY_SECRET_KEY (64 hex characters).
    Generate,
    /// Re-encrypt every secret in the database under PERLY_SECRET_KEY.
    ///
    /// Values sealed with a key in PERLY_PREVIOUS_SECRET_KEYS (or by an
    /// older Perly) are sealed again with the current key, workspace by
    /// workspace. Values no configured key opens are listed and kept; the
    /// command then exits with 1.
    Rotate {
        /// Rows re-encrypted per transaction.
        #[arg(long, default_value_t = 500)]
        batch: usize,
    },
}

const MAKE_A_KEY: &str = "It must be 32 random bytes written as 64 hex characters or as base64; make one with \
     `perly secrets generate` (or `openssl rand -hex 32`)";

/// `--expires-at`: an RFC 3339 time or a `YYYY-MM-DD` date (midnight UTC).
fn parse_expiry(s: &str) -> anyhow::Result<chrono::DateTime<Utc>> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| anyhow!("--expires-at `{s}` is not a date (2027-01-31) or an RFC 3339 time"))
}

/// The cipher for secrets at rest: the keyring of `secret_key` and
/// `previous_secret_keys`. A configured key that is not valid is refused
/// whatever the command; `serve` and `secrets rotate` require one, other
/// administrative commands never read or write secrets and get a random key.
pub fn cipher(settings: &Settings, required: bool) -> anyhow::Result<SecretCipher> {
    let Some(key) = &settings.secret_key else {
        if required {
            bail!("PERLY_SECRET_KEY is not set: it encrypts secrets at rest. {MAKE_A_KEY}, then `export PERLY_SECRET_KEY=…` or put secret_key in the config file");
        }
        return Ok(SecretCipher::new(Keyring::single(&SecretKey::generate())));
    };
    let ring = Keyring::new(key, &settings.previous_secret_keys).map_err(|e| match e {
        KeyringError::Current(why) => anyhow!(
            "PERLY_SECRET_KEY (secret_key) is not a valid secret key: {why}. {MAKE_A_KEY}. \
             Upgrading from a Perly that took any text as the key? Keep the old value in PERLY_PREVIOUS_SECRET_KEYS \
             (it still decrypts what it encrypted), set the new key as PERLY_SECRET_KEY and run `perly secrets rotate` \
             (README, \"Rotating the secret key\")"
        ),
        KeyringError::EmptyPrevious(n) => {
            anyhow!("PERLY_PREVIOUS_SECRET_KEYS (previous_secret_keys): key number {n} is empty")
        }
    })?;
    if ring.legacy_only() > 0 {
        tracing::warn!(
            count = ring.legacy_only(),
            "PERLY_PREVIOUS_SECRET_KEYS holds values that are not valid keys: they only decrypt what an older Perly encrypted; run `perly secrets rotate`, then remove them"
        );
    }
    Ok(SecretCipher::new(ring))
}

/// `perly migrate --status`: one line per migration; fails when Perly
/// would refuse to migrate the database.
async fn migrate_status(url: &str) -> anyhow::Result<()> {
    use perly_store::migrations::MigrationState;
    let db = crate::server::redact_url(url);
    let status = perly_store::migrations::status(url)
        .await
        .with_context(|| format!("cannot read the migrations of {db}"))?;
    println!("database {db}");
    if !status.database_exists {
        println!("(no database there yet: `perly migrate` or `perly serve` creates it)");
    }
    println!("{:<16}{:<30}state", "version", "description");
    for m in &status.migrations {
        let state = match &m.state {
            MigrationState::Applied => format!("applied {}", m.installed_on.as_deref().unwrap_or_default()),
            MigrationState::Pending => "pending".to_owned(),
            MigrationState::EarlierEdit { commit, until } => format!(
                "applied, checksum mismatch: applied from an earlier edit of the file (as of {commit}..{until}); \
                 brought forward when Perly next migrates"
            ),
            MigrationState::ChecksumMismatch { stored } => format!(
                "applied, checksum mismatch: recorded checksum {stored}… is not this file's, nor an earlier edit's"
            ),
            MigrationState::Failed => "failed (recorded as unsuccessful)".to_owned(),
            MigrationState::NotInThisBuild => {
                "applied, not in this build (a newer Perly migrated this database)".to_owned()
            }
        };
        println!("{:<16}{:<30}{}", m.version, m.description, state.trim_end());
    }
    let count = |f: fn(&MigrationState) -> bool| status.migrations.iter().filter(|m| f(&m.state)).count();
    println!(
        "{} applied, {} pending, {} to bring forward",
        count(|s| matches!(s, MigrationState::Applied)),
        count(|s| matches!(s, MigrationState::Pending)),
        count(|s| matches!(s, MigrationState::EarlierEdit { .. }))
    );
    if let Some(m) = status.refusal() {
        bail!(
            "Perly would refuse to migrate this database: migration {} ({}) is {}",
            m.version,
            m.description,
            match m.state {
                MigrationState::Failed => "recorded as failed",
                MigrationState::NotInThisBuild => "not in this build",
                _ => "applied from a text of its file this build does not know",
            }
        );
    }
    Ok(())
}

/// Re-encrypts the secrets of every workspace under the current key, in
/// batches: what `perly secrets rotate` and the demo run.
pub async fn rotate_all(
    store: &Arc<dyn Store>,
    batch: usize,
) -> anyhow::Result<Vec<(perly_store::Workspace, perly_store::Rotation)>> {
    let mut out = Vec::new();
    for ws in store.list_workspaces().await? {
        let r = store.rotate_secrets(ws.id, batch, Utc::now()).await?;
        out.push((ws, r));
    }
    Ok(out)
}

/// `perly secrets rotate`: prints what it did per workspace, and fails
/// (after finishing) when some value could not be decrypted.
async fn rotate(store: &Arc<dyn Store>, key_id: impl std::fmt::Display, batch: usize) -> anyhow::Result<()> {
    let mut total = perly_store::Rotation::default();
    for (ws, r) in rotate_all(store, batch).await? {
        println!(
            "{} ({}): {} re-encrypted, {} already current, {} repaired, {} could not be decrypted{}",
            ws.name,
            ws.slug,
            r.rotated,
            r.current,
            r.repaired,
            r.undecryptable.len(),
            if r.raced > 0 {
                format!(", {} changed meanwhile (run again)", r.raced)
            } else {
                String::new()
            }
        );
        for v in &r.undecryptable {
            println!("  cannot decrypt {} {} (kept as it is)", v.kind, v.id);
        }
        total.rotated += r.rotated;
        total.current += r.current;
        total.repaired += r.repaired;
        total.raced += r.raced;
        total.undecryptable.extend(r.undecryptable);
    }
    println!(
        "total: {} re-encrypted, {} already current, {} repaired; everything readable is now sealed with key {key_id}",
        total.rotated, total.current, total.repaired
    );
    if !total.undecryptable.is_empty() {
        bail!(
            "{} stored values could not be decrypted with any configured key and were kept as they are: add the key that encrypted them to PERLY_PREVIOUS_SECRET_KEYS and run `perly secrets rotate` again, or reconnect those channels and Salesforce",
            total.undecryptable.len()
        );
    }
    Ok(())
}

async fn workspace_of(store: &Arc<dyn Store>, key: &str) -> anyhow::Result<perly_store::Workspace> {
    store
        .find_workspace(key)
        .await?
        .ok_or_else(|| anyhow!("no workspace named `{key}` (give its name, slug or id)"))
}

fn read_password() -> anyhow::Result<Option<String>> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return Ok(None);
    }
    let mut buf = String::new();
    stdin
        .lock()
        .read_to_string(&mut buf)
        .context("cannot read the password from stdin")?;
    let pw = buf.lines().next().unwrap_or_default().trim().to_owned();
    if pw.is_empty() {
        return Ok(None);
    }
    if let Err(weak) = perly_store::auth::check_new_password(&pw) {
        bail!("the password is refused: {weak}");
    }
    Ok(Some(pw))
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = Settings::load(cli.config.as_deref()).map_err(|e| anyhow!("configuration: {e}"))?;
    match cli.command {
        Command::Config {
            command: ConfigCommand::Print,
        } => {
            print!("{}", settings.to_redacted_toml());
            Ok(())
        }
        Command::Serve => {
            crate::telemetry::init(&settings.log, settings.log_format);
            let store = crate::server::open_store(&settings, cipher(&settings, true)?).await?;
            let running = crate::server::start(&settings, store, Arc::new(SystemClock)).await?;
            tracing::info!(addr = %running.addr, backend = running.state.store.backend(), "perly is listening");
            tokio::signal::ctrl_c().await.ok();
            running.stop().await;
            Ok(())
        }
        Command::Migrate { status: true } => {
            // A configured key that is not valid is refused by every command.
            cipher(&settings, false)?;
            migrate_status(&settings.database_url).await
        }
        Command::Migrate { status: false } => {
            cipher(&settings, false)?;
            let db = crate::server::redact_url(&settings.database_url);
            let pools = perly_store::db::open(&settings.database_url)
                .await
                .with_context(|| format!("cannot open database {db}"))?;
            let run = perly_store::db::migrate(&pools)
                .await
                .with_context(|| format!("cannot migrate database {db}"))?;
            for b in &run.brought_forward {
                println!(
                    "brought forward {} {}: it had been applied from the file as of {}",
                    b.version, b.description, b.from_commit
                );
            }
            for (version, description) in &run.applied {
                println!("applied {version} {description}");
            }
            println!("migrations applied to {db}");
            Ok(())
        }
        Command::Backup { file, force } => {
            cipher(&settings, false)?;
            let db = crate::server::redact_url(&settings.database_url);
            let b = perly_store::backup::backup_sqlite(&settings.database_url, &file, force)
                .await
                .with_context(|| format!("cannot back up {db}"))?;
            println!(
                "backed up {db} to {} ({} bytes{})",
                b.path.display(),
                b.bytes,
                b.latest_migration
                    .map_or(String::new(), |v| format!(", schema at migration {v}"))
            );
            Ok(())
        }
        Command::Secrets {
            command: SecretsCommand::Generate,
        } => {
            println!("{}", SecretKey::generate().to_hex().expose_secret());
            Ok(())
        }
        Command::Secrets {
            command: SecretsCommand::Rotate { batch },
        } => {
            let cipher = cipher(&settings, true)?;
            let key_id = cipher.keyring().current_id();
            let store = crate::server::open_store(&settings, cipher).await?;
            rotate(&store, key_id, batch).await
        }
        Command::Demo(args) => crate::demo::run(settings, args).await,
        Command::Bench(args) => crate::bench::run(settings, args).await,
        Command::Standin(args) => crate::standin::run(args, settings.log_format).await,
        Command::Workspace {
            command: WorkspaceCommand::Create { name },
        } => {
            let store = crate::server::open_store(&settings, cipher(&settings, false)?).await?;
            let ws = store.create_workspace(&name, Utc::now()).await?;
            println!("workspace created: {} (slug {}, id {})", ws.name, ws.slug, ws.id);
            Ok(())
        }
        Command::User {
            command: UserCommand::Add { workspace, email, role },
        } => {
            let role: Role = role.parse().map_err(|e: String| anyhow!(e))?;
            if !perly_domain::customer::is_email(&email) {
                bail!("`{email}` is not an email address");
            }
            let store = crate::server::open_store(&settings, cipher(&settings, false)?).await?;
            let ws = workspace_of(&store, &workspace).await?;
            let (password, generated) = match read_password()? {
                Some(p) => (p, false),
                None => (random_token(12), true),
            };
            let hash = hash_password(&password).map_err(|e| anyhow!("cannot hash password: {e}"))?;
            let user = store.add_user(ws.id, &email, &hash, role, Utc::now()).await?;
            println!("user added: {} ({}) to {}", user.email, role.as_str(), ws.name);
            if generated {
                println!("password: {password}");
            }
            Ok(())
        }
        Command::Apikey {
            command:
                ApikeyCommand::Create {
                    workspace,
                    label,
                    scope,
                    expires_in_days,
                    expires_at,
                },
        } => {
            let now = Utc::now();
            let scope: ApiScope = scope.parse().map_err(|e: String| anyhow!(e))?;
            let expires_at = match (expires_in_days, expires_at) {
                (Some(days), _) => Some(now + chrono::Duration::days(i64::from(days))),
                (None, Some(at)) => Some(parse_expiry(&at)?),
                (None, None) => None,
            };
            if expires_at.is_some_and(|t| t <= now) {
                bail!("--expires-at is in the past");
            }
            let store = crate::server::open_store(&settings, cipher(&settings, false)?).await?;
            let ws = workspace_of(&store, &workspace).await?;
            let new = NewApiKey {
                label,
                scope,
                expires_at,
            };
            let (_, key) = store.create_api_key(ws.id, &new, now).await?;
            println!("{key}");
            let can = match scope {
                ApiScope::Full => "read and change everything in",
                ApiScope::Ingest => "send customers and events to",
            };
            let until = expires_at.map_or(String::new(), |t| format!(" until {}", t.to_rfc3339()));
            eprintln!(
                "This key is shown once. Keep it secret: it can {can} workspace {}{until}.",
                ws.name
            );
            Ok(())
        }
    }
}
