//! `perly standin salesforce`: the Salesforce stand-in on its own, in its own
//! process. `perly bench salesforce-sync` starts it this way so that the
//! peak memory and CPU time it reports are Perly's alone, and other clients
//! (airbyte's Salesforce source, driven by `scripts/bench-airbyte.py`) can
//! be pointed at the very same generated org. Hidden from `--help`: it is a
//! benchmarking tool, not part of running Perly.
//!
//! Once both orgs listen, one line of JSON goes to stdout ([`StandinInfo`]:
//! login URLs, the admin's username and password, the OAuth client), then
//! the process serves until it is interrupted or killed.

use anyhow::Context;
use perly_standins::salesforce::{OrgSpec, SalesforceStandin, ADMIN_PASSWORD, SECURITY_TOKEN};
use perly_standins::OAuthApp;
use serde::{Deserialize, Serialize};

#[derive(Debug, clap::Args)]
pub struct StandinArgs {
    #[command(subcommand)]
    pub what: StandinKind,
}

#[derive(Debug, clap::Subcommand)]
pub enum StandinKind {
    /// A generated Production org and its Sandbox (Bulk API 2.0, REST, OAuth).
    Salesforce(SalesforceArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct SalesforceArgs {
    /// Accounts in the generated org; each has 2 contacts, 1 opportunity,
    /// 2 Tasks and 2 Events (the ratios of the benchmark org).
    #[arg(long, default_value_t = 1_000_000)]
    pub accounts: u64,
    /// Where the Production org listens (its login host and instance URL).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: String,
    #[arg(long, default_value = "127.0.0.1:0")]
    pub sandbox_listen: String,
    /// The connected app's consumer key the orgs accept.
    #[arg(long, default_value = "perly-bench")]
    pub client_id: String,
    #[arg(long, default_value = "perly-bench-secret")]
    pub client_secret: String,
}

/// What a client needs to use the stand-in, printed as one JSON line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StandinInfo {
    pub login_url: String,
    pub sandbox_login_url: String,
    pub username: String,
    pub password: String,
    pub security_token: String,
    pub client_id: String,
    pub client_secret: String,
    pub accounts: u64,
}

/// The benchmark org of issue #6, scaled by its number of accounts.
pub fn bench_org(accounts: u64) -> OrgSpec {
    OrgSpec {
        accounts,
        contacts_per_account: 2,
        opportunities_per_account: 1,
        tasks_per_account: 2,
        events_per_account: 2,
        ..OrgSpec::default()
    }
}

/// Starts the stand-in on the current runtime and describes it.
pub async fn start_salesforce(args: &SalesforceArgs) -> anyhow::Result<(SalesforceStandin, StandinInfo)> {
    let app = OAuthApp {
        client_id: args.client_id.clone(),
        client_secret: args.client_secret.clone(),
    };
    let standin = SalesforceStandin::start(&args.listen, &args.sandbox_listen, bench_org(args.accounts), vec![app])
        .await
        .with_context(|| {
            format!(
                "cannot start the Salesforce stand-in on {} and {}",
                args.listen, args.sandbox_listen
            )
        })?;
    let info = StandinInfo {
        login_url: standin.login_url(),
        sandbox_login_url: standin.sandbox_login_url(),
        username: standin.production().admin_username(),
        password: ADMIN_PASSWORD.to_owned(),
        security_token: SECURITY_TOKEN.to_owned(),
        client_id: args.client_id.clone(),
        client_secret: args.client_secret.clone(),
        accounts: args.accounts,
    };
    Ok((standin, info))
}

pub async fn run(args: StandinArgs, log_format: crate::config::LogFormat) -> anyhow::Result<()> {
    crate::telemetry::init("warn", log_format);
    match args.what {
        StandinKind::Salesforce(a) => {
            let (standin, info) = start_salesforce(&a).await?;
            println!("{}", serde_json::to_string(&info)?);
            tokio::signal::ctrl_c().await.ok();
            standin.shutdown();
            Ok(())
        }
    }
}
