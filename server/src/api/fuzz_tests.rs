//! Property-based fuzz tests of what a node parses from its clients: WebSocket text frames
//! ([`crate::ws::frames::ClientFrame::parse`] and the first-frame `auth` of
//! [`crate::ws::frames::parse_auth`]), REST bodies through the JSON extractor
//! ([`crate::http::error::JsonBody`]) into each request struct of this module's handlers, and
//! their query parameters.
//!
//! Inputs are arbitrary text and bytes, and JSON shaped like the real thing: known and unknown
//! frame types and field names, values of every JSON kind (numbers past u64::MAX, negative,
//! fractional, exponents; ids; unicode strings) and nesting deep enough to overflow a recursive
//! parser. Properties: never a panic; a refused frame is a `FrameError` with a client-facing
//! code, a refused body a 4xx `ApiError`; an accepted frame keeps its invariants.
//!
//! Bound: proptest's default of 256 cases per property (about a second in a debug build), so
//! they run with every `cargo test`. The server is a binary crate (no `--lib`); for a longer
//! local run:
//!
//! ```text
//! PROPTEST_CASES=100000 cargo test -p raftchat-server --bin raftchat fuzz
//! ```

use axum::extract::FromRequest;
use axum::extract::Query;
use axum::http::header::CONTENT_TYPE;
use axum::http::Uri;
use proptest::prelude::*;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::http::error::ApiError;
use crate::http::error::JsonBody;
use crate::ws::frames::parse_auth;
use crate::ws::frames::ClientFrame;

/// Proptest's configuration: `PROPTEST_CASES` when set, else `cases`; failures are not persisted
/// to files (a crash becomes a plain regression test instead).
fn config(cases: u32) -> ProptestConfig {
    let mut c = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = cases;
    }
    c.failure_persistence = None;
    c
}

// ---- JSON-shaped text ----

/// Field names of client frames and REST bodies.
const KEYS: &[&str] = &[
    "type",
    "to",
    "chatId",
    "text",
    "clientMsgId",
    "messageType",
    "media",
    "seq",
    "chats",
    "status",
    "token",
    "mediaId",
    "mime",
    "size",
    "name",
    "width",
    "height",
    "members",
    "userId",
    "toUserId",
    "groupId",
    "message",
    "username",
    "password",
    "oldPassword",
    "newPassword",
];

/// Values of `type` and `status` (and a few near misses).
const NAMES: &[&str] = &[
    "message",
    "delivered",
    "read",
    "sync",
    "ping",
    "presence",
    "typing",
    "auth",
    "",
    "direct",
    "group",
    "online",
    "away",
    "offline",
    "text",
    "image",
    "Message",
    "ping ",
    "\u{0}",
];

/// Numbers as JSON text, valid or not for the u64, u32 and i64 fields they meet.
const NUMBERS: &[&str] = &[
    "0",
    "-0",
    "-1",
    "18446744073709551615",
    "18446744073709551616",
    "-9223372036854775808",
    "-9223372036854775809",
    "4294967296",
    "1.5",
    "1e2",
    "1E400",
    "-1e400",
    "123456789012345678901234567890",
    "0.0000001",
    "1.0",
];

fn json_string() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(NAMES).prop_map(str::to_string),
        any::<u128>().prop_map(|u| Uuid::from_u128(u).to_string()),
        ".{0,24}",
    ]
    .prop_map(|s| serde_json::to_string(&s).expect("a string encodes"))
}

fn json_number() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<u64>().prop_map(|n| n.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        prop::sample::select(NUMBERS).prop_map(str::to_string),
        any::<f64>().prop_filter_map("finite", |f| f.is_finite().then(|| f.to_string())),
    ]
}

fn json_key() -> impl Strategy<Value = String> {
    prop_oneof![4 => prop::sample::select(KEYS).prop_map(str::to_string), 1 => ".{0,8}"]
        .prop_map(|k| serde_json::to_string(&k).expect("a key encodes"))
}

fn object_of(fields: Vec<(String, String)>) -> String {
    let fields: Vec<String> = fields.into_iter().map(|(k, v)| format!("{k}:{v}")).collect();
    format!("{{{}}}", fields.join(","))
}

/// Any JSON value, nested a few levels.
fn json_value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        prop::sample::select(&["null", "true", "false", "{}", "[]"][..]).prop_map(str::to_string),
        json_number(),
        json_string(),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec((json_key(), inner), 0..6).prop_map(object_of),
        ]
    })
}

/// An object shaped like a client frame or a REST body: usually a known `type`, then known and
/// unknown fields with any values.
fn json_object() -> impl Strategy<Value = String> {
    (prop::option::weighted(0.8, prop::sample::select(NAMES)), prop::collection::vec((json_key(), json_value()), 0..8))
        .prop_map(|(kind, mut fields)| {
            if let Some(kind) = kind {
                fields.insert(0, ("\"type\"".into(), serde_json::to_string(kind).expect("a string encodes")));
            }
            object_of(fields)
        })
}

/// `depth` nested arrays or objects around `null`.
fn nested(depth: usize, objects: bool) -> String {
    if objects {
        format!("{}null{}", "{\"a\":".repeat(depth), "}".repeat(depth))
    } else {
        format!("{}null{}", "[".repeat(depth), "]".repeat(depth))
    }
}

// ---- WebSocket frames ----

/// Parses a frame and checks what a refusal or an acceptance must look like.
fn check_frame(text: &str) -> Result<Option<ClientFrame>, TestCaseError> {
    let _ = parse_auth(text);
    match ClientFrame::parse(text) {
        Ok(f) => {
            match &f {
                ClientFrame::Message { to, chat_id, .. } => {
                    prop_assert!(to.is_some() != chat_id.is_some(), "a message names exactly one target: {:?}", f)
                }
                ClientFrame::Presence { status } => prop_assert!(status == "online" || status == "away"),
                _ => {}
            }
            Ok(Some(f))
        }
        Err(e) => {
            prop_assert!(e.code == "bad_frame" || e.code == "unknown_type", "code {:?}", e.code);
            prop_assert!(!e.message.is_empty());
            Ok(None)
        }
    }
}

proptest! {
    #![proptest_config(config(256))]

    /// Arbitrary text (and bytes as a lossy string) is a frame or a `FrameError`.
    #[test]
    fn fuzz_ws_frame_arbitrary_text(text in ".{0,200}", bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        check_frame(&text)?;
        check_frame(&String::from_utf8_lossy(&bytes))?;
    }

    /// JSON shaped like client frames (known and unknown types and fields, any values) is a
    /// frame that keeps its invariants, or a `FrameError`.
    #[test]
    fn fuzz_ws_frame_json_shaped(obj in json_object(), value in json_value()) {
        check_frame(&obj)?;
        // Any JSON value as a whole frame (an array, a number, a string: not an object).
        check_frame(&value)?;
    }

    /// Deep nesting is never a stack overflow: as the frame (always refused: it has no type),
    /// as an unknown field of each type (skipped without recursion), and as known fields.
    #[test]
    fn fuzz_ws_frame_deep_nesting(depth in 1..4000usize, objects in any::<bool>(), kind in prop::sample::select(NAMES)) {
        let deep = nested(depth, objects);
        prop_assert!(check_frame(&deep)?.is_none(), "{} levels of nesting were a frame", depth);
        let kind = serde_json::to_string(kind).expect("a string encodes");
        check_frame(&format!(r#"{{"type":{kind},"extra":{deep}}}"#))?;
        check_frame(&format!(r#"{{"type":{kind},"chats":{deep},"media":{deep},"to":{deep}}}"#))?;
    }

    /// A receipt's seq is accepted exactly when it is a u64 (u64::MAX included); negative,
    /// fractional, exponent and out-of-range numbers are refused.
    #[test]
    fn fuzz_ws_frame_seq_numbers(seq in json_number(), chat in any::<u128>(), read in any::<bool>()) {
        let kind = if read { "read" } else { "delivered" };
        let text = format!(r#"{{"type":"{kind}","chatId":"{}","seq":{seq}}}"#, Uuid::from_u128(chat));
        let parsed = check_frame(&text)?;
        let want = seq.parse::<u64>().ok();
        let got = match parsed {
            Some(ClientFrame::Read { seq, .. } | ClientFrame::Delivered { seq, .. }) => Some(seq),
            Some(other) => return Err(TestCaseError::fail(format!("a receipt parsed as {other:?}"))),
            None => None,
        };
        prop_assert_eq!(got, want, "seq {}", seq);
    }
}

proptest! {
    #![proptest_config(config(256))]

    /// Every valid frame shape with random values (any unicode text, any u64, any ids) parses to
    /// exactly the frame it says, with unknown fields beside it ignored.
    #[test]
    fn fuzz_ws_frame_valid_shapes(
        ids in any::<(u128, u128)>(),
        text in ".{0,40}",
        cmid in prop::option::of(".{0,16}"),
        seq in any::<u64>(),
        to_user in any::<bool>(),
        which in 0..7u8,
        extra in prop::option::of(json_value()),
    ) {
        let (a, b) = (Uuid::from_u128(ids.0), Uuid::from_u128(ids.1));
        let (mut v, want) = match which {
            0 => {
                let target = if to_user { "to" } else { "chatId" };
                let mut v = serde_json::json!({ "type": "message", target: a, "text": text });
                if let Some(c) = &cmid {
                    v["clientMsgId"] = c.clone().into();
                }
                let (to, chat_id) = if to_user { (Some(a), None) } else { (None, Some(a)) };
                let want = ClientFrame::Message { to, chat_id, text: text.clone(), client_msg_id: cmid, kind: "text".into(), media: None };
                (v, want)
            }
            1 => (serde_json::json!({ "type": "read", "chatId": a, "seq": seq }), ClientFrame::Read { chat_id: a, seq }),
            2 => (serde_json::json!({ "type": "delivered", "chatId": a, "seq": seq }), ClientFrame::Delivered { chat_id: a, seq }),
            3 => {
                let chats = std::collections::HashMap::from([(a, seq), (b, seq / 2)]);
                (serde_json::json!({ "type": "sync", "chats": chats }), ClientFrame::Sync { chats })
            }
            4 => {
                let status = if to_user { "online" } else { "away" };
                (serde_json::json!({ "type": "presence", "status": status }), ClientFrame::Presence { status: status.into() })
            }
            5 => (serde_json::json!({ "type": "typing", "chatId": a }), ClientFrame::Typing { chat_id: a }),
            _ => (serde_json::json!({ "type": "ping" }), ClientFrame::Ping),
        };
        if let Some(extra) = extra.and_then(|e| serde_json::from_str::<serde_json::Value>(&e).ok()) {
            v["someFutureField"] = extra;
        }
        prop_assert_eq!(check_frame(&v.to_string())?, Some(want));
    }
}

// ---- REST bodies and query parameters ----

/// A POST with `body`, through the extractor every JSON handler uses.
fn json_body<T: DeserializeOwned>(body: &[u8], content_type: Option<&str>) -> Result<T, ApiError> {
    let mut req = axum::http::Request::builder().method("POST").uri("/api/v1/x");
    if let Some(ct) = content_type {
        req = req.header(CONTENT_TYPE, ct);
    }
    let req = req.body(axum::body::Body::from(body.to_vec())).expect("a request");
    // The body is in memory, so the extractor never waits: no runtime needed.
    futures::executor::block_on(JsonBody::<T>::from_request(req, &())).map(|JsonBody(v)| v)
}

/// Decodes `body` into `T` through serde_json and through the extractor: a value, or a 4xx.
fn check_body<T: DeserializeOwned>(body: &[u8], content_type: Option<&str>) -> Result<(), TestCaseError> {
    let direct = serde_json::from_slice::<T>(body).is_ok();
    match json_body::<T>(body, content_type) {
        Ok(_) => prop_assert!(direct, "the extractor accepted what serde_json refuses"),
        Err(e) => {
            prop_assert!(e.status.is_client_error(), "status {}", e.status);
            prop_assert!(e.code == "bad_request" || e.code == "too_large", "code {}", e.code);
        }
    }
    Ok(())
}

/// Every JSON request body of the public API.
fn check_every_body(body: &[u8], content_type: Option<&str>) -> Result<(), TestCaseError> {
    check_body::<super::chats::CreateChat>(body, content_type)?;
    check_body::<super::chats::AddMember>(body, content_type)?;
    check_body::<super::chats::Read>(body, content_type)?;
    check_body::<super::messages::Send>(body, content_type)?;
    check_body::<super::presence::SetPresence>(body, content_type)?;
    check_body::<super::users::Credentials>(body, content_type)?;
    check_body::<super::users::PasswordChange>(body, content_type)?;
    Ok(())
}

/// The extractor accepts `body` as a `T`.
fn accepts<T: DeserializeOwned>(body: serde_json::Value) -> Result<(), TestCaseError> {
    match json_body::<T>(body.to_string().as_bytes(), Some("application/json")) {
        Ok(_) => Ok(()),
        Err(e) => Err(TestCaseError::fail(format!("{body} was refused: {e}"))),
    }
}

fn check_query<T: DeserializeOwned>(uri: &Uri) {
    let _ = Query::<T>::try_from_uri(uri);
}

proptest! {
    #![proptest_config(config(256))]

    /// Arbitrary bytes as a JSON body are a value or a 4xx `ApiError`, for every request struct,
    /// with and without a JSON content type.
    #[test]
    fn fuzz_rest_body_arbitrary_bytes(
        body in prop::collection::vec(any::<u8>(), 0..200),
        content_type in prop::sample::select(&[Some("application/json"), Some("text/plain"), None][..]),
    ) {
        check_every_body(&body, content_type)?;
    }

    /// JSON shaped like request bodies (their field names, any values, deep nesting) is a value
    /// or a 4xx `ApiError`, for every request struct.
    #[test]
    fn fuzz_rest_body_json_shaped(obj in json_object(), value in json_value(), depth in 0..4000usize) {
        check_every_body(obj.as_bytes(), Some("application/json"))?;
        check_every_body(value.as_bytes(), Some("application/json"))?;
        let deep = format!(r#"{{"members":{},"seq":{}}}"#, nested(depth, false), nested(depth, true));
        check_every_body(deep.as_bytes(), Some("application/json"))?;
    }

    /// Valid bodies with random values (any unicode strings, any u64, any ids) are accepted.
    #[test]
    fn fuzz_rest_body_valid_shapes(ids in prop::collection::vec(any::<u128>(), 0..4), s1 in ".{0,32}", s2 in ".{0,32}", seq in any::<u64>()) {
        let ids: Vec<Uuid> = ids.into_iter().map(Uuid::from_u128).collect();
        let first = ids.first().copied().unwrap_or_default();
        accepts::<super::chats::CreateChat>(serde_json::json!({ "type": "group", "name": s1, "members": ids }))?;
        accepts::<super::chats::AddMember>(serde_json::json!({ "userId": first }))?;
        accepts::<super::chats::Read>(serde_json::json!({ "seq": seq }))?;
        accepts::<super::messages::Send>(serde_json::json!({ "chatId": first, "message": s1, "clientMsgId": s2 }))?;
        accepts::<super::presence::SetPresence>(serde_json::json!({ "status": s1 }))?;
        accepts::<super::users::Credentials>(serde_json::json!({ "username": s1, "password": s2 }))?;
        accepts::<super::users::PasswordChange>(serde_json::json!({ "oldPassword": s1, "newPassword": s2 }))?;
    }

    /// Arbitrary query strings parse into each query struct or are refused.
    #[test]
    fn fuzz_rest_query_params(
        pairs in prop::collection::vec((prop::sample::select(&["limit", "before", "after", "consistency", "token", "name", "sig", "x"][..]), prop_oneof![json_number(), ".{0,12}"]), 0..6),
        raw in ".{0,64}",
    ) {
        let query: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        for q in [query.join("&"), raw] {
            let Ok(uri) = format!("/api/v1/x?{q}").parse::<Uri>() else { continue };
            check_query::<super::messages::HistoryParams>(&uri);
            check_query::<super::media::UploadParams>(&uri);
            check_query::<super::media::DownloadParams>(&uri);
        }
    }
}
