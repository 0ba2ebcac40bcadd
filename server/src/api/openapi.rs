//! `GET /api/v1/openapi.json`: the REST API as an OpenAPI 3.0 document.

use axum::Json;
use serde_json::json;

fn err() -> serde_json::Value {
    json!({ "description": "error", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } })
}

fn ok(schema: serde_json::Value) -> serde_json::Value {
    json!({ "description": "ok", "content": { "application/json": { "schema": schema } } })
}

fn body(schema: serde_json::Value) -> serde_json::Value {
    json!({ "required": true, "content": { "application/json": { "schema": schema } } })
}

fn chat_param() -> serde_json::Value {
    json!({ "name": "chatId", "in": "path", "required": true, "schema": { "type": "string", "format": "uuid" } })
}

/// Blocks, invites and joining.
fn consent_paths(secured: &serde_json::Value) -> serde_json::Value {
    let user_param =
        json!({ "name": "userId", "in": "path", "required": true, "schema": { "type": "string", "format": "uuid" } });
    json!({
        "/blocks": {
            "post": { "summary": "Block a user: no direct chat, message, invite or presence from them", "security": secured,
                "requestBody": body(json!({ "type": "object", "required": ["userId"], "properties": { "userId": { "type": "string", "format": "uuid" } } })),
                "responses": { "200": ok(json!({ "type": "object", "properties": { "userId": { "type": "string" }, "blocked": { "type": "boolean" } } })), "400": err(), "401": err(), "404": err() } },
            "get": { "summary": "The users the caller blocked", "security": secured,
                "responses": { "200": ok(json!({ "type": "object", "properties": { "blocked": { "type": "array", "items": { "type": "string", "format": "uuid" } } } })), "401": err() } } },
        "/blocks/{userId}": { "delete": { "summary": "Unblock a user", "security": secured, "parameters": [user_param],
            "responses": { "200": ok(json!({ "type": "object" })), "401": err(), "404": err() } } },
        "/invites": { "get": { "summary": "The caller's pending group invites", "security": secured,
            "responses": { "200": ok(json!({ "type": "object", "properties": { "invites": { "type": "array", "items": { "type": "object", "properties": {
                "chatId": { "type": "string", "format": "uuid" }, "name": { "type": "string" }, "from": { "type": "string", "format": "uuid" },
                "memberCount": { "type": "integer" }, "timestamp": { "type": "string" } } } } } })), "401": err() } } },
        "/invites/{chatId}": { "delete": { "summary": "Decline an invite", "security": secured, "parameters": [chat_param()],
            "responses": { "200": ok(json!({ "type": "object" })), "401": err(), "403": err(), "404": err() } } },
        "/chats/{chatId}/join": { "post": { "summary": "Accept an invite and join the group", "security": secured, "parameters": [chat_param()],
            "responses": { "200": ok(json!({ "$ref": "#/components/schemas/Chat" })), "401": err(), "403": err(), "404": err() } } }
    })
}

pub async fn document() -> Json<serde_json::Value> {
    let secured = json!([{ "bearer": [] }]);
    let mut doc = json!({
        "openapi": "3.0.3",
        "info": { "title": "raftchat", "version": env!("CARGO_PKG_VERSION"),
                  "description": "Chat API of raftchat; see docs/PROTOCOL.md for examples and the WebSocket frames." },
        "servers": [{ "url": "/api/v1" }],
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": {
                "Error": { "type": "object", "properties": { "error": { "type": "object", "properties": {
                    "code": { "type": "string" }, "message": { "type": "string" } } } } },
                "Session": { "type": "object", "properties": {
                    "token": { "type": "string", "description": "access token (bearer)" },
                    "refreshToken": { "type": "string", "description": "for POST /sessions/refresh only" },
                    "userId": { "type": "string", "format": "uuid" },
                    "expiresAt": { "type": "string", "format": "date-time" },
                    "refreshExpiresAt": { "type": "string", "format": "date-time" } } },
                "Credentials": { "type": "object", "required": ["username", "password"], "properties": {
                    "username": { "type": "string", "minLength": 3, "maxLength": 32 },
                    "password": { "type": "string", "minLength": 8, "maxLength": 256 } } },
                "Chat": { "type": "object", "properties": {
                    "chatId": { "type": "string", "format": "uuid" }, "type": { "type": "string", "enum": ["direct", "group"] },
                    "name": { "type": "string" }, "members": { "type": "array", "items": { "type": "string", "format": "uuid" } },
                    "admins": { "type": "array", "items": { "type": "string", "format": "uuid" } },
                    "memberCount": { "type": "integer" }, "lastSeq": { "type": "integer" }, "readSeq": { "type": "integer" },
                    "deliveredSeq": { "type": "integer" }, "unread": { "type": "integer" } } },
                "Message": { "type": "object", "properties": {
                    "messageId": { "type": "string", "format": "uuid" }, "chatId": { "type": "string", "format": "uuid" },
                    "seq": { "type": "integer" }, "from": { "type": "string", "format": "uuid" }, "type": { "type": "string" },
                    "message": { "type": "string" }, "media": { "$ref": "#/components/schemas/MediaRef" },
                    "clientMsgId": { "type": "string" }, "timestamp": { "type": "string", "format": "date-time" } } },
                "MediaRef": { "type": "object", "required": ["mediaId", "mime", "size", "name"], "properties": {
                    "mediaId": { "type": "string", "pattern": "^[0-9a-f]{64}$" }, "mime": { "type": "string" }, "size": { "type": "integer" },
                    "name": { "type": "string" }, "width": { "type": "integer" }, "height": { "type": "integer" } } }
            }
        },
        "paths": {
            "/users": { "post": { "summary": "Register", "requestBody": body(json!({ "$ref": "#/components/schemas/Credentials" })),
                "responses": { "201": ok(json!({ "type": "object", "properties": { "userId": { "type": "string" }, "username": { "type": "string" } } })), "409": err(), "400": err() } } },
            "/users/{username}": { "get": { "summary": "Look a user up by name", "security": secured,
                "parameters": [{ "name": "username", "in": "path", "required": true, "schema": { "type": "string" } }],
                "responses": { "200": ok(json!({ "type": "object", "properties": { "userId": { "type": "string" }, "username": { "type": "string" } } })), "404": err() } } },
            "/users/id/{userId}": { "get": { "summary": "A user's name by id", "security": secured,
                "parameters": [{ "name": "userId", "in": "path", "required": true, "schema": { "type": "string", "format": "uuid" } }],
                "responses": { "200": ok(json!({ "type": "object", "properties": { "userId": { "type": "string" }, "username": { "type": "string" } } })), "404": err() } } },
            "/presence": { "post": { "summary": "Set your status", "security": secured,
                "requestBody": body(json!({ "type": "object", "required": ["status"], "properties": { "status": { "type": "string", "enum": ["online", "away", "offline"] } } })),
                "responses": { "200": ok(json!({ "type": "object" })), "400": err() } } },
            "/presence/{userId}": { "get": { "summary": "A contact's presence", "security": secured,
                "parameters": [{ "name": "userId", "in": "path", "required": true, "schema": { "type": "string", "format": "uuid" } }],
                "responses": { "200": ok(json!({ "type": "object", "properties": { "userId": { "type": "string" }, "status": { "type": "string" }, "lastSeen": { "type": "string", "nullable": true } } })), "403": err() } } },
            "/sessions": { "post": { "summary": "Log in for a bearer token", "requestBody": body(json!({ "$ref": "#/components/schemas/Credentials" })),
                "responses": { "200": ok(json!({ "$ref": "#/components/schemas/Session" })), "401": err(), "429": err() } },
                "delete": { "summary": "Revoke every session of the caller", "security": secured, "responses": { "204": { "description": "revoked" }, "401": err() } } },
            "/sessions/refresh": { "post": { "summary": "A new access token and a rotated refresh token for the same session; reusing a rotated refresh token revokes the session",
                "requestBody": body(json!({ "type": "object", "required": ["refreshToken"], "properties": { "refreshToken": { "type": "string" } } })),
                "responses": { "200": ok(json!({ "$ref": "#/components/schemas/Session" })), "400": err(), "401": err(), "429": err() } } },
            "/sessions/current": { "delete": { "summary": "Log this session out", "security": secured, "responses": { "204": { "description": "logged out" }, "401": err() } } },
            "/users/me/password": { "put": { "summary": "Change the password; every other session is revoked", "security": secured,
                "requestBody": body(json!({ "type": "object", "required": ["oldPassword", "newPassword"], "properties": { "oldPassword": { "type": "string" }, "newPassword": { "type": "string" } } })),
                "responses": { "200": ok(json!({ "$ref": "#/components/schemas/Session" })), "400": err(), "401": err(), "429": err() } } },
            "/nodes": { "get": { "summary": "Every node's client URL (for failover)",
                "responses": { "200": ok(json!({ "type": "object", "properties": { "nodes": { "type": "array", "items": { "type": "string" } } } })) } } },
            "/media/{mediaId}/link": { "post": { "summary": "A signed URL for this media, valid an hour (for <img> and <video>)", "security": secured,
                "parameters": [{ "name": "mediaId", "in": "path", "required": true, "schema": { "type": "string" } }],
                "responses": { "200": ok(json!({ "type": "object", "properties": { "url": { "type": "string" }, "expiresAt": { "type": "integer" } } })), "403": err(), "404": err() } } },
            "/chats": {
                "post": { "summary": "Create a direct or group chat", "security": secured,
                    "requestBody": body(json!({ "type": "object", "required": ["type"], "properties": { "type": { "type": "string", "enum": ["direct", "group"] }, "name": { "type": "string" }, "members": { "type": "array", "items": { "type": "string", "format": "uuid" } } } })),
                    "responses": { "200": ok(json!({ "$ref": "#/components/schemas/Chat" })), "400": err(), "401": err(), "404": err(), "429": err() } },
                "get": { "summary": "The caller's chats", "security": secured,
                    "responses": { "200": ok(json!({ "type": "object", "properties": { "chats": { "type": "array", "items": { "$ref": "#/components/schemas/Chat" } } } })), "401": err() } } },
            "/chats/{chatId}": { "get": { "summary": "One chat", "security": secured, "parameters": [chat_param()],
                "responses": { "200": ok(json!({ "$ref": "#/components/schemas/Chat" })), "403": err(), "404": err() } } },
            "/chats/{chatId}/members": { "post": { "summary": "Invite a user (admins); they join by accepting", "security": secured, "parameters": [chat_param()],
                "requestBody": body(json!({ "type": "object", "required": ["userId"], "properties": { "userId": { "type": "string", "format": "uuid" } } })),
                "responses": { "200": ok(json!({ "type": "object" })), "403": err(), "404": err(), "429": err() } } },
            "/chats/{chatId}/members/{userId}": { "delete": { "summary": "Remove a member (admins) or leave", "security": secured,
                "parameters": [chat_param(), { "name": "userId", "in": "path", "required": true, "schema": { "type": "string", "format": "uuid" } }],
                "responses": { "200": ok(json!({ "type": "object" })), "403": err(), "404": err(), "429": err() } } },
            "/chats/{chatId}/read": { "post": { "summary": "Mark read up to seq", "security": secured, "parameters": [chat_param()],
                "requestBody": body(json!({ "type": "object", "required": ["seq"], "properties": { "seq": { "type": "integer" } } })),
                "responses": { "200": ok(json!({ "type": "object", "properties": { "delivered": { "type": "integer" }, "read": { "type": "integer" } } })), "403": err(), "429": err() } } },
            "/messages": { "post": { "summary": "Send; answers after the quorum commit", "security": secured,
                "requestBody": body(json!({ "type": "object", "required": ["message"], "properties": {
                    "toUserId": { "type": "string", "format": "uuid" }, "groupId": { "type": "string", "format": "uuid" }, "chatId": { "type": "string", "format": "uuid" },
                    "message": { "type": "string" }, "type": { "type": "string", "enum": ["text", "image", "video", "file"] }, "clientMsgId": { "type": "string", "maxLength": 128 },
                    "media": { "$ref": "#/components/schemas/MediaRef" } } })),
                "responses": { "200": ok(json!({ "type": "object", "properties": { "messageId": { "type": "string" }, "chatId": { "type": "string" }, "seq": { "type": "integer" }, "timestamp": { "type": "string" }, "status": { "type": "string", "enum": ["sent"] } } })),
                    "400": err(), "403": err(), "404": err(), "413": err(), "429": err(), "503": err(), "504": err() } } },
            "/media": { "post": { "summary": "Upload a file (raw body or multipart/form-data); answers once two copies are durable", "security": secured,
                "parameters": [{ "name": "name", "in": "query", "schema": { "type": "string" } }],
                "requestBody": { "required": true, "content": { "*/*": { "schema": { "type": "string", "format": "binary" } } } },
                "responses": { "201": ok(json!({ "type": "object", "properties": { "mediaId": { "type": "string" }, "sha256": { "type": "string" }, "size": { "type": "integer" }, "mime": { "type": "string" }, "name": { "type": "string" } } })),
                    "400": err(), "401": err(), "413": err(), "429": err(), "503": err() } } },
            "/media/{mediaId}": { "get": { "summary": "Download, whole or one byte range (Range: bytes=a-b)", "security": secured,
                "parameters": [{ "name": "mediaId", "in": "path", "required": true, "schema": { "type": "string" } }],
                "responses": { "200": { "description": "the content" }, "206": { "description": "the requested range" },
                    "403": err(), "404": err(), "416": err(), "503": err() } } },
            "/messages/{chatId}": { "get": { "summary": "History", "security": secured,
                "parameters": [chat_param(),
                    { "name": "limit", "in": "query", "schema": { "type": "integer", "default": 50, "maximum": 1000 } },
                    { "name": "before", "in": "query", "schema": { "type": "integer" } },
                    { "name": "after", "in": "query", "schema": { "type": "integer" } }],
                "responses": { "200": ok(json!({ "type": "object", "properties": { "messages": { "type": "array", "items": { "$ref": "#/components/schemas/Message" } }, "hasMore": { "type": "boolean" }, "lastSeq": { "type": "integer" } } })), "403": err(), "404": err() } } }
        }
    });
    if let (Some(paths), serde_json::Value::Object(more)) = (doc["paths"].as_object_mut(), consent_paths(&secured)) {
        paths.extend(more);
    }
    Json(doc)
}
