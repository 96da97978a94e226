//! The app for browsers, `GET /join`: the page and its assets come from the binary with
//! headers that keep the page to itself, a bad name is a `not_found` like any other, and
//! every invite the server hands out carries the browser's link to it.

use onstage_proto::rest::AddParticipant;
use onstage_proto::InviteLink;
use onstage_testkit::TestServer as Srv;
use serde_json::{json, Value};

async fn get(srv: &Srv, path: &str) -> reqwest::Response {
    reqwest::get(format!("{}{path}", srv.url))
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no {name} header"))
}

/// A refusal: its status and the stable code of its JSON body.
async fn refusal(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("a JSON error body");
    assert_eq!(body["success"], json!(false), "{body}");
    (
        status,
        body["error"]["code"].as_str().unwrap_or("").to_owned(),
    )
}

#[tokio::test]
async fn the_page_and_its_assets_are_served_with_a_policy_that_keeps_them_to_themselves() {
    let srv = Srv::start().await;
    for path in ["/join", "/join/"] {
        let page = get(&srv, path).await;
        assert_eq!(page.status(), 200, "{path}");
        assert_eq!(header(&page, "content-type"), "text/html; charset=utf-8");
        let csp = header(&page, "content-security-policy").to_owned();
        for rule in [
            "default-src 'none'",
            "script-src 'self'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(rule), "{csp} lacks {rule}");
        }
        assert_eq!(header(&page, "x-frame-options"), "DENY");
        assert_eq!(header(&page, "referrer-policy"), "no-referrer");
        assert_eq!(header(&page, "cache-control"), "no-cache");
        assert!(header(&page, "permissions-policy").contains("camera=(self)"));
        let html = page.text().await.expect("the page");
        assert!(html.contains("<div id=\"app\">"), "{html}");

        // Every script and style sheet the page names is there, as what it is, for good.
        let assets: Vec<&str> = html
            .split('"')
            .filter(|part| part.starts_with("/join/assets/"))
            .collect();
        assert!(
            assets.iter().any(|a| a.ends_with(".js")) && assets.iter().any(|a| a.ends_with(".css")),
            "the page names its script and styles: {html}"
        );
        for asset in assets {
            let file = get(&srv, asset).await;
            assert_eq!(file.status(), 200, "{asset}");
            let kind = header(&file, "content-type");
            assert!(
                kind.starts_with(if asset.ends_with(".js") {
                    "text/javascript"
                } else {
                    "text/css"
                }),
                "{asset}: {kind}"
            );
            assert!(
                header(&file, "cache-control").contains("immutable"),
                "{asset}"
            );
            assert_eq!(header(&file, "x-content-type-options"), "nosniff");
            assert!(
                !file.bytes().await.expect("the asset").is_empty(),
                "{asset}"
            );
        }
    }
}

#[tokio::test]
async fn a_name_outside_the_build_is_not_found_and_a_write_is_refused() {
    let srv = Srv::start().await;
    for path in [
        "/join/assets/missing.js",
        "/join/assets/..%2F..%2FCargo.toml",
        "/join/assets/.hidden.js",
        "/join/assets/index.html",
        "/join/index.html",
        "/join/assets",
        "/joinx",
    ] {
        assert_eq!(
            refusal(get(&srv, path).await).await,
            (404, "not_found".to_owned()),
            "{path}"
        );
    }
    let post = reqwest::Client::new()
        .post(format!("{}/join", srv.url))
        .body("x")
        .send()
        .await
        .expect("POST /join");
    assert_eq!(refusal(post).await, (405, "bad_request".to_owned()));
}

#[tokio::test]
async fn invites_carry_the_browser_link_with_the_token_in_the_fragment() {
    let srv = Srv::start().await;
    let meeting = srv.meeting("Web").await;
    let added = srv
        .admin
        .add_participant(&meeting, &AddParticipant::new("Wes", "viewer"))
        .await
        .expect("a participant");
    assert_eq!(
        added.web_link,
        format!("{}/join#token={}", srv.url, added.token)
    );
    let read = InviteLink::parse(&added.web_link).expect("the web link reads");
    assert_eq!(
        (read.token.as_str(), read.invite),
        (added.token.as_str(), false)
    );
    assert_eq!(read.server, added.invite().expect("the app link").server);

    let role = srv
        .ok(
            "POST",
            &format!("/v1/meetings/{meeting}/invites"),
            Some(json!({"preset_name": "viewer"})),
        )
        .await;
    let token = role["token"].as_str().expect("a token");
    assert_eq!(
        role["web_link"],
        json!(format!("{}/join#invite={token}", srv.url))
    );
    // The page at that address is the app.
    let page = get(&srv, "/join").await;
    assert_eq!(page.status(), 200);
}
