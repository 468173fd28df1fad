//! An independent client, simple-salesforce (PyPI), against the stand-in:
//! password-grant login, query and query_all paging, describe, create/get/
//! update, and Bulk API 2.0 query/queryAll. The Python side is
//! `tests/simple_salesforce_check.py`; its packages are pinned in
//! `tests/requirements.txt`. A missing python3 or package fails the test.

use std::path::Path;

use perly_standins::salesforce::{OrgSpec, SalesforceStandin, ADMIN_PASSWORD};
use perly_standins::OAuthApp;

const ACCOUNTS: u64 = 1100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simple_salesforce_logs_in_queries_describes_saves_and_bulk_queries() {
    let app = OAuthApp {
        client_id: "3MVG9simple".into(),
        client_secret: "simple-secret".into(),
    };
    let spec = OrgSpec {
        accounts: ACCOUNTS,
        ..OrgSpec::default()
    };
    let sf = SalesforceStandin::start("127.0.0.1:0", "127.0.0.1:0", spec, vec![app.clone()])
        .await
        .expect("stand-in starts");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/simple_salesforce_check.py");
    let output = tokio::process::Command::new("python3")
        .arg(&script)
        .arg(sf.login_url())
        .env("SF_USERNAME", sf.production().admin_username())
        .env("SF_PASSWORD", ADMIN_PASSWORD)
        .env("SF_CLIENT_ID", &app.client_id)
        .env("SF_CLIENT_SECRET", &app.client_secret)
        .env("SF_ACCOUNTS", ACCOUNTS.to_string())
        .output()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "could not run python3 ({e}): install Python 3 and `pip install -r crates/perly-standins/tests/requirements.txt`"
            )
        });
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        output.status.success(),
        "simple_salesforce_check.py failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert!(stdout.contains("all checks passed"), "{stdout}");
    sf.shutdown();
}
