//! The benchmark org (1,000,000 accounts, 2,000,000 contacts, 1,000,000
//! opportunities, 4,000,000 activities) pulled in full through Bulk API 2.0,
//! as Perly's initial sync does. Ignored by default (it takes a while in a
//! debug build); run it in release:
//!
//! `cargo test -p perly-standins --release --test bulk_pull -- --ignored --nocapture`

use std::time::Instant;

use perly_standins::salesforce::{OrgSpec, SalesforceStandin};
use perly_standins::OAuthApp;
use serde_json::{json, Value};

/// Resident memory of this process (the stand-in runs in it), in MiB.
fn rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib / 1024)
}

async fn pull(http: &reqwest::Client, base: &str, token: &str, query: &str) -> u64 {
    let jobs = format!("{base}/services/data/v62.0/jobs/query");
    let job: Value = http
        .post(&jobs)
        .bearer_auth(token)
        .json(&json!({"operation": "queryAll", "query": query, "contentType": "CSV", "columnDelimiter": "COMMA", "lineEnding": "LF"}))
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("job");
    let id = job["id"].as_str().expect("id").to_owned();
    loop {
        let info: Value = http
            .get(format!("{jobs}/{id}"))
            .bearer_auth(token)
            .send()
            .await
            .expect("poll")
            .json()
            .await
            .expect("info");
        if info["state"] == "JobComplete" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let mut locator = String::new();
    let mut rows = 0u64;
    loop {
        let mut url = format!("{jobs}/{id}/results");
        if !locator.is_empty() {
            url.push_str(&format!("?locator={locator}"));
        }
        let res = http.get(url).bearer_auth(token).send().await.expect("results");
        locator = res.headers()["sforce-locator"].to_str().expect("ascii").to_owned();
        let body = res.bytes().await.expect("body");
        let mut reader = csv::Reader::from_reader(body.as_ref());
        rows += reader.records().count() as u64;
        if locator == "null" {
            return rows;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run in release with --ignored"]
async fn the_benchmark_org_pulls_in_full_within_budget() {
    let spec = OrgSpec {
        accounts: 1_000_000,
        contacts_per_account: 2,
        opportunities_per_account: 1,
        tasks_per_account: 2,
        events_per_account: 2,
        ..OrgSpec::default()
    };
    let app = OAuthApp {
        client_id: "bench".into(),
        client_secret: "bench".into(),
    };
    let sf = SalesforceStandin::start("127.0.0.1:0", "127.0.0.1:0", spec, vec![app])
        .await
        .expect("start");
    let token = sf.production().issue_token("bench");
    let http = reqwest::Client::new();
    let base = sf.login_url();
    let queries = [
        ("Account", "SELECT Id, Name, ParentId, OwnerId, Owner.Email, Type, Industry, AnnualRevenue, IsDeleted, SystemModstamp, LastModifiedDate FROM Account"),
        ("Contact", "SELECT Id, AccountId, FirstName, LastName, Email, Title, ReportsToId, OwnerId, IsDeleted, SystemModstamp FROM Contact"),
        ("Opportunity", "SELECT Id, AccountId, Name, StageName, Amount, CloseDate, IsClosed, IsWon, ForecastCategoryName, Probability, OwnerId, IsDeleted, SystemModstamp FROM Opportunity"),
        ("Task", "SELECT Id, AccountId, WhatId, WhoId, OwnerId, Subject, Status, Priority, ActivityDate, CompletedDateTime, TaskSubtype, Type, CallType, CallDurationInSeconds, IsClosed, IsArchived, IsDeleted, SystemModstamp FROM Task"),
        ("Event", "SELECT Id, AccountId, WhatId, WhoId, OwnerId, Subject, ActivityDateTime, ActivityDate, DurationInMinutes, EventSubtype, Type, IsArchived, IsDeleted, SystemModstamp FROM Event"),
    ];
    let started = Instant::now();
    let mut peak = rss_mib();
    let mut total = 0;
    for (object, q) in queries {
        let t = Instant::now();
        let rows = pull(&http, &base, &token, q).await;
        peak = peak.max(rss_mib());
        println!("{object}: {rows} rows in {:.1?} (rss {} MiB)", t.elapsed(), rss_mib());
        total += rows;
    }
    let elapsed = started.elapsed();
    println!("total: {total} rows in {elapsed:.1?}, peak rss {peak} MiB");
    assert_eq!(
        total, 8_000_000,
        "1M accounts + 2M contacts + 1M opportunities + 4M activities"
    );
    assert!(elapsed.as_secs() < 180, "{elapsed:?}");
}
