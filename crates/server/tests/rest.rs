//! The admin REST API of `docs/API.md`: every route, every refusal, and that a refusal
//! changes nothing.

mod common;

use common::{assert_error, Srv};
use serde_json::{json, Value};

/// Everything the admin API can show, to compare before and after a refused request.
async fn state(srv: &Srv) -> Value {
    let meetings = srv.ok("GET", "/v1/meetings", None).await;
    let mut participants = Vec::new();
    for m in meetings.as_array().expect("list") {
        let id = m["id"].as_str().expect("id");
        participants.push(
            srv.ok("GET", &format!("/v1/meetings/{id}/participants"), None)
                .await,
        );
    }
    let presets = srv.ok("GET", "/v1/presets", None).await;
    json!({ "meetings": meetings, "participants": participants, "presets": presets })
}

#[tokio::test]
async fn health_and_metrics_need_no_key() {
    let srv = Srv::start().await;
    let (status, body) = srv.raw("GET", "/healthz", None, None).await;
    assert_eq!((status, body), (200, json!({"status":"ok"})));
    let (status, body) = srv.raw("GET", "/metrics", None, None).await;
    assert_eq!(status, 200);
    let text = body.as_str().expect("text");
    assert!(text.contains("onstage_signal_connections"), "{text}");
    assert!(text.contains("onstage_rooms"), "{text}");
}

#[tokio::test]
async fn meetings_are_created_listed_and_fetched() {
    let srv = Srv::start().await;
    let (status, body) = srv
        .admin("POST", "/v1/meetings", Some(json!({"title":"Town hall"})))
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["success"], json!(true));
    let m = &body["data"];
    assert_eq!(m["title"], json!("Town hall"));
    assert_eq!(m["max_on_stage"], json!(25));
    assert!(m["id"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(m["created_at"]
        .as_u64()
        .is_some_and(|t| t > 1_600_000_000_000));

    let small = srv
        .ok(
            "POST",
            "/v1/meetings",
            Some(json!({"title":"Panel","max_on_stage":3})),
        )
        .await;
    assert_eq!(small["max_on_stage"], json!(3));

    let list = srv.ok("GET", "/v1/meetings", None).await;
    assert_eq!(list, json!([m.clone(), small.clone()]));
    let id = m["id"].as_str().expect("id");
    assert_eq!(
        srv.ok("GET", &format!("/v1/meetings/{id}"), None).await,
        m.clone()
    );
    let stage = srv
        .ok("GET", &format!("/v1/meetings/{id}/stage"), None)
        .await;
    assert_eq!(
        stage,
        json!({"seq":0,"max_on_stage":25,"participants":[],"queue":[]})
    );
}

#[tokio::test]
async fn participants_get_tokens_and_custom_ids_are_upserted() {
    let srv = Srv::start().await;
    let meeting = srv.meeting("m").await;
    let path = format!("/v1/meetings/{meeting}/participants");
    let (status, body) = srv
        .admin(
            "POST",
            &path,
            Some(json!({"name":"Ann","preset_name":"host"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let ann = &body["data"];
    assert_eq!(ann["name"], json!("Ann"));
    assert_eq!(ann["preset_name"], json!("host"));
    assert_eq!(ann["custom_participant_id"], Value::Null);
    assert_eq!(
        ann["token"].as_str().expect("token").split('.').count(),
        3,
        "a JWT"
    );

    let bob = srv
        .ok(
            "POST",
            &path,
            Some(json!({"name":"Bob","preset_name":"viewer","custom_participant_id":"bob-1"})),
        )
        .await;
    assert_eq!(bob["id"], json!("bob-1"));
    // Adding the same custom id again updates it and issues a fresh token.
    let again = srv
        .ok(
            "POST",
            &path,
            Some(json!({"name":"Robert","preset_name":"speaker","custom_participant_id":"bob-1"})),
        )
        .await;
    assert_eq!(again["id"], json!("bob-1"));
    assert!(again["token"].is_string());

    let list = srv.ok("GET", &path, None).await;
    assert_eq!(
        list,
        json!([
            {"id": ann["id"], "name":"Ann","preset_name":"host","custom_participant_id":null},
            {"id":"bob-1","name":"Robert","preset_name":"speaker","custom_participant_id":"bob-1"},
        ]),
        "listed in order of addition, no tokens"
    );
}

#[tokio::test]
async fn presets_crud_with_built_ins_reserved() {
    let srv = Srv::start().await;
    let builtins = srv.ok("GET", "/v1/presets", None).await;
    let names: Vec<&str> = builtins
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(names, ["host", "speaker", "viewer", "spectator"]);

    let moderator = json!({
        "name":"moderator","stage_enabled":true,"stage_access":"CAN_REQUEST",
        "accept_stage_requests":true,"kick_participant":true,
        "can_produce_audio":true,"can_produce_video":false
    });
    let (status, body) = srv
        .admin("POST", "/v1/presets", Some(moderator.clone()))
        .await;
    assert_eq!((status, &body["data"]), (201, &moderator), "{body}");
    // The legacy alias and the defaults.
    let legacy = srv
        .ok(
            "POST",
            "/v1/presets",
            Some(json!({"name":"legacy","stage_access":"NOT_ALLOWED","accept_present_requests":true})),
        )
        .await;
    assert_eq!(legacy["accept_stage_requests"], json!(true));
    assert_eq!(legacy["stage_enabled"], json!(true));

    assert_eq!(
        srv.ok("GET", "/v1/presets/moderator", None).await,
        moderator
    );
    assert_eq!(
        srv.ok("GET", "/v1/presets/host", None).await["stage_access"],
        json!("ALLOWED")
    );
    let names: Vec<String> = srv
        .ok("GET", "/v1/presets", None)
        .await
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|p| p["name"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        names,
        [
            "host",
            "speaker",
            "viewer",
            "spectator",
            "legacy",
            "moderator"
        ]
    );

    let mut changed = moderator.clone();
    changed["stage_access"] = json!("ALLOWED");
    changed["can_produce_video"] = json!(true);
    assert_eq!(
        srv.ok("PUT", "/v1/presets/moderator", Some(changed.clone()))
            .await,
        changed
    );
    assert_eq!(srv.ok("GET", "/v1/presets/moderator", None).await, changed);

    // A participant can use a custom preset; while it does, the preset cannot be deleted.
    let meeting = srv.meeting("m").await;
    srv.participant(&meeting, "Mo", "moderator").await;
    let (status, body) = srv.admin("DELETE", "/v1/presets/moderator", None).await;
    assert_error(status, &body, 409, "invalid_state");

    assert_eq!(
        srv.ok("DELETE", "/v1/presets/legacy", None).await["name"],
        json!("legacy")
    );
    let (status, body) = srv.admin("GET", "/v1/presets/legacy", None).await;
    assert_error(status, &body, 404, "not_found");
}

#[tokio::test]
async fn a_missing_or_wrong_admin_key_is_unauthorized_everywhere() {
    let srv = Srv::start().await;
    let meeting = srv.meeting("m").await;
    let before = state(&srv).await;
    let routes: Vec<(&str, String, Option<Value>)> = vec![
        ("GET", "/v1/meetings".into(), None),
        ("POST", "/v1/meetings".into(), Some(json!({"title":"x"}))),
        ("GET", format!("/v1/meetings/{meeting}"), None),
        (
            "POST",
            format!("/v1/meetings/{meeting}/participants"),
            Some(json!({"name":"x","preset_name":"host"})),
        ),
        ("GET", format!("/v1/meetings/{meeting}/participants"), None),
        ("GET", format!("/v1/meetings/{meeting}/stage"), None),
        (
            "DELETE",
            format!("/v1/meetings/{meeting}/participants/someone"),
            None,
        ),
        ("DELETE", format!("/v1/meetings/{meeting}"), None),
        ("GET", "/v1/presets".into(), None),
        (
            "POST",
            "/v1/presets".into(),
            Some(json!({"name":"p","stage_access":"ALLOWED"})),
        ),
        ("GET", "/v1/presets/host".into(), None),
        (
            "PUT",
            "/v1/presets/p".into(),
            Some(json!({"name":"p","stage_access":"ALLOWED"})),
        ),
        ("DELETE", "/v1/presets/p".into(), None),
    ];
    let wrong = format!("{}x", srv.admin_key);
    // Each wrong key from its own address: one source failing this often would be made
    // to wait (see the back-off test).
    let mut source = 10u8;
    for (method, path, body) in routes {
        for key in [None, Some(wrong.as_str()), Some("")] {
            source += 1;
            let from = std::net::Ipv4Addr::new(127, 0, 0, source);
            let (status, reply) = srv
                .raw_from(
                    from,
                    method,
                    &path,
                    body.as_ref().map(Value::to_string),
                    key,
                )
                .await;
            assert_error(status, &reply, 401, "unauthorized");
        }
    }
    assert_eq!(state(&srv).await, before);
}

#[tokio::test]
async fn bad_input_is_refused_in_our_json_shape_and_changes_nothing() {
    let srv = Srv::start().await;
    let meeting = srv.meeting("m").await;
    srv.participant(&meeting, "Ann", "host").await;
    srv.ok(
        "POST",
        "/v1/presets",
        Some(json!({"name":"custom","stage_access":"ALLOWED"})),
    )
    .await;
    let before = state(&srv).await;
    let participants = format!("/v1/meetings/{meeting}/participants");
    let huge = format!(r#"{{"title":"{}"}}"#, "x".repeat(70 * 1024));

    let cases: Vec<(&str, String, Option<String>, u16, &str)> = vec![
        // Malformed JSON, wrong types, missing fields, empty bodies.
        (
            "POST",
            "/v1/meetings".into(),
            Some("{".into()),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/v1/meetings".into(),
            Some("not json".into()),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/v1/meetings".into(),
            Some(String::new()),
            400,
            "bad_request",
        ),
        ("POST", "/v1/meetings".into(), None, 400, "bad_request"),
        (
            "POST",
            "/v1/meetings".into(),
            Some("[]".into()),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/v1/meetings".into(),
            Some(r#"{"title":5}"#.into()),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/v1/meetings".into(),
            Some("{}".into()),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/v1/meetings".into(),
            Some(r#"{"title":""}"#.into()),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/v1/meetings".into(),
            Some(r#"{"title":"  "}"#.into()),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/v1/meetings".into(),
            Some(r#"{"title":"t","max_on_stage":0}"#.into()),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/v1/meetings".into(),
            Some(r#"{"title":"t","max_on_stage":-1}"#.into()),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/v1/meetings".into(),
            Some(r#"{"title":"t","max_on_stage":"3"}"#.into()),
            400,
            "bad_request",
        ),
        // Oversized body.
        (
            "POST",
            "/v1/meetings".into(),
            Some(huge),
            413,
            "bad_request",
        ),
        // Participants.
        (
            "POST",
            participants.clone(),
            Some(r#"{"name":"x"}"#.into()),
            400,
            "bad_request",
        ),
        (
            "POST",
            participants.clone(),
            Some(r#"{"name":"x","preset_name":"nope"}"#.into()),
            400,
            "bad_request",
        ),
        (
            "POST",
            participants.clone(),
            Some(r#"{"name":"","preset_name":"host"}"#.into()),
            400,
            "bad_request",
        ),
        (
            "POST",
            participants.clone(),
            Some(r#"{"name":"x","preset_name":"host","custom_participant_id":""}"#.into()),
            400,
            "bad_request",
        ),
        (
            "POST",
            participants.clone(),
            Some(r#"{"name":"x","preset_name":7}"#.into()),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/v1/meetings/no-such-meeting/participants".into(),
            Some(r#"{"name":"x","preset_name":"host"}"#.into()),
            404,
            "not_found",
        ),
        (
            "GET",
            "/v1/meetings/no-such-meeting".into(),
            None,
            404,
            "not_found",
        ),
        (
            "GET",
            "/v1/meetings/no-such-meeting/participants".into(),
            None,
            404,
            "not_found",
        ),
        (
            "GET",
            "/v1/meetings/no-such-meeting/stage".into(),
            None,
            404,
            "not_found",
        ),
        // Presets.
        (
            "POST",
            "/v1/presets".into(),
            Some("{".into()),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/v1/presets".into(),
            Some(r#"{"name":"p"}"#.into()),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/v1/presets".into(),
            Some(r#"{"name":"p","stage_access":"SOMETIMES"}"#.into()),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/v1/presets".into(),
            Some(r#"{"name":"p","stage_access":"ALLOWED","kick_participant":"yes"}"#.into()),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/v1/presets".into(),
            Some(r#"{"name":"Has Caps","stage_access":"ALLOWED"}"#.into()),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/v1/presets".into(),
            Some(r#"{"name":"","stage_access":"ALLOWED"}"#.into()),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/v1/presets".into(),
            Some(format!(
                r#"{{"name":"{}","stage_access":"ALLOWED"}}"#,
                "a".repeat(65)
            )),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/v1/presets".into(),
            Some(r#"{"name":"host","stage_access":"NOT_ALLOWED"}"#.into()),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/v1/presets".into(),
            Some(r#"{"name":"custom","stage_access":"NOT_ALLOWED"}"#.into()),
            409,
            "invalid_state",
        ),
        (
            "PUT",
            "/v1/presets/host".into(),
            Some(r#"{"name":"host","stage_access":"NOT_ALLOWED"}"#.into()),
            400,
            "bad_request",
        ),
        (
            "PUT",
            "/v1/presets/custom".into(),
            Some(r#"{"name":"custom"}"#.into()),
            400,
            "bad_request",
        ),
        (
            "PUT",
            "/v1/presets/ghost".into(),
            Some(r#"{"name":"ghost","stage_access":"ALLOWED"}"#.into()),
            404,
            "not_found",
        ),
        (
            "DELETE",
            "/v1/presets/host".into(),
            None,
            400,
            "bad_request",
        ),
        ("DELETE", "/v1/presets/ghost".into(), None, 404, "not_found"),
        ("GET", "/v1/presets/ghost".into(), None, 404, "not_found"),
        // Unknown routes and methods.
        ("GET", "/v1/nothing".into(), None, 404, "not_found"),
        ("DELETE", "/v1/meetings".into(), None, 405, "bad_request"),
    ];
    for (method, path, body, want_status, code) in cases {
        let (status, reply) = srv
            .raw(method, &path, body.clone(), Some(&srv.admin_key))
            .await;
        assert!(
            status == want_status && reply["error"]["code"] == code,
            "{method} {path} {:?}: got {status} {reply}",
            body.map(|b| b.chars().take(80).collect::<String>())
        );
        assert_error(status, &reply, want_status, code);
    }
    assert_eq!(
        state(&srv).await,
        before,
        "refused requests changed nothing"
    );
}

#[tokio::test]
async fn control_and_format_characters_in_titles_and_names_are_refused() {
    let srv = Srv::start().await;
    let meeting = srv.meeting("m").await;
    let before = state(&srv).await;
    let participants = format!("/v1/meetings/{meeting}/participants");
    for bad in [
        "a\u{0}b",           // NUL
        "\u{1b}[31mred",     // an escape sequence
        "two\r\nlines",      // CR LF
        "left\u{202e}right", // a bidirectional override
        "zero\u{200b}width", // a zero-width space
        "line\u{2028}sep",   // a line separator
    ] {
        let (status, body) = srv
            .admin("POST", "/v1/meetings", Some(json!({ "title": bad })))
            .await;
        assert_error(status, &body, 400, "bad_request");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("control or format")),
            "{body}"
        );
        let (status, body) = srv
            .admin(
                "POST",
                &participants,
                Some(json!({"name": bad, "preset_name": "viewer"})),
            )
            .await;
        assert_error(status, &body, 400, "bad_request");
    }
    assert_eq!(state(&srv).await, before, "a refusal changes nothing");
    // Plain spaces, letters of any script and emoji are names.
    for good in ["Zoë  Ünal", "李 小龍", "Ада Лавлейс", "DJ 🎧"] {
        let added = srv
            .ok(
                "POST",
                &participants,
                Some(json!({"name": good, "preset_name": "viewer"})),
            )
            .await;
        assert_eq!(added["name"], good);
    }
}

#[tokio::test]
async fn a_custom_id_may_not_take_the_form_of_a_server_made_one() {
    let srv = Srv::start().await;
    let meeting = srv.meeting("m").await;
    let participants = format!("/v1/meetings/{meeting}/participants");
    let made = srv
        .ok(
            "POST",
            &participants,
            Some(json!({"name": "Ann", "preset_name": "viewer"})),
        )
        .await;
    let ann = made["id"].as_str().expect("a server-made id").to_owned();
    let before = state(&srv).await;
    // Taking Ann's id would rename her, change her preset and mint a token for her.
    for custom in [ann.as_str(), "6f1c2a9e-0b7d-4c35-9a51-2f3e4d5c6b7a"] {
        let (status, body) = srv
            .admin(
                "POST",
                &participants,
                Some(json!({"name": "Mallory", "preset_name": "host", "custom_participant_id": custom})),
            )
            .await;
        assert_error(status, &body, 400, "bad_request");
    }
    assert_eq!(state(&srv).await, before, "Ann is untouched");
}

/// The SDK's typed admin client reads every route's answer as the server writes it (the
/// wire types are the same on both sides), and its errors are the server's.
#[tokio::test]
async fn the_typed_admin_client_speaks_every_route() {
    use onstage_proto::rest::{AddParticipant, CreateMeeting};
    use onstage_proto::{ErrorCode, Preset, StageAccess};

    let srv = Srv::start().await;
    let admin = &srv.admin;
    let request = CreateMeeting {
        title: "  Typed  ".into(),
        max_on_stage: Some(3),
    };
    let meeting = admin.create_meeting(&request).await.expect("create");
    assert_eq!((meeting.title.as_str(), meeting.max_on_stage), ("Typed", 3));
    let id = meeting.id.to_string();
    assert_eq!(admin.get_meeting(&id).await, Ok(meeting.clone()));
    assert_eq!(admin.list_meetings().await, Ok(vec![meeting.clone()]));
    assert_eq!(admin.meeting_exists(&id).await, Ok(true));
    assert_eq!(admin.meeting_exists("nope").await, Ok(false));

    let preset = Preset {
        name: "panel".into(),
        stage_enabled: true,
        stage_access: StageAccess::Allowed,
        accept_stage_requests: false,
        kick_participant: true,
        can_produce_audio: true,
        can_produce_video: false,
    };
    assert_eq!(admin.create_preset(&preset).await, Ok(preset.clone()));
    assert_eq!(admin.get_preset("panel").await, Ok(preset.clone()));
    let changed = Preset {
        can_produce_video: true,
        ..preset.clone()
    };
    assert_eq!(admin.update_preset(&changed).await, Ok(changed.clone()));
    assert!(admin
        .list_presets()
        .await
        .expect("presets")
        .contains(&changed));

    let ann = AddParticipant {
        custom_participant_id: Some("ann".into()),
        ..AddParticipant::new("Ann", "panel")
    };
    let added = admin.add_participant(&id, &ann).await.expect("add");
    assert_eq!(added.id.as_str(), "ann");
    let link = added.invite().expect("the link parses");
    assert_eq!(link.token, added.token);
    let listed = admin.list_participants(&id).await.expect("participants");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].name, "Ann");
    let stage = admin.stage(&id).await.expect("stage");
    assert_eq!(stage.max_on_stage, 3);

    let in_use = admin.delete_preset("panel").await.expect_err("in use");
    assert_eq!(in_use.code, ErrorCode::InvalidState);
    assert_eq!(
        admin.remove_participant(&id, "ann").await,
        Ok(listed[0].clone())
    );
    assert_eq!(admin.delete_preset("panel").await, Ok(changed));
    assert_eq!(admin.delete_meeting(&id).await, Ok(meeting));
    let gone = admin.get_meeting(&id).await.expect_err("deleted");
    assert_eq!(gone.code, ErrorCode::NotFound);
    let refused = admin
        .create_meeting(&CreateMeeting::titled(""))
        .await
        .expect_err("an empty title");
    assert_eq!(refused.code, ErrorCode::BadRequest);
}
