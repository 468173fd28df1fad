//! The secret key: weak keys refused at startup, rotation to a new key with
//! `perly secrets rotate` (including values an older Perly sealed with a
//! passphrase), channels and Salesforce connections whose secret no key
//! opens marked broken without holding up the others, and the demo's data
//! folder from an older version.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use perly_domain::channels::{ChannelRules, Platform};
use perly_domain::ids::{ChannelId, WorkspaceId};
use perly_domain::salesforce::Environment;
use perly_store::cipher::{Keyring, SecretCipher, SecretKey};
use perly_store::secrets::{UNDECRYPTABLE_REFRESH_TOKEN, UNDECRYPTABLE_WEBHOOK};
use perly_store::{NewChannel, NewSalesforceConnection, Store};
use rstest::rstest;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::helpers::*;

const KEY_B: &str = "c81d5e2a7f4b9036e1a8d2c47b5f93e0a6d1c8b2f47e3a9d05c6b1e8f2a7d493";
const OLD_PASSPHRASE: &str = "test-secret-key";

/// Runs `perly` with these variables; gives up after 60 s (a server that
/// should have refused to start and did not).
fn perly(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_perly"));
    cmd.args(args)
        .env_remove("PERLY_SECRET_KEY")
        .env_remove("PERLY_PREVIOUS_SECRET_KEYS")
        .env("PERLY_LISTEN", "127.0.0.1:0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("run perly");
    let started = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if started.elapsed() > StdDuration::from_secs(60) {
            child.kill().ok();
            panic!("perly {args:?} did not exit");
        }
        std::thread::sleep(StdDuration::from_millis(50));
    }
    let out = child.wait_with_output().expect("output");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[rstest]
#[case::passphrase(OLD_PASSPHRASE)]
#[case::short_hex("6f1c0e5a9b2d4c3e8f7a1b2c3d4e5f60")]
// (An all-digit value such as 64 zeros is issue 14's item 9: the
// environment parser reads it as a number.)
#[case::one_byte_repeated("abababababababababababababababababababababababababababababababab")]
fn serve_and_migrate_refuse_a_weak_secret_key_and_say_how_to_make_one(#[case] weak: &str) {
    let dir = tempfile::tempdir().expect("dir");
    let db = format!("sqlite://{}/perly.db", dir.path().display());
    for command in [&["migrate"][..], &["workspace", "create", "Acme"], &["serve"]] {
        let (code, out, err) = perly(command, &[("PERLY_DATABASE_URL", &db), ("PERLY_SECRET_KEY", weak)]);
        assert_eq!(code, 1, "{command:?}: {out}{err}");
        assert!(err.contains("PERLY_SECRET_KEY"), "{err}");
        assert!(err.contains("not a valid secret key"), "{err}");
        assert!(err.contains("perly secrets generate"), "{err}");
        assert!(err.contains("PERLY_PREVIOUS_SECRET_KEYS"), "says how to upgrade: {err}");
        assert!(!err.contains(weak), "the key is never printed: {err}");
    }
    assert!(
        !dir.path().join("perly.db").exists(),
        "refused before opening the database"
    );
}

#[test]
fn a_generated_key_is_accepted() {
    let dir = tempfile::tempdir().expect("dir");
    let db = format!("sqlite://{}/perly.db", dir.path().display());
    let (code, key, err) = perly(&["secrets", "generate"], &[]);
    assert_eq!(code, 0, "{err}");
    let key = key.trim();
    assert_eq!(key.len(), 64, "{key}");
    assert!(SecretKey::parse(key).is_ok());
    let (code, out, err) = perly(&["migrate"], &[("PERLY_DATABASE_URL", &db), ("PERLY_SECRET_KEY", key)]);
    assert_eq!(code, 0, "{out}{err}");
}

fn settings_with(db: &str, current: &str, previous: &[&str]) -> perly::config::Settings {
    let mut s = test_settings(db.to_owned(), false);
    s.secret_key = Some(SecretString::from(current.to_owned()));
    s.previous_secret_keys = previous.iter().map(|p| SecretString::from((*p).to_owned())).collect();
    s
}

async fn store_with(db: &str, current: &str, previous: &[&str]) -> Arc<dyn Store> {
    let settings = settings_with(db, current, previous);
    let cipher = perly::cli::cipher(&settings, true).expect("cipher");
    perly::server::open_store(&settings, cipher).await.expect("store")
}

/// What Perly wrote before key ids: XChaCha20-Poly1305 under SHA-256 of
/// the key text, `nonce ‖ ciphertext`, the context as associated data.
fn legacy_seal(key_text: &str, context: &str, plaintext: &str) -> Vec<u8> {
    let nonce = [42u8; 24];
    let sealed = XChaCha20Poly1305::new(&Sha256::digest(key_text.as_bytes()))
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plaintext.as_bytes(),
                aad: context.as_bytes(),
            },
        )
        .expect("seal");
    [&nonce[..], &sealed].concat()
}

async fn execute(db: &str, sql: &str, value: Vec<u8>, ws: WorkspaceId, key: &str) {
    let mut conn = connect_database(db).await;
    let done = sqlx::query(sql)
        .bind(value)
        .bind(ws.to_string())
        .bind(key.to_owned())
        .execute(&mut conn)
        .await
        .expect("write by hand");
    assert_eq!(done.rows_affected(), 1, "{sql}");
}

/// Replaces a channel's stored webhook with `value`.
async fn set_webhook(db: &str, ws: WorkspaceId, channel: &str, value: Vec<u8>) {
    execute(
        db,
        "UPDATE channels SET webhook = $1 WHERE workspace_id = $2 AND id = $3",
        value,
        ws,
        channel,
    )
    .await;
}

async fn set_secret(db: &str, ws: WorkspaceId, name: &str, value: Vec<u8>) {
    execute(
        db,
        "UPDATE secrets SET ciphertext = $1 WHERE workspace_id = $2 AND name = $3",
        value,
        ws,
        name,
    )
    .await;
}

fn webhook_context(ws: WorkspaceId, channel: &str) -> String {
    format!("{ws}/channel/{channel}")
}

fn connection(login_url: &str, refresh_token: &str) -> NewSalesforceConnection {
    NewSalesforceConnection {
        environment: Environment::Production,
        login_url: login_url.to_owned(),
        instance_url: login_url.to_owned(),
        org_id: "00D000000000001AAA".into(),
        org_name: "Acme".into(),
        user_id: "005000000000001AAA".into(),
        username: "admin@acme.example".into(),
        refresh_token: refresh_token.to_owned(),
        permissions: json!({}),
    }
}

async fn add_channel(store: &Arc<dyn Store>, ws: WorkspaceId, url: &str) -> ChannelId {
    let new = NewChannel {
        platform: Platform::Slack,
        name: "#customer-health".into(),
        webhook_url: url.to_owned(),
        source: "pasted",
        details: json!({}),
        rules: ChannelRules::everything(),
    };
    store.create_channel(ws, &new, t0()).await.expect("channel").id
}

/// The webhook a delivery worker would post to (a test message makes it due).
async fn claimed_webhook(store: &Arc<dyn Store>, ws: WorkspaceId, id: ChannelId) -> String {
    store.enqueue_test_message(ws, id, t0()).await.expect("test message");
    let claimed = store
        .claim_deliveries(100, 11, &[], t0(), chrono::Duration::seconds(30))
        .await
        .expect("claim");
    let c = claimed.iter().find(|c| c.id == id).expect("claimed");
    let ack = perly_store::DeliveryAck {
        workspace_id: ws,
        channel_id: id,
        lease_token: c.lease.token,
        delivery_ids: c.items.iter().map(|i| i.id).collect(),
        fold: None,
        outcome: perly_store::AckOutcome::Sent,
        status: Some(200),
        latency_ms: 1,
        answer: "ok".into(),
        alerts: 0,
        pace_tat: t0(),
        next_attempt_at: t0(),
        at: t0(),
    };
    store.ack_deliveries(&[ack]).await.expect("ack");
    c.webhook_url.clone()
}

#[tokio::test]
async fn rotate_moves_every_secret_to_the_new_key_after_which_the_old_keys_can_go() {
    let dir = tempfile::tempdir().expect("dir");
    let db = fresh_database(&dir).await;
    // Under key A (the tests' key): channels, a Salesforce token and a
    // secret in two workspaces, and one value an older Perly sealed with a
    // passphrase.
    let a = store_with(&db, TEST_SECRET_KEY, &[]).await;
    let mut channels = Vec::new();
    let mut workspaces = Vec::new();
    for name in ["Acme", "Globex"] {
        let ws = a.create_workspace(name, t0()).await.expect("ws").id;
        for i in 0..3 {
            let url = format!("https://hooks.slack.com/services/T0/B{i}/{name}-secret-{i}");
            channels.push((ws, add_channel(&a, ws, &url).await, url));
        }
        a.save_salesforce_connection(
            ws,
            &connection("https://login.salesforce.com", &format!("{name}-refresh")),
            t0(),
        )
        .await
        .expect("connection");
        a.put_secret(ws, "slack/bot-token", &format!("{name}-bot-token"), t0())
            .await
            .expect("secret");
        workspaces.push(ws);
    }
    let (ws, legacy_channel, legacy_url) = channels[0].clone();
    set_webhook(
        &db,
        ws,
        &legacy_channel.to_string(),
        legacy_seal(
            OLD_PASSPHRASE,
            &webhook_context(ws, &legacy_channel.to_string()),
            &legacy_url,
        ),
    )
    .await;
    drop(a);

    // Key B alone opens none of it: rotate says so, exits 1, destroys nothing.
    let env_b = [("PERLY_DATABASE_URL", db.as_str()), ("PERLY_SECRET_KEY", KEY_B)];
    let (code, out, err) = perly(&["secrets", "rotate"], &env_b);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("cannot decrypt channel webhook"), "{out}");
    assert!(out.contains("cannot decrypt secret salesforce/refresh_token"), "{out}");
    assert!(err.contains("could not be decrypted"), "{err}");

    // B with A and the old passphrase as previous keys: everything moves.
    let previous = format!("{TEST_SECRET_KEY},{OLD_PASSPHRASE}");
    let mut env = env_b.to_vec();
    env.push(("PERLY_PREVIOUS_SECRET_KEYS", &previous));
    let (code, out, err) = perly(&["secrets", "rotate", "--batch", "2"], &env);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("Acme (acme): 5 re-encrypted"), "{out}");
    assert!(out.contains("Globex (globex): 5 re-encrypted"), "{out}");
    assert!(out.contains("total: 10 re-encrypted, 0 already current"), "{out}");
    assert!(!out.contains(TEST_SECRET_KEY) && !err.contains(TEST_SECRET_KEY));

    // A second run finds nothing to do.
    let (code, out, _) = perly(&["secrets", "rotate"], &env);
    assert_eq!(code, 0);
    assert!(out.contains("total: 0 re-encrypted, 10 already current"), "{out}");

    // Without the old keys, everything still decrypts.
    let b = store_with(&db, KEY_B, &[]).await;
    for (ws, id, url) in &channels {
        assert_eq!(&claimed_webhook(&b, *ws, *id).await, url);
    }
    for (ws, name) in workspaces.iter().zip(["Acme", "Globex"]) {
        let token = b.salesforce_refresh_token(*ws).await.expect("token");
        assert_eq!(token.as_deref(), Some(format!("{name}-refresh").as_str()));
        let secret = b.get_secret(*ws, "slack/bot-token").await.expect("secret");
        assert_eq!(secret.as_deref(), Some(format!("{name}-bot-token").as_str()));
    }
    // And key A no longer opens anything.
    let a_again = store_with(&db, TEST_SECRET_KEY, &[]).await;
    assert!(matches!(
        a_again.get_secret(workspaces[0], "slack/bot-token").await,
        Err(perly_store::Error::Undecryptable(_))
    ));
}

#[tokio::test]
async fn a_channel_whose_webhook_cannot_be_decrypted_is_marked_broken_and_the_rest_of_its_claim_delivers() {
    let app = spawn_app_with_standins().await;
    let rules =
        json!({"event_kinds": ["customer_at_risk"], "min_risk": null, "min_score_delta": null, "quiet_hours": null});
    let mut ids = Vec::new();
    for name in ["#garbage", "#other-key", "#fine"] {
        let hook = app.slack().create_webhook(name);
        ids.push((app.channel("slack", name, &hook, rules.clone()).await, hook));
    }
    let (garbage, _) = &ids[0];
    let (other_key, other_hook) = &ids[1];
    let (fine, fine_hook) = &ids[2];
    set_webhook(
        &app.database_url,
        app.ws,
        garbage,
        b"not a sealed value at all, just garbage".to_vec(),
    )
    .await;
    // Sealed with a key this server does not have (as after a key change).
    let key_c = SecretKey::generate();
    let foreign = SecretCipher::new(Keyring::single(&key_c));
    set_webhook(
        &app.database_url,
        app.ws,
        other_key,
        foreign.encrypt(&webhook_context(app.ws, other_key), other_hook),
    )
    .await;
    for (id, _) in &ids {
        let (status, _) = app.post(&format!("/api/v1/channels/{id}/test"), json!({})).await;
        assert_eq!(status, 202);
    }

    let stats = app.deliver().await;
    let delivered = app.slack().messages();
    assert_eq!(delivered.len(), 1, "{stats:?}");
    assert_eq!(&delivered[0].webhook_url, fine_hook);
    for id in [garbage, other_key] {
        let (_, channel) = app.get(&format!("/api/v1/channels/{id}")).await;
        assert_eq!(channel["status"], "broken", "{channel}");
        assert_eq!(channel["broken_reason"], UNDECRYPTABLE_WEBHOOK, "{channel}");
        let (_, log) = app.get(&format!("/api/v1/channels/{id}/deliveries")).await;
        assert_eq!(log["items"][0]["outcome"], "broken", "{log}");
        assert_eq!(log["items"][0]["answer"], UNDECRYPTABLE_WEBHOOK, "{log}");
    }
    let (_, channel) = app.get(&format!("/api/v1/channels/{fine}")).await;
    assert_eq!(channel["status"], "active", "{channel}");
    // Broken channels are not claimed again.
    app.deliver().await;
    assert_eq!(app.slack().messages().len(), 1);

    // The operator adds the key that sealed it and rotates: that channel is
    // repaired and its held message goes out; the garbage stays broken.
    let key_c = key_c.to_hex();
    let rotating = store_with(&app.database_url, TEST_SECRET_KEY, &[key_c.expose_secret()]).await;
    let r = rotating.rotate_secrets(app.ws, 100, app.now()).await.expect("rotate");
    assert_eq!((r.rotated, r.repaired), (1, 1), "{r:?}");
    assert_eq!(r.undecryptable.len(), 1, "{r:?}");
    assert_eq!(r.undecryptable[0].id, *garbage);
    app.deliver().await;
    let delivered = app.slack().messages();
    assert_eq!(delivered.len(), 2);
    assert_eq!(&delivered[1].webhook_url, other_hook);
    let (_, channel) = app.get(&format!("/api/v1/channels/{garbage}")).await;
    assert_eq!(channel["status"], "broken", "{channel}");
}

#[tokio::test]
async fn an_undecryptable_salesforce_token_marks_the_connection_broken_instead_of_failing_every_sync() {
    let app = spawn_app_with_salesforce(crate::salesforce::small_org()).await;
    app.store
        .save_salesforce_connection(app.ws, &connection(&app.sf().login_url(), "refresh"), app.now())
        .await
        .expect("connection");
    set_secret(
        &app.database_url,
        app.ws,
        "salesforce/refresh_token",
        b"garbage where the token was".to_vec(),
    )
    .await;
    let outcomes = app.sync().await;
    assert_eq!(outcomes.len(), 1, "{outcomes:?}");
    let (_, body) = app.get("/api/v1/salesforce").await;
    assert_eq!(body["status"], "broken", "{body}");
    assert_eq!(
        body["connection"]["broken_reason"], UNDECRYPTABLE_REFRESH_TOKEN,
        "{body}"
    );
    // A broken connection is not synced again; Disconnect still works.
    app.advance(chrono::Duration::hours(3));
    assert!(app.sync().await.is_empty());
    let (status, body) = app.delete("/api/v1/salesforce").await;
    assert!(status < 300, "{status} {body}");
    let (_, body) = app.get("/api/v1/salesforce").await;
    assert_eq!(body["status"], "not_connected", "{body}");
}

#[tokio::test]
async fn the_demo_keeps_working_with_a_data_folder_of_the_previous_version() {
    for (old_key, valid) in [
        (perly_store::auth::random_token(32), true),
        ("an old demo passphrase".to_owned(), false),
    ] {
        let dir = tempfile::tempdir().expect("dir");
        // The previous version: its key file, and values it sealed under
        // SHA-256 of that key's text.
        std::fs::write(dir.path().join("secret.key"), &old_key).expect("key file");
        let db = format!("sqlite://{}/demo.db", dir.path().display());
        let store = store_with(&db, TEST_SECRET_KEY, &[]).await;
        let ws = store.create_workspace("Perly Demo", t0()).await.expect("ws").id;
        let url = "https://hooks.slack.com/services/T0/B0/demo-secret";
        let channel = add_channel(&store, ws, url).await;
        set_webhook(
            &db,
            ws,
            &channel.to_string(),
            legacy_seal(&old_key, &webhook_context(ws, &channel.to_string()), url),
        )
        .await;
        drop(store);

        let mut settings = test_settings(db.clone(), false);
        let store = perly::demo::open_store(&mut settings, dir.path())
            .await
            .expect("demo store");
        let key = std::fs::read_to_string(dir.path().join("secret.key")).expect("key file");
        assert_eq!(
            key == old_key,
            valid,
            "a valid old key is kept, an invalid one replaced"
        );
        assert!(SecretKey::parse(&key).is_ok());
        assert!(
            !dir.path().join("secret.key.previous").exists(),
            "nothing needs the old key any more"
        );
        assert_eq!(claimed_webhook(&store, ws, channel).await, url);
        let again = store.rotate_secrets(ws, 10, t0()).await.expect("rotate");
        assert_eq!(
            (again.rotated, again.current),
            (0, 1),
            "re-encrypted at start: {again:?}"
        );
        // A later start finds the same key and nothing to do.
        drop(store);
        let store = perly::demo::open_store(&mut settings, dir.path())
            .await
            .expect("demo store");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("secret.key")).expect("key"),
            key
        );
        assert_eq!(claimed_webhook(&store, ws, channel).await, url);
    }
}
