//! The `perly` command line, run as a user would.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::helpers::*;

fn perly(db: &str, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_perly"))
        .args(args)
        .env("PERLY_DATABASE_URL", db)
        .env_remove("PERLY_SECRET_KEY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run perly");
    if let Some(mut input) = child.stdin.take() {
        if let Some(s) = stdin {
            input.write_all(s.as_bytes()).expect("write stdin");
        }
    }
    let out = child.wait_with_output().expect("wait");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[tokio::test]
async fn admin_commands_create_a_workspace_a_user_and_a_working_key() {
    let dir = tempfile::tempdir().expect("dir");
    let db = fresh_database(&dir).await;
    let (code, out, err) = perly(&db, &["migrate"], None);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, _) = perly(&db, &["workspace", "create", "Acme Success"], None);
    assert_eq!(code, 0);
    assert!(out.contains("slug acme-success"), "{out}");
    let (code, out, err) = perly(
        &db,
        &[
            "user",
            "add",
            "--workspace",
            "acme-success",
            "--email",
            "ana@example.com",
            "--role",
            "admin",
        ],
        Some("a-long-password\n"),
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        !out.contains("password:"),
        "a password from stdin is not printed: {out}"
    );
    let (code, out, _) = perly(
        &db,
        &[
            "user",
            "add",
            "--workspace",
            "Acme Success",
            "--email",
            "ben@example.com",
            "--role",
            "member",
        ],
        Some(""),
    );
    assert_eq!(code, 0);
    assert!(
        out.contains("password: "),
        "a generated password is printed once: {out}"
    );
    let (code, _, err) = perly(
        &db,
        &[
            "user",
            "add",
            "--workspace",
            "acme-success",
            "--email",
            "ana@example.com",
            "--role",
            "admin",
        ],
        Some("another-password\n"),
    );
    assert_eq!(code, 1);
    assert!(err.contains("already exists"), "{err}");
    // A new password needs 12 characters and must not be a common one.
    for (weak, why) in [
        ("eleven char\n", "at least 12 characters"),
        ("password1234\n", "common passwords"),
    ] {
        let (code, _, err) = perly(
            &db,
            &[
                "user",
                "add",
                "--workspace",
                "acme-success",
                "--email",
                "cy@example.com",
                "--role",
                "member",
            ],
            Some(weak),
        );
        assert_eq!(code, 1, "{weak:?} is refused");
        assert!(err.contains(why), "{err}");
    }
    let (code, key, _) = perly(&db, &["apikey", "create", "--workspace", "acme-success"], None);
    assert_eq!(code, 0);

    let settings = test_settings(db.clone(), false);
    let store = perly::server::open_store(&settings, perly::cli::cipher(&settings, true).expect("cipher"))
        .await
        .expect("store");
    let found = store
        .authenticate_api_key(key.trim(), chrono::Utc::now())
        .await
        .expect("lookup");
    let ws = store
        .find_workspace("acme-success")
        .await
        .expect("find")
        .expect("exists");
    assert_eq!(
        found.map(|k| (k.workspace, k.scope)),
        Some((ws.id, perly_store::model::ApiScope::Full))
    );
}

#[tokio::test]
async fn apikey_create_takes_a_scope_and_an_expiry() {
    let dir = tempfile::tempdir().expect("dir");
    let db = fresh_database(&dir).await;
    assert_eq!(perly(&db, &["workspace", "create", "Acme"], None).0, 0);
    let (code, ingest, err) = perly(
        &db,
        &[
            "apikey",
            "create",
            "--workspace",
            "acme",
            "--label",
            "billing",
            "--scope",
            "ingest",
            "--expires-in-days",
            "7",
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("send customers and events"), "{err}");
    let (code, at, err) = perly(
        &db,
        &["apikey", "create", "--workspace", "acme", "--expires-at", "2099-01-31"],
        None,
    );
    assert_eq!(code, 0, "{err}");

    let settings = test_settings(db.clone(), false);
    let store = perly::server::open_store(&settings, perly::cli::cipher(&settings, true).expect("cipher"))
        .await
        .expect("store");
    let now = chrono::Utc::now();
    let found = store
        .authenticate_api_key(ingest.trim(), now)
        .await
        .expect("lookup")
        .expect("live");
    assert_eq!(found.scope, perly_store::model::ApiScope::Ingest);
    let keys = store.list_api_keys(found.workspace).await.expect("keys");
    let billing = keys.iter().find(|k| k.label == "billing").expect("billing");
    let expires = billing.expires_at.expect("an expiry");
    assert!(
        (expires - (now + chrono::Duration::days(7))).num_seconds().abs() < 120,
        "{expires}"
    );
    let found = store
        .authenticate_api_key(at.trim(), now)
        .await
        .expect("lookup")
        .expect("live");
    assert_eq!(found.scope, perly_store::model::ApiScope::Full, "full by default");
    let cli = keys.iter().find(|k| k.label == "cli").expect("cli");
    assert_eq!(
        cli.expires_at.map(|t| t.to_rfc3339()),
        Some("2099-01-31T00:00:00+00:00".into())
    );

    let (code, _, err) = perly(
        &db,
        &["apikey", "create", "--workspace", "acme", "--scope", "admin"],
        None,
    );
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = perly(
        &db,
        &["apikey", "create", "--workspace", "acme", "--expires-at", "2001-01-01"],
        None,
    );
    assert_eq!(code, 1);
    assert!(err.contains("in the past"), "{err}");
}

#[tokio::test]
async fn wrong_arguments_get_a_short_message_and_a_non_zero_exit() {
    let dir = tempfile::tempdir().expect("dir");
    let db = format!("sqlite://{}/x.db", dir.path().display());
    let (code, _, err) = perly(&db, &["frobnicate"], None);
    assert_eq!(code, 2);
    assert!(err.contains("unrecognized subcommand"), "{err}");
    let (code, _, err) = perly(
        &db,
        &[
            "user",
            "add",
            "--workspace",
            "w",
            "--email",
            "a@b.co",
            "--role",
            "owner",
        ],
        None,
    );
    assert_eq!(code, 2);
    assert!(err.contains("owner"), "{err}");
    let (code, _, err) = perly(&db, &["apikey", "create", "--workspace", "missing"], None);
    assert_eq!(code, 1);
    assert!(err.contains("no workspace named `missing`"), "{err}");
    let (code, _, err) = perly("mysql://x", &["migrate"], None);
    assert_eq!(code, 1);
    assert!(err.contains("sqlite:// or postgres://"), "{err}");
    let (code, _, err) = perly(&db, &["serve"], None);
    assert_eq!(code, 1);
    assert!(err.contains("PERLY_SECRET_KEY"), "{err}");
}

#[test]
fn config_print_shows_settings_but_never_secrets() {
    let out = Command::new(env!("CARGO_BIN_EXE_perly"))
        .args(["config", "print"])
        .env("PERLY_SECRET_KEY", "do-not-print-me")
        .env("PERLY_SLACK__BASE_URL", "http://127.0.0.1:9")
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(text.contains("http://127.0.0.1:9"), "{text}");
    assert!(!text.contains("do-not-print-me"));
    assert!(text.contains("secret_key = \"<set>\""));
}

/// Discord application ids (and some vendors' secrets) are all digits: the
/// server must start with them and keep every digit.
#[tokio::test]
async fn perly_serve_starts_with_all_digit_client_ids_and_secrets() {
    const ID: &str = "1234567890123456789";
    const SECRET: &str = "0987654321098765432";
    let mut env: Vec<(&str, String)> = Vec::new();
    for vendor in ["SLACK", "DISCORD", "SALESFORCE"] {
        env.push((
            Box::leak(format!("PERLY_{vendor}__CLIENT_ID").into_boxed_str()),
            ID.to_owned(),
        ));
        env.push((
            Box::leak(format!("PERLY_{vendor}__CLIENT_SECRET").into_boxed_str()),
            SECRET.to_owned(),
        ));
    }
    let out = Command::new(env!("CARGO_BIN_EXE_perly"))
        .args(["config", "print"])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("run perly config print");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        printed.matches(&format!("client_id = \"{ID}\"")).count(),
        3,
        "every vendor keeps its id as text: {printed}"
    );

    let dir = tempfile::tempdir().expect("dir");
    let db = fresh_database(&dir).await;
    // `spawn_serve` waits for /healthz: the server came up with these settings.
    let server = spawn_serve(&db, free_port(), &env).await;
    let page = reqwest::get(format!("{}/login", server.base))
        .await
        .expect("login page");
    assert_eq!(page.status(), 200);
}
