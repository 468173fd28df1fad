//! The portfolio page at `/` through the real server: customers and MRR per
//! risk level (a NULL risk level counts as "not enough data yet"), the
//! week's biggest falls and rises from score history, the latest alerts,
//! the empty "Last import" panel, nothing of another workspace; and that
//! it needs a session.

use chrono::Duration;
use perly_store::Role;
use serde_json::json;

use crate::helpers::*;
use crate::web::{add_user, WebClient};

/// The HTML of the element that starts with `<tag … id="id"` up to its closing tag.
fn element<'a>(html: &'a str, tag: &str, id: &str) -> &'a str {
    let start = html
        .find(&format!("<{tag} id=\"{id}\""))
        .or_else(|| html.find(&format!("id=\"{id}\"")))
        .unwrap_or_else(|| panic!("no #{id} in the page"));
    let rest = &html[start..];
    let end = rest.find(&format!("</{tag}>")).unwrap_or(rest.len());
    &rest[..end]
}

/// The text of `<td class="num {class}">…</td>` in a row.
fn cell(row: &str, class: &str) -> String {
    row.split(&format!("class=\"num {class}\">"))
        .nth(1)
        .and_then(|r| r.split("</td>").next())
        .unwrap_or_else(|| panic!("no {class} cell in {row}"))
        .to_owned()
}

/// Customer names in a movers table, in order.
fn names(section: &str) -> Vec<String> {
    section
        .split("<th scope=\"row\"><a href=\"/customers/")
        .skip(1)
        .filter_map(|r| r.split('>').nth(1)?.split('<').next().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn the_portfolio_shows_risk_totals_movers_and_the_latest_alerts() {
    let app = spawn_app().await;
    seat_only_scorecard(&app).await;
    let customer = |id: &str, mrr: f64| json!({"external_id": id, "name": format!("{id} Inc"), "mrr": mrr, "seats_purchased": 100});
    app.customers(json!([
        customer("alpha", 100.0),
        customer("bravo", 200.0),
        customer("charlie", 300.0),
        customer("delta", 400.0),
        customer("echo", 500.0),
        customer("foxtrot", 600.0),
    ]))
    .await;
    // Eight days ago: the week's starting scores (echo never gets one).
    for (id, score) in [
        ("alpha", 40),
        ("bravo", 30),
        ("charlie", 60),
        ("delta", 50),
        ("foxtrot", 80),
    ] {
        set_score(&app, id, score).await;
    }
    app.advance(Duration::days(8));
    for (id, score) in [("alpha", 10), ("charlie", 65), ("delta", 90)] {
        set_score(&app, id, score).await;
    }
    // Golf is new this week: it moved, but has no score from a week ago.
    app.customers(json!([customer("golf", 700.0)])).await;
    set_score(&app, "golf", 20).await;
    set_score(&app, "golf", 95).await;

    // Another workspace's customers never show.
    let (_, other_key) = app.other_workspace("Other Co").await;
    let (status, body) = app
        .send(
            reqwest::Method::POST,
            "/api/v1/customers",
            Some(&other_key),
            Some(json!({"customers": [customer("zulu", 9_999.0)]})),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    add_user(&app, "ana@example.com", Role::Member).await;
    let web = WebClient::new(&app);
    web.sign_in("ana@example.com", "correct horse battery").await;
    let (status, page, _) = web.get("/").await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("aria-current=\"page\">Portfolio</a>"),
        "the nav marks the page"
    );

    // alpha 10 critical; bravo 30 high; charlie 65 medium; delta 90, foxtrot 80, golf 95 low; echo unscored.
    for (level, customers, mrr) in [
        ("critical", "1", "$100"),
        ("high", "1", "$200"),
        ("medium", "1", "$300"),
        ("low", "3", "$1,700"),
        ("none", "1", "$500"),
    ] {
        let row = element(&page, "tr", &format!("level-{level}"));
        assert_eq!(cell(row, "customers"), customers, "{level}: {row}");
        assert_eq!(cell(row, "mrr"), mrr, "{level}: {row}");
    }
    assert!(
        page.contains("Customers (7)") && page.contains("MRR ($2,800)"),
        "chart totals"
    );
    assert!(
        page.contains("<svg") && !page.contains("<script"),
        "server-side SVG, no script"
    );

    let falls = element(&page, "section", "falls");
    assert_eq!(names(falls), ["alpha Inc"], "{falls}");
    assert_eq!(cell(falls, "before"), "40");
    assert_eq!(cell(falls, "now"), "10");
    assert!(falls.contains("−30"), "{falls}");
    let rises = element(&page, "section", "rises");
    assert_eq!(
        names(rises),
        ["delta Inc", "charlie Inc"],
        "biggest rise first, golf left out: {rises}"
    );
    assert!(rises.contains("+40") && rises.contains("+5"), "{rises}");

    let alerts = element(&page, "section", "latest-alerts");
    assert!(alerts.contains("href=\"/customers/alpha\""), "{alerts}");
    assert!(alerts.contains("Customer at risk"), "{alerts}");
    assert!(alerts.contains("href=\"/alerts\""), "{alerts}");

    // First verdicts are history: they opened the events import, not yet settled.
    let import = element(&page, "section", "last-import");
    assert!(import.contains("History through the events API"), "{import}");
    assert!(import.contains("running since"), "{import}");

    // A scored customer without a risk level is "not enough data yet" too.
    app.execute_sql("UPDATE customers SET risk_level = NULL WHERE external_id = 'foxtrot'")
        .await;
    let (_, page, _) = web.get("/").await;
    let none = element(&page, "tr", "level-none");
    assert_eq!(cell(none, "customers"), "2", "{none}");
    assert_eq!(cell(none, "mrr"), "$1,100", "{none}");
    assert_eq!(cell(element(&page, "tr", "level-low"), "customers"), "2");
}

#[tokio::test]
async fn the_portfolio_needs_a_session_and_is_where_sign_in_lands() {
    let app = spawn_app().await;
    add_user(&app, "ana@example.com", Role::Admin).await;
    let web = WebClient::new(&app);
    let (status, page, headers) = web.get("/").await;
    assert_eq!(status, 303, "{page}");
    assert_eq!(headers["location"], "/login?next=%2F");

    // Signing in from the plain login page lands on the portfolio.
    let (_, login, _) = web.get("/login").await;
    let csrf = WebClient::csrf(&login);
    let (status, _, headers) = web
        .post(
            "/login",
            &[
                ("csrf", &csrf),
                ("email", "ana@example.com"),
                ("password", "correct horse battery"),
            ],
        )
        .await;
    assert_eq!(status, 303);
    assert_eq!(headers["location"], "/");
    let (status, page, _) = web.get("/").await;
    assert_eq!(status, 200);
    assert!(page.contains("No imports yet"), "an empty workspace shows empty states");
    assert!(page.contains("No alerts yet."));
}
