//! WebSocket frames (JSON text). Only this module turns socket text into frames and back.
//!
//! Client -> server: `message` (`to` a user as in the brief, or `chatId`), `delivered`, `read`,
//! `sync`, `ping`, `presence`, `typing`. Server -> client: `ack`, `message`, `receipt`, `chat`,
//! `presence`, `typing`, `invite`, `error`, `pong`.
//! See docs/PROTOCOL.md for examples.

use std::collections::HashMap;

use serde::Deserialize;
use serde::Serialize;
use uuid::Uuid;

use crate::service::media::MediaRef;

#[derive(Debug, Clone, PartialEq)]
pub enum ClientFrame {
    Message {
        to: Option<Uuid>,
        chat_id: Option<Uuid>,
        text: String,
        client_msg_id: Option<String>,
        kind: String,
        media: Option<MediaRef>,
    },
    Delivered {
        chat_id: Uuid,
        seq: u64,
    },
    Read {
        chat_id: Uuid,
        seq: u64,
    },
    Sync {
        chats: HashMap<Uuid, u64>,
    },
    /// The client sets its own status (`online` or `away`).
    Presence {
        status: String,
    },
    Typing {
        chat_id: Uuid,
    },
    Ping,
}

/// Why a client frame was refused, and how to name it back to the client.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameError {
    pub code: &'static str,
    pub message: String,
    /// The offending frame: its clientMsgId, else its type, else the start of its text.
    pub reference: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MessageFields {
    to: Option<Uuid>,
    chat_id: Option<Uuid>,
    text: String,
    client_msg_id: Option<String>,
    message_type: Option<String>,
    media: Option<MediaRef>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReceiptFields {
    chat_id: Uuid,
    seq: u64,
}

#[derive(Deserialize)]
struct PresenceFields {
    status: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TypingFields {
    chat_id: Uuid,
}

#[derive(Deserialize)]
struct SyncFields {
    chats: HashMap<Uuid, u64>,
}

/// The fields every client frame is looked at for first: its type and what names it in errors.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Head<'a> {
    #[serde(rename = "type", default, borrow)]
    kind: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    client_msg_id: Option<std::borrow::Cow<'a, str>>,
}

/// The first frame of a connection opened without a token: `{"type":"auth","token":"..."}`.
pub fn parse_auth(text: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Auth {
        #[serde(rename = "type")]
        kind: String,
        token: String,
    }
    let a: Auth = serde_json::from_str(text).ok()?;
    (a.kind == "auth").then_some(a.token)
}

impl ClientFrame {
    /// Parses a frame: its head first (no copies), then the fields of its type.
    pub fn parse(text: &str) -> Result<ClientFrame, FrameError> {
        let malformed = |e: serde_json::Error| FrameError {
            code: "bad_frame",
            message: format!("malformed JSON: {e}"),
            reference: text.chars().take(64).collect(),
        };
        let head: Head<'_> = serde_json::from_str(text).map_err(malformed)?;
        let kind = head.kind.as_deref().unwrap_or("");
        let reference = head
            .client_msg_id
            .as_deref()
            .or(head.kind.as_deref())
            .map(str::to_string)
            .unwrap_or_else(|| text.chars().take(64).collect());
        let bad = |e: serde_json::Error| FrameError {
            code: "bad_frame",
            message: e.to_string(),
            reference: reference.clone(),
        };
        match kind {
            "message" => {
                let f: MessageFields = serde_json::from_str(text).map_err(bad)?;
                if f.to.is_some() == f.chat_id.is_some() {
                    return Err(FrameError {
                        code: "bad_frame",
                        message: "name exactly one of to or chatId".into(),
                        reference,
                    });
                }
                Ok(ClientFrame::Message {
                    to: f.to,
                    chat_id: f.chat_id,
                    text: f.text,
                    client_msg_id: f.client_msg_id,
                    kind: f.message_type.unwrap_or_else(|| "text".into()),
                    media: f.media,
                })
            }
            "delivered" | "read" => {
                let f: ReceiptFields = serde_json::from_str(text).map_err(bad)?;
                Ok(if kind == "read" {
                    ClientFrame::Read { chat_id: f.chat_id, seq: f.seq }
                } else {
                    ClientFrame::Delivered { chat_id: f.chat_id, seq: f.seq }
                })
            }
            "sync" => Ok(ClientFrame::Sync { chats: serde_json::from_str::<SyncFields>(text).map_err(bad)?.chats }),
            "ping" => Ok(ClientFrame::Ping),
            "presence" => {
                let f: PresenceFields = serde_json::from_str(text).map_err(bad)?;
                if f.status != "online" && f.status != "away" {
                    return Err(FrameError {
                        code: "bad_frame",
                        message: "status must be online or away".into(),
                        reference,
                    });
                }
                Ok(ClientFrame::Presence { status: f.status })
            }
            "typing" => {
                Ok(ClientFrame::Typing { chat_id: serde_json::from_str::<TypingFields>(text).map_err(bad)?.chat_id })
            }
            "" => Err(FrameError { code: "bad_frame", message: "frame has no type".into(), reference }),
            other => {
                Err(FrameError { code: "unknown_type", message: format!("unknown frame type {other:?}"), reference })
            }
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum ServerFrame {
    #[serde(rename_all = "camelCase")]
    Ack {
        client_msg_id: String,
        chat_id: Uuid,
        seq: u64,
        message_id: Uuid,
        timestamp: String,
        status: &'static str,
    },
    #[serde(rename_all = "camelCase")]
    Message {
        chat_id: Uuid,
        seq: u64,
        message_id: Uuid,
        from: Uuid,
        text: String,
        message_type: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        media: Option<MediaRef>,
        client_msg_id: String,
        timestamp: String,
    },
    #[serde(rename_all = "camelCase")]
    Receipt {
        chat_id: Uuid,
        user_id: Uuid,
        delivered: u64,
        read: u64,
    },
    /// The user joined (`member: true`) or left a chat.
    #[serde(rename_all = "camelCase")]
    Chat {
        chat_id: Uuid,
        member: bool,
    },
    #[serde(rename_all = "camelCase")]
    Presence {
        user_id: Uuid,
        status: &'static str,
        last_seen: Option<String>,
    },
    #[serde(rename_all = "camelCase")]
    Typing {
        chat_id: Uuid,
        user_id: Uuid,
    },
    /// The user was invited to a group; `POST /api/v1/chats/{chatId}/join` accepts.
    #[serde(rename_all = "camelCase")]
    Invite {
        chat_id: Uuid,
        name: String,
        from: Uuid,
        member_count: u32,
        timestamp: String,
    },
    Error {
        code: String,
        message: String,
        #[serde(rename = "ref")]
        reference: Option<String>,
    },
    Pong,
}

impl ServerFrame {
    pub fn error(code: &str, message: impl Into<String>, reference: Option<String>) -> Self {
        ServerFrame::Error { code: code.to_string(), message: message.into(), reference }
    }

    pub fn to_text(&self) -> String {
        serde_json::to_string(self)
            .unwrap_or_else(|_| r#"{"type":"error","code":"internal","message":"unencodable frame"}"#.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brief_shapes_parse() {
        let u = Uuid::new_v4();
        let f = ClientFrame::parse(&format!(r#"{{"type":"message","to":"{u}","text":"Hi"}}"#)).unwrap();
        assert_eq!(
            f,
            ClientFrame::Message {
                to: Some(u),
                chat_id: None,
                text: "Hi".into(),
                client_msg_id: None,
                kind: "text".into(),
                media: None,
            }
        );
        let f = ClientFrame::parse(&format!(r#"{{"type":"sync","chats":{{"{u}":7}}}}"#)).unwrap();
        assert!(matches!(f, ClientFrame::Sync { chats } if chats[&u] == 7));
        assert_eq!(ClientFrame::parse(r#"{"type":"ping"}"#).unwrap(), ClientFrame::Ping);
    }

    #[test]
    fn bad_frames_name_themselves() {
        let e = ClientFrame::parse("{not json").unwrap_err();
        assert_eq!((e.code, e.reference.as_str()), ("bad_frame", "{not json"));
        let e = ClientFrame::parse(r#"{"type":"dance"}"#).unwrap_err();
        assert_eq!((e.code, e.reference.as_str()), ("unknown_type", "dance"));
        let e = ClientFrame::parse(r#"{"type":"message","clientMsgId":"c9","text":"x"}"#).unwrap_err();
        assert_eq!(e.reference, "c9");
        let e = ClientFrame::parse(r#"{"type":"read","chatId":"nope","seq":1}"#).unwrap_err();
        assert_eq!(e.code, "bad_frame");
    }

    #[test]
    fn server_frames_have_the_documented_shape() {
        let f = ServerFrame::Receipt { chat_id: Uuid::nil(), user_id: Uuid::nil(), delivered: 2, read: 1 };
        let v: serde_json::Value = serde_json::from_str(&f.to_text()).unwrap();
        assert_eq!(v["type"], "receipt");
        assert_eq!(v["delivered"], 2);
        let v: serde_json::Value =
            serde_json::from_str(&ServerFrame::error("x", "y", Some("r".into())).to_text()).unwrap();
        assert_eq!(v["ref"], "r");
        assert_eq!(serde_json::from_str::<serde_json::Value>(&ServerFrame::Pong.to_text()).unwrap()["type"], "pong");
    }
}
